//! A driver of one journal commit: one database write per step, never after its deadline.
//! See the module doc of `store/journal/mod.rs` for why several drivers of one commit are safe.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime};

use super::{fault, Bounded, Journal, State, MARKERS, MARKER_GRACE, MAX_RESUMES};
use crate::domain::{PaymentStatus, Status};
use crate::domain::{Reason, ReviewReason};
use crate::schema::own;
use crate::store::commit::{stock_guard, unreadable_sizes, why_short, CommitOutcome};
use crate::store::orders::{plus, Transition};
use crate::store::Store;
use crate::store::{StoreError, StoreResult};

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
    pub(super) j: Journal,
    deadline: DateTime,
    next: Next,
    resumes: u32,
}

impl Driver {
    pub(super) fn new(order_id: Bson, j: Journal, deadline: DateTime) -> Driver {
        let next = if j.state == State::RollingBack {
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

    /// The order this driver commits.
    pub fn order_id(&self) -> &Bson {
        &self.order_id
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
                    self.j.from,
                    Status::Confirmed,
                    PaymentStatus::Paid,
                    Reason::Paid,
                    self.j.code.clone().unwrap_or_default(),
                    self.j.transaction_id.clone(),
                )
                .by(self.j.by)
                .paid(self.j.paid_amount);
                let t = Transition {
                    note: self.j.note.clone(),
                    operator: self.j.operator.clone(),
                    ..t
                };
                let finished = match store
                    .finish(&self.order_id, &self.j, State::Applying, State::Confirmed, &t, now, w)
                    .await
                {
                    Ok(finished) => finished,
                    // The order's document refuses its confirmation (a `history` that is not an
                    // array, a validator): restore every deduction before giving up.
                    Err(e) if e.is_refusal() => {
                        let error = e.refusal_excerpt("confirm");
                        tracing::error!(error = %error, "the database refused the order's confirmation; restoring its stock");
                        self.next = Next::MarkRollBack(CommitOutcome::Unwritable { error, parked: true });
                        return Ok(Step::More);
                    }
                    Err(e) => return Err(e),
                };
                if !finished {
                    self.next = Next::Resume;
                    return Ok(Step::More);
                }
                fault("journal.after_confirm").await;
                return Ok(Step::Done(CommitOutcome::Committed));
            }
            Next::MarkRollBack(failure) => {
                if store.mark_roll_back(&self.order_id, &self.j, &failure, w).await? {
                    fault("journal.after_rollback_mark").await;
                    self.j.state = State::RollingBack;
                    self.j.fail_reason = failure.review_reason().map(|r| r.as_str().to_string());
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
            Next::FinishRollBack if self.j.fail_reason.as_deref() == Some(ReviewReason::UnwritableOrder.as_str()) => {
                let error = self.j.fail_product.clone().unwrap_or_default();
                return match store.finish_unwritable(&self.order_id, &self.j, &error, now, w).await? {
                    None => {
                        self.next = Next::Resume;
                        Ok(Step::More)
                    }
                    Some(parked) => Ok(Step::Done(CommitOutcome::Unwritable { error, parked })),
                };
            }
            Next::FinishRollBack => {
                // The journal's own outcome: its stored reason, insufficient stock when unknown.
                let reason = self
                    .j
                    .outcome_of_failure()
                    .review_reason()
                    .unwrap_or(ReviewReason::InsufficientStock);
                let t = Transition::new(
                    self.j.from,
                    Status::NeedsReview,
                    PaymentStatus::Paid,
                    reason,
                    self.j.code.clone().unwrap_or_default(),
                    self.j.transaction_id.clone(),
                )
                .by(self.j.by)
                .paid(self.j.paid_amount);
                if !store
                    .finish(
                        &self.order_id,
                        &self.j,
                        State::RollingBack,
                        State::RolledBack,
                        &t,
                        now,
                        w,
                    )
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
        let status = crate::schema::read_status(&order, store.schema());
        match (status, j.state) {
            (Some(Status::Committing), State::Applying | State::RollingBack) => {
                let resumes = self.resumes;
                *self = Driver::new(self.order_id.clone(), j, self.deadline);
                self.resumes = resumes;
                Ok(Step::More)
            }
            (_, State::Confirmed) => Ok(Step::Done(CommitOutcome::Committed)),
            (_, State::RolledBack) => Ok(Step::Done(j.outcome_of_failure())),
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

    /// Step 1: `t.from` (draft; `needs_review` for an operator's `fulfil`) → `committing` with a fresh journal, leased to `owner` until `until`.
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
            state: State::Applying,
            items: order.items.clone(),
            sized_total: self.rules.sized_items_decrement_total,
            code: t.code.clone(),
            transaction_id: t.transaction_id.clone(),
            fail_reason: None,
            fail_product: None,
            by: t.by,
            note: t.note.clone(),
            operator: t.operator.clone(),
            from: t.from,
            paid_amount: t.paid_amount,
        };
        let begun = self
            .orders
            .update_one(
                self.commit_guard(&order.id, t.from),
                doc! { "$set": {
                    &self.schema.orders.status: self.word(Status::Committing), &self.schema.orders.updated_at: now,
                    own::COMMIT: journal.to_doc(),
                    own::LEASE_OWNER: owner, own::LEASE_UNTIL: until,
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
            let read = self
                .products
                .find_one(doc! { "_id": self.schema.product_ref(&item.product_id) })
                .max_time(w.0);
            if let Some(bad) = w
                .run("journal: read product", read)
                .await?
                .and_then(|p| unreadable_sizes(&p, item, &self.schema))
            {
                return Ok(Some(bad));
            }
        }
        let mut filter = stock_guard(item, j.sized_total, &self.schema);
        filter.insert(MARKERS, doc! { "$ne": &marker });
        let update = doc! { "$inc": j.inc(item, -1, &self.schema), "$push": { MARKERS: &marker } };
        let apply = self
            .products
            .find_one_and_update(filter, update)
            .with_options(w.opts_for(item, &self.schema));
        match w.run("journal: deduct item", apply).await {
            Ok(Some(_)) => return Ok(None),
            Ok(None) => {}
            // The product's document refuses the decrement (a stock that is not a number, a
            // `reconcilerCommits` that is not an array): nothing can be deducted safely.
            Err(e) if e.is_refusal() => {
                tracing::error!(error = %e.refusal_excerpt("deduct stock"), "the database refused the stock decrement");
                return Ok(Some(CommitOutcome::InvalidProduct {
                    product: crate::store::commit::product_label(item),
                }));
            }
            Err(e) => return Err(e),
        }
        let read = self
            .products
            .find_one(doc! { "_id": self.schema.product_ref(&item.product_id) })
            .max_time(w.0);
        let product = w.run("journal: read product", read).await?;
        let marked = product
            .as_ref()
            .and_then(|p| p.get_array(MARKERS).ok())
            .is_some_and(|a| a.iter().any(|m| m.as_str() == Some(marker.as_str())));
        if marked {
            return Ok(None); // applied before (by us before a crash, or by another driver)
        }
        Ok(Some(why_short(product.as_ref(), item, &self.schema)))
    }

    /// Record the decision to roll back in the journal (guarded by id and state `applying`).
    async fn mark_roll_back(
        &self,
        order_id: &Bson,
        j: &Journal,
        failure: &CommitOutcome,
        w: Bounded,
    ) -> StoreResult<bool> {
        let reason = failure
            .review_reason()
            .unwrap_or(ReviewReason::InsufficientStock)
            .as_str();
        let mark = self
            .orders
            .find_one_and_update(
                doc! { "_id": order_id, &self.schema.orders.status: self.word(Status::Committing), own::COMMIT_ID: &j.id, own::COMMIT_STATE: State::Applying.as_str() },
                doc! { "$set": {
                    own::COMMIT_STATE: State::RollingBack.as_str(),
                    own::COMMIT_FAIL_REASON: reason,
                    own::COMMIT_FAIL_PRODUCT: failure.product().unwrap_or_default(),
                } },
            )
            .with_options(w.opts());
        Ok(w.run("journal: mark rolling back", mark).await?.is_some())
    }

    /// Undo item `i` if (and only if) its marker is there: restore and unmark in one update.
    pub(super) async fn compensate(&self, j: &Journal, i: usize, w: Bounded) -> StoreResult<bool> {
        let (item, marker) = (&j.items[i], j.marker(i));
        let undo = self
            .products
            .find_one_and_update(
                doc! { "_id": self.schema.product_ref(&item.product_id), MARKERS: &marker },
                doc! { "$inc": j.inc(item, 1, &self.schema), "$pull": { MARKERS: &marker } },
            )
            .with_options(w.opts_for(item, &self.schema));
        Ok(w.run("journal: compensate item", undo).await?.is_some())
    }

    /// End the saga: the order leaves `committing` (guarded by commit id and journal state), and
    /// the journal is stamped with when its markers may go.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        order_id: &Bson,
        j: &Journal,
        from: State,
        to: State,
        t: &Transition,
        now: DateTime,
        w: Bounded,
    ) -> StoreResult<bool> {
        let mut update = self.transition_update(now, t);
        if let Ok(set) = update.get_document_mut("$set") {
            set.insert(own::COMMIT_STATE, to.as_str());
            set.insert(own::COMMIT_ENDED_AT, now);
            set.insert(own::COMMIT_SWEEP_AT, plus(now, self.marker_retention()));
        }
        let end = self
            .orders
            .find_one_and_update(
                doc! { "_id": order_id, &self.schema.orders.status: self.word(Status::Committing), own::COMMIT_ID: &j.id, own::COMMIT_STATE: from.as_str() },
                update,
            )
            .with_options(w.opts());
        Ok(w.run("journal: finish", end).await?.is_some())
    }

    /// End a rolled-back journal whose confirmation the database refused, without the write it
    /// refused: the order is parked `needs_review` (`unwritable_order`) by the smallest write
    /// that is accepted, with no `history` entry (`Some(true)`); if every park is refused, it goes
    /// back to draft (its stock was restored) and is excluded from claims (`Some(false)`); if
    /// even that is refused it stays `committing`, excluded, for a person. `None`: the journal
    /// changed under us.
    async fn finish_unwritable(
        &self,
        order_id: &Bson,
        j: &Journal,
        error: &str,
        now: DateTime,
        w: Bounded,
    ) -> StoreResult<Option<bool>> {
        let o = &self.schema.orders;
        let guard = doc! { "_id": order_id, &o.status: self.word(Status::Committing), own::COMMIT_ID: &j.id, own::COMMIT_STATE: State::RollingBack.as_str() };
        let ended = doc! {
            own::COMMIT_STATE: State::RolledBack.as_str(), own::COMMIT_ENDED_AT: now,
            own::COMMIT_SWEEP_AT: plus(now, self.marker_retention()), own::LAST_ERROR: error,
        };
        let lease = doc! { own::LEASE_OWNER: "", own::LEASE_UNTIL: "" };
        let reason = ReviewReason::UnwritableOrder.as_str();
        let mut full = ended.clone();
        full.extend(doc! {
            &o.status: self.word(Status::NeedsReview), &o.updated_at: now, own::REASON: reason,
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Paid),
        });
        if let Some(paid) = j.paid_amount {
            full.insert(own::PAID_AMOUNT, paid);
        }
        let mut bare = ended.clone();
        bare.extend(doc! { &o.status: self.word(Status::NeedsReview), own::REASON: reason });
        let mut draft = ended;
        draft.insert(&o.status, self.word(j.from));
        let rungs = [(full, true), (bare, true), (draft, false)];
        let mut refused = String::new();
        for (i, (set, parked)) in rungs.into_iter().enumerate() {
            let end = self
                .orders
                .find_one_and_update(guard.clone(), doc! { "$set": set, "$unset": lease.clone() })
                .with_options(w.opts());
            match w.run("journal: finish an unwritable commit", end).await {
                Ok(Some(_)) if parked => {
                    metrics::counter!(crate::telemetry::names::ORDERS_SETTLED, crate::telemetry::labels::OUTCOME => crate::telemetry::labels::outcome::NEEDS_REVIEW).increment(1);
                    return Ok(Some(true));
                }
                Ok(Some(_)) => {
                    self.exclude(order_id, &refused).await?;
                    return Ok(Some(false));
                }
                Ok(None) if i == 0 => return Ok(None),
                Ok(None) => {}
                Err(e) if e.is_refusal() => refused = e.refusal_excerpt("park"),
                Err(e) => return Err(e),
            }
        }
        self.exclude(order_id, &refused).await?;
        Ok(Some(false))
    }

    /// How long after a journal ended its markers are kept: longer than any driver can act.
    pub fn marker_retention(&self) -> Duration {
        self.rules.lease_ttl + MARKER_GRACE
    }
}
