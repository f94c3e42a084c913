//! Everything the reconciler reads and writes in MongoDB: the [`Store`] handle, claims and leases,
//! guarded transitions, both stock commit strategies, refunds, the shared budget, settlement rows,
//! the events outbox and `reconciler_events` (docs/architecture.md, "Leases and claims",
//! "Committing stock" and "Events for the shop").

pub mod budget;
pub mod by;
pub(crate) mod claims;
pub mod commit;
pub(crate) mod eligible;
pub mod events;
pub(crate) mod indexes;
pub mod journal;
pub(crate) mod orders;
pub mod outbox;
pub(crate) mod payments;
pub mod refunds;
pub(crate) mod refusals;
pub mod settings;
pub mod settlements;
pub(crate) mod words;

pub use by::{Author, By};
pub use claims::Claimed;
pub use commit::{CommitOutcome, Lease, StrategyChoice};
pub use eligible::{Eligibility, Swept};
pub use journal::Recovery;
pub use orders::Transition;

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::{Error as MongoError, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::{Client, Collection, Database};

use crate::domain::Status;
use crate::schema::Schema;

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
    /// Whether transitions record their event (`store/outbox.rs`); off only for `selftest`'s
    /// throwaway order.
    pub(crate) events: bool,
    /// Woken each time this process moved events to `reconciler_events`, so the sender sends
    /// its own process's events at once.
    pub(crate) relayed: Arc<tokio::sync::Notify>,
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

impl Store {
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
            events: true,
            relayed: Arc::new(tokio::sync::Notify::new()),
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
}

/// A database failure. Every variant is retryable from the order's point of view: nothing about
/// the order changed, its lease expires and it is claimed again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Not a `source` of the error chain: the driver's whole error (printed by `{:#}`) carries
    // what the server quoted of the document; `brief` says what may be said.
    #[error("MongoDB error during {op}: {}", brief(error))]
    Mongo { op: &'static str, error: MongoError },
    #[error("{0}")]
    Unsupported(String),
    /// A write waited too long, e.g. behind a document locked by a transaction whose client
    /// died (the server aborts those after its transaction lifetime limit, 60 s by default).
    #[error("MongoDB did not answer {op} within {secs} s")]
    Timeout { op: &'static str, secs: u64 },
}

/// The driver's error as it may be logged or printed: a refusal by the server is its code and
/// message with quoted values dropped, never the driver's whole error (a validator's `errInfo`
/// echoes the document's values, customer data among them, and the raw server response).
fn brief(source: &MongoError) -> String {
    use mongodb::error::{ErrorKind, WriteFailure};
    let (code, message) = match source.kind.as_ref() {
        ErrorKind::Command(c) => (c.code, c.message.as_str()),
        ErrorKind::Write(WriteFailure::WriteError(w)) => (w.code, w.message.as_str()),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => (w.code, w.message.as_str()),
        ErrorKind::InsertMany(m) => match m.write_errors.as_deref().and_then(<[_]>::first) {
            Some(w) => (w.code, w.message.as_str()),
            None => return "an insert of several documents failed".into(),
        },
        ErrorKind::BulkWrite(_) => return "a bulk write failed".into(),
        _ => return source.to_string(),
    };
    format!("error {code}: {}", refusals::without_values(message))
}

/// The longest a single claim may wait. A claim stuck behind a locked document is skipped so one
/// order can never stall the scanner; the order is claimed on a later scan.
pub const CLAIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bound a driver action by `limit`, turning expiry into [`StoreError::Timeout`].
pub async fn bounded<T>(
    op: &'static str,
    limit: std::time::Duration,
    fut: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, fut.into_future()).await {
        Ok(r) => r.map_err(StoreError::mongo(op)),
        Err(_) => Err(StoreError::Timeout {
            op,
            secs: limit.as_secs(),
        }),
    }
}

impl StoreError {
    pub fn mongo(op: &'static str) -> impl FnOnce(MongoError) -> StoreError {
        move |error| StoreError::Mongo { op, error }
    }

    /// Whether the server refused a write for a duplicate key (E11000), e.g. two upserts racing.
    pub fn is_duplicate_key(&self) -> bool {
        use mongodb::error::{ErrorKind, WriteFailure};
        let StoreError::Mongo { error: source, .. } = self else {
            return false;
        };
        match source.kind.as_ref() {
            ErrorKind::Command(c) => c.code == 11000,
            ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
            _ => false,
        }
    }

    /// The server's error code, when the error carries one (a command error or a write error).
    pub fn code(&self) -> Option<i32> {
        use mongodb::error::{ErrorKind, WriteFailure};
        let StoreError::Mongo { error: source, .. } = self else {
            return None;
        };
        match source.kind.as_ref() {
            ErrorKind::Command(c) => Some(c.code),
            ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
            _ => None,
        }
    }

    /// Whether the driver labelled the error as safe to retry inside a transaction.
    pub fn is_transient_txn(&self) -> bool {
        matches!(self, StoreError::Mongo { error: source, .. }
            if source.contains_label(TRANSIENT_TRANSACTION_ERROR) || source.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
