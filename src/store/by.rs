//! Who made a status change: `history[].by` (and the journal's `by`, so a commit a webhook began
//! is recorded as the webhook's even when recovery finishes it).

/// The scanner → reconciler → committer path, `check --apply` and `selftest`.
pub const RECONCILER: &str = "reconciler";
/// PhonePe's callback (`src/webhook.rs`).
pub const WEBHOOK: &str = "webhook";
/// A person, through `review resolve` (`src/review.rs`), and the refunds they started.
pub const OPERATOR: &str = "operator";
/// PhonePe's settlement report (`draft-reconciler settlement import`): a payment it shows for an
/// order that left draft unpaid, a refund it shows paid out.
pub const SETTLEMENT: &str = "settlement";

/// The constant spelled `s`; anything unknown reads as [`RECONCILER`] (journals written before
/// `by` existed were all the reconciler's).
pub fn parse(s: Option<&str>) -> &'static str {
    match s {
        Some(WEBHOOK) => WEBHOOK,
        Some(OPERATOR) => OPERATOR,
        Some(SETTLEMENT) => SETTLEMENT,
        _ => RECONCILER,
    }
}

/// Who makes a change, as a history entry records it: `by`, and for a person the operator's
/// name (`operator`: the OS user of `review resolve`, the console's logged-in operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct By<'a> {
    pub by: &'static str,
    pub operator: Option<&'a str>,
}

impl By<'_> {
    /// A service's change (`by` alone, no operator name).
    pub const fn service(by: &'static str) -> By<'static> {
        By { by, operator: None }
    }
}

impl<'a> By<'a> {
    /// A person's change, with their name when known.
    pub const fn operator(name: Option<&'a str>) -> By<'a> {
        By {
            by: OPERATOR,
            operator: name,
        }
    }
}

impl From<&'static str> for By<'static> {
    fn from(by: &'static str) -> By<'static> {
        By::service(by)
    }
}
