//! The review queue and refunds in MongoDB: what `review list` shows, and every write a refund or
//! an operator's action makes (docs/operations.md, "Refunds"). A refund is recorded before PhonePe
//! is asked, under an id derived from the order and the attempt ([`refund_id`], within PhonePe's
//! limits), and the next attempt is taken in the same guarded write that checks the previous one
//! ended, so two shells cannot both start one; every call about a recorded refund is claimed first
//! ([`Store::claim_refund_poll`]).

use mongodb::bson::{doc, Bson, DateTime, Document};
use sha2::{Digest, Sha256};

use super::orders::Transition;
use super::{Author, By};
use super::{Store, StoreError, StoreResult};
use crate::domain::{CancelReason, EventType, PaymentStatus, Reason, ReviewReason, Status};
use crate::schema::own;
use crate::schema::{get_path, OrdersSchema};

mod auto;
pub use auto::{AutoRefund, AUTO_REFUND, AUTO_REFUND_KEY};

/// `reconciliation.refund`: the refund recorded on the order.
pub const REFUND: &str = "reconciliation.refund";
/// [`REFUND`]'s name inside `reconciliation`.
pub const REFUND_KEY: &str = "refund";
pub const REFUND_ID: &str = "reconciliation.refund.id";
pub const REFUND_ACCEPTED: &str = "reconciliation.refund.accepted";
pub const REFUND_NEXT_POLL_AT: &str = "reconciliation.refund.nextPollAt";
pub const REFUND_REQUESTED_AT: &str = "reconciliation.refund.requestedAt";
/// Refund requests sent (or about to be: counted before sending) for this attempt.
pub const REFUND_POSTS: &str = "reconciliation.refund.posts";
/// Asks about this refund that brought no final answer (PENDING, or no usable answer).
pub const REFUND_TRIES: &str = "reconciliation.refund.tries";
/// PhonePe said it has no refund under the id: the next step requests it (again).
pub const REFUND_MISSING: &str = "reconciliation.refund.missing";
/// Asked about too often without a final answer: a person should look (still polled).
pub const REFUND_FLAGGED: &str = "reconciliation.refund.flagged";
pub const REFUND_LAST_CODE: &str = "reconciliation.refund.lastCode";
pub const REFUND_LAST_ERROR: &str = "reconciliation.refund.lastError";
/// PhonePe's code when the refund ended unmade (FAILED, or the request refused).
pub const REFUND_FAIL_CODE: &str = "reconciliation.refund.failCode";

/// The id of refund attempt `attempt` (1, 2, ...) of the order `mtid`: `RF`, the first 24 hex
/// digits of sha256(`mtid`), `-`, the attempt. Deterministic (a retry reuses it), unique per
/// order and attempt, at most 35 characters of PhonePe's alphabet whatever the order id.
pub fn refund_id(mtid: &str, attempt: i64) -> String {
    let digest = Sha256::digest(mtid.as_bytes());
    format!("RF{}-{attempt}", hex::encode(&digest[..12]))
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
    /// Requests sent (or claimed) for this refund id.
    pub posts: u32,
    /// Asks without a final answer so far.
    pub tries: u32,
    /// PhonePe has no refund under the id (after a request whose answer never came).
    pub missing: bool,
}

impl PendingRefund {
    /// Read the refund recorded on a fetched order; `None` when it has none.
    pub fn of(order: &Document, o: &OrdersSchema) -> Option<PendingRefund> {
        let r = order
            .get_document(own::RECONCILIATION_KEY)
            .ok()?
            .get_document(REFUND_KEY)
            .ok()?;
        let count = |k: &str| {
            r.get(k)
                .and_then(int)
                .map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32)
        };
        Some(PendingRefund {
            order_id: order.get("_id")?.clone(),
            merchant_transaction_id: get_path(order, &o.id)?.as_str()?.to_string(),
            refund_id: r.get_str("id").ok()?.to_string(),
            amount: r.get("amount").and_then(int)?,
            accepted: r.get_bool("accepted").unwrap_or(false),
            next_poll_at: r.get_datetime("nextPollAt").ok().copied(),
            posts: count("posts"),
            tries: count("tries"),
            missing: r.get_bool("missing").unwrap_or(false),
        })
    }

    /// Whether the next step requests the refund (first, or again after PhonePe said it has
    /// none under the id) rather than asking its status. A request whose answer never came
    /// (a timeout, a crash) is followed by a status call, as PhonePe asks, never by a blind
    /// second request.
    pub fn requests_next(&self) -> bool {
        !self.accepted && (self.posts == 0 || self.missing)
    }
}

/// An integer field (Int32 or Int64).
fn int(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

/// What one ask about a refund learnt, when it was not PhonePe's final word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// PhonePe has the refund; it is still pending.
    Pending,
    /// PhonePe has no refund under this id: request it next.
    Missing,
    /// No usable answer: PhonePe's (or the transport's) code and a secret-free excerpt.
    NoAnswer { code: &'a str, excerpt: &'a str },
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
pub(super) fn note_entry(
    now: DateTime,
    by: Author<'_>,
    what: &str,
    refund_id: Option<&str>,
    note: Option<&str>,
) -> Document {
    let s = Status::NeedsReview.as_str();
    let mut e = doc! { "at": now, "from": s, "to": s, "by": by.by, "reason": what };
    if let Some(name) = by.operator {
        e.insert("operator", name);
    }
    if let Some(id) = refund_id {
        e.insert("refundId", id);
    }
    if let Some(n) = note {
        e.insert("note", n);
    }
    e
}

/// The attempt and id of the refund recorded on `order` (as read), if any.
fn previous_refund(order: &Document) -> (i64, Option<String>) {
    let r = order
        .get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_document(REFUND_KEY));
    match r {
        Ok(r) => (
            r.get("attempt").and_then(int).unwrap_or(1),
            r.get_str("id").ok().map(str::to_string),
        ),
        Err(_) => (0, None),
    }
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

    /// Record the next refund attempt of the paid, parked `order` (as read) before PhonePe is
    /// asked. The attempt number is the one read plus one, and the write is guarded by the
    /// order still being `needs_review` and `paid` with the refund id read (none for a first
    /// refund): so a refund ended and nobody started another since. `None` when that no longer
    /// holds: nothing written.
    pub async fn begin_refund(
        &self,
        order: &Document,
        amount: i64,
        by: Author<'_>,
        note: Option<&str>,
        now: DateTime,
    ) -> StoreResult<Option<PendingRefund>> {
        let o = &self.schema.orders;
        let (Some(id), Some(mtid)) = (order.get("_id"), get_path(order, &o.id).and_then(Bson::as_str)) else {
            return Ok(None);
        };
        let (previous, previous_id) = previous_refund(order);
        let attempt = previous + 1;
        let refund_id = refund_id(mtid, attempt);
        let refund = doc! {
            "id": &refund_id, "amount": amount, "attempt": attempt, "accepted": false,
            "requestedAt": now, "nextPollAt": now, "by": by.by, "posts": 0, "tries": 0,
        };
        let mut update = doc! {
            "$set": { &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending), &o.updated_at: now, REFUND: refund },
            "$push": { own::HISTORY: note_entry(now, by, "refund_requested", Some(&refund_id), note) },
        };
        let data = doc! {
            "status": Status::NeedsReview.as_str(), "paymentStatus": PaymentStatus::RefundPending.as_str(),
            "paidAmount": amount, "reason": "refund_requested", "by": by.by,
            "refund": { "id": &refund_id, "amount": amount, "attempt": attempt },
        };
        if let Some(entry) = self.event_entry(now, EventType::RefundRequested, data) {
            super::outbox::push(&mut update, entry);
        }
        let mut guard = paid_and_parked(o, id);
        // `null` also matches a missing field: the first refund of the order.
        guard.insert(REFUND_ID, previous_id.map_or(Bson::Null, Bson::String));
        let r = self
            .orders
            .update_one(guard, update)
            .await
            .map_err(StoreError::mongo("record refund"))?;
        let recorded = self.relayed_if(id, r.matched_count == 1).await;
        Ok(recorded.then(|| PendingRefund {
            order_id: id.clone(),
            merchant_transaction_id: mtid.to_string(),
            refund_id,
            amount,
            accepted: false,
            next_poll_at: Some(now),
            posts: 0,
            tries: 0,
            missing: false,
        }))
    }

    /// Claim the next PhonePe call about refund `p` before making it: `nextPollAt` moves from
    /// the value read ([`PendingRefund::next_poll_at`]) to `until` (when the next call is due if
    /// this one brings no answer) in one atomic findOneAndUpdate guarded on that value, so of two
    /// instances that found the refund due only one wins (and spends a PhonePe permit); `false`
    /// for the other, or when it finished. A claimed request (`post`) is counted before it is
    /// sent.
    pub async fn claim_refund_poll(&self, p: &PendingRefund, until: DateTime, post: bool) -> StoreResult<bool> {
        let mut guard = refunding(&self.schema.orders, p);
        guard.insert(REFUND_NEXT_POLL_AT, p.next_poll_at.map_or(Bson::Null, Bson::DateTime));
        // Strictly later than the value read, so a claim always changes it.
        let after = p.next_poll_at.map_or(0, |t| t.timestamp_millis() + 1);
        let until = DateTime::from_millis(until.timestamp_millis().max(after));
        let mut update = doc! { "$set": { REFUND_NEXT_POLL_AT: until } };
        if post {
            update.insert("$inc", doc! { REFUND_POSTS: 1 });
            if let Ok(set) = update.get_document_mut("$set") {
                set.insert(REFUND_MISSING, false);
            }
        }
        let claimed = self
            .orders
            .find_one_and_update(guard, update)
            .await
            .map_err(StoreError::mongo("claim refund poll"))?;
        Ok(claimed.is_some())
    }

    /// An ask about refund `p` that was not PhonePe's final word: due again at `next`, one more
    /// try counted, and the refund flagged for a person once it has had `flag_at` tries.
    pub async fn refund_step(
        &self,
        p: &PendingRefund,
        step: Step<'_>,
        next: DateTime,
        flag_at: u32,
    ) -> StoreResult<bool> {
        let mut set = doc! { REFUND_NEXT_POLL_AT: next };
        match step {
            Step::Pending => {
                set.insert(REFUND_ACCEPTED, true);
                set.insert(REFUND_LAST_CODE, "PENDING");
            }
            Step::Missing => {
                set.insert(REFUND_MISSING, true);
                set.insert(REFUND_LAST_CODE, "NOT_FOUND");
            }
            Step::NoAnswer { code, excerpt } => {
                set.insert(REFUND_LAST_CODE, code);
                set.insert(REFUND_LAST_ERROR, excerpt);
            }
        }
        if p.tries.saturating_add(1) >= flag_at {
            set.insert(REFUND_FLAGGED, true);
        }
        let update = doc! { "$set": set, "$inc": { REFUND_TRIES: 1 } };
        let r = self
            .orders
            .update_one(refunding(&self.schema.orders, p), update)
            .await
            .map_err(StoreError::mongo("schedule refund poll"))?;
        Ok(r.matched_count == 1)
    }

    /// PhonePe's final word on the refund: COMPLETED → `refunded`; FAILED, or the request
    /// refused (`code` says which, kept as `failCode`) → parked again as `paid` with reason
    /// `refund_failed`. Guarded by the refund's id: `false` when someone else finished it first.
    pub async fn finish_refund(
        &self,
        p: &PendingRefund,
        completed: bool,
        code: &str,
        by: Author<'_>,
        now: DateTime,
    ) -> StoreResult<bool> {
        let (to, payment, reason): (Status, PaymentStatus, Reason) = if completed {
            (Status::Refunded, PaymentStatus::Refunded, Reason::Refunded)
        } else {
            (
                Status::NeedsReview,
                PaymentStatus::Paid,
                ReviewReason::RefundFailed.into(),
            )
        };
        let mut t = Transition::new(
            Status::NeedsReview,
            to,
            payment,
            reason,
            code.into(),
            Some(p.refund_id.clone()),
        )
        .by(by.by);
        t.operator = by.operator.map(str::to_string);
        t.refund = Some(doc! { "id": &p.refund_id, "amount": p.amount, "code": code });
        let mut update = self.transition_update(now, &t);
        if let Ok(set) = update.get_document_mut("$set") {
            // Nothing left to poll; the refund's record stays for the audit.
            set.insert(REFUND_NEXT_POLL_AT, Bson::Null);
            set.insert(REFUND_LAST_CODE, code);
            if !completed {
                set.insert(REFUND_FAIL_CODE, code);
            }
        }
        let r = self
            .orders
            .update_one(refunding(&self.schema.orders, p), update)
            .await
            .map_err(StoreError::mongo("finish refund"))?;
        Ok(self.relayed_if(&p.order_id, r.matched_count == 1).await)
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

    /// Refunds still pending, and those of them flagged for a person (the
    /// `reconciler_refunds_pending` and `reconciler_refunds_flagged` gauges).
    pub async fn count_pending_refunds(&self) -> StoreResult<(u64, u64)> {
        let o = &self.schema.orders;
        let pending = doc! { &o.payment_status: o.payment_status_values.word(PaymentStatus::RefundPending) };
        let mut flagged = pending.clone();
        flagged.insert(REFUND_FLAGGED, true);
        let count = |filter| async {
            self.orders
                .count_documents(filter)
                .await
                .map_err(StoreError::mongo("count pending refunds"))
        };
        Ok((count(pending).await?, count(flagged).await?))
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

    /// An operator closes a parked order ([`Cancel`] says which kind, and what PhonePe
    /// reported); `false` when it is not (or no longer) one of that kind.
    pub async fn operator_cancel(&self, id: &Bson, c: &Cancel, now: DateTime) -> StoreResult<bool> {
        let o = &self.schema.orders;
        let words = |ps: &[PaymentStatus]| {
            ps.iter()
                .map(|p| o.payment_status_values.word(*p).to_string())
                .collect::<Vec<_>>()
        };
        let mut filter = doc! { "_id": id, &o.status: o.status_values.word(Status::NeedsReview) };
        match c.kind {
            CancelKind::Unpaid => {
                filter.insert(&o.payment_status, doc! { "$nin": words(&PAID_LIKE) });
            }
            CancelKind::PaidElsewhere | CancelKind::RefundFailed => {
                filter.insert(&o.payment_status, o.payment_status_values.word(PaymentStatus::Paid));
                let reason = match c.kind {
                    CancelKind::PaidElsewhere => ReviewReason::MerchantMismatch,
                    _ => ReviewReason::RefundFailed,
                };
                filter.insert(own::REASON, reason.as_str());
            }
        }
        let mut t = Transition::new(
            Status::NeedsReview,
            Status::Cancelled,
            PaymentStatus::Failed,
            CancelReason::Operator,
            c.code.clone(),
            None,
        )
        .by(By::Operator);
        t.note = c.note.clone();
        // Left as it was: the payment status is PhonePe's word, not ours.
        t.keeps_payment_status = true;
        t.operator = c.operator.clone();
        let mut update = self.transition_update(now, &t);
        if let (Some(detail), Ok(push)) = (&c.detail, update.get_document_mut("$push")) {
            // What PhonePe reported, beside the operator's note in the history entry.
            if let Ok(entry) = push.get_document_mut(own::HISTORY) {
                entry.insert("detail", detail);
            }
        }
        let r = self
            .orders
            .update_one(filter, update)
            .await
            .map_err(StoreError::mongo("cancel order"))?;
        Ok(self.relayed_if(id, r.matched_count == 1).await)
    }
}

/// Payment statuses that say the customer's money reached this merchant.
pub const PAID_LIKE: [PaymentStatus; 3] = [
    PaymentStatus::Paid,
    PaymentStatus::RefundPending,
    PaymentStatus::Refunded,
];

/// Which parked orders an operator may cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelKind {
    /// Never paid to this merchant (PhonePe verified it just now).
    Unpaid,
    /// `merchant_mismatch`: paid, but to another merchant (PhonePe verified it just now).
    PaidElsewhere,
    /// `refund_failed`: paid to us, the refund through PhonePe failed; the operator settled the
    /// money another way (their note says how).
    RefundFailed,
}

/// An operator's cancellation: its kind, PhonePe's code, what PhonePe reported, the note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub kind: CancelKind,
    pub code: String,
    pub detail: Option<String>,
    pub note: Option<String>,
    /// The operator's name, recorded in the history entry.
    pub operator: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the order id (1 to 64 characters), a refund id PhonePe takes under v1: at most
    /// 35 characters of letters, digits, `_` and `-`; the same for the same order and attempt,
    /// different for another attempt or another order.
    #[test]
    fn refund_ids_are_short_deterministic_and_unique_per_order_and_attempt() {
        let orders: Vec<String> = (1..=64).map(|n| "O".repeat(n - 1) + "X").collect();
        let mut seen = std::collections::HashSet::new();
        for mtid in &orders {
            for attempt in [1, 2, 3, 99_999] {
                let id = refund_id(mtid, attempt);
                assert!(id.len() <= 35, "{id}");
                assert!(
                    id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{id}"
                );
                assert_eq!(id, refund_id(mtid, attempt), "deterministic");
                assert!(seen.insert(id), "unique");
            }
        }
        // `printf '%s' ORD-1001 | sha256sum`: its first 24 hex digits.
        assert_eq!(refund_id("ORD-1001", 2), "RFc7060b4c669a474bb9636afb-2");
    }

    #[test]
    fn a_request_is_followed_by_a_status_call_until_phonepe_says_it_has_none() {
        let p = PendingRefund {
            order_id: Bson::Int32(1),
            merchant_transaction_id: "ORD-1".into(),
            refund_id: refund_id("ORD-1", 1),
            amount: 100,
            accepted: false,
            next_poll_at: None,
            posts: 0,
            tries: 0,
            missing: false,
        };
        assert!(p.requests_next(), "first: the request");
        let sent = PendingRefund { posts: 1, ..p.clone() };
        assert!(!sent.requests_next(), "no answer came: its status first");
        let missing = PendingRefund {
            missing: true,
            ..sent.clone()
        };
        assert!(missing.requests_next(), "PhonePe has none: request it again");
        let accepted = PendingRefund {
            accepted: true,
            ..missing
        };
        assert!(!accepted.requests_next(), "accepted: only its status from now on");
    }
}
