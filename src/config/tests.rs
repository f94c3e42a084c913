//! Unit tests of `src/config`: layers, errors, secrets. Each loads in a figment [`Jail`]: a
//! fresh working directory, the process variables the config reads cleared, all restored after.

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;

use super::load::SEED;
use super::*;

pub(super) const SALT: &str = "S3CRET-salt-0f9e8d";
const REQUIRED: [(&str, &str); 3] = [
    ("PHONEPE_MERCHANT_ID", "MERCHANTUAT"),
    ("PHONEPE_SALT_KEY", SALT),
    ("PHONEPE_SALT_INDEX", "1"),
];

/// `Settings::from_env(config)` with `files` in the working directory, the required seed
/// variables and then `vars` set (an empty seed variable is unset).
#[allow(clippy::result_large_err)] // the error type of figment's Jail closure
pub(super) fn load_in(
    files: &[(&str, &str)],
    config: Option<&str>,
    vars: &[(&str, &str)],
) -> Result<Settings, ConfigError> {
    let mut result = None;
    Jail::expect_with(|jail| {
        let read = |k: &str| k.starts_with("RECONCILER_") && k.contains("__") || SEED.iter().any(|(v, _)| *v == k);
        for (var, _) in std::env::vars().filter(|(k, _)| read(k) || k == "APP_ENV" || k == "NODE_ENV") {
            jail.set_env(&var, ""); // restored when the jail ends
            std::env::remove_var(&var);
        }
        jail.create_dir("config")?;
        for (path, text) in files {
            jail.create_file(path, text)?;
        }
        for (var, value) in REQUIRED.iter().chain(vars) {
            jail.set_env(var, value);
        }
        result = Some(Settings::from_env(config.map(Path::new)));
        Ok(())
    });
    result.expect("the jail ran")
}

impl ConfigError {
    /// The key (or variable) the error is about, if it is about one.
    pub(super) fn key(&self) -> Option<&str> {
        Some(self.0.as_str()).filter(|key| !key.is_empty())
    }
}

pub(super) fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_in(&[], None, vars)
}

pub(super) fn err(vars: &[(&str, &str)]) -> ConfigError {
    load(vars).map(|_| ()).expect_err(&format!("an error for {vars:?}"))
}

fn file_err(text: &str) -> ConfigError {
    load_in(&[("bad.toml", text)], Some("bad.toml"), &[])
        .map(|_| ())
        .expect_err(text)
}

#[test]
fn the_built_in_defaults_with_the_required_variables_are_the_documented_ones() {
    let s = load(&[]).expect("defaults are valid");
    assert_eq!(
        (s.mongodb.uri.expose_secret(), s.mongodb.database.as_str()),
        ("mongodb://127.0.0.1:27017/shop", "shop")
    );
    assert_eq!(s.phonepe.base_url, "https://api-preprod.phonepe.com/apis/pg-sandbox");
    assert_eq!(s.phonepe.salt_key.as_ref().map(|k| k.expose_secret()), Some(SALT));
    let (j, secs) = (&s.job, Duration::from_secs);
    assert_eq!(
        (s.phonepe.request_timeout, j.interval, j.lookback),
        (secs(10), secs(60), secs(300))
    );
    assert_eq!(
        (j.pending_timeout, j.late_payment_watch, j.lease_ttl),
        (secs(1800), secs(86400), secs(300))
    );
    assert_eq!(
        (
            j.max_orders_per_run,
            j.rate_limit_per_minute,
            j.reconcilers,
            j.unreadable_max_attempts
        ),
        (20, 30, 4, 8)
    );
    assert_eq!(
        (j.commit_strategy, j.sized_items_decrement_total),
        (CommitStrategy::Auto, false)
    );
    assert_eq!((s.supervisor.max_restarts, s.supervisor.restart_window), (5, secs(60)));
    assert_eq!(s.ops.listen, Some("127.0.0.1:9464".parse().expect("addr")));
    assert_eq!((s.log.level.as_str(), s.log.format), ("info", LogFormat::Auto));
    assert_eq!((s.refunds.auto.len(), s.refunds.poll_interval), (0, secs(60)));
}

#[test]
fn secrets_have_no_default_and_the_error_says_which_variable_to_set() {
    let e = err(&[("PHONEPE_MERCHANT_ID", "")]);
    assert_eq!(
        e.to_string(),
        "phonepe.merchant_id is required (set PHONEPE_MERCHANT_ID)"
    );
    let e = err(&[("PHONEPE_SALT_KEY", "")]);
    assert_eq!(e.to_string(), "phonepe.salt_key is required (set PHONEPE_SALT_KEY)");
    let e = err(&[("PHONEPE_SALT_INDEX", "")]);
    assert_eq!(e.to_string(), "phonepe.salt_index is required (set PHONEPE_SALT_INDEX)");
}

#[test]
fn each_layer_overrides_the_previous() {
    let files = [
        (
            "config/default.toml",
            "[job]\ninterval_secs = 11\nlookback_secs = 12\nreconcilers = 13\n[log]\nlevel = \"warn\"\n",
        ),
        (
            "config/staging.toml",
            "[job]\nlookback_secs = 22\nreconcilers = 23\n[log]\nlevel = \"debug\"\n",
        ),
    ];
    let vars = [
        ("APP_ENV", "staging"),
        ("LOG_LEVEL", "trace"),
        ("RECONCILER_JOB__RECONCILERS", "33"),
        ("RECONCILER_LOG__FORMAT", "json"),
        ("LOG_FORMAT", "pretty"),
    ];
    let s = load_in(&files, None, &vars).expect("valid");
    assert_eq!(
        s.job.interval,
        Duration::from_secs(11),
        "./config/default.toml over built-in"
    );
    assert_eq!(s.job.lookback, Duration::from_secs(22), "env file over default.toml");
    assert_eq!(s.log.level, "trace", "seed variable over env file");
    assert_eq!(s.job.reconcilers, 33, "RECONCILER_ variable over env file");
    assert_eq!(s.log.format, LogFormat::Json, "RECONCILER_ variable over seed variable");
    assert_eq!(
        s.job.rate_limit_per_minute, 30,
        "built-in default where nothing overrides"
    );
}

#[test]
fn node_env_production_picks_production_toml_and_app_env_wins() {
    let files = [
        ("config/production.toml", include_str!("../../config/production.toml")),
        ("config/staging.toml", "[log]\nformat = \"pretty\"\n"),
    ];
    let s = load_in(&files, None, &[("NODE_ENV", "production")]).expect("valid");
    assert_eq!(
        (s.phonepe.base_url.as_str(), s.log.format),
        ("https://api.phonepe.com/apis/hermes", LogFormat::Json)
    );
    let s = load_in(&files, None, &[("NODE_ENV", "production"), ("APP_ENV", "staging")]).expect("valid");
    assert_eq!(s.log.format, LogFormat::Pretty);
    assert_eq!(s.phonepe.base_url, "https://api-preprod.phonepe.com/apis/pg-sandbox");
    load_in(&files, None, &[("NODE_ENV", "development")]).expect("an env without a file is fine");
    let e = load_in(&files, None, &[("APP_ENV", "../etc")])
        .map(|_| ())
        .expect_err("a path");
    assert_eq!(e.key(), Some("APP_ENV"));
}

#[test]
fn an_explicit_config_file_replaces_discovery_and_must_exist() {
    let files = [
        ("config/default.toml", "[job]\ninterval_secs = 11\n"),
        ("mine.toml", "[job]\nlookback_secs = 7\n"),
    ];
    let s = load_in(&files, Some("mine.toml"), &[]).expect("valid");
    assert_eq!(s.job.lookback, Duration::from_secs(7));
    assert_eq!(
        s.job.interval,
        Duration::from_secs(60),
        "./config files are not read with --config"
    );
    let e = load_in(&[], Some("nope.toml"), &[])
        .map(|_| ())
        .expect_err("missing file");
    assert!(e.to_string().starts_with("cannot read file nope.toml: "), "{e}");
}

#[test]
fn unknown_sections_keys_and_variables_are_errors_with_the_nearest_name() {
    let e = file_err("[job]\nintervl_secs = 5\n");
    assert_eq!(
        e.to_string(),
        "unknown config key job.intervl_secs in file bad.toml (did you mean interval_secs?)"
    );
    let e = file_err("[jobs]\ninterval_secs = 5\n");
    assert_eq!(
        e.to_string(),
        "unknown config section jobs in file bad.toml (did you mean job?)"
    );
    let e = err(&[("RECONCILER_JOB__INTERVALSECS", "5")]);
    let text = "unknown config key job.intervalsecs in env RECONCILER_JOB__INTERVALSECS";
    assert_eq!(
        e.to_string(),
        format!("{text} (did you mean RECONCILER_JOB__INTERVAL_SECS?)")
    );
    let e = err(&[("RECONCILER_JOBS__INTERVAL_SECS", "5")]);
    let text = "unknown config section jobs in env RECONCILER_JOBS__INTERVAL_SECS";
    assert_eq!(
        e.to_string(),
        format!("{text} (did you mean RECONCILER_JOB__INTERVAL_SECS?)")
    );
    let e = err(&[("RECONCILER_SCHEMA__ORDERS__COLLECTON", "x")]);
    assert!(
        e.to_string()
            .ends_with("(did you mean RECONCILER_SCHEMA__ORDERS__COLLECTION?)"),
        "{e}"
    );
    load(&[("RECONCILER_TEST_SEED", "1")]).expect("RECONCILER_ variables without SECTION__KEY are not keys");
}

#[test]
fn a_bad_value_names_its_key_and_layer_in_one_line() {
    let cases = [
        ("RECONCILER_JOB__RECONCILERS", "0", "must be between 1 and 256, got 0"),
        (
            "RECONCILER_JOB__RECONCILERS",
            "257",
            "must be between 1 and 256, got 257",
        ),
        ("RECONCILER_JOB__INTERVAL_SECS", "0", "must be at least 1, got 0"),
        (
            "RECONCILER_JOB__INTERVAL_SECS",
            "soon",
            "must be at least 1, got \"soon\"",
        ),
        (
            "RECONCILER_JOB__LOOKBACK_SECS",
            "-1",
            "must be a non-negative integer, got -1",
        ),
        (
            "RECONCILER_JOB__MAX_ORDERS_PER_RUN",
            "4294967296",
            "must be an integer from 1 to 4294967295, got 4294967296",
        ),
        (
            "RECONCILER_LOG__FORMAT",
            "xml",
            "must be one of \"auto\", \"pretty\", \"json\", got \"xml\"",
        ),
        (
            "RECONCILER_JOB__SIZED_ITEMS_DECREMENT_TOTAL",
            "maybe",
            "must be true or false, got \"maybe\"",
        ),
        (
            "RECONCILER_JOB__LEASE_TTL_SECS",
            "19",
            "must be at least 2 × phonepe.request_timeout_secs (20) so a lease outlives a round trip, got 19",
        ),
        (
            "RECONCILER_SETTLEMENT__EXPECTED_WITHIN_DAYS",
            "31",
            "must be between 0 and 30, got 31",
        ),
        (
            "RECONCILER_CONSOLE__TRUSTED_PROXIES",
            "10.0.0.1, proxy.local",
            "must list IP addresses like \"127.0.0.1\", got \"proxy.local\"",
        ),
        (
            "RECONCILER_EVENTS__RETRY_SECS",
            "5,0",
            "must be a list of whole seconds, each at least 1, like [5, 30, 120], got \"0\"",
        ),
        (
            "RECONCILER_REFUNDS__AUTO",
            "paid_after_cancel,typo",
            "names `typo`, which is not a review reason (see README.md, decision table)",
        ),
    ];
    for (var, value, reason) in cases {
        let key = var["RECONCILER_".len()..].replace("__", ".").to_lowercase();
        assert_eq!(
            err(&[(var, value)]).to_string(),
            format!("{key} {reason} (from env {var})")
        );
    }
    assert_eq!(
        file_err("job = 5\n").to_string(),
        "job must be a table ([section]), got 5 (from file bad.toml)"
    );
    // Lower bounds that are allowed: tests use small values.
    load(&[
        ("RECONCILER_JOB__PENDING_TIMEOUT_SECS", "1"),
        ("RECONCILER_JOB__LOOKBACK_SECS", "0"),
    ])
    .expect("valid");
}

#[test]
fn every_key_is_read_from_its_variable_and_checked_there() {
    // Every key `config` prints with v2 and the webhook credentials set, as a variable.
    let v2 = load(&tests_api::V2_WITH_WEBHOOK).expect("valid").redacted_toml();
    let mut keys = Vec::new();
    fn walk(prefix: &str, table: &toml::Table, keys: &mut Vec<String>) {
        for (name, value) in table {
            let key = format!("{prefix}{name}");
            match value.as_table() {
                Some(inner) => walk(&format!("{key}."), inner, keys),
                None => keys.push(key),
            }
        }
    }
    walk("", &v2.parse().expect("TOML"), &mut keys);
    // 29 in [schema]; events.secret and notify.slack_url print only when set (tests/tests_events.rs).
    assert_eq!(keys.len(), 43 + 29, "{keys:?}");
    for key in &keys {
        let bad = match key.as_str() {
            "phonepe.salt_key" | "phonepe.client_id" | "phonepe.client_secret" => " ",
            "ops.listen" | "webhook.listen" | "console.listen" => "nope",
            // Blank is unset for these: a lone one is the error, named by its missing partner.
            "webhook.username" | "webhook.password" => continue,
            "log.level" => "info,[[[",
            // A state's word shared with another; a collection or a field path starting with `$`.
            k if k.starts_with("schema.orders.status_values.") => {
                ["draft", "confirmed"][k.ends_with(".draft") as usize]
            }
            k if k.starts_with("schema.orders.payment_status_values.") => {
                ["pending", "paid"][k.ends_with(".pending") as usize]
            }
            k if k.starts_with("schema.") && !k.ends_with("amount_unit") => "$x",
            _ => "[[ x",
        };
        let var = format!("RECONCILER_{}", key.replace('.', "__").to_uppercase());
        let e = err(&[(&var, bad)]);
        assert_eq!(e.key(), Some(key.as_str()), "{e}");
        assert!(e.to_string().contains(&format!("(from env {var})")), "{e}");
    }
}

#[test]
fn variables_are_text_read_as_the_key_type() {
    let s = load(&[
        ("PHONEPE_MERCHANT_ID", "0123"),
        ("PHONEPE_SALT_KEY", "\"quoted\""),
        ("RECONCILER_JOB__SIZED_ITEMS_DECREMENT_TOTAL", "yes"),
        ("RECONCILER_WEBHOOK__CONFIRM_WITH_STATUS_API", "on"),
        ("RECONCILER_JOB__RECONCILERS", "64"),
        ("RECONCILER_LOG__LEVEL", "1"),
        (
            "RECONCILER_REFUNDS__AUTO",
            "[\"paid_after_cancel\", \"insufficient_stock\"]",
        ),
    ])
    .expect("valid");
    assert_eq!(s.phonepe.merchant_id, "0123", "text stays text");
    assert_eq!(
        s.phonepe.salt_key.as_ref().map(|k| k.expose_secret()),
        Some("\"quoted\"")
    );
    assert!(s.job.sized_items_decrement_total && s.webhook.confirm_with_status_api);
    assert_eq!((s.job.reconcilers, s.log.level.as_str()), (64, "1"));
    assert_eq!(s.refunds.auto, ["paid_after_cancel", "insufficient_stock"]);
}

#[test]
fn a_bad_value_is_an_error_even_when_a_later_layer_overrides_it() {
    let var = [("RECONCILER_JOB__RECONCILERS", "4")];
    let e = load_in(&[("o.toml", "[job]\nreconcilers = \"four\"\n")], Some("o.toml"), &var)
        .map(|_| ())
        .expect_err("bad file");
    assert_eq!(
        e.to_string(),
        "job.reconcilers must be an integer from 0 to 4294967295, got \"four\" (from file o.toml)"
    );
    let s = load_in(&[("p.toml", "[job]\nreconcilers = 8\n")], Some("p.toml"), &var).expect("valid");
    assert_eq!(s.job.reconcilers, 4, "the variable still wins");
    let e = err(&[("PHONEPE_SALT_INDEX", "zero"), ("RECONCILER_PHONEPE__SALT_INDEX", "2")]);
    assert!(e.to_string().ends_with("(from env PHONEPE_SALT_INDEX)"), "{e}");
}

#[test]
fn uri_database_base_url_and_listen_are_parsed() {
    let s = load(&[
        (
            "MONGODB_URI",
            "mongodb+srv://u:p@cluster.example.net/shop2?retryWrites=true",
        ),
        ("PHONEPE_BASE_URL", "http://127.0.0.1:8080/apis/pg-sandbox/"),
        ("RECONCILER_OPS__LISTEN", ""),
    ])
    .expect("valid");
    assert_eq!(s.mongodb.database, "shop2");
    assert_eq!(s.phonepe.base_url, "http://127.0.0.1:8080/apis/pg-sandbox");
    assert_eq!(s.ops.listen, None);
    assert_eq!(
        crate::store::settings::mongo_database("mongodb://a:1,b:2/shop?x=y"),
        Ok("shop")
    );
    // Blanks around a URL (an env file's CR) are trimmed; a password in one is never printed.
    let s = load(&[("PHONEPE_BASE_URL", " https://u:URLpw9@pg.example/apis/x/\r")]).expect("valid");
    assert_eq!(s.phonepe.base_url, "https://u:URLpw9@pg.example/apis/x");
    assert!(s
        .redacted_toml()
        .contains("base_url = \"https://u:***@pg.example/apis/x\""));
    let e = err(&[("PHONEPE_BASE_URL", "https://u:URLpw9@ex ample.com/x")]);
    assert!(
        e.to_string().contains("must not contain spaces") && !e.to_string().contains("URLpw9"),
        "{e}"
    );
    let e = err(&[("RECONCILER_JOB__INTERVAL_SECS", "315360001")]);
    assert!(e.to_string().contains("must be at most 315360000 (ten years)"), "{e}");
    let e = err(&[("RECONCILER_JOB__LOOKBACK_SECS", "18446744073709551615")]);
    assert_eq!(e.key(), Some("job.lookback_secs"), "{e}");
    for (var, value) in [
        ("PHONEPE_MERCHANT_ID", "has space"),
        ("PHONEPE_MERCHANT_ID", "M123456789012345678901234567890123456789"),
        ("RECONCILER_PHONEPE__MERCHANT_ID", ""),
        ("PHONEPE_BASE_URL", "ftp://example.com"),
        ("PHONEPE_BASE_URL", "https://example.com/x?y=1"),
        ("PHONEPE_BASE_URL", "https://ex ample.com/x"),
        ("MONGODB_URI", "mongodb://h:27017"),
        ("MONGODB_URI", "mongodb://h:27017/?replicaSet=rs0"),
    ] {
        let key = SEED
            .iter()
            .find(|(v, _)| *v == var)
            .map_or("phonepe.merchant_id", |(_, k)| k);
        assert_eq!(err(&[(var, value)]).key(), Some(key), "{var}={value}");
    }
}

#[test]
fn config_prints_every_key_with_secrets_redacted() {
    let uri = "mongodb://admin:hunter2pw@db.example.com:27017/shop?authSource=admin&tlsCertificateKeyFilePassword=kfp";
    let out = load(&[("MONGODB_URI", uri)]).expect("valid").redacted_toml();
    let printed = "mongodb://admin:***@db.example.com:27017/shop?authSource=admin&tlsCertificateKeyFilePassword=***";
    let head = format!("[mongodb]\nuri = \"{printed}\"\n# database = \"shop\"\n\n[phonepe]\napi_version = \"v1\"\n");
    assert!(
        out.starts_with(&head),
        "the database follows the URI as a comment: {out}"
    );
    assert!(
        out.contains("salt_key = \"***\"") && !out.contains(SALT) && !out.contains("hunter2pw") && !out.contains("kfp")
    );
    for section in [
        "\nrequest_timeout_secs = 10\n",
        "[log]\nlevel = \"info\"\nformat = \"auto\"\n",
        "[webhook]\nlisten = \"\"\nconfirm_with_status_api = false\n",
        "[refunds]\nauto = []\npoll_interval_secs = 60\n",
        "[schema.orders]\ncollection = \"orders\"\n",
    ] {
        assert!(out.contains(section), "{section} in {out}");
    }
    // The output is itself a valid config (the secrets aside).
    let printed = out.replace("salt_key = \"***\"\n", "").replace("***", "pw");
    let s = load_in(&[("printed.toml", &printed)], Some("printed.toml"), &[]).expect("valid");
    assert_eq!(s.redacted_toml(), out);
    let user_only = MongoSettings {
        uri: "mongodb://user@h/db?authSource=x".into(),
        database: String::new(),
    };
    assert_eq!(
        toml::to_string(&user_only).ok(),
        Some("uri = \"mongodb://user@h/db?authSource=x\"\n".into())
    );
}

#[test]
fn secrets_never_appear_in_debug_output_or_errors() {
    let s = load(&[]).expect("valid");
    assert!(!format!("{s:?}").contains(SALT) && !format!("{:?}", s.mongodb).contains("127.0.0.1"));
    // Errors about the secret keys themselves, from files and variables, never quote the value.
    for text in [
        format!("[phonepe]\nsalt_key = [\"{SALT}\"]\n"),
        format!("[phonepe]\nsalt_key = \"{SALT}\n"),
        format!("[phonepe]\nsalt_key = {SALT}\n"),
        format!("[phonepe]\nsalt_key = \"{SALT}\"\nsalt_key = \"{SALT}\"\n"),
        format!("[phonepe]\nsalt_key = \"{SALT}\"\nbogus = 1\n"),
        "[phonepe]\nsalt_key = 9876543212\n".to_string(),
    ] {
        let e = file_err(&text);
        assert!(!e.to_string().contains(SALT) && !format!("{e:?}").contains(SALT), "{e}");
        assert!(!e.to_string().contains("9876543212"), "{e}");
    }
    let pw = "mongo-pw-77x";
    for uri in [
        format!("mongodb://u:{pw}@h:1"),
        format!("postgres://u:{pw}@h/db"),
        format!("mongodb://u:{pw}@h/a.b"),
    ] {
        let e = err(&[("MONGODB_URI", &uri)]);
        assert_eq!(e.key(), Some("mongodb.uri"));
        assert!(!e.to_string().contains(pw) && !format!("{e:?}").contains(pw), "{e}");
    }
}

#[test]
fn for_tests_builds_valid_settings_without_reading_the_environment() {
    let s = Settings::for_tests("mongodb://127.0.0.1:5555/rt_test_1", "http://127.0.0.1:9999");
    assert_eq!(
        (s.mongodb.database.as_str(), s.phonepe.merchant_id.as_str()),
        ("rt_test_1", "MERCHANTUAT")
    );
    assert_eq!(
        s.phonepe.salt_key.as_ref().map(|k| k.expose_secret()),
        Some("test-salt-key")
    );
    assert_eq!((s.phonepe.salt_index, s.ops.listen), (Some(1), None));
    assert_eq!(s.phonepe.base_url, "http://127.0.0.1:9999");
}

mod tests_api;
mod tests_events;
