//! What the console reads of the events outbox (`reconciler_events`, written by the service when
//! it records an event per transition): only when that collection exists, and read only. The
//! fields read are the outbox's documented ones (`merchantTransactionId`, `type`, `createdAt`,
//! `state`, `deliveries`, `deliveredAt`); one that is missing shows as a dash.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Database;

use crate::store::{bounded, StoreResult};

/// The outbox collection.
pub const COLLECTION: &str = "reconciler_events";
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Events of one order shown at most.
const PER_ORDER: i64 = 100;

/// Whether the outbox exists in this database.
pub async fn exists(db: &Database) -> StoreResult<bool> {
    let names = db.list_collection_names().filter(doc! { "name": COLLECTION });
    Ok(!bounded("list collections", TIMEOUT, names).await?.is_empty())
}

/// The events of order `mtid`, oldest first (`None` without an outbox).
pub async fn of_order(db: &Database, mtid: &str) -> StoreResult<Option<Vec<Document>>> {
    if !exists(db).await? {
        return Ok(None);
    }
    let coll = db.collection::<Document>(COLLECTION);
    let find = async {
        let cursor = coll
            .find(doc! { "merchantTransactionId": mtid })
            .sort(doc! { "createdAt": 1 })
            .limit(PER_ORDER)
            .await?;
        cursor.try_collect::<Vec<Document>>().await
    };
    Ok(Some(bounded("read an order's events", TIMEOUT, find).await?))
}

/// Events not delivered yet and still being tried, and those that failed for good (`None`
/// without an outbox).
pub async fn undelivered(db: &Database) -> StoreResult<Option<(u64, u64)>> {
    if !exists(db).await? {
        return Ok(None);
    }
    let coll = db.collection::<Document>(COLLECTION);
    // `$nin` also matches an event without `state`: undelivered until it says otherwise.
    let pending = doc! { "deliveredAt": null, "state": { "$nin": ["delivered", "failed", "expired"] } };
    let pending = bounded("count undelivered events", TIMEOUT, coll.count_documents(pending)).await?;
    let failed = bounded(
        "count failed events",
        TIMEOUT,
        coll.count_documents(doc! { "state": "failed" }),
    )
    .await?;
    Ok(Some((pending, failed)))
}
