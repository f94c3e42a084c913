//! What the console reads of `reconciler_events` (the events the shop is told about,
//! docs/events.md), read only. The reads and the field names are the store's own
//! (`store::events`), the ones the relay writes, so the console cannot drift from them.

use mongodb::bson::{doc, Document};

use crate::store::events::field;
use crate::store::{Store, StoreResult};

/// The events of order `mtid`, oldest first.
pub async fn of_order(store: &Store, mtid: &str) -> StoreResult<Vec<Document>> {
    store.list_events(doc! { field::MTID: mtid }).await
}

/// Events not delivered to the shop yet (still being tried), and those that failed for good:
/// the counts of the `reconciler_events_*` gauges.
pub async fn undelivered(store: &Store) -> StoreResult<(u64, u64)> {
    let (pending, failed, _) = store.event_counts().await?;
    Ok((pending, failed))
}
