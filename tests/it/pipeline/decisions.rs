//! One test per row of the decision table: paid, wrong amount or merchant, failed, pending
//! young and old, not found; what is left alone, a second pass, an invalid document, and an
//! order paid after it timed out.

use draft_reconciler::domain::Outcome;
use mongodb::bson::{doc, DateTime};
use phonepe_sim::Answer;

use super::{assert_untouched, ANCIENT, OLD};
use crate::support::World;

#[test]
fn paid_with_matching_amount_is_confirmed_and_stock_deducted() {
    let w = World::new("paid_ok");
    w.insert_product("tee", 10);
    w.insert_product("mug", 5);
    w.insert_order("ORD-PAID", 49900, OLD, &[("tee", 2, None), ("mug", 1, None)]);
    w.sim.script("ORD-PAID", vec![Answer::completed(49900)]);

    let summary = w.once();

    assert_eq!(summary.get(Outcome::Confirmed), 1, "{summary}");
    assert_eq!(w.status("ORD-PAID"), ("confirmed".into(), "paid".into()));
    assert_eq!((w.stock("tee"), w.stock("mug")), (8, 4));
    let h = w.history("ORD-PAID");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].get_str("from").unwrap(), "draft");
    assert_eq!(h[0].get_str("to").unwrap(), "confirmed");
    assert_eq!(h[0].get_str("by").unwrap(), "reconciler");
    assert_eq!(h[0].get_str("code").unwrap(), "PAYMENT_SUCCESS");
    assert!(
        h[0].get_str("transactionId").is_ok(),
        "PhonePe's transaction id is kept: {h:?}"
    );
    let r = w.order("ORD-PAID");
    let rec = r.get_document("reconciliation").unwrap();
    assert!(rec.get("leaseOwner").is_none(), "lease released: {rec:?}");
}

#[test]
fn paid_with_wrong_amount_or_merchant_goes_to_review_and_deducts_nothing() {
    let w = World::new("mismatch");
    w.insert_product("tee", 10);
    w.insert_order("ORD-AMT", 49900, OLD, &[("tee", 1, None)]);
    w.insert_order("ORD-MER", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-AMT", vec![Answer::completed(100)]);
    w.sim
        .script("ORD-MER", vec![Answer::completed(49900).merchant("SOMEONEELSE")]);

    w.once();

    assert_eq!(w.status("ORD-AMT"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-AMT").as_deref(), Some("amount_mismatch"));
    assert_eq!(w.status("ORD-MER"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-MER").as_deref(), Some("merchant_mismatch"));
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn failed_payments_cancel() {
    let w = World::new("failed");
    w.insert_product("tee", 10);
    for (mtid, code) in [
        ("ORD-F1", "PAYMENT_ERROR"),
        ("ORD-F2", "PAYMENT_DECLINED"),
        ("ORD-F3", "TIMED_OUT"),
    ] {
        w.insert_order(mtid, 49900, OLD, &[("tee", 1, None)]);
        w.sim.script(mtid, vec![Answer::failed().code(code)]);
    }

    let summary = w.once();

    assert_eq!(summary.get(Outcome::Cancelled), 3, "{summary}");
    for mtid in ["ORD-F1", "ORD-F2", "ORD-F3"] {
        assert_eq!(w.status(mtid), ("cancelled".into(), "failed".into()), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("payment_failed"));
    }
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn young_pending_is_rescheduled_and_old_pending_or_not_found_cancelled() {
    let w = World::new("pending");
    w.insert_product("tee", 10);
    w.insert_order("ORD-YOUNG", 49900, OLD, &[("tee", 1, None)]);
    w.insert_order("ORD-YOUNG-NF", 49900, OLD, &[("tee", 1, None)]);
    w.insert_order("ORD-OLD", 49900, ANCIENT, &[("tee", 1, None)]);
    w.insert_order("ORD-OLD-NF", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim.script("ORD-YOUNG", vec![Answer::pending()]);
    w.sim.script("ORD-OLD", vec![Answer::pending()]);
    // ORD-*-NF are unknown to the simulator: TRANSACTION_NOT_FOUND.

    w.once();

    for mtid in ["ORD-YOUNG", "ORD-YOUNG-NF"] {
        assert_untouched(&w, mtid);
        let rec = w.order(mtid).get_document("reconciliation").unwrap().clone();
        let next = rec.get_datetime("nextCheckAt").expect("nextCheckAt set");
        assert!(
            next.timestamp_millis() > DateTime::now().timestamp_millis() + 30_000,
            "backoff of about a minute: {rec:?}"
        );
        assert_eq!(
            rec.get_i32("attempts")
                .map(i64::from)
                .or_else(|_| rec.get_i64("attempts"))
                .unwrap(),
            1
        );
    }
    assert_eq!(w.status("ORD-OLD"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("ORD-OLD").as_deref(), Some("pending_timeout"));
    assert_eq!(w.status("ORD-OLD-NF"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("ORD-OLD-NF").as_deref(), Some("not_found"));

    // A second pass right away does not call PhonePe again for the rescheduled ones.
    let before = w.sim.calls().len();
    w.once();
    assert_eq!(
        w.sim.calls().len(),
        before,
        "rescheduled orders wait for their nextCheckAt"
    );
}

#[test]
fn young_and_settled_orders_are_left_alone_and_not_sent_to_phonepe() {
    let w = World::new("left_alone");
    w.insert_product("tee", 10);
    w.insert_order("ORD-FRESH", 49900, 60, &[("tee", 1, None)]); // inside the lookback
    for (mtid, status, pay) in [
        ("ORD-DONE", "confirmed", "paid"),
        ("ORD-GONE", "cancelled", "failed"),
        ("ORD-HUMAN", "needs_review", "paid"),
    ] {
        let id = w.insert_order(mtid, 49900, OLD, &[("tee", 1, None)]);
        w.update_order(
            doc! { "_id": id },
            doc! { "$set": { "status": status, "paymentStatus": pay } },
        );
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    }
    w.sim.script("ORD-FRESH", vec![Answer::completed(49900)]);

    let summary = w.once();

    assert_eq!(summary.total(), 0, "{summary}");
    assert!(w.sim.calls().is_empty(), "no PhonePe call: {:?}", w.sim.calls());
    assert_untouched(&w, "ORD-FRESH");
    assert_eq!(w.status("ORD-DONE").0, "confirmed");
    assert_eq!(w.status("ORD-GONE").0, "cancelled");
    assert_eq!(w.status("ORD-HUMAN").0, "needs_review");
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn a_second_pass_changes_nothing() {
    let w = World::new("idempotent");
    w.insert_product("tee", 10);
    w.insert_order("ORD-A", 49900, OLD, &[("tee", 3, None)]);
    w.insert_order("ORD-B", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-A", vec![Answer::completed(49900)]);
    w.sim.script("ORD-B", vec![Answer::failed()]);

    w.once();
    let (a, b, stock, calls) = (w.order("ORD-A"), w.order("ORD-B"), w.stock("tee"), w.sim.calls().len());
    let summary = w.once();

    assert_eq!(summary.total(), 0, "{summary}");
    assert_eq!((w.order("ORD-A"), w.order("ORD-B"), w.stock("tee")), (a, b, stock));
    assert_eq!(w.sim.calls().len(), calls);
    assert_eq!(stock, 7);
}

#[test]
fn an_invalid_order_document_is_parked_with_the_field_named() {
    let w = World::new("invalid");
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - OLD * 1000);
    w.insert_raw(doc! {
        "merchantTransactionId": "ORD-BAD", "status": "draft", "paymentStatus": "pending",
        "amount": 499.5, "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
    });

    w.once();

    assert_eq!(w.status("ORD-BAD"), ("needs_review".into(), "pending".into()));
    assert_eq!(w.reason("ORD-BAD").as_deref(), Some("invalid_order"));
    let h = w.history("ORD-BAD");
    assert!(h[0].get_str("code").unwrap().contains(&w.schema.orders.amount), "{h:?}");
    assert!(
        w.sim.calls().is_empty(),
        "an order we cannot read is never checked or confirmed"
    );
}

#[test]
fn a_timed_out_order_paid_later_goes_to_review_not_left_cancelled() {
    let w = World::new("late_payment");
    w.insert_product("tee", 10);
    w.insert_order("ORD-LATE", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim
        .script("ORD-LATE", vec![Answer::pending(), Answer::completed(49900)]);
    w.once();
    assert_eq!(w.reason("ORD-LATE").as_deref(), Some("pending_timeout"));

    // The late-payment re-check is due (as it would be after LATE_PAYMENT_RECHECK).
    w.update_order(
        doc! { "merchantTransactionId": "ORD-LATE" },
        doc! { "$set": { "reconciliation.nextCheckAt": DateTime::now() } },
    );
    w.once();

    assert_eq!(w.status("ORD-LATE"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-LATE").as_deref(), Some("paid_after_cancel"));
    assert_eq!(w.paid_amount("ORD-LATE"), Some(49900), "what PhonePe reported paid");
    assert_eq!(w.stock("tee"), 10, "a person decides: nothing deducted automatically");
    let h = w.history("ORD-LATE");
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[1].get_str("from").unwrap(), h[1].get_str("to").unwrap()),
        ("cancelled", "needs_review")
    );
}
