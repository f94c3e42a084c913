//! The PhonePe budget shared by every instance on the same database and merchant (docs/operations.md,
//! "Running N instances"): one GCRA schedule document per merchant in `reconciler_budget`, advanced
//! by one atomic `findOneAndUpdate` on the database server's clock (`$$NOW`), so clock skew between
//! hosts cannot widen the budget and a restarted process continues the stored schedule; and one
//! heartbeat per running process in `reconciler_instances`.

use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};

use super::{bounded, Store, StoreError, StoreResult};

/// The collection holding one schedule document per merchant.
pub const BUDGET_COLLECTION: &str = "reconciler_budget";
/// The collection holding one heartbeat per running instance.
pub const INSTANCES_COLLECTION: &str = "reconciler_instances";
/// An instance heard from within this long counts as running.
pub const INSTANCE_SEEN: Duration = Duration::from_secs(30);
/// Heartbeats older than this are removed by the TTL index.
pub const INSTANCE_TTL: Duration = Duration::from_secs(600);
/// The longest one budget round trip may take; beyond it the instance makes no call (fail closed).
pub const BUDGET_TIMEOUT: Duration = Duration::from_secs(3);

/// Permits are reserved at most this long before they are due, so a process that dies holding a
/// reservation wastes little of the budget (a crash loop cannot push the schedule into the future).
pub const LEAD: Duration = Duration::from_millis(250);

/// `$$NOW` as Unix microseconds.
fn now_us() -> Document {
    doc! { "$multiply": [{ "$toLong": "$$NOW" }, 1000_i64] }
}

/// What one reservation gave: `count` permits, the first `first` after the server's now and one
/// `period` apart; or nothing, because calls are paused, or the next permit is not due yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Permits {
        first: Duration,
        count: u32,
    },
    Paused(Duration),
    /// The next permit is further away than [`LEAD`]: ask again after this long.
    NotYet(Duration),
}

/// A handle on the shared schedule of one merchant, for one instance.
#[derive(Clone)]
pub struct SharedBudget {
    budget: Collection<Document>,
    instances: Collection<Document>,
    merchant: String,
    owner: String,
}

impl Store {
    /// The shared PhonePe budget of `merchant`, as seen by the instance `owner`.
    pub fn shared_budget(&self, merchant: &str, owner: &str) -> SharedBudget {
        SharedBudget {
            budget: self.db.collection(BUDGET_COLLECTION),
            instances: self.db.collection(INSTANCES_COLLECTION),
            merchant: merchant.to_string(),
            owner: owner.to_string(),
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn int(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}

fn positive_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl SharedBudget {
    /// The TTL index that forgets dead instances' heartbeats; idempotent.
    pub async fn ensure_indexes(&self) -> StoreResult<()> {
        let ttl = IndexOptions::builder()
            .name("seenAt_ttl".to_string())
            .expire_after(INSTANCE_TTL)
            .build();
        let model = IndexModel::builder().keys(doc! { "seenAt": 1 }).options(ttl).build();
        self.instances
            .create_index(model)
            .await
            .map_err(StoreError::mongo("create the reconciler_instances TTL index"))?;
        Ok(())
    }

    /// Take `count` permits `period` apart from the shared schedule (see the module docs), if
    /// the first is due within [`LEAD`]; otherwise nothing is taken and the answer says how long
    /// to wait before asking again.
    pub async fn reserve(&self, count: u32, period: Duration) -> StoreResult<Reservation> {
        let count = count.max(1);
        let span = micros(period).saturating_mul(i64::from(count));
        let pipeline = vec![
            doc! { "$set": { "nowUs": now_us() } },
            doc! { "$set": {
                "pausedForUs": { "$subtract": [{ "$ifNull": ["$pausedUntilUs", 0_i64] }, "$nowUs"] },
                "firstUs": { "$max": [{ "$ifNull": ["$tatUs", 0_i64] }, "$nowUs"] },
            } },
            doc! { "$set": { "granted": { "$and": [
                { "$lte": ["$pausedForUs", 0_i64] },
                { "$lte": [{ "$subtract": ["$firstUs", "$nowUs"] }, micros(LEAD)] },
            ] } } },
            doc! { "$set": { "tatUs": { "$cond": ["$granted", { "$add": ["$firstUs", span] }, "$tatUs"] } } },
        ];
        let d = self.advance(pipeline).await?;
        let field =
            |k| int(&d, k).ok_or_else(|| StoreError::Unsupported(format!("budget document: {k} is not a number")));
        let (now, paused_for, first) = (field("nowUs")?, field("pausedForUs")?, field("firstUs")?);
        Ok(if paused_for > 0 {
            Reservation::Paused(positive_micros(paused_for))
        } else if d.get_bool("granted").unwrap_or(false) {
            Reservation::Permits {
                first: positive_micros(first - now),
                count,
            }
        } else {
            Reservation::NotYet(positive_micros(first - now - micros(LEAD)))
        })
    }

    /// Run one schedule update on the merchant's document, creating it if needed. Two first
    /// upserts racing (two instances starting together) can lose: one gets a duplicate-key error
    /// or (on SecantusDB) no document back; the document exists then, so the update is run again.
    async fn advance(&self, pipeline: Vec<Document>) -> StoreResult<Document> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let action = self
                .budget
                .find_one_and_update(doc! { "_id": &self.merchant }, pipeline.clone())
                .upsert(true)
                .return_document(ReturnDocument::After);
            let lost_race = match bounded("reserve PhonePe permits", BUDGET_TIMEOUT, action).await {
                Ok(Some(d)) => return Ok(d),
                Ok(None) => StoreError::Unsupported("the budget document vanished after its upsert".into()),
                Err(e) if e.is_duplicate_key() => e,
                Err(e) => return Err(e),
            };
            if attempt == 3 {
                return Err(lost_race);
            }
        }
    }

    /// Pause every instance's calls for `d` from the server's now (never shortens a pause).
    pub async fn pause(&self, d: Duration) -> StoreResult<()> {
        let until = doc! { "$add": [now_us(), micros(d)] };
        let pipeline = vec![doc! { "$set": {
            "pausedUntilUs": { "$max": [{ "$ifNull": ["$pausedUntilUs", 0_i64] }, until] },
        } }];
        let action = self
            .budget
            .update_one(doc! { "_id": &self.merchant }, pipeline)
            .upsert(true);
        bounded("share a PhonePe pause", BUDGET_TIMEOUT, action).await?;
        Ok(())
    }

    /// Refresh this instance's heartbeat and count the instances of this merchant seen within
    /// [`INSTANCE_SEEN`] (this one included).
    pub async fn heartbeat(&self) -> StoreResult<u64> {
        let pipeline = vec![doc! { "$set": { "merchant": &self.merchant, "seenAt": "$$NOW", "seenUs": now_us() } }];
        let beat = self
            .instances
            .update_one(doc! { "_id": &self.owner }, pipeline)
            .upsert(true);
        bounded("heartbeat", BUDGET_TIMEOUT, beat).await?;
        let since = doc! { "$subtract": [now_us(), micros(INSTANCE_SEEN)] };
        let count = self
            .instances
            .count_documents(doc! { "merchant": &self.merchant, "$expr": { "$gte": ["$seenUs", since] } });
        bounded("count instances", BUDGET_TIMEOUT, count).await
    }

    /// The shared schedule as it stands, read only (the console's status page): how far ahead
    /// of the server's now it is booked, and how long the shared pause lasts still. `None` before
    /// any instance reserved a permit.
    pub async fn look(&self) -> StoreResult<Option<Schedule>> {
        use futures_util::TryStreamExt;
        let pipeline = vec![
            doc! { "$match": { "_id": &self.merchant } },
            doc! { "$project": { "nowUs": now_us(), "tatUs": 1, "pausedUntilUs": 1 } },
        ];
        let read = async {
            let cursor = self.budget.aggregate(pipeline).await?;
            cursor.try_collect::<Vec<Document>>().await
        };
        let docs = bounded("read the PhonePe budget", BUDGET_TIMEOUT, read).await?;
        Ok(docs.first().map(|d| {
            let now = int(d, "nowUs").unwrap_or(0);
            Schedule {
                booked_ahead: positive_micros(int(d, "tatUs").unwrap_or(0).saturating_sub(now)),
                paused_for: positive_micros(int(d, "pausedUntilUs").unwrap_or(0).saturating_sub(now)),
            }
        }))
    }

    /// Instances of this merchant heard from within [`INSTANCE_SEEN`], read only (no heartbeat).
    pub async fn count_seen(&self) -> StoreResult<u64> {
        let since = doc! { "$subtract": [now_us(), micros(INSTANCE_SEEN)] };
        let count = self
            .instances
            .count_documents(doc! { "merchant": &self.merchant, "$expr": { "$gte": ["$seenUs", since] } });
        bounded("count instances", BUDGET_TIMEOUT, count).await
    }
}

/// The shared schedule, as [`SharedBudget::look`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How far past the server's now the next free permit is (zero: one is free now).
    pub booked_ahead: Duration,
    /// How long every instance still holds its calls (zero: no shared pause).
    pub paused_for: Duration,
}
