//! `review resolve <id> cancel` asks PhonePe first (one call within the budget), like `fulfil`
//! and `refund`: a completed payment to this merchant refuses it (and is recorded); a payment to
//! another merchant (`merchant_mismatch`), a failed one, none, or one pending past PhonePe's
//! expiry let it close the order, saying so in the history; PhonePe unreachable or still
//! pending: nothing written.

use mongodb::bson::{doc, DateTime};
use phonepe_sim::Answer;

use super::{code, review, text};
use crate::support::World;

/// A parked, unpaid order (`phonepe_unreadable`), `age` seconds old.
fn parked_unpaid(w: &World, mtid: &str, age: i64) {
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - age * 1000);
    w.insert_raw(doc! {
        "merchantTransactionId": mtid, "status": "needs_review", "paymentStatus": "pending",
        "amount": 10_000_i64, "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
        "updatedAt": created, "history": [], "reconciliation": { "reason": "phonepe_unreadable" },
    });
}

#[test]
fn cancel_of_an_order_phonepe_reports_paid_is_refused_and_the_payment_recorded() {
    let w = World::new("cancel_paid");
    w.insert_product("tee", 5);
    parked_unpaid(&w, "CN-PAID", 3_600);
    w.sim.script("CN-PAID", vec![Answer::completed(10_000)]);
    let out = review(&w, &["review", "resolve", "CN-PAID", "cancel"], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("completed payment of 10000 paise"),
        "says what PhonePe reported: {}",
        text(&out)
    );
    assert_eq!(w.calls_for("CN-PAID"), 1, "PhonePe was asked, once");
    assert_eq!(w.status("CN-PAID"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.paid_amount("CN-PAID"), Some(10_000));
    assert_eq!(w.reason("CN-PAID").as_deref(), Some("phonepe_unreadable"));
    let h = w.history("CN-PAID");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0].get_str("by").ok(), h[0].get_str("reason").ok()),
        (Some("operator"), Some("payment_recorded"))
    );
    assert_eq!(w.stock("tee"), 5);
    // Now recorded as paid: refused without asking again.
    let again = review(&w, &["review", "resolve", "CN-PAID", "cancel"], &[]);
    assert_eq!(code(&again), 1, "{}", text(&again));
    assert_eq!(w.calls_for("CN-PAID"), 1);
}

#[test]
fn a_merchant_mismatch_is_cancelled_and_the_history_says_who_was_paid() {
    let w = World::new("cancel_mismatch");
    w.insert_product("tee", 5);
    w.insert_order("CN-MM", 10_000, 600, &[("tee", 1, None)]);
    w.sim
        .script("CN-MM", vec![Answer::completed(10_000).merchant("SOMEONEELSE")]);
    w.once();
    assert_eq!(w.reason("CN-MM").as_deref(), Some("merchant_mismatch"));
    let out = review(
        &w,
        &["review", "resolve", "CN-MM", "cancel", "--note", "not our money"],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.status("CN-MM").0, "cancelled");
    assert_eq!(w.reason("CN-MM").as_deref(), Some("operator_cancelled"));
    let h = w.history("CN-MM");
    let last = h.last().expect("history");
    assert_eq!(last.get_str("note").ok(), Some("not our money"));
    assert!(
        last.get_str("detail").unwrap_or_default().contains("SOMEONEELSE"),
        "the history says who was paid: {last:?}"
    );
    assert_eq!(w.stock("tee"), 5);
}

#[test]
fn cancel_closes_what_phonepe_reports_unpaid_and_writes_nothing_otherwise() {
    let w = World::new("cancel_verified");
    w.insert_product("tee", 5);
    for (mtid, age) in [
        ("CN-FAILED", 600),
        ("CN-NONE", 600),
        ("CN-EXPIRED", 3_600),
        ("CN-YOUNG", 60),
        ("CN-DOWN", 600),
    ] {
        parked_unpaid(&w, mtid, age);
    }
    w.sim.script("CN-FAILED", vec![Answer::failed()]);
    w.sim.script("CN-EXPIRED", vec![Answer::pending()]);
    w.sim.script("CN-YOUNG", vec![Answer::pending()]);
    w.sim.script("CN-DOWN", vec![Answer::http_error(503)]);
    for mtid in ["CN-FAILED", "CN-NONE", "CN-EXPIRED"] {
        let out = review(&w, &["review", "resolve", mtid, "cancel"], &[]);
        assert_eq!(code(&out), 0, "{mtid}: {}", text(&out));
        assert_eq!(w.status(mtid), ("cancelled".into(), "pending".into()), "{mtid}");
        assert_eq!(w.calls_for(mtid), 1, "{mtid}: PhonePe asked once");
    }
    for (mtid, says) in [("CN-YOUNG", "still pending"), ("CN-DOWN", "no usable answer")] {
        let before = w.order(mtid);
        let out = review(&w, &["review", "resolve", mtid, "cancel"], &[]);
        assert_eq!(code(&out), 1, "{mtid}: {}", text(&out));
        assert!(text(&out).contains(says), "{mtid}: {}", text(&out));
        assert_eq!(w.order(mtid), before, "{mtid}: nothing written");
    }
}

/// A paid order whose refund PhonePe refused or failed: cancelled only with a note saying how
/// the money went back.
#[test]
fn a_paid_order_whose_refund_failed_is_cancelled_only_with_a_note() {
    let w = World::new("cancel_refund_failed");
    super::parked_paid(&w, "CN-RF", 0);
    w.sim
        .state()
        .refuse_refund(&super::rid("CN-RF", 1), "REVERSAL_WINDOW_EXCEEDED");
    let refused = review(&w, &["review", "resolve", "CN-RF", "refund"], &[]);
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert_eq!(w.reason("CN-RF").as_deref(), Some("refund_failed"));
    let bare = review(&w, &["review", "resolve", "CN-RF", "cancel"], &[]);
    assert_eq!(code(&bare), 1, "{}", text(&bare));
    assert!(text(&bare).contains("--note"), "{}", text(&bare));
    assert_eq!(w.status("CN-RF"), ("needs_review".into(), "paid".into()));
    let noted = review(
        &w,
        &[
            "review",
            "resolve",
            "CN-RF",
            "cancel",
            "--note",
            "refunded by bank transfer",
        ],
        &[],
    );
    assert_eq!(code(&noted), 0, "{}", text(&noted));
    assert_eq!(w.status("CN-RF"), ("cancelled".into(), "paid".into()));
    let h = w.history("CN-RF");
    let last = h.last().expect("history");
    assert_eq!(last.get_str("note").ok(), Some("refunded by bank transfer"));
    assert!(
        last.get_str("detail")
            .unwrap_or_default()
            .contains("REVERSAL_WINDOW_EXCEEDED"),
        "{last:?}"
    );
}
