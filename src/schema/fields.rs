//! The reconciler's own MongoDB field paths (`reconciliation.*`, `history`), one constant each:
//! their spellings are part of the contract (docs/operations.md, "MongoDB schema"). The shop's
//! fields are not here: they come from the `[schema]` mapping. Paths are full dotted paths, ready
//! for filters and `$set`; the bare `*_KEY` names are for reading a fetched sub-document.

/// The reconciler's own fields on `orders`.
pub mod own {
    /// The sub-document holding everything below.
    pub const RECONCILIATION_KEY: &str = "reconciliation";
    /// Appended to on every transition.
    pub const HISTORY: &str = "history";
    pub const LEASE_OWNER: &str = "reconciliation.leaseOwner";
    pub const LEASE_UNTIL: &str = "reconciliation.leaseUntil";
    pub const NEXT_CHECK_AT: &str = "reconciliation.nextCheckAt";
    pub const REASON: &str = "reconciliation.reason";
    pub const LAST_CODE: &str = "reconciliation.lastCode";
    pub const LAST_CHECKED_AT: &str = "reconciliation.lastCheckedAt";
    pub const LAST_ERROR: &str = "reconciliation.lastError";
    pub const ATTEMPTS: &str = "reconciliation.attempts";
    pub const ERRORS: &str = "reconciliation.errors";
    pub const UNREADABLE: &str = "reconciliation.unreadable";
    pub const REJECTIONS: &str = "reconciliation.rejections";
    /// Writes the database refused for this document (`store/refusals.rs`).
    pub const REFUSED_WRITES: &str = "reconciliation.refusedWrites";
    /// What PhonePe reported paid (paise, Int64) for our merchant, recorded when a transition
    /// parks the order after a verified PAYMENT_SUCCESS (`review list`'s PAID column).
    pub const PAID_AMOUNT: &str = "reconciliation.paidAmount";
    /// Events born with a transition, waiting to be moved to `reconciler_events`
    /// (`store/outbox.rs`); empty once moved.
    pub const OUTBOX: &str = "reconciliation.outbox";
    /// The id of an entry of [`OUTBOX`] (`evt_<hex>`): what the relay's index holds.
    pub const OUTBOX_ID: &str = "reconciliation.outbox._id";
    /// Outbox entries this version cannot read (no id, an unknown type), set aside by the relay
    /// for a person: nothing is sent for them.
    pub const OUTBOX_UNREADABLE: &str = "reconciliation.outboxUnreadable";
    /// The journal of a commit in progress (journal strategy).
    pub const COMMIT: &str = "reconciliation.commit";
    /// [`COMMIT`]'s name inside [`RECONCILIATION_KEY`].
    pub const COMMIT_KEY: &str = "commit";
    pub const COMMIT_ID: &str = "reconciliation.commit.id";
    pub const COMMIT_STATE: &str = "reconciliation.commit.state";
    pub const COMMIT_FAIL_REASON: &str = "reconciliation.commit.failReason";
    pub const COMMIT_FAIL_PRODUCT: &str = "reconciliation.commit.failProduct";
    pub const COMMIT_ENDED_AT: &str = "reconciliation.commit.endedAt";
    pub const COMMIT_SWEEP_AT: &str = "reconciliation.commit.sweepAt";
    pub const COMMIT_SWEPT_AT: &str = "reconciliation.commit.sweptAt";

    /// `path` inside [`RECONCILIATION_KEY`], for reading a fetched sub-document.
    pub fn key(path: &str) -> &str {
        path.strip_prefix("reconciliation.").unwrap_or(path)
    }

    /// `path` inside the journal ([`COMMIT`]), for writing or reading it whole.
    pub fn commit_key(path: &str) -> &str {
        path.strip_prefix("reconciliation.commit.").unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored spellings are the contract (README, the shop's schema): pin them here, once.
    #[test]
    fn spellings_are_the_contract() {
        assert_eq!(own::NEXT_CHECK_AT, "reconciliation.nextCheckAt");
        assert_eq!(own::LEASE_UNTIL, "reconciliation.leaseUntil");
        assert_eq!(own::HISTORY, "history");
        assert_eq!(own::PAID_AMOUNT, "reconciliation.paidAmount");
        assert_eq!(own::OUTBOX, "reconciliation.outbox");
    }

    #[test]
    fn key_is_the_name_inside_reconciliation() {
        assert_eq!(own::key(own::NEXT_CHECK_AT), "nextCheckAt");
        assert_eq!(own::key(own::COMMIT_ID), "commit.id");
        assert_eq!(own::key(own::HISTORY), "history");
        assert_eq!(own::commit_key(own::COMMIT_STATE), "state");
        assert_eq!(own::commit_key(own::COMMIT_SWEEP_AT), "sweepAt");
    }
}
