//! Order writes: guarded transitions, reschedules, lease releases.
//!
//! A *claim* (`store/claims.rs`) sets `reconciliation.leaseOwner` / `leaseUntil` with an update
//! guarded by "no live lease", so two processes never work the same order. The lease outlives
//! one PhonePe round trip with retries; an order whose worker died is simply claimed again once
//! its lease expires. What is eligible (the filters, the sweep, the candidate lists) is in
//! `store/eligible.rs`; the indexes in `store/indexes.rs`; writes the database refuses in
//! `store/refusals.rs`.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::{By, Store, StoreError, StoreResult};
use crate::domain::decision::Tally;
use crate::domain::Reason;
use crate::domain::{EventType, PaymentStatus, Status};
use crate::schema::own;
use crate::schema::Schema;

/// A status change to apply to one order (everything but the stock commit itself).
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    pub payment_status: PaymentStatus,
    pub reason: Reason,
    pub code: Option<String>,
    pub transaction_id: Option<String>,
    /// When to look at the order again (a cancelled order watched for a late payment).
    pub next_check_at: Option<DateTime>,
    /// A secret-free excerpt of PhonePe's last unusable answer (`reconciliation.lastError`), when
    /// that answer is why the order is parked.
    pub last_error: Option<String>,
    /// Who makes the change ([`by`]), recorded in the history entry.
    pub by: By,
    /// The operator's `--note` (`review resolve`), recorded in the history entry.
    pub note: Option<String>,
    /// The operator's name (`review resolve`: the OS user; the console: who logged in),
    /// recorded in the history entry as `operator`.
    pub operator: Option<String>,
    /// PhonePe's verified paid amount (paise): `reconciliation.paidAmount` when `to` is `needs_review`.
    pub paid_amount: Option<i64>,
    /// The payment status is left as the shop wrote it (`t.payment_status` is not written): an
    /// invalid order parked, an operator's cancel.
    pub keeps_payment_status: bool,
    /// The refund this transition ends, as its event's `data.refund` (`id`, `amount`, `code`).
    pub refund: Option<Document>,
}

impl Transition {
    pub fn new(
        from: Status,
        to: Status,
        payment_status: PaymentStatus,
        reason: impl Into<Reason>,
        code: String,
        transaction_id: Option<String>,
    ) -> Transition {
        Transition {
            from,
            to,
            payment_status,
            reason: reason.into(),
            code: Some(code),
            transaction_id,
            next_check_at: None,
            last_error: None,
            by: By::Reconciler,
            note: None,
            operator: None,
            paid_amount: None,
            keeps_payment_status: false,
            refund: None,
        }
    }

    /// The same transition, made by `who` ([`by`]).
    pub fn by(mut self, who: By) -> Transition {
        self.by = who;
        self
    }

    /// What PhonePe verified as paid: recorded as `paidAmount` if the transition parks.
    pub fn paid(mut self, amount: Option<i64>) -> Transition {
        self.paid_amount = amount;
        self
    }
}

/// A check that changes no status: what [`Store::reschedule`] records.
#[derive(Debug, Clone, Copy)]
pub struct Recheck<'a> {
    /// The status the order must still have (the guard).
    pub status: Status,
    /// When to look at it again (`reconciliation.nextCheckAt`).
    pub next: DateTime,
    /// `reconciliation.lastCode`: PhonePe's code, or why the check did not happen.
    pub code: &'a str,
    /// PhonePe's unusable answer, when that is why the order waits.
    pub error: Option<CheckError<'a>>,
}

/// PhonePe's unusable answer, as a reschedule records it.
#[derive(Debug, Clone, Copy)]
pub struct CheckError<'a> {
    /// Its secret-free excerpt (`reconciliation.lastError`).
    pub excerpt: &'a str,
    /// The per-kind counter it adds to (`reconciliation.errors` / `unreadable` / `rejections`).
    pub tally: Tally,
}

impl<'a> Recheck<'a> {
    pub fn new(status: Status, next: DateTime, code: &'a str) -> Recheck<'a> {
        Recheck {
            status,
            next,
            code,
            error: None,
        }
    }

    /// The same, after PhonePe's unusable answer.
    pub fn after_error(self, excerpt: &'a str, tally: Tally) -> Recheck<'a> {
        Recheck {
            error: Some(CheckError { excerpt, tally }),
            ..self
        }
    }
}

/// One `update` command of single-document statements, `(filter, update)` each: one round trip
/// for a batch, while every statement stays a single-document write. (A multi-document
/// `updateMany` would do the same in one statement, but a server may hold the collection for the
/// whole statement while it waits on a document locked by a dead client's transaction —
/// SecantusDB does, and then cannot reap that transaction: every transaction on the server
/// stops. Separate statements wait one document at a time.)
pub(crate) fn per_document_update(
    collection: &str,
    statements: impl Iterator<Item = (Document, Document)>,
) -> Document {
    let updates: Vec<Document> = statements
        .map(|(q, u)| doc! { "q": q, "u": u, "multi": false, "upsert": false })
        .collect();
    doc! { "update": collection, "updates": updates, "ordered": false }
}

/// `$unset` of the lease fields, shared by every write that ends a worker's hold on an order.
pub(super) fn unset_lease() -> Document {
    doc! { own::LEASE_OWNER: "", own::LEASE_UNTIL: "" }
}

/// One audit-trail entry (`orders.history[]`).
fn history_entry(now: DateTime, t: &Transition) -> Document {
    let mut entry = doc! {
        "at": now, "from": t.from.as_str(), "to": t.to.as_str(), "by": t.by,
        "reason": t.reason.as_str(), "code": t.code.clone(), "transactionId": t.transaction_id.clone(),
    };
    if let Some(note) = &t.note {
        entry.insert("note", note);
    }
    if let Some(name) = &t.operator {
        entry.insert("operator", name);
    }
    entry
}

/// The `$set` part of a transition.
fn transition_set(now: DateTime, t: &Transition, schema: &Schema) -> Document {
    let o = &schema.orders;
    let mut set = doc! {
        &o.status: o.status_values.word(t.to),
        &o.updated_at: now,
        own::REASON: t.reason.as_str(), own::LAST_CODE: t.code.clone(),
        own::LAST_CHECKED_AT: now,
    };
    if !t.keeps_payment_status {
        set.insert(&o.payment_status, o.payment_status_values.word(t.payment_status));
    }
    if let Some(next) = t.next_check_at {
        set.insert(own::NEXT_CHECK_AT, next);
    }
    if let Some(e) = &t.last_error {
        set.insert(own::LAST_ERROR, e);
    }
    if let (Status::NeedsReview, Some(paid)) = (t.to, t.paid_amount) {
        set.insert(own::PAID_AMOUNT, paid);
    }
    set
}

impl Store {
    /// The whole update of a status transition: new status, bookkeeping, lease released, audit
    /// entry, and the transition's event in the order's outbox (`store/outbox.rs`), in one
    /// single-document update: every path that changes a status goes through here, so none can
    /// change it without its event, and a guarded write that matches nothing writes neither.
    pub(crate) fn transition_update(&self, now: DateTime, t: &Transition) -> Document {
        let mut update = doc! {
            "$set": transition_set(now, t, &self.schema),
            "$unset": unset_lease(),
            "$inc": { own::ATTEMPTS: 1 },
            "$push": { own::HISTORY: history_entry(now, t) },
        };
        if let Some(entry) = self.transition_event(now, t) {
            super::outbox::push(&mut update, entry);
        }
        update
    }

    /// The outbox entry of transition `t` made at `now`, when it is one the shop hears about.
    fn transition_event(&self, now: DateTime, t: &Transition) -> Option<Document> {
        if !self.events {
            return None;
        }
        let ty = EventType::of_transition(t.to, t.reason)?;
        let mut data = doc! { "status": t.to.as_str() };
        if !t.keeps_payment_status {
            data.insert("paymentStatus", t.payment_status.as_str());
        }
        data.insert("paidAmount", t.paid_amount);
        data.insert("reason", t.reason.as_str());
        data.insert("by", t.by);
        if let Some(refund) = &t.refund {
            data.insert("refund", refund.clone());
        }
        Some(super::outbox::entry(now, ty, data))
    }
}

/// The order's own counter a retry of `tally`'s kind increments, if any.
fn tally_field(tally: Tally) -> Option<&'static str> {
    match tally {
        Tally::Service => None,
        Tally::Error => Some(own::ERRORS),
        Tally::Unreadable => Some(own::UNREADABLE),
        Tally::Rejection => Some(own::REJECTIONS),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn minus(now: DateTime, d: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis().saturating_sub(ms(d)))
}

pub(crate) fn plus(now: DateTime, d: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis().saturating_add(ms(d)))
}

impl Store {
    /// The filter a stock commit begins with: the order still in `from`; an operator's `fulfil`
    /// (`from` = `needs_review`) also needs it still `paid` (not refunding, not refunded).
    pub(crate) fn commit_guard(&self, id: &Bson, from: Status) -> Document {
        let o = &self.schema.orders;
        let mut guard = doc! { "_id": id, &o.status: o.status_values.word(from) };
        if from == Status::NeedsReview {
            guard.insert(&o.payment_status, o.payment_status_values.word(PaymentStatus::Paid));
        }
        guard
    }

    /// Apply a status transition guarded by the status the reconciler saw. Returns `false` when
    /// someone else changed the order first (already processed): nothing is written then.
    pub async fn transition(&self, id: &Bson, t: &Transition, now: DateTime) -> StoreResult<bool> {
        let r = self
            .orders
            .update_one(
                doc! { "_id": id, &self.schema.orders.status: self.word(t.from) },
                self.transition_update(now, t),
            )
            .await
            .map_err(StoreError::mongo("update order status"))?;
        Ok(self.relayed_if(id, r.matched_count == 1).await)
    }

    /// Park an order whose document cannot be reconciled: [`Store::transition`], except that
    /// `paymentStatus` is left as the shop wrote it (`t.payment_status` is ignored).
    pub async fn park_invalid(&self, id: &Bson, t: &Transition, now: DateTime) -> StoreResult<bool> {
        let t = Transition {
            keeps_payment_status: true,
            ..t.clone()
        };
        let r = self
            .orders
            .update_one(
                doc! { "_id": id, &self.schema.orders.status: self.word(t.from) },
                self.transition_update(now, &t),
            )
            .await
            .map_err(StoreError::mongo("park invalid order"))?;
        Ok(self.relayed_if(id, r.matched_count == 1).await)
    }

    /// No status change: record the check and when to look again (with PhonePe's error, when
    /// there was one), and release our lease. Guarded by the status and our lease, so it never
    /// overwrites someone else's progress.
    pub async fn reschedule(&self, id: &Bson, owner: &str, r: Recheck<'_>, now: DateTime) -> StoreResult<bool> {
        let mut set = doc! { own::NEXT_CHECK_AT: r.next, own::LAST_CODE: r.code, own::LAST_CHECKED_AT: now };
        let mut inc = doc! { own::ATTEMPTS: 1 };
        if let Some(e) = r.error {
            set.insert(own::LAST_ERROR, e.excerpt);
            if let Some(field) = tally_field(e.tally) {
                inc.insert(field, 1);
            }
        }
        let r = self
            .orders
            .update_one(
                doc! { "_id": id, &self.schema.orders.status: self.word(r.status), own::LEASE_OWNER: owner },
                doc! { "$set": set, "$unset": unset_lease(), "$inc": inc },
            )
            .await
            .map_err(StoreError::mongo("reschedule order"))?;
        Ok(r.matched_count == 1)
    }

    /// Give back every lease `owner` holds (graceful shutdown), so another instance can proceed.
    pub async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        let ids = self.leased_ids(owner).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // A `committing` order keeps its lease: a commit of ours may still be running (shutdown
        // or escalation while a settle future is in flight); recovery takes it once it expires.
        let releases = ids.iter().map(|id| {
            (
                doc! { "_id": id, own::LEASE_OWNER: owner, &self.schema.orders.status: { "$ne": self.word(Status::Committing) } },
                doc! { "$unset": unset_lease() },
            )
        });
        let r = self
            .db
            .run_command(per_document_update(self.orders.name(), releases))
            .await
            .map_err(StoreError::mongo("release leases"))?;
        Ok(r.get_i32("nModified")
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    /// The ids of the orders `owner` holds a lease on.
    async fn leased_ids(&self, owner: &str) -> StoreResult<Vec<Bson>> {
        self.ids_oldest_first(doc! { own::LEASE_OWNER: owner }, None).await
    }

    /// Find one order by its merchant transaction id (for `check`).
    pub async fn find_by_mtid(&self, mtid: &str) -> StoreResult<Option<Document>> {
        self.orders
            // `$type` spelled out: the query then states the `reconciler_id` index's partial
            // filter (`store/indexes.rs`) and any planner may use that index for it.
            .find_one(doc! { &self.schema.orders.id: { "$eq": mtid, "$type": "string" } })
            .await
            .map_err(StoreError::mongo("find order"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_own_counter() {
        assert_eq!(tally_field(Tally::Service), None);
        assert_eq!(tally_field(Tally::Error), Some("reconciliation.errors"));
        assert_eq!(tally_field(Tally::Unreadable), Some("reconciliation.unreadable"));
        assert_eq!(tally_field(Tally::Rejection), Some("reconciliation.rejections"));
    }
}
