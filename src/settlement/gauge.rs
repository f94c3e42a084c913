//! `reconciler_settlement_discrepancies{kind}` in the running service: every [`EVERY`] the open
//! discrepancies are counted from the database — those recorded on the imported rows (one
//! aggregate and one count on `reconciler_settlements`) and `not_settled`, worked out as
//! `settlement report` does (an indexed range of confirmed orders and their PAYMENT rows). The
//! imports run elsewhere (a daily cron or timer); the service only reads what they left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::matcher::Discrepancy;
use crate::store::{Store, StoreResult};
use crate::telemetry::{labels, names};

/// How often the service counts (the imports are daily; an alert a few minutes late is fine).
pub const EVERY: Duration = Duration::from_secs(300);

/// Open discrepancies by kind, every kind present (0 when none).
pub async fn count(store: &Store, within_days: u32) -> StoreResult<BTreeMap<Discrepancy, u64>> {
    let mut counts: BTreeMap<Discrepancy, u64> = Discrepancy::ALL.into_iter().map(|k| (k, 0)).collect();
    for (kind, n) in store.count_row_discrepancies().await? {
        if let Some(k) = Discrepancy::parse(&kind) {
            *counts.entry(k).or_default() += n;
        }
    }
    let late = super::report_cmd::not_settled_now(store, within_days).await?;
    counts.insert(Discrepancy::NotSettled, late.len() as u64);
    Ok(counts)
}

/// The service's pass: count, set the gauge, wait [`EVERY`], until the process ends.
pub async fn gauge_forever(env: Arc<crate::actors::Env>) {
    let within = env.settings.settlement.expected_within_days;
    loop {
        match count(&env.store, within).await {
            Ok(counts) => {
                for (kind, n) in counts {
                    metrics::gauge!(names::SETTLEMENT_DISCREPANCIES, labels::KIND => kind.as_str()).set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "counting settlement discrepancies failed; trying again later"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
