//! The layers, later wins (README.md, "Configuration"): the embedded `config/default.toml`;
//! `--config <file>`, else `config/default.toml` and `config/<APP_ENV or NODE_ENV>.toml` when
//! present; the seed's variables ([`SEED`]; empty is unset); `RECONCILER_<SECTION>__<KEY>`.
//! Each is a figment provider, named in errors; values are read leniently, as variables are text.

use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
use figment::providers::{Env, Format, Serialized};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use secrecy::ExposeSecret;
use serde::de::Error as _;

use super::Settings;
use crate::phonepe::{ApiVersion, SANDBOX_BASE_URL as SANDBOX};
use crate::phonepe::{PRODUCTION_OAUTH_BASE_URL as OAUTH, PRODUCTION_PG_BASE_URL as PG, PRODUCTION_V1_BASE_URL as V1};

/// The seed's variables and the keys they set.
#[rustfmt::skip]
pub(super) const SEED: [(&str, &str); 14] = [
    ("MONGODB_URI", "mongodb.uri"), ("PHONEPE_MERCHANT_ID", "phonepe.merchant_id"),
    ("PHONEPE_SALT_KEY", "phonepe.salt_key"), ("PHONEPE_SALT_INDEX", "phonepe.salt_index"),
    ("PHONEPE_BASE_URL", "phonepe.base_url"), ("PHONEPE_API_VERSION", "phonepe.api_version"),
    ("PHONEPE_CLIENT_ID", "phonepe.client_id"), ("PHONEPE_CLIENT_SECRET", "phonepe.client_secret"),
    ("PHONEPE_CLIENT_VERSION", "phonepe.client_version"), ("PHONEPE_OAUTH_BASE_URL", "phonepe.oauth_base_url"),
    ("PHONEPE_WEBHOOK_USERNAME", "webhook.username"), ("PHONEPE_WEBHOOK_PASSWORD", "webhook.password"),
    ("LOG_LEVEL", "log.level"), ("LOG_FORMAT", "log.format"),
];
const PREFIX: &str = "RECONCILER_";
const EMBEDDED: &str = include_str!("../../config/default.toml");

/// Why the configuration is unusable: the key (or variable) it is about, empty for an unreadable
/// file, and one line naming it and the layer its value came from (`file <path>`, `env <VAR>`).
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct ConfigError(pub(super) String, String);

fn invalid(key: &str, origin: &str, reason: &str) -> ConfigError {
    ConfigError(key.into(), format!("{key} {reason} (from {origin})"))
}

/// A key no layer sets, with the variable to set.
fn missing(key: &str, also: &str) -> ConfigError {
    let var = format!("{PREFIX}{}", key.replace('.', "__").to_uppercase());
    let hint = seed_var(key).map_or(var, String::from);
    ConfigError(key.into(), format!("{key} is required (set {hint}{also})"))
}

fn seed_var(key: &str) -> Option<&'static str> {
    SEED.iter().find(|(_, k)| *k == key).map(|(var, _)| *var)
}

fn origin(meta: Option<&Metadata>) -> String {
    match (meta.map(|m| &m.name), meta.and_then(|m| m.source.as_ref())) {
        (_, Some(Source::File(path))) => format!("file {}", path.display()),
        (Some(name), _) if name.starts_with("env ") => name.to_string(),
        _ => "built-in config/default.toml".into(),
    }
}

/// A figment error as ours: the key is its path, the layer its value's provider.
fn from_figment(figment: &Figment, e: figment::Error) -> ConfigError {
    let key = e.path.join(".");
    let origin = origin(e.metadata.as_ref().or_else(|| figment.find_metadata(&key)));
    let reason = match e.kind {
        Kind::Message(message) if key.is_empty() => {
            return ConfigError(key, format!("cannot read {origin}: {message}"))
        }
        Kind::MissingField(name) => return missing(format!("{key}.{name}").trim_start_matches('.'), ""),
        Kind::UnknownField(name, known) => {
            let distance = |k: &&&str| strsim::levenshtein(&name, k);
            let near = known.iter().filter(|k| distance(k) <= 3).min_by_key(|k| distance(k));
            // For a variable, the variable with the unknown section or key replaced.
            let var = origin.strip_prefix("env ").and_then(|var| var.strip_prefix(PREFIX));
            let hint = match (near, var) {
                (None, _) => String::new(),
                (Some(near), None) => format!(" (did you mean {near}?)"),
                (Some(near), Some(var)) => {
                    let mut parts: Vec<String> = var.split("__").map(String::from).collect();
                    parts[e.path.len() - 1] = near.to_uppercase();
                    format!(" (did you mean {PREFIX}{}?)", parts.join("__"))
                }
            };
            let what = if e.path.len() > 1 { "key" } else { "section" };
            return ConfigError(key.clone(), format!("unknown config {what} {key} in {origin}{hint}"));
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let got = match actual {
                Actual::Unsigned(n) => n.to_string(),
                Actual::Signed(n) => n.to_string(),
                Actual::Str(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            let expected = match expected.as_str() {
                "u32" => format!("an integer from 0 to {}", u32::MAX),
                "a nonzero u32" => format!("an integer from 1 to {}", u32::MAX),
                "u64" => "a non-negative integer".into(),
                "a nonzero u64" => "at least 1".into(),
                "a boolean" => "true or false".into(),
                s if s.starts_with("struct ") => "a table ([section])".into(),
                s => s.into(),
            };
            format!("must be {expected}, got {got}")
        }
        Kind::UnknownVariant(got, known) => {
            let known = format!("{known:?}");
            format!("must be one of {}, got {got:?}", &known[1..known.len() - 1])
        }
        other => other.to_string(),
    };
    invalid(&key, &origin, &reason)
}

/// TOML whose errors carry the parser's message and line, never the text: it may be a secret.
struct Toml;

impl Format for Toml {
    type Error = serde::de::value::Error;
    const NAME: &'static str = "TOML";

    fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Self::Error> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            Self::Error::custom(format!("{} at line {line}", e.message().trim()))
        })
    }
}

/// One variable (name, key, text), as figment's [`Env`] picks it, its value kept as text: `Env`
/// would parse it (`0123` → 123, quotes stripped), changing a merchant id or a secret.
struct Var(String, String, String);

impl Provider for Var {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("env {}", self.0))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::default(&self.1, &self.2).data()
    }
}

/// The variables `env` picks, one provider each; `var` names a key's variable.
fn vars(env: Env, empty_is_unset: bool, var: impl Fn(&str) -> String) -> Figment {
    let set = env.iter().filter(|(_, text)| !(empty_is_unset && text.is_empty()));
    let vars = set.map(|(key, text)| Var(var(key.as_str()), key.to_string(), text));
    vars.fold(Figment::new(), Figment::merge)
}

/// Which deployment environment's file to layer: `APP_ENV`, else `NODE_ENV` (PM2 files set it).
fn env_name() -> Result<Option<String>, ConfigError> {
    let set = |var| Some((var, std::env::var(var).ok().filter(|v| !v.trim().is_empty())?));
    let Some((var, value)) = set("APP_ENV").or_else(|| set("NODE_ENV")) else {
        return Ok(None);
    };
    // The name becomes part of a path: no separators, no `..`.
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if value.trim().chars().all(plain) {
        return Ok(Some(value.trim().into()));
    }
    let reason = format!("must be a plain environment name (letters, digits, '_', '-'), got {value:?}");
    Err(invalid(var, &format!("env {var}"), &reason))
}

fn layers(config_file: Option<&Path>, env: Option<&str>) -> Vec<Figment> {
    let path = |name: &str| PathBuf::from(format!("config/{name}.toml"));
    let found = ["default"].into_iter().chain(env).map(path).filter(|p| p.is_file());
    let files: Vec<PathBuf> = config_file.map_or_else(|| found.collect(), |file| vec![file.into()]);
    let mut layers = vec![Figment::from(Toml::string(EMBEDDED))];
    layers.extend(files.iter().map(|path| Figment::from(Toml::file_exact(path))));
    let seed = Env::raw().filter_map(|var| SEED.iter().find(|(v, _)| var == *v).map(|(_, key)| (*key).into()));
    let seed_var = |key: &str| seed_var(key).unwrap_or_default().into();
    let prefixed = Env::prefixed(PREFIX).filter(|key| key.as_str().contains("__"));
    let prefixed_var = |key: &str| format!("{PREFIX}{}", key.replace('.', "__").to_uppercase());
    layers.push(vars(seed, true, seed_var));
    layers.push(vars(prefixed.split("__"), false, prefixed_var));
    layers
}

/// Merge, read and check the layers. A value a later layer overrides must be valid too (a bad
/// file must not wait for the variable hiding it to go): each layer is read again on top.
fn settings(layers: Vec<Figment>, production: bool) -> Result<Settings, ConfigError> {
    let read = |f: &Figment| f.extract_lossy::<Settings>().map_err(|e| from_figment(f, e));
    let all = layers.iter().cloned().fold(Figment::new(), Figment::merge);
    let mut settings = read(&all)?;
    for layer in layers {
        read(&all.clone().merge(layer))?;
    }
    let p = &mut settings.phonepe;
    // Hosts left unset: the sandbox, or under `production` the API version's production hosts.
    let pg = if p.api_version == ApiVersion::V1 { V1 } else { PG };
    let (pg, oauth) = if production { (pg, OAUTH) } else { (SANDBOX, SANDBOX) };
    for (url, default) in [(&mut p.base_url, pg), (&mut p.oauth_base_url, oauth)] {
        if url.is_empty() {
            *url = default.into();
        }
    }
    // `mongo_uri` has checked that the URI names a database.
    let database = crate::store::settings::mongo_database(settings.mongodb.uri.expose_secret()).unwrap_or_default();
    settings.mongodb.database = database.into();
    cross_checks(&all, &settings).map(|()| settings)
}

/// Rules that relate keys, checked on the effective values.
fn cross_checks(figment: &Figment, s: &Settings) -> Result<(), ConfigError> {
    let (p, job, w, v2) = (&s.phonepe, &s.job, &s.webhook, s.phonepe.api_version == ApiVersion::V2);
    let invalid = |key: &str, reason: String| Err(invalid(key, &origin(figment.find_metadata(key)), &reason));
    if !(1..=256).contains(&job.reconcilers) {
        let reason = format!("must be between 1 and 256, got {}", job.reconcilers);
        return invalid("job.reconcilers", reason);
    }
    let (lease, twice) = (job.lease_ttl.as_secs(), p.request_timeout.as_secs().saturating_mul(2));
    if lease < twice {
        let reason = "must be at least 2 × phonepe.request_timeout_secs";
        let reason = format!("{reason} ({twice}) so a lease outlives a round trip, got {lease}");
        return invalid("job.lease_ttl_secs", reason);
    }
    let need = |set: bool, name: &'static str| (!set).then_some(name);
    let unset = match v2 {
        false => need(p.salt_key.is_some(), "salt_key").or(need(p.salt_index.is_some(), "salt_index")),
        true => need(p.client_id.is_some(), "client_id")
            .or(need(p.client_secret.is_some(), "client_secret"))
            .or(need(p.client_version.is_some(), "client_version")),
    };
    if let Some(name) = unset {
        let also = if v2 { "; phonepe.api_version is \"v2\"" } else { "" };
        return Err(missing(&format!("phonepe.{name}"), also));
    }
    // The v2 callback credentials come in pairs, and a v2 merchant's listener needs them.
    let unset = match (w.username.is_some(), w.password.is_some()) {
        (true, false) => Some("password"),
        (false, true) => Some("username"),
        (false, false) => (v2 && w.listen.is_some()).then_some("username"),
        (true, true) => None,
    };
    if let Some(name) = unset {
        let also = ": v2 callbacks are checked with webhook.username and webhook.password";
        return Err(missing(&format!("webhook.{name}"), also));
    }
    if s.events.url.is_some() && s.events.secret.is_none() {
        let also = " to whsec_ and the base64 of 24 to 64 random bytes, which the shop verifies with";
        return Err(missing("events.secret", &format!("{also}; events.url is set")));
    }
    if s.console.listen.is_some() && s.console.users.is_empty() {
        let reason = "must name at least one operator when console.listen is set \
            (`draft-reconciler console hash-password` makes a hash)";
        return invalid("console.users", reason.into());
    }
    if v2 && p.base_url.ends_with("/apis/hermes") {
        let reason = format!("is the v1 host; API v2 is served under {PG}");
        return invalid("phonepe.base_url", reason);
    }
    s.schema.validate().or_else(|e| invalid(&e.key, e.problem))
}

impl Settings {
    /// Load and check the settings from the process environment and the working directory.
    pub fn from_env(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env = env_name()?;
        let production = env.as_deref() == Some("production");
        settings(layers(config_file, env.as_deref()), production)
    }

    /// Defaults plus merchant `MERCHANTUAT`, salt key `test-salt-key`, salt index 1, ops HTTP
    /// disabled; reads no files and no environment. Panics on an invalid URI or URL.
    pub fn for_tests(mongodb_uri: &str, base_url: &str) -> Settings {
        let fixed = "phonepe = { merchant_id = \"MERCHANTUAT\", salt_key = \"test-salt-key\", salt_index = 1 }";
        let given = Figment::from(Toml::string(&format!("{fixed}\nops = {{ listen = \"\" }}")));
        let given = given
            .merge(("mongodb.uri", mongodb_uri))
            .merge(("phonepe.base_url", base_url));
        let layers = vec![Figment::from(Toml::string(EMBEDDED)), given];
        settings(layers, false).unwrap_or_else(|e| panic!("Settings::for_tests: {e}"))
    }
}
