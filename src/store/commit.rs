//! Committing stock: confirm the order and deduct every item, all or nothing (docs/architecture.md,
//! "Committing stock"). Strategy `transaction` is this file: one multi-document transaction,
//! rerun whole on a transient error, so its body makes no HTTP call, sends no message and records
//! no metric. `auto` picks it on a replica set or mongos and the journal saga (`journal/`) on a
//! standalone server.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::ClientSession;

use super::orders::Transition;
use super::Store;
use super::{StoreError, StoreResult};
use crate::domain::{Item, Order, PaymentStatus, Status};
use crate::domain::{Reason, ReviewReason};
use crate::schema::{get_path, Schema};

/// `job.commit_strategy`: `auto` picks `transaction` where the server has them, else `journal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitStrategy {
    Auto,
    Transaction,
    Journal,
}

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
    /// An item's product cannot be read safely (its `sizes` lists the item's size twice): nothing
    /// deducted, and the order is parked as `needs_review` (reason `invalid_product`).
    InvalidProduct { product: String },
    /// Journal strategy: the database refused the order's confirmation (`error`, an excerpt).
    /// Every deduction was restored; the order is parked `unwritable_order` by a minimal write
    /// (`parked`), or, when even that is refused, back to draft and excluded from claims.
    Unwritable { error: String, parked: bool },
}

impl CommitOutcome {
    /// The review reason of an outcome that parks the order, `None` for the others.
    pub fn review_reason(&self) -> Option<ReviewReason> {
        match self {
            CommitOutcome::InsufficientStock { .. } => Some(ReviewReason::InsufficientStock),
            CommitOutcome::ProductMissing { .. } => Some(ReviewReason::ProductMissing),
            CommitOutcome::InvalidProduct { .. } => Some(ReviewReason::InvalidProduct),
            CommitOutcome::Unwritable { .. } => Some(ReviewReason::UnwritableOrder),
            CommitOutcome::Committed | CommitOutcome::AlreadyProcessed => None,
        }
    }

    /// The product an outcome that parks the order is about.
    pub fn product(&self) -> Option<&str> {
        match self {
            CommitOutcome::InsufficientStock { product }
            | CommitOutcome::ProductMissing { product }
            | CommitOutcome::InvalidProduct { product } => Some(product),
            // For a refused confirmation, what the database said.
            CommitOutcome::Unwritable { error, .. } => Some(error),
            CommitOutcome::Committed | CommitOutcome::AlreadyProcessed => None,
        }
    }

    /// Rebuild a parking outcome from its stored review reason (the journal keeps the reason).
    pub(crate) fn from_review_reason(reason: Option<&str>, product: String) -> CommitOutcome {
        match reason.and_then(ReviewReason::parse) {
            Some(ReviewReason::ProductMissing) => CommitOutcome::ProductMissing { product },
            Some(ReviewReason::InvalidProduct) => CommitOutcome::InvalidProduct { product },
            Some(ReviewReason::UnwritableOrder) => CommitOutcome::Unwritable {
                error: product,
                parked: true,
            },
            _ => CommitOutcome::InsufficientStock { product },
        }
    }
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
                // The confirmation's event committed with it; a park moves its own.
                self.relayed_if(&order.id, outcome == CommitOutcome::Committed).await;
                self.park_if_refused(order, t, outcome, lease.now).await
            }
            StrategyChoice::Journal => {
                let outcome = self.commit_journal(order, t, lease.owner, lease.ttl, lease.now).await?;
                self.relayed_if(&order.id, outcome != CommitOutcome::AlreadyProcessed)
                    .await;
                Ok(outcome)
            }
        }
    }

    /// The transaction was aborted by a stock guard: park the order (still in `t.from`) for review, as
    /// the journal does inside its saga. Someone else settling it first wins.
    async fn park_if_refused(
        &self,
        order: &Order,
        t: &Transition,
        outcome: CommitOutcome,
        now: DateTime,
    ) -> StoreResult<CommitOutcome> {
        let Some(reason) = outcome.review_reason() else {
            return Ok(outcome);
        };
        if t.from == Status::NeedsReview {
            // An operator's `fulfil`: the order is still parked as it was; writing it again
            // could undo a refund begun meanwhile.
            return Ok(outcome);
        }
        let code = t.code.clone().unwrap_or_default();
        let park = Transition::new(
            t.from,
            Status::NeedsReview,
            PaymentStatus::Paid,
            reason,
            code,
            t.transaction_id.clone(),
        )
        .by(t.by)
        .paid(t.paid_amount);
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

    /// The transaction body, guarded by `t.from` (draft; `needs_review` for an operator's
    /// `fulfil`): order first (so a concurrent webhook conflicts early), then items.
    async fn commit_body(
        &self,
        s: &mut ClientSession,
        order: &Order,
        t: &Transition,
        now: DateTime,
    ) -> StoreResult<CommitOutcome> {
        let r = self
            .orders
            .update_one(self.commit_guard(&order.id, t.from), self.transition_update(now, t))
            .session(&mut *s)
            .await
            .map_err(StoreError::mongo("confirm order"))?;
        if r.matched_count == 0 {
            return Ok(CommitOutcome::AlreadyProcessed);
        }
        let total = self.rules.sized_items_decrement_total;
        for item in &order.items {
            if item.size.is_some() {
                // A product listing the size twice cannot be deducted safely: look before.
                let product = self.read_product(s, item).await?;
                if let Some(bad) = product.as_ref().and_then(|p| unreadable_sizes(p, item, &self.schema)) {
                    return Ok(bad);
                }
            }
            let r = match self
                .products
                .update_one(
                    stock_guard(item, total, &self.schema),
                    stock_decrement(item, total, &self.schema),
                )
                .session(&mut *s)
                .await
                .map_err(StoreError::mongo("deduct stock"))
            {
                Ok(r) => r,
                // The product's document refuses the decrement (a stock that is not a number):
                // nothing can be deducted safely; the caller aborts and parks the order.
                Err(e) if e.is_refusal() => {
                    tracing::error!(product = %product_label(item), error = %e.refusal_excerpt("deduct stock"), "the database refused the stock decrement");
                    return Ok(CommitOutcome::InvalidProduct {
                        product: product_label(item),
                    });
                }
                Err(e) => return Err(e),
            };
            if r.matched_count == 0 {
                let product = self.read_product(s, item).await?;
                return Ok(why_short(product.as_ref(), item, &self.schema));
            }
        }
        Ok(CommitOutcome::Committed)
    }

    async fn read_product(&self, s: &mut ClientSession, item: &Item) -> StoreResult<Option<Document>> {
        self.products
            .find_one(doc! { "_id": self.schema.product_ref(&item.product_id) })
            .session(&mut *s)
            .await
            .map_err(StoreError::mongo("read product"))
    }
}

/// A sized item's product whose `sizes` lists that size more than once: which entry is the
/// stock? Nobody can say, so nothing is deducted (`invalid_product`).
pub(crate) fn unreadable_sizes(product: &Document, item: &Item, s: &Schema) -> Option<CommitOutcome> {
    let size = item.size.as_deref()?;
    let n = size_entries(product, s)
        .filter(|e| size_name(e, s) == Some(size))
        .count();
    (n > 1).then(|| CommitOutcome::InvalidProduct {
        product: product_label(item),
    })
}

/// Why a stock guard failed, from the product as it is now: missing (or without the item's
/// size) or short.
/// The entries of a product's per-size array (the schema's `sizes`).
fn size_entries<'a>(product: &'a Document, s: &Schema) -> impl Iterator<Item = &'a Document> {
    let sizes = get_path(product, &s.products.sizes).and_then(Bson::as_array);
    sizes.into_iter().flatten().filter_map(Bson::as_document)
}

/// The size an entry of `sizes` names (the schema's `size_name`).
fn size_name<'a>(entry: &'a Document, s: &Schema) -> Option<&'a str> {
    get_path(entry, &s.products.size_name).and_then(Bson::as_str)
}

pub(crate) fn why_short(product: Option<&Document>, item: &Item, s: &Schema) -> CommitOutcome {
    let name = product_label(item);
    let Some(p) = product else {
        return CommitOutcome::ProductMissing { product: name };
    };
    if let Some(bad) = unreadable_sizes(p, item, s) {
        return bad;
    }
    if let Some(size) = &item.size {
        let has_size = size_entries(p, s).any(|e| size_name(e, s) == Some(size.as_str()));
        if !has_size {
            return CommitOutcome::ProductMissing { product: name };
        }
    }
    CommitOutcome::InsufficientStock { product: name }
}

/// The guard of one item: `{_id, stock >= qty}` for an unsized item; for a sized one
/// `sizes: {$elemMatch: {size, stock >= qty}}`, plus `stock >= qty` when the product's total is
/// maintained too (`job.sized_items_decrement_total`).
pub(crate) fn stock_guard(item: &Item, sized_total: bool, s: &Schema) -> Document {
    let p = &s.products;
    let mut f = doc! { "_id": s.product_ref(&item.product_id) };
    if item.size.is_none() || sized_total {
        f.insert(&p.stock, doc! { "$gte": item.quantity });
    }
    if let Some(size) = &item.size {
        f.insert(
            &p.sizes,
            doc! { "$elemMatch": { &p.size_name: size, &p.size_stock: { "$gte": item.quantity } } },
        );
    }
    f
}

/// The `$inc` of one item, `sign` = -1 to deduct, +1 to restore: the matched size (positional
/// `$`, the element the guard's `$elemMatch` or `sizes.size` found) for a sized item, the total
/// for an unsized one or when it is maintained too.
pub(crate) fn stock_inc(item: &Item, sized_total: bool, sign: i64, s: &Schema) -> Document {
    let mut inc = Document::new();
    if item.size.is_none() || sized_total {
        inc.insert(&s.products.stock, sign * item.quantity);
    }
    if item.size.is_some() {
        inc.insert(s.sizes_matched_stock(), sign * item.quantity);
    }
    inc
}

/// Deduct one item (see [`stock_inc`]).
pub(crate) fn stock_decrement(item: &Item, sized_total: bool, s: &Schema) -> Document {
    doc! { "$inc": stock_inc(item, sized_total, -1, s) }
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
                    error: e,
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
        Reason::Paid,
        code.to_string(),
        transaction_id,
    )
}
