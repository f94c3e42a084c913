//! How one order's reconciliation ended: what `settle` returns, what the `once` summary counts,
//! and the `outcome` label of `reconciler_orders_settled_total` (docs/operations.md, "Metrics").

/// How one order's reconciliation ended (the `once` summary and the settled-orders metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Confirmed,
    Cancelled,
    NeedsReview,
    /// Someone else settled it first: no-op.
    AlreadyProcessed,
    /// Still pending at PhonePe (or a watched order checked): looked at again later.
    Rescheduled,
    /// PhonePe or MongoDB failed transiently: nothing changed, retried later.
    Retried,
    /// The worker gave the order back without a check (calls paused, shutting down, actor lost).
    Released,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Confirmed => "confirmed",
            Outcome::Cancelled => "cancelled",
            Outcome::NeedsReview => "needs_review",
            Outcome::AlreadyProcessed => "already_processed",
            Outcome::Rescheduled => "rescheduled",
            Outcome::Retried => "retried",
            Outcome::Released => "released",
        }
    }

    /// Whether this outcome settled the order (counted in `reconciler_orders_settled_total`).
    pub fn is_settlement(self) -> bool {
        matches!(
            self,
            Outcome::Confirmed | Outcome::Cancelled | Outcome::NeedsReview | Outcome::AlreadyProcessed
        )
    }
}
