//! Unit tests of `src/domain/decision.rs`: the late-payment watch of a cancelled order.

use super::tests::*;
use super::*;

#[test]
fn late_payment_after_timeout_cancel_is_recorded() {
    let mut o = order(4000, Status::Cancelled);
    o.reason = Some(CancelReason::PendingTimeout.as_str().into());
    let d = run(
        &o,
        report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900),
    );
    assert!(matches!(d, Decision::RecordPayment { .. }), "{d:?}");
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
    // Past the watch window, or cancelled for a real failure: no more checks, but a payment
    // PhonePe reports all the same is recorded, never dropped.
    let mut old = order(1800 + 86400 + 1, Status::Cancelled);
    old.reason = Some(CancelReason::NotFound.as_str().into());
    let paid = || report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900);
    let pending = || report(PaymentState::Pending, "PAYMENT_PENDING", "MERCHANTUAT", 49900);
    assert!(matches!(run(&old, paid()), Decision::RecordPayment { .. }));
    assert_eq!(run(&old, pending()), Decision::StopWatching);
    o.reason = Some(CancelReason::PaymentFailed.as_str().into());
    assert!(matches!(run(&o, paid()), Decision::RecordPayment { .. }));
    assert_eq!(run(&o, pending()), Decision::StopWatching);
}

/// The table of docs/operations.md ("A payment after settlement"): a COMPLETED answer for each
/// status an order can have left `draft` with.
#[test]
fn a_completed_payment_is_recorded_whatever_the_order_left_draft_as() {
    let paid = || report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900);
    let record = |d: &Decision| {
        matches!(
            d,
            Decision::RecordPayment {
                paid_amount: Some(49900),
                ..
            }
        )
    };
    let mut cases = vec![];
    for reason in CancelReason::ALL {
        for age in [600, 1800 + 3600, 1800 + 86400 * 30] {
            for payment in [PaymentStatus::Pending, PaymentStatus::Failed] {
                let mut o = order(age, Status::Cancelled);
                o.reason = Some(reason.as_str().into());
                o.payment_status = payment;
                cases.push((o, true));
            }
        }
    }
    for payment in [PaymentStatus::Pending, PaymentStatus::Failed] {
        let mut o = order(600, Status::NeedsReview);
        o.payment_status = payment;
        cases.push((o, true));
    }
    // Already paid, being refunded, refunded, or settled: a duplicate.
    for payment in [
        PaymentStatus::Paid,
        PaymentStatus::RefundPending,
        PaymentStatus::Refunded,
    ] {
        for status in [Status::NeedsReview, Status::Cancelled] {
            let mut o = order(600, status);
            o.payment_status = payment;
            cases.push((o, false));
        }
    }
    for (status, payment) in [
        (Status::Confirmed, PaymentStatus::Paid),
        (Status::Refunded, PaymentStatus::Refunded),
        (Status::Committing, PaymentStatus::Paid),
    ] {
        let mut o = order(600, status);
        o.payment_status = payment;
        cases.push((o, false));
    }
    for (o, recorded) in cases {
        let d = run(&o, paid());
        if recorded {
            assert!(
                record(&d),
                "{:?}/{:?}/{:?}: {d:?}",
                o.status,
                o.payment_status,
                o.reason
            );
        } else {
            assert_eq!(d, Decision::StopWatching, "{:?}/{:?}", o.status, o.payment_status);
        }
    }
    // Parked unpaid, PhonePe reports anything but a completed payment: nothing to do.
    let parked = order(600, Status::NeedsReview);
    let failed = report(PaymentState::Failed, "PAYMENT_ERROR", "MERCHANTUAT", 49900);
    assert_eq!(run(&parked, failed), Decision::StopWatching);
}

#[test]
fn late_payment_after_a_not_found_cancel_inside_the_window_is_recorded() {
    // Cancelled as not found, two hours into its 24-hour watch.
    let mut o = order(1800 + 7200, Status::Cancelled);
    o.reason = Some(CancelReason::NotFound.as_str().into());
    let d = run(
        &o,
        report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900),
    );
    assert!(matches!(d, Decision::RecordPayment { .. }), "{d:?}");
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
    o.reason = Some(CancelReason::PendingTimeout.as_str().into());
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
            Decision::RecordPayment { .. }
        ),
        "the last check still catches a late payment"
    );
}

#[test]
fn a_late_payment_found_at_the_very_end_of_the_window_still_goes_to_review() {
    // The window is inclusive: exactly `pending_timeout + late_payment_watch` old is still inside.
    let mut o = order(1800 + 86400, Status::Cancelled);
    o.reason = Some(CancelReason::PendingTimeout.as_str().into());
    let d = run(
        &o,
        report(PaymentState::Completed, "PAYMENT_SUCCESS", "MERCHANTUAT", 49900),
    );
    assert!(matches!(d, Decision::RecordPayment { .. }), "{d:?}");
}

#[test]
fn the_watch_constants_are_the_documented_ones() {
    // docs/operations.md: the first re-check 15 min after the cancellation, the last 15 min before
    // the window ends, and a watch counts as overdue when due more than 10 min ago.
    assert_eq!(LATE_PAYMENT_RECHECK, Duration::from_secs(900));
    assert_eq!(WATCH_FINAL_LEAD, Duration::from_secs(900));
    assert_eq!(WATCH_OVERDUE_GRACE, Duration::from_secs(600));
}

/// `paidAmount` is recorded only from a completed payment to our merchant: an amount mismatch
/// and a late payment carry PhonePe's amount; another merchant's payment carries none.
#[test]
fn a_review_carries_what_phonepe_reported_paid_to_us_only() {
    let paid = |d: Decision| match d {
        Decision::Review { paid_amount, .. } | Decision::RecordPayment { paid_amount, .. } => paid_amount,
        other => panic!("not a review: {other:?}"),
    };
    let completed = |merchant: &str, amount: i64| report(PaymentState::Completed, "PAYMENT_SUCCESS", merchant, amount);
    let draft = order(600, Status::Draft);
    assert_eq!(paid(run(&draft, completed("MERCHANTUAT", 49800))), Some(49800));
    assert_eq!(paid(run(&draft, completed("OTHER", 49800))), None);
    assert_eq!(paid(run(&draft, completed("MERCHANTUAT", 0))), None);
    let mut late = order(4000, Status::Cancelled);
    late.reason = Some(CancelReason::PendingTimeout.as_str().into());
    assert_eq!(paid(run(&late, completed("MERCHANTUAT", 49900))), Some(49900));
    assert_eq!(paid(run(&late, completed("OTHER", 49900))), None, "not our money");
}
