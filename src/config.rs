//! Typed settings, layered and validated once at start.
//!
//! TODO(helper): layering (embedded config/default.toml, config/<env>.toml or --config file,
//! seed env vars, RECONCILER_<SECTION>__<KEY>), validation naming the key, redaction.

use std::fmt;
use std::net::SocketAddr;
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

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive, e.g. `info` or `draft_reconciler=debug`.
    pub level: String,
    pub format: LogFormat,
}
