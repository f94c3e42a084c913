//! `reconciler_events`: each event the outbox moved (`store/outbox.rs`) with its delivery state
//! (docs/events.md). `state` is the shop's delivery: `pending`, `delivered`, `failed` (retried
//! for the whole window without a 2xx) or `expired` (older than the window when first seen);
//! `deliveries` counts its attempts (`attempts`, `lastStatus`, `lastError`, `nextAttemptAt`,
//! `windowStart`) and holds the lease of the instance sending it (`leaseOwner`, `leaseUntil`):
//! an attempt is claimed by one findOneAndUpdate guarded by the state and a free lease, so one
//! instance sends a given event at a time and several share the work. A Slack copy, for the
//! events a person acts on, is a second delivery state of its own (`slack`, the same fields plus
//! `state` and `deliveredAt`), never blocking the shop's.

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};

use super::Store;
use super::{StoreError, StoreResult};

/// The reconciler's collection of events (the relay of `store/outbox.rs` fills it).
pub const EVENTS: &str = "reconciler_events";

/// The names of a `reconciler_events` document's fields: the one spelling the relay writes
/// (`store/outbox.rs`) and the sender, `events` commands and the console read.
pub mod field {
    pub const ID: &str = "_id";
    pub const TYPE: &str = "type";
    pub const MTID: &str = "merchantTransactionId";
    pub const ORDER_ID: &str = "orderId";
    /// Per order, increasing in the order the events were recorded.
    pub const SEQ: &str = "seq";
    pub const CREATED_AT: &str = "createdAt";
    /// The body as sent, frozen when the event was moved.
    pub const PAYLOAD: &str = "payload";
    /// The shop's delivery state ([`super::PENDING`], ...).
    pub const STATE: &str = "state";
    pub const DELIVERED_AT: &str = "deliveredAt";
    /// The shop's delivery record ([`super::fresh_delivery`]); `SLACK` is the Slack copy's.
    pub const DELIVERIES: &str = "deliveries";
    pub const SLACK: &str = "slack";
    /// In a delivery record: attempts made, and the last answer's HTTP status.
    pub const ATTEMPTS: &str = "attempts";
    pub const LAST_STATUS: &str = "lastStatus";
}

/// How long an event waiting behind an earlier one of its order stays out of the due set
/// ([`Store::defer_waiting`]) unless the earlier one's end makes it due sooner.
pub const WAITING_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Not delivered yet; attempts go on.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
/// Every attempt within the window failed.
pub const FAILED: &str = "failed";
/// Older than the window when first seen: never sent.
pub const EXPIRED: &str = "expired";

/// Who an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `events.url`, signed as Standard Webhooks, in order per order.
    Shop,
    /// `notify.slack_url`, a one-line copy.
    Slack,
}

impl Channel {
    /// The path of this channel's delivery `state`.
    pub fn state(self) -> &'static str {
        match self {
            Channel::Shop => field::STATE,
            Channel::Slack => "slack.state",
        }
    }

    /// The path of this channel's `deliveredAt`.
    pub fn delivered_at(self) -> &'static str {
        match self {
            Channel::Shop => field::DELIVERED_AT,
            Channel::Slack => "slack.deliveredAt",
        }
    }

    /// The path of field `k` of this channel's delivery record.
    pub fn field(self, k: &str) -> String {
        match self {
            Channel::Shop => format!("deliveries.{k}"),
            Channel::Slack => format!("slack.{k}"),
        }
    }

    /// This channel's delivery record in a fetched event.
    pub fn record(self, event: &Document) -> Option<&Document> {
        let key = match self {
            Channel::Shop => field::DELIVERIES,
            Channel::Slack => field::SLACK,
        };
        event.get_document(key).ok()
    }

    /// When this channel's window of a fetched event started, as stored.
    pub fn window_start(self, event: &Document) -> Option<DateTime> {
        self.record(event)
            .and_then(|r| r.get_datetime("windowStart").ok().copied())
    }

    /// This channel's state in a fetched event.
    pub fn state_of(self, event: &Document) -> Option<&str> {
        match self {
            Channel::Shop => event.get_str(field::STATE).ok(),
            Channel::Slack => self.record(event).and_then(|r| r.get_str(field::STATE).ok()),
        }
    }
}

/// A delivery record as the relay writes it: no attempt yet, due at once, its window from
/// `created` (a Slack copy's also carries its `state`).
pub(crate) fn fresh_delivery(created: DateTime) -> Document {
    doc! {
        field::ATTEMPTS: 0_i64, field::LAST_STATUS: Bson::Null, "lastError": Bson::Null,
        "nextAttemptAt": created, "windowStart": created,
    }
}

/// An integer field (Int32, Int64, or a Double holding a whole number: a hand edit in a shell).
pub fn int(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

/// How an attempt ended, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Why there was no 2xx, in a few words (never a URL or a body).
    pub error: Option<String>,
    /// What becomes of the event.
    pub end: End,
}

/// What becomes of an event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Delivered,
    /// Not accepted; the next attempt is due then.
    Retry(DateTime),
    /// Not accepted, and the next attempt would fall outside the window: `failed`.
    Failed,
}

fn after() -> FindOneAndUpdateOptions {
    FindOneAndUpdateOptions::builder()
        .return_document(ReturnDocument::After)
        .build()
}

impl Store {
    /// The events collection.
    pub fn events(&self) -> Collection<Document> {
        self.db.collection(EVENTS)
    }

    /// The indexes of `reconciler_events` (the reconciler's own collection).
    pub async fn ensure_event_indexes(&self) -> StoreResult<()> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        let slack = IndexModel::builder()
            .keys(doc! { "slack.state": 1, "slack.nextAttemptAt": 1 })
            .options(
                IndexOptions::builder()
                    .name("slack_due".to_string())
                    .partial_filter_expression(doc! { "slack.state": { "$exists": true } })
                    .build(),
            )
            .build();
        let models = vec![
            index(doc! { "state": 1, "deliveries.nextAttemptAt": 1 }, "due"),
            index(doc! { "orderId": 1, "seq": 1 }, "order_seq"),
            index(doc! { "merchantTransactionId": 1, "createdAt": 1 }, "order_created"),
            // No index on `createdAt` alone: an operator may add a TTL index on it (docs/events.md).
            slack,
        ];
        self.events()
            .create_indexes(models)
            .await
            .map_err(StoreError::mongo("create reconciler_events indexes"))?;
        Ok(())
    }

    /// Events whose next attempt on `ch` is due at `now` and that nobody holds, oldest first.
    pub async fn due_events(&self, ch: Channel, now: DateTime, limit: i64) -> StoreResult<Vec<Document>> {
        use futures_util::TryStreamExt;
        let filter = doc! {
            ch.state(): PENDING,
            ch.field("nextAttemptAt"): { "$lte": now },
            ch.field("leaseUntil"): { "$not": { "$gt": now } },
        };
        // Oldest due first (the `due` index's order): an order's events keep their order
        // through `waits_behind`, not through this sort.
        self.events()
            .find(filter)
            .sort(doc! { ch.field("nextAttemptAt"): 1, "seq": 1 })
            .limit(limit)
            .await
            .map_err(StoreError::mongo("find due events"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find due events"))
    }

    /// Whether an earlier event of the same order is still pending for the shop: this one waits
    /// for it (without spending its attempts). A `failed` or `expired` one no longer blocks.
    pub async fn waits_behind(&self, event: &Document) -> StoreResult<bool> {
        let (Some(order), Some(seq)) = (event.get("orderId"), int(event.get("seq"))) else {
            return Ok(false);
        };
        let earlier = self
            .events()
            .find_one(doc! { "orderId": order, "seq": { "$lt": seq }, "state": PENDING })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(StoreError::mongo("find an earlier pending event"))?;
        Ok(earlier.is_some())
    }

    /// Events of `order` from `seq` on that are due but wait behind an earlier one of their
    /// order leave the due set for [`WAITING_RECHECK`] (marked `deliveries.waiting`), all in one
    /// write, so waiting events never fill a pass's fetch and hold back other orders' events.
    /// [`Store::unblock_after`] makes them due at once when the earlier one ends; the recheck
    /// covers an end this process did not see through (another instance's, a crash or a refused
    /// write between the two), and [`Store::end_wait`] then starts the window. Spends no attempt.
    pub async fn defer_waiting(&self, order: &Bson, seq: i64, now: DateTime) -> StoreResult<()> {
        let later = DateTime::from_millis(now.timestamp_millis() + WAITING_RECHECK.as_millis() as i64);
        let filter = doc! {
            "orderId": order, "seq": { "$gte": seq }, "state": PENDING,
            "deliveries.nextAttemptAt": { "$lte": now },
            "deliveries.leaseUntil": { "$not": { "$gt": now } },
        };
        self.events()
            .update_many(
                filter,
                doc! { "$max": { "deliveries.nextAttemptAt": later }, "$set": { "deliveries.waiting": true } },
            )
            .await
            .map_err(StoreError::mongo("defer waiting events"))?;
        Ok(())
    }

    /// An event marked waiting that no longer waits, whose earlier event's end was not seen
    /// through ([`Store::defer_waiting`]): the mark goes and, as [`Store::unblock_after`] would
    /// have done, its window starts now unless the event it waited for expired unsent (old news
    /// stays old). The event as it is now, or `None` when it changed meanwhile.
    pub async fn end_wait(&self, event: &Document, now: DateTime) -> StoreResult<Option<Document>> {
        let Ok(id) = event.get_str(field::ID) else {
            return Ok(None);
        };
        let attempts = int(Channel::Shop.record(event).and_then(|r| r.get(field::ATTEMPTS))).unwrap_or(0);
        let earlier = match (event.get(field::ORDER_ID), int(event.get(field::SEQ))) {
            (Some(order), Some(seq)) => self
                .events()
                .find_one(doc! { field::ORDER_ID: order, field::SEQ: { "$lt": seq } })
                .sort(doc! { field::SEQ: -1 })
                .projection(doc! { field::STATE: 1 })
                .await
                .map_err(StoreError::mongo("read the event waited for"))?,
            _ => None,
        };
        let restart = earlier.is_none_or(|e| e.get_str(field::STATE) != Ok(EXPIRED));
        let filter = doc! {
            "_id": id, "state": PENDING, "deliveries.waiting": true, "deliveries.attempts": attempts,
            "deliveries.leaseUntil": { "$not": { "$gt": now } },
        };
        let mut update = doc! { "$unset": { "deliveries.waiting": "" } };
        if restart {
            update.insert("$max", doc! { "deliveries.windowStart": now });
        }
        self.events()
            .find_one_and_update(filter, update)
            .with_options(after())
            .await
            .map_err(StoreError::mongo("end an event's wait"))
    }

    /// Close an event on `ch` without another attempt (`to`: expired or failed), guarded by its
    /// attempts and window start as read (`None`: none recorded) and a free lease: `false` when
    /// it changed meanwhile (a replay or a release gave it a new window, another instance tried
    /// it).
    pub async fn close_event(
        &self,
        ch: Channel,
        id: &str,
        attempts: i64,
        window_start: Option<DateTime>,
        to: &str,
        now: DateTime,
    ) -> StoreResult<bool> {
        let start = match window_start {
            Some(t) => Bson::DateTime(t),
            None => Bson::Document(doc! { "$exists": false }),
        };
        let filter = doc! {
            "_id": id, ch.state(): PENDING, ch.field("attempts"): attempts,
            ch.field("windowStart"): start,
            ch.field("leaseUntil"): { "$not": { "$gt": now } },
        };
        let r = self
            .events()
            .update_one(
                filter,
                doc! { "$set": { ch.state(): to, ch.field("closedAt"): now }, "$unset": { ch.field("waiting"): "" } },
            )
            .await
            .map_err(StoreError::mongo("close an event"))?;
        Ok(r.matched_count == 1)
    }

    /// Claim the next attempt of event `id` on `ch` for `lease` until `until`: one atomic
    /// findOneAndUpdate guarded by the state, the due time and a free lease, counting the
    /// attempt. `lease` names this one attempt (the instance and a number of its own), so the
    /// outcome of an attempt a replay took the event from is never recorded, even when the same
    /// instance claims the replayed event again. The event as claimed, or `None` when another
    /// instance has it (or it changed).
    pub async fn claim_event(
        &self,
        ch: Channel,
        id: &str,
        lease: &str,
        now: DateTime,
        until: DateTime,
    ) -> StoreResult<Option<Document>> {
        let filter = doc! {
            "_id": id, ch.state(): PENDING,
            ch.field("nextAttemptAt"): { "$lte": now },
            ch.field("leaseUntil"): { "$not": { "$gt": now } },
        };
        let update = doc! {
            "$set": { ch.field("leaseOwner"): lease, ch.field("leaseUntil"): until, ch.field("lastAttemptAt"): now },
            "$inc": { ch.field("attempts"): 1_i64 },
        };
        self.events()
            .find_one_and_update(filter, update)
            .with_options(after())
            .await
            .map_err(StoreError::mongo("claim an event"))
    }

    /// Record how the attempt holding `lease` on `ch` ended ([`End`]). Guarded by that lease:
    /// `false` when it was lost (the attempt outlived it and another claim took the event, or a
    /// replay took it).
    pub async fn end_attempt(
        &self,
        ch: Channel,
        id: &str,
        lease: &str,
        a: &Attempt,
        now: DateTime,
    ) -> StoreResult<bool> {
        let mut set = doc! {
            ch.field("lastStatus"): a.status.map(i32::from), ch.field("lastError"): a.error.clone(),
        };
        match a.end {
            End::Delivered => {
                set.insert(ch.state(), DELIVERED);
                set.insert(ch.delivered_at(), now);
            }
            End::Retry(next) => {
                set.insert(ch.field("nextAttemptAt"), next);
            }
            End::Failed => {
                set.insert(ch.state(), FAILED);
                set.insert(ch.field("closedAt"), now);
            }
        }
        let unset = doc! { ch.field("leaseOwner"): "", ch.field("leaseUntil"): "", ch.field("waiting"): "" };
        let r = self
            .events()
            .update_one(
                doc! { "_id": id, ch.state(): PENDING, ch.field("leaseOwner"): lease },
                doc! { "$set": set, "$unset": unset },
            )
            .await
            .map_err(StoreError::mongo("record an event attempt"))?;
        Ok(r.matched_count == 1)
    }

    /// The earlier event of an order ended: those [`Store::defer_waiting`] set aside behind it
    /// are due at once and, when it was delivered or failed (`restart`; not when it expired
    /// unsent, old news), the later ones that waited (never attempted, or set aside: tried
    /// before, then held back behind a replayed earlier one) get their window from now, so
    /// waiting spent none of it.
    pub async fn unblock_after(&self, order: &Bson, seq: i64, restart: bool, now: DateTime) -> StoreResult<()> {
        let later = doc! { "orderId": order, "seq": { "$gt": seq }, "state": PENDING };
        if restart {
            let mut waited = later.clone();
            waited.insert(
                "$or",
                vec![
                    doc! { "deliveries.attempts": 0_i64 },
                    doc! { "deliveries.waiting": true },
                ],
            );
            self.events()
                .update_many(waited, doc! { "$max": { "deliveries.windowStart": now } })
                .await
                .map_err(StoreError::mongo("start the window of waiting events"))?;
        }
        let mut waiting = later;
        waiting.insert("deliveries.waiting", true);
        self.events()
            .update_many(
                waiting,
                doc! { "$min": { "deliveries.nextAttemptAt": now }, "$unset": { "deliveries.waiting": "" } },
            )
            .await
            .map_err(StoreError::mongo("make waiting events due"))?;
        Ok(())
    }

    /// Events pending for the shop, failed, and when the oldest pending one was recorded (the
    /// `reconciler_events_*` gauges).
    pub async fn event_counts(&self) -> StoreResult<(u64, u64, Option<DateTime>)> {
        let count = |state: &'static str| async move {
            self.events()
                .count_documents(doc! { field::STATE: state })
                .await
                .map_err(StoreError::mongo("count events"))
        };
        let oldest = self
            .events()
            .find_one(doc! { field::STATE: PENDING })
            .sort(doc! { field::CREATED_AT: 1 })
            .projection(doc! { field::CREATED_AT: 1 })
            .await
            .map_err(StoreError::mongo("find the oldest pending event"))?;
        let oldest = oldest.and_then(|d| d.get_datetime(field::CREATED_AT).ok().copied());
        Ok((count(PENDING).await?, count(FAILED).await?, oldest))
    }

    /// Events matching `filter`, oldest first (`events list`).
    pub async fn list_events(&self, filter: Document) -> StoreResult<Vec<Document>> {
        use futures_util::TryStreamExt;
        self.events()
            .find(filter)
            .sort(doc! { field::CREATED_AT: 1, field::SEQ: 1 })
            .await
            .map_err(StoreError::mongo("list events"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("list events"))
    }

    /// One event by its id (`events show`).
    pub async fn find_event(&self, id: &str) -> StoreResult<Option<Document>> {
        self.events()
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::mongo("read an event"))
    }

    /// Queue the events matching `filter` for the shop again (`events replay`): pending, no
    /// attempt counted, a fresh window from `now`, due now, `deliveredAt` cleared; the same ids
    /// and bodies. An attempt in flight loses its lease: its outcome is not recorded over the
    /// replay (a failure would close the replayed event on the old window), and the event goes
    /// out again. The number queued.
    pub async fn replay_events(&self, filter: Document, now: DateTime) -> StoreResult<u64> {
        let update = doc! {
            "$set": {
                "state": PENDING, "deliveries.attempts": 0_i64, "deliveries.windowStart": now,
                "deliveries.nextAttemptAt": now, "deliveries.replayedAt": now,
            },
            "$unset": {
                "deliveredAt": "", "deliveries.closedAt": "", "deliveries.waiting": "",
                "deliveries.leaseOwner": "", "deliveries.leaseUntil": "",
            },
        };
        let r = self
            .events()
            .update_many(filter, update)
            .await
            .map_err(StoreError::mongo("replay events"))?;
        Ok(r.matched_count)
    }
}
