//! Typed settings, layered and checked once at start (README.md, "Configuration"; the keys are
//! documented in `config/default.toml`). The schema is the serde derive of [`Settings`]: adding a
//! section is a struct, its field in [`Settings`] and its defaults in `config/default.toml`.

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
use serde_with::{serde_as, DurationSeconds, FromInto};

use crate::phonepe::ApiVersion;

mod load;
mod settlement;

pub use crate::console::password::ConsoleUser;
pub use load::ConfigError;
pub use settlement::SettlementSettings;

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
    pub events: EventSettings,
    pub notify: NotifySettings,
    pub console: ConsoleSettings,
    pub settlement: SettlementSettings,
    /// The shop's names (docs/schema.md); defaults are the reconciler's own.
    #[serde(default)]
    pub schema: crate::schema::Schema,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    #[serde(deserialize_with = "mongo_uri", serialize_with = "redacted_uri")]
    pub uri: SecretString,
    /// The database name, taken from the URI path (not a key).
    #[serde(skip)]
    pub database: String,
}

/// One API version's credentials are required (`load.rs`); unset hosts are PhonePe's.
#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhonePeSettings {
    pub api_version: ApiVersion,
    #[serde(default, deserialize_with = "base_url")]
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
    #[serde(default, deserialize_with = "base_url")]
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
    #[serde_as(as = "DurationSeconds")]
    #[serde(rename = "lookback_secs")]
    pub lookback: Duration,
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub max_orders_per_run: u32,
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub rate_limit_per_minute: u32,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "pending_timeout_secs")]
    pub pending_timeout: Duration,
    #[serde_as(as = "DurationSeconds")]
    #[serde(rename = "late_payment_watch_secs")]
    pub late_payment_watch: Duration,
    #[serde_as(as = "DurationSeconds")]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(deserialize_with = "filter_directive")]
    pub level: String,
    pub format: LogFormat,
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

#[serde_as]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSettings {
    #[serde(deserialize_with = "words")]
    pub auto: Vec<String>,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "poll_interval_secs")]
    pub poll_interval: Duration,
}

/// The shop's events (docs/events.md): always recorded; `run` sends them when `url` is set.
#[serde_as]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Where `run` POSTs each event (blank: nobody is told; events are still recorded).
    #[serde(default, deserialize_with = "optional_url", serialize_with = "plain_url")]
    pub url: Option<String>,
    /// The Standard Webhooks signing secret, `whsec_<base64 key>`; required with `url`.
    #[serde(default, deserialize_with = "signing_secret", serialize_with = "redacted")]
    pub secret: Option<SecretString>,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "timeout_secs")]
    pub timeout: Duration,
    #[serde_as(deserialize_as = "FromInto<NonZeroU32>")]
    pub retry_for_hours: u32,
    /// Waits between attempts, the last repeating (±10 % jitter each).
    #[serde(rename = "retry_secs", deserialize_with = "waits", serialize_with = "secs_list")]
    pub retry: Vec<Duration>,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "poll_secs")]
    pub poll: Duration,
}

impl EventSettings {
    /// `retry_for_hours` as a duration: how long an event is retried before it is `failed`,
    /// and how old an event may be when first sent before it is `expired` unsent.
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.retry_for_hours) * 3600)
    }
}

/// People's copies of the events they must act on.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// A Slack incoming-webhook URL (its path is the credential: never printed).
    #[serde(default, deserialize_with = "optional_url", serialize_with = "redacted")]
    pub slack_url: Option<SecretString>,
}

/// The operator's console (`src/console`): off unless `listen` is set.
#[serde_as]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    #[serde_as(as = "Listen")]
    pub listen: Option<SocketAddr>,
    /// Who may log in. Printed by `config` with the hashes as `***`.
    #[serde(deserialize_with = "console_users", serialize_with = "redacted_users")]
    pub users: Vec<ConsoleUser>,
    /// `Secure` on the session cookie; false only for plain HTTP on a developer's machine.
    pub secure_cookies: bool,
    /// Peers whose `X-Forwarded-For` names the client (the shop's TLS proxy), for login throttling.
    #[serde(deserialize_with = "addresses")]
    pub trusted_proxies: Vec<IpAddr>,
}

/// A name an operator may have (also the OS user `review resolve` records): 1 to 64 letters,
/// digits, `_`, `.`, `@` and `-`, so it is safe in a history entry, a log line and a page.
pub fn is_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

impl PhonePeSettings {
    /// The v2 client credentials (`None` under v1, or when one is missing).
    pub fn v2_credentials(&self) -> Option<crate::phonepe::V2Credentials> {
        Some(crate::phonepe::V2Credentials {
            client_id: self.client_id.clone()?,
            client_secret: self.client_secret.clone()?,
            client_version: self.client_version?.to_string(),
            oauth_base_url: self.oauth_base_url.clone(),
        })
    }
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

// What a valid value is. A message follows the key and its layer, and never quotes a secret.

serde_with::serde_conv!(
    /// Whole seconds, at least 1.
    PositiveSecs,
    Duration,
    Duration::as_secs,
    |secs: NonZeroU64| Ok::<_, String>(Duration::from_secs(secs.get()))
);

serde_with::serde_conv!(
    /// `ip:port`, or blank for none.
    Listen,
    Option<SocketAddr>,
    |addr: &Option<SocketAddr>| addr.map(|a| a.to_string()).unwrap_or_default(),
    |text: String| match text.trim() {
        "" => Ok(None),
        a => a.parse().map(Some).map_err(|_| format!("must be ip:port like \"127.0.0.1:9464\" or \"\", got {text:?}")),
    }
);

/// Optional text as written, any string but a blank one (unset when `UNSET`). Anything else is
/// refused without being echoed: it may be a secret, mistyped.
fn text<'de, const UNSET: bool, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
    match String::deserialize(d).map_err(|_| D::Error::custom("must be a string"))? {
        text if !text.trim().is_empty() => Ok(Some(text.into())),
        _ if UNSET => Ok(None),
        _ => Err(D::Error::custom("must not be empty")),
    }
}

/// How a secret prints.
fn redacted<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    secret.as_ref().map(|_| "***").serialize(s)
}

fn mongo_uri<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let uri: SecretString = text::<false, D, _>(d)?.unwrap_or_default();
    mongo_database(uri.expose_secret()).map_err(D::Error::custom)?;
    Ok(uri)
}

/// The URI with its password, and any password/token/secret query value, as `***`.
fn redacted_uri<S: Serializer>(uri: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(uri.expose_secret()))
}

/// A URL with the password of its user part, and query values whose names say secret, as `***`.
fn redact_url(uri: &str) -> String {
    let hosts = uri.find("://").map_or(0, |i| i + 3);
    let end = uri[hosts..].find(['/', '?']).map_or(uri.len(), |i| hosts + i);
    let mut out = uri.to_string();
    if let Some(at) = uri[hosts..end].rfind('@').map(|i| hosts + i) {
        if let Some(colon) = uri[hosts..at].find(':') {
            out = format!("{}:***{}", &uri[..hosts + colon], &uri[at..]);
        }
    }
    let Some((base, query)) = out.split_once('?') else {
        return out;
    };
    let secret = ["password", "token", "secret", "authmechanismproperties"];
    let mut out = format!("{base}?");
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((k, _)) if secret.iter().any(|s| k.to_ascii_lowercase().contains(s)) => out += &format!("{k}=***&"),
            _ => out += &format!("{pair}&"),
        }
    }
    out[..out.len() - 1].to_string()
}

/// The database name from a MongoDB URI's path. Errors describe, never quote, the URI.
fn mongo_database(uri: &str) -> Result<&str, &'static str> {
    let rest = match uri.split_once("://") {
        Some(("mongodb" | "mongodb+srv", rest)) => rest,
        _ => return Err("must start with mongodb:// or mongodb+srv://"),
    };
    const BAD: [char; 11] = ['/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|'];
    let no_database = "must name a database in its path, e.g. mongodb://host:27017/shop";
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let (hosts, db) = path.split_once('/').ok_or(no_database)?;
    match db {
        _ if hosts.rsplit('@').next().unwrap_or_default().is_empty() => Err("must name a host"),
        "" => Err(no_database),
        _ if db.contains(BAD) => Err("has an invalid database name in its path"),
        _ => Ok(db),
    }
}

/// An http(s) root without query or fragment; a trailing `/` is trimmed so callers can append
/// `/pg/v1/status/...`.
fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    let problem = match url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) {
        None => "must start with http:// or https://",
        Some(rest) if rest.contains(['?', '#']) => "must not have a query or fragment",
        Some(rest) if rest.starts_with('/') || rest.is_empty() => "must name a host",
        Some(_) => return Ok(url.trim_end_matches('/').into()),
    };
    Err(D::Error::custom(format!("{problem}, got {url:?}")))
}

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

fn filter_directive<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let level = String::deserialize(d)?;
    let parsed = tracing_subscriber::EnvFilter::builder().parse(&level);
    let problem = |e| D::Error::custom(format!("is not a valid filter directive ({e}): {level:?}"));
    parsed.map_err(problem).map(|_| level.clone())
}

/// An http(s) URL naming a host, or blank for none. Errors describe, never quote, the URL: the
/// Slack one is a credential.
fn optional_url<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
    let Some(url) = text::<true, D, String>(d)? else {
        return Ok(None);
    };
    let url = url.trim().to_string();
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        None => Err(D::Error::custom("must start with http:// or https://")),
        Some(r) if r.is_empty() || r.starts_with(['/', '?', '#']) => Err(D::Error::custom("must name a host")),
        Some(r) if r.contains(char::is_whitespace) => Err(D::Error::custom("must not contain spaces")),
        Some(_) => Ok(Some(url.into())),
    }
}

/// `events.url` as `config` prints it: a password in it (basic auth to the shop's endpoint) as `***`.
fn plain_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    redact_url(url.as_deref().unwrap_or_default()).serialize(s)
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 bytes (blank: none). Checked
/// here, at start, so a bad secret never waits for the first delivery; never quoted.
fn signing_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let Some(secret) = text::<true, D, String>(d)? else {
        return Ok(None);
    };
    crate::events::sign::key(&secret).map_err(D::Error::custom)?;
    Ok(Some(secret.into()))
}

/// Whole seconds, each at least 1: a sequence, or text (from a variable) like `[5, 30]` or
/// `5,30`.
fn waits<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let must = "must be a list of whole seconds, each at least 1, like [5, 30, 120]";
    let secs: Vec<u64> = match toml::Value::deserialize(d)? {
        toml::Value::String(text) => {
            let list = text.trim().trim_start_matches('[').trim_end_matches(']');
            let parsed = list
                .split(',')
                .map(|w| w.trim())
                .filter(|w| !w.is_empty())
                .map(str::parse);
            parsed.collect::<Result<_, _>>().map_err(|_| D::Error::custom(must))?
        }
        list => Vec::deserialize(list).map_err(|_| D::Error::custom(must))?,
    };
    if secs.is_empty() || secs.contains(&0) {
        return Err(D::Error::custom(must));
    }
    Ok(secs.into_iter().map(Duration::from_secs).collect())
}

fn secs_list<S: Serializer>(waits: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    waits.iter().map(Duration::as_secs).collect::<Vec<_>>().serialize(s)
}

/// `console.users`: `name:hash` entries (split at the first colon), whitespace-separated in a
/// string (a variable) or one per element of a list. Errors name the entry, never its hash.
fn console_users<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ConsoleUser>, D::Error> {
    let entries: Vec<String> = match toml::Value::deserialize(d).map_err(|_| D::Error::custom("must be text"))? {
        toml::Value::String(text) => text.split_whitespace().map(String::from).collect(),
        toml::Value::Array(list) => list
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.trim().to_string()),
                _ => Err(D::Error::custom("must be a list of \"name:hash\" strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(D::Error::custom(
                "must be \"name:hash\" entries separated by spaces, or a list of them",
            ))
        }
    };
    let mut users: Vec<ConsoleUser> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        let Some((name, hash)) = entry.split_once(':') else {
            return Err(D::Error::custom(format!("entry {n} is not name:hash (no colon)")));
        };
        if !is_operator_name(name) {
            let problem = "a name of 1 to 64 letters, digits, '_', '.', '@' or '-'";
            return Err(D::Error::custom(format!("entry {n} must start with {problem}")));
        }
        if let Err(problem) = crate::console::password::check_hash(hash) {
            return Err(D::Error::custom(format!("entry {n} ({name}): the hash {problem}")));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(D::Error::custom(format!("entry {n}: {name} is listed twice")));
        }
        users.push(ConsoleUser {
            name: name.into(),
            hash: hash.into(),
        });
    }
    Ok(users)
}

/// How `console.users` prints: the names, each hash as `***`.
fn redacted_users<S: Serializer>(users: &[ConsoleUser], s: S) -> Result<S::Ok, S::Error> {
    let printed: Vec<String> = users.iter().map(|u| format!("{}:***", u.name)).collect();
    printed.serialize(s)
}

/// IP addresses, as [`words`] (commas or spaces in a variable, or a list).
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    let words = words(d)?;
    let words = words.iter().flat_map(|w| w.split_whitespace());
    words
        .map(|w| {
            w.parse()
                .map_err(|_| D::Error::custom(format!("must list IP addresses like \"127.0.0.1\", got {w:?}")))
        })
        .collect()
}

/// A list of words: a sequence, or text (from a variable) with the words separated by commas,
/// optionally written as a TOML array (`["a", "b"]`).
fn words<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let text = match toml::Value::deserialize(d)? {
        toml::Value::String(text) => text,
        list => return Vec::deserialize(list).map_err(D::Error::custom),
    };
    let words = text.trim().trim_start_matches('[').trim_end_matches(']').split(',');
    let words = words.map(|w| w.trim().trim_matches('"').trim().to_string());
    Ok(words.filter(|w| !w.is_empty()).collect())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_api;
#[cfg(test)]
mod tests_events;
