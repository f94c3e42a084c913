//! The decision table (docs/architecture.md, Decision table) as one pure function.
//!
//! `decide` gets the order, what PhonePe answered (or the error instead of an answer), the time
//! and the policy, and returns exactly one action. It does no I/O and reads no clock, so every row
//! of the table is a unit test below. Money rules, in order of precedence:
//! * nothing is confirmed unless PhonePe says COMPLETED for *our* merchant and the *exact* amount;
//! * an error (429, 5xx, timeout, malformed, unknown code) never changes an order's status;
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
    /// PhonePe could not answer (transient, 429): no status change, retry after `after`.
    Retry { after: Duration, error: StatusError },
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

/// Backoff after an error: 30 s doubling per attempt, capped at 15 minutes. Callers add jitter.
pub fn error_backoff(attempts: u32) -> Duration {
    Duration::from_secs((30u64 << attempts.min(5)).min(900))
}

/// How long calls pause after PhonePe rejects our credentials.
pub const REJECTED_PAUSE: Duration = Duration::from_secs(300);
/// How often a cancelled order is re-checked for a late payment.
pub const LATE_PAYMENT_RECHECK: Duration = Duration::from_secs(15 * 60);

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
        Err(e) => return on_error(order, e),
    };
    match order.status {
        Status::Draft => decide_draft(order, report, now, policy),
        Status::Cancelled => decide_watch(order, report, now, policy),
        // Anything else is settled or being committed; the caller never asks, but be explicit.
        _ => Decision::StopWatching,
    }
}

fn on_error(order: &Order, e: &StatusError) -> Decision {
    match e {
        StatusError::RateLimited => Decision::Retry {
            after: Duration::from_secs(60),
            error: e.clone(),
        },
        StatusError::Transient { .. } => Decision::Retry {
            after: error_backoff(order.attempts),
            error: e.clone(),
        },
        StatusError::Rejected { .. } => Decision::PauseCalls {
            after: REJECTED_PAUSE,
            error: e.clone(),
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
        PaymentState::Pending | PaymentState::NotFound => Decision::Reschedule {
            after: LATE_PAYMENT_RECHECK,
            code: r.code.clone(),
        },
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

    #[test]
    fn backoffs_grow_and_cap() {
        assert_eq!(error_backoff(0), Duration::from_secs(30));
        assert_eq!(error_backoff(1), Duration::from_secs(60));
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
        assert_eq!(
            d,
            Decision::Reschedule {
                after: LATE_PAYMENT_RECHECK,
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
}
