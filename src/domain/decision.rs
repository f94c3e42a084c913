//! The decision table (docs/architecture.md, Decision table) as one pure function.
//!
//! `decide` gets the order, what PhonePe answered (or the error instead of an answer), the time
//! and the policy, and returns exactly one action. It does no I/O and reads no clock, so every row
//! of the table is a unit test below. Money rules, in order of precedence:
//! * nothing is confirmed unless PhonePe says COMPLETED for *our* merchant and the *exact* amount;
//! * an error (429, 5xx, timeout, malformed, unknown code) never changes an order's status: it is
//!   retried with backoff. The only exceptions are answers that will not get better for *this*
//!   order: after `job.unreadable_max_attempts` unreadable answers (malformed or an unknown code)
//!   or [`REJECTIONS_TO_REVIEW`] refusals (`BAD_REQUEST`) the order is parked as `needs_review`
//!   (`phonepe_unreadable` / `phonepe_rejected`) for a person — never cancelled, never confirmed;
//! * a final failure cancels; pending / not-found cancels only once the order is older than
//!   `pending_timeout`, and is then watched for a late payment.

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

/// Why an order is parked for a person.
pub mod review {
    pub const AMOUNT_MISMATCH: &str = "amount_mismatch";
    pub const MERCHANT_MISMATCH: &str = "merchant_mismatch";
    pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";
    pub const PRODUCT_MISSING: &str = "product_missing";
    /// A product whose `sizes` lists the ordered size twice: which stock is it?
    pub const INVALID_PRODUCT: &str = "invalid_product";
    pub const INVALID_ORDER: &str = "invalid_order";
    pub const PAID_AFTER_CANCEL: &str = "paid_after_cancel";
    /// PhonePe refused the request about this transaction (`BAD_REQUEST`) several times.
    pub const PHONEPE_REJECTED: &str = "phonepe_rejected";
    /// PhonePe's answers about this transaction stayed malformed or undocumented.
    pub const PHONEPE_UNREADABLE: &str = "phonepe_unreadable";
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

impl Tally {
    /// The `orders` field the retry increments, if any.
    pub fn field(self) -> Option<&'static str> {
        match self {
            Tally::Service => None,
            Tally::Error => Some("reconciliation.errors"),
            Tally::Unreadable => Some("reconciliation.unreadable"),
            Tally::Rejection => Some("reconciliation.rejections"),
        }
    }
}

/// Why an order is cancelled.
pub mod cancel {
    pub const PAYMENT_FAILED: &str = "payment_failed";
    pub const PENDING_TIMEOUT: &str = "pending_timeout";
    pub const NOT_FOUND: &str = "not_found";
}

/// The one action to take for an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Paid, merchant and amount verified: confirm and deduct stock atomically.
    Commit {
        code: String,
        transaction_id: Option<String>,
    },
    /// Park as `needs_review`; nothing is deducted.
    Review {
        reason: &'static str,
        payment_status: PaymentStatus,
        code: String,
        transaction_id: Option<String>,
    },
    /// Cancel the draft.
    Cancel {
        reason: &'static str,
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
    GiveUp { reason: &'static str, error: StatusError },
    /// PhonePe rejected our credentials or request: no status change, and stop calling for a while.
    PauseCalls { after: Duration, error: StatusError },
    /// A cancelled order's late-payment watch is over (or it no longer qualifies): stop looking.
    StopWatching,
}

/// How long a still-pending order waits before the next check: PhonePe's schedule ends at one
/// check a minute, the reconciler runs after that window, so start at a minute and double.
pub fn pending_backoff(attempts: u32) -> Duration {
    Duration::from_secs(60u64 << attempts.min(3)) // 1, 2, 4, 8 minutes
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
        // Anything else is settled or being committed; the caller never asks, but be explicit.
        _ => Decision::StopWatching,
    }
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
            review::PHONEPE_REJECTED,
            Tally::Rejection,
        ),
        StatusError::Transient { .. } if e.is_unreadable() => counted(
            order,
            e,
            order.unreadable,
            policy.unreadable_max_attempts,
            review::PHONEPE_UNREADABLE,
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
fn counted(order: &Order, e: &StatusError, so_far: u32, max: u32, reason: &'static str, tally: Tally) -> Decision {
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

fn decide_draft(order: &Order, r: &StatusReport, now: DateTime, policy: &Policy) -> Decision {
    let tx = r.transaction_id.clone();
    let code = r.code.clone();
    match r.state {
        PaymentState::Completed => {
            if r.merchant_id.as_deref() != Some(policy.merchant_id.as_str()) {
                Decision::Review {
                    reason: review::MERCHANT_MISMATCH,
                    payment_status: PaymentStatus::Paid,
                    code,
                    transaction_id: tx,
                }
            } else if r.amount != Some(order.amount) {
                Decision::Review {
                    reason: review::AMOUNT_MISMATCH,
                    payment_status: PaymentStatus::Paid,
                    code,
                    transaction_id: tx,
                }
            } else {
                Decision::Commit {
                    code,
                    transaction_id: tx,
                }
            }
        }
        PaymentState::Failed => Decision::Cancel {
            reason: cancel::PAYMENT_FAILED,
            payment_status: PaymentStatus::Failed,
            code,
            transaction_id: tx,
        },
        PaymentState::Pending | PaymentState::NotFound => {
            let age = age(order, now);
            if age >= policy.pending_timeout {
                let reason = if r.state == PaymentState::Pending {
                    cancel::PENDING_TIMEOUT
                } else {
                    cancel::NOT_FOUND
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
                    after: pending_backoff(order.attempts).min(left),
                    code,
                }
            }
        }
    }
}

/// A cancelled order that timed out (or was never found) is watched for a late payment.
fn decide_watch(order: &Order, r: &StatusReport, now: DateTime, policy: &Policy) -> Decision {
    let watched = matches!(
        order.reason.as_deref(),
        Some(cancel::PENDING_TIMEOUT) | Some(cancel::NOT_FOUND)
    );
    if !watched || age(order, now) > policy.pending_timeout + policy.late_payment_watch {
        return Decision::StopWatching;
    }
    match r.state {
        // Any COMPLETED answer after we cancelled is money a person must look at, whatever the
        // amount or merchant: refund or fulfil. Nothing is deducted automatically.
        PaymentState::Completed => Decision::Review {
            reason: review::PAID_AFTER_CANCEL,
            payment_status: PaymentStatus::Paid,
            code: r.code.clone(),
            transaction_id: r.transaction_id.clone(),
        },
        PaymentState::Failed => Decision::StopWatching,
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
mod tests {
    use super::*;
    use crate::domain::order::{Item, MerchantTransactionId, Paise};
    use crate::domain::payment::TransientKind;
    use mongodb::bson::Bson;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn policy() -> Policy {
        Policy {
            merchant_id: "MERCHANTUAT".into(),
            pending_timeout: Duration::from_secs(1800),
            late_payment_watch: Duration::from_secs(86400),
            unreadable_max_attempts: 8,
        }
    }

    fn order(age_secs: i64, status: Status) -> Order {
        Order {
            id: Bson::Int32(1),
            merchant_transaction_id: MerchantTransactionId::parse("ORD-1").unwrap(),
            status,
            payment_status: PaymentStatus::Pending,
            amount: Paise(49900),
            items: vec![Item {
                product_id: Bson::Int32(7),
                quantity: 1,
                size: None,
            }],
            created_at: DateTime::from_millis(NOW_MS - age_secs * 1000),
            attempts: 0,
            reason: None,
            errors: 0,
            unreadable: 0,
            rejections: 0,
        }
    }

    fn report(state: PaymentState, code: &str, merchant: &str, amount: i64) -> Result<StatusReport, StatusError> {
        Ok(StatusReport {
            code: code.into(),
            state,
            merchant_id: Some(merchant.into()),
            amount: Some(Paise(amount)),
            transaction_id: Some("T1".into()),
        })
    }

    fn run(o: &Order, a: Result<StatusReport, StatusError>) -> Decision {
        decide(o, &a, DateTime::from_millis(NOW_MS), &policy())
    }

    #[test]
    fn paid_with_matching_merchant_and_amount_commits() {
        let d = run(
            &order(600, Status::Draft),
            report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900),
        );
        assert_eq!(
            d,
            Decision::Commit {
                code: "PAYMENT_SUCCESS".into(),
                transaction_id: Some("T1".into())
            }
        );
    }

    #[test]
    fn paid_with_wrong_amount_goes_to_review() {
        for amount in [49899, 49901, 4990, 0] {
            let d = run(
                &order(600, Status::Draft),
                report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", amount),
            );
            assert!(
                matches!(
                    d,
                    Decision::Review {
                        reason: review::AMOUNT_MISMATCH,
                        payment_status: PaymentStatus::Paid,
                        ..
                    }
                ),
                "{amount}: {d:?}"
            );
        }
    }

    #[test]
    fn paid_to_another_merchant_goes_to_review() {
        let d = run(
            &order(600, Status::Draft),
            report(PaymentState::Completed, "PAYMENT_SUCCESS", "OTHER", 49900),
        );
        assert!(
            matches!(
                d,
                Decision::Review {
                    reason: review::MERCHANT_MISMATCH,
                    ..
                }
            ),
            "{d:?}"
        );
        let mut missing = report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900).unwrap();
        missing.merchant_id = None;
        let d = run(&order(600, Status::Draft), Ok(missing.clone()));
        assert!(
            matches!(
                d,
                Decision::Review {
                    reason: review::MERCHANT_MISMATCH,
                    ..
                }
            ),
            "{d:?}"
        );
        missing.merchant_id = Some("MERCHANTUAT".into());
        missing.amount = None;
        let d = run(&order(600, Status::Draft), Ok(missing));
        assert!(
            matches!(
                d,
                Decision::Review {
                    reason: review::AMOUNT_MISMATCH,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn failed_cancels_with_payment_failed() {
        for code in ["PAYMENT_ERROR", "PAYMENT_DECLINED", "TIMED_OUT"] {
            let d = run(
                &order(600, Status::Draft),
                report(PaymentState::Failed, code, "MERCHANTUAT", 49900),
            );
            assert!(
                matches!(
                    d,
                    Decision::Cancel {
                        reason: cancel::PAYMENT_FAILED,
                        payment_status: PaymentStatus::Failed,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
    }

    #[test]
    fn pending_young_reschedules_without_passing_the_timeout() {
        let d = run(
            &order(600, Status::Draft),
            report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900),
        );
        assert_eq!(
            d,
            Decision::Reschedule {
                after: Duration::from_secs(60),
                code: "PAYMENT_PENDING".into()
            }
        );
        let mut o = order(1790, Status::Draft);
        o.attempts = 3;
        let d = run(
            &o,
            report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900),
        );
        assert_eq!(
            d,
            Decision::Reschedule {
                after: Duration::from_secs(10),
                code: "PAYMENT_PENDING".into()
            }
        );
        let d = run(
            &order(600, Status::Draft),
            report(PaymentState::NotFound, "TRANSACTION_NOT_FOUND", "MERCHANTUAT", 0),
        );
        assert!(matches!(d, Decision::Reschedule { .. }), "{d:?}");
    }

    #[test]
    fn pending_or_not_found_past_timeout_cancels() {
        let d = run(
            &order(1800, Status::Draft),
            report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900),
        );
        assert!(
            matches!(
                d,
                Decision::Cancel {
                    reason: cancel::PENDING_TIMEOUT,
                    payment_status: PaymentStatus::Pending,
                    ..
                }
            ),
            "{d:?}"
        );
        let d = run(
            &order(4000, Status::Draft),
            report(PaymentState::NotFound, "TRANSACTION_NOT_FOUND", "MERCHANTUAT", 0),
        );
        assert!(
            matches!(
                d,
                Decision::Cancel {
                    reason: cancel::NOT_FOUND,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn errors_never_change_status() {
        let o = order(100_000, Status::Draft); // even a very old order
        let d = run(&o, Err(StatusError::RateLimited));
        assert!(matches!(d, Decision::Retry { .. }), "{d:?}");
        for kind in [
            TransientKind::Server,
            TransientKind::Timeout,
            TransientKind::Connection,
            TransientKind::Malformed,
            TransientKind::UnknownCode,
        ] {
            let d = run(
                &o,
                Err(StatusError::Transient {
                    kind,
                    detail: "x".into(),
                }),
            );
            assert!(matches!(d, Decision::Retry { .. }), "{d:?}");
        }
        let d = run(
            &o,
            Err(StatusError::Rejected {
                code: "AUTHORIZATION_FAILED".into(),
                http_status: 401,
            }),
        );
        assert!(matches!(d, Decision::PauseCalls { .. }), "{d:?}");
    }

    fn transient(kind: TransientKind) -> StatusError {
        StatusError::Transient {
            kind,
            detail: "x".into(),
        }
    }

    fn refused() -> StatusError {
        StatusError::Refused {
            code: "BAD_REQUEST".into(),
            http_status: 400,
        }
    }

    /// The retry's delay and tally, or a panic naming the decision.
    fn retry_of(d: Decision) -> (Duration, Tally) {
        match d {
            Decision::Retry { after, tally, .. } => (after, tally),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn error_backoff_doubles_on_the_orders_own_error_count_not_its_checks() {
        let mut o = order(100_000, Status::Draft);
        o.attempts = 7; // pending checks and service-wide failures do not count
        let mut delays = vec![];
        for errors in 0..4 {
            o.errors = errors;
            let (after, tally) = retry_of(run(&o, Err(transient(TransientKind::Server))));
            assert_eq!(tally, Tally::Error);
            delays.push(after.as_secs());
        }
        assert_eq!(delays, [30, 60, 120, 240]);
    }

    #[test]
    fn a_429_waits_a_minute_and_rejected_credentials_pause_five_minutes_without_counting() {
        let o = order(100_000, Status::Draft);
        assert_eq!(
            retry_of(run(&o, Err(StatusError::RateLimited))),
            (Duration::from_secs(60), Tally::Service)
        );
        let d = run(
            &o,
            Err(StatusError::Rejected {
                code: "AUTHORIZATION_FAILED".into(),
                http_status: 401,
            }),
        );
        assert!(
            matches!(d, Decision::PauseCalls { after, .. } if after == Duration::from_secs(300)),
            "{d:?}"
        );
    }

    #[test]
    fn a_refused_order_backs_off_then_is_parked_as_phonepe_rejected() {
        let mut o = order(600, Status::Draft);
        let mut delays = vec![];
        for rejections in 0..REJECTIONS_TO_REVIEW - 1 {
            o.rejections = rejections;
            let (after, tally) = retry_of(run(&o, Err(refused())));
            assert_eq!(tally, Tally::Rejection);
            delays.push(after.as_secs());
        }
        assert_eq!(delays, [30, 60]);
        o.rejections = REJECTIONS_TO_REVIEW - 1;
        assert_eq!(
            run(&o, Err(refused())),
            Decision::GiveUp {
                reason: review::PHONEPE_REJECTED,
                error: refused()
            }
        );
        assert_eq!(REJECTIONS_TO_REVIEW, 3);
        // A watched cancellation is never parked for it: it keeps its status.
        let mut watched = order(4000, Status::Cancelled);
        watched.reason = Some(cancel::PENDING_TIMEOUT.into());
        watched.rejections = 10;
        assert_eq!(retry_of(run(&watched, Err(refused()))).1, Tally::Rejection);
    }

    #[test]
    fn unreadable_answers_are_counted_apart_and_parked_after_the_configured_attempts() {
        for kind in [TransientKind::Malformed, TransientKind::UnknownCode] {
            let mut o = order(100_000, Status::Draft);
            o.errors = 5; // other failures do not bring the limit closer
            for unreadable in 0..7 {
                o.unreadable = unreadable;
                let (after, tally) = retry_of(run(&o, Err(transient(kind))));
                assert_eq!((after, tally), (error_backoff(unreadable), Tally::Unreadable));
            }
            o.unreadable = 7; // this answer is the 8th
            assert_eq!(
                run(&o, Err(transient(kind))),
                Decision::GiveUp {
                    reason: review::PHONEPE_UNREADABLE,
                    error: transient(kind)
                }
            );
        }
        // The limit is the policy's.
        let mut p = policy();
        p.unreadable_max_attempts = 1;
        let d = decide(
            &order(600, Status::Draft),
            &Err(transient(TransientKind::Malformed)),
            DateTime::from_millis(NOW_MS),
            &p,
        );
        assert!(matches!(d, Decision::GiveUp { .. }), "{d:?}");
    }

    #[test]
    fn a_failure_of_the_whole_service_is_retried_soon_and_counts_for_no_order() {
        for kind in [TransientKind::Server, TransientKind::Timeout, TransientKind::Connection] {
            assert_eq!(
                retry_of(on_service_error(&transient(kind))),
                (SERVICE_RETRY, Tally::Service)
            );
        }
        assert!(SERVICE_RETRY <= Duration::from_secs(10));
        assert_eq!(
            retry_of(on_service_error(&StatusError::RateLimited)),
            (Duration::from_secs(60), Tally::Service)
        );
        // The same refusal for several different orders: our request is wrong for everyone.
        assert!(matches!(
            on_service_error(&refused()),
            Decision::PauseCalls { after, .. } if after == REJECTED_PAUSE
        ));
        assert_eq!(Tally::Service.field(), None);
        assert_eq!(Tally::Error.field(), Some("reconciliation.errors"));
        assert_eq!(Tally::Unreadable.field(), Some("reconciliation.unreadable"));
        assert_eq!(Tally::Rejection.field(), Some("reconciliation.rejections"));
    }

    #[test]
    fn backoffs_grow_and_cap() {
        assert_eq!(error_backoff(0), Duration::from_secs(30));
        assert_eq!(error_backoff(1), Duration::from_secs(60));
        assert_eq!(error_backoff(2), Duration::from_secs(120));
        assert_eq!(error_backoff(4), Duration::from_secs(480));
        assert_eq!(error_backoff(5), Duration::from_secs(900));
        assert_eq!(error_backoff(40), Duration::from_secs(900));
        assert_eq!(pending_backoff(0), Duration::from_secs(60));
        assert_eq!(pending_backoff(9), Duration::from_secs(480));
    }

    #[test]
    fn late_payment_after_timeout_cancel_goes_to_review() {
        let mut o = order(4000, Status::Cancelled);
        o.reason = Some(cancel::PENDING_TIMEOUT.into());
        let d = run(
            &o,
            report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900),
        );
        assert!(
            matches!(
                d,
                Decision::Review {
                    reason: review::PAID_AFTER_CANCEL,
                    payment_status: PaymentStatus::Paid,
                    ..
                }
            ),
            "{d:?}"
        );
        let d = run(
            &o,
            report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900),
        );
        // 4000 s old: 2200 s into the watch window, so the wait is 30 minutes.
        assert_eq!(
            d,
            Decision::Reschedule {
                after: Duration::from_secs(30 * 60),
                code: "PAYMENT_PENDING".into()
            }
        );
        // Past the watch window, or cancelled for a real failure: stop watching.
        let mut old = order(1800 + 86400 + 1, Status::Cancelled);
        old.reason = Some(cancel::NOT_FOUND.into());
        assert_eq!(
            run(
                &old,
                report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900)
            ),
            Decision::StopWatching
        );
        o.reason = Some(cancel::PAYMENT_FAILED.into());
        assert_eq!(
            run(
                &o,
                report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900)
            ),
            Decision::StopWatching
        );
    }

    #[test]
    fn late_payment_after_a_not_found_cancel_inside_the_window_goes_to_review() {
        // Cancelled as not found, two hours into its 24-hour watch.
        let mut o = order(1800 + 7200, Status::Cancelled);
        o.reason = Some(cancel::NOT_FOUND.into());
        let d = run(
            &o,
            report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900),
        );
        assert!(
            matches!(
                d,
                Decision::Review {
                    reason: review::PAID_AFTER_CANCEL,
                    payment_status: PaymentStatus::Paid,
                    ..
                }
            ),
            "{d:?}"
        );
        let d = run(
            &o,
            report(PaymentState::NotFound, "TRANSACTION_NOT_FOUND", "MERCHANTUAT", 0),
        );
        assert_eq!(
            d,
            Decision::Reschedule {
                after: Duration::from_secs(2 * 3600),
                code: "TRANSACTION_NOT_FOUND".into()
            }
        );
    }

    const MIN: u64 = 60;

    /// Every check of a watch run exactly on time: the elapsed times, and what the schedule said
    /// after the last one.
    fn on_time_checks(window: Duration) -> Vec<u64> {
        let mut at = watch_recheck(Duration::ZERO, window).unwrap();
        let mut checks = vec![at.as_secs() / MIN];
        while let Some(wait) = watch_recheck(at, window) {
            at += wait;
            checks.push(at.as_secs() / MIN);
            assert!(checks.len() < 100, "the schedule never ends: {checks:?}");
        }
        checks
    }

    #[test]
    fn the_watch_schedule_doubles_and_ends_with_a_check_just_before_the_window_closes() {
        let d = |m: u64| Duration::from_secs(m * MIN);
        let day = d(24 * 60);
        // Waits: 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, then cut to the last check at 23 h 45.
        assert_eq!(watch_recheck(d(0), day), Some(d(15)));
        assert_eq!(watch_recheck(d(15), day), Some(d(30)));
        assert_eq!(watch_recheck(d(45), day), Some(d(60)));
        assert_eq!(watch_recheck(d(105), day), Some(d(120)));
        assert_eq!(watch_recheck(d(225), day), Some(d(240)));
        assert_eq!(watch_recheck(d(465), day), Some(d(480)));
        assert_eq!(watch_recheck(d(945), day), Some(d(1425 - 945)));
        assert_eq!(watch_recheck(d(1425), day), None, "the last check");
        assert_eq!(on_time_checks(day), vec![15, 45, 105, 225, 465, 945, 1425]);
        // A check that ran late keeps to the schedule rather than sliding it.
        assert_eq!(watch_recheck(d(100), day), Some(d(60)));
        assert_eq!(watch_recheck(d(1000), day), Some(d(425)));
        // Past the last check, or a window too short for any: stop.
        assert_eq!(watch_recheck(d(1500), day), None);
        assert_eq!(watch_recheck(d(0), d(10)), None);
        // A short window: 15 min, then the last check 15 min before its end.
        assert_eq!(on_time_checks(d(60)), vec![15, 45]);
        assert_eq!(on_time_checks(d(7 * 24 * 60)).len(), 10, "a week: still 10 calls");
    }

    #[test]
    fn a_watch_stops_after_its_last_check() {
        let mut o = order(1800 + 1425 * 60, Status::Cancelled);
        o.reason = Some(cancel::PENDING_TIMEOUT.into());
        assert_eq!(
            run(
                &o,
                report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900)
            ),
            Decision::StopWatching
        );
        assert!(
            matches!(
                run(
                    &o,
                    report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900)
                ),
                Decision::Review {
                    reason: review::PAID_AFTER_CANCEL,
                    ..
                }
            ),
            "the last check still catches a late payment"
        );
    }
}
