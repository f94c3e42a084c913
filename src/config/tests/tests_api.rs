//! Unit tests of `src/config`: the PhonePe API version's keys and hosts, the `[webhook]` section.

use secrecy::ExposeSecret;

use super::{err, load, SALT};

const V2: [(&str, &str); 6] = [
    ("PHONEPE_SALT_KEY", ""),
    ("PHONEPE_SALT_INDEX", ""),
    ("PHONEPE_API_VERSION", "v2"),
    ("PHONEPE_CLIENT_ID", "TESTCLIENT"),
    ("PHONEPE_CLIENT_SECRET", "client-s3cret-77"),
    ("PHONEPE_CLIENT_VERSION", "1"),
];

/// v2 with a webhook listener and its credentials, and the v1 salt key too: every key set.
pub(super) const V2_WITH_WEBHOOK: [(&str, &str); 7] = [
    ("PHONEPE_API_VERSION", "v2"),
    ("PHONEPE_CLIENT_ID", "TESTCLIENT"),
    ("PHONEPE_CLIENT_SECRET", "client-s3cret-77"),
    ("PHONEPE_CLIENT_VERSION", "1"),
    ("RECONCILER_WEBHOOK__LISTEN", "127.0.0.1:9465"),
    ("PHONEPE_WEBHOOK_USERNAME", "hook"),
    ("PHONEPE_WEBHOOK_PASSWORD", "hook-S3CRET-pass"),
];

#[test]
fn each_api_version_requires_its_own_credentials_and_no_others() {
    let s = load(&V2).expect("v2 needs no salt key");
    let creds = crate::phonepe::client::v2_credentials(&s.phonepe).expect("credentials");
    assert_eq!(
        (creds.client_id.as_str(), creds.client_version.as_str()),
        ("TESTCLIENT", "1")
    );
    assert_eq!(creds.oauth_base_url, "https://api-preprod.phonepe.com/apis/pg-sandbox");
    for (var, _) in &V2[3..] {
        let e = err(&[V2.as_slice(), &[(var, "")]].concat());
        let key = format!("phonepe.{}", var.trim_start_matches("PHONEPE_").to_lowercase());
        assert_eq!(
            e.to_string(),
            format!("{key} is required (set {var}; phonepe.api_version is \"v2\")")
        );
    }
    let e = err(&[
        ("PHONEPE_SALT_KEY", ""),
        ("PHONEPE_CLIENT_ID", "x"),
        ("PHONEPE_CLIENT_SECRET", "y"),
    ]);
    assert_eq!(e.key(), Some("phonepe.salt_key"), "v1 by default");
    assert_eq!(err(&[("PHONEPE_API_VERSION", "v3")]).key(), Some("phonepe.api_version"));
}

#[test]
fn unset_hosts_are_phonepes_for_the_environment_and_version() {
    let prod = [("APP_ENV", "production")];
    let s = load(&prod).expect("v1 production");
    assert_eq!(s.phonepe.base_url, "https://api.phonepe.com/apis/hermes");
    let s = load(&[V2.as_slice(), &prod].concat()).expect("v2 production");
    assert_eq!(s.phonepe.base_url, "https://api.phonepe.com/apis/pg");
    assert_eq!(
        s.phonepe.oauth_base_url,
        "https://api.phonepe.com/apis/identity-manager"
    );
    let s = load(&[V2.as_slice(), &[("PHONEPE_OAUTH_BASE_URL", "http://127.0.0.1:9/x/")]].concat()).expect("valid");
    assert_eq!(s.phonepe.oauth_base_url, "http://127.0.0.1:9/x");
    let e = err(&[
        V2.as_slice(),
        &[("PHONEPE_BASE_URL", "https://api.phonepe.com/apis/hermes")],
    ]
    .concat());
    assert_eq!(e.key(), Some("phonepe.base_url"), "the v1 host under v2: {e}");
}

#[test]
fn webhook_is_off_by_default_and_its_secrets_never_print() {
    let s = load(&[]).expect("valid");
    assert_eq!(
        (
            s.webhook.listen,
            s.webhook.username.as_deref(),
            s.webhook.password.is_some()
        ),
        (None, None, false)
    );
    assert!(!s.webhook.confirm_with_status_api);
    let s = load(&V2_WITH_WEBHOOK).expect("valid");
    assert_eq!(s.webhook.listen, Some("127.0.0.1:9465".parse().expect("addr")));
    assert_eq!(s.webhook.username.as_deref(), Some("hook"));
    assert_eq!(
        s.webhook.password.as_ref().map(|p| p.expose_secret()),
        Some("hook-S3CRET-pass")
    );
    let out = s.redacted_toml();
    assert!(
        out.contains("client_secret = \"***\"") && out.contains("password = \"***\""),
        "{out}"
    );
    for secret in ["hook-S3CRET-pass", "client-s3cret-77", SALT] {
        assert!(!out.contains(secret) && !format!("{s:?}").contains(secret), "{secret}");
    }
    let e = err(&[V2.as_slice(), &[("PHONEPE_CLIENT_VERSION", "client-s3cret-77")]].concat());
    assert_eq!(e.key(), Some("phonepe.client_version"));
}

#[test]
fn webhook_credentials_come_in_pairs_and_a_v2_listener_needs_them() {
    let e = err(&[("PHONEPE_WEBHOOK_USERNAME", "hook")]);
    let hint = "v2 callbacks are checked with webhook.username and webhook.password";
    assert_eq!(
        e.to_string(),
        format!("webhook.password is required (set PHONEPE_WEBHOOK_PASSWORD: {hint})")
    );
    let e = err(&[
        ("PHONEPE_WEBHOOK_PASSWORD", "hook-S3CRET-pass"),
        ("PHONEPE_WEBHOOK_USERNAME", " "),
    ]);
    assert_eq!(e.key(), Some("webhook.username"), "blank is unset: {e}");
    assert!(!e.to_string().contains("hook-S3CRET-pass"), "{e}");
    let e = err(&[("RECONCILER_WEBHOOK__LISTEN", "localhost")]);
    let reason = "must be ip:port like \"127.0.0.1:9464\" or \"\", got \"localhost\"";
    assert_eq!(
        e.to_string(),
        format!("webhook.listen {reason} (from env RECONCILER_WEBHOOK__LISTEN)")
    );
    let listen = [("RECONCILER_WEBHOOK__LISTEN", "127.0.0.1:9465")];
    let e = err(&[V2.as_slice(), &listen].concat());
    assert_eq!(
        e.key(),
        Some("webhook.username"),
        "v2 listener without credentials: {e}"
    );
    load(&V2_WITH_WEBHOOK).expect("credentials given");
    load(&listen).expect("v1 checks callbacks with the salt key");
}

#[test]
fn console_is_off_by_default_and_its_users_are_checked_and_never_printed() {
    let s = load(&[]).expect("valid");
    let c = &s.console;
    assert_eq!((c.listen, c.users.len(), c.secure_cookies), (None, 0, true));
    assert!(c.trusted_proxies.is_empty());
    let listen = ("RECONCILER_CONSOLE__LISTEN", "127.0.0.1:9466");
    let e = err(&[listen]);
    assert_eq!(e.key(), Some("console.users"), "a console nobody can sign in to: {e}");

    let (asha, ravi) = (
        crate::console::password::hash("asha-pw").expect("hash"),
        crate::console::password::hash("ravi-pw").expect("hash"),
    );
    let users = format!("asha:{asha}\n  ravi:{ravi} ");
    let s = load(&[
        listen,
        ("RECONCILER_CONSOLE__USERS", &users),
        ("RECONCILER_CONSOLE__SECURE_COOKIES", "false"),
        ("RECONCILER_CONSOLE__TRUSTED_PROXIES", "127.0.0.1, ::1"),
    ])
    .expect("valid");
    let names: Vec<&str> = s.console.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["asha", "ravi"]);
    assert_eq!(s.console.users[1].hash.expose_secret(), ravi);
    assert!(!s.console.secure_cookies);
    assert_eq!(s.console.trusted_proxies.len(), 2);
    let out = s.redacted_toml();
    assert!(out.contains("users = [\"asha:***\", \"ravi:***\"]"), "{out}");
    for hash in [&asha, &ravi] {
        assert!(!out.contains(hash.as_str()) && !format!("{s:?}").contains(hash.as_str()));
    }

    let bad = [
        ("asha".to_string(), "entry 1 is not name:hash"),
        ("asha:not-a-hash".into(), "entry 1 (asha): the hash is not a PHC string"),
        (format!("asha:{asha} asha:{ravi}"), "entry 2: asha is listed twice"),
        (format!("as/ha:{asha}"), "entry 1 must start with a name"),
        (format!("a<b>:{asha}"), "entry 1 must start with a name"),
    ];
    for (value, problem) in &bad {
        let e = err(&[("RECONCILER_CONSOLE__USERS", value)]);
        assert_eq!(e.key(), Some("console.users"), "{e}");
        assert!(e.to_string().contains(problem), "{value}: {e}");
        assert!(
            !e.to_string().contains("not-a-hash") && !e.to_string().contains(&asha),
            "{e}"
        );
    }
    let e = err(&[("RECONCILER_CONSOLE__TRUSTED_PROXIES", "localhost")]);
    assert_eq!(e.key(), Some("console.trusted_proxies"), "{e}");
    // A variable written as a TOML array: a hash's own commas (`m=19456,t=2,p=1`) stay in it.
    for users in [
        format!("[\"asha:{asha}\", \"ravi:{ravi}\"]"),
        format!("[\"asha:{asha}\",\"ravi:{ravi}\"]"),
    ] {
        let s = load(&[("RECONCILER_CONSOLE__USERS", &users)]).expect("a list of two users");
        assert_eq!(s.console.users[1].hash.expose_secret(), ravi, "{users}");
    }
    let s = load(&[("RECONCILER_CONSOLE__TRUSTED_PROXIES", "[\"10.0.0.1\", \"::1\"]")]).expect("valid");
    assert_eq!(s.console.trusted_proxies.len(), 2);
}
