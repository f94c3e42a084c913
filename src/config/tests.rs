//! Unit tests of `src/config.rs`.

use super::values::redact_mongo_uri;
use super::*;
use std::collections::HashMap;

const SALT: &str = "S3CRET-salt-0f9e8d";

/// The required seed variables, plus `extra`.
pub(super) fn env_with(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("PHONEPE_MERCHANT_ID", "MERCHANTUAT"),
        ("PHONEPE_SALT_KEY", SALT),
        ("PHONEPE_SALT_INDEX", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

pub(super) fn load_with(
    base: Option<&Path>,
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    let names: Vec<String> = env.keys().filter(|k| k.starts_with(ENV_PREFIX)).cloned().collect();
    load_from(base, file, &|k| env.get(k).cloned(), &names)
}

pub(super) fn load_env(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_with(None, None, &env_with(extra))
}

pub(super) fn err(extra: &[(&str, &str)]) -> ConfigError {
    match load_env(extra) {
        Ok(_) => panic!("expected an error for {extra:?}"),
        Err(e) => e,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn defaults_load_with_the_required_env_set() {
    let s = load_env(&[]).expect("defaults are valid");
    assert_eq!(s.mongodb.uri.expose(), "mongodb://127.0.0.1:27017/shop");
    assert_eq!(s.mongodb.database, "shop");
    assert_eq!(s.phonepe.base_url, "https://api-preprod.phonepe.com/apis/pg-sandbox");
    assert_eq!(s.phonepe.merchant_id, "MERCHANTUAT");
    assert_eq!(s.phonepe.salt_key.as_ref().unwrap().expose(), SALT);
    assert_eq!(s.phonepe.salt_index, Some(1));
    assert_eq!(s.phonepe.request_timeout, Duration::from_secs(10));
    assert_eq!(s.job.interval, Duration::from_secs(60));
    assert_eq!(s.job.lookback, Duration::from_secs(300));
    assert_eq!(s.job.max_orders_per_run, 20);
    assert_eq!(s.job.rate_limit_per_minute, 30);
    assert_eq!(s.job.pending_timeout, Duration::from_secs(1800));
    assert_eq!(s.job.late_payment_watch, Duration::from_secs(86400));
    assert_eq!(s.job.lease_ttl, Duration::from_secs(300));
    assert_eq!(s.job.reconcilers, 4);
    assert_eq!(s.job.unreadable_max_attempts, 8);
    assert_eq!(s.job.commit_strategy, CommitStrategy::Auto);
    assert_eq!(s.supervisor.max_restarts, 5);
    assert_eq!(s.supervisor.restart_window, Duration::from_secs(60));
    assert_eq!(s.ops.listen, Some("127.0.0.1:9464".parse().expect("addr")));
    assert_eq!(s.log.level, "info");
    assert_eq!(s.log.format, LogFormat::Auto);
}

#[test]
fn secrets_are_required_and_the_error_says_which_variable_to_set() {
    let env: HashMap<String, String> = HashMap::new();
    let e = load_with(None, None, &env).expect_err("merchant id missing");
    assert_eq!(
        e.to_string(),
        "phonepe.merchant_id is required (set PHONEPE_MERCHANT_ID)"
    );
    let mut env = env_with(&[]);
    env.remove("PHONEPE_SALT_KEY");
    let e = load_with(None, None, &env).expect_err("salt key missing");
    assert_eq!(e.to_string(), "phonepe.salt_key is required (set PHONEPE_SALT_KEY)");
    let mut env = env_with(&[]);
    env.insert("PHONEPE_SALT_INDEX".into(), String::new()); // empty seed var = unset
    let e = load_with(None, None, &env).expect_err("salt index missing");
    assert_eq!(e.to_string(), "phonepe.salt_index is required (set PHONEPE_SALT_INDEX)");
}

#[test]
fn each_layer_overrides_the_previous() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "config/default.toml",
        "[job]\ninterval_secs = 11\nlookback_secs = 12\nreconcilers = 13\n[log]\nlevel = \"warn\"\n",
    );
    write(
        dir.path(),
        "config/staging.toml",
        "[job]\nlookback_secs = 22\nreconcilers = 23\n[log]\nlevel = \"debug\"\n",
    );
    let env = env_with(&[
        ("APP_ENV", "staging"),
        ("LOG_LEVEL", "trace"),
        ("RECONCILER_JOB__RECONCILERS", "33"),
        ("RECONCILER_LOG__FORMAT", "json"),
        ("LOG_FORMAT", "pretty"),
    ]);
    let s = load_with(Some(dir.path()), None, &env).expect("valid");
    assert_eq!(
        s.job.interval,
        Duration::from_secs(11),
        "cwd default.toml over built-in"
    );
    assert_eq!(s.job.lookback, Duration::from_secs(22), "env file over default.toml");
    assert_eq!(s.log.level, "trace", "seed env over env file");
    assert_eq!(s.job.reconcilers, 33, "RECONCILER_ env over env file");
    assert_eq!(s.log.format, LogFormat::Json, "RECONCILER_ env over seed env");
    assert_eq!(
        s.job.rate_limit_per_minute, 30,
        "built-in default where nothing overrides"
    );
}

#[test]
fn node_env_production_picks_production_toml_and_app_env_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = include_str!("../../config/production.toml");
    write(dir.path(), "config/production.toml", shipped);
    write(dir.path(), "config/staging.toml", "[log]\nformat = \"pretty\"\n");
    let s = load_with(Some(dir.path()), None, &env_with(&[("NODE_ENV", "production")])).expect("valid");
    assert_eq!(s.phonepe.base_url, "https://api.phonepe.com/apis/hermes");
    assert_eq!(s.log.format, LogFormat::Json);
    let env = env_with(&[("NODE_ENV", "production"), ("APP_ENV", "staging")]);
    let s = load_with(Some(dir.path()), None, &env).expect("valid");
    assert_eq!(s.log.format, LogFormat::Pretty);
    assert_eq!(s.phonepe.base_url, "https://api-preprod.phonepe.com/apis/pg-sandbox");
    // An env without a file is fine (NODE_ENV=development is common).
    load_with(Some(dir.path()), None, &env_with(&[("NODE_ENV", "development")])).expect("valid");
    let e = load_with(Some(dir.path()), None, &env_with(&[("APP_ENV", "../etc")])).expect_err("path");
    assert_eq!(e.key(), Some("APP_ENV"));
}

#[test]
fn an_explicit_config_file_replaces_discovery_and_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "config/default.toml", "[job]\ninterval_secs = 11\n");
    let file = write(dir.path(), "mine.toml", "[job]\nlookback_secs = 7\n");
    let s = load_with(Some(dir.path()), Some(&file), &env_with(&[])).expect("valid");
    assert_eq!(s.job.lookback, Duration::from_secs(7));
    assert_eq!(
        s.job.interval,
        Duration::from_secs(60),
        "cwd files are not read with --config"
    );
    let missing = dir.path().join("nope.toml");
    let e = load_with(None, Some(&missing), &env_with(&[])).expect_err("missing file");
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn unknown_sections_and_keys_are_errors_naming_them_and_their_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "a.toml", "[job]\nintervl_secs = 5\n");
    let e = load_with(None, Some(&file), &env_with(&[])).expect_err("typo");
    assert_eq!(e.key(), Some("job.intervl_secs"));
    assert!(
        e.to_string().contains("a.toml") && e.to_string().contains("did you mean interval_secs"),
        "{e}"
    );
    let file = write(dir.path(), "b.toml", "[jobs]\ninterval_secs = 5\n");
    let e = load_with(None, Some(&file), &env_with(&[])).expect_err("typo");
    assert_eq!(e.key(), Some("jobs"));
    let e = err(&[("RECONCILER_JOB__INTERVALSECS", "5")]);
    assert_eq!(e.key(), Some("job.intervalsecs"));
    assert!(e.to_string().contains("env RECONCILER_JOB__INTERVALSECS"), "{e}");
    // RECONCILER_ variables that are not SECTION__KEY are not config keys.
    load_env(&[("RECONCILER_TEST_SEED", "1")]).expect("ignored");
}

#[test]
fn wrong_types_name_the_key_and_layer() {
    let e = err(&[("RECONCILER_JOB__INTERVAL_SECS", "soon")]);
    assert_eq!(e.key(), Some("job.interval_secs"));
    assert!(e.to_string().contains("env RECONCILER_JOB__INTERVAL_SECS"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "t.toml", "[job]\nreconcilers = \"four\"\n[phonepe]\n");
    let e = load_with(None, Some(&file), &env_with(&[])).expect_err("type");
    assert_eq!(e.key(), Some("job.reconcilers"));
    let file = write(dir.path(), "n.toml", "[job]\nlookback_secs = -1\n");
    let e = load_with(None, Some(&file), &env_with(&[])).expect_err("negative");
    assert_eq!(e.key(), Some("job.lookback_secs"));
    let file = write(dir.path(), "s.toml", "job = 5\n");
    let e = load_with(None, Some(&file), &env_with(&[])).expect_err("not a table");
    assert_eq!(e.key(), Some("job"));
}

#[test]
fn every_validation_error_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("RECONCILER_JOB__INTERVAL_SECS", "0", "job.interval_secs"),
        (
            "RECONCILER_JOB__RATE_LIMIT_PER_MINUTE",
            "0",
            "job.rate_limit_per_minute",
        ),
        ("RECONCILER_JOB__RECONCILERS", "0", "job.reconcilers"),
        ("RECONCILER_JOB__RECONCILERS", "257", "job.reconcilers"),
        ("RECONCILER_JOB__MAX_ORDERS_PER_RUN", "0", "job.max_orders_per_run"),
        ("RECONCILER_JOB__PENDING_TIMEOUT_SECS", "0", "job.pending_timeout_secs"),
        (
            "RECONCILER_JOB__UNREADABLE_MAX_ATTEMPTS",
            "0",
            "job.unreadable_max_attempts",
        ),
        ("RECONCILER_JOB__LEASE_TTL_SECS", "19", "job.lease_ttl_secs"),
        ("RECONCILER_JOB__COMMIT_STRATEGY", "yolo", "job.commit_strategy"),
        (
            "RECONCILER_JOB__MAX_ORDERS_PER_RUN",
            "4294967296",
            "job.max_orders_per_run",
        ),
        ("PHONEPE_SALT_INDEX", "0", "phonepe.salt_index"),
        ("PHONEPE_MERCHANT_ID", "has space", "phonepe.merchant_id"),
        (
            "PHONEPE_MERCHANT_ID",
            "M123456789012345678901234567890123456789",
            "phonepe.merchant_id",
        ),
        ("RECONCILER_PHONEPE__MERCHANT_ID", "", "phonepe.merchant_id"),
        ("RECONCILER_PHONEPE__SALT_KEY", " ", "phonepe.salt_key"),
        (
            "RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS",
            "0",
            "phonepe.request_timeout_secs",
        ),
        ("PHONEPE_BASE_URL", "ftp://example.com", "phonepe.base_url"),
        ("PHONEPE_BASE_URL", "https://example.com/x?y=1", "phonepe.base_url"),
        ("MONGODB_URI", "postgres://h/shop", "mongodb.uri"),
        ("MONGODB_URI", "mongodb://h:27017", "mongodb.uri"),
        ("MONGODB_URI", "mongodb://h:27017/?replicaSet=rs0", "mongodb.uri"),
        ("RECONCILER_SUPERVISOR__MAX_RESTARTS", "0", "supervisor.max_restarts"),
        (
            "RECONCILER_SUPERVISOR__RESTART_WINDOW_SECS",
            "0",
            "supervisor.restart_window_secs",
        ),
        ("RECONCILER_OPS__LISTEN", "localhost", "ops.listen"),
        ("LOG_LEVEL", "info,[[[", "log.level"),
        ("LOG_FORMAT", "xml", "log.format"),
    ];
    for (var, value, key) in cases {
        let e = err(&[(var, value)]);
        assert_eq!(e.key(), Some(*key), "{var}={value}: {e}");
        assert!(e.to_string().contains(key), "{var}={value}: {e}");
        assert!(
            e.to_string().contains(&format!("env {var}")),
            "{var}={value} names its layer: {e}"
        );
    }
    // Lower bounds that are allowed: tests use small values.
    let s = load_env(&[
        ("RECONCILER_JOB__PENDING_TIMEOUT_SECS", "1"),
        ("RECONCILER_JOB__LOOKBACK_SECS", "0"),
    ]);
    assert!(s.is_ok());
}

#[test]
fn uri_database_base_url_and_listen_are_parsed() {
    let s = load_env(&[
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
    assert_eq!(mongo_database("mongodb://h:1/shop?x=y"), Ok("shop"));
    assert_eq!(mongo_database("mongodb://a:1,b:2/shop"), Ok("shop"));
}

#[test]
fn redacted_toml_hides_secrets_and_round_trips() {
    let uri = "mongodb://admin:hunter2pw@db.example.com:27017/shop?authSource=admin&tlsCertificateKeyFilePassword=kfp";
    let s = load_env(&[("MONGODB_URI", uri)]).expect("valid");
    let out = s.redacted_toml();
    assert!(out.contains("salt_key = \"***\""), "{out}");
    assert!(out.contains("uri = \"mongodb://admin:***@db.example.com:27017/shop?authSource=admin&tlsCertificateKeyFilePassword=***\""), "{out}");
    assert!(
        !out.contains(SALT) && !out.contains("hunter2pw") && !out.contains("kfp"),
        "{out}"
    );
    // Every key is printed (but the other API version's credentials), and the output is itself a
    // valid config (minus the redacted secrets).
    let parsed: toml::Table = out.parse().expect("valid TOML");
    let v2_only = [
        "phonepe.client_id",
        "phonepe.client_secret",
        "phonepe.client_version",
        "webhook.username",
        "webhook.password",
    ];
    for key in schema().iter().filter(|k| !v2_only.contains(&k.as_str())) {
        let mut at: Option<&toml::Value> = None;
        let mut table = Some(&parsed);
        for part in key.split('.') {
            at = table.and_then(|t| t.get(part));
            table = at.and_then(toml::Value::as_table);
        }
        assert!(at.is_some(), "{key} missing from\n{out}");
    }
    assert!(
        out.starts_with("[mongodb]\nuri = \"mongodb://admin:***@db.example.com:27017/shop?authSource=admin&tlsCertificateKeyFilePassword=***\"\n# database = \"shop\"\n\n[phonepe]\n"),
        "the database follows the URI as a comment: {out}"
    );
    assert!(
        out.contains("\nrequest_timeout_secs = 10\n")
            && out.contains("[log]\nlevel = \"info\"\nformat = \"auto\"\n")
            && out.contains("[webhook]\nlisten = \"\"\nconfirm_with_status_api = false\n")
            && out.contains("[refunds]\nauto = []\npoll_interval_secs = 60\n")
            && out.contains("[schema.orders]\ncollection = \"orders\"\n")
            && out.ends_with("size_stock = \"stock\"\n"),
        "{out}"
    );
    assert_eq!(redact_mongo_uri("mongodb://h:1/db"), "mongodb://h:1/db");
    assert_eq!(redact_mongo_uri("mongodb://user@h/db"), "mongodb://user@h/db");
}

#[test]
fn the_salt_key_never_appears_in_debug_output_or_errors() {
    let s = load_env(&[]).expect("valid");
    assert!(!format!("{s:?}").contains(SALT));
    assert!(
        !format!("{:?}", s.mongodb).contains("127.0.0.1"),
        "the URI is a Secret too"
    );
    assert!(!s.redacted_toml().contains(SALT));
    // Errors about the secret keys themselves, from files and env, never quote the value.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_files = [
        format!("[phonepe]\nsalt_key = [\"{SALT}\"]\n"),
        format!("[phonepe]\nsalt_key = \"{SALT}\n"),
        format!("[phonepe]\nsalt_key = {SALT}\n"),
        format!("[phonepe]\nsalt_key = \"{SALT}\"\nsalt_key = \"{SALT}\"\n"),
        format!("[phonepe]\nsalt_key = \"{SALT}\"\nbogus = 1\n"),
    ];
    for (i, text) in bad_files.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.toml"), text);
        let e = load_with(None, Some(&file), &env_with(&[])).expect_err("bad file");
        assert!(!e.to_string().contains(SALT) && !format!("{e:?}").contains(SALT), "{e}");
    }
    // A secret mistyped as a number is not echoed either.
    let file = write(dir.path(), "num.toml", "[phonepe]\nsalt_key = 98765432123\n");
    let e = load_with(None, Some(&file), &env_with(&[])).expect_err("not a string");
    assert_eq!(e.key(), Some("phonepe.salt_key"));
    assert!(!e.to_string().contains("98765432123"), "{e}");
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
    assert_eq!(s.mongodb.database, "rt_test_1");
    assert_eq!(s.phonepe.merchant_id, "MERCHANTUAT");
    assert_eq!(s.phonepe.salt_key.as_ref().unwrap().expose(), "test-salt-key");
    assert_eq!(s.phonepe.salt_index, Some(1));
    assert_eq!(s.ops.listen, None);
    assert_eq!(s.phonepe.base_url, "http://127.0.0.1:9999");
}

/// A lookup over `env` that offers no names, as [`load`] does: keys are found by their derived
/// variable names alone.
fn load_by_lookup(env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    load_from(None, None, &|k| env.get(k).cloned(), &[])
}

#[test]
fn every_key_is_read_from_its_derived_variable_and_checked_there() {
    let keys = schema();
    assert_eq!(keys.len(), 34 + 28, "{keys:?}"); // 28 in [schema]
    assert!(keys.iter().any(|k| k == "phonepe.salt_key") && !keys.iter().any(|k| k == "mongodb.database"));
    assert!(keys.iter().any(|k| k == "settlement.expected_within_days"));
    for key in keys {
        let var = env_var(key);
        assert_eq!(env_key(&var).as_deref(), Some(key.as_str()));
        let bad = match key.as_str() {
            "phonepe.salt_key" | "phonepe.client_id" | "phonepe.client_secret" => " ",
            "ops.listen" | "webhook.listen" => "nope",
            // Empty is unset for these: a lone one is the error, named by its missing partner.
            "webhook.username" | "webhook.password" => continue,
            "log.level" => "info,[[[",
            // A collection or a field path starting with `$`; a state's word shared with another.
            k if k.starts_with("schema.orders.status_values.") => {
                if k.ends_with(".draft") {
                    "confirmed"
                } else {
                    "draft"
                }
            }
            k if k.starts_with("schema.orders.payment_status_values.") => {
                if k.ends_with(".pending") {
                    "paid"
                } else {
                    "pending"
                }
            }
            k if k.starts_with("schema.") && !k.ends_with("amount_unit") => "$x",
            _ => "[[ x",
        };
        let e = load_by_lookup(&env_with(&[(&var, bad)])).expect_err(&var);
        assert_eq!(e.key(), Some(key.as_str()), "{e}");
        assert!(e.to_string().contains(&format!("(from env {var})")), "{e}");
    }
}

#[test]
fn variables_are_read_as_the_key_type_and_text_keys_stay_text() {
    let s = load_by_lookup(&env_with(&[
        ("PHONEPE_MERCHANT_ID", "12345"),
        ("RECONCILER_JOB__SIZED_ITEMS_DECREMENT_TOTAL", "true"),
        ("RECONCILER_JOB__RECONCILERS", "64"),
        ("RECONCILER_LOG__LEVEL", "1"),
    ]))
    .expect("valid");
    assert_eq!(s.phonepe.merchant_id, "12345");
    assert!(s.job.sized_items_decrement_total);
    assert_eq!(s.job.reconcilers, 64);
    assert_eq!(s.log.level, "1");
    let e = load_by_lookup(&env_with(&[("RECONCILER_JOB__SIZED_ITEMS_DECREMENT_TOTAL", "maybe")])).expect_err("flag");
    assert_eq!(e.key(), Some("job.sized_items_decrement_total"));
}

#[test]
fn a_bad_value_is_an_error_even_when_a_later_layer_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "o.toml", "[job]\nreconcilers = 0\n");
    let env = env_with(&[("RECONCILER_JOB__RECONCILERS", "4")]);
    let e = load_with(None, Some(&file), &env).expect_err("file value is bad");
    assert_eq!(e.key(), Some("job.reconcilers"));
    assert!(e.to_string().contains("o.toml"), "{e}");
    let file = write(dir.path(), "p.toml", "[job]\nreconcilers = 8\n");
    let s = load_with(None, Some(&file), &env).expect("valid");
    assert_eq!(s.job.reconcilers, 4, "the variable still wins");
}

#[test]
fn an_unknown_variable_is_answered_with_the_nearest_variable() {
    let e = err(&[("RECONCILER_JOB__INTERVALSECS", "5")]);
    assert!(
        e.to_string().contains("(did you mean RECONCILER_JOB__INTERVAL_SECS?)"),
        "{e}"
    );
    let e = err(&[("RECONCILER_JOBS__INTERVAL_SECS", "5")]);
    assert_eq!(e.key(), Some("jobs"));
    assert!(e.to_string().contains("env RECONCILER_JOBS__INTERVAL_SECS"), "{e}");
}

#[test]
fn errors_read_as_one_line_naming_key_reason_and_layer() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "RECONCILER_JOB__RECONCILERS",
            "0",
            "job.reconcilers must be between 1 and 256, got 0 (from env RECONCILER_JOB__RECONCILERS)",
        ),
        (
            "RECONCILER_JOB__INTERVAL_SECS",
            "0",
            "job.interval_secs must be at least 1, got 0 (from env RECONCILER_JOB__INTERVAL_SECS)",
        ),
        (
            "LOG_FORMAT",
            "xml",
            "log.format must be one of \"auto\", \"pretty\", \"json\", got \"xml\" (from env LOG_FORMAT)",
        ),
        (
            "RECONCILER_JOB__INTERVALSECS",
            "5",
            "unknown config key job.intervalsecs in env RECONCILER_JOB__INTERVALSECS \
             (did you mean RECONCILER_JOB__INTERVAL_SECS?)",
        ),
    ];
    for (var, value, message) in cases {
        assert_eq!(err(&[(var, value)]).to_string(), *message);
    }
}

#[test]
fn a_missing_key_is_named_by_its_full_path() {
    let missing = |path: &str, name: &'static str| {
        let e = figment::Error::from(figment::error::Kind::MissingField(name.into()));
        let e = if path.is_empty() { e } else { e.with_path(path) };
        ConfigError::from_figment(&Figment::new(), e).to_string()
    };
    assert_eq!(
        missing("", "webhook"),
        "webhook is required (set webhook in a config file)"
    );
    assert_eq!(
        missing("phonepe", "salt_index"),
        "phonepe.salt_index is required (set PHONEPE_SALT_INDEX)"
    );
}
