//! `[mongodb]`: where the store connects; the database is the URI's path.

use secrecy::{ExposeSecret, SecretString};
use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

use crate::config::values::{redact_url, text};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    #[serde(deserialize_with = "mongo_uri", serialize_with = "redacted_uri")]
    pub uri: SecretString,
    /// The database name, taken from the URI path (not a key).
    #[serde(skip)]
    pub database: String,
}

fn mongo_uri<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let uri: SecretString = text::<false, D, _>(d)?.unwrap_or_default();
    mongo_database(uri.expose_secret()).map_err(Error::custom)?;
    Ok(uri)
}

/// The URI with its password, and any password/token/secret query value, as `***`.
fn redacted_uri<S: Serializer>(uri: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(uri.expose_secret()))
}

/// The database name from a MongoDB URI's path. Errors describe, never quote, the URI.
pub fn mongo_database(uri: &str) -> Result<&str, &'static str> {
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
