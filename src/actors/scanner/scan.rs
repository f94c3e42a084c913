//! One scan of the Scanner: the holds, the recovery pass, the sweep, the counts for the gauges
//! and the next due moment (see `actors/scanner.rs`).

use std::sync::Arc;

use mongodb::bson::{Bson, DateTime};

use super::Env;
use crate::store::Swept;
use crate::telemetry::{labels, names};

/// What a scan counts for the gauges.
pub(super) struct ScanCounts {
    /// Drafts the eligible (indexed) filter matches.
    pub(super) eligible: u64,
    /// Drafts only the sweep finds (`createdAt` not a date, `paymentStatus` not pending).
    pub(super) irregular: u64,
    /// Late-payment watches due now (the sweep's included).
    pub(super) due_watches: u64,
    pub(super) overdue_watches: u64,
    pub(super) review: u64,
    /// Orders excluded from claims because the database refuses even their park.
    pub(super) excluded: u64,
    /// Status words that miss the mapping only in case, when this scan looked for them.
    pub(super) near_misses: Option<Vec<crate::store::words::NearMiss>>,
    /// The earliest moment after the scan at which an order becomes due (`Store::next_due`).
    pub(super) next_due: Option<DateTime>,
}

/// The scan a tick runs: the holds (orders left alone for now), the recovery pass, the sweep,
/// and the counts for the gauges. Also the held ids, for the tick's candidate lists.
pub(super) async fn scan(
    env: Arc<Env>,
    words: bool,
) -> Result<(ScanCounts, Swept, Vec<Bson>), crate::store::StoreError> {
    let now = DateTime::now();
    let holds = env.store.load_holds(now).await?;
    let recovered = env
        .store
        .recover_journals_avoiding(&env.owner, env.settings.job.lease_ttl, &holds.ids)
        .await?;
    if !recovered.is_empty() {
        tracing::warn!(report = ?recovered, "recovery pass finished interrupted commits");
    }
    let now = DateTime::now();
    let swept = env.store.sweep_avoiding(now, &env.eligibility, &holds.ids).await?;
    let watches = env.store.count_watches(now, &env.eligibility, &swept).await?;
    let next_due = env.store.next_due(now, &env.eligibility).await?;
    let counts = ScanCounts {
        eligible: env
            .store
            .count_eligible_avoiding(now, &env.eligibility, &holds.ids)
            .await?,
        irregular: swept.drafts.len() as u64,
        due_watches: watches.due,
        overdue_watches: watches.overdue,
        review: env.store.count_needs_review().await?,
        excluded: holds.excluded,
        near_misses: match words {
            true => Some(env.store.near_miss_words().await?),
            false => None,
        },
        // A held order is due again when its retry comes.
        next_due: [next_due, holds.next].into_iter().flatten().min(),
    };
    Ok((counts, swept, holds.ids))
}

impl ScanCounts {
    /// Nothing was due at the scan: the candidate fetch right after it would find nothing (an
    /// order that becomes due meanwhile is `next_due`'s, and the wake comes for it).
    pub(super) fn nothing_due(&self) -> bool {
        self.eligible == 0 && self.irregular == 0 && self.due_watches == 0
    }

    /// Set the backlog gauges and count a successful scan.
    pub(super) fn record(&self) {
        if self.irregular > 0 {
            tracing::warn!(
                drafts = self.irregular,
                "drafts whose createdAt or paymentStatus the indexed query cannot match; \
                 the sweep reconciles or parks them"
            );
        }
        metrics::gauge!(names::ELIGIBLE_BACKLOG).set((self.eligible + self.irregular) as f64);
        metrics::gauge!(names::IRREGULAR_DRAFTS).set(self.irregular as f64);
        metrics::gauge!(names::OVERDUE_WATCHES).set(self.overdue_watches as f64);
        metrics::gauge!(names::NEEDS_REVIEW_ORDERS).set(self.review as f64);
        metrics::gauge!(names::EXCLUDED_ORDERS).set(self.excluded as f64);
        if let Some(misses) = &self.near_misses {
            crate::store::words::log_new(misses);
            let orders: u64 = misses.iter().map(|m| m.orders).sum();
            metrics::gauge!(names::STATUS_WORD_NEAR_MISSES).set(orders as f64);
        }
        metrics::counter!(names::SCAN_RUNS, labels::RESULT => labels::scan::OK).increment(1);
        metrics::gauge!(names::LAST_SUCCESSFUL_SCAN).set(DateTime::now().timestamp_millis() as f64 / 1000.0);
    }
}
