//! `[refunds]`: which review reasons the service refunds by itself, and how often it asks.

use std::time::Duration;

use serde::{de::Error, Deserialize, Deserializer, Serialize};
use serde_with::serde_as;

use crate::config::values::{list, PositiveSecs};
use crate::domain::ReviewReason;

#[serde_as]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSettings {
    #[serde(deserialize_with = "reasons")]
    pub auto: Vec<String>,
    #[serde_as(as = "PositiveSecs")]
    #[serde(rename = "poll_interval_secs")]
    pub poll_interval: Duration,
}

/// `refunds.auto`: review reasons.
fn reasons<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let reasons: Vec<String> = list(d, true, "must be a list of review reasons")?;
    let Some(bad) = reasons.iter().find(|r| ReviewReason::parse(r).is_none()) else {
        return Ok(reasons);
    };
    let problem = "which is not a review reason (see README.md, decision table)";
    Err(D::Error::custom(format!("names `{bad}`, {problem}")))
}
