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
//! Every layer is checked against one schema ([`KEYS`]) as it is read, so a typo'd section or key
//! fails at start naming the layer it came from, and env values are parsed as the key's type. The
//! merged values remember their origin; every validation error names the key and that origin in
//! one line. Secrets ([`Secret`]) have no defaults, print as `***`, and their values never appear
//! in an error message: errors about `phonepe.salt_key` or `mongodb.uri` describe, never quote.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret string: `Debug` and `Display` print `***`, so it cannot reach a log by accident.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStrategy {
    Auto,
    Transaction,
    Journal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal (PM2, systemd), pretty otherwise.
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mongodb: MongoSettings,
    pub phonepe: PhonePeSettings,
    pub job: JobSettings,
    pub supervisor: SupervisorSettings,
    pub ops: OpsSettings,
    pub log: LogSettings,
    pub webhook: WebhookSettings,
}

#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// May carry a password: redacted when printed.
    pub uri: Secret,
    /// The database name, taken from the URI path.
    pub database: String,
}

#[derive(Debug, Clone)]
pub struct PhonePeSettings {
    /// API root including PhonePe's own prefix, without a trailing slash.
    pub base_url: String,
    pub merchant_id: String,
    pub salt_key: Secret,
    pub salt_index: u32,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub interval: Duration,
    pub lookback: Duration,
    pub max_orders_per_run: u32,
    pub rate_limit_per_minute: u32,
    pub pending_timeout: Duration,
    pub late_payment_watch: Duration,
    pub lease_ttl: Duration,
    pub reconcilers: u32,
    pub commit_strategy: CommitStrategy,
    /// Sized items: also guard and decrement the product's total `stock` (off: the size only).
    pub sized_items_decrement_total: bool,
    /// Malformed or undocumented PhonePe answers about one order before it is parked as
    /// `needs_review` (`phonepe_unreadable`).
    pub unreadable_max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub max_restarts: u32,
    pub restart_window: Duration,
}

#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// `None` when `listen = ""` (ops HTTP disabled, e.g. for `once`).
    pub listen: Option<SocketAddr>,
}

/// `[webhook]`: the PhonePe callback receiver (`src/webhook.rs`), off unless `listen` is set.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// `None` when `listen = ""` (the default: no webhook listener).
    pub listen: Option<SocketAddr>,
    /// The v2 callback credentials configured on PhonePe's dashboard; both or neither. Without
    /// them v2 callbacks are refused (401); v1 callbacks are verified with `phonepe.salt_key`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Ask the status API (within the PhonePe budget) before acting, and act on its answer.
    pub confirm_with_status_api: bool,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive, e.g. `info` or `draft_reconciler=debug`.
    pub level: String,
    pub format: LogFormat,
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
}

// ---------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    UInt,
    Bool,
}

/// One configuration key: where it lives, its type, and which seed variable (if any) sets it.
struct Key {
    section: &'static str,
    name: &'static str,
    kind: Kind,
    /// Values of secret keys are never quoted in errors.
    secret: bool,
    seed_env: Option<&'static str>,
}

const fn key(section: &'static str, name: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        kind,
        secret: false,
        seed_env: None,
    }
}

const fn seed(section: &'static str, name: &'static str, kind: Kind, env: &'static str) -> Key {
    Key {
        section,
        name,
        kind,
        secret: false,
        seed_env: Some(env),
    }
}

/// Every key the service understands. Anything else in a file or a `RECONCILER_*__*` variable is
/// an error.
const KEYS: &[Key] = &[
    Key {
        section: "mongodb",
        name: "uri",
        kind: Kind::Str,
        secret: true,
        seed_env: Some("MONGODB_URI"),
    },
    seed("phonepe", "base_url", Kind::Str, "PHONEPE_BASE_URL"),
    seed("phonepe", "merchant_id", Kind::Str, "PHONEPE_MERCHANT_ID"),
    Key {
        section: "phonepe",
        name: "salt_key",
        kind: Kind::Str,
        secret: true,
        seed_env: Some("PHONEPE_SALT_KEY"),
    },
    seed("phonepe", "salt_index", Kind::UInt, "PHONEPE_SALT_INDEX"),
    key("phonepe", "request_timeout_secs", Kind::UInt),
    key("job", "interval_secs", Kind::UInt),
    key("job", "lookback_secs", Kind::UInt),
    key("job", "max_orders_per_run", Kind::UInt),
    key("job", "rate_limit_per_minute", Kind::UInt),
    key("job", "pending_timeout_secs", Kind::UInt),
    key("job", "late_payment_watch_secs", Kind::UInt),
    key("job", "lease_ttl_secs", Kind::UInt),
    key("job", "reconcilers", Kind::UInt),
    key("job", "commit_strategy", Kind::Str),
    key("job", "sized_items_decrement_total", Kind::Bool),
    key("job", "unreadable_max_attempts", Kind::UInt),
    key("supervisor", "max_restarts", Kind::UInt),
    key("supervisor", "restart_window_secs", Kind::UInt),
    key("ops", "listen", Kind::Str),
    seed("log", "level", Kind::Str, "LOG_LEVEL"),
    seed("log", "format", Kind::Str, "LOG_FORMAT"),
    key("webhook", "listen", Kind::Str),
    seed("webhook", "username", Kind::Str, "PHONEPE_WEBHOOK_USERNAME"),
    Key {
        section: "webhook",
        name: "password",
        kind: Kind::Str,
        secret: true,
        seed_env: Some("PHONEPE_WEBHOOK_PASSWORD"),
    },
    key("webhook", "confirm_with_status_api", Kind::Bool),
];

const ENV_PREFIX: &str = "RECONCILER_";

/// The built-in defaults, compiled into the binary.
const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");
const EMBEDDED_ORIGIN: &str = "built-in config/default.toml";

impl Key {
    fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }
    fn env_name(&self) -> String {
        format!(
            "{ENV_PREFIX}{}__{}",
            self.section.to_uppercase(),
            self.name.to_uppercase()
        )
    }
}

fn find_key(section: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Layering
// ---------------------------------------------------------------------------------------------

/// The merged raw values: `(section, key)` → (value, the layer it came from).
#[derive(Default)]
struct Layers {
    values: BTreeMap<(&'static str, &'static str), (toml::Value, String)>,
}

impl Layers {
    /// Merge one TOML document, rejecting unknown sections and keys.
    fn merge_toml(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_string(),
            // `message()` only, never the rendered snippet: the offending line may hold a secret.
            message: match e.span() {
                Some(span) => format!("{} at line {}", e.message().trim(), line_of(text, span.start)),
                None => e.message().trim().to_string(),
            },
        })?;
        for (section, body) in table {
            let sections = || KEYS.iter().map(|k| k.section);
            if !sections().any(|s| s == section) {
                let hint = closest(&section, sections());
                return Err(ConfigError::UnknownSection {
                    section,
                    origin: origin.to_string(),
                    hint,
                });
            }
            let toml::Value::Table(body) = body else {
                return Err(ConfigError::WrongType {
                    key: section,
                    origin: origin.to_string(),
                    expected: "a table ([section])".into(),
                });
            };
            for (name, value) in body {
                let Some(key) = find_key(&section, &name) else {
                    let names = KEYS.iter().filter(|k| k.section == section).map(|k| k.name);
                    let hint = closest(&name, names);
                    return Err(ConfigError::UnknownKey {
                        key: format!("{section}.{name}"),
                        origin: origin.into(),
                        hint,
                    });
                };
                self.set(key, value, origin)?;
            }
        }
        Ok(())
    }

    /// Set one key from an environment variable, parsing the text as the key's type.
    fn merge_env(&mut self, key: &'static Key, var: &str, text: String) -> Result<(), ConfigError> {
        let origin = format!("env {var}");
        let value = match key.kind {
            Kind::Str => toml::Value::String(text),
            Kind::UInt => match text.trim().parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => return Err(wrong_type(key, &origin, &toml::Value::String(text))),
            },
            Kind::Bool => match text.trim() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => return Err(wrong_type(key, &origin, &toml::Value::String(text))),
            },
        };
        self.set(key, value, &origin)
    }

    fn set(&mut self, key: &'static Key, value: toml::Value, origin: &str) -> Result<(), ConfigError> {
        let ok = match (key.kind, &value) {
            (Kind::Str, toml::Value::String(_)) => true,
            (Kind::UInt, toml::Value::Integer(n)) => *n >= 0,
            (Kind::Bool, toml::Value::Boolean(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(wrong_type(key, origin, &value));
        }
        self.values.insert((key.section, key.name), (value, origin.to_string()));
        Ok(())
    }
}

fn wrong_type(key: &Key, origin: &str, value: &toml::Value) -> ConfigError {
    let what = match key.kind {
        Kind::Str => "a string",
        Kind::UInt => "a non-negative integer",
        Kind::Bool => "true or false",
    };
    let expected = if key.secret {
        what.to_string()
    } else {
        format!("{what}, got {value}")
    };
    ConfigError::WrongType {
        key: key.dotted(),
        origin: origin.to_string(),
        expected,
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

fn collect(src: &Sources<'_>) -> Result<Layers, ConfigError> {
    let mut layers = Layers::default();
    layers.merge_toml(EMBEDDED_DEFAULTS, EMBEDDED_ORIGIN)?;

    if let Some(path) = src.config_file {
        layers.merge_toml(&read_file(path)?, &format!("file {}", path.display()))?;
    } else if let Some(base) = src.base_dir {
        let mut candidates = vec![base.join("config").join("default.toml")];
        if let Some(name) = env_name(src.env)? {
            candidates.push(base.join("config").join(format!("{name}.toml")));
        }
        for path in candidates.iter().filter(|p| p.is_file()) {
            layers.merge_toml(&read_file(path)?, &format!("file {}", path.display()))?;
        }
    }

    for key in KEYS {
        let Some(var) = key.seed_env else { continue };
        // An empty seed variable (`PHONEPE_SALT_KEY=` in a .env file) counts as unset.
        if let Some(text) = (src.env)(var).filter(|v| !v.is_empty()) {
            layers.merge_env(key, var, text)?;
        }
    }

    for name in src.env_names {
        check_env_name(name)?;
    }
    for key in KEYS {
        let var = key.env_name();
        if let Some(text) = (src.env)(&var) {
            layers.merge_env(key, &var, text)?;
        }
    }
    Ok(layers)
}

/// `RECONCILER_<SECTION>__<KEY>` must name a real key. Variables without `__` are not config
/// keys and are left alone.
fn check_env_name(var: &str) -> Result<(), ConfigError> {
    let Some((section, name)) = var.strip_prefix(ENV_PREFIX).and_then(|rest| rest.split_once("__")) else {
        return Ok(());
    };
    let (section, name) = (section.to_lowercase(), name.to_lowercase());
    if find_key(&section, &name).is_some() {
        return Ok(());
    }
    let names = KEYS.iter().map(|k| k.env_name()).collect::<Vec<_>>();
    let hint = closest(var, names.iter().map(String::as_str));
    Err(ConfigError::UnknownKey {
        key: format!("{section}.{name}"),
        origin: format!("env {var}"),
        hint,
    })
}

// ---------------------------------------------------------------------------------------------
// Typed conversion and validation
// ---------------------------------------------------------------------------------------------

/// The merged layers, read key by key into typed values.
struct Resolved(Layers);

impl Resolved {
    fn raw(&self, section: &'static str, name: &'static str) -> Option<&(toml::Value, String)> {
        self.0.values.get(&(section, name))
    }

    fn origin(&self, section: &'static str, name: &'static str) -> String {
        self.raw(section, name)
            .map_or_else(|| "nowhere".into(), |(_, o)| o.clone())
    }

    fn missing(section: &'static str, name: &'static str) -> ConfigError {
        let key = find_key(section, name);
        let hint = match key.and_then(|k| k.seed_env) {
            Some(var) => format!("set {var}"),
            None => format!("set {section}.{name} in a config file"),
        };
        ConfigError::Missing {
            key: format!("{section}.{name}"),
            hint,
        }
    }

    fn str(&self, section: &'static str, name: &'static str) -> Result<String, ConfigError> {
        match self.raw(section, name) {
            Some((toml::Value::String(s), _)) => Ok(s.clone()),
            _ => Err(Self::missing(section, name)),
        }
    }

    fn uint(&self, section: &'static str, name: &'static str) -> Result<u64, ConfigError> {
        match self.raw(section, name) {
            // `Layers::set` only admits non-negative integers.
            Some((toml::Value::Integer(n), _)) => Ok(u64::try_from(*n).unwrap_or_default()),
            _ => Err(Self::missing(section, name)),
        }
    }

    fn u32(&self, section: &'static str, name: &'static str) -> Result<u32, ConfigError> {
        let n = self.uint(section, name)?;
        u32::try_from(n).map_err(|_| self.invalid(section, name, format!("must be at most {}, got {n}", u32::MAX)))
    }

    fn bool(&self, section: &'static str, name: &'static str) -> Result<bool, ConfigError> {
        match self.raw(section, name) {
            Some((toml::Value::Boolean(b), _)) => Ok(*b),
            _ => Err(Self::missing(section, name)),
        }
    }

    fn secs(&self, section: &'static str, name: &'static str) -> Result<Duration, ConfigError> {
        self.uint(section, name).map(Duration::from_secs)
    }

    fn invalid(&self, section: &'static str, name: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: format!("{section}.{name}"),
            origin: self.origin(section, name),
            reason: reason.into(),
        }
    }

    /// `Ok(())` when `ok`, else an `Invalid` error for the key.
    fn check(&self, ok: bool, section: &'static str, name: &'static str, reason: String) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(section, name, reason))
        }
    }

    fn at_least(&self, section: &'static str, name: &'static str, min: u64) -> Result<u64, ConfigError> {
        let n = self.uint(section, name)?;
        self.check(n >= min, section, name, format!("must be at least {min}, got {n}"))?;
        Ok(n)
    }

    fn settings(&self) -> Result<Settings, ConfigError> {
        let settings = Settings {
            mongodb: self.mongodb()?,
            phonepe: self.phonepe()?,
            job: self.job()?,
            supervisor: self.supervisor()?,
            ops: self.ops()?,
            log: self.log()?,
            webhook: self.webhook()?,
        };
        self.cross_checks(&settings)?;
        Ok(settings)
    }

    fn mongodb(&self) -> Result<MongoSettings, ConfigError> {
        let uri = self.str("mongodb", "uri")?;
        let database = mongo_database(&uri)
            .map_err(|reason| self.invalid("mongodb", "uri", reason))?
            .to_string();
        Ok(MongoSettings {
            uri: Secret::new(uri),
            database,
        })
    }

    fn phonepe(&self) -> Result<PhonePeSettings, ConfigError> {
        let base_url = self.str("phonepe", "base_url")?;
        let base_url = check_base_url(&base_url).map_err(|r| self.invalid("phonepe", "base_url", r))?;
        let merchant_id = self.str("phonepe", "merchant_id")?;
        check_merchant_id(&merchant_id).map_err(|r| self.invalid("phonepe", "merchant_id", r))?;
        let salt_key = self.str("phonepe", "salt_key")?;
        self.check(
            !salt_key.trim().is_empty(),
            "phonepe",
            "salt_key",
            "must not be empty".into(),
        )?;
        self.at_least("phonepe", "salt_index", 1)?;
        self.at_least("phonepe", "request_timeout_secs", 1)?;
        Ok(PhonePeSettings {
            base_url,
            merchant_id,
            salt_key: Secret::new(salt_key),
            salt_index: self.u32("phonepe", "salt_index")?,
            request_timeout: self.secs("phonepe", "request_timeout_secs")?,
        })
    }

    fn job(&self) -> Result<JobSettings, ConfigError> {
        self.at_least("job", "interval_secs", 1)?;
        self.at_least("job", "max_orders_per_run", 1)?;
        self.at_least("job", "rate_limit_per_minute", 1)?;
        self.at_least("job", "pending_timeout_secs", 1)?;
        self.at_least("job", "unreadable_max_attempts", 1)?;
        let reconcilers = self.uint("job", "reconcilers")?;
        let ok = (1..=256).contains(&reconcilers);
        self.check(
            ok,
            "job",
            "reconcilers",
            format!("must be between 1 and 256, got {reconcilers}"),
        )?;
        let strategy = self.str("job", "commit_strategy")?;
        let commit_strategy = match strategy.as_str() {
            "auto" => CommitStrategy::Auto,
            "transaction" => CommitStrategy::Transaction,
            "journal" => CommitStrategy::Journal,
            other => {
                let reason = format!("must be \"auto\", \"transaction\" or \"journal\", got {other:?}");
                return Err(self.invalid("job", "commit_strategy", reason));
            }
        };
        Ok(JobSettings {
            interval: self.secs("job", "interval_secs")?,
            lookback: self.secs("job", "lookback_secs")?,
            max_orders_per_run: self.u32("job", "max_orders_per_run")?,
            rate_limit_per_minute: self.u32("job", "rate_limit_per_minute")?,
            pending_timeout: self.secs("job", "pending_timeout_secs")?,
            late_payment_watch: self.secs("job", "late_payment_watch_secs")?,
            lease_ttl: self.secs("job", "lease_ttl_secs")?,
            reconcilers: self.u32("job", "reconcilers")?,
            commit_strategy,
            sized_items_decrement_total: self.bool("job", "sized_items_decrement_total")?,
            unreadable_max_attempts: self.u32("job", "unreadable_max_attempts")?,
        })
    }

    fn supervisor(&self) -> Result<SupervisorSettings, ConfigError> {
        self.at_least("supervisor", "max_restarts", 1)?;
        self.at_least("supervisor", "restart_window_secs", 1)?;
        Ok(SupervisorSettings {
            max_restarts: self.u32("supervisor", "max_restarts")?,
            restart_window: self.secs("supervisor", "restart_window_secs")?,
        })
    }

    fn ops(&self) -> Result<OpsSettings, ConfigError> {
        let listen = self.str("ops", "listen")?;
        if listen.trim().is_empty() {
            return Ok(OpsSettings { listen: None });
        }
        let addr = listen.trim().parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                "ops",
                "listen",
                format!("must be ip:port like \"127.0.0.1:9464\" or \"\", got {listen:?}"),
            )
        })?;
        Ok(OpsSettings { listen: Some(addr) })
    }

    /// `[webhook]`: `listen` like `ops.listen`; `username` / `password` optional (empty = unset)
    /// but both or neither.
    fn webhook(&self) -> Result<WebhookSettings, ConfigError> {
        let listen = self.str("webhook", "listen")?;
        let listen = match listen.trim() {
            "" => None,
            addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
                let reason = format!("must be ip:port like \"127.0.0.1:9465\" or \"\", got {listen:?}");
                self.invalid("webhook", "listen", reason)
            })?),
        };
        let optional = |name| match self.raw("webhook", name) {
            Some((toml::Value::String(s), _)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let (username, password) = (optional("username"), optional("password"));
        if username.is_some() != password.is_some() {
            let (set, unset) = if username.is_some() {
                ("username", "password")
            } else {
                ("password", "username")
            };
            let var = if unset == "username" {
                "PHONEPE_WEBHOOK_USERNAME"
            } else {
                "PHONEPE_WEBHOOK_PASSWORD"
            };
            return Err(ConfigError::Missing {
                key: format!("webhook.{unset}"),
                hint: format!("set {var}: webhook.{set} is set and v2 callbacks are checked with both"),
            });
        }
        Ok(WebhookSettings {
            listen,
            username,
            password: password.map(Secret::new),
            confirm_with_status_api: self.bool("webhook", "confirm_with_status_api")?,
        })
    }

    fn log(&self) -> Result<LogSettings, ConfigError> {
        let level = self.str("log", "level")?;
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            return Err(self.invalid(
                "log",
                "level",
                format!("is not a valid filter directive ({e}): {level:?}"),
            ));
        }
        let format = match self.str("log", "format")?.as_str() {
            "auto" => LogFormat::Auto,
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                let reason = format!("must be \"auto\", \"pretty\" or \"json\", got {other:?}");
                return Err(self.invalid("log", "format", reason));
            }
        };
        Ok(LogSettings { level, format })
    }

    /// Rules that relate two keys.
    fn cross_checks(&self, s: &Settings) -> Result<(), ConfigError> {
        let (lease, timeout) = (s.job.lease_ttl.as_secs(), s.phonepe.request_timeout.as_secs());
        let reason = format!(
            "must be at least 2 × phonepe.request_timeout_secs ({}) so a lease outlives a round trip, got {lease}",
            timeout * 2
        );
        self.check(lease >= timeout.saturating_mul(2), "job", "lease_ttl_secs", reason)
    }
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
    let layers = collect(&Sources {
        base_dir,
        config_file,
        env,
        env_names,
    })?;
    Resolved(layers).settings()
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

    /// Every effective key as TOML, with `salt_key = "***"` and the MongoDB password redacted.
    /// What `draft-reconciler config` prints.
    pub fn redacted_toml(&self) -> String {
        fn s(v: &str) -> String {
            toml::Value::String(v.to_string()).to_string()
        }
        let (p, j, sup) = (&self.phonepe, &self.job, &self.supervisor);
        let listen = self.ops.listen.map(|a| a.to_string()).unwrap_or_default();
        let strategy = match j.commit_strategy {
            CommitStrategy::Auto => "auto",
            CommitStrategy::Transaction => "transaction",
            CommitStrategy::Journal => "journal",
        };
        let format = match self.log.format {
            LogFormat::Auto => "auto",
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        };
        let lines = [
            "[mongodb]".to_string(),
            format!("uri = {}", s(&redact_mongo_uri(self.mongodb.uri.expose()))),
            format!("# database = {}", s(&self.mongodb.database)),
            String::new(),
            "[phonepe]".into(),
            format!("base_url = {}", s(&p.base_url)),
            format!("merchant_id = {}", s(&p.merchant_id)),
            "salt_key = \"***\"".into(),
            format!("salt_index = {}", p.salt_index),
            format!("request_timeout_secs = {}", p.request_timeout.as_secs()),
            String::new(),
            "[job]".into(),
            format!("interval_secs = {}", j.interval.as_secs()),
            format!("lookback_secs = {}", j.lookback.as_secs()),
            format!("max_orders_per_run = {}", j.max_orders_per_run),
            format!("rate_limit_per_minute = {}", j.rate_limit_per_minute),
            format!("pending_timeout_secs = {}", j.pending_timeout.as_secs()),
            format!("late_payment_watch_secs = {}", j.late_payment_watch.as_secs()),
            format!("lease_ttl_secs = {}", j.lease_ttl.as_secs()),
            format!("reconcilers = {}", j.reconcilers),
            format!("commit_strategy = {}", s(strategy)),
            format!("sized_items_decrement_total = {}", j.sized_items_decrement_total),
            format!("unreadable_max_attempts = {}", j.unreadable_max_attempts),
            String::new(),
            "[supervisor]".into(),
            format!("max_restarts = {}", sup.max_restarts),
            format!("restart_window_secs = {}", sup.restart_window.as_secs()),
            String::new(),
            "[ops]".into(),
            format!("listen = {}", s(&listen)),
            String::new(),
            "[log]".into(),
            format!("level = {}", s(&self.log.level)),
            format!("format = {}", s(format)),
            String::new(),
            "[webhook]".into(),
            format!(
                "listen = {}",
                s(&self.webhook.listen.map(|a| a.to_string()).unwrap_or_default())
            ),
            format!("username = {}", s(self.webhook.username.as_deref().unwrap_or_default())),
            format!(
                "password = {}",
                s(if self.webhook.password.is_some() { "***" } else { "" })
            ),
            format!("confirm_with_status_api = {}", self.webhook.confirm_with_status_api),
        ];
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests;
