//! `reconciler_settlement_discrepancies{kind}` in the running service: every [`EVERY`] the open
//! discrepancies are counted from the database — those recorded on the imported rows (one
//! aggregate and one count on `reconciler_settlements`) and `not_settled` ([`not_settled_now`],
//! which `settlement report` uses too: an indexed range of confirmed orders and their PAYMENT
//! rows). The imports run elsewhere (a daily cron or timer); the service only reads what they
//! left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::dates::Day;
use super::matcher::Discrepancy;
use super::report::{not_settled, Confirmed, Coverage};
use crate::store::settlements::CREATED_BEFORE_CONFIRMED_DAYS;
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
    let late = not_settled_now(store, within_days).await?;
    counts.insert(Discrepancy::NotSettled, late.len() as u64);
    Ok(counts)
}

const DAY_MS: i64 = 86_400_000;

/// The confirmed orders that are `not_settled` now (see `settlement::report`).
pub async fn not_settled_now(store: &Store, within: u32) -> StoreResult<Vec<Confirmed>> {
    let Some((first, last)) = store.transaction_span().await? else {
        return Ok(vec![]);
    };
    let cover = Coverage {
        first: Day::india(first),
        last: Day::india(last),
    };
    let latest = cover.latest_due(within);
    if latest < cover.first {
        return Ok(vec![]);
    }
    // Orders are found by creation (indexed); an order is confirmed after it is created.
    let from = cover.first.india_start_ms() - CREATED_BEFORE_CONFIRMED_DAYS * DAY_MS;
    let to = Day(latest.0 + 1).india_start_ms() - 1;
    let confirmed = store.confirmed_created_between(from, to).await?;
    let ids: Vec<String> = confirmed.iter().map(|c| c.order.clone()).collect();
    let paid = store.with_payment_rows(&ids).await?;
    Ok(not_settled(&confirmed, &paid, Some(cover), within)
        .into_iter()
        .cloned()
        .collect())
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
