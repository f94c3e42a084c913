//! Unit tests of `src/config.rs`: the PhonePe API version's keys and the `[webhook]` section.

use super::tests::{err, load_env, load_with};
use super::*;
use std::collections::HashMap;

/// Only the merchant id: the API version's own credentials come from `extra`.
fn load_bare(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut env: HashMap<String, String> = HashMap::from([("PHONEPE_MERCHANT_ID".into(), "MERCHANTUAT".into())]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    load_with(None, None, &env)
}

const V2: [(&str, &str); 4] = [
    ("PHONEPE_API_VERSION", "v2"),
    ("PHONEPE_CLIENT_ID", "TESTCLIENT"),
    ("PHONEPE_CLIENT_SECRET", "client-s3cret-77"),
    ("PHONEPE_CLIENT_VERSION", "1"),
];

#[test]
fn each_api_version_requires_its_own_credentials_and_no_others() {
    let s = load_bare(&V2).expect("v2 needs no salt key");
    assert_eq!(s.phonepe.api_version, ApiVersion::V2);
    let creds = s.phonepe.v2_credentials().expect("credentials");
    assert_eq!(
        (creds.client_id.as_str(), creds.client_version.as_str()),
        ("TESTCLIENT", "1")
    );
    assert_eq!(creds.oauth_base_url, "https://api-preprod.phonepe.com/apis/pg-sandbox");
    for (missing, (var, _)) in V2.iter().enumerate().skip(1) {
        let env: Vec<_> = V2
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, kv)| *kv)
            .collect();
        let e = load_bare(&env).expect_err("missing v2 key");
        let key = var.to_lowercase().replacen('_', ".", 1);
        assert_eq!(e.key(), Some(key.as_str()), "{e}");
        assert!(e.to_string().contains(var) && e.to_string().contains("\"v2\""), "{e}");
    }
    let e = load_bare(&[("PHONEPE_CLIENT_ID", "x"), ("PHONEPE_CLIENT_SECRET", "y")]).expect_err("v1 by default");
    assert_eq!(e.key(), Some("phonepe.salt_key"));
    let e = load_bare(&[("PHONEPE_API_VERSION", "v3")]).expect_err("unknown version");
    assert_eq!(e.key(), Some("phonepe.api_version"), "{e}");
}

#[test]
fn unset_hosts_are_phonepes_for_the_environment_and_version() {
    let prod = [("APP_ENV", "production")];
    let s = load_env(&prod).expect("v1 production");
    assert_eq!(s.phonepe.base_url, "https://api.phonepe.com/apis/hermes");
    let s = load_bare(&[V2.as_slice(), &prod].concat()).expect("v2 production");
    assert_eq!(s.phonepe.base_url, "https://api.phonepe.com/apis/pg");
    assert_eq!(
        s.phonepe.oauth_base_url,
        "https://api.phonepe.com/apis/identity-manager"
    );
    let s = load_bare(&[V2.as_slice(), &[("PHONEPE_OAUTH_BASE_URL", "http://127.0.0.1:9/x")]].concat()).unwrap();
    assert_eq!(s.phonepe.oauth_base_url, "http://127.0.0.1:9/x");
    let hermes = [("PHONEPE_BASE_URL", "https://api.phonepe.com/apis/hermes")];
    let e = load_bare(&[V2.as_slice(), &hermes].concat()).expect_err("v1 host under v2");
    assert_eq!(e.key(), Some("phonepe.base_url"), "{e}");
}

#[test]
fn the_client_secret_is_never_printed() {
    let s = load_bare(&V2).unwrap();
    let out = s.redacted_toml();
    assert!(
        out.contains("client_secret = \"***\"") && !out.contains("client-s3cret-77"),
        "{out}"
    );
    assert!(!format!("{s:?}").contains("client-s3cret-77"));
    let e = load_bare(&[V2.as_slice(), &[("PHONEPE_CLIENT_VERSION", "client-s3cret-77")]].concat()).unwrap_err();
    assert_eq!(e.key(), Some("phonepe.client_version"));
}

#[test]
fn webhook_is_off_by_default_and_its_keys_load_from_env() {
    let s = load_env(&[]).expect("valid");
    assert_eq!(s.webhook.listen, None);
    assert_eq!(
        (s.webhook.username.as_deref(), s.webhook.password.is_some()),
        (None, false)
    );
    assert!(!s.webhook.confirm_with_status_api);
    let hook_pass = "hook-S3CRET-pass";
    let s = load_env(&[
        ("RECONCILER_WEBHOOK__LISTEN", "127.0.0.1:9465"),
        ("PHONEPE_WEBHOOK_USERNAME", "hook"),
        ("PHONEPE_WEBHOOK_PASSWORD", hook_pass),
        ("RECONCILER_WEBHOOK__CONFIRM_WITH_STATUS_API", "true"),
    ])
    .expect("valid");
    assert_eq!(s.webhook.listen, Some("127.0.0.1:9465".parse().expect("addr")));
    assert_eq!(s.webhook.username.as_deref(), Some("hook"));
    assert_eq!(s.webhook.password.as_ref().map(Secret::expose), Some(hook_pass));
    assert!(s.webhook.confirm_with_status_api);
    let out = s.redacted_toml();
    assert!(out.contains("password = \"***\"") && !out.contains(hook_pass), "{out}");
    assert!(!format!("{s:?}").contains(hook_pass));
}

#[test]
fn webhook_credentials_come_in_pairs_and_listen_must_be_an_address() {
    let e = err(&[("PHONEPE_WEBHOOK_USERNAME", "hook")]);
    assert_eq!(e.key(), Some("webhook.password"), "{e}");
    assert!(e.to_string().contains("PHONEPE_WEBHOOK_PASSWORD"), "{e}");
    let e = err(&[("PHONEPE_WEBHOOK_PASSWORD", "hook-S3CRET-pass")]);
    assert_eq!(e.key(), Some("webhook.username"), "{e}");
    assert!(!e.to_string().contains("hook-S3CRET-pass"), "{e}");
    let e = err(&[("RECONCILER_WEBHOOK__LISTEN", "localhost")]);
    assert_eq!(e.key(), Some("webhook.listen"), "{e}");
    assert!(e.to_string().contains("env RECONCILER_WEBHOOK__LISTEN"), "{e}");
}

#[test]
fn a_v2_merchants_webhook_listener_needs_the_callback_credentials() {
    let v2 = [V2.as_slice(), &[("RECONCILER_WEBHOOK__LISTEN", "127.0.0.1:9465")]].concat();
    let e = load_bare(&v2).expect_err("v2 listener without credentials");
    assert_eq!(e.key(), Some("webhook.username"), "{e}");
    let with = [
        v2.as_slice(),
        &[("PHONEPE_WEBHOOK_USERNAME", "u"), ("PHONEPE_WEBHOOK_PASSWORD", "p")],
    ]
    .concat();
    load_bare(&with).expect("credentials given");
    load_env(&[("RECONCILER_WEBHOOK__LISTEN", "127.0.0.1:9465")]).expect("v1 checks callbacks with the salt key");
}
