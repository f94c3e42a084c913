//! Order queries: indexes, the eligible-drafts query, claims with leases, guarded transitions.
//!
//! A *claim* sets `reconciliation.leaseOwner` / `leaseUntil` with an update guarded by "no live
//! lease" (one `update` command per batch, one single-document statement per order; each
//! document is claimed atomically), so two processes
//! never work the same order. The lease outlives one PhonePe round trip with retries; an order
//! whose worker died is simply claimed again once its lease expires.
//!
//! What is eligible (the filters, the sweep, the candidate lists) is in `store/eligible.rs`.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};

pub use super::eligible::{Eligibility, Swept};
use super::fields::own;
use super::{StoreError, StoreResult};
use crate::domain::{CancelReason, Reason};
use crate::domain::{Order, OrderError, PaymentStatus, Status};
use crate::schema::{get_path, Schema};
use std::sync::Arc;

/// A handle on the shop's database. Cheap to clone; must be used on the runtime that created it.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) client: Client,
    pub(crate) db: Database,
    pub(crate) orders: Collection<Document>,
    pub(crate) products: Collection<Document>,
    pub(crate) rules: CommitRules,
    /// The shop's collections, field paths and words (`[schema]`).
    pub(crate) schema: Arc<Schema>,
}

/// The settings the stock commit depends on.
#[derive(Clone, Copy, Debug)]
pub struct CommitRules {
    /// `job.sized_items_decrement_total`: sized items also guard and decrement the total `stock`.
    pub sized_items_decrement_total: bool,
    /// `job.lease_ttl_secs`: how long any driver of a journal commit may still act after it
    /// ended (see `store/journal.rs`, markers).
    pub lease_ttl: Duration,
}

impl Default for CommitRules {
    fn default() -> Self {
        CommitRules {
            sized_items_decrement_total: false,
            lease_ttl: Duration::from_secs(300),
        }
    }
}

/// A claimed order: parsed, or a document too broken to reconcile (parked for a person).
#[derive(Debug, Clone)]
pub enum Claimed {
    Valid(Order),
    Invalid {
        id: Bson,
        status: Status,
        merchant_transaction_id: Option<String>,
        error: OrderError,
    },
}

impl Claimed {
    /// The id to log (never customer data).
    pub fn log_id(&self) -> String {
        match self {
            Claimed::Valid(o) => o.merchant_transaction_id.to_string(),
            Claimed::Invalid {
                merchant_transaction_id: Some(m),
                ..
            } => m.clone(),
            Claimed::Invalid { id, .. } => format!("_id:{id}"),
        }
    }
}

pub use super::by;

/// A status change to apply to one order (everything but the stock commit itself).
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    pub payment_status: PaymentStatus,
    pub reason: Reason,
    pub code: Option<String>,
    pub transaction_id: Option<String>,
    /// When to look at the order again (a cancelled order watched for a late payment).
    pub next_check_at: Option<DateTime>,
    /// A secret-free excerpt of PhonePe's last unusable answer (`reconciliation.lastError`), when
    /// that answer is why the order is parked.
    pub last_error: Option<String>,
    /// Who makes the change ([`by`]), recorded in the history entry.
    pub by: &'static str,
    /// The operator's `--note` (`review resolve`), recorded in the history entry.
    pub note: Option<String>,
    /// PhonePe's verified paid amount (paise): `reconciliation.paidAmount` when `to` is `needs_review`.
    pub paid_amount: Option<i64>,
}

impl Transition {
    pub fn new(
        from: Status,
        to: Status,
        payment_status: PaymentStatus,
        reason: impl Into<Reason>,
        code: String,
        transaction_id: Option<String>,
    ) -> Transition {
        Transition {
            from,
            to,
            payment_status,
            reason: reason.into(),
            code: Some(code),
            transaction_id,
            next_check_at: None,
            last_error: None,
            by: by::RECONCILER,
            note: None,
            paid_amount: None,
        }
    }

    /// The same transition, made by `who` ([`by`]).
    pub fn by(mut self, who: &'static str) -> Transition {
        self.by = who;
        self
    }

    /// What PhonePe verified as paid: recorded as `paidAmount` if the transition parks.
    pub fn paid(mut self, amount: Option<i64>) -> Transition {
        self.paid_amount = amount;
        self
    }
}

/// A check that changes no status: what [`Store::reschedule`] records.
#[derive(Debug, Clone, Copy)]
pub struct Recheck<'a> {
    /// The status the order must still have (the guard).
    pub status: Status,
    /// When to look at it again (`reconciliation.nextCheckAt`).
    pub next: DateTime,
    /// `reconciliation.lastCode`: PhonePe's code, or why the check did not happen.
    pub code: &'a str,
    /// PhonePe's unusable answer, when that is why the order waits.
    pub error: Option<CheckError<'a>>,
}

/// PhonePe's unusable answer, as a reschedule records it.
#[derive(Debug, Clone, Copy)]
pub struct CheckError<'a> {
    /// Its secret-free excerpt (`reconciliation.lastError`).
    pub excerpt: &'a str,
    /// The per-kind counter it adds to (`reconciliation.errors` / `unreadable` / `rejections`).
    pub count: Option<&'a str>,
}

impl<'a> Recheck<'a> {
    pub fn new(status: Status, next: DateTime, code: &'a str) -> Recheck<'a> {
        Recheck {
            status,
            next,
            code,
            error: None,
        }
    }

    /// The same, after PhonePe's unusable answer.
    pub fn after_error(self, excerpt: &'a str, count: Option<&'a str>) -> Recheck<'a> {
        Recheck {
            error: Some(CheckError { excerpt, count }),
            ..self
        }
    }
}

/// The guard and update that claim one order for `owner` until `until`: no live lease, due.
fn claim_statement(id: &Bson, owner: &str, now: DateTime, until: DateTime) -> (Document, Document) {
    (
        doc! {
            "_id": id,
            own::NEXT_CHECK_AT: { "$not": { "$gt": now } },
            own::LEASE_UNTIL: { "$not": { "$gt": now } },
        },
        doc! { "$set": { own::LEASE_OWNER: owner, own::LEASE_UNTIL: until } },
    )
}

/// One `update` command of single-document statements, `(filter, update)` each: one round trip
/// for a batch, while every statement stays a single-document write. (A multi-document
/// `updateMany` would do the same in one statement, but a server may hold the collection for the
/// whole statement while it waits on a document locked by a dead client's transaction —
/// SecantusDB does, and then cannot reap that transaction: every transaction on the server
/// stops. Separate statements wait one document at a time.)
pub(crate) fn per_document_update(
    collection: &str,
    statements: impl Iterator<Item = (Document, Document)>,
) -> Document {
    let updates: Vec<Document> = statements
        .map(|(q, u)| doc! { "q": q, "u": u, "multi": false, "upsert": false })
        .collect();
    doc! { "update": collection, "updates": updates, "ordered": false }
}

/// `$unset` of the lease fields, shared by every write that ends a worker's hold on an order.
fn unset_lease() -> Document {
    doc! { own::LEASE_OWNER: "", own::LEASE_UNTIL: "" }
}

/// One audit-trail entry (`orders.history[]`).
fn history_entry(now: DateTime, t: &Transition) -> Document {
    let mut entry = doc! {
        "at": now, "from": t.from.as_str(), "to": t.to.as_str(), "by": t.by,
        "reason": t.reason.as_str(), "code": t.code.clone(), "transactionId": t.transaction_id.clone(),
    };
    if let Some(note) = &t.note {
        entry.insert("note", note);
    }
    entry
}

/// The `$set` part of a transition.
fn transition_set(now: DateTime, t: &Transition, schema: &Schema) -> Document {
    let o = &schema.orders;
    let mut set = doc! {
        &o.status: o.status_values.word(t.to), &o.payment_status: o.payment_status_values.word(t.payment_status),
        &o.updated_at: now,
        own::REASON: t.reason.as_str(), own::LAST_CODE: t.code.clone(),
        own::LAST_CHECKED_AT: now,
    };
    if let Some(next) = t.next_check_at {
        set.insert(own::NEXT_CHECK_AT, next);
    }
    if let Some(e) = &t.last_error {
        set.insert(own::LAST_ERROR, e);
    }
    if let (Status::NeedsReview, Some(paid)) = (t.to, t.paid_amount) {
        set.insert(own::PAID_AMOUNT, paid);
    }
    set
}

/// The whole update of a status transition: new status, bookkeeping, lease released, audit entry.
pub(crate) fn transition_update(now: DateTime, t: &Transition, schema: &Schema) -> Document {
    doc! {
        "$set": transition_set(now, t, schema),
        "$unset": unset_lease(),
        "$inc": { own::ATTEMPTS: 1 },
        "$push": { own::HISTORY: history_entry(now, t) },
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn minus(now: DateTime, d: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis().saturating_sub(ms(d)))
}

pub(crate) fn plus(now: DateTime, d: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis().saturating_add(ms(d)))
}

/// A sparse index on `keys` named `name` (only documents that have the field are in it).
fn sparse_index(keys: Document, name: &str) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_string()).sparse(true).build();
    IndexModel::builder().keys(keys).options(options).build()
}

impl Store {
    /// The filter a stock commit begins with: the order still in `from`; an operator's `fulfil`
    /// (`from` = `needs_review`) also needs it still `paid` (not refunding, not refunded).
    pub(crate) fn commit_guard(&self, id: &Bson, from: Status) -> Document {
        let o = &self.schema.orders;
        let mut guard = doc! { "_id": id, &o.status: o.status_values.word(from) };
        if from == Status::NeedsReview {
            guard.insert(&o.payment_status, o.payment_status_values.word(PaymentStatus::Paid));
        }
        guard
    }

    pub async fn connect(uri: &str, database: &str) -> StoreResult<Store> {
        let mut opts = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(StoreError::mongo("parse mongodb.uri"))?;
        opts.app_name.get_or_insert_with(|| "draft-reconciler".to_string());
        opts.server_selection_timeout.get_or_insert(Duration::from_secs(10));
        let client = Client::with_options(opts).map_err(StoreError::mongo("create client"))?;
        Ok(Store::from_client(client, database))
    }

    pub fn from_client(client: Client, database: &str) -> Store {
        let db = client.database(database);
        Store {
            orders: db.collection("orders"),
            products: db.collection("products"),
            db,
            client,
            rules: CommitRules::default(),
            schema: Arc::new(Schema::default()),
        }
    }

    /// The same store on the shop's `schema`: its collections, field paths and status words.
    pub fn with_schema(mut self, schema: Arc<Schema>) -> Store {
        self.orders = self.db.collection(&schema.orders.collection);
        self.products = self.db.collection(&schema.products.collection);
        self.schema = schema;
        self
    }

    /// The mapping every query of this store goes through.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The status word the shop stores for `s`.
    pub(crate) fn word(&self, s: Status) -> &str {
        self.schema.orders.status_values.word(s)
    }

    /// The same store, committing by `rules`.
    pub fn with_rules(mut self, rules: CommitRules) -> Store {
        self.rules = rules;
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(StoreError::mongo("ping"))?;
        Ok(())
    }

    /// The indexes the scanner queries by; idempotent.
    pub async fn ensure_indexes(&self) -> StoreResult<()> {
        let o = &self.schema.orders;
        let unique = IndexOptions::builder()
            .unique(true)
            .name(format!("{}_unique", o.id))
            .build();
        let models = vec![
            IndexModel::builder().keys(doc! { &o.id: 1 }).options(unique).build(),
            IndexModel::builder()
                .keys(doc! { &o.status: 1, &o.payment_status: 1, &o.created_at: 1 })
                .options(IndexOptions::builder().name("reconciler_eligible".to_string()).build())
                .build(),
            sparse_index(doc! { own::COMMIT_ID: 1 }, "reconciler_journal"),
            // Journals whose markers wait for their sweep (the field is removed once swept).
            sparse_index(doc! { own::COMMIT_SWEEP_AT: 1 }, "reconciler_journal_sweep"),
            sparse_index(doc! { own::LEASE_OWNER: 1 }, "reconciler_lease_owner"),
            // The scanner's next due moment (`Store::next_due`): rescheduled orders by `nextCheckAt`.
            sparse_index(doc! { own::NEXT_CHECK_AT: 1 }, "reconciler_next_check"),
        ];
        self.orders
            .create_indexes(models)
            .await
            .map_err(StoreError::mongo("create indexes"))?;
        // The journal strategy's per-item commit markers on products (swept by recovery).
        let markers = sparse_index(doc! { super::journal::MARKERS: 1 }, "reconciler_commit_markers");
        self.products
            .create_index(markers)
            .await
            .map_err(StoreError::mongo("create products index"))?;
        Ok(())
    }

    /// Claim up to `max` eligible orders for `owner`, from [`Store::candidates`]: drafts oldest
    /// first, with every fourth place kept for a due late-payment watch.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime,
        lease: Duration,
        e: &Eligibility,
        max: usize,
    ) -> StoreResult<Vec<Claimed>> {
        let ids = self.candidates(now, e, max).await?;
        self.claim_ids(&ids, owner, now, lease).await
    }

    /// Claim the orders among `ids` that are still free and due, for `owner`. Each claim is an
    /// update guarded by "no live lease, check due" — atomic per document, so another instance
    /// wins some, never the same ones. The guard names only `_id` and the lease fields so it is
    /// an `_id` lookup on every server; whether a claimed order is still a draft (or a watched
    /// cancellation) is checked on what was claimed, and one that was settled meanwhile is
    /// released at once, without a PhonePe call. A draft that is not `pending` is parked.
    pub async fn claim_ids(
        &self,
        ids: &[Bson],
        owner: &str,
        now: DateTime,
        lease: Duration,
    ) -> StoreResult<Vec<Claimed>> {
        use futures_util::TryStreamExt;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let until = plus(now, lease);
        let claims = ids.iter().map(|id| claim_statement(id, owner, now, until));
        let batch = self.db.run_command(per_document_update(self.orders.name(), claims));
        if let Err(e) = super::bounded("claim orders", super::CLAIM_TIMEOUT, batch).await {
            // Something in the batch is stuck (e.g. a document locked by a dead client's
            // transaction): claim one by one, skipping what does not answer.
            tracing::warn!(error = %e, "batch claim failed; claiming one order at a time");
            self.claim_each(ids, owner, now, until).await;
        }
        // The lease's exact expiry tells our claims apart from anyone else's.
        let mine: Vec<Document> = self
            .orders
            .find(doc! { "_id": { "$in": ids }, own::LEASE_OWNER: owner, own::LEASE_UNTIL: until })
            .sort(doc! { &self.schema.orders.created_at: 1 })
            .await
            .map_err(StoreError::mongo("read claimed orders"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read claimed orders"))?;
        let mut out = Vec::with_capacity(mine.len());
        for d in mine {
            if still_claimable(&d, &self.schema) {
                out.push(parse_claimed(&d, &self.schema));
            } else {
                self.release_claim(&d, owner, until).await?;
            }
        }
        Ok(out)
    }

    /// The slow path of a claim: one guarded update per candidate, each bounded, so one stuck
    /// order never stalls the others.
    async fn claim_each(&self, ids: &[Bson], owner: &str, now: DateTime, until: DateTime) {
        for id in ids {
            let (guard, set) = claim_statement(id, owner, now, until);
            if let Err(e) =
                super::bounded("claim order", super::CLAIM_TIMEOUT, self.orders.update_one(guard, set)).await
            {
                tracing::warn!(error = %e, "could not claim an eligible order; skipping it for now");
            }
        }
    }

    /// Undo one of our claims (guarded by the exact lease, so nothing else is touched).
    async fn release_claim(&self, d: &Document, owner: &str, until: DateTime) -> StoreResult<()> {
        self.orders
            .update_one(
                doc! { "_id": d.get("_id"), own::LEASE_OWNER: owner, own::LEASE_UNTIL: until },
                doc! { "$unset": unset_lease() },
            )
            .await
            .map_err(StoreError::mongo("release claim"))?;
        Ok(())
    }

    /// Apply a status transition guarded by the status the reconciler saw. Returns `false` when
    /// someone else changed the order first (already processed): nothing is written then.
    pub async fn transition(&self, id: &Bson, t: &Transition, now: DateTime) -> StoreResult<bool> {
        let r = self
            .orders
            .update_one(
                doc! { "_id": id, &self.schema.orders.status: self.word(t.from) },
                transition_update(now, t, &self.schema),
            )
            .await
            .map_err(StoreError::mongo("update order status"))?;
        Ok(r.matched_count == 1)
    }

    /// Park an order whose document cannot be reconciled: [`Store::transition`], except that
    /// `paymentStatus` is left as the shop wrote it (`t.payment_status` is ignored).
    pub async fn park_invalid(&self, id: &Bson, t: &Transition, now: DateTime) -> StoreResult<bool> {
        let mut update = transition_update(now, t, &self.schema);
        if let Ok(set) = update.get_document_mut("$set") {
            set.remove(&self.schema.orders.payment_status);
        }
        let r = self
            .orders
            .update_one(
                doc! { "_id": id, &self.schema.orders.status: self.word(t.from) },
                update,
            )
            .await
            .map_err(StoreError::mongo("park invalid order"))?;
        Ok(r.matched_count == 1)
    }

    /// No status change: record the check and when to look again (with PhonePe's error, when
    /// there was one), and release our lease. Guarded by the status and our lease, so it never
    /// overwrites someone else's progress.
    pub async fn reschedule(&self, id: &Bson, owner: &str, r: Recheck<'_>, now: DateTime) -> StoreResult<bool> {
        let mut set = doc! { own::NEXT_CHECK_AT: r.next, own::LAST_CODE: r.code, own::LAST_CHECKED_AT: now };
        let mut inc = doc! { own::ATTEMPTS: 1 };
        if let Some(e) = r.error {
            set.insert(own::LAST_ERROR, e.excerpt);
            if let Some(field) = e.count {
                inc.insert(field, 1);
            }
        }
        let r = self
            .orders
            .update_one(
                doc! { "_id": id, &self.schema.orders.status: self.word(r.status), own::LEASE_OWNER: owner },
                doc! { "$set": set, "$unset": unset_lease(), "$inc": inc },
            )
            .await
            .map_err(StoreError::mongo("reschedule order"))?;
        Ok(r.matched_count == 1)
    }

    /// Give back every lease `owner` holds (graceful shutdown), so another instance can proceed.
    pub async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        let ids = self.leased_ids(owner).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // A `committing` order keeps its lease: a commit of ours may still be running (shutdown
        // or escalation while a settle future is in flight); recovery takes it once it expires.
        let releases = ids.iter().map(|id| {
            (
                doc! { "_id": id, own::LEASE_OWNER: owner, &self.schema.orders.status: { "$ne": self.word(Status::Committing) } },
                doc! { "$unset": unset_lease() },
            )
        });
        let r = self
            .db
            .run_command(per_document_update(self.orders.name(), releases))
            .await
            .map_err(StoreError::mongo("release leases"))?;
        Ok(r.get_i32("nModified")
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    /// The ids of the orders `owner` holds a lease on.
    async fn leased_ids(&self, owner: &str) -> StoreResult<Vec<Bson>> {
        self.ids_oldest_first(doc! { own::LEASE_OWNER: owner }, None).await
    }

    /// Find one order by its merchant transaction id (for `check`).
    pub async fn find_by_mtid(&self, mtid: &str) -> StoreResult<Option<Document>> {
        self.orders
            .find_one(doc! { &self.schema.orders.id: mtid })
            .await
            .map_err(StoreError::mongo("find order"))
    }
}

/// A claimed document is still work for the reconciler: a draft (one that is not pending is
/// parked by `parse_claimed`), or a cancellation watched for a late payment.
fn still_claimable(d: &Document, schema: &Schema) -> bool {
    let pending = crate::domain::order::read_payment_status(d, schema) == Some(PaymentStatus::Pending);
    let watched = d
        .get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_str(own::key(own::REASON)))
        .is_ok_and(|r| CancelReason::is_watched(Some(r)));
    match crate::domain::order::read_status(d, schema) {
        Some(Status::Draft) => true,
        Some(Status::Cancelled) => pending && watched,
        _ => false,
    }
}

fn parse_claimed(d: &Document, schema: &Schema) -> Claimed {
    let words = &schema.orders;
    match Order::parse(d, schema) {
        Ok(o) if o.status == Status::Draft && o.payment_status != PaymentStatus::Pending => Claimed::Invalid {
            id: o.id,
            status: o.status,
            merchant_transaction_id: Some(o.merchant_transaction_id.to_string()),
            error: OrderError {
                field: words.payment_status.clone(),
                problem: format!(
                    "is not `{}` on a draft order; only pending drafts are reconciled",
                    words.payment_status_values.pending
                ),
            },
        },
        Ok(o) => Claimed::Valid(o),
        Err(error) => Claimed::Invalid {
            id: d.get("_id").cloned().unwrap_or(Bson::Null),
            // The claim filter matched on status, so it parses; draft is the safe fallback.
            status: crate::domain::order::read_status(d, schema).unwrap_or(Status::Draft),
            merchant_transaction_id: get_path(d, &words.id).and_then(Bson::as_str).map(str::to_string),
            error,
        },
    }
}
