//! Unit tests of `src/domain/decision.rs`.

use super::*;
use crate::domain::order::{Item, MerchantTransactionId, Paise};
use crate::domain::payment::TransientKind;
use mongodb::bson::Bson;

pub(super) const NOW_MS: i64 = 1_800_000_000_000;

pub(super) fn policy() -> Policy {
    Policy {
        merchant_id: "MERCHANTUAT".into(),
        pending_timeout: Duration::from_secs(1800),
        late_payment_watch: Duration::from_secs(86400),
        unreadable_max_attempts: 8,
    }
}

pub(super) fn order(age_secs: i64, status: Status) -> Order {
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

pub(super) fn report(
    state: PaymentState,
    code: &str,
    merchant: &str,
    amount: i64,
) -> Result<StatusReport, StatusError> {
    Ok(StatusReport {
        code: code.into(),
        state,
        merchant_id: Some(merchant.into()),
        amount: Some(Paise(amount)),
        transaction_id: Some("T1".into()),
    })
}

pub(super) fn run(o: &Order, a: Result<StatusReport, StatusError>) -> Decision {
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
                    reason: ReviewReason::AmountMismatch,
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
                reason: ReviewReason::MerchantMismatch,
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
                reason: ReviewReason::MerchantMismatch,
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
                reason: ReviewReason::AmountMismatch,
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
                    reason: CancelReason::PaymentFailed,
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
fn pending_is_checked_every_minute_until_the_payment_expires_then_once_at_the_timeout() {
    let pending = || report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900);
    let after = |age_secs: i64, attempts: u32| {
        let mut o = order(age_secs, Status::Draft);
        o.attempts = attempts;
        match run(&o, pending()) {
            Decision::Reschedule { after, .. } => after,
            d => panic!("age {age_secs}: {d:?}"),
        }
    };
    for (age, attempts) in [(300, 0), (600, 5), (1_000, 9), (1_199, 14)] {
        assert_eq!(after(age, attempts), PENDING_RECHECK, "age {age} s, attempt {attempts}");
    }
    // Past PhonePe's expiry the payment cannot complete: one more check, at the timeout.
    assert_eq!(after(1_200, 15), Duration::from_secs(600));
    assert_eq!(after(1_500, 16), Duration::from_secs(300));
    assert!(policy().pending_timeout > PAYMENT_EXPIRY);
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
                reason: CancelReason::PendingTimeout,
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
                reason: CancelReason::NotFound,
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
            reason: ReviewReason::PhonepeRejected,
            error: refused()
        }
    );
    assert_eq!(REJECTIONS_TO_REVIEW, 3);
    // A watched cancellation is never parked for it: it keeps its status.
    let mut watched = order(4000, Status::Cancelled);
    watched.reason = Some(CancelReason::PendingTimeout.as_str().into());
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
                reason: ReviewReason::PhonepeUnreadable,
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
}

#[test]
fn backoffs_grow_and_cap() {
    assert_eq!(error_backoff(0), Duration::from_secs(30));
    assert_eq!(error_backoff(1), Duration::from_secs(60));
    assert_eq!(error_backoff(2), Duration::from_secs(120));
    assert_eq!(error_backoff(4), Duration::from_secs(480));
    assert_eq!(error_backoff(5), Duration::from_secs(900));
    assert_eq!(error_backoff(40), Duration::from_secs(900));
}

#[test]
fn reasons_parse_back_from_their_stored_spelling() {
    for r in ReviewReason::ALL {
        assert_eq!(ReviewReason::parse(r.as_str()), Some(r));
        assert_eq!(Reason::from(r).as_str(), r.as_str());
    }
    for r in CancelReason::ALL {
        assert_eq!(CancelReason::parse(r.as_str()), Some(r));
        assert_eq!(Reason::from(r).as_str(), r.as_str());
    }
    // The stored spellings are the contract (README's decision table); pinned here, once.
    let review: Vec<&str> = ReviewReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        review,
        [
            "amount_mismatch",
            "merchant_mismatch",
            "insufficient_stock",
            "product_missing",
            "invalid_product",
            "invalid_order",
            "paid_after_cancel",
            "phonepe_rejected",
            "phonepe_unreadable",
            "refund_failed",
            "unwritable_order"
        ]
    );
    let cancel: Vec<&str> = CancelReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        cancel,
        ["payment_failed", "pending_timeout", "not_found", "operator_cancelled"]
    );
    assert_eq!(Reason::Paid.as_str(), "paid");
    assert!(CancelReason::is_watched(Some("pending_timeout")));
    assert!(CancelReason::is_watched(Some("not_found")));
    assert!(!CancelReason::is_watched(Some("payment_failed")));
    assert!(!CancelReason::is_watched(Some("something_else")));
    assert!(!CancelReason::is_watched(None));
}
