//! What is eligible: drafts past the lookback and due late-payment watches, and the candidate lists
//! the scanner claims from (docs/architecture.md, "Leases and claims"; `claims.rs` has the claims).
//! The indexed filters match a BSON-date `createdAt` and a pending payment; the sweep
//! ([`Store::sweep`]) finds what they cannot match and decides in Rust from the effective creation
//! time. Every fourth place of a candidate list is reserved for a due watch.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::orders::{minus, plus};
use super::refusals::avoiding;
use super::Store;
use super::{StoreError, StoreResult};
use crate::domain::decision::{CancelReason, WATCH_OVERDUE_GRACE};
use crate::domain::{PaymentStatus, Status};
use crate::schema::effective_created_at;
use crate::schema::own;
use crate::schema::Schema;
use crate::schema::{EARLIEST_PLAUSIBLE_MS, FUTURE_TOLERANCE_MS};

/// At most this many documents are read per sweep query (oldest `_id` first).
const SWEEP_LIMIT: i64 = 1000;

/// Every `WATCH_SHARE`-th candidate is a due late-payment watch while there are any.
const WATCH_SHARE: usize = 4;

/// The work a sweep found among the documents the indexed filters cannot match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    /// Drafts older than the lookback (or with no usable time: they are parked), oldest first.
    pub drafts: Vec<Bson>,
    /// Watched cancellations still inside their window.
    pub watches: Vec<Bson>,
    /// How many of `watches` were due more than `WATCH_OVERDUE_GRACE` ago.
    pub overdue_watches: u64,
}

/// Due late-payment watches, as one scan counts them ([`Store::count_watches`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchCounts {
    /// Due now, inside their window, not leased.
    pub due: u64,
    /// Of those, due more than `WATCH_OVERDUE_GRACE` ago.
    pub overdue: u64,
}

/// Not leased by anyone: a guard every claimable order passes.
fn free(now: DateTime) -> Document {
    doc! { own::LEASE_UNTIL: { "$not": { "$gt": now } } }
}

/// The earliest `createdAt` date the indexed filters believe (see `schema/created_at.rs`).
fn earliest() -> DateTime {
    DateTime::from_millis(EARLIEST_PLAUSIBLE_MS)
}

/// Drafts the eligible filter cannot match: `paymentStatus` not `pending` (or missing), or
/// `createdAt` not a date (or missing) or a date that is no plausible creation time (before 2000,
/// more than a day ahead); due and not leased.
fn irregular_draft_filter(s: &Schema, now: DateTime) -> Document {
    let o = &s.orders;
    let mut f = doc! {
        &o.status: o.status_values.word(Status::Draft),
        "$or": [
            { &o.payment_status: { "$ne": o.payment_status_values.word(PaymentStatus::Pending) } },
            { &o.created_at: { "$not": { "$type": "date" } } },
            { &o.created_at: { "$lt": earliest() } },
            { &o.created_at: { "$gt": plus(now, Duration::from_millis(FUTURE_TOLERANCE_MS as u64)) } },
        ],
        own::NEXT_CHECK_AT: { "$not": { "$gt": now } },
    };
    f.extend(free(now));
    f
}

/// Watched cancellations whose `createdAt` is not a date, due by `due_by` and not leased.
fn irregular_watch_filter(s: &Schema, now: DateTime, due_by: DateTime) -> Document {
    let o = &s.orders;
    let mut f = doc! {
        &o.status: o.status_values.word(Status::Cancelled),
        &o.payment_status: o.payment_status_values.word(PaymentStatus::Pending),
        own::REASON: { "$in": watched_reasons() },
        &o.created_at: { "$not": { "$type": "date" } },
        own::NEXT_CHECK_AT: { "$not": { "$gt": due_by } },
    };
    f.extend(free(now));
    f
}

/// Up to `limit` ids, the first of every `WATCH_SHARE` places a watch while there are any, the
/// others drafts while there are any: every claim from the list gets its share of watches, and
/// the drafts get the rest. Also how many drafts and watches were taken (from the front).
fn share_with_watches(drafts: Vec<Bson>, watches: Vec<Bson>, limit: usize) -> (Vec<Bson>, usize, usize) {
    let (mut drafts, mut watches) = (drafts.into_iter(), watches.into_iter());
    let mut out = Vec::with_capacity(limit);
    let (mut took_drafts, mut took_watches) = (0, 0);
    while out.len() < limit {
        let watch_turn = out.len() % WATCH_SHARE == 0;
        let (first, second) = if watch_turn {
            (&mut watches, &mut drafts)
        } else {
            (&mut drafts, &mut watches)
        };
        let (id, from_watches) = match first.next() {
            Some(id) => (id, watch_turn),
            None => match second.next() {
                Some(id) => (id, !watch_turn),
                None => break,
            },
        };
        if from_watches {
            took_watches += 1;
        } else {
            took_drafts += 1;
        }
        out.push(id);
    }
    (out, took_drafts, took_watches)
}

/// What the scanner looks for.
#[derive(Debug, Clone, Copy)]
pub struct Eligibility {
    /// Drafts younger than this are left to the webhook.
    pub lookback: Duration,
    /// Cancelled (timeout / not found) orders are watched for late payment while
    /// `createdAt > now - watch_horizon`.
    pub watch_horizon: Option<Duration>,
}

impl Store {
    /// The eligible-drafts filter the scanner counts and claims by (public for `explain`).
    pub fn draft_filter(s: &Schema, now: DateTime, e: &Eligibility) -> Document {
        let o = &s.orders;
        doc! {
            &o.status: o.status_values.word(Status::Draft),
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Pending),
            &o.created_at: { "$gte": earliest(), "$lte": minus(now, e.lookback) },
            own::NEXT_CHECK_AT: { "$not": { "$gt": now } },
            own::LEASE_UNTIL: { "$not": { "$gt": now } },
        }
    }

    fn watch_filter(s: &Schema, now: DateTime, horizon: Duration) -> Document {
        let o = &s.orders;
        doc! {
            &o.status: o.status_values.word(Status::Cancelled),
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Pending),
            own::REASON: { "$in": watched_reasons() },
            &o.created_at: { "$gt": minus(now, horizon) },
            own::NEXT_CHECK_AT: { "$not": { "$gt": now } },
            own::LEASE_UNTIL: { "$not": { "$gt": now } },
        }
    }

    /// How many drafts the eligible filter matches right now (with [`Swept::drafts`], the
    /// `reconciler_eligible_backlog` gauge).
    pub async fn count_eligible(&self, now: DateTime, e: &Eligibility) -> StoreResult<u64> {
        self.count_eligible_avoiding(now, e, &[]).await
    }

    /// [`Store::count_eligible`] without the orders in `avoid` (held: `store/refusals.rs`).
    pub async fn count_eligible_avoiding(&self, now: DateTime, e: &Eligibility, avoid: &[Bson]) -> StoreResult<u64> {
        self.orders
            .count_documents(avoiding(Self::draft_filter(&self.schema, now, e), avoid))
            .await
            .map_err(StoreError::mongo("count eligible"))
    }

    /// How many orders wait for a person (the `reconciler_needs_review_orders` gauge, counted by
    /// the same scan as the backlog).
    pub async fn count_needs_review(&self) -> StoreResult<u64> {
        self.orders
            .count_documents(doc! { &self.schema.orders.status: self.word(Status::NeedsReview) })
            .await
            .map_err(StoreError::mongo("count needs_review"))
    }

    /// The drafts and watched cancellations the indexed filters cannot match that are work now
    /// (due, not leased): drafts whose effective creation time is past the lookback or cannot be
    /// had (claimed to be parked), watches whose effective time is inside the watch horizon.
    pub async fn sweep(&self, now: DateTime, e: &Eligibility) -> StoreResult<Swept> {
        self.sweep_avoiding(now, e, &[]).await
    }

    /// [`Store::sweep`] without the orders in `avoid`.
    pub async fn sweep_avoiding(&self, now: DateTime, e: &Eligibility, avoid: &[Bson]) -> StoreResult<Swept> {
        let cutoff = minus(now, e.lookback).timestamp_millis();
        let mut drafts: Vec<(i64, Bson)> = self
            .irregular(avoiding(irregular_draft_filter(&self.schema, now), avoid))
            .await?
            .into_iter()
            .filter_map(|d| match effective_created_at(&d, &self.schema) {
                Ok(t) if t.timestamp_millis() > cutoff => None,
                Ok(t) => Some((t.timestamp_millis(), d.get("_id")?.clone())),
                Err(_) => Some((i64::MIN, d.get("_id")?.clone())),
            })
            .collect();
        drafts.sort_by_key(|(t, _)| *t);
        let mut swept = Swept {
            drafts: drafts.into_iter().map(|(_, id)| id).collect(),
            ..Swept::default()
        };
        if let Some(h) = e.watch_horizon {
            self.sweep_watches(now, h, &mut swept, avoid).await?;
        }
        Ok(swept)
    }

    /// Add the watched cancellations with an irregular `createdAt`, due and inside the window,
    /// to `swept`.
    async fn sweep_watches(
        &self,
        now: DateTime,
        horizon: Duration,
        swept: &mut Swept,
        avoid: &[Bson],
    ) -> StoreResult<()> {
        let start = minus(now, horizon).timestamp_millis();
        let overdue_by = minus(now, WATCH_OVERDUE_GRACE);
        let filter = avoiding(irregular_watch_filter(&self.schema, now, now), avoid);
        for d in self.irregular(filter).await? {
            if !effective_created_at(&d, &self.schema).is_ok_and(|t| t.timestamp_millis() > start) {
                continue;
            }
            if next_check_at(&d).is_none_or(|n| n <= overdue_by) {
                swept.overdue_watches += 1;
            }
            swept.watches.extend(d.get("_id").cloned());
        }
        Ok(())
    }

    /// `_id`, `createdAt` and `nextCheckAt` of up to `SWEEP_LIMIT` documents matching `filter`,
    /// oldest `_id` first.
    async fn irregular(&self, filter: Document) -> StoreResult<Vec<Document>> {
        use futures_util::TryStreamExt;
        self.orders
            .find(filter)
            .projection(doc! { "_id": 1, &self.schema.orders.created_at: 1, own::NEXT_CHECK_AT: 1 })
            .sort(doc! { "_id": 1 })
            .limit(SWEEP_LIMIT)
            .await
            .map_err(StoreError::mongo("sweep irregular orders"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("sweep irregular orders"))
    }

    /// Late-payment watches due now, still inside their window and not being worked on, and how
    /// many of them are due more than `WATCH_OVERDUE_GRACE` ago (the `reconciler_overdue_watches`
    /// gauge): the watch filter's, counted by one aggregate, plus `swept`'s (a sweep at `now`).
    /// The scanner skips the candidate fetch when nothing is due (see `actors/scanner.rs`).
    pub async fn count_watches(&self, now: DateTime, e: &Eligibility, swept: &Swept) -> StoreResult<WatchCounts> {
        let from_sweep = WatchCounts {
            due: swept.watches.len() as u64,
            overdue: swept.overdue_watches,
        };
        let Some(h) = e.watch_horizon else {
            return Ok(from_sweep);
        };
        use futures_util::TryStreamExt;
        let due_by = minus(now, WATCH_OVERDUE_GRACE);
        let next_check = format!("${}", own::NEXT_CHECK_AT);
        let pipeline = [
            doc! { "$match": Self::watch_filter(&self.schema, now, h) },
            doc! { "$group": {
                "_id": Bson::Null,
                "due": { "$sum": 1 },
                // A missing `nextCheckAt` compares below every date: due since the cancel.
                "overdue": { "$sum": { "$cond": [{ "$lte": [next_check, due_by] }, 1, 0] } },
            } },
        ];
        let groups: Vec<Document> = self
            .orders
            .aggregate(pipeline)
            .await
            .map_err(StoreError::mongo("count due watches"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("count due watches"))?;
        let Some(group) = groups.first() else {
            return Ok(from_sweep); // no watch due
        };
        let count = |key: &str| match group.get(key) {
            Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
            Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        match (count("due"), count("overdue")) {
            (Some(due), Some(overdue)) => Ok(WatchCounts {
                due: from_sweep.due + due,
                overdue: from_sweep.overdue + overdue,
            }),
            // Never read as "nothing due": the scanner would skip the watches' candidate fetch.
            _ => Err(StoreError::Unsupported(format!(
                "the server counted due watches as {group}, not as two integers"
            ))),
        }
    }

    /// Ids of up to `limit` eligible orders, after a fresh sweep: see [`Store::candidates_with`].
    pub async fn candidates(&self, now: DateTime, e: &Eligibility, limit: usize) -> StoreResult<Vec<Bson>> {
        let mut swept = self.sweep(now, e).await?;
        self.candidates_with(now, e, limit, &mut swept).await
    }

    /// Ids of up to `limit` eligible orders: drafts (`swept`'s first, then the eligible filter's,
    /// oldest first) and due late-payment watches (`swept`'s, then the watch filter's, oldest
    /// first), every `WATCH_SHARE`-th place a watch while there are any (see
    /// `share_with_watches`). What is listed is taken out of `swept`. Nothing is claimed: the
    /// scanner keeps this list and claims from it as reconcilers free up, so the (index) scan for
    /// eligible orders runs once per list, not once per claim, and the sweep once per tick.
    pub async fn candidates_with(
        &self,
        now: DateTime,
        e: &Eligibility,
        limit: usize,
        swept: &mut Swept,
    ) -> StoreResult<Vec<Bson>> {
        self.candidates_avoiding(now, e, limit, swept, &[]).await
    }

    /// [`Store::candidates_with`] without the orders in `avoid`: held ones, and those a claim of
    /// this tick failed on, so a refill never fetches them again within the tick.
    pub async fn candidates_avoiding(
        &self,
        now: DateTime,
        e: &Eligibility,
        limit: usize,
        swept: &mut Swept,
        avoid: &[Bson],
    ) -> StoreResult<Vec<Bson>> {
        if limit == 0 {
            return Ok(vec![]);
        }
        swept.drafts.retain(|id| !avoid.contains(id));
        swept.watches.retain(|id| !avoid.contains(id));
        let mut drafts: Vec<Bson> = swept.drafts.iter().take(limit).cloned().collect();
        let room = limit - drafts.len();
        drafts.extend(
            self.ids_oldest_first(avoiding(Self::draft_filter(&self.schema, now, e), avoid), Some(room))
                .await?,
        );
        let mut watches: Vec<Bson> = swept.watches.iter().take(limit).cloned().collect();
        if let Some(h) = e.watch_horizon {
            let room = limit - watches.len();
            watches.extend(
                self.ids_oldest_first(avoiding(Self::watch_filter(&self.schema, now, h), avoid), Some(room))
                    .await?,
            );
        }
        let (ids, took_drafts, took_watches) = share_with_watches(drafts, watches, limit);
        swept.drafts.drain(..took_drafts.min(swept.drafts.len()));
        swept.watches.drain(..took_watches.min(swept.watches.len()));
        Ok(ids)
    }

    /// The earliest moment after `now` at which an order becomes due, if one is known (the
    /// scanner sleeps until then instead of a whole interval). Two indexed find-ones: the oldest pending draft still
    /// inside the lookback (due at `createdAt + lookback`, or its `nextCheckAt` if later; the
    /// `reconciler_eligible` index), and the earliest future `nextCheckAt` of a pending draft or
    /// a watched cancellation (the `reconciler_next_check` index). Leases and irregular
    /// `createdAt`s are left to the next interval.
    pub async fn next_due(&self, now: DateTime, e: &Eligibility) -> StoreResult<Option<DateTime>> {
        let o = &self.schema.orders;
        let young = doc! {
            &o.status: o.status_values.word(Status::Draft),
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Pending),
            &o.created_at: { "$gt": minus(now, e.lookback) },
        };
        let draft = self.first_by(young, &o.created_at).await?.and_then(|d| {
            let created = crate::schema::get_path(&d, &o.created_at)?.as_datetime()?;
            let ripe = plus(*created, e.lookback);
            Some(next_check_at(&d).map_or(ripe, |n| n.max(ripe)))
        });
        let rescheduled = doc! {
            own::NEXT_CHECK_AT: { "$gt": now },
            &o.status: { "$in": [o.status_values.word(Status::Draft), o.status_values.word(Status::Cancelled)] },
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Pending),
        };
        let next = self.first_by(rescheduled, own::NEXT_CHECK_AT).await?;
        let next = next.as_ref().and_then(next_check_at);
        Ok([draft, next].into_iter().flatten().min())
    }

    /// `createdAt` and `nextCheckAt` of the first document matching `filter` in `field` order.
    async fn first_by(&self, filter: Document, field: &str) -> StoreResult<Option<Document>> {
        self.orders
            .find_one(filter)
            .projection(doc! { "_id": 0, &self.schema.orders.created_at: 1, own::NEXT_CHECK_AT: 1 })
            .sort(doc! { field: 1 })
            .await
            .map_err(StoreError::mongo("find the next due order"))
    }

    /// Ids of the orders matching `filter`, oldest first, at most `limit` of them.
    pub(crate) async fn ids_oldest_first(&self, filter: Document, limit: Option<usize>) -> StoreResult<Vec<Bson>> {
        use futures_util::TryStreamExt;
        if limit == Some(0) {
            return Ok(vec![]);
        }
        let docs: Vec<Document> = self
            .orders
            .find(filter)
            .projection(doc! { "_id": 1 })
            .sort(doc! { &self.schema.orders.created_at: 1 })
            .limit(limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)).unwrap_or(0))
            .await
            .map_err(StoreError::mongo("find order ids"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find order ids"))?;
        Ok(docs.into_iter().filter_map(|d| d.get("_id").cloned()).collect())
    }
}

/// A fetched order's `reconciliation.nextCheckAt`, when it is a date.
fn next_check_at(d: &Document) -> Option<DateTime> {
    d.get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_datetime(own::key(own::NEXT_CHECK_AT)))
        .ok()
        .copied()
}

/// The stored reasons of cancellations watched for a late payment.
fn watched_reasons() -> Vec<&'static str> {
    CancelReason::WATCHED.iter().map(|r| r.as_str()).collect()
}
