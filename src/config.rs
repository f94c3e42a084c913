//! Typed settings, layered and validated once at start.
//!
//! Layers, later wins (README.md, Configuration):
//!
//! 1. `config/default.toml`, embedded in the binary so the service runs with no files at all;
//! 2. `--config <file>` if given (it must exist); otherwise `config/default.toml` and then
//!    `config/<env>.toml` from the working directory when they exist, env being `APP_ENV`, else
//!    `NODE_ENV` (so PM2 ecosystem files with `NODE_ENV=production` keep working);
//! 3. the seed's variables: `MONGODB_URI`, `PHONEPE_MERCHANT_ID`, `PHONEPE_SALT_KEY`,
//!    `PHONEPE_SALT_INDEX`, `PHONEPE_BASE_URL`, `LOG_LEVEL`, `LOG_FORMAT` (empty means unset);
//! 4. `RECONCILER_<SECTION>__<KEY>` for every key, e.g. `RECONCILER_JOB__RATE_LIMIT_PER_MINUTE=600`.
//!
//! The schema is the serde derive of [`Settings`]: a field's serde name is its key, its variable
//! is derived from it ([`env_var`]), its `deserialize_with` function is its validation, so adding
//! a key is adding a field (plus its default in `config/default.toml`). Unknown sections and keys
//! are errors (`deny_unknown_fields`) with a "did you mean" hint. `figment` merges the layers and
//! remembers which one set each value, so every error is one line naming the key and that layer
//! (file path or variable). Every layer's values are checked, also those a later layer overrides.
//! Values are read leniently as the key's type, as variables are text: `"600"` is a number, and a
//! flag is `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`). Secrets ([`Secret`]) have no
//! defaults, print as `***`, and never appear in an error: errors about `phonepe.salt_key` or
//! `mongodb.uri` describe, never quote.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::domain::ReviewReason;
use crate::phonepe::oauth::{ApiVersion, PRODUCTION_PG_BASE_URL};
pub use values::{default_hosts, PRODUCTION_V1_BASE_URL};
use values::{mongo_database, webhook_checks};

mod errors;
mod settlement;
mod values;

pub use errors::ConfigError;
use errors::{missing, origin};
pub use settlement::SettlementSettings;

/// A secret string: `Debug`, `Display` and `Serialize` print `***`, so it cannot reach a log or
/// `draft-reconciler config` by accident (its serde impls are in `values.rs`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value; grep for it to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitStrategy {
    Auto,
    Transaction,
    Journal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal (PM2, systemd), pretty otherwise.
    Auto,
    Pretty,
    Json,
}

/// Every section and key, in the order `draft-reconciler config` prints them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mongodb: MongoSettings,
    pub phonepe: PhonePeSettings,
    pub job: JobSettings,
    pub supervisor: SupervisorSettings,
    pub ops: OpsSettings,
    pub log: LogSettings,
    pub webhook: WebhookSettings,
    pub refunds: RefundSettings,
    pub settlement: SettlementSettings,
    /// `[schema]`: the shop's collections, field paths, status words and amount unit
    /// (`src/schema.rs`, docs/schema.md); defaults are the reconciler's own names.
    #[serde(default)]
    pub schema: crate::schema::Schema,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    /// May carry a password: redacted when printed.
    #[serde(deserialize_with = "values::mongo_uri", serialize_with = "values::redacted_uri")]
    pub uri: Secret,
    /// The database name, taken from the URI path (not a key).
    #[serde(skip)]
    pub database: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePeSettings {
    /// `v1` (salt key) or `v2` (OAuth client credentials).
    #[serde(default)]
    pub api_version: ApiVersion,
    /// PG root including PhonePe's own prefix, without a trailing slash. Unset: PhonePe's host
    /// for the environment and API version ([`default_hosts`]).
    #[serde(default, deserialize_with = "values::base_url")]
    pub base_url: String,
    #[serde(deserialize_with = "values::merchant_id")]
    pub merchant_id: String,
    /// v1 only (required there).
    #[serde(
        default,
        deserialize_with = "values::some_non_blank",
        skip_serializing_if = "Option::is_none"
    )]
    pub salt_key: Option<Secret>,
    /// v1 only (required there).
    #[serde(
        default,
        deserialize_with = "values::some_positive",
        skip_serializing_if = "Option::is_none"
    )]
    pub salt_index: Option<u32>,
    /// v2 only (required there).
    #[serde(
        default,
        deserialize_with = "values::some_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
    /// v2 only (required there).
    #[serde(
        default,
        deserialize_with = "values::some_non_blank",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_secret: Option<Secret>,
    /// v2 only (required there).
    #[serde(
        default,
        deserialize_with = "values::some_positive",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_version: Option<u32>,
    /// v2: the OAuth root. Unset: PhonePe's for the environment ([`default_hosts`]).
    #[serde(default, deserialize_with = "values::base_url")]
    pub oauth_base_url: String,
    #[serde(rename = "request_timeout_secs", with = "values::positive_secs")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    #[serde(rename = "interval_secs", with = "values::positive_secs")]
    pub interval: Duration,
    #[serde(rename = "lookback_secs", with = "values::secs")]
    pub lookback: Duration,
    #[serde(deserialize_with = "values::at_least::<1, _, _>")]
    pub max_orders_per_run: u32,
    #[serde(deserialize_with = "values::at_least::<1, _, _>")]
    pub rate_limit_per_minute: u32,
    #[serde(rename = "pending_timeout_secs", with = "values::positive_secs")]
    pub pending_timeout: Duration,
    #[serde(rename = "late_payment_watch_secs", with = "values::secs")]
    pub late_payment_watch: Duration,
    /// At least 2 × `phonepe.request_timeout_secs` ([`cross_checks`]).
    #[serde(rename = "lease_ttl_secs", with = "values::secs")]
    pub lease_ttl: Duration,
    #[serde(deserialize_with = "values::within::<1, 256, _, _>")]
    pub reconcilers: u32,
    pub commit_strategy: CommitStrategy,
    /// Sized items: also guard and decrement the product's total `stock` (off: the size only).
    pub sized_items_decrement_total: bool,
    /// Malformed or undocumented PhonePe answers about one order before it is parked as
    /// `needs_review` (`phonepe_unreadable`).
    #[serde(deserialize_with = "values::at_least::<1, _, _>")]
    pub unreadable_max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    #[serde(deserialize_with = "values::at_least::<1, _, _>")]
    pub max_restarts: u32,
    #[serde(rename = "restart_window_secs", with = "values::positive_secs")]
    pub restart_window: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// `None` when `listen = ""` (ops HTTP disabled, e.g. for `once`).
    #[serde(deserialize_with = "values::listen", serialize_with = "values::show_listen")]
    pub listen: Option<SocketAddr>,
}

/// `[refunds]`: refunds through PhonePe (`src/refund.rs`, `review resolve <id> refund`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSettings {
    /// Review reasons whose paid orders are refunded without a person (e.g.
    /// `["paid_after_cancel", "insufficient_stock"]`); empty (the default): a person decides.
    /// A variable may give them as text: `paid_after_cancel,insufficient_stock` or the TOML array.
    #[serde(deserialize_with = "values::reason_list")]
    pub auto: Vec<String>,
    /// How often the refund poller runs, and the first wait before a pending refund is asked
    /// about again (the waits double to an hour: `refund::refund_backoff`).
    #[serde(rename = "poll_interval_secs", with = "values::positive_secs")]
    pub poll_interval: Duration,
}

/// `[webhook]`: the PhonePe callback receiver (`src/webhook.rs`), off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `None` when `listen = ""` (the default: no webhook listener).
    #[serde(deserialize_with = "values::listen", serialize_with = "values::show_listen")]
    pub listen: Option<SocketAddr>,
    /// The v2 callback credentials configured on PhonePe's dashboard; both or neither (empty is
    /// unset). Without them v2 callbacks are refused (401); v1 ones are checked with the salt key.
    #[serde(
        default,
        deserialize_with = "values::unless_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub username: Option<String>,
    #[serde(
        default,
        deserialize_with = "values::secret_unless_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<Secret>,
    /// Ask the status API (within the PhonePe budget) before acting, and act on its answer.
    pub confirm_with_status_api: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// An `EnvFilter` directive, e.g. `info` or `draft_reconciler=debug`.
    #[serde(deserialize_with = "values::filter_directive")]
    pub level: String,
    pub format: LogFormat,
}

/// Rules that relate two keys, checked once the effective values are read.
fn cross_checks(figment: &Figment, s: &Settings) -> Result<(), ConfigError> {
    let (lease, timeout) = (s.job.lease_ttl.as_secs(), s.phonepe.request_timeout.as_secs());
    if lease < timeout.saturating_mul(2) {
        let key = "job.lease_ttl_secs";
        let reason = format!(
            "must be at least 2 × phonepe.request_timeout_secs ({}) so a lease outlives a round trip, got {lease}",
            timeout * 2
        );
        return Err(invalid(figment, key, reason));
    }
    let p = &s.phonepe;
    let required: &[(&str, bool)] = match p.api_version {
        ApiVersion::V1 => &[
            ("salt_key", p.salt_key.is_some()),
            ("salt_index", p.salt_index.is_some()),
        ],
        ApiVersion::V2 => &[
            ("client_id", p.client_id.is_some()),
            ("client_secret", p.client_secret.is_some()),
            ("client_version", p.client_version.is_some()),
        ],
    };
    if let Some((name, _)) = required.iter().find(|(_, set)| !set) {
        let mut e = missing(&["phonepe".to_string()], name);
        if let (ConfigError::Missing { hint, .. }, ApiVersion::V2) = (&mut e, p.api_version) {
            hint.push_str("; phonepe.api_version is \"v2\"");
        }
        return Err(e);
    }
    webhook_checks(s)?;
    if let Some(bad) = s.refunds.auto.iter().find(|r| ReviewReason::parse(r).is_none()) {
        let reason = format!("names `{bad}`, which is not a review reason (see README.md, decision table)");
        return Err(invalid(figment, "refunds.auto", reason));
    }
    if p.api_version == ApiVersion::V2 && p.base_url.ends_with("/apis/hermes") {
        let reason = format!("is the v1 host; API v2 is served under {PRODUCTION_PG_BASE_URL}");
        return Err(invalid(figment, "phonepe.base_url", reason));
    }
    s.schema.validate().map_err(|e| invalid(figment, &e.key, e.problem))
}

fn invalid(figment: &Figment, key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        origin: origin(figment, key, None),
        reason,
    }
}

/// Fill in the hosts left unset ([`default_hosts`]) and the database named by the URI.
fn resolve(s: &mut Settings, production: bool) {
    let (pg, oauth) = default_hosts(production, s.phonepe.api_version);
    for (value, default) in [(&mut s.phonepe.base_url, pg), (&mut s.phonepe.oauth_base_url, oauth)] {
        if value.is_empty() {
            *value = default.to_string();
        }
    }
    // `mongo_uri` has checked that the URI names a database.
    s.mongodb.database = mongo_database(s.mongodb.uri.expose()).unwrap_or_default().to_string();
}

// ---------------------------------------------------------------------------------------------
// Layering
// ---------------------------------------------------------------------------------------------

/// The seed's variables; each sets the key its name spells ([`seed_key`]).
const SEED_VARS: [&str; 14] = [
    "MONGODB_URI",
    "PHONEPE_MERCHANT_ID",
    "PHONEPE_SALT_KEY",
    "PHONEPE_SALT_INDEX",
    "PHONEPE_BASE_URL",
    "PHONEPE_API_VERSION",
    "PHONEPE_CLIENT_ID",
    "PHONEPE_CLIENT_SECRET",
    "PHONEPE_CLIENT_VERSION",
    "PHONEPE_OAUTH_BASE_URL",
    "PHONEPE_WEBHOOK_USERNAME",
    "PHONEPE_WEBHOOK_PASSWORD",
    "LOG_LEVEL",
    "LOG_FORMAT",
];

const ENV_PREFIX: &str = "RECONCILER_";

/// The built-in defaults, compiled into the binary.
const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");
const EMBEDDED_ORIGIN: &str = "built-in config/default.toml";

/// `PHONEPE_SALT_INDEX` → `phonepe.salt_index`.
fn seed_key(var: &str) -> String {
    match var.strip_prefix("PHONEPE_WEBHOOK_") {
        Some(name) => format!("webhook.{}", name.to_lowercase()),
        None => var.to_lowercase().replacen('_', ".", 1),
    }
}

/// `job.interval_secs` → `RECONCILER_JOB__INTERVAL_SECS`.
fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// `RECONCILER_JOB__INTERVAL_SECS` → `job.interval_secs`; `None` without `__` (not a key).
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX).filter(|r| r.contains("__"))?;
    Some(rest.to_lowercase().replace("__", "."))
}

/// Every key (`section.key`), read from the serde derive of [`Settings`]: a probe key unknown at
/// a path makes serde list the keys known there (`deny_unknown_fields`); a leaf answers with any
/// other error. Nested tables are walked, so `[a.b] c` is `RECONCILER_A__B__C`.
fn schema() -> &'static [String] {
    fn walk(path: String, out: &mut Vec<String>) {
        let probe = Layer::at(&[&path, "\u{1}"].join("."), Value::from(0), "probe".into());
        match Figment::from(probe).extract::<Settings>().map_err(|e| e.kind) {
            Err(Kind::UnknownField(_, known)) => known.iter().for_each(|k| walk([&path, *k].join("."), out)),
            _ => out.push(path.trim_start_matches('.').to_string()),
        }
    }
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        walk(String::new(), &mut keys);
        keys
    })
}

/// One layer for figment, named for error messages: `built-in config/default.toml`,
/// `file <path>` or `env <VAR>`.
struct Layer {
    origin: String,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

impl Layer {
    /// One value at a dotted `key` (leading dots ignored).
    fn at(key: &str, value: Value, origin: String) -> Layer {
        let dict = figment::util::nest(key.trim_start_matches('.'), value).into_dict();
        Layer {
            origin,
            dict: dict.unwrap_or_default(),
        }
    }

    fn toml(text: &str, origin: String) -> Result<Layer, ConfigError> {
        // `message()` only, never the rendered snippet: the offending line may hold a secret.
        let syntax = |e: toml::de::Error| match e.span() {
            Some(span) => format!("{} at line {}", e.message().trim(), line_of(text, span.start)),
            None => e.message().trim().to_string(),
        };
        let dict = text.parse::<toml::Table>().map_err(syntax).and_then(|table| {
            let dict = Value::serialize(table).ok().and_then(Value::into_dict);
            dict.ok_or_else(|| "holds a value the settings cannot represent".to_string())
        });
        match dict {
            Ok(dict) => Ok(Layer { origin, dict }),
            Err(message) => Err(ConfigError::Syntax { origin, message }),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |s| s.matches('\n').count()) + 1
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Which deployment environment's file to layer: `APP_ENV`, else `NODE_ENV`.
fn env_name(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    for var in ["APP_ENV", "NODE_ENV"] {
        let Some(value) = env(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = value.trim().to_string();
        // The name becomes part of a path: no separators, no `..`.
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ConfigError::BadEnvName { var, value });
        }
        return Ok(Some(value));
    }
    Ok(None)
}

/// The files layered after the built-in defaults, in order: `config_file`, else the ones found
/// in `base_dir` (`None`: none).
fn config_files(
    base_dir: Option<&Path>,
    config_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, ConfigError> {
    if let Some(path) = config_file {
        return Ok(vec![path.to_path_buf()]);
    }
    let Some(base) = base_dir else { return Ok(Vec::new()) };
    let mut candidates = vec![base.join("config").join("default.toml")];
    if let Some(name) = env_name(env)? {
        candidates.push(base.join("config").join(format!("{name}.toml")));
    }
    Ok(candidates.into_iter().filter(|p| p.is_file()).collect())
}

/// The variable layers, later wins: the seed's (empty means unset, as in a `.env` file), then
/// every key's `RECONCILER_` variable and the set ones that name no key (unknown keys, then).
fn env_layers(env: &dyn Fn(&str) -> Option<String>, env_names: &[String]) -> Vec<Layer> {
    let seed = SEED_VARS.iter().filter_map(|var| {
        let text = env(var).filter(|v| !v.is_empty())?;
        Some(Layer::at(&seed_key(var), Value::from(text), format!("env {var}")))
    });
    let mut vars: BTreeSet<String> = schema().iter().map(|k| env_var(k)).collect();
    vars.extend(env_names.iter().cloned());
    let prefixed = vars.into_iter().filter_map(|var| {
        let (key, text) = (env_key(&var)?, env(&var)?);
        Some(Layer::at(&key, Value::from(text), format!("env {var}")))
    });
    seed.chain(prefixed).collect()
}

/// Merge, read and check the layers. A value a later layer overrides must be valid too (a bad
/// file must not wait for the variable hiding it to go): each layer is read again on top.
fn settings(layers: &[Layer], production: bool) -> Result<Settings, ConfigError> {
    let read = |f: &Figment| {
        f.extract_lossy::<Settings>()
            .map_err(|e| ConfigError::from_figment(f, e))
    };
    let all = layers.iter().fold(Figment::new(), Figment::merge);
    let mut settings = read(&all)?;
    for layer in layers {
        read(&all.clone().merge(layer))?;
    }
    resolve(&mut settings, production);
    cross_checks(&all, &settings)?;
    Ok(settings)
}

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

/// Load and validate the settings. `env` looks up one environment variable (injected so tests
/// never touch the process environment). Files are discovered relative to the working directory.
///
/// With a plain lookup function the set `RECONCILER_*` names cannot be enumerated, so a typo'd
/// `RECONCILER_JOB__INTERVALSECS` is only caught by [`Settings::from_env`].
pub fn load(config_file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    load_from(Some(&cwd), config_file, env, &[])
}

/// [`load`] with the file-discovery directory (`None`: only the embedded defaults and
/// `config_file`) and the names of the `RECONCILER_*` variables present (checked for typos).
pub fn load_from(
    base_dir: Option<&Path>,
    config_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    env_names: &[String],
) -> Result<Settings, ConfigError> {
    let mut layers = vec![Layer::toml(EMBEDDED_DEFAULTS, EMBEDDED_ORIGIN.into())?];
    for path in config_files(base_dir, config_file, env)? {
        layers.push(Layer::toml(&read_file(&path)?, format!("file {}", path.display()))?);
    }
    layers.extend(env_layers(env, env_names));
    let production = env_name(env)?.as_deref() == Some("production");
    settings(&layers, production)
}

impl Settings {
    /// [`load`] against the process environment, also rejecting unknown `RECONCILER_*__*` names.
    pub fn from_env(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with(ENV_PREFIX))
            .collect();
        load_from(Some(&cwd), config_file, &|var| std::env::var(var).ok(), &names)
    }

    /// Defaults plus merchant `MERCHANTUAT`, salt key `test-salt-key`, salt index 1, ops HTTP
    /// disabled. Reads no files and no environment.
    ///
    /// # Panics
    /// If `mongodb_uri` or `base_url` is invalid (a bug in the calling test).
    pub fn for_tests(mongodb_uri: &str, base_url: &str) -> Settings {
        let env = |var: &str| -> Option<String> {
            match var {
                "MONGODB_URI" => Some(mongodb_uri.to_string()),
                "PHONEPE_BASE_URL" => Some(base_url.to_string()),
                "PHONEPE_MERCHANT_ID" => Some("MERCHANTUAT".into()),
                "PHONEPE_SALT_KEY" => Some("test-salt-key".into()),
                "PHONEPE_SALT_INDEX" => Some("1".into()),
                "RECONCILER_OPS__LISTEN" => Some(String::new()),
                _ => None,
            }
        };
        match load_from(None, None, &env, &[]) {
            Ok(settings) => settings,
            Err(e) => panic!("Settings::for_tests: {e}"),
        }
    }

    /// Every effective key as TOML (the serde derive, in field order) with `salt_key = "***"`,
    /// the MongoDB password redacted, and the database as a comment after the `[mongodb]`
    /// section. What `draft-reconciler config` prints.
    pub fn redacted_toml(&self) -> String {
        let text = toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"));
        let database = toml::Value::String(self.mongodb.database.clone());
        text.replacen("\n\n", &format!("\n# database = {database}\n\n"), 1)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_api;
