//! Strategy `journal`: exactly-once stock commits without transactions (standalone MongoDB).
//!
//! A crash-safe saga built only from single-document atomic updates:
//!
//! 1. **begin** — the order moves `draft → committing` (guarded by `status: draft`) and gets a
//!    journal in `reconciliation.commit`: a fresh commit id, the items, state `applying`.
//! 2. **apply** each item — one update on the product, guarded by stock (and the size's stock)
//!    *and by the absence of this item's marker* (`"<commitId>:<itemIndex>"` in the product's
//!    `reconcilerCommits`), that decrements and records the marker together. Re-applying an item
//!    is therefore a no-op, whoever does it and however often.
//! 3. **confirm** — the order moves `committing → confirmed`, guarded by the commit id and state
//!    `applying`; then the markers are removed (leftovers are swept later, harmlessly).
//!
//! When an item is short, the journal state becomes `rolling_back` (so nobody rolls it forward
//! again), each *marked* item is compensated by one update guarded by its marker that restores
//! the stock and removes the marker together, and the order is parked as `needs_review`.
//!
//! **Recovery** ([`Store::recover_journals`], at start and on every scan) claims any `committing`
//! order whose lease expired and drives it on from its journal: `applying` rolls forward (the
//! payment was verified before the journal was written; applying is idempotent), `rolling_back`
//! rolls back. A second sweep settles markers left behind: a marker whose journal ended
//! `confirmed` is removed; one whose journal ended `rolled_back` is compensated. Nothing is ever
//! inferred from stock levels — only from journals and markers — so recovery can run twice, or
//! in two processes at once, without changing anything more.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument, UpdateOptions};

use super::commit::{why_short, CommitOutcome};
use super::orders::{plus, Store, Transition};
use super::{StoreError, StoreResult};
use crate::domain::decision::review;
use crate::domain::{Item, PaymentStatus, Status};

/// The product field holding this reconciler's per-item commit markers.
pub const MARKERS: &str = "reconcilerCommits";

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
            "id": &self.id, "state": &self.state, "items": items,
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
            code: s("code"),
            transaction_id: s("transactionId"),
            fail_reason: s("failReason"),
            fail_product: s("failProduct"),
        })
    }

    fn outcome_of_failure(&self) -> CommitOutcome {
        let product = self.fail_product.clone().unwrap_or_default();
        match self.fail_reason.as_deref() {
            Some(review::PRODUCT_MISSING) => CommitOutcome::ProductMissing { product },
            _ => CommitOutcome::InsufficientStock { product },
        }
    }
}

/// What applying one item found.
enum Applied {
    Done,
    Short(CommitOutcome),
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

fn size_filter(item: &Item) -> Option<UpdateOptions> {
    item.size.as_ref().map(|size| {
        UpdateOptions::builder()
            .array_filters(vec![doc! { "s.size": size }])
            .build()
    })
}

fn stock_inc(item: &Item, sign: i64) -> Document {
    let mut inc = doc! { "stock": sign * item.quantity };
    if item.size.is_some() {
        inc.insert("sizes.$[s].stock", sign * item.quantity);
    }
    inc
}

impl Store {
    /// Confirm `order` and deduct its items with the journal saga. `owner` / `lease` keep the
    /// order leased while it is `committing`, so recovery leaves a live commit alone.
    pub async fn commit_journal(
        &self,
        order: &crate::domain::Order,
        t: &Transition,
        owner: &str,
        lease: Duration,
        now: DateTime,
    ) -> StoreResult<CommitOutcome> {
        let journal = Journal {
            id: format!("{:x}-{:08x}", now.timestamp_millis(), fastrand::u32(..)),
            state: APPLYING.into(),
            items: order.items.clone(),
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
                    "reconciliation.leaseOwner": owner, "reconciliation.leaseUntil": plus(now, lease),
                } },
            )
            .await
            .map_err(StoreError::mongo("begin journal commit"))?;
        if begun.matched_count == 0 {
            return Ok(CommitOutcome::AlreadyProcessed);
        }
        crate::fault::point("journal.after_begin");
        self.drive(&order.id, journal, 0).await
    }

    /// Take a journal from where it is to its end.
    async fn drive(&self, order_id: &Bson, j: Journal, resumes: u32) -> StoreResult<CommitOutcome> {
        if j.state == ROLLING_BACK {
            return self.roll_back(order_id, &j, resumes).await;
        }
        for (i, item) in j.items.iter().enumerate() {
            if let Applied::Short(failure) = self.apply_item(&j, i, item).await? {
                return self.start_roll_back(order_id, j, failure, resumes).await;
            }
            crate::fault::point("journal.after_item");
        }
        crate::fault::point("journal.before_confirm");
        let now = DateTime::now();
        let t = Transition::new(
            Status::Draft,
            Status::Confirmed,
            PaymentStatus::Paid,
            "paid",
            j.code.clone().unwrap_or_default(),
            j.transaction_id.clone(),
        );
        if !self.finish(order_id, &j, APPLYING, CONFIRMED, &t, now).await? {
            return self.resume(order_id, &j.id, resumes).await;
        }
        crate::fault::point("journal.after_confirm");
        self.clear_markers(&j).await?;
        Ok(CommitOutcome::Committed)
    }

    /// Deduct one item, idempotently: guarded by stock and by the absence of its marker.
    async fn apply_item(&self, j: &Journal, i: usize, item: &Item) -> StoreResult<Applied> {
        let marker = j.marker(i);
        let mut filter =
            doc! { "_id": &item.product_id, "stock": { "$gte": item.quantity }, MARKERS: { "$ne": &marker } };
        if let Some(size) = &item.size {
            filter.insert(
                "sizes",
                doc! { "$elemMatch": { "size": size, "stock": { "$gte": item.quantity } } },
            );
        }
        let update = doc! { "$inc": stock_inc(item, -1), "$push": { MARKERS: &marker } };
        let r = self
            .products
            .update_one(filter, update)
            .with_options(size_filter(item))
            .await
            .map_err(StoreError::mongo("journal: deduct item"))?;
        if r.matched_count == 1 {
            return Ok(Applied::Done);
        }
        let product = self
            .products
            .find_one(doc! { "_id": &item.product_id })
            .await
            .map_err(StoreError::mongo("journal: read product"))?;
        let marked = product
            .as_ref()
            .and_then(|p| p.get_array(MARKERS).ok())
            .is_some_and(|a| a.iter().any(|m| m.as_str() == Some(marker.as_str())));
        if marked {
            return Ok(Applied::Done); // applied before (by us before a crash, or by a recovery)
        }
        Ok(Applied::Short(why_short(product.as_ref(), item)))
    }

    /// Record the decision to roll back in the journal, then roll back.
    async fn start_roll_back(
        &self,
        order_id: &Bson,
        mut j: Journal,
        failure: CommitOutcome,
        resumes: u32,
    ) -> StoreResult<CommitOutcome> {
        let (reason, product) = match &failure {
            CommitOutcome::ProductMissing { product } => (review::PRODUCT_MISSING, product.clone()),
            CommitOutcome::InsufficientStock { product } => (review::INSUFFICIENT_STOCK, product.clone()),
            _ => (review::INSUFFICIENT_STOCK, String::new()),
        };
        let r = self
            .orders
            .update_one(
                doc! { "_id": order_id, "status": Status::Committing.as_str(), "reconciliation.commit.id": &j.id, "reconciliation.commit.state": APPLYING },
                doc! { "$set": {
                    "reconciliation.commit.state": ROLLING_BACK,
                    "reconciliation.commit.failReason": reason, "reconciliation.commit.failProduct": &product,
                } },
            )
            .await
            .map_err(StoreError::mongo("journal: mark rolling back"))?;
        if r.matched_count == 0 {
            return self.resume(order_id, &j.id, resumes).await;
        }
        crate::fault::point("journal.after_rollback_mark");
        j.state = ROLLING_BACK.into();
        j.fail_reason = Some(reason.into());
        j.fail_product = Some(product);
        self.roll_back(order_id, &j, resumes).await
    }

    /// Compensate every marked item, then park the order for review.
    async fn roll_back(&self, order_id: &Bson, j: &Journal, resumes: u32) -> StoreResult<CommitOutcome> {
        for (i, item) in j.items.iter().enumerate().rev() {
            self.compensate(j, i, item).await?;
            crate::fault::point("journal.after_compensate");
        }
        let outcome = j.outcome_of_failure();
        let reason = j
            .fail_reason
            .clone()
            .unwrap_or_else(|| review::INSUFFICIENT_STOCK.into());
        let t = Transition::new(
            Status::Draft,
            Status::NeedsReview,
            PaymentStatus::Paid,
            &reason,
            j.code.clone().unwrap_or_default(),
            j.transaction_id.clone(),
        );
        if !self
            .finish(order_id, j, ROLLING_BACK, ROLLED_BACK, &t, DateTime::now())
            .await?
        {
            return self.resume(order_id, &j.id, resumes).await;
        }
        Ok(outcome)
    }

    /// Undo one item if (and only if) its marker is there: restore and unmark in one update.
    async fn compensate(&self, j: &Journal, i: usize, item: &Item) -> StoreResult<bool> {
        let marker = j.marker(i);
        let r = self
            .products
            .update_one(
                doc! { "_id": &item.product_id, MARKERS: &marker },
                doc! { "$inc": stock_inc(item, 1), "$pull": { MARKERS: &marker } },
            )
            .with_options(size_filter(item))
            .await
            .map_err(StoreError::mongo("journal: compensate item"))?;
        Ok(r.matched_count == 1)
    }

    /// End the saga: the order leaves `committing` (guarded by commit id and journal state).
    async fn finish(
        &self,
        order_id: &Bson,
        j: &Journal,
        from: &str,
        to: &str,
        t: &Transition,
        now: DateTime,
    ) -> StoreResult<bool> {
        let mut update = super::orders::transition_update(now, t);
        if let Ok(set) = update.get_document_mut("$set") {
            set.insert("reconciliation.commit.state", to);
        }
        let r = self
            .orders
            .update_one(
                doc! { "_id": order_id, "status": Status::Committing.as_str(), "reconciliation.commit.id": &j.id, "reconciliation.commit.state": from },
                update,
            )
            .await
            .map_err(StoreError::mongo("journal: finish"))?;
        Ok(r.matched_count == 1)
    }

    /// Remove a confirmed journal's markers (a crash here only leaves markers for the sweep).
    async fn clear_markers(&self, j: &Journal) -> StoreResult<u64> {
        let markers: Vec<String> = (0..j.items.len()).map(|i| j.marker(i)).collect();
        let r = self
            .products
            .update_many(
                doc! { MARKERS: { "$in": &markers } },
                doc! { "$pull": { MARKERS: { "$in": &markers } } },
            )
            .await
            .map_err(StoreError::mongo("journal: clear markers"))?;
        Ok(r.modified_count)
    }

    /// Someone else moved the journal on: read where it is and go on from there.
    async fn resume(&self, order_id: &Bson, commit_id: &str, resumes: u32) -> StoreResult<CommitOutcome> {
        if resumes >= MAX_RESUMES {
            return Err(StoreError::Unsupported(format!(
                "journal {commit_id} kept changing under us; left to recovery"
            )));
        }
        let Some(order) = self
            .orders
            .find_one(doc! { "_id": order_id })
            .await
            .map_err(StoreError::mongo("journal: re-read"))?
        else {
            return Ok(CommitOutcome::AlreadyProcessed);
        };
        let journal = order
            .get_document("reconciliation")
            .and_then(|r| r.get_document("commit"))
            .ok();
        let Some(j) = journal
            .and_then(|d| Journal::parse(d).ok())
            .filter(|j| j.id == commit_id)
        else {
            return Ok(CommitOutcome::AlreadyProcessed);
        };
        match (order.get_str("status").unwrap_or(""), j.state.as_str()) {
            ("committing", APPLYING | ROLLING_BACK) => Box::pin(self.drive(order_id, j, resumes + 1)).await,
            (_, CONFIRMED) => Ok(CommitOutcome::Committed),
            (_, ROLLED_BACK) => Ok(j.outcome_of_failure()),
            _ => Ok(CommitOutcome::AlreadyProcessed),
        }
    }

    /// The recovery pass: finish every `committing` order whose lease expired, from its journal,
    /// then settle leftover markers. Idempotent; safe in several processes at once.
    pub async fn recover_journals(&self, owner: &str, lease: Duration) -> StoreResult<Recovery> {
        let mut report = Recovery::default();
        let opts = FindOneAndUpdateOptions::builder()
            .return_document(ReturnDocument::After)
            .build();
        loop {
            let now = DateTime::now();
            let claim = self
                .orders
                .find_one_and_update(
                    doc! { "status": Status::Committing.as_str(), "reconciliation.leaseUntil": { "$not": { "$gt": now } } },
                    doc! { "$set": { "reconciliation.leaseOwner": owner, "reconciliation.leaseUntil": plus(now, lease) } },
                )
                .with_options(opts.clone());
            let claimed = super::bounded("recovery: claim committing order", super::CLAIM_TIMEOUT, claim).await?;
            let Some(order) = claimed else { break };
            let id = order.get("_id").cloned().unwrap_or(Bson::Null);
            let mtid = order.get_str("merchantTransactionId").unwrap_or("?").to_string();
            let journal = order
                .get_document("reconciliation")
                .and_then(|r| r.get_document("commit"))
                .ok()
                .map(Journal::parse);
            let j = match journal {
                Some(Ok(j)) => j,
                other => {
                    let why = match other {
                        Some(Err(e)) => e,
                        _ => "no journal".into(),
                    };
                    // Never guess: leave it committing (leased, so we do not spin on it) and shout.
                    tracing::error!(merchantTransactionId = %mtid, problem = %why, "committing order without a readable journal; needs a person");
                    continue;
                }
            };
            let forward = j.state == APPLYING;
            let outcome = self.drive(&id, j, 0).await?;
            tracing::warn!(merchantTransactionId = %mtid, outcome = ?outcome, "recovered an interrupted commit from its journal");
            match (forward, outcome) {
                (true, CommitOutcome::Committed) => report.rolled_forward += 1,
                _ => report.rolled_back += 1,
            }
        }
        self.sweep_markers(&mut report).await?;
        Ok(report)
    }

    /// Markers whose journal has ended: remove (confirmed) or compensate (rolled back).
    async fn sweep_markers(&self, report: &mut Recovery) -> StoreResult<()> {
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
        for p in products {
            let markers: Vec<String> = p
                .get_array(MARKERS)
                .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            for marker in markers {
                let Some((commit_id, idx)) = marker.rsplit_once(':') else {
                    continue;
                };
                let Ok(idx) = idx.parse::<usize>() else { continue };
                let order = self
                    .orders
                    .find_one(doc! { "reconciliation.commit.id": commit_id })
                    .await
                    .map_err(StoreError::mongo("recovery: find journal of marker"))?;
                let journal = order
                    .as_ref()
                    .and_then(|o| o.get_document("reconciliation").ok())
                    .and_then(|r| r.get_document("commit").ok())
                    .and_then(|d| Journal::parse(d).ok());
                let Some(j) = journal else {
                    tracing::error!(marker = %marker, "stock marker without a journal; left for a person");
                    continue;
                };
                match j.state.as_str() {
                    CONFIRMED => {
                        self.products
                            .update_one(doc! { "_id": p.get("_id") }, doc! { "$pull": { MARKERS: &marker } })
                            .await
                            .map_err(StoreError::mongo("recovery: clear marker"))?;
                        report.markers_cleared += 1;
                    }
                    ROLLED_BACK => {
                        if let Some(item) = j.items.get(idx) {
                            if self.compensate(&j, idx, item).await? {
                                report.markers_compensated += 1;
                            }
                        }
                    }
                    _ => {} // still in progress: its own recovery handles it
                }
            }
        }
        Ok(())
    }
}
