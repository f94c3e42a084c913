//! Committing stock: confirm the order and deduct every item, all or nothing.
//!
//! Strategy `transaction` (this file): one multi-document transaction. The order moves
//! draft → confirmed guarded by `status: draft`; each item's stock is decremented guarded by
//! `stock >= qty` (and the size's stock where the item has a size). Any guard that fails aborts
//! the transaction, so nothing changed, and the reason is reported. Transient transaction errors
//! retry the whole transaction; an unknown commit result retries the commit. No HTTP calls,
//! actor messages or metrics happen in here: the body may run several times.
//!
//! Strategy `auto` picks `transaction` when `hello` shows a replica set or mongos, and the
//! crash-safe `journal` saga (see `journal.rs`) on a standalone server, which refuses
//! transactions. Both give the same observable outcomes.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::ClientSession;

use super::orders::{transition_update, Store, Transition};
use super::{StoreError, StoreResult};
use crate::config::CommitStrategy;
use crate::domain::decision::review;
use crate::domain::{Item, Order, PaymentStatus, Status};

/// What a commit attempt ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Order confirmed and every item deducted.
    Committed,
    /// The order was no longer a draft (webhook or another instance settled it): nothing changed.
    AlreadyProcessed,
    /// An item's product (or its size) has less stock than ordered: nothing deducted, and the
    /// order is parked as `needs_review` (reason `insufficient_stock`).
    InsufficientStock { product: String },
    /// An item's product (or the size on it) does not exist: nothing deducted, and the order is
    /// parked as `needs_review` (reason `product_missing`).
    ProductMissing { product: String },
}

/// The strategy actually used, after `auto` was resolved against the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyChoice {
    Transaction,
    /// The crash-safe saga of single-document updates (standalone servers).
    Journal,
}

/// Who commits, and for how long the order stays leased to them while it is `committing`.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub ttl: Duration,
    pub now: DateTime,
}

/// How many times a commit with an unknown result is retried before giving up.
const MAX_TXN_ATTEMPTS: u32 = 8;

/// How long a transaction keeps being retried on transient errors (write conflicts with other
/// commits of the same product, mostly) before giving up; the order then comes back later. Well
/// inside the lease, which bounds the whole settlement.
const TXN_RETRY_FOR: Duration = Duration::from_secs(20);

/// Backoff between transaction attempts: doubling from 5 ms, capped at 200 ms, with full jitter
/// so commits that conflicted do not collide again in step.
fn txn_backoff(attempt: u32) -> Duration {
    let cap = (5u64 << attempt.min(6)).min(200);
    Duration::from_millis(fastrand::u64(1..=cap))
}

impl Store {
    /// Whether the server runs transactions: a replica-set member or a mongos router.
    pub async fn supports_transactions(&self) -> StoreResult<bool> {
        let hello = self
            .db
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(StoreError::mongo("hello"))?;
        Ok(hello.get_str("setName").is_ok() || hello.get_str("msg").ok() == Some("isdbgrid"))
    }

    /// Resolve the configured strategy against this server.
    pub async fn resolve_strategy(&self, configured: CommitStrategy) -> StoreResult<StrategyChoice> {
        let tx = self.supports_transactions().await?;
        match (configured, tx) {
            (CommitStrategy::Transaction | CommitStrategy::Auto, true) => Ok(StrategyChoice::Transaction),
            (CommitStrategy::Transaction, false) => Err(StoreError::Unsupported(
                "job.commit_strategy = \"transaction\" but the MongoDB server is standalone and refuses \
                 multi-document transactions; run a replica set (even a single node)"
                    .into(),
            )),
            (CommitStrategy::Auto, false) | (CommitStrategy::Journal, _) => Ok(StrategyChoice::Journal),
        }
    }

    /// Confirm `order` and deduct its items atomically, with the resolved strategy.
    pub async fn commit(
        &self,
        strategy: StrategyChoice,
        order: &Order,
        t: &Transition,
        lease: &Lease<'_>,
    ) -> StoreResult<CommitOutcome> {
        match strategy {
            StrategyChoice::Transaction => {
                let outcome = self.commit_in_transaction(order, t, lease.now).await?;
                self.park_if_refused(order, t, outcome, lease.now).await
            }
            StrategyChoice::Journal => self.commit_journal(order, t, lease.owner, lease.ttl, lease.now).await,
        }
    }

    /// The transaction was aborted by a stock guard: park the (still draft) order for review, as
    /// the journal does inside its saga. Someone else settling it first wins.
    async fn park_if_refused(
        &self,
        order: &Order,
        t: &Transition,
        outcome: CommitOutcome,
        now: DateTime,
    ) -> StoreResult<CommitOutcome> {
        let reason = match &outcome {
            CommitOutcome::InsufficientStock { .. } => review::INSUFFICIENT_STOCK,
            CommitOutcome::ProductMissing { .. } => review::PRODUCT_MISSING,
            _ => return Ok(outcome),
        };
        let code = t.code.clone().unwrap_or_default();
        let park = Transition::new(
            Status::Draft,
            Status::NeedsReview,
            PaymentStatus::Paid,
            reason,
            code,
            t.transaction_id.clone(),
        );
        if self.transition(&order.id, &park, now).await? {
            Ok(outcome)
        } else {
            Ok(CommitOutcome::AlreadyProcessed)
        }
    }

    async fn commit_in_transaction(&self, order: &Order, t: &Transition, now: DateTime) -> StoreResult<CommitOutcome> {
        let mut session = self
            .client
            .start_session()
            .await
            .map_err(StoreError::mongo("start session"))?;
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            session
                .start_transaction()
                .await
                .map_err(StoreError::mongo("start transaction"))?;
            let result = match self.commit_body(&mut session, order, t, now).await {
                Ok(CommitOutcome::Committed) => {
                    commit_with_retry(&mut session).await.map(|()| CommitOutcome::Committed)
                }
                Ok(refused) => {
                    // A guard failed: undo whatever the body did. Abort errors are harmless, the
                    // server aborts an unfinished transaction when the session ends anyway.
                    let _ = session.abort_transaction().await;
                    Ok(refused)
                }
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    Err(e)
                }
            };
            match result {
                Err(e) if e.is_transient_txn() && started.elapsed() < TXN_RETRY_FOR => {
                    tokio::time::sleep(txn_backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// The transaction body: order first (so a concurrent webhook conflicts early), then items.
    async fn commit_body(
        &self,
        s: &mut ClientSession,
        order: &Order,
        t: &Transition,
        now: DateTime,
    ) -> StoreResult<CommitOutcome> {
        let r = self
            .orders
            .update_one(
                doc! { "_id": &order.id, "status": Status::Draft.as_str() },
                transition_update(now, t),
            )
            .session(&mut *s)
            .await
            .map_err(StoreError::mongo("confirm order"))?;
        if r.matched_count == 0 {
            return Ok(CommitOutcome::AlreadyProcessed);
        }
        for item in &order.items {
            let r = self
                .products
                .update_one(stock_guard(item), stock_decrement(item))
                .session(&mut *s)
                .await
                .map_err(StoreError::mongo("deduct stock"))?;
            if r.matched_count == 0 {
                return self.read_why_short(s, item).await;
            }
        }
        Ok(CommitOutcome::Committed)
    }

    /// A stock guard failed: tell a missing product (or size) from a short one.
    async fn read_why_short(&self, s: &mut ClientSession, item: &Item) -> StoreResult<CommitOutcome> {
        let product = self
            .products
            .find_one(doc! { "_id": &item.product_id })
            .session(&mut *s)
            .await
            .map_err(StoreError::mongo("read product"))?;
        Ok(why_short(product.as_ref(), item))
    }
}

/// Why a stock guard failed, from the product as it is now: missing (or without the item's
/// size) or short.
pub(crate) fn why_short(product: Option<&Document>, item: &Item) -> CommitOutcome {
    let name = product_label(item);
    let Some(p) = product else {
        return CommitOutcome::ProductMissing { product: name };
    };
    if let Some(size) = &item.size {
        let sizes = p.get_array("sizes").map(|a| a.as_slice()).unwrap_or_default();
        let has_size = sizes
            .iter()
            .any(|e| e.as_document().and_then(|d| d.get_str("size").ok()) == Some(size.as_str()));
        if !has_size {
            return CommitOutcome::ProductMissing { product: name };
        }
    }
    CommitOutcome::InsufficientStock { product: name }
}

/// `{_id, stock >= qty}` and, for a sized item, `sizes: {$elemMatch: {size, stock >= qty}}`.
pub(crate) fn stock_guard(item: &Item) -> Document {
    let mut f = doc! { "_id": &item.product_id, "stock": { "$gte": item.quantity } };
    if let Some(size) = &item.size {
        f.insert(
            "sizes",
            doc! { "$elemMatch": { "size": size, "stock": { "$gte": item.quantity } } },
        );
    }
    f
}

/// Decrement the product total and, for a sized item, the matched size (positional `$`), so
/// `stock` stays the sum the invariant is checked on.
pub(crate) fn stock_decrement(item: &Item) -> Document {
    let mut inc = doc! { "stock": -item.quantity };
    if item.size.is_some() {
        inc.insert("sizes.$.stock", -item.quantity);
    }
    doc! { "$inc": inc }
}

/// A product reference for logs and review reasons: the product id (and size), never a customer field.
pub(crate) fn product_label(item: &Item) -> String {
    let id = match &item.product_id {
        Bson::ObjectId(o) => o.to_hex(),
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    };
    match &item.size {
        Some(size) => format!("{id} size {size}"),
        None => id,
    }
}

async fn commit_with_retry(s: &mut ClientSession) -> StoreResult<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match s.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e)
                if e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && attempt < MAX_TXN_ATTEMPTS =>
            {
                continue
            }
            Err(e) => {
                return Err(StoreError::Mongo {
                    op: "commit transaction",
                    source: e,
                })
            }
        }
    }
}

/// The transition a successful commit records.
pub fn confirm_transition(code: &str, transaction_id: Option<String>) -> Transition {
    Transition::new(
        Status::Draft,
        Status::Confirmed,
        PaymentStatus::Paid,
        "paid",
        code.to_string(),
        transaction_id,
    )
}
