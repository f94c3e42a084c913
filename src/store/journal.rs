//! Strategy `journal`: exactly-once stock commits without transactions (standalone MongoDB).
//!
//! A crash-safe saga built only from single-document atomic updates:
//!
//! 1. **begin** — the order moves `draft → committing` (guarded by `status: draft`) and gets a
//!    journal in `reconciliation.commit`: a fresh commit id, the items, state `applying`.
//! 2. **apply** each item — one update on the product, guarded by stock (the size's stock for a
//!    sized item) *and by the absence of this item's marker* (`"<commitId>:<itemIndex>"` in the
//!    product's `reconcilerCommits`), that decrements and records the marker together.
//!    Re-applying an item is therefore a no-op **while its marker is there**.
//! 3. **confirm** — the order moves `committing → confirmed`, guarded by the commit id and state
//!    `applying`. The markers stay (see below).
//!
//! When an item is short, the journal state becomes `rolling_back` (so nobody rolls it forward
//! again), each *marked* item is compensated by one update guarded by its marker that restores
//! the stock and removes the marker together, and the order is parked as `needs_review`.
//!
//! ## Several drivers of one commit
//! A commit can have more than one driver at a time: the committer that began it, a recovery pass
//! (this process or another) that claimed it after its lease expired, a write the committer sent
//! just before its deadline. Each [`Driver`] acts on its own view of the journal, one database
//! write per [`Driver::step`]. What keeps them from deducting an item twice:
//! * **a hard deadline per driver**: its lease's expiry. No step starts at or after it, and each
//!   write is bounded by the time left, server-side (`maxTimeMS`) and client-side. Every lease on
//!   a `committing` order is taken before the journal ends, so no driver can act later than
//!   `endedAt + lease_ttl`;
//! * **markers outlive every driver**: ending a journal stamps `sweepAt = endedAt + lease_ttl +
//!   MARKER_GRACE`; only then does the sweep remove a confirmed journal's markers (or compensate
//!   a rolled-back one's). Until then a late driver finds every applied marker and does nothing.
//!   `MARKER_GRACE` covers clock skew between hosts and a write already on the wire;
//! * **compensation only undoes what is marked**, in the same update that removes the marker, so
//!   nothing is ever restored that was not deducted.
//!
//! `tests/journal_model.rs` drives two and three drivers of the same commits in thousands of
//! seeded random interleavings, with crashes and skewed clocks, and checks the stock invariant.
//!
//! **Recovery** ([`Store::recover_journals`], at start and on every scan) claims any `committing`
//! order whose lease expired and drives it on from its journal: `applying` rolls forward (the
//! payment was verified before the journal was written; applying is idempotent), `rolling_back`
//! rolls back. Then the sweeps: journals past `sweepAt`, and markers whose journal has ended
//! without one pending. Nothing is ever inferred from stock levels — only from journals and
//! markers — so recovery can run twice, or in two processes at once, without changing anything
//! more.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};

use super::commit::{stock_guard, stock_inc, unreadable_sizes, why_short, CommitOutcome};
use super::orders::{plus, Store, Transition};
use super::{StoreError, StoreResult};
use crate::domain::decision::review;
use crate::domain::{Item, PaymentStatus, Status};

/// The product field holding this reconciler's per-item commit markers.
pub const MARKERS: &str = "reconcilerCommits";

/// How long a journal's markers are kept beyond `ended + lease_ttl`: the clock skew between
/// hosts and the time a write can spend on the wire that this design tolerates.
pub const MARKER_GRACE: Duration = Duration::from_secs(120);

const APPLYING: &str = "applying";
const ROLLING_BACK: &str = "rolling_back";
const CONFIRMED: &str = "confirmed";
const ROLLED_BACK: &str = "rolled_back";

/// How often a journal may be found changed under us before giving up for this attempt.
const MAX_RESUMES: u32 = 4;

/// The journal as stored in `reconciliation.commit`.
#[derive(Debug, Clone)]
struct Journal {
    id: String,
    state: String,
    items: Vec<Item>,
    /// Whether sized items also move the product's total (`job.sized_items_decrement_total` when
    /// the journal began): compensation restores exactly what was deducted, whatever the config
    /// says later.
    sized_total: bool,
    code: Option<String>,
    transaction_id: Option<String>,
    fail_reason: Option<String>,
    fail_product: Option<String>,
}

impl Journal {
    fn marker(&self, i: usize) -> String {
        format!("{}:{i}", self.id)
    }

    fn to_doc(&self) -> Document {
        let items: Vec<Document> = self
            .items
            .iter()
            .map(|it| {
                let mut d = doc! { "productId": it.product_id.clone(), "quantity": it.quantity };
                if let Some(s) = &it.size {
                    d.insert("size", s);
                }
                d
            })
            .collect();
        doc! {
            "id": &self.id, "state": &self.state, "items": items, "sizedTotal": self.sized_total,
            "code": self.code.clone(), "transactionId": self.transaction_id.clone(),
        }
    }

    /// Read a journal back; a journal this process cannot read is an error, never a guess.
    fn parse(d: &Document) -> Result<Journal, String> {
        let id = d.get_str("id").map_err(|_| "journal has no id")?.to_string();
        let state = d.get_str("state").map_err(|_| "journal has no state")?.to_string();
        let items = d
            .get_array("items")
            .map_err(|_| "journal has no items")?
            .iter()
            .map(|b| {
                let it = b.as_document().ok_or("journal item is not a document")?;
                let quantity = match it.get("quantity") {
                    Some(Bson::Int32(n)) => i64::from(*n),
                    Some(Bson::Int64(n)) => *n,
                    _ => return Err("journal item has no integer quantity"),
                };
                Ok(Item {
                    product_id: it.get("productId").cloned().ok_or("journal item has no productId")?,
                    quantity,
                    size: it.get_str("size").ok().map(str::to_string),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let s = |k: &str| d.get_str(k).ok().map(str::to_string);
        Ok(Journal {
            id,
            state,
            items,
            // Journals written before the switch existed moved the total too.
            sized_total: d.get_bool("sizedTotal").unwrap_or(true),
            code: s("code"),
            transaction_id: s("transactionId"),
            fail_reason: s("failReason"),
            fail_product: s("failProduct"),
        })
    }

    fn of_order(order: &Document) -> Option<Result<Journal, String>> {
        order
            .get_document("reconciliation")
            .and_then(|r| r.get_document("commit"))
            .ok()
            .map(Journal::parse)
    }

    fn outcome_of_failure(&self) -> CommitOutcome {
        let product = self.fail_product.clone().unwrap_or_default();
        CommitOutcome::from_review_reason(self.fail_reason.as_deref(), product)
    }

    /// The `$inc` of item `i` (`sign` -1 deducts, +1 restores), its size matched by `s`.
    fn inc(&self, item: &Item, sign: i64) -> Document {
        let mut inc = stock_inc(item, self.sized_total, sign);
        if let Some(n) = inc.remove("sizes.$.stock") {
            inc.insert("sizes.$[s].stock", n);
        }
        inc
    }
}

/// What a recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub rolled_forward: u64,
    pub rolled_back: u64,
    pub markers_cleared: u64,
    pub markers_compensated: u64,
}

impl Recovery {
    pub fn is_empty(&self) -> bool {
        *self == Recovery::default()
    }
}

/// What the next step of a driver is.
#[derive(Debug, Clone)]
enum Next {
    Apply(usize),
    Confirm,
    MarkRollBack(CommitOutcome),
    /// Compensate the items before this index, last first.
    Compensate(usize),
    FinishRollBack,
    /// The journal changed under us: read it again.
    Resume,
}

/// What one step left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    More,
    Done(CommitOutcome),
}

/// One driver of one journal commit, acting on its own view of the journal, one database write
/// per [`step`](Driver::step), and never at or after its `deadline` (its lease's expiry).
#[derive(Debug, Clone)]
pub struct Driver {
    order_id: Bson,
    j: Journal,
    deadline: DateTime,
    next: Next,
    resumes: u32,
}

impl Driver {
    fn new(order_id: Bson, j: Journal, deadline: DateTime) -> Driver {
        let next = if j.state == ROLLING_BACK {
            Next::Compensate(j.items.len())
        } else {
            Next::Apply(0)
        };
        Driver {
            order_id,
            j,
            deadline,
            next,
            resumes: 0,
        }
    }

    /// The commit id this driver works on.
    pub fn commit_id(&self) -> &str {
        &self.j.id
    }

    /// The hard deadline: no step starts at or after it.
    pub fn deadline(&self) -> DateTime {
        self.deadline
    }

    /// Take one step at time `now` (one write, plus a read where a write did not match).
    pub async fn step(&mut self, store: &Store, now: DateTime) -> StoreResult<Step> {
        let left = self.deadline.timestamp_millis() - now.timestamp_millis();
        if left <= 0 {
            return Err(StoreError::Timeout {
                op: "journal commit (its lease ran out; recovery takes it on)",
                secs: 0,
            });
        }
        let w = Bounded(Duration::from_millis(left as u64));
        match self.next.clone() {
            Next::Apply(i) if i < self.j.items.len() => match store.apply_item(&self.j, i, w).await? {
                None => {
                    fault("journal.after_item").await;
                    self.next = Next::Apply(i + 1);
                }
                Some(short) => self.next = Next::MarkRollBack(short),
            },
            Next::Apply(_) => self.next = Next::Confirm,
            Next::Confirm => {
                fault("journal.before_confirm").await;
                let t = Transition::new(
                    Status::Draft,
                    Status::Confirmed,
                    PaymentStatus::Paid,
                    "paid",
                    self.j.code.clone().unwrap_or_default(),
                    self.j.transaction_id.clone(),
                );
                if !store
                    .finish(&self.order_id, &self.j, APPLYING, CONFIRMED, &t, now, w)
                    .await?
                {
                    self.next = Next::Resume;
                    return Ok(Step::More);
                }
                fault("journal.after_confirm").await;
                return Ok(Step::Done(CommitOutcome::Committed));
            }
            Next::MarkRollBack(failure) => {
                if store.mark_roll_back(&self.order_id, &self.j, &failure, w).await? {
                    fault("journal.after_rollback_mark").await;
                    self.j.state = ROLLING_BACK.into();
                    self.j.fail_reason = failure.review_reason().map(str::to_string);
                    self.j.fail_product = failure.product().map(str::to_string);
                    self.next = Next::Compensate(self.j.items.len());
                } else {
                    self.next = Next::Resume;
                }
            }
            Next::Compensate(0) => self.next = Next::FinishRollBack,
            Next::Compensate(k) => {
                store.compensate(&self.j, k - 1, w).await?;
                fault("journal.after_compensate").await;
                self.next = Next::Compensate(k - 1);
            }
            Next::FinishRollBack => {
                let reason = self
                    .j
                    .fail_reason
                    .clone()
                    .unwrap_or_else(|| review::INSUFFICIENT_STOCK.into());
                let t = Transition::new(
                    Status::Draft,
                    Status::NeedsReview,
                    PaymentStatus::Paid,
                    &reason,
                    self.j.code.clone().unwrap_or_default(),
                    self.j.transaction_id.clone(),
                );
                if !store
                    .finish(&self.order_id, &self.j, ROLLING_BACK, ROLLED_BACK, &t, now, w)
                    .await?
                {
                    self.next = Next::Resume;
                    return Ok(Step::More);
                }
                return Ok(Step::Done(self.j.outcome_of_failure()));
            }
            Next::Resume => return self.resume(store, w).await,
        }
        Ok(Step::More)
    }

    /// Someone else moved the journal on: read where it is and go on from there.
    async fn resume(&mut self, store: &Store, w: Bounded) -> StoreResult<Step> {
        if self.resumes >= MAX_RESUMES {
            return Err(StoreError::Unsupported(format!(
                "journal {} kept changing under us; left to recovery",
                self.j.id
            )));
        }
        self.resumes += 1;
        let read = store.orders.find_one(doc! { "_id": &self.order_id }).max_time(w.0);
        let Some(order) = w.run("journal: re-read", read).await? else {
            return Ok(Step::Done(CommitOutcome::AlreadyProcessed));
        };
        let Some(j) = Journal::of_order(&order)
            .and_then(Result::ok)
            .filter(|j| j.id == self.j.id)
        else {
            return Ok(Step::Done(CommitOutcome::AlreadyProcessed));
        };
        match (order.get_str("status").unwrap_or(""), j.state.as_str()) {
            ("committing", APPLYING | ROLLING_BACK) => {
                let resumes = self.resumes;
                *self = Driver::new(self.order_id.clone(), j, self.deadline);
                self.resumes = resumes;
                Ok(Step::More)
            }
            (_, CONFIRMED) => Ok(Step::Done(CommitOutcome::Committed)),
            (_, ROLLED_BACK) => Ok(Step::Done(j.outcome_of_failure())),
            _ => Ok(Step::Done(CommitOutcome::AlreadyProcessed)),
        }
    }

    /// Step until the journal ends (or the deadline, or an error).
    pub async fn run(mut self, store: &Store) -> StoreResult<CommitOutcome> {
        loop {
            if let Step::Done(outcome) = self.step(store, DateTime::now()).await? {
                return Ok(outcome);
            }
        }
    }
}

/// A fault point of the saga (feature `fault-injection`): `panic` crashes the commit there,
/// `delay<ms>` holds it there (so a kill lands mid-commit).
async fn fault(name: &str) {
    if let Some(d) = crate::fault::delay(name) {
        tokio::time::sleep(d).await;
    }
}

/// The time a driver has left: every write is bounded by it on both sides of the wire.
#[derive(Debug, Clone, Copy)]
struct Bounded(Duration);

impl Bounded {
    async fn run<T>(
        self,
        op: &'static str,
        fut: impl std::future::IntoFuture<Output = Result<T, mongodb::error::Error>>,
    ) -> StoreResult<T> {
        super::bounded(op, self.0, fut).await
    }

    fn opts(self) -> FindOneAndUpdateOptions {
        FindOneAndUpdateOptions::builder()
            .max_time(self.0)
            .return_document(ReturnDocument::After)
            .build()
    }

    fn opts_for(self, item: &Item) -> FindOneAndUpdateOptions {
        let mut o = self.opts();
        o.array_filters = item.size.as_ref().map(|size| vec![doc! { "s.size": size }]);
        o
    }
}

impl Store {
    /// Confirm `order` and deduct its items with the journal saga. `owner` / `lease` keep the
    /// order leased while it is `committing`; the lease's expiry is the driver's hard deadline.
    pub async fn commit_journal(
        &self,
        order: &crate::domain::Order,
        t: &Transition,
        owner: &str,
        lease: Duration,
        now: DateTime,
    ) -> StoreResult<CommitOutcome> {
        match self.begin_journal(order, t, owner, plus(now, lease), now).await? {
            None => Ok(CommitOutcome::AlreadyProcessed),
            Some(driver) => {
                fault("journal.after_begin").await;
                driver.run(self).await
            }
        }
    }

    /// Step 1: `draft → committing` with a fresh journal, leased to `owner` until `until`.
    /// `None` when the order is no longer a draft (someone settled it): nothing written.
    pub async fn begin_journal(
        &self,
        order: &crate::domain::Order,
        t: &Transition,
        owner: &str,
        until: DateTime,
        now: DateTime,
    ) -> StoreResult<Option<Driver>> {
        let journal = Journal {
            id: format!("{:x}-{:08x}", now.timestamp_millis(), fastrand::u32(..)),
            state: APPLYING.into(),
            items: order.items.clone(),
            sized_total: self.rules.sized_items_decrement_total,
            code: t.code.clone(),
            transaction_id: t.transaction_id.clone(),
            fail_reason: None,
            fail_product: None,
        };
        let begun = self
            .orders
            .update_one(
                doc! { "_id": &order.id, "status": Status::Draft.as_str() },
                doc! { "$set": {
                    "status": Status::Committing.as_str(), "updatedAt": now,
                    "reconciliation.commit": journal.to_doc(),
                    "reconciliation.leaseOwner": owner, "reconciliation.leaseUntil": until,
                } },
            )
            .await
            .map_err(StoreError::mongo("begin journal commit"))?;
        Ok((begun.matched_count == 1).then(|| Driver::new(order.id.clone(), journal, until)))
    }

    /// Deduct item `i`, idempotently while its marker exists: guarded by stock and by the absence
    /// of the marker. `Some(reason)` when it cannot be deducted (and was not before).
    async fn apply_item(&self, j: &Journal, i: usize, w: Bounded) -> StoreResult<Option<CommitOutcome>> {
        let item = &j.items[i];
        let marker = j.marker(i);
        if item.size.is_some() {
            // A product listing the size twice: the array filter would move both entries.
            let read = self.products.find_one(doc! { "_id": &item.product_id }).max_time(w.0);
            if let Some(bad) = w
                .run("journal: read product", read)
                .await?
                .and_then(|p| unreadable_sizes(&p, item))
            {
                return Ok(Some(bad));
            }
        }
        let mut filter = stock_guard(item, j.sized_total);
        filter.insert(MARKERS, doc! { "$ne": &marker });
        let update = doc! { "$inc": j.inc(item, -1), "$push": { MARKERS: &marker } };
        let apply = self
            .products
            .find_one_and_update(filter, update)
            .with_options(w.opts_for(item));
        if w.run("journal: deduct item", apply).await?.is_some() {
            return Ok(None);
        }
        let read = self.products.find_one(doc! { "_id": &item.product_id }).max_time(w.0);
        let product = w.run("journal: read product", read).await?;
        let marked = product
            .as_ref()
            .and_then(|p| p.get_array(MARKERS).ok())
            .is_some_and(|a| a.iter().any(|m| m.as_str() == Some(marker.as_str())));
        if marked {
            return Ok(None); // applied before (by us before a crash, or by another driver)
        }
        Ok(Some(why_short(product.as_ref(), item)))
    }

    /// Record the decision to roll back in the journal (guarded by id and state `applying`).
    async fn mark_roll_back(
        &self,
        order_id: &Bson,
        j: &Journal,
        failure: &CommitOutcome,
        w: Bounded,
    ) -> StoreResult<bool> {
        let reason = failure.review_reason().unwrap_or(review::INSUFFICIENT_STOCK);
        let mark = self
            .orders
            .find_one_and_update(
                doc! { "_id": order_id, "status": Status::Committing.as_str(), "reconciliation.commit.id": &j.id, "reconciliation.commit.state": APPLYING },
                doc! { "$set": {
                    "reconciliation.commit.state": ROLLING_BACK,
                    "reconciliation.commit.failReason": reason,
                    "reconciliation.commit.failProduct": failure.product().unwrap_or_default(),
                } },
            )
            .with_options(w.opts());
        Ok(w.run("journal: mark rolling back", mark).await?.is_some())
    }

    /// Undo item `i` if (and only if) its marker is there: restore and unmark in one update.
    async fn compensate(&self, j: &Journal, i: usize, w: Bounded) -> StoreResult<bool> {
        let (item, marker) = (&j.items[i], j.marker(i));
        let undo = self
            .products
            .find_one_and_update(
                doc! { "_id": &item.product_id, MARKERS: &marker },
                doc! { "$inc": j.inc(item, 1), "$pull": { MARKERS: &marker } },
            )
            .with_options(w.opts_for(item));
        Ok(w.run("journal: compensate item", undo).await?.is_some())
    }

    /// End the saga: the order leaves `committing` (guarded by commit id and journal state), and
    /// the journal is stamped with when its markers may go.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        order_id: &Bson,
        j: &Journal,
        from: &str,
        to: &str,
        t: &Transition,
        now: DateTime,
        w: Bounded,
    ) -> StoreResult<bool> {
        let mut update = super::orders::transition_update(now, t);
        if let Ok(set) = update.get_document_mut("$set") {
            set.insert("reconciliation.commit.state", to);
            set.insert("reconciliation.commit.endedAt", now);
            set.insert("reconciliation.commit.sweepAt", plus(now, self.marker_retention()));
        }
        let end = self
            .orders
            .find_one_and_update(
                doc! { "_id": order_id, "status": Status::Committing.as_str(), "reconciliation.commit.id": &j.id, "reconciliation.commit.state": from },
                update,
            )
            .with_options(w.opts());
        Ok(w.run("journal: finish", end).await?.is_some())
    }

    /// How long after a journal ended its markers are kept: longer than any driver can act.
    pub fn marker_retention(&self) -> Duration {
        self.rules.lease_ttl + MARKER_GRACE
    }

    /// Claim one `committing` order whose lease expired (at `now`) for `owner`, with a driver
    /// whose deadline is the new lease's expiry. `Some(Err(..))`: its journal cannot be read
    /// (it stays `committing` and leased, for a person).
    pub async fn claim_for_recovery(
        &self,
        owner: &str,
        now: DateTime,
        lease: Duration,
    ) -> StoreResult<Option<(String, Result<Driver, String>)>> {
        let until = plus(now, lease);
        let opts = FindOneAndUpdateOptions::builder()
            .return_document(ReturnDocument::After)
            .build();
        let claim = self
            .orders
            .find_one_and_update(
                doc! { "status": Status::Committing.as_str(), "reconciliation.leaseUntil": { "$not": { "$gt": now } } },
                doc! { "$set": { "reconciliation.leaseOwner": owner, "reconciliation.leaseUntil": until } },
            )
            .with_options(opts);
        let claimed = super::bounded("recovery: claim committing order", super::CLAIM_TIMEOUT, claim).await?;
        let Some(order) = claimed else { return Ok(None) };
        let id = order.get("_id").cloned().unwrap_or(Bson::Null);
        let mtid = order.get_str("merchantTransactionId").unwrap_or("?").to_string();
        let driver = match Journal::of_order(&order) {
            Some(Ok(j)) => Ok(Driver::new(id, j, until)),
            Some(Err(e)) => Err(e),
            None => Err("no journal".into()),
        };
        Ok(Some((mtid, driver)))
    }

    /// The recovery pass: finish every `committing` order whose lease expired, from its journal,
    /// then the sweeps. Idempotent; safe in several processes at once.
    pub async fn recover_journals(&self, owner: &str, lease: Duration) -> StoreResult<Recovery> {
        let mut report = Recovery::default();
        while let Some((mtid, driver)) = self.claim_for_recovery(owner, DateTime::now(), lease).await? {
            let driver = match driver {
                Ok(d) => d,
                Err(why) => {
                    // Never guess: leave it committing (leased, so we do not spin on it) and shout.
                    tracing::error!(merchantTransactionId = %mtid, problem = %why, "committing order without a readable journal; needs a person");
                    continue;
                }
            };
            let forward = driver.j.state == APPLYING;
            match driver.run(self).await {
                Ok(outcome) => {
                    tracing::warn!(merchantTransactionId = %mtid, outcome = ?outcome, "recovered an interrupted commit from its journal");
                    match (forward, outcome) {
                        (true, CommitOutcome::Committed) => report.rolled_forward += 1,
                        _ => report.rolled_back += 1,
                    }
                }
                // Its lease holds it; the next pass (or another process) goes on from here.
                Err(e) => {
                    tracing::warn!(merchantTransactionId = %mtid, error = %e, "could not finish an interrupted commit yet")
                }
            }
        }
        self.sweep_ended_journals(DateTime::now(), &mut report).await?;
        self.sweep_orphan_markers(&mut report).await?;
        Ok(report)
    }

    /// Journals whose `sweepAt` has come: no driver can act on them any more, so their markers
    /// go — removed for a confirmed journal, compensated for a rolled-back one (a late driver's
    /// deduction after the roll-back). Then the journal is stamped `sweptAt`.
    pub async fn sweep_ended_journals(&self, now: DateTime, report: &mut Recovery) -> StoreResult<()> {
        use futures_util::TryStreamExt;
        let due: Vec<Document> = self
            .orders
            .find(doc! { "reconciliation.commit.sweepAt": { "$lte": now } })
            .projection(doc! { "reconciliation.commit": 1 })
            .limit(1000)
            .await
            .map_err(StoreError::mongo("sweep: find ended journals"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("sweep: find ended journals"))?;
        let forever = Bounded(super::CLAIM_TIMEOUT);
        for order in due {
            let Some(Ok(j)) = Journal::of_order(&order) else {
                continue;
            };
            for (i, item) in j.items.iter().enumerate() {
                match j.state.as_str() {
                    CONFIRMED => {
                        let r = self
                            .products
                            .update_one(
                                doc! { "_id": &item.product_id, MARKERS: j.marker(i) },
                                doc! { "$pull": { MARKERS: j.marker(i) } },
                            )
                            .await
                            .map_err(StoreError::mongo("sweep: clear marker"))?;
                        report.markers_cleared += r.modified_count;
                    }
                    ROLLED_BACK => report.markers_compensated += u64::from(self.compensate(&j, i, forever).await?),
                    _ => {}
                }
            }
            self.orders
                .update_one(
                    doc! { "_id": order.get("_id"), "reconciliation.commit.id": &j.id },
                    doc! { "$unset": { "reconciliation.commit.sweepAt": "" }, "$set": { "reconciliation.commit.sweptAt": now } },
                )
                .await
                .map_err(StoreError::mongo("sweep: mark journal swept"))?;
        }
        Ok(())
    }

    /// Markers whose journal has ended with no sweep pending: written by an older version that
    /// removed markers itself (a crash left them), or — should a driver ever outlive the grace —
    /// a deduction made after the journal was swept. Remove the first kind (the deduction
    /// happened once), compensate the second and shout.
    async fn sweep_orphan_markers(&self, report: &mut Recovery) -> StoreResult<()> {
        use futures_util::TryStreamExt;
        let products: Vec<Document> = self
            .products
            .find(doc! { MARKERS: { "$exists": true, "$ne": [] } })
            .projection(doc! { MARKERS: 1 })
            .await
            .map_err(StoreError::mongo("recovery: find markers"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("recovery: find markers"))?;
        let markers: Vec<(Bson, String, String, usize)> = products
            .iter()
            .flat_map(|p| {
                let pid = p.get("_id").cloned().unwrap_or(Bson::Null);
                p.get_array(MARKERS)
                    .map(|a| a.to_vec())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |m| {
                        let m = m.as_str()?.to_string();
                        let (id, idx) = m.rsplit_once(':')?;
                        Some((pid.clone(), m.clone(), id.to_string(), idx.parse().ok()?))
                    })
            })
            .collect();
        if markers.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = markers.iter().map(|m| m.2.as_str()).collect();
        let journals: Vec<Document> = self
            .orders
            .find(doc! { "reconciliation.commit.id": { "$in": ids } })
            .projection(doc! { "reconciliation.commit": 1 })
            .await
            .map_err(StoreError::mongo("recovery: find journals of markers"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("recovery: find journals of markers"))?;
        let by_id: std::collections::HashMap<String, (Journal, bool, bool)> = journals
            .iter()
            .filter_map(|o| {
                let c = o.get_document("reconciliation").ok()?.get_document("commit").ok()?;
                let j = Journal::parse(c).ok()?;
                let (pending, swept) = (c.contains_key("sweepAt"), c.contains_key("sweptAt"));
                Some((j.id.clone(), (j, pending, swept)))
            })
            .collect();
        for (pid, marker, commit_id, idx) in markers {
            let Some((j, pending, swept)) = by_id.get(&commit_id) else {
                tracing::error!(marker = %marker, "stock marker without a journal; left for a person");
                continue;
            };
            if idx >= j.items.len() {
                continue;
            }
            match (j.state.as_str(), pending, swept) {
                (_, true, _) => {} // its own sweep comes
                (CONFIRMED, false, false) => {
                    self.products
                        .update_one(doc! { "_id": &pid }, doc! { "$pull": { MARKERS: &marker } })
                        .await
                        .map_err(StoreError::mongo("recovery: clear marker"))?;
                    report.markers_cleared += 1;
                }
                (CONFIRMED | ROLLED_BACK, false, _) => {
                    if *swept && j.state == CONFIRMED {
                        tracing::error!(marker = %marker, "a commit driver deducted after its journal was swept; restoring it");
                    }
                    if self.compensate(j, idx, Bounded(super::CLAIM_TIMEOUT)).await? {
                        report.markers_compensated += 1;
                    }
                }
                _ => {} // still in progress: its own recovery handles it
            }
        }
        Ok(())
    }
}
