//! What a valid value is, for every section's keys. A message follows the key and its layer
//! (`load.rs` adds them) and never quotes a secret.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

/// The longest wait a `_secs` key takes, ten years: a longer one cannot be printed or added to a date.
pub const MAX_SECS: u64 = 315_360_000;

pub fn at_most_max(secs: u64) -> Result<Duration, String> {
    let too_long = format!("must be at most {MAX_SECS} (ten years), got {secs}");
    (secs <= MAX_SECS).then(|| Duration::from_secs(secs)).ok_or(too_long)
}

#[rustfmt::skip]
serde_with::serde_conv!(
    /// Whole seconds, at least 1 and at most [`MAX_SECS`].
    pub PositiveSecs, Duration, Duration::as_secs, |secs: NonZeroU64| at_most_max(secs.get())
);

#[rustfmt::skip]
serde_with::serde_conv!(
    /// Whole seconds, at most [`MAX_SECS`].
    pub Secs, Duration, Duration::as_secs, at_most_max
);

serde_with::serde_conv!(
    /// `ip:port`, or blank for none.
    pub Listen,
    Option<SocketAddr>,
    |addr: &Option<SocketAddr>| addr.map(|a| a.to_string()).unwrap_or_default(),
    |text: String| match text.trim() {
        "" => Ok(None),
        a => a.parse().map(Some).map_err(|_| format!("must be ip:port like \"127.0.0.1:9464\" or \"\", got {text:?}")),
    }
);

/// Optional text as written, any string but a blank one (unset when `UNSET`). Anything else is
/// refused without being echoed: it may be a secret, mistyped.
pub fn text<'de, const UNSET: bool, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
    match String::deserialize(d).map_err(|_| D::Error::custom("must be a string"))? {
        text if !text.trim().is_empty() => Ok(Some(text.into())),
        _ if UNSET => Ok(None),
        _ => Err(D::Error::custom("must not be empty")),
    }
}

/// How a secret prints.
pub fn redacted<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    secret.as_ref().map(|_| "***").serialize(s)
}

/// A list: a sequence, or text (from a variable) written as a TOML array (`["a", "b"]`, `[5, 30]`)
/// or as items separated by spaces (and by `commas` if they do not occur in items). An item that
/// does not parse is quoted after `must`.
pub fn list<'de, D: Deserializer<'de>, T: FromStr>(d: D, commas: bool, must: &str) -> Result<Vec<T>, D::Error> {
    let value = toml::Value::deserialize(d).map_err(|_| D::Error::custom(must))?;
    let value = match value {
        toml::Value::String(text) if text.trim_start().starts_with('[') => {
            let table: toml::Table = toml::from_str(&format!("list = {text}")).map_err(|_| D::Error::custom(must))?;
            table.get("list").cloned().unwrap_or(toml::Value::Boolean(false))
        }
        value => value,
    };
    let items: Vec<String> = match value {
        toml::Value::String(text) => {
            let sep = |c: char| c.is_whitespace() || (c == ',' && commas);
            text.split(sep)
                .map(|w| w.trim_matches('"'))
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect()
        }
        toml::Value::Array(list) => list
            .into_iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), |s| s.trim().to_string()))
            .collect(),
        _ => return Err(D::Error::custom(must)),
    };
    let parse = |w: &String| w.parse().map_err(|_| D::Error::custom(format!("{must}, got {w:?}")));
    items.iter().map(parse).collect()
}

/// Why `url` is not an http(s) URL naming a host, without quoting it (it may be a credential).
fn url_problem(url: &str) -> Option<&'static str> {
    match url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) {
        None => Some("must start with http:// or https://"),
        Some(r) if r.is_empty() || r.starts_with(['/', '?', '#']) => Some("must name a host"),
        Some(r) if r.contains(char::is_whitespace) => Some("must not contain spaces"),
        Some(_) => None,
    }
}

/// An http(s) root without query or fragment; a trailing `/` is trimmed so callers can append
/// `/pg/v1/status/...`. Errors quote it with any password as `***`.
pub fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?.trim().to_string();
    let query = url.contains(['?', '#']).then_some("must not have a query or fragment");
    match url_problem(&url).or(query) {
        None => Ok(url.trim_end_matches('/').into()),
        Some(problem) => Err(D::Error::custom(format!("{problem}, got {:?}", redact_url(&url)))),
    }
}

/// How a URL prints: any password in it as `***`.
pub fn printed_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    redact_url(url).serialize(s)
}

/// An http(s) URL naming a host, or blank for none.
pub fn optional_url<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
    let Some(url) = text::<true, D, String>(d)? else {
        return Ok(None);
    };
    let url = url.trim().to_string();
    url_problem(&url).map_or(Ok(Some(url.into())), |p| Err(D::Error::custom(p)))
}

/// A URL with the password of its user part, and query values whose names say secret, as `***`.
pub fn redact_url(uri: &str) -> String {
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
    let pairs = query.split('&').map(|pair| match pair.split_once('=') {
        Some((k, _)) if secret.iter().any(|s| k.to_ascii_lowercase().contains(s)) => format!("{k}=***"),
        _ => pair.to_string(),
    });
    format!("{base}?{}", pairs.collect::<Vec<_>>().join("&"))
}
