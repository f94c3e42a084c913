//! A payment PhonePe confirmed for an order that had already left `draft` without one (or a draft
//! the reconciler cannot read, whose callback the webhook records): the one
//! write every path records it with (the reconciler's decision, the webhook, `check --apply`,
//! an operator's refused `cancel`; later the settlement report). `paymentStatus: paid`,
//! `reconciliation.paidAmount` when it was paid to us, one history entry, and the order parked
//! `needs_review` (`paid_after_cancel`) unless it already is (then it keeps its reason). Guarded
//! by the status and the payment status read, so two deliveries, or a webhook racing the
//! reconciler, record it once. Nothing is deducted.

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::{Author, Store, StoreError, StoreResult};
use crate::domain::{EventType, Order, PaymentStatus, ReviewReason, Status};
use crate::schema::own;
use crate::schema::{get_path, Schema};

/// The order a payment is recorded on, as read: its id, status and stored payment status (the
/// guard), whether or not the rest of the document can be reconciled.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftDraft {
    pub id: Bson,
    pub status: Status,
    /// The payment status field as stored (`None`: missing).
    pub payment_as_read: Option<Bson>,
    /// The status field as stored when it is not the schema's word for `status` (a draft
    /// whose status reads only loosely as one: see [`LeftDraft::of_loose_draft`]).
    pub status_as_read: Option<Bson>,
}

impl LeftDraft {
    /// From a fetched document; `None` without an `_id` or a readable status.
    pub fn of_doc(doc: &Document, schema: &Schema) -> Option<LeftDraft> {
        Some(LeftDraft {
            id: doc.get("_id")?.clone(),
            status: crate::schema::read_status(doc, schema)?,
            payment_as_read: get_path(doc, &schema.orders.payment_status).cloned(),
            status_as_read: None,
        })
    }

    /// A draft whose status is not the schema's word but reads as it loosely: the word in
    /// another case, or an array holding it. The reconciler never claims such a document, so a
    /// payment PhonePe confirms for it is recorded on it (guarded by the status as stored).
    pub fn of_loose_draft(doc: &Document, schema: &Schema) -> Option<LeftDraft> {
        let word = schema.orders.status_values.word(Status::Draft);
        let loose = |b: &Bson| b.as_str().is_some_and(|s| s.trim().eq_ignore_ascii_case(word));
        let raw = get_path(doc, &schema.orders.status)?;
        let draft_like = match raw {
            Bson::Array(items) => items.iter().any(loose),
            other => loose(other),
        };
        draft_like
            .then(|| LeftDraft {
                id: doc.get("_id").cloned().unwrap_or(Bson::Null),
                status: Status::Draft,
                payment_as_read: get_path(doc, &schema.orders.payment_status).cloned(),
                status_as_read: Some(raw.clone()),
            })
            .filter(|d| d.id != Bson::Null)
    }

    /// From a parsed order (its payment status is one of the schema's words).
    pub fn of_order(order: &Order, schema: &Schema) -> LeftDraft {
        let word = schema.orders.payment_status_values.word(order.payment_status);
        LeftDraft {
            id: order.id.clone(),
            status: order.status,
            payment_as_read: Some(Bson::String(word.to_string())),
            status_as_read: None,
        }
    }
}

/// What PhonePe reported: its code and transaction id, and the amount paid when it was paid to
/// this merchant (`None` for another merchant's payment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSeen {
    pub code: String,
    pub transaction_id: Option<String>,
    pub paid_amount: Option<i64>,
}

/// The history reason of a payment recorded on an order already in review.
pub const PAYMENT_RECORDED: &str = "payment_recorded";

impl Store {
    /// Record PhonePe's completed payment on `o` (see the module docs); `by` is who saw it
    /// (`store::by`). `false` when the order changed since it was read: nothing written.
    pub async fn record_payment(
        &self,
        o: &LeftDraft,
        seen: &PaymentSeen,
        by: Author<'_>,
        now: DateTime,
    ) -> StoreResult<bool> {
        let s = &self.schema.orders;
        let status = o.status_as_read.clone();
        let status = status.unwrap_or_else(|| s.status_values.word(o.status).into());
        let mut filter = doc! { "_id": &o.id, &s.status: status };
        filter.insert(
            &s.payment_status,
            o.payment_as_read
                .clone()
                .unwrap_or_else(|| Bson::Document(doc! { "$exists": false })),
        );
        let parks = o.status != Status::NeedsReview;
        let reason = match o.status {
            Status::NeedsReview => PAYMENT_RECORDED,
            // A draft the reconciler cannot read (the webhook records its payment): the document
            // still needs a person before it can be fulfilled.
            Status::Draft => ReviewReason::InvalidOrder.as_str(),
            _ => ReviewReason::PaidAfterCancel.as_str(),
        };
        let mut set = doc! {
            &s.status: s.status_values.word(Status::NeedsReview),
            &s.payment_status: s.payment_status_values.word(PaymentStatus::Paid),
            &s.updated_at: now, own::LAST_CODE: &seen.code, own::LAST_CHECKED_AT: now,
        };
        if parks {
            set.insert(own::REASON, reason);
        }
        if let Some(paid) = seen.paid_amount {
            set.insert(own::PAID_AMOUNT, paid);
        }
        let mut entry = doc! {
            "at": now, "from": o.status.as_str(), "to": Status::NeedsReview.as_str(), "by": by.by,
            "reason": reason, "code": &seen.code, "transactionId": seen.transaction_id.clone(),
        };
        if let Some(name) = by.operator {
            entry.insert("operator", name);
        }
        let mut update = doc! {
            "$set": set,
            "$unset": { own::LEASE_OWNER: "", own::LEASE_UNTIL: "", own::NEXT_CHECK_AT: "" },
            "$push": { own::HISTORY: entry },
        };
        let data = doc! {
            "status": Status::NeedsReview.as_str(), "paymentStatus": PaymentStatus::Paid.as_str(),
            "paidAmount": seen.paid_amount, "reason": reason, "by": by.by,
        };
        if let Some(entry) = self.event_entry(now, EventType::PaymentRecorded, data) {
            super::outbox::push(&mut update, entry);
        }
        let r = self
            .orders
            .update_one(filter, update)
            .await
            .map_err(StoreError::mongo("record a late payment"))?;
        Ok(self.relayed_if(&o.id, r.matched_count == 1).await)
    }
}
