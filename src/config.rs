//! Typed settings, layered and checked once at start (README.md, "Configuration"; the keys are
//! documented in `config/default.toml`). The schema is the serde derive of [`Settings`]: adding a
//! section is a struct, its field in [`Settings`] and its defaults in `config/default.toml`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use secrecy::SecretString;
use serde::{de::Error, Deserialize, Deserializer, Serialize};
use serde_with::{serde_as, FromInto};

use crate::console::settings::ConsoleSettings;
use crate::events::settings::{EventSettings, NotifySettings};
use crate::phonepe::ApiVersion;
use crate::refund::settings::RefundSettings;
use crate::settlement::settings::SettlementSettings;
pub use crate::store::commit::CommitStrategy;
pub use crate::store::settings::MongoSettings;
pub use crate::telemetry::{LogFormat, LogSettings};
use values::{base_url, printed_url, redacted, text, Listen, PositiveSecs, Secs};

mod load;
pub mod values;

pub use load::ConfigError;

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
    pub events: EventSettings,
    pub notify: NotifySettings,
    pub console: ConsoleSettings,
    pub settlement: SettlementSettings,
    /// The shop's names (docs/schema.md); defaults are the reconciler's own.
    #[serde(default)]
    pub schema: crate::schema::Schema,
}

/// One API version's credentials are required (`load.rs`); unset hosts are PhonePe's.
#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePeSettings {
    pub api_version: ApiVersion,
    #[serde(default, deserialize_with = "base_url", serialize_with = "printed_url")]
    pub base_url: String,
    #[serde(deserialize_with = "merchant_id")]
    pub merchant_id: String,
    #[serde(default, deserialize_with = "text::<false, _, _>", serialize_with = "redacted")]
    pub salt_key: Option<SecretString>,
    #[serde_as(deserialize_as = "Option<FromInto<NonZeroU32>>")]
    pub salt_index: Option<u32>,
    #[serde(default, deserialize_with = "text::<false, _, _>")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "text::<false, _, _>", serialize_with = "redacted")]
    pub client_secret: Option<SecretString>,
    #[serde_as(deserialize_as = "Option<FromInto<NonZeroU32>>")]
    pub client_version: Option<u32>,
    #[serde(default, deserialize_with = "base_url", serialize_with = "printed_url")]
    pub oauth_base_url: String,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "request_timeout_secs")]
    pub request_timeout: Duration,
}

#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "interval_secs")]
    pub interval: Duration,
    #[serde_as(as = "Secs")]
    #[serde(rename = "lookback_secs")]
    pub lookback: Duration,
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub max_orders_per_run: u32,
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub rate_limit_per_minute: u32,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "pending_timeout_secs")]
    pub pending_timeout: Duration,
    #[serde_as(as = "Secs")]
    #[serde(rename = "late_payment_watch_secs")]
    pub late_payment_watch: Duration,
    #[serde_as(as = "Secs")]
    #[serde(rename = "lease_ttl_secs")]
    pub lease_ttl: Duration,
    pub reconcilers: u32,
    pub commit_strategy: CommitStrategy,
    pub sized_items_decrement_total: bool,
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub unreadable_max_attempts: u32,
}

#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub max_restarts: u32,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "restart_window_secs")]
    pub restart_window: Duration,
}

#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    #[serde_as(as = "Listen")]
    pub listen: Option<SocketAddr>,
}

#[serde_as]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    #[serde_as(as = "Listen")]
    pub listen: Option<SocketAddr>,
    /// Both or neither; blank is unset.
    #[serde(default, deserialize_with = "text::<true, _, _>")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "text::<true, _, _>", serialize_with = "redacted")]
    pub password: Option<SecretString>,
    pub confirm_with_status_api: bool,
}

impl Settings {
    /// What `draft-reconciler config` prints: every effective key as TOML, in field order, the
    /// secrets as `"***"`, and the database as a comment after the `[mongodb]` section.
    pub fn redacted_toml(&self) -> String {
        let text = toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"));
        let database = toml::Value::String(self.mongodb.database.clone());
        text.replacen("\n\n", &format!("\n# database = {database}\n\n"), 1)
    }
}

// The values only one key takes; the shared ones are in `values.rs`.

/// PhonePe's merchant id: up to 38 letters, digits, `_` and `-`.
fn merchant_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    let problem = match id.len() {
        0 => "must not be empty".into(),
        39.. => format!("must be at most 38 characters, got {}", id.len()),
        _ if id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => return Ok(id),
        _ => format!("may only contain letters, digits, '_' and '-', got {id:?}"),
    };
    Err(D::Error::custom(problem))
}

#[cfg(test)]
mod tests;
