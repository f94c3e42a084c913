//! Automatic refunds (`refunds.auto`) that cannot start yet: PhonePe did not verify a completed
//! payment to this merchant (or could not be asked). Each such try is recorded on the order
//! (`reconciliation.autoRefund`: `tries`, `nextAt`, `lastError`), so the poller asks again on
//! the decaying schedule (`refund::auto_backoff`) instead of every pass, and after the cap stops
//! (`stopped: true`, a history entry saying why): the order stays in review for a person.

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::{int, note_entry, paid_and_parked};
use crate::domain::{ReviewReason, Status};
use crate::schema::own;
use crate::store::{By, Store, StoreError, StoreResult};

/// `reconciliation.autoRefund`.
pub const AUTO_REFUND: &str = "reconciliation.autoRefund";
/// [`AUTO_REFUND`]'s name inside `reconciliation`.
pub const AUTO_REFUND_KEY: &str = "autoRefund";
const TRIES: &str = "reconciliation.autoRefund.tries";
const NEXT_AT: &str = "reconciliation.autoRefund.nextAt";
const STOPPED: &str = "reconciliation.autoRefund.stopped";
const LAST_ERROR: &str = "reconciliation.autoRefund.lastError";

/// What the automatic refunds tried on one order so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoRefund {
    pub tries: u32,
    pub next_at: Option<DateTime>,
    /// The cap was reached: no more automatic tries.
    pub stopped: bool,
    pub last_error: Option<String>,
}

impl AutoRefund {
    /// As recorded on a fetched order (all defaults when it has none).
    pub fn of(order: &Document) -> AutoRefund {
        let Ok(a) = order
            .get_document(own::RECONCILIATION_KEY)
            .and_then(|r| r.get_document(AUTO_REFUND_KEY))
        else {
            return AutoRefund::default();
        };
        AutoRefund {
            tries: a.get("tries").and_then(int).map_or(0, |n| n.clamp(0, 1 << 20) as u32),
            next_at: a.get_datetime("nextAt").ok().copied(),
            stopped: a.get_bool("stopped").unwrap_or(false),
            last_error: a.get_str("lastError").ok().map(str::to_string),
        }
    }
}

impl Store {
    /// Paid, parked orders whose reason is one of `reasons` (`refunds.auto`; never
    /// `refund_failed`: a refund PhonePe failed needs a person), whose automatic refund is due
    /// (never tried, or its next try has come) and not stopped; at most `max`.
    pub async fn auto_refundable(&self, reasons: &[String], now: DateTime, max: i64) -> StoreResult<Vec<Document>> {
        let o = &self.schema.orders;
        use futures_util::TryStreamExt;
        let reasons: Vec<&str> = reasons
            .iter()
            .map(String::as_str)
            .filter(|r| *r != ReviewReason::RefundFailed.as_str())
            .collect();
        if reasons.is_empty() {
            return Ok(vec![]);
        }
        let mut filter = doc! {
            &o.status: o.status_values.word(Status::NeedsReview),
            &o.payment_status: o.payment_status_values.word(crate::domain::PaymentStatus::Paid),
            own::REASON: { "$in": reasons },
            STOPPED: { "$ne": true },
        };
        filter.insert(
            "$or",
            vec![
                doc! { NEXT_AT: { "$exists": false } },
                doc! { NEXT_AT: { "$lte": now } },
            ],
        );
        self.orders
            .find(filter)
            .limit(max)
            .await
            .map_err(StoreError::mongo("find auto refunds"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find auto refunds"))
    }

    /// An automatic refund of `order` (as read) could not start (`why`): one more try counted,
    /// due again at `next`, or, with `stop`, no more automatic tries (and a history entry saying
    /// why). Guarded by the order still paid and parked with the tries read.
    pub async fn auto_refund_unverified(
        &self,
        order: &Document,
        why: &str,
        next: DateTime,
        stop: bool,
        now: DateTime,
    ) -> StoreResult<bool> {
        let Some(id) = order.get("_id") else {
            return Ok(false);
        };
        let tries = AutoRefund::of(order).tries;
        let mut guard = paid_and_parked(&self.schema.orders, id);
        // `null` also matches a missing field: the first try.
        guard.insert(
            TRIES,
            if tries == 0 {
                Bson::Null
            } else {
                Bson::Int64(i64::from(tries))
            },
        );
        let mut update = doc! {
            "$set": { TRIES: i64::from(tries) + 1, NEXT_AT: next, STOPPED: stop, LAST_ERROR: why },
        };
        if stop {
            let entry = note_entry(now, By::Reconciler.into(), "auto_refund_stopped", None, Some(why));
            update.insert("$push", doc! { own::HISTORY: entry });
        }
        let r = self
            .orders
            .update_one(guard, update)
            .await
            .map_err(StoreError::mongo("record an automatic refund try"))?;
        Ok(r.matched_count == 1)
    }
}
