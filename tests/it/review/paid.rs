//! What PhonePe reported paid, recorded when an order is parked (`reconciliation.paidAmount`)
//! and shown by `review list` / `show`; and one PhonePe call per due refund poll however many
//! instances poll at once.

use std::time::Duration;

use draft_reconciler::refund::{poll_due, Refunder};
use draft_reconciler::store::By;
use mongodb::bson::{doc, Bson, DateTime};
use phonepe_sim::{Answer, RefundAnswer};
use serde_json::Value;

use super::{code, gateway, poll, refund_doc, review, rid, text, WAIT};
use crate::support::{eventually, World};

/// `reconciliation.paidAmount` as stored (with its BSON type), `None` when absent.
fn paid_field(w: &World, mtid: &str) -> Option<Bson> {
    let o = w.order(mtid);
    o.get_document("reconciliation").ok()?.get("paidAmount").cloned()
}

/// `review list --json`, one object per merchant transaction id.
fn listed(w: &World) -> Vec<Value> {
    let out = review(w, &["review", "list", "--json"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn line<'a>(lines: &'a [Value], mtid: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["merchantTransactionId"] == mtid)
        .unwrap_or_else(|| panic!("{mtid} not listed: {lines:?}"))
}

#[test]
fn list_shows_what_phonepe_reported_paid_for_each_parked_order() {
    let w = World::new("review_paid_list");
    w.insert_product("tee", 1);
    // PhonePe reports 99900 paid for an order of 100000.
    w.insert_order("RV-PA", 100_000, 600, &[("tee", 1, None)]);
    w.sim.script("RV-PA", vec![Answer::completed(99_900)]);
    // Paid in full, but the stock is short.
    w.insert_order("RV-PS", 49_900, 600, &[("tee", 2, None)]);
    w.sim.script("RV-PS", vec![Answer::completed(49_900)]);
    // Another merchant's payment: not our money, nothing recorded.
    w.insert_order("RV-PM", 49_900, 600, &[("tee", 1, None)]);
    w.sim
        .script("RV-PM", vec![Answer::completed(49_900).merchant("SOMEONEELSE")]);
    // A document that cannot be reconciled (never asked of PhonePe).
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 600_000);
    w.insert_raw(doc! {
        "merchantTransactionId": "RV-PI", "status": "draft", "paymentStatus": "pending",
        "amount": "lots", "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
    });
    w.once();
    let reasons = ["RV-PA", "RV-PS", "RV-PM", "RV-PI"].map(|m| w.reason(m));
    let expected = [
        "amount_mismatch",
        "insufficient_stock",
        "merchant_mismatch",
        "invalid_order",
    ];
    assert_eq!(reasons, expected.map(|r| Some(r.to_string())));

    assert_eq!(paid_field(&w, "RV-PA"), Some(Bson::Int64(99_900)));
    assert_eq!(paid_field(&w, "RV-PS"), Some(Bson::Int64(49_900)));
    assert_eq!(paid_field(&w, "RV-PM"), None, "another merchant's payment");
    assert_eq!(paid_field(&w, "RV-PI"), None, "never verified");
    let lines = listed(&w);
    let pa = line(&lines, "RV-PA");
    assert_eq!(
        (&pa["amount"], &pa["paidAmount"]),
        (&Value::from(100_000), &Value::from(99_900))
    );
    let ps = line(&lines, "RV-PS");
    assert_eq!(
        (&ps["amount"], &ps["paidAmount"]),
        (&Value::from(49_900), &Value::from(49_900))
    );
    assert_eq!(line(&lines, "RV-PM")["paidAmount"], Value::Null);
    assert_eq!(line(&lines, "RV-PI")["paidAmount"], Value::Null);

    let table = review(&w, &["review", "list"], &[]);
    let out = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(out.lines().next().is_some_and(|h| h.contains("PAID")), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("RV-PA") && l.contains("99900")),
        "{out}"
    );
    let show = review(&w, &["review", "show", "RV-PA"], &[]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("99900"),
        "{}",
        text(&show)
    );

    // A refund PhonePe fails parks the order again: what was paid stays recorded.
    w.sim
        .state()
        .script_refund(&rid("RV-PS", 1), vec![RefundAnswer::Failed]);
    let r = review(&w, &["review", "resolve", "RV-PS", "refund"], &[]);
    assert_eq!(code(&r), 0, "{}", text(&r));
    eventually(WAIT, "PhonePe's FAILED is recorded", || {
        poll(&w, &[]);
        w.reason("RV-PS").as_deref() == Some("refund_failed")
    });
    assert_eq!(w.status("RV-PS"), ("needs_review".into(), "paid".into()));
    assert_eq!(paid_field(&w, "RV-PS"), Some(Bson::Int64(49_900)));
}

/// The webhook and `check --apply` park through the same write: both record what was paid.
#[test]
fn check_apply_records_what_phonepe_reported_paid() {
    let w = World::new("review_paid_check");
    w.insert_product("tee", 0);
    w.insert_order("RV-PC", 100_000, 600, &[("tee", 1, None)]);
    w.sim.script("RV-PC", vec![Answer::completed(99_900)]);
    w.insert_order("RV-PD", 49_900, 600, &[("tee", 1, None)]);
    w.sim.script("RV-PD", vec![Answer::completed(49_900)]);
    for mtid in ["RV-PC", "RV-PD"] {
        let out = review(&w, &["check", mtid, "--apply"], &[]);
        assert_eq!(code(&out), 0, "{}", text(&out));
    }
    assert_eq!(w.reason("RV-PC").as_deref(), Some("amount_mismatch"));
    assert_eq!(paid_field(&w, "RV-PC"), Some(Bson::Int64(99_900)));
    assert_eq!(w.reason("RV-PD").as_deref(), Some("insufficient_stock"));
    assert_eq!(paid_field(&w, "RV-PD"), Some(Bson::Int64(49_900)));
}

/// Two instances' refund pollers find the same due refund at once: the poll is claimed in the
/// database first, so PhonePe is asked once per due moment, and the refund completes once.
#[test]
fn two_pollers_at_once_ask_phonepe_once_per_due_refund() {
    let w = World::new("review_poll_claim");
    super::parked_paid(&w, "RV-PP", 0);
    w.sim
        .state()
        .script_refund(&rid("RV-PP", 1), vec![RefundAnswer::Pending]);
    let r = review(&w, &["review", "resolve", "RV-PP", "refund"], &[]);
    assert_eq!(code(&r), 0, "{}", text(&r));
    assert_eq!(refund_doc(&w, "RV-PP").get_bool("accepted").ok(), Some(true));
    let asked = w.sim.state().refund_status_calls(&rid("RV-PP", 1));

    let due_now = || {
        let f = doc! { "reconciliation.refund.id": &rid("RV-PP", 1) };
        let u = doc! { "$set": { "reconciliation.refund.nextPollAt": DateTime::now() } };
        w.block(w.orders().update_one(f, u)).expect("make the refund due");
    };
    due_now();
    two_passes_at_once(&w);
    assert_eq!(
        w.sim.state().refund_status_calls(&rid("RV-PP", 1)),
        asked + 1,
        "one status call for one due moment"
    );
    assert_eq!(w.status("RV-PP"), ("needs_review".into(), "refund_pending".into()));

    w.sim
        .state()
        .script_refund(&rid("RV-PP", 1), vec![RefundAnswer::Completed]);
    due_now();
    two_passes_at_once(&w);
    assert_eq!(w.sim.state().refund_status_calls(&rid("RV-PP", 1)), asked + 2);
    assert_eq!(w.status("RV-PP"), ("refunded".into(), "refunded".into()));
    let finished = w
        .history("RV-PP")
        .iter()
        .filter(|h| h.get_str("to").ok() == Some("refunded"))
        .count();
    assert_eq!(finished, 1, "the refund completes once");
    assert_eq!(w.sim.state().refunds_created(&rid("RV-PP", 1)), 1);
    // Nothing due any more: a later pass asks nothing.
    poll(&w, &[]);
    assert_eq!(w.sim.state().refund_status_calls(&rid("RV-PP", 1)), asked + 2);
}

/// Two refund pollers, each with its own client and PhonePe budget (two instances), one pass
/// each, run concurrently.
fn two_passes_at_once(w: &World) {
    let (a, b) = (w.store(), w.store());
    w.block(async {
        let gateways = [0, 1].map(|_| gateway(w));
        let refunder = |i: usize, store| Refunder {
            store,
            phonepe: &gateways[i],
            poll_interval: Duration::from_secs(60),
            by: By::Reconciler,
            operator: None,
        };
        let (ra, rb) = (refunder(0, &a), refunder(1, &b));
        let (x, y) = tokio::join!(poll_due(&ra, &[]), poll_due(&rb, &[]));
        x.expect("poll a");
        y.expect("poll b");
    });
}
