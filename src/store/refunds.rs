//! The review queue and refunds in MongoDB: what `review list` shows, and every write a refund
//! or an operator's action makes. Each write is guarded by the status (and payment status) it
//! expects, so running an action twice, or two shells at once, changes the order once.
//!
//! A refund is recorded **before** PhonePe is asked: `paymentStatus: refund_pending` and
//! `reconciliation.refund` (`id`, `amount`, `attempt`, `accepted`, `nextPollAt`). The id is
//! derived from the order (`<merchantTransactionId>-R<attempt>`), so a retry after a timeout asks
//! for the same refund and PhonePe cannot make a second one; a new attempt (after PhonePe said
//! FAILED) gets the next number. The order's `status` stays `needs_review` while the refund is
//! pending; stock never moves. Every PhonePe call about a recorded refund is claimed first
//! ([`Store::claim_refund_poll`]): two instances polling at once make one call per due moment.

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::fields::own;
use super::orders::{transition_update, Transition};
use super::{Store, StoreError, StoreResult};
use crate::domain::{CancelReason, PaymentStatus, Reason, ReviewReason, Status};
use crate::schema::{get_path, OrdersSchema};

/// `reconciliation.refund`: the refund recorded on the order.
pub const REFUND: &str = "reconciliation.refund";
/// [`REFUND`]'s name inside `reconciliation`.
pub const REFUND_KEY: &str = "refund";
pub const REFUND_ID: &str = "reconciliation.refund.id";
pub const REFUND_ATTEMPT: &str = "reconciliation.refund.attempt";
pub const REFUND_ACCEPTED: &str = "reconciliation.refund.accepted";
pub const REFUND_NEXT_POLL_AT: &str = "reconciliation.refund.nextPollAt";
pub const REFUND_REQUESTED_AT: &str = "reconciliation.refund.requestedAt";

/// The id of refund attempt `attempt` (1, 2, …) of the order `mtid`.
pub fn refund_id(mtid: &str, attempt: i64) -> String {
    format!("{mtid}-R{attempt}")
}

/// A refund recorded on an order, as the poller needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRefund {
    pub order_id: Bson,
    pub merchant_transaction_id: String,
    pub refund_id: String,
    pub amount: i64,
    /// PhonePe answered the refund request (so only its status is asked from now on).
    pub accepted: bool,
    /// `nextPollAt` as read: the guard of [`Store::claim_refund_poll`].
    pub next_poll_at: Option<DateTime>,
}

impl PendingRefund {
    /// Read the refund recorded on a fetched order; `None` when it has none.
    pub fn of(order: &Document, o: &OrdersSchema) -> Option<PendingRefund> {
        let r = order
            .get_document(own::RECONCILIATION_KEY)
            .ok()?
            .get_document(REFUND_KEY)
            .ok()?;
        Some(PendingRefund {
            order_id: order.get("_id")?.clone(),
            merchant_transaction_id: get_path(order, &o.id)?.as_str()?.to_string(),
            refund_id: r.get_str("id").ok()?.to_string(),
            amount: r.get_i64("amount").ok()?,
            accepted: r.get_bool("accepted").unwrap_or(false),
            next_poll_at: r.get_datetime("nextPollAt").ok().copied(),
        })
    }
}

fn paid_and_parked(o: &OrdersSchema, id: &Bson) -> Document {
    doc! { "_id": id, &o.status: o.status_values.word(Status::NeedsReview), &o.payment_status: o.payment_status_values.word(PaymentStatus::Paid) }
}

fn refunding(o: &OrdersSchema, p: &PendingRefund) -> Document {
    doc! {
        "_id": &p.order_id, &o.status: o.status_values.word(Status::NeedsReview),
        &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending), REFUND_ID: &p.refund_id,
    }
}

/// A history entry of a step that changes no status (a refund asked for).
fn note_entry(now: DateTime, by: &str, what: &str, refund_id: &str, note: Option<&str>) -> Document {
    let s = Status::NeedsReview.as_str();
    let mut e = doc! { "at": now, "from": s, "to": s, "by": by, "reason": what, "refundId": refund_id };
    if let Some(n) = note {
        e.insert("note", n);
    }
    e
}

impl Store {
    /// Every order parked as `needs_review` (with `reason`, when given), oldest change first.
    pub async fn parked(&self, reason: Option<&str>) -> StoreResult<Vec<Document>> {
        let o = &self.schema.orders;
        use futures_util::TryStreamExt;
        let mut filter = doc! { &o.status: o.status_values.word(Status::NeedsReview) };
        if let Some(r) = reason {
            filter.insert(own::REASON, r);
        }
        self.orders
            .find(filter)
            .sort(doc! { &o.updated_at: 1 })
            .await
            .map_err(StoreError::mongo("list parked orders"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("list parked orders"))
    }

    /// Record a refund of the paid, parked `order` before PhonePe is asked. `None` when the order
    /// is not (or no longer) `needs_review` and `paid`: nothing written.
    pub async fn begin_refund(
        &self,
        order: &Document,
        amount: i64,
        by: &str,
        note: Option<&str>,
        now: DateTime,
    ) -> StoreResult<Option<PendingRefund>> {
        let o = &self.schema.orders;
        let (Some(id), Some(mtid)) = (order.get("_id"), get_path(order, &o.id).and_then(Bson::as_str)) else {
            return Ok(None);
        };
        let previous = PendingRefund::of(order, o).map_or(0, |_| {
            order
                .get_document(own::RECONCILIATION_KEY)
                .and_then(|r| r.get_document(REFUND_KEY))
                .and_then(|r| r.get_i64("attempt"))
                .unwrap_or(1)
        });
        let attempt = previous + 1;
        let refund_id = refund_id(mtid, attempt);
        let refund = doc! {
            "id": &refund_id, "amount": amount, "attempt": attempt, "accepted": false,
            "requestedAt": now, "nextPollAt": now, "by": by,
        };
        let update = doc! {
            "$set": { &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending), &o.updated_at: now, REFUND: refund },
            "$push": { own::HISTORY: note_entry(now, by, "refund_requested", &refund_id, note) },
        };
        let r = self
            .orders
            .update_one(paid_and_parked(o, id), update)
            .await
            .map_err(StoreError::mongo("record refund"))?;
        Ok((r.matched_count == 1).then(|| PendingRefund {
            order_id: id.clone(),
            merchant_transaction_id: mtid.to_string(),
            refund_id,
            amount,
            accepted: false,
            next_poll_at: Some(now),
        }))
    }

    /// Claim the next PhonePe call about refund `p` before making it: `nextPollAt` moves from
    /// the value read ([`PendingRefund::next_poll_at`]) to `until` in one atomic
    /// findOneAndUpdate guarded on that value, so of two instances that found the refund due only
    /// one wins (and spends a PhonePe permit); `false` for the other, or when it finished.
    pub async fn claim_refund_poll(&self, p: &PendingRefund, until: DateTime) -> StoreResult<bool> {
        let mut guard = refunding(&self.schema.orders, p);
        guard.insert(REFUND_NEXT_POLL_AT, p.next_poll_at.map_or(Bson::Null, Bson::DateTime));
        // Strictly later than the value read, so a claim always changes it.
        let after = p.next_poll_at.map_or(0, |t| t.timestamp_millis() + 1);
        let until = DateTime::from_millis(until.timestamp_millis().max(after));
        let claimed = self
            .orders
            .find_one_and_update(guard, doc! { "$set": { REFUND_NEXT_POLL_AT: until } })
            .await
            .map_err(StoreError::mongo("claim refund poll"))?;
        Ok(claimed.is_some())
    }

    /// PhonePe answered the refund request: from now on only its status is asked, at `next`.
    pub async fn refund_accepted(&self, p: &PendingRefund, next: DateTime) -> StoreResult<bool> {
        let set = doc! { REFUND_ACCEPTED: true, REFUND_NEXT_POLL_AT: next };
        let r = self
            .orders
            .update_one(refunding(&self.schema.orders, p), doc! { "$set": set })
            .await
            .map_err(StoreError::mongo("schedule refund poll"))?;
        Ok(r.matched_count == 1)
    }

    /// PhonePe's final word on the refund: COMPLETED → `refunded`; FAILED → parked again as
    /// `paid` with reason `refund_failed`. Guarded by the refund's id: `false` when someone else
    /// finished it first.
    pub async fn finish_refund(
        &self,
        p: &PendingRefund,
        completed: bool,
        by: &'static str,
        now: DateTime,
    ) -> StoreResult<bool> {
        let (to, payment, reason, code): (Status, PaymentStatus, Reason, &str) = if completed {
            (
                Status::Refunded,
                PaymentStatus::Refunded,
                Reason::Refunded,
                "REFUND_COMPLETED",
            )
        } else {
            (
                Status::NeedsReview,
                PaymentStatus::Paid,
                ReviewReason::RefundFailed.into(),
                "REFUND_FAILED",
            )
        };
        let t = Transition::new(
            Status::NeedsReview,
            to,
            payment,
            reason,
            code.into(),
            Some(p.refund_id.clone()),
        )
        .by(by);
        let mut update = transition_update(now, &t, &self.schema);
        if let Ok(set) = update.get_document_mut("$set") {
            // Nothing left to poll; the refund's record stays for the audit.
            set.insert(REFUND_NEXT_POLL_AT, Bson::Null);
        }
        let r = self
            .orders
            .update_one(refunding(&self.schema.orders, p), update)
            .await
            .map_err(StoreError::mongo("finish refund"))?;
        Ok(r.matched_count == 1)
    }

    /// Refunds due a poll (their `nextPollAt` passed), oldest first, at most `max`.
    pub async fn due_refunds(&self, now: DateTime, max: i64) -> StoreResult<Vec<PendingRefund>> {
        let o = &self.schema.orders;
        use futures_util::TryStreamExt;
        let docs: Vec<Document> = self
            .orders
            .find(doc! {
                &o.status: o.status_values.word(Status::NeedsReview),
                &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending),
                REFUND_NEXT_POLL_AT: { "$lte": now },
            })
            .sort(doc! { REFUND_NEXT_POLL_AT: 1 })
            .limit(max)
            .await
            .map_err(StoreError::mongo("find due refunds"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find due refunds"))?;
        Ok(docs.iter().filter_map(|d| PendingRefund::of(d, o)).collect())
    }

    /// Refunds still pending (the `reconciler_refunds_pending` gauge).
    pub async fn count_pending_refunds(&self) -> StoreResult<u64> {
        let o = &self.schema.orders;
        self.orders
            .count_documents(doc! { &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending) })
            .await
            .map_err(StoreError::mongo("count pending refunds"))
    }

    /// When the oldest refund still pending was asked for (the oldest-pending-refund gauge).
    pub async fn oldest_pending_refund(&self) -> StoreResult<Option<DateTime>> {
        let o = &self.schema.orders;
        let oldest = self
            .orders
            .find_one(doc! { &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending) })
            .sort(doc! { REFUND_REQUESTED_AT: 1 })
            .await
            .map_err(StoreError::mongo("find the oldest pending refund"))?;
        Ok(oldest.and_then(|d| {
            d.get_document(own::RECONCILIATION_KEY)
                .and_then(|r| r.get_document(REFUND_KEY))
                .and_then(|r| r.get_datetime("requestedAt"))
                .ok()
                .copied()
        }))
    }

    /// Paid, parked orders whose reason is one of `reasons` (`refunds.auto`), at most `max`.
    pub async fn auto_refundable(&self, reasons: &[String], max: i64) -> StoreResult<Vec<Document>> {
        let o = &self.schema.orders;
        use futures_util::TryStreamExt;
        if reasons.is_empty() {
            return Ok(vec![]);
        }
        self.orders
            .find(doc! {
                &o.status: o.status_values.word(Status::NeedsReview),
                &o.payment_status: o.payment_status_values.word(PaymentStatus::Paid),
                own::REASON: { "$in": reasons },
            })
            .limit(max)
            .await
            .map_err(StoreError::mongo("find auto refunds"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find auto refunds"))
    }

    /// An operator closes a parked order that was never paid (`pending` or `failed`); `false`
    /// when it is not (or no longer) one.
    pub async fn operator_cancel(&self, id: &Bson, note: Option<String>, now: DateTime) -> StoreResult<bool> {
        let o = &self.schema.orders;
        let unpaid =
            [PaymentStatus::Pending, PaymentStatus::Failed].map(|p| o.payment_status_values.word(p).to_string());
        let filter = doc! { "_id": id, &o.status: o.status_values.word(Status::NeedsReview), &o.payment_status: { "$in": unpaid.to_vec() } };
        let mut t = Transition::new(
            Status::NeedsReview,
            Status::Cancelled,
            PaymentStatus::Failed,
            CancelReason::Operator,
            "OPERATOR".into(),
            None,
        )
        .by(super::orders::by::OPERATOR);
        t.note = note;
        let mut update = transition_update(now, &t, &self.schema);
        if let Ok(set) = update.get_document_mut("$set") {
            // Left as it was: an unpaid order's payment status is PhonePe's word, not ours.
            set.remove(&self.schema.orders.payment_status);
        }
        let r = self
            .orders
            .update_one(filter, update)
            .await
            .map_err(StoreError::mongo("cancel order"))?;
        Ok(r.matched_count == 1)
    }
}
