//! The order effects that go through the service's own operations, never a write of their own:
//! a payment the settlement shows for an order that left `draft` unpaid is recorded exactly as a
//! late payment is (`settle::record_late_payment` → `store::payments`: `paymentStatus: paid`,
//! `paidAmount` = the row's amount, one history entry, parked `paid_after_cancel`, counted in
//! `reconciler_late_payments_total`), `by: "settlement"`; a refund it shows paid out is finished
//! through the refund poller's operation (`refund::settle_refund`, COMPLETED) and its settlement
//! recorded on the refund. Each returns `false` when its guard no longer holds (nothing written).

use mongodb::bson::{Bson, DateTime, Document};

use super::Row;
use crate::phonepe::client::RefundState;
use crate::store::payments::{LeftDraft, PaymentSeen};
use crate::store::refunds::PendingRefund;
use crate::store::settlements::mark;
use crate::store::{By, Store, StoreResult};

/// The code recorded with a settlement's effects (`history[].code`, `reconciliation.lastCode`).
pub const CODE: &str = "SETTLEMENT_REPORT";

/// Record the payment of `row` on the order `doc` (as read: cancelled, or parked without a
/// payment), by its amount whatever the order's.
pub async fn record_payment(store: &Store, doc: &Document, row: &Row, _now: DateTime) -> StoreResult<bool> {
    let Some(target) = LeftDraft::of_doc(doc, store.schema()) else {
        return Ok(false);
    };
    let seen = PaymentSeen {
        code: CODE.into(),
        transaction_id: Some(row.phonepe_reference_id.clone()),
        paid_amount: Some(row.amount),
    };
    crate::settle::record_late_payment(store, &target, &seen, By::Settlement.into()).await
}

/// Settle the refund recorded on `doc` that `row` pays out: `finish` (it is still pending):
/// complete it first, as the poller does on PhonePe's COMPLETED; then record the settlement on
/// the refund. A refund someone else finished meanwhile still gets its settlement recorded.
pub async fn settle_refund(
    store: &Store,
    doc: &Document,
    row: &Row,
    finish: bool,
    _now: DateTime,
) -> StoreResult<bool> {
    let Some(p) = PendingRefund::of(doc, &store.schema().orders) else {
        return Ok(false);
    };
    if finish && !crate::refund::settle_refund(store, &p, RefundState::Completed, CODE, By::Settlement.into()).await? {
        tracing::info!(refund_id = %p.refund_id, "the refund was finished meanwhile; recording its settlement");
    }
    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
    store.mark_refund_settled(&id, &p.refund_id, &mark(row)).await
}
