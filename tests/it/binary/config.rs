//! Configuration: errors at start naming the key, an unreachable database, the effective
//! settings printed without secrets.

use super::{base_env, output, text, LOUD_SALT};
use crate::support::World;

#[test]
fn a_bad_config_fails_at_start_naming_the_key() {
    let w = World::new("bad_config");
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("PHONEPE_SALT_KEY", None, "phonepe.salt_key"),
        ("PHONEPE_MERCHANT_ID", None, "phonepe.merchant_id"),
        ("PHONEPE_SALT_INDEX", Some("zero"), "phonepe.salt_index"),
        ("MONGODB_URI", Some("postgres://localhost/shop"), "mongodb.uri"),
        (
            "RECONCILER_JOB__RATE_LIMIT_PER_MINUTE",
            Some("0"),
            "job.rate_limit_per_minute",
        ),
        ("RECONCILER_JOB__INTERVAL_SECS", Some("soon"), "job.interval_secs"),
    ];
    for (key, value, named) in cases {
        let mut env = base_env(&w);
        env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
        match value {
            Some(v) => env.insert(key, v.to_string()),
            None => env.remove(key),
        };
        let out = output(&env, &["once"]);
        assert_eq!(out.status.code(), Some(2), "{key}={value:?}: {}", text(&out));
        assert!(
            text(&out).contains(named),
            "{key}={value:?} should name {named}: {}",
            text(&out)
        );
        assert!(!text(&out).contains(LOUD_SALT), "salt key leaked: {}", text(&out));
    }
}

#[test]
fn unreachable_mongodb_makes_once_fail() {
    let w = World::new("no_mongo");
    let mut env = base_env(&w);
    env.insert(
        "MONGODB_URI",
        "mongodb://127.0.0.1:1/shop?serverSelectionTimeoutMS=500".into(),
    );
    let out = output(&env, &["once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("MongoDB"), "{}", text(&out));
}

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let w = World::new("config_cmd");
    let mut env = base_env(&w);
    env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    env.insert("MONGODB_URI", "mongodb://shop:hunter2pass@127.0.0.1:27017/shop".into());
    env.insert("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "25".into());
    let out = output(&env, &["config"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("rate_limit_per_minute = 25"), "{t}");
    assert!(
        !t.contains(LOUD_SALT) && !t.contains("hunter2pass"),
        "secrets leaked: {t}"
    );
}
