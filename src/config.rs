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
//! The schema is the serde derive of [`Settings`]: a field's serde name is its key (`[job]
//! interval_secs`), its variable is derived from it (`RECONCILER_JOB__INTERVAL_SECS`), and its
//! `deserialize_with` function is its validation, so adding a key is adding a field. Unknown
//! sections and keys are errors (`deny_unknown_fields`) with a "did you mean" hint. The layers are
//! merged by `figment`, which remembers the layer every value came from: each error is one line
//! naming the key and that layer (file path or variable). Values are read leniently as the key's
//! type (figment's lossy extraction), as environment values are text: `"600"` is a number, `true`,
//! `false` (also `yes`/`no`, `on`/`off`, `1`/`0`) a flag. Secrets ([`Secret`]) have no defaults,
//! print as `***`, and their values never appear in an error message: errors about
//! `phonepe.salt_key` or `mongodb.uri` describe, never quote.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: `Debug`, `Display` and `Serialize` print `***`, so it cannot reach a log by
/// accident.
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

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Anything but a string is refused without being echoed: it may be the secret, mistyped.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d) {
            Ok(toml::Value::String(s)) => Ok(Secret(s)),
            _ => Err(D::Error::custom("must be a string")),
        }
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

/// Every section and key; field order is the order `draft-reconciler config` prints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mongodb: MongoSettings,
    pub phonepe: PhonePeSettings,
    pub job: JobSettings,
    pub supervisor: SupervisorSettings,
    pub ops: OpsSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    /// May carry a password: redacted when printed.
    #[serde(deserialize_with = "mongo_uri", serialize_with = "redacted_uri")]
    pub uri: Secret,
    /// The database name, taken from the URI path (not a key).
    #[serde(skip)]
    pub database: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePeSettings {
    /// API root including PhonePe's own prefix, without a trailing slash.
    #[serde(deserialize_with = "base_url")]
    pub base_url: String,
    #[serde(deserialize_with = "merchant_id")]
    pub merchant_id: String,
    #[serde(deserialize_with = "non_blank")]
    pub salt_key: Secret,
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub salt_index: u32,
    #[serde(
        rename = "request_timeout_secs",
        deserialize_with = "secs::<1, _>",
        serialize_with = "as_secs"
    )]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    #[serde(
        rename = "interval_secs",
        deserialize_with = "secs::<1, _>",
        serialize_with = "as_secs"
    )]
    pub interval: Duration,
    #[serde(
        rename = "lookback_secs",
        deserialize_with = "secs::<0, _>",
        serialize_with = "as_secs"
    )]
    pub lookback: Duration,
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub max_orders_per_run: u32,
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub rate_limit_per_minute: u32,
    #[serde(
        rename = "pending_timeout_secs",
        deserialize_with = "secs::<1, _>",
        serialize_with = "as_secs"
    )]
    pub pending_timeout: Duration,
    #[serde(
        rename = "late_payment_watch_secs",
        deserialize_with = "secs::<0, _>",
        serialize_with = "as_secs"
    )]
    pub late_payment_watch: Duration,
    /// At least 2 × `phonepe.request_timeout_secs` (a cross-check, see `cross_checks`).
    #[serde(
        rename = "lease_ttl_secs",
        deserialize_with = "secs::<0, _>",
        serialize_with = "as_secs"
    )]
    pub lease_ttl: Duration,
    #[serde(deserialize_with = "within::<1, 256, _, _>")]
    pub reconcilers: u32,
    pub commit_strategy: CommitStrategy,
    /// Sized items: also guard and decrement the product's total `stock` (off: the size only).
    pub sized_items_decrement_total: bool,
    /// Malformed or undocumented PhonePe answers about one order before it is parked as
    /// `needs_review` (`phonepe_unreadable`).
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub unreadable_max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub max_restarts: u32,
    #[serde(
        rename = "restart_window_secs",
        deserialize_with = "secs::<1, _>",
        serialize_with = "as_secs"
    )]
    pub restart_window: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// `None` when `listen = ""` (ops HTTP disabled, e.g. for `once`).
    #[serde(deserialize_with = "listen", serialize_with = "show_listen")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// An `EnvFilter` directive, e.g. `info` or `draft_reconciler=debug`.
    #[serde(deserialize_with = "filter_directive")]
    pub level: String,
    pub format: LogFormat,
}

// ---------------------------------------------------------------------------------------------
// Per-key validation: `deserialize_with` functions. Their messages follow the key's name, e.g.
// "job.reconcilers must be between 1 and 256, got 0 (from env RECONCILER_JOB__RECONCILERS)".
// ---------------------------------------------------------------------------------------------

/// A number in `MIN..=MAX`.
fn within<'de, const MIN: u64, const MAX: u64, T, D>(d: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + Into<u64> + Copy,
    D: Deserializer<'de>,
{
    let n = T::deserialize(d)?;
    let v: u64 = n.into();
    if (MIN..=MAX).contains(&v) {
        Ok(n)
    } else if MAX == u64::MAX {
        Err(D::Error::custom(format!("must be at least {MIN}, got {v}")))
    } else {
        Err(D::Error::custom(format!("must be between {MIN} and {MAX}, got {v}")))
    }
}

fn at_least<'de, const MIN: u64, T, D>(d: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + Into<u64> + Copy,
    D: Deserializer<'de>,
{
    within::<MIN, { u64::MAX }, T, D>(d)
}

/// Whole seconds, at least `MIN`.
fn secs<'de, const MIN: u64, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    at_least::<MIN, u64, D>(d).map(Duration::from_secs)
}

fn as_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn mongo_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let uri = Secret::deserialize(d)?;
    mongo_database(uri.expose()).map_err(D::Error::custom)?;
    Ok(uri)
}

fn redacted_uri<S: Serializer>(uri: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_mongo_uri(uri.expose()))
}

fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check_base_url(&String::deserialize(d)?).map_err(D::Error::custom)
}

fn merchant_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    check_merchant_id(&id).map_err(D::Error::custom)?;
    Ok(id)
}

fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let secret = Secret::deserialize(d)?;
    if secret.expose().trim().is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(secret)
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let listen = String::deserialize(d)?;
    if listen.trim().is_empty() {
        return Ok(None);
    }
    let reason = || format!("must be ip:port like \"127.0.0.1:9464\" or \"\", got {listen:?}");
    listen.trim().parse().map(Some).map_err(|_| D::Error::custom(reason()))
}

fn show_listen<S: Serializer>(listen: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&listen.map(|a| a.to_string()).unwrap_or_default())
}

fn filter_directive<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let level = String::deserialize(d)?;
    match tracing_subscriber::EnvFilter::builder().parse(&level) {
        Ok(_) => Ok(level),
        Err(e) => Err(D::Error::custom(format!(
            "is not a valid filter directive ({e}): {level:?}"
        ))),
    }
}

/// Rules that relate two keys, checked once everything is read.
fn cross_checks(figment: &Figment, s: &Settings) -> Result<(), ConfigError> {
    let (lease, timeout) = (s.job.lease_ttl.as_secs(), s.phonepe.request_timeout.as_secs());
    if lease >= timeout.saturating_mul(2) {
        return Ok(());
    }
    let key = "job.lease_ttl_secs";
    Err(ConfigError::Invalid {
        key: key.into(),
        origin: origin(figment, key, None),
        reason: format!(
            "must be at least 2 × phonepe.request_timeout_secs ({}) so a lease outlives a round trip, got {lease}",
            timeout * 2
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the configuration is unusable. `Display` is one line naming the key (and its layer).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("unknown config section [{section}] in {origin}{hint}")]
    UnknownSection {
        section: String,
        origin: String,
        hint: String,
    },
    #[error("unknown config key {key} in {origin}{hint}")]
    UnknownKey { key: String, origin: String, hint: String },
    #[error("{key} must be {expected} (from {origin})")]
    WrongType {
        key: String,
        origin: String,
        expected: String,
    },
    #[error("{key} is required ({hint})")]
    Missing { key: String, hint: String },
    #[error("{key} {reason} (from {origin})")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("{var} must be a plain environment name (letters, digits, '_', '-'), got {value:?}")]
    BadEnvName { var: &'static str, value: String },
}

impl ConfigError {
    /// The `section.key` the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Missing { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::UnknownSection { section, .. } => Some(section),
            ConfigError::BadEnvName { var, .. } => Some(var),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// One figment error as ours: the key is the error's path, the layer its value's provider.
    /// Only messages we wrote and serde's type descriptions reach the text; a [`Secret`] reports
    /// its own errors without the value.
    fn from_figment(figment: &Figment, e: figment::Error) -> ConfigError {
        let key = e.path.join(".");
        let origin = origin(figment, &key, e.metadata.as_ref());
        match e.kind {
            Kind::MissingField(name) => {
                let key = if key.is_empty() {
                    name.to_string()
                } else {
                    format!("{key}.{name}")
                };
                let hint = match SEED_VARS.iter().find(|v| seed_key(v) == key) {
                    Some(var) => format!("set {var}"),
                    None => format!("set {key} in a config file"),
                };
                ConfigError::Missing { key, hint }
            }
            Kind::UnknownField(name, known) => {
                let hint = match e.metadata.as_ref().and_then(|m| m.source.as_ref()?.custom()) {
                    Some(var) => closest(var, schema().iter().map(|k| env_var(k))),
                    None => closest(&name, known.iter().map(|k| k.to_string())),
                };
                match e.path.len() {
                    1 => ConfigError::UnknownSection {
                        section: key,
                        origin,
                        hint,
                    },
                    _ => ConfigError::UnknownKey { key, origin, hint },
                }
            }
            Kind::InvalidType(actual, expected) => {
                let expected = format!("{}, got {actual}", describe(&expected));
                ConfigError::WrongType { key, origin, expected }
            }
            Kind::InvalidValue(actual, expected) => {
                let reason = format!("must be {}, got {actual}", describe(&expected));
                ConfigError::Invalid { key, origin, reason }
            }
            Kind::UnknownVariant(got, known) => {
                let known: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
                let reason = format!("must be one of {}, got {got:?}", known.join(", "));
                ConfigError::Invalid { key, origin, reason }
            }
            Kind::Message(reason) => ConfigError::Invalid { key, origin, reason },
            other => ConfigError::Invalid {
                key,
                origin,
                reason: other.to_string(),
            },
        }
    }
}

/// The layer that set `key`: the error's own, else the merged value's, else "nowhere".
fn origin(figment: &Figment, key: &str, meta: Option<&Metadata>) -> String {
    meta.or_else(|| figment.find_metadata(key))
        .map_or_else(|| "nowhere".into(), |m| m.name.to_string())
}

/// serde's name for a type, in words.
fn describe(expected: &str) -> String {
    match expected {
        "u32" => format!("an integer from 0 to {}", u32::MAX),
        "u64" => "a non-negative integer".into(),
        "a boolean" => "true or false".into(),
        s if s.starts_with("struct ") => "a table ([section])".into(),
        s => s.into(),
    }
}

/// " (did you mean X?)" for the candidate nearest to `word`, if any is near.
fn closest(word: &str, candidates: impl Iterator<Item = String>) -> String {
    candidates
        .map(|c| (strsim::levenshtein(word, &c), c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Layering
// ---------------------------------------------------------------------------------------------

/// The seed's variables: `PHONEPE_SALT_INDEX` sets `phonepe.salt_index` ([`seed_key`]).
const SEED_VARS: &[&str] = &[
    "MONGODB_URI",
    "PHONEPE_MERCHANT_ID",
    "PHONEPE_SALT_KEY",
    "PHONEPE_SALT_INDEX",
    "PHONEPE_BASE_URL",
    "LOG_LEVEL",
    "LOG_FORMAT",
];

const ENV_PREFIX: &str = "RECONCILER_";

/// The built-in defaults, compiled into the binary.
const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");
const EMBEDDED_ORIGIN: &str = "built-in config/default.toml";

/// `PHONEPE_SALT_INDEX` → `phonepe.salt_index`.
fn seed_key(var: &str) -> String {
    var.to_lowercase().replacen('_', ".", 1)
}

/// `job.interval_secs` → `RECONCILER_JOB__INTERVAL_SECS`.
fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// `RECONCILER_JOB__INTERVAL_SECS` → `job.interval_secs`; `None` for `RECONCILER_` variables
/// without `__`, which are not config keys.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX).filter(|r| r.contains("__"))?;
    Some(rest.to_lowercase().replace("__", "."))
}

/// Every key (`section.key`), read from the serde derive of [`Settings`]: a probe key unknown at
/// a path makes serde list the keys known there (`deny_unknown_fields`); a leaf answers with
/// any other error. Nested tables are walked, so `[a.b] c` is `RECONCILER_A__B__C`.
fn schema() -> &'static [String] {
    fn walk(path: String, out: &mut Vec<String>) {
        let probe = if path.is_empty() {
            "\u{1}".to_string()
        } else {
            format!("{path}.\u{1}")
        };
        let dict = figment::util::nest(&probe, Value::from(0))
            .into_dict()
            .unwrap_or_default();
        let layer = Layer {
            origin: "probe".into(),
            env_var: None,
            dict,
        };
        match Figment::from(layer).extract::<Settings>().map_err(|e| e.kind) {
            Err(Kind::UnknownField(_, known)) => {
                for name in known {
                    walk(
                        if path.is_empty() {
                            name.to_string()
                        } else {
                            format!("{path}.{name}")
                        },
                        out,
                    );
                }
            }
            _ => out.push(path),
        }
    }
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        walk(String::new(), &mut keys);
        keys
    })
}

/// One layer for figment: a TOML document or one variable, named for error messages.
struct Layer {
    /// `built-in config/default.toml`, `file <path>` or `env <VAR>`.
    origin: String,
    /// The variable, for layers that are one: unknown keys from it get a variable as hint.
    env_var: Option<String>,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let meta = Metadata::named(self.origin.clone());
        match &self.env_var {
            Some(var) => meta.source(Source::Custom(var.clone())),
            None => meta,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

impl Layer {
    fn toml(text: &str, origin: String) -> Result<Layer, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            origin: origin.clone(),
            // `message()` only, never the rendered snippet: the offending line may hold a secret.
            message: match e.span() {
                Some(span) => format!("{} at line {}", e.message().trim(), line_of(text, span.start)),
                None => e.message().trim().to_string(),
            },
        })?;
        let dict = Value::serialize(table).ok().and_then(Value::into_dict);
        let dict = dict.ok_or_else(|| ConfigError::Syntax {
            origin: origin.clone(),
            message: "holds a value the settings cannot represent".into(),
        })?;
        Ok(Layer {
            origin,
            env_var: None,
            dict,
        })
    }

    fn env(key: &str, var: &str, text: String) -> Layer {
        let dict = figment::util::nest(key, Value::from(text))
            .into_dict()
            .unwrap_or_default();
        Layer {
            origin: format!("env {var}"),
            env_var: Some(var.to_string()),
            dict,
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

/// Everything `load` reads, with the file-discovery directory and the list of present
/// `RECONCILER_*` variable names made explicit so tests need neither a CWD nor a process env.
struct Sources<'a> {
    /// Where `config/default.toml` and `config/<env>.toml` are looked for; `None`: nowhere.
    base_dir: Option<&'a Path>,
    config_file: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Names of the `RECONCILER_*` variables that are set, to catch typos; `env` alone cannot
    /// be enumerated, so this may be empty.
    env_names: &'a [String],
}

/// The files layered after the built-in defaults, in order.
fn config_files(src: &Sources<'_>) -> Result<Vec<PathBuf>, ConfigError> {
    if let Some(path) = src.config_file {
        return Ok(vec![path.to_path_buf()]);
    }
    let Some(base) = src.base_dir else {
        return Ok(Vec::new());
    };
    let mut candidates = vec![base.join("config").join("default.toml")];
    if let Some(name) = env_name(src.env)? {
        candidates.push(base.join("config").join(format!("{name}.toml")));
    }
    Ok(candidates.into_iter().filter(|p| p.is_file()).collect())
}

/// Every layer, later wins.
fn layers(src: &Sources<'_>) -> Result<Vec<Layer>, ConfigError> {
    let mut layers = vec![Layer::toml(EMBEDDED_DEFAULTS, EMBEDDED_ORIGIN.into())?];
    for path in config_files(src)? {
        layers.push(Layer::toml(&read_file(&path)?, format!("file {}", path.display()))?);
    }
    for var in SEED_VARS {
        // An empty seed variable (`PHONEPE_SALT_KEY=` in a .env file) counts as unset.
        if let Some(text) = (src.env)(var).filter(|v| !v.is_empty()) {
            layers.push(Layer::env(&seed_key(var), var, text));
        }
    }
    // Every key's variable, and the set ones that name no key (they fail as unknown keys).
    let mut vars: BTreeSet<String> = schema().iter().map(|k| env_var(k)).collect();
    vars.extend(src.env_names.iter().cloned());
    for var in vars {
        if let (Some(key), Some(text)) = (env_key(&var), (src.env)(&var)) {
            layers.push(Layer::env(&key, &var, text));
        }
    }
    Ok(layers)
}

/// Merge, read and check the layers. A value a later layer overrides must be valid too (a bad
/// file must not wait for the variable that hides it to go): each layer is read again on top.
fn settings(layers: &[Layer]) -> Result<Settings, ConfigError> {
    let read = |f: &Figment| {
        f.extract_lossy::<Settings>()
            .map_err(|e| ConfigError::from_figment(f, e))
    };
    let all = layers.iter().fold(Figment::new(), Figment::merge);
    let mut settings = read(&all)?;
    for layer in layers {
        read(&all.clone().merge(layer))?;
    }
    // `mongo_uri` has checked that the URI names a database.
    let database = mongo_database(settings.mongodb.uri.expose()).unwrap_or_default();
    settings.mongodb.database = database.to_string();
    cross_checks(&all, &settings)?;
    Ok(settings)
}

/// The database name from a MongoDB URI's path. Errors describe the problem without quoting
/// the URI (it may hold a password).
fn mongo_database(uri: &str) -> Result<&str, String> {
    let rest = uri
        .strip_prefix("mongodb://")
        .or_else(|| uri.strip_prefix("mongodb+srv://"))
        .ok_or("must start with mongodb:// or mongodb+srv://")?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (hosts, db) = rest
        .split_once('/')
        .ok_or("must name a database in its path, e.g. mongodb://host:27017/shop")?;
    if hosts.rsplit('@').next().unwrap_or_default().is_empty() {
        return Err("must name a host".into());
    }
    if db.is_empty() {
        return Err("must name a database in its path, e.g. mongodb://host:27017/shop".into());
    }
    if db.contains(['/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|']) {
        return Err("has an invalid database name in its path".into());
    }
    Ok(db)
}

/// Trims a trailing `/` so callers can append `/pg/v1/status/...`.
fn check_base_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("must start with http:// or https://, got {url:?}"))?;
    if rest.contains(['?', '#']) {
        return Err(format!("must not have a query or fragment, got {url:?}"));
    }
    if rest.split('/').next().unwrap_or_default().is_empty() {
        return Err(format!("must name a host, got {url:?}"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn check_merchant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 38 {
        return Err(format!("must be at most 38 characters, got {}", id.len()));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("may only contain letters, digits, '_' and '-', got {id:?}"));
    }
    Ok(())
}

/// `mongodb://user:pass@host/db?authMechanismProperties=...` with the password and any
/// password/token/secret query value replaced by `***`.
fn redact_mongo_uri(uri: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = before_query
        .split_once('/')
        .map_or((before_query, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let mut out = if scheme.is_empty() {
        authority
    } else {
        format!("{scheme}://{authority}")
    };
    if let Some(path) = path {
        out.push('/');
        out.push_str(path);
    }
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "token", "secret", "authmechanismproperties"]
        .iter()
        .any(|s| name.contains(s))
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
    let sources = Sources {
        base_dir,
        config_file,
        env,
        env_names,
    };
    settings(&layers(&sources)?)
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

    /// Every effective key as TOML (the serde derive, in field order), with `salt_key = "***"`,
    /// the MongoDB password redacted and the database as a comment under the URI. What
    /// `draft-reconciler config` prints.
    pub fn redacted_toml(&self) -> String {
        let text = toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"));
        let database = toml::Value::String(self.mongodb.database.clone());
        match text.find('\n') {
            Some(i) if text.starts_with("[mongodb]\nuri = ") => match text[i + 1..].find('\n') {
                Some(j) => {
                    let (head, rest) = text.split_at(i + j + 2);
                    format!("{head}# database = {database}\n{rest}")
                }
                None => text,
            },
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests;
