//! What a valid value is: the `deserialize_with` functions named in the [`super::Settings`]
//! structs, and the URI, URL and merchant id checks behind them. Their messages follow the key,
//! e.g. "job.reconcilers must be between 1 and 256, got 0 (from env RECONCILER_JOB__RECONCILERS)";
//! none quotes a secret.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{missing, ConfigError, Secret, Settings};
use crate::phonepe::oauth::{ApiVersion, PRODUCTION_OAUTH_BASE_URL, PRODUCTION_PG_BASE_URL, SANDBOX_BASE_URL};

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

/// A number in `MIN..=MAX`.
pub(super) fn within<'de, const MIN: u64, const MAX: u64, T, D>(d: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + Into<u64> + Copy,
    D: Deserializer<'de>,
{
    let n = T::deserialize(d)?;
    match n.into() {
        v if (MIN..=MAX).contains(&v) => Ok(n),
        v if MAX == u64::MAX => Err(D::Error::custom(format!("must be at least {MIN}, got {v}"))),
        v => Err(D::Error::custom(format!("must be between {MIN} and {MAX}, got {v}"))),
    }
}

pub(super) fn at_least<'de, const MIN: u64, T: Deserialize<'de> + Into<u64> + Copy, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    within::<MIN, { u64::MAX }, T, D>(d)
}

/// Whole seconds (`with = "secs"`).
pub(super) mod secs {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Whole seconds, at least 1 (`with = "positive_secs"`).
pub(super) mod positive_secs {
    pub use super::secs::serialize;
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        at_least::<1, u64, D>(d).map(Duration::from_secs)
    }
}

pub(super) fn mongo_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let uri = Secret::deserialize(d)?;
    mongo_database(uri.expose()).map_err(D::Error::custom)?;
    Ok(uri)
}

pub(super) fn redacted_uri<S: Serializer>(uri: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_mongo_uri(uri.expose()))
}

pub(super) fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check_base_url(&String::deserialize(d)?).map_err(D::Error::custom)
}

pub(super) fn merchant_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    check_merchant_id(String::deserialize(d)?).map_err(D::Error::custom)
}

pub(super) fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let secret = Secret::deserialize(d)?;
    match secret.expose().trim() {
        "" => Err(D::Error::custom("must not be empty")),
        _ => Ok(secret),
    }
}

pub(super) fn some_non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    non_blank(d).map(Some)
}

pub(super) fn some_positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    at_least::<1, u32, D>(d).map(Some)
}

pub(super) fn some_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match String::deserialize(d)?.trim() {
        "" => Err(D::Error::custom("must not be empty")),
        text => Ok(Some(text.to_string())),
    }
}

pub(super) fn unless_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
}

pub(super) fn secret_unless_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let secret = Secret::deserialize(d)?;
    Ok((!secret.expose().trim().is_empty()).then_some(secret))
}

pub(super) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let listen = String::deserialize(d)?;
    let reason = || format!("must be ip:port like \"127.0.0.1:9464\" or \"\", got {listen:?}");
    match listen.trim() {
        "" => Ok(None),
        addr => addr.parse().map(Some).map_err(|_| D::Error::custom(reason())),
    }
}

pub(super) fn show_listen<S: Serializer>(listen: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&listen.map(|a| a.to_string()).unwrap_or_default())
}

pub(super) fn filter_directive<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let level = String::deserialize(d)?;
    match tracing_subscriber::EnvFilter::builder().parse(&level) {
        Ok(_) => Ok(level),
        Err(e) => Err(D::Error::custom(format!(
            "is not a valid filter directive ({e}): {level:?}"
        ))),
    }
}

/// The database name from a MongoDB URI's path. Errors describe the problem without quoting
/// the URI (it may hold a password).
pub(super) fn mongo_database(uri: &str) -> Result<&str, String> {
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
pub(super) fn check_base_url(url: &str) -> Result<String, String> {
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

pub(super) fn check_merchant_id(id: String) -> Result<String, String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 38 {
        return Err(format!("must be at most 38 characters, got {}", id.len()));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("may only contain letters, digits, '_' and '-', got {id:?}"));
    }
    Ok(id)
}

/// `mongodb://user:pass@host/db?authMechanismProperties=...` with the password and any
/// password/token/secret query value replaced by `***`.
pub(super) fn redact_mongo_uri(uri: &str) -> String {
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

pub(super) fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "token", "secret", "authmechanismproperties"]
        .iter()
        .any(|s| name.contains(s))
}

/// PhonePe's hosts when `base_url` / `oauth_base_url` are not set: the sandbox, or under
/// `APP_ENV`/`NODE_ENV` = `production` the production hosts of the API version.
pub fn default_hosts(production: bool, version: ApiVersion) -> (&'static str, &'static str) {
    match (production, version) {
        (false, _) => (SANDBOX_BASE_URL, SANDBOX_BASE_URL),
        (true, ApiVersion::V1) => (PRODUCTION_V1_BASE_URL, PRODUCTION_OAUTH_BASE_URL),
        (true, ApiVersion::V2) => (PRODUCTION_PG_BASE_URL, PRODUCTION_OAUTH_BASE_URL),
    }
}

/// The v1 production host (`/apis/hermes`); API v2 lives under `/apis/pg`.
pub const PRODUCTION_V1_BASE_URL: &str = "https://api.phonepe.com/apis/hermes";

/// The v2 callback credentials come in pairs, and a v2 merchant's listener needs them.
pub(super) fn webhook_checks(s: &Settings) -> Result<(), ConfigError> {
    let w = &s.webhook;
    let unset = match (w.username.is_some(), w.password.is_some()) {
        (true, false) => "password",
        (false, true) => "username",
        (true, true) => return Ok(()),
        (false, false) if w.listen.is_some() && s.phonepe.api_version == ApiVersion::V2 => "username",
        (false, false) => return Ok(()),
    };
    let mut e = missing(&["webhook".to_string()], unset);
    if let ConfigError::Missing { hint, .. } = &mut e {
        hint.push_str(": v2 callbacks are checked with webhook.username and webhook.password");
    }
    Err(e)
}

/// A list of words: a sequence, or text (from a variable) with the words separated by commas,
/// optionally written as a TOML array (`["a", "b"]`).
pub(super) fn reason_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Words {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Words::deserialize(d)? {
        Words::List(l) => l,
        Words::Text(t) => t
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|w| w.trim().trim_matches('"').trim().to_string())
            .filter(|w| !w.is_empty())
            .collect(),
    })
}

impl super::PhonePeSettings {
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
