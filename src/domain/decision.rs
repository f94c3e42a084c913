//! The decision table (docs/architecture.md, "Decision table") as one pure function: [`decide`]
//! gets the order, PhonePe's answer (or the error instead), the time and the policy, and returns
//! exactly one action. No I/O and no clock, so every row of the table is a unit test
//! (`decision/tests.rs`). Nothing is confirmed without COMPLETED for our merchant and the exact
//! amount; an error never changes an order's status, except that answers which will not get better
//! for this order park it for a person; a completed payment is never dropped ([`late_payment`]).

use std::time::Duration;

use mongodb::bson::DateTime;

use super::order::{Order, PaymentStatus, Status};
use super::payment::{PaymentState, StatusError, StatusReport};

/// The knobs the table depends on (from `[job]` and `[phonepe]` config).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Our PhonePe merchant id: a COMPLETED answer for another merchant is not our money.
    pub merchant_id: String,
    /// Pending or not-found orders older than this (from `createdAt`) are cancelled.
    pub pending_timeout: Duration,
    /// How long after cancellation a timed-out order is still re-checked for a late payment.
    pub late_payment_watch: Duration,
    /// Unreadable answers (malformed, unknown code) for one order before it is parked
    /// (`job.unreadable_max_attempts`, ≥ 1).
    pub unreadable_max_attempts: u32,
}

/// Why an order is parked for a person (`reconciliation.reason` of a `needs_review` order).
/// [`ReviewReason::as_str`] is the one place that spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewReason {
    AmountMismatch,
    MerchantMismatch,
    InsufficientStock,
    ProductMissing,
    /// A product whose `sizes` lists the ordered size twice: which stock is it?
    InvalidProduct,
    InvalidOrder,
    PaidAfterCancel,
    /// PhonePe refused the request about this transaction (`BAD_REQUEST`) several times.
    PhonepeRejected,
    /// PhonePe's answers about this transaction stayed malformed or undocumented.
    PhonepeUnreadable,
    /// PhonePe answered FAILED for a refund the operator (or `refunds.auto`) asked for.
    RefundFailed,
    /// The database refused the reconciler's writes to this order's document (a field of the
    /// wrong type, a validator): parked by a minimal write, `lastError` says what was refused.
    UnwritableOrder,
}

impl ReviewReason {
    pub const ALL: [ReviewReason; 11] = [
        ReviewReason::AmountMismatch,
        ReviewReason::MerchantMismatch,
        ReviewReason::InsufficientStock,
        ReviewReason::ProductMissing,
        ReviewReason::InvalidProduct,
        ReviewReason::InvalidOrder,
        ReviewReason::PaidAfterCancel,
        ReviewReason::PhonepeRejected,
        ReviewReason::PhonepeUnreadable,
        ReviewReason::RefundFailed,
        ReviewReason::UnwritableOrder,
    ];

    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewReason::AmountMismatch => "amount_mismatch",
            ReviewReason::MerchantMismatch => "merchant_mismatch",
            ReviewReason::InsufficientStock => "insufficient_stock",
            ReviewReason::ProductMissing => "product_missing",
            ReviewReason::InvalidProduct => "invalid_product",
            ReviewReason::InvalidOrder => "invalid_order",
            ReviewReason::PaidAfterCancel => "paid_after_cancel",
            ReviewReason::PhonepeRejected => "phonepe_rejected",
            ReviewReason::PhonepeUnreadable => "phonepe_unreadable",
            ReviewReason::RefundFailed => "refund_failed",
            ReviewReason::UnwritableOrder => "unwritable_order",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Which of the order's own counters (in `reconciliation`) a retry adds to. Each kind of failure
/// has its own count, so its backoff and its limit are not driven by the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// A failure of the whole service (429, PhonePe down for every order): not the order's fault,
    /// no count of its own grows, and it is retried soon.
    Service,
    /// An error of this order alone (5xx, timeout, connection): `reconciliation.errors`.
    Error,
    /// A malformed or undocumented answer: `reconciliation.unreadable`.
    Unreadable,
    /// A `BAD_REQUEST` refusal of this transaction: `reconciliation.rejections`.
    Rejection,
}

/// Why an order is cancelled (`reconciliation.reason` of a `cancelled` order).
/// [`CancelReason::as_str`] is the one place that spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    PaymentFailed,
    PendingTimeout,
    NotFound,
    /// A person closed an order that was never paid (`review resolve <id> cancel`).
    Operator,
}

impl CancelReason {
    pub const ALL: [CancelReason; 4] = [
        CancelReason::PaymentFailed,
        CancelReason::PendingTimeout,
        CancelReason::NotFound,
        CancelReason::Operator,
    ];
    /// Cancellations watched for a late payment: PhonePe never said the payment failed.
    pub const WATCHED: [CancelReason; 2] = [CancelReason::PendingTimeout, CancelReason::NotFound];

    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            CancelReason::PaymentFailed => "payment_failed",
            CancelReason::PendingTimeout => "pending_timeout",
            CancelReason::NotFound => "not_found",
            CancelReason::Operator => "operator_cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a stored `reconciliation.reason` is a watched cancellation's.
    pub fn is_watched(stored: Option<&str>) -> bool {
        stored.and_then(Self::parse).is_some_and(|r| Self::WATCHED.contains(&r))
    }
}

/// `reconciliation.reason`: why the reconciler settled an order the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Confirmed: PhonePe reported the payment, amount and merchant verified.
    Paid,
    /// PhonePe completed a refund of the order (`refund_pending` → `refunded`).
    Refunded,
    Review(ReviewReason),
    Cancel(CancelReason),
}

impl Reason {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Paid => "paid",
            Reason::Refunded => "refunded",
            Reason::Review(r) => r.as_str(),
            Reason::Cancel(r) => r.as_str(),
        }
    }
}

impl From<ReviewReason> for Reason {
    fn from(r: ReviewReason) -> Reason {
        Reason::Review(r)
    }
}

impl From<CancelReason> for Reason {
    fn from(r: CancelReason) -> Reason {
        Reason::Cancel(r)
    }
}

/// The one action to take for an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Paid, merchant and amount verified: confirm and deduct stock atomically.
    Commit {
        code: String,
        transaction_id: Option<String>,
    },
    /// Park as `needs_review`; nothing is deducted. `paid_amount` is what PhonePe reported paid
    /// (paise) when it reported a completed payment to *our* merchant, `None` otherwise.
    Review {
        reason: ReviewReason,
        payment_status: PaymentStatus,
        code: String,
        transaction_id: Option<String>,
        paid_amount: Option<i64>,
    },
    /// Cancel the draft.
    Cancel {
        reason: CancelReason,
        payment_status: PaymentStatus,
        code: String,
        transaction_id: Option<String>,
    },
    /// Still pending at PhonePe (or not there yet): look again after `after`. No status change.
    Reschedule { after: Duration, code: String },
    /// PhonePe could not answer (transient, 429, refused): no status change, retry after `after`,
    /// counting the failure in `tally`.
    Retry {
        after: Duration,
        error: StatusError,
        tally: Tally,
    },
    /// PhonePe's answers about this order will not get better by asking again (unreadable or
    /// refused too often): park as `needs_review` with `reason`, payment still pending, and the
    /// error's secret-free excerpt in `reconciliation.lastError`. Nothing is deducted.
    GiveUp { reason: ReviewReason, error: StatusError },
    /// PhonePe rejected our credentials or request: no status change, and stop calling for a while.
    PauseCalls { after: Duration, error: StatusError },
    /// PhonePe reports a completed payment for an order that left `draft` without one
    /// (cancelled, or parked with its payment not recorded): record it (`paymentStatus: paid`,
    /// `paid_amount` when it was paid to *our* merchant) and park the order for a person
    /// (`paid_after_cancel`), or record it on an order already parked. Nothing is deducted.
    RecordPayment {
        code: String,
        transaction_id: Option<String>,
        paid_amount: Option<i64>,
    },
    /// A cancelled order's late-payment watch is over (or it no longer qualifies), or the order
    /// is settled: nothing to do.
    StopWatching,
}

/// The longest time PhonePe gives a payment to reach a final state (its pages say 15 or 20
/// minutes, from the payment's start): after this a pending payment can no longer complete.
/// `job.pending_timeout_secs` (30 min by default) stays above it.
pub const PAYMENT_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// The tail of PhonePe's polling schedule for a pending payment: one check a minute.
pub const PENDING_RECHECK: Duration = Duration::from_secs(60);

/// How long a still-pending order `age` old waits before the next check, `left` being the time
/// to its `pending_timeout`: every minute (PhonePe's schedule's tail) while the payment can still
/// complete (`PAYMENT_EXPIRY`), then once more at the timeout, where it is cancelled. Never past
/// the timeout. Per order that stays pending from the lookback (5 min) to the timeout (30 min):
/// about 15 calls to the expiry plus one at the timeout.
pub fn pending_backoff(age: Duration, left: Duration) -> Duration {
    if age < PAYMENT_EXPIRY {
        PENDING_RECHECK.min(left)
    } else {
        left
    }
}

/// Backoff after an error of the order's own: 30 s doubling with its count of that kind of
/// failure (`errors`, `unreadable` or `rejections`, not every check), capped at 15 minutes.
/// Callers add jitter.
pub fn error_backoff(attempts: u32) -> Duration {
    Duration::from_secs((30u64 << attempts.min(5)).min(900))
}

/// How long calls pause after PhonePe rejects our credentials.
pub const REJECTED_PAUSE: Duration = Duration::from_secs(300);
/// How long calls pause, and the order waits, after a 429.
pub const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(60);
/// How soon an order comes back after a failure of the whole service (PhonePe down for everyone):
/// the breaker, not the order's own backoff, keeps the calls down meanwhile.
pub const SERVICE_RETRY: Duration = Duration::from_secs(5);
/// `BAD_REQUEST` refusals of one order before it is parked as `phonepe_rejected`.
pub const REJECTIONS_TO_REVIEW: u32 = 3;
/// The first wait of a late-payment watch (after the cancellation), and the unit its later
/// waits double from.
pub const LATE_PAYMENT_RECHECK: Duration = Duration::from_secs(15 * 60);
/// The last check of a watch is this long before the window ends, so a scan that runs a little
/// late still finds it inside the window.
pub const WATCH_FINAL_LEAD: Duration = Duration::from_secs(15 * 60);

/// A watch whose check was due longer ago than this (and is still inside its window) is
/// overdue: the `reconciler_overdue_watches` gauge counts it.
pub const WATCH_OVERDUE_GRACE: Duration = Duration::from_secs(10 * 60);

/// The decaying late-payment schedule: how long after a check at `elapsed` into the watch
/// window (which starts when the order could first be cancelled, `createdAt + pending_timeout`,
/// and lasts `window`) the next check comes, or `None` when that check was the last.
///
/// Checked on time, the waits are 15 min, 30 min, 1 h, 2 h, 4 h, ... (checks at 15 min, 45 min,
/// 1 h 45, 3 h 45, ...); the wait depends on `elapsed`, not on how many checks ran, so a check
/// that ran late does not push the later ones further out. A wait that would end past
/// `window - WATCH_FINAL_LEAD` is cut to one last check at that point. With the default 24 h
/// window that is 7 PhonePe calls per watched order.
pub fn watch_recheck(elapsed: Duration, window: Duration) -> Option<Duration> {
    let last = window.checked_sub(WATCH_FINAL_LEAD)?;
    let remaining = last.checked_sub(elapsed).filter(|r| !r.is_zero())?;
    let unit = LATE_PAYMENT_RECHECK.as_secs().max(1);
    // The largest `unit * 2^k` not above `elapsed + unit`.
    let steps = (elapsed.as_secs() + unit) / unit;
    let wait = Duration::from_secs(unit << steps.ilog2().min(20));
    Some(wait.min(remaining))
}

fn age(order: &Order, now: DateTime) -> Duration {
    let ms = now
        .timestamp_millis()
        .saturating_sub(order.created_at.timestamp_millis());
    Duration::from_millis(ms.max(0) as u64)
}

/// The decision table.
pub fn decide(order: &Order, answer: &Result<StatusReport, StatusError>, now: DateTime, policy: &Policy) -> Decision {
    let report = match answer {
        Ok(r) => r,
        Err(e) => return on_error(order, e, policy),
    };
    match order.status {
        Status::Draft => decide_draft(order, report, now, policy),
        Status::Cancelled => decide_watch(order, report, now, policy),
        // Parked: only a payment the order does not record yet changes anything.
        Status::NeedsReview => late_payment(order.status, Some(order.payment_status), report, &policy.merchant_id)
            .unwrap_or(Decision::StopWatching),
        // Confirmed, refunded, being committed: settled, a payment now is a duplicate.
        _ => Decision::StopWatching,
    }
}

/// A completed payment PhonePe reports for an order that left `draft` (`status`) without one
/// (`payment`: not `paid`, `refund_pending` or `refunded`; `None` when the stored value is
/// missing or unknown) is recorded: [`Decision::RecordPayment`]. `None` for anything else (not
/// a completed payment, a draft, or an order whose payment is already recorded).
pub fn late_payment(
    status: Status,
    payment: Option<PaymentStatus>,
    r: &StatusReport,
    merchant_id: &str,
) -> Option<Decision> {
    let left_draft = matches!(status, Status::Cancelled | Status::NeedsReview);
    let recorded = matches!(
        payment,
        Some(PaymentStatus::Paid | PaymentStatus::RefundPending | PaymentStatus::Refunded)
    );
    (left_draft && !recorded && r.state == PaymentState::Completed).then(|| Decision::RecordPayment {
        code: r.code.clone(),
        transaction_id: r.transaction_id.clone(),
        paid_amount: paid_to(r, merchant_id),
    })
}

/// An error about this order alone (as far as the breaker can tell, the calls around it went
/// through): the order's own count of that kind of failure grows and sets its backoff.
fn on_error(order: &Order, e: &StatusError, policy: &Policy) -> Decision {
    match e {
        StatusError::RateLimited | StatusError::Rejected { .. } => on_service_error(e),
        StatusError::Refused { .. } => counted(
            order,
            e,
            order.rejections,
            REJECTIONS_TO_REVIEW,
            ReviewReason::PhonepeRejected,
            Tally::Rejection,
        ),
        StatusError::Transient { .. } if e.is_unreadable() => counted(
            order,
            e,
            order.unreadable,
            policy.unreadable_max_attempts,
            ReviewReason::PhonepeUnreadable,
            Tally::Unreadable,
        ),
        StatusError::Transient { .. } => Decision::Retry {
            after: error_backoff(order.errors),
            error: e.clone(),
            tally: Tally::Error,
        },
    }
}

/// Retry with backoff on the order's count `so_far` of this kind of failure, or give up once this
/// one makes `max` (a `max` of 0 counts as 1). Only a draft is parked: a cancelled order watched
/// for a late payment just keeps being retried until its watch ends.
fn counted(order: &Order, e: &StatusError, so_far: u32, max: u32, reason: ReviewReason, tally: Tally) -> Decision {
    if order.status == Status::Draft && so_far.saturating_add(1) >= max.max(1) {
        Decision::GiveUp {
            reason,
            error: e.clone(),
        }
    } else {
        Decision::Retry {
            after: error_backoff(so_far),
            error: e.clone(),
            tally,
        }
    }
}

/// An error of the whole service rather than of one order: a 429, rejected credentials, the same
/// refusal for several different orders, or failures of several different orders in a row (the
/// breaker tells, see `actors::rate_limiter`). No count of the order's grows: it is retried as
/// soon as calls may resume, and the breaker keeps the calls down meanwhile.
pub fn on_service_error(e: &StatusError) -> Decision {
    match e {
        StatusError::RateLimited => Decision::Retry {
            after: RATE_LIMITED_PAUSE,
            error: e.clone(),
            tally: Tally::Service,
        },
        StatusError::Rejected { .. } | StatusError::Refused { .. } => Decision::PauseCalls {
            after: REJECTED_PAUSE,
            error: e.clone(),
        },
        StatusError::Transient { .. } => Decision::Retry {
            after: SERVICE_RETRY,
            error: e.clone(),
            tally: Tally::Service,
        },
    }
}

/// What PhonePe reports paid (paise) in a COMPLETED answer to `merchant_id`, `None` for another
/// merchant's (not our money) or an answer without a positive amount: `reconciliation.paidAmount`,
/// and what a refund gives back or a `fulfil` must match (`src/refund.rs`).
pub fn paid_to(r: &StatusReport, merchant_id: &str) -> Option<i64> {
    let ours = r.merchant_id.as_deref() == Some(merchant_id);
    let amount = r.amount.map(|a| a.0).filter(|a| *a > 0);
    (r.state == PaymentState::Completed && ours).then_some(amount).flatten()
}

fn decide_draft(order: &Order, r: &StatusReport, now: DateTime, policy: &Policy) -> Decision {
    let tx = r.transaction_id.clone();
    let code = r.code.clone();
    match r.state {
        PaymentState::Completed => {
            if r.merchant_id.as_deref() != Some(policy.merchant_id.as_str()) {
                Decision::Review {
                    reason: ReviewReason::MerchantMismatch,
                    payment_status: PaymentStatus::Paid,
                    code,
                    transaction_id: tx,
                    paid_amount: None,
                }
            } else if r.amount != Some(order.amount) {
                Decision::Review {
                    reason: ReviewReason::AmountMismatch,
                    payment_status: PaymentStatus::Paid,
                    code,
                    transaction_id: tx,
                    paid_amount: paid_to(r, &policy.merchant_id),
                }
            } else {
                Decision::Commit {
                    code,
                    transaction_id: tx,
                }
            }
        }
        PaymentState::Failed => Decision::Cancel {
            reason: CancelReason::PaymentFailed,
            payment_status: PaymentStatus::Failed,
            code,
            transaction_id: tx,
        },
        PaymentState::Pending | PaymentState::NotFound => {
            let age = age(order, now);
            if age >= policy.pending_timeout {
                let reason = if r.state == PaymentState::Pending {
                    CancelReason::PendingTimeout
                } else {
                    CancelReason::NotFound
                };
                Decision::Cancel {
                    reason,
                    payment_status: PaymentStatus::Pending,
                    code,
                    transaction_id: tx,
                }
            } else {
                // Never wait past the timeout itself: the order is cancelled on time.
                let left = policy.pending_timeout - age;
                Decision::Reschedule {
                    after: pending_backoff(age, left),
                    code,
                }
            }
        }
    }
}

/// A cancelled order that timed out (or was never found) is watched for a late payment. A
/// completed payment is recorded for any cancelled order, watched or not, at any age.
fn decide_watch(order: &Order, r: &StatusReport, now: DateTime, policy: &Policy) -> Decision {
    // Any COMPLETED answer after we cancelled is money a person must look at, whatever the
    // amount or merchant: refund or fulfil. Nothing is deducted automatically.
    if let Some(record) = late_payment(order.status, Some(order.payment_status), r, &policy.merchant_id) {
        return record;
    }
    let watched = CancelReason::is_watched(order.reason.as_deref());
    if !watched || age(order, now) > policy.pending_timeout + policy.late_payment_watch {
        return Decision::StopWatching;
    }
    match r.state {
        // Completed for an order whose payment is recorded already: nothing more to do.
        PaymentState::Completed | PaymentState::Failed => Decision::StopWatching,
        PaymentState::Pending | PaymentState::NotFound => {
            let elapsed = age(order, now).saturating_sub(policy.pending_timeout);
            match watch_recheck(elapsed, policy.late_payment_watch) {
                Some(after) => Decision::Reschedule {
                    after,
                    code: r.code.clone(),
                },
                None => Decision::StopWatching,
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_watch;
