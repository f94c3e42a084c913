//! Everything the reconciler reads and writes in MongoDB.
//!
//! `orders` holds the queries (eligible drafts, claims with leases, guarded transitions that
//! append to `history`); `commit` holds the stock commit strategies. Every write that changes an
//! order's `status` is a conditional update guarded by the status the reconciler saw, so the
//! webhook path and any number of reconciler instances can race and exactly one wins.

pub mod commit;
pub mod journal;
pub mod orders;

pub use commit::{CommitOutcome, Lease, StrategyChoice};
pub use journal::Recovery;
pub use orders::{Claimed, Store, Transition};

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
}

impl StoreError {
    pub fn mongo(op: &'static str) -> impl FnOnce(MongoError) -> StoreError {
        move |source| StoreError::Mongo { op, source }
    }

    /// Whether the driver labelled the error as safe to retry inside a transaction.
    pub fn is_transient_txn(&self) -> bool {
        matches!(self, StoreError::Mongo { source, .. }
            if source.contains_label(TRANSIENT_TRANSACTION_ERROR) || source.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
