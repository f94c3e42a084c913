//! Why the configuration is unusable, as one line naming the key and the layer it came from.

use super::*;
use figment::error::Kind;
use figment::{Figment, Metadata};

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

    /// A figment error as ours: the key is the error's path, the layer its value's provider. Only
    /// our messages and serde's type descriptions reach the text; a [`Secret`] never says more
    /// than "must be a string".
    pub(super) fn from_figment(figment: &Figment, e: figment::Error) -> ConfigError {
        let key = e.path.join(".");
        let origin = origin(figment, &key, e.metadata.as_ref());
        match e.kind {
            Kind::MissingField(name) => missing(&e.path, &name),
            Kind::UnknownField(name, known) => unknown(&e.path, &name, known, origin),
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

/// A key no layer sets, with the variable (or else the file key) to set.
pub(super) fn missing(path: &[String], name: &str) -> ConfigError {
    let key = path
        .iter()
        .map(String::as_str)
        .chain([name])
        .collect::<Vec<_>>()
        .join(".");
    let hint = match SEED_VARS.iter().find(|v| seed_key(v) == key) {
        Some(var) => format!("set {var}"),
        None => format!("set {key} in a config file"),
    };
    ConfigError::Missing { key, hint }
}

/// An unknown section or key (`path` ends with it), with the nearest known one: for a variable,
/// the nearest variable.
pub(super) fn unknown(path: &[String], name: &str, known: &[&str], origin: String) -> ConfigError {
    let hint = match origin.strip_prefix("env ") {
        Some(var) => closest(var, schema().iter().map(|k| env_var(k))),
        None => closest(name, known.iter().map(|k| k.to_string())),
    };
    let key = path.join(".");
    match path.len() {
        1 => ConfigError::UnknownSection {
            section: key,
            origin,
            hint,
        },
        _ => ConfigError::UnknownKey { key, origin, hint },
    }
}

/// The layer that set `key`: the error's own, else the merged value's.
pub(super) fn origin(figment: &Figment, key: &str, meta: Option<&Metadata>) -> String {
    let meta = meta.or_else(|| figment.find_metadata(key));
    meta.map_or_else(|| "nowhere".into(), |m| m.name.to_string())
}

/// serde's name for a type, in words.
pub(super) fn describe(expected: &str) -> String {
    match expected {
        "u32" => format!("an integer from 0 to {}", u32::MAX),
        "u64" => "a non-negative integer".into(),
        "a boolean" => "true or false".into(),
        s if s.starts_with("struct ") => "a table ([section])".into(),
        s => s.into(),
    }
}

/// " (did you mean X?)" for the candidate nearest to `word`, if one is near.
pub(super) fn closest(word: &str, candidates: impl Iterator<Item = String>) -> String {
    let near = candidates
        .map(|c| (strsim::levenshtein(word, &c), c))
        .filter(|(d, _)| *d <= 3);
    near.min()
        .map(|(_, c)| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}
