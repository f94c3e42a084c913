//! Label keys and their known values, so recording sites spell them the same way.

pub const OUTCOME: &str = "outcome";
pub const CODE: &str = "code";
pub const KIND: &str = "kind";
pub const REASON: &str = "reason";
pub const ACTOR: &str = "actor";
pub const RESULT: &str = "result";
pub const VERSION: &str = "version";
pub const EVENT: &str = "event";
pub const API: &str = "api";
/// The event type on [`super::names::EVENTS`] (`domain::EventType::as_str`, a fixed set).
pub const TYPE: &str = "type";
pub const ACTION: &str = "action";

/// Values of `outcome` on [`super::names::ORDERS_SETTLED`], spelled by `Outcome::as_str`.
pub mod outcome {
    use crate::domain::Outcome;
    pub const CONFIRMED: &str = Outcome::Confirmed.as_str();
    pub const CANCELLED: &str = Outcome::Cancelled.as_str();
    pub const NEEDS_REVIEW: &str = Outcome::NeedsReview.as_str();
    pub const ALREADY_PROCESSED: &str = Outcome::AlreadyProcessed.as_str();
    pub const ALL: [&str; 4] = [CONFIRMED, CANCELLED, NEEDS_REVIEW, ALREADY_PROCESSED];
}

/// Values of `result` on [`super::names::SCAN_RUNS`].
pub mod scan {
    pub const OK: &str = "ok";
    pub const ERROR: &str = "error";
}

/// Values of `kind` on [`super::names::PHONEPE_API_ERRORS`] (the decision table's classes,
/// spelled by `TransientKind::as_str` and `StatusError`'s label constants; a unit test checks
/// that `StatusError::kind_label` yields exactly these).
pub mod api_error {
    use crate::domain::{StatusError, TransientKind};
    pub const SERVER_ERROR: &str = TransientKind::Server.as_str();
    pub const TIMEOUT: &str = TransientKind::Timeout.as_str();
    pub const CONNECTION: &str = TransientKind::Connection.as_str();
    pub const MALFORMED: &str = TransientKind::Malformed.as_str();
    pub const UNKNOWN_CODE: &str = TransientKind::UnknownCode.as_str();
    /// 401 / AUTHORIZATION_FAILED: configuration error, calls pause.
    pub const REJECTED: &str = StatusError::REJECTED_LABEL;
    /// BAD_REQUEST about one transaction: that order backs off, then is parked.
    pub const REFUSED: &str = StatusError::REFUSED_LABEL;
    pub const ALL: [&str; 7] = [
        SERVER_ERROR,
        TIMEOUT,
        CONNECTION,
        MALFORMED,
        UNKNOWN_CODE,
        REJECTED,
        REFUSED,
    ];
}

/// Values of `reason` on [`super::names::STOCK_COMMIT_FAILURES`]: the review reason an
/// unfulfillable commit parks the order with (spelled by `ReviewReason::as_str`), or `database`.
pub mod commit_failure {
    use crate::domain::ReviewReason;
    /// A guard `stock >= quantity` failed: nothing deducted, the order is parked.
    pub const INSUFFICIENT_STOCK: &str = ReviewReason::InsufficientStock.as_str();
    /// A product (or size) the order names does not exist: nothing deducted, parked.
    pub const PRODUCT_MISSING: &str = ReviewReason::ProductMissing.as_str();
    /// A product lists the ordered size twice: nothing deducted, parked.
    pub const INVALID_PRODUCT: &str = ReviewReason::InvalidProduct.as_str();
    /// MongoDB failed the commit (after the transaction's own retries): retried later.
    pub const DATABASE: &str = "database";
    pub const ALL: [&str; 4] = [INSUFFICIENT_STOCK, PRODUCT_MISSING, INVALID_PRODUCT, DATABASE];
}

/// Values of `event` on [`super::names::WEBHOOKS`]: a v2 callback's `event` when PhonePe
/// documents it, `v1.<state>` for a v1 callback, `other` for an undocumented v2 event, and
/// `unknown` before the delivery was verified and parsed (every bad signature).
pub mod webhook_event {
    pub const UNKNOWN: &str = "unknown";
    pub const OTHER: &str = "other";
    pub const V1_COMPLETED: &str = "v1.completed";
    pub const V1_FAILED: &str = "v1.failed";
    pub const V1_PENDING: &str = "v1.pending";
    pub const V1_NOT_FOUND: &str = "v1.not_found";
    pub const ORDER_COMPLETED: &str = "checkout.order.completed";
    pub const ORDER_FAILED: &str = "checkout.order.failed";
    /// v2 order events PhonePe documents that never settle an order here.
    pub const NON_SETTLING: [&str; 1] = ["checkout.transaction.attempt.failed"];
    /// v2 refund events (their payload names a refund, not an order): a completed or failed one
    /// settles the refund it names; an accepted one changes nothing.
    pub const REFUND_COMPLETED: &str = "pg.refund.completed";
    pub const REFUND_FAILED: &str = "pg.refund.failed";
    pub const REFUND_ACCEPTED: &str = "pg.refund.accepted";
    pub const REFUND_EVENTS: [&str; 3] = [REFUND_COMPLETED, REFUND_FAILED, REFUND_ACCEPTED];

    /// The label value of a v2 `event` (a fixed set, whatever the network sends).
    pub fn v2(event: &str) -> &'static str {
        match event {
            ORDER_COMPLETED => ORDER_COMPLETED,
            ORDER_FAILED => ORDER_FAILED,
            other => NON_SETTLING
                .into_iter()
                .chain(REFUND_EVENTS)
                .find(|e| *e == other)
                .unwrap_or(OTHER),
        }
    }
}

/// Values of `result` on [`super::names::WEBHOOKS`].
pub mod webhook_result {
    /// Verified and acted on: the order was confirmed, cancelled or parked (200).
    pub const ACCEPTED: &str = "accepted";
    /// The order was settled already (a duplicate delivery, or the reconciler won) (200).
    pub const ALREADY_SETTLED: &str = "already_settled";
    /// No order has that merchantTransactionId (200).
    pub const UNKNOWN_ORDER: &str = "unknown_order";
    /// X-VERIFY or Authorization did not match, or was missing (401).
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// Verified (v2) or not (v1 outer body), but unreadable (400, 408, 413).
    pub const MALFORMED: &str = "malformed";
    /// MongoDB (or the status API check) could not answer in time (503: PhonePe retries).
    pub const UNAVAILABLE: &str = "unavailable";
    /// Nothing to do: not a final answer, an event that does not settle, or an order the
    /// reconciler must park itself (200).
    pub const IGNORED: &str = "ignored";
    pub const ALL: [&str; 7] = [
        ACCEPTED,
        ALREADY_SETTLED,
        UNKNOWN_ORDER,
        BAD_SIGNATURE,
        MALFORMED,
        UNAVAILABLE,
        IGNORED,
    ];
}

/// Values of `actor` on [`super::names::ACTOR_RESTARTS`] (`ChildId::actor_label` answers with
/// these).
pub mod actor {
    pub const RATE_LIMITER: &str = "rate_limiter";
    pub const STOCK_COMMITTER: &str = "stock_committer";
    pub const ORDER_RECONCILER: &str = "order_reconciler";
    pub const SCANNER: &str = "scanner";
    pub const EVENT_SENDER: &str = "event_sender";
    pub const ALL: [&str; 5] = [RATE_LIMITER, STOCK_COMMITTER, ORDER_RECONCILER, SCANNER, EVENT_SENDER];
}

/// Values of `result` on [`super::names::EVENTS`] and [`super::names::NOTIFICATIONS`]: one
/// attempt answered 2xx; an attempt failed and another is scheduled; the last attempt within the
/// window failed; or the event was older than the window when first seen (never sent).
pub mod event_result {
    pub const DELIVERED: &str = "delivered";
    pub const RETRIED: &str = "retried";
    pub const FAILED: &str = "failed";
    pub const EXPIRED: &str = "expired";
}

/// Values of `result` on [`super::names::REFUNDS`]: PhonePe's final word on a refund
/// (`failed` also counts a refund PhonePe refused outright).
pub mod refund_result {
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
}

/// Values of `api` on [`super::names::PHONEPE_REQUESTS`] and
/// [`super::names::PHONEPE_REQUEST_DURATION`] (`phonepe::gateway::Api::as_str` answers with
/// these).
pub mod phonepe_api {
    pub const STATUS: &str = "status";
    pub const REFUND: &str = "refund";
    pub const REFUND_STATUS: &str = "refund_status";
    pub const ALL: [&str; 3] = [STATUS, REFUND, REFUND_STATUS];
}

/// Values of `result` on [`super::names::CONSOLE_LOGINS`].
pub mod console_login {
    /// The password matched: a session began.
    pub const OK: &str = "ok";
    /// A wrong password, or a name nobody has (counted alike).
    pub const WRONG_PASSWORD: &str = "wrong_password";
    /// Refused unverified: too many failures for the name or from the address.
    pub const THROTTLED: &str = "throttled";
    pub const ALL: [&str; 3] = [OK, WRONG_PASSWORD, THROTTLED];
}

/// Values of `action` and `result` on [`super::names::CONSOLE_ACTIONS`].
pub mod console_action {
    pub const FULFIL: &str = "fulfil";
    pub const REFUND: &str = "refund";
    pub const CANCEL: &str = "cancel";
    pub const ACTIONS: [&str; 3] = [FULFIL, REFUND, CANCEL];
    /// Done (`review resolve` would exit 0).
    pub const DONE: &str = "done";
    /// Refused with the reason (`review resolve` would exit 1 with it).
    pub const REFUSED: &str = "refused";
    /// The action failed (MongoDB); nothing is known to have changed.
    pub const ERROR: &str = "error";
    pub const RESULTS: [&str; 3] = [DONE, REFUSED, ERROR];
}
