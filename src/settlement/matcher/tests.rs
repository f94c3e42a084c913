//! The matching table, row by row (the module's table, in its order).

use super::*;
use crate::settlement::tests::row;
use Discrepancy::*;

fn order(status: Status, payment: PaymentStatus, amount: i64) -> OrderFacts {
    OrderFacts {
        status: Some(status),
        payment: Some(payment),
        amount: Some(amount),
        paid_amount: None,
        settled_by: None,
    }
}

fn refund_of(payment: PaymentStatus, amount: i64) -> RefundFacts {
    RefundFacts {
        order: "MT1".into(),
        amount,
        payment: Some(payment),
        settled_by: None,
    }
}

fn with_order(o: OrderFacts) -> Known {
    Known {
        orders: [("MT1".to_string(), o)].into(),
        ..Known::default()
    }
}

fn with_refund(r: RefundFacts) -> Known {
    Known {
        refunds: [("RF1".to_string(), r)].into(),
        ..Known::default()
    }
}

fn one(r: &Row, known: &Known) -> Outcome {
    let out = match_rows(&[Incoming { row: r, rematch: false }], known);
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap()
}

fn kind(o: &Outcome) -> Option<Discrepancy> {
    match o {
        Outcome::Discrepancy { kind, .. } => Some(*kind),
        _ => None,
    }
}

fn pay(amount: i64) -> Row {
    row(PaymentType::Payment, "MT1", amount)
}

fn refund_row(amount: i64) -> Row {
    row(PaymentType::Refund, "RF1", amount)
}

#[test]
fn the_same_row_again_is_already_imported_and_other_values_conflict() {
    let r = pay(49_900);
    let mut known = with_order(order(Status::Confirmed, PaymentStatus::Paid, 49_900));
    let mut moved = r.clone();
    moved.file = "other.xlsx".into();
    moved.line = 40;
    known.stored.insert(r.key(), moved);
    assert_eq!(one(&r, &known), Outcome::AlreadyImported);
    let mut other = r.clone();
    other.fee -= 1;
    assert_eq!(one(&other, &known), Outcome::Conflicting);
    assert_eq!(Outcome::Conflicting.discrepancy(), Some(ConflictingRows));
    assert!(
        !Outcome::Conflicting.open(),
        "a person settles a conflict; matching again cannot"
    );
}

#[test]
fn twice_in_one_file_counts_once_and_the_first_of_two_values_is_kept() {
    let known = with_order(order(Status::Confirmed, PaymentStatus::Paid, 49_900));
    let (a, b) = (pay(49_900), pay(49_900));
    let mut c = pay(49_900);
    c.utr = Some("UTR2".into());
    let rows = [&a, &b, &c].map(|r| Incoming { row: r, rematch: false });
    assert_eq!(
        match_rows(&rows, &known),
        vec![Outcome::Matched, Outcome::AlreadyImported, Outcome::Conflicting]
    );
}

#[test]
fn a_payment_for_no_order_or_an_unreadable_one_is_unknown_order() {
    assert_eq!(kind(&one(&pay(100), &Known::default())), Some(UnknownOrder));
    let mut unreadable = order(Status::Confirmed, PaymentStatus::Paid, 100);
    unreadable.status = None;
    assert_eq!(kind(&one(&pay(100), &with_order(unreadable))), Some(UnknownOrder));
    let mut no_amount = order(Status::Confirmed, PaymentStatus::Paid, 100);
    no_amount.amount = None;
    assert_eq!(kind(&one(&pay(100), &with_order(no_amount))), Some(UnknownOrder));
}

#[test]
fn a_payment_for_an_order_another_payment_row_settled_conflicts() {
    let mut o = order(Status::Confirmed, PaymentStatus::Paid, 100);
    o.settled_by = Some("T-other".into());
    assert_eq!(kind(&one(&pay(100), &with_order(o.clone()))), Some(ConflictingRows));
    o.settled_by = Some(pay(100).phonepe_reference_id);
    assert_eq!(
        one(&pay(100), &with_order(o)),
        Outcome::Matched,
        "its own row again: matched again"
    );
}

#[test]
fn a_payment_for_a_confirmed_order_of_the_same_amount_is_matched() {
    let known = with_order(order(Status::Confirmed, PaymentStatus::Paid, 49_900));
    assert_eq!(one(&pay(49_900), &known), Outcome::Matched);
    assert!(!Outcome::Matched.open());
}

#[test]
fn a_payment_of_another_amount_for_a_confirmed_order_differs() {
    let known = with_order(order(Status::Confirmed, PaymentStatus::Paid, 49_900));
    for amount in [49_899, 49_901, 0, -49_900] {
        let o = one(&pay(amount), &known);
        assert_eq!(kind(&o), Some(AmountDiffers), "{amount}");
        assert!(o.open(), "matched again next import (the order may be corrected)");
    }
}

#[test]
fn a_payment_for_a_draft_wakes_it_and_one_being_committed_waits() {
    let draft = with_order(order(Status::Draft, PaymentStatus::Pending, 49_900));
    assert_eq!(
        one(&pay(1), &draft),
        Outcome::WakeDraft,
        "whatever the amount: the reconciler decides"
    );
    let committing = with_order(order(Status::Committing, PaymentStatus::Pending, 49_900));
    assert_eq!(one(&pay(49_900), &committing), Outcome::Deferred);
    assert!(Outcome::WakeDraft.open() && Outcome::Deferred.open());
}

#[test]
fn a_payment_for_an_order_that_left_draft_unpaid_is_recorded_whatever_the_amount() {
    for (status, payment) in [
        (Status::Cancelled, PaymentStatus::Failed),
        (Status::Cancelled, PaymentStatus::Pending),
        (Status::NeedsReview, PaymentStatus::Pending),
        (Status::NeedsReview, PaymentStatus::Failed),
    ] {
        let known = with_order(order(status, payment, 49_900));
        for amount in [49_900, 10] {
            assert_eq!(
                one(&pay(amount), &known),
                Outcome::RecordPayment,
                "{status:?} {payment:?} {amount}"
            );
        }
    }
    let mut unknown_payment = order(Status::Cancelled, PaymentStatus::Failed, 49_900);
    unknown_payment.payment = None;
    assert_eq!(one(&pay(49_900), &with_order(unknown_payment)), Outcome::RecordPayment);
}

#[test]
fn a_payment_the_order_records_already_changes_nothing_unless_the_amount_differs() {
    for (status, payment) in [
        (Status::NeedsReview, PaymentStatus::Paid),
        (Status::NeedsReview, PaymentStatus::RefundPending),
        (Status::Refunded, PaymentStatus::Refunded),
        (Status::Cancelled, PaymentStatus::Paid),
    ] {
        let known = with_order(order(status, payment, 49_900));
        assert_eq!(one(&pay(49_900), &known), Outcome::PaymentKnown, "{status:?}");
        assert_eq!(kind(&one(&pay(49_800), &known)), Some(AmountDiffers), "{status:?}");
    }
    // An amount_mismatch records what PhonePe reported paid: that is what the row must say.
    let mut mismatch = order(Status::NeedsReview, PaymentStatus::Paid, 49_900);
    mismatch.paid_amount = Some(49_800);
    assert_eq!(one(&pay(49_800), &with_order(mismatch.clone())), Outcome::PaymentKnown);
    assert_eq!(kind(&one(&pay(49_900), &with_order(mismatch))), Some(AmountDiffers));
}

#[test]
fn a_refund_nobody_asked_for_is_unknown_refund() {
    assert_eq!(kind(&one(&refund_row(100), &Known::default())), Some(UnknownRefund));
    let o = one(&pay(100), &with_refund(refund_of(PaymentStatus::RefundPending, 100)));
    assert_eq!(kind(&o), Some(UnknownOrder), "a refund's id is not an order's");
}

#[test]
fn a_refund_settled_by_another_row_conflicts() {
    let mut r = refund_of(PaymentStatus::Refunded, 100);
    r.settled_by = Some("T-other".into());
    assert_eq!(kind(&one(&refund_row(100), &with_refund(r))), Some(ConflictingRows));
}

#[test]
fn a_refund_of_another_amount_differs_whatever_its_sign() {
    let known = with_refund(refund_of(PaymentStatus::RefundPending, 49_900));
    assert_eq!(kind(&one(&refund_row(49_800), &known)), Some(RefundAmountDiffers));
    assert_eq!(
        one(&refund_row(-49_900), &known),
        Outcome::RefundSettled { finish: true },
        "PhonePe may write a refund negative"
    );
}

#[test]
fn a_pending_refund_is_finished_and_a_finished_one_only_records_the_settlement() {
    let pending = with_refund(refund_of(PaymentStatus::RefundPending, 49_900));
    assert_eq!(
        one(&refund_row(49_900), &pending),
        Outcome::RefundSettled { finish: true }
    );
    let done = with_refund(refund_of(PaymentStatus::Refunded, 49_900));
    assert_eq!(
        one(&refund_row(49_900), &done),
        Outcome::RefundSettled { finish: false }
    );
}

#[test]
fn a_refund_the_order_records_as_failed_is_unknown_refund() {
    let failed = with_refund(refund_of(PaymentStatus::Paid, 49_900));
    let o = one(&refund_row(49_900), &failed);
    assert_eq!(kind(&o), Some(UnknownRefund));
    assert!(o.open());
}

#[test]
fn each_outcome_is_seen_by_the_rows_after_it() {
    // A second PAYMENT row (another PhonePe id) for an order the first one settled.
    let known = with_order(order(Status::Confirmed, PaymentStatus::Paid, 100));
    let first = pay(100);
    let mut second = pay(100);
    second.phonepe_reference_id = "T-second".into();
    let rows = [&first, &second].map(|r| Incoming { row: r, rematch: false });
    let out = match_rows(&rows, &known);
    assert_eq!(out[0], Outcome::Matched);
    assert_eq!(kind(&out[1]), Some(ConflictingRows));
    // A payment recorded on a cancelled order is known to the next row of the same amount.
    let known = with_order(order(Status::Cancelled, PaymentStatus::Failed, 100));
    let out = match_rows(&rows, &known);
    assert_eq!(out, vec![Outcome::RecordPayment, Outcome::PaymentKnown]);
    // A refund finished by one row is only recorded by the next.
    let known = with_refund(refund_of(PaymentStatus::RefundPending, 100));
    let (a, b) = (refund_row(100), refund_row(100));
    let out = match_rows(
        &[
            Incoming {
                row: &a,
                rematch: false,
            },
            Incoming { row: &b, rematch: true },
        ],
        &known,
    );
    assert_eq!(
        out,
        vec![
            Outcome::RefundSettled { finish: true },
            Outcome::RefundSettled { finish: false }
        ]
    );
}

#[test]
fn a_stored_row_matched_again_skips_the_duplicate_check() {
    let r = pay(100);
    let mut known = with_order(order(Status::Confirmed, PaymentStatus::Paid, 100));
    known.stored.insert(r.key(), r.clone());
    assert_eq!(
        match_rows(&[Incoming { row: &r, rematch: true }], &known),
        vec![Outcome::Matched]
    );
}

#[test]
fn discrepancy_words_are_the_contract() {
    let words: Vec<&str> = Discrepancy::ALL.iter().map(|d| d.as_str()).collect();
    assert_eq!(
        words,
        [
            "amount_differs",
            "unknown_order",
            "unknown_refund",
            "refund_amount_differs",
            "conflicting_rows",
            "not_settled"
        ]
    );
    for d in Discrepancy::ALL {
        assert_eq!(Discrepancy::parse(d.as_str()), Some(d));
    }
}
