//! `[settlement]`: what the imported reports are matched against (`draft-reconciler settlement`).

use serde::{de::Error, Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementSettings {
    /// Business days (Saturdays and Sundays skipped) after its confirmation by which a confirmed
    /// order's PAYMENT row is expected; later, once the imported rows reach that day, it is
    /// `not_settled`.
    #[serde(deserialize_with = "days")]
    pub expected_within_days: u32,
}

fn days<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        days @ 0..=30 => Ok(days),
        days => Err(D::Error::custom(format!("must be between 0 and 30, got {days}"))),
    }
}
