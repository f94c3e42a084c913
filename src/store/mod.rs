//! Everything the reconciler reads and writes in MongoDB.
//!
//! `orders` holds the queries (eligible drafts, claims with leases, guarded transitions that
//! append to `history`); `commit` holds the stock commit strategies. Every write that changes an
//! order's `status` is a conditional update guarded by the status the reconciler saw, so the
//! webhook path and any number of reconciler instances can race and exactly one wins.

pub mod budget;
pub mod by;
pub mod claims;
pub mod commit;
pub mod eligible;
pub mod events;
pub mod fields;
pub mod indexes;
pub mod journal;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod refunds;
pub mod refusals;
pub mod settlements;
pub mod words;

pub use commit::{CommitOutcome, Lease, StrategyChoice};
pub use journal::Recovery;
pub use orders::{Claimed, CommitRules, Store, Transition};

use mongodb::error::{Error as MongoError, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};

/// A database failure. Every variant is retryable from the order's point of view: nothing about
/// the order changed, its lease expires and it is claimed again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MongoDB error during {op}: {source}")]
    Mongo {
        op: &'static str,
        #[source]
        source: MongoError,
    },
    #[error("{0}")]
    Unsupported(String),
    /// A write waited too long, e.g. behind a document locked by a transaction whose client
    /// died (the server aborts those after its transaction lifetime limit, 60 s by default).
    #[error("MongoDB did not answer {op} within {secs} s")]
    Timeout { op: &'static str, secs: u64 },
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
        move |source| StoreError::Mongo { op, source }
    }

    /// Whether the server refused a write for a duplicate key (E11000), e.g. two upserts racing.
    pub fn is_duplicate_key(&self) -> bool {
        use mongodb::error::{ErrorKind, WriteFailure};
        let StoreError::Mongo { source, .. } = self else {
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
        let StoreError::Mongo { source, .. } = self else {
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
        matches!(self, StoreError::Mongo { source, .. }
            if source.contains_label(TRANSIENT_TRANSACTION_ERROR) || source.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
