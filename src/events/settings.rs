//! `[events]` and `[notify]` (docs/events.md): always recorded; `run` sends them when `url` is set.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use secrecy::SecretString;
use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
use serde_with::{serde_as, FromInto};

use crate::config::values::{at_most_max, list, optional_url, redact_url, redacted, text, PositiveSecs};

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

/// `events.url` as `config` prints it: a password in it (basic auth to the shop's endpoint) as `***`.
fn plain_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    redact_url(url.as_deref().unwrap_or_default()).serialize(s)
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 bytes (blank: none). Checked
/// at start, so a bad secret never waits for the first delivery; never quoted.
fn signing_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let Some(secret) = text::<true, D, String>(d)? else {
        return Ok(None);
    };
    super::sign::key(&secret).map_err(D::Error::custom)?;
    Ok(Some(secret.into()))
}

/// Whole seconds, each from 1 to ten years: a sequence, or text (a variable) like `[5, 30]` or `5,30`.
fn waits<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let must = "must be a list of whole seconds, each at least 1, like [5, 30, 120]";
    let secs: Vec<NonZeroU64> = list(d, true, must)?;
    if secs.is_empty() {
        return Err(D::Error::custom(must));
    }
    let wait = |s: NonZeroU64| at_most_max(s.get()).map_err(D::Error::custom);
    secs.into_iter().map(wait).collect()
}

fn secs_list<S: Serializer>(waits: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    waits.iter().map(Duration::as_secs).collect::<Vec<_>>().serialize(s)
}
