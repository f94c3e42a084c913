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

#[test]
fn a_bad_schema_mapping_stops_every_command_with_exit_2_naming_the_key() {
    let w = World::new("bad_schema");
    let draft_word = w.schema.orders.status_values.draft.clone();
    let cases: [(&'static str, &str, &str); 3] = [
        (
            "RECONCILER_SCHEMA__ORDERS__STATUS_VALUES__CANCELLED",
            &draft_word,
            "schema.orders.status_values.cancelled",
        ),
        (
            "RECONCILER_SCHEMA__ORDERS__AMOUNT",
            "reconciliation.amount",
            "schema.orders.amount",
        ),
        (
            "RECONCILER_SCHEMA__PRODUCTS__COLLECTION",
            "",
            "schema.products.collection",
        ),
    ];
    for (var, value, key) in cases {
        for args in [&["once"][..], &["check", "ORD-1"], &["selftest"], &["run"], &["config"]] {
            let mut env = base_env(&w);
            env.insert(var, value.to_string());
            if value.is_empty() {
                // Empty is unset for a variable: say it in a file instead.
                let file = std::env::temp_dir().join(format!("bad-schema-{}.toml", std::process::id()));
                std::fs::write(&file, "[schema.products]\ncollection = \"\"\n").unwrap();
                env.remove(var); // the variable would win over the file
                let mut c = super::command(&env, &[&["--config", file.to_str().unwrap()][..], args].concat());
                let out = c.output().unwrap();
                assert_eq!(out.status.code(), Some(2), "{args:?} {key}: {}", text(&out));
                assert!(text(&out).contains(key), "{args:?} should name {key}: {}", text(&out));
                continue;
            }
            let out = output(&env, args);
            assert_eq!(out.status.code(), Some(2), "{args:?} {var}={value}: {}", text(&out));
            assert!(text(&out).contains(key), "{args:?} should name {key}: {}", text(&out));
        }
    }
}

#[test]
fn config_prints_the_schema_mapping_set_by_nested_variables() {
    let w = World::new("config_schema");
    let mut env = base_env(&w);
    env.insert("RECONCILER_SCHEMA__ORDERS__COLLECTION", "shopOrders".into());
    env.insert("RECONCILER_SCHEMA__ORDERS__PAYMENT_STATUS", "payment.state".into());
    let out = output(&env, &["config"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("[schema.orders]\ncollection = \"shopOrders\""), "{t}");
    assert!(t.contains("payment_status = \"payment.state\""), "{t}");
    assert!(t.contains("[schema.products]\n"), "{t}");
}
