//! `[settlement]`: PhonePe's settlement reports (`draft-reconciler settlement`, src/settlement).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementSettings {
    /// Business days (Saturdays and Sundays skipped) after its confirmation by which a confirmed
    /// order's PAYMENT row is expected; later, once the imported rows reach that day, it is
    /// `not_settled`.
    pub expected_within_days: u32,
}
