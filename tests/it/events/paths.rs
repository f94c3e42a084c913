//! One event per transition, whoever made it: the reconciler (`once`, `run`), `check --apply`, the
//! webhook, `review resolve` and the refund poller each record their transition's event in the
//! same write, and it reaches `reconciler_events` at once (nothing left in the order's outbox);
//! an order that did not change gets none, nor does `selftest`'s throwaway order. Then `run`
//! delivers each exactly once, signed (verified by the receiver with `standardwebhooks`), with
//! the body the transition froze.

use mongodb::bson::{doc, DateTime};
use phonepe_sim::{deliver, Answer, WebhookVersion};

use super::*;
use crate::support::{count_orders, eventually};

/// A settled order that nobody is working on, `age` seconds old (the late-payment rows' shape).
fn parked(w: &World, mtid: &str, payment: &str, reason: &str) {
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 600_000);
    let far = DateTime::from_millis(DateTime::now().timestamp_millis() + 30 * 86_400_000);
    w.insert_raw(doc! {
        "merchantTransactionId": mtid, "status": "needs_review", "paymentStatus": payment, "amount": 10_000,
        "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created, "updatedAt": created,
        "history": [], "reconciliation": { "reason": reason, "nextCheckAt": far },
    });
}

#[test]
fn every_path_records_one_event_per_transition_and_run_delivers_each_once() {
    let w = World::new("events_paths");
    w.insert_product("tee", 100);
    w.insert_product("rare", 0);
    // The reconciler (`once`): paid, failed, the wrong amount, short of stock, still pending.
    w.insert_order("EV-PAID", 49_900, 600, &[("tee", 1, None)]);
    w.sim.script("EV-PAID", vec![Answer::completed(49_900)]);
    w.insert_order("EV-FAIL", 10_000, 600, &[("tee", 1, None)]);
    w.sim
        .script("EV-FAIL", vec![Answer::failed(), Answer::completed(10_000)]);
    w.insert_order("EV-SHORT", 10_000, 600, &[("tee", 1, None)]);
    w.sim.script("EV-SHORT", vec![Answer::completed(9_000)]);
    w.insert_order("EV-STOCK", 20_000, 600, &[("rare", 1, None)]);
    w.sim.script("EV-STOCK", vec![Answer::completed(20_000)]);
    w.insert_order("EV-PEND", 10_000, 600, &[("tee", 1, None)]);
    w.sim.script("EV-PEND", vec![Answer::pending()]);
    let summary = w.once();
    assert_eq!(summary.total(), 5, "{summary}");
    for (mtid, ty) in [
        ("EV-PAID", "order.confirmed"),
        ("EV-FAIL", "order.cancelled"),
        ("EV-SHORT", "order.needs_review"),
        ("EV-STOCK", "order.needs_review"),
    ] {
        assert_eq!(types(&w, mtid), [ty], "{mtid}");
        assert_eq!(outbox(&w, mtid), 0, "{mtid}: moved by the process that made it");
    }
    assert_eq!(
        types(&w, "EV-PEND"),
        Vec::<String>::new(),
        "rescheduled: nothing changed"
    );
    assert_eq!(w.history("EV-PEND").len(), 0);

    // Nothing changes, nothing is recorded: a second pass, `check --apply` on a settled order.
    w.once();
    let out = command(&w, &["check", "EV-PAID", "--apply"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(events(&w, None).len(), 4, "no event for an order that did not change");

    // `check --apply`: a draft confirmed, and a payment recorded on the cancelled order.
    w.insert_order("EV-CHECK", 10_000, 10, &[("tee", 2, None)]);
    w.sim.script("EV-CHECK", vec![Answer::completed(10_000)]);
    for mtid in ["EV-CHECK", "EV-FAIL"] {
        let out = command(&w, &["check", mtid, "--apply"], &[]);
        assert_eq!(out.status.code(), Some(0), "{mtid}: {}", text(&out));
    }
    assert_eq!(types(&w, "EV-CHECK"), ["order.confirmed"]);
    assert_eq!(types(&w, "EV-FAIL"), ["order.cancelled", "order.payment_recorded"]);

    // `review resolve`: a refund asked (PhonePe takes it, not final yet), an unpaid order closed.
    let out = command(&w, &["review", "resolve", "EV-STOCK", "refund"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    parked(&w, "EV-UNPAID", "pending", "phonepe_rejected");
    w.sim.script("EV-UNPAID", vec![Answer::failed()]);
    let out = command(
        &w,
        &["review", "resolve", "EV-UNPAID", "cancel", "--note", "never paid"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(types(&w, "EV-STOCK"), ["order.needs_review", "order.refund_requested"]);
    assert_eq!(types(&w, "EV-UNPAID"), ["order.cancelled"]);

    // `selftest`'s throwaway order emits nothing.
    let before = events(&w, None).len();
    let out = command(&w, &["selftest"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(events(&w, None).len(), before, "selftest emitted an event");

    // `run`: the webhook confirms a draft inside the lookback, the refund poller finishes the
    // refund; everything is delivered.
    let r = Receiver::start();
    w.insert_order("EV-HOOK", 30_000, 10, &[("tee", 1, None)]);
    let hook = free_port();
    let mut env = sending_to(&r);
    env.extend(webhook_env(hook));
    let _run = service(&w, &env);
    wait_for_port(hook, WAIT);
    let callback = w
        .sim
        .state()
        .webhook("EV-HOOK", WebhookVersion::V1, Some(Answer::completed(30_000)))
        .expect("a signed callback");
    let url = format!("http://127.0.0.1:{hook}/webhooks/phonepe");
    eventually(WAIT, "the callback accepted", || {
        w.block(deliver(&url, &callback)) == Ok(200)
    });
    eventually(WAIT, "the refund finished by the poller", || {
        w.status("EV-STOCK").0 == "refunded"
    });
    all_delivered(&w, 10);

    let expect = [
        ("EV-PAID", vec![("order.confirmed", "reconciler")]),
        (
            "EV-FAIL",
            vec![
                ("order.cancelled", "reconciler"),
                ("order.payment_recorded", "reconciler"),
            ],
        ),
        ("EV-SHORT", vec![("order.needs_review", "reconciler")]),
        (
            "EV-STOCK",
            vec![
                ("order.needs_review", "reconciler"),
                ("order.refund_requested", "operator"),
                ("order.refunded", "reconciler"),
            ],
        ),
        ("EV-CHECK", vec![("order.confirmed", "reconciler")]),
        ("EV-UNPAID", vec![("order.cancelled", "operator")]),
        ("EV-HOOK", vec![("order.confirmed", "webhook")]),
    ];
    let accepted = r.accepted();
    let all = events(&w, None);
    assert_eq!(all.len(), 10, "one event per transition");
    assert_eq!(accepted.len(), all.len(), "each delivered exactly once: {accepted:?}");
    for (mtid, want) in expect {
        let stored = events(&w, Some(mtid));
        let got: Vec<(String, String)> = stored
            .iter()
            .map(|e| (state(e).to_string(), data(e).get_str("by").unwrap_or("?").to_string()))
            .collect();
        let want_by: Vec<(String, String)> = want
            .iter()
            .map(|(_, by)| ("delivered".into(), by.to_string()))
            .collect();
        assert_eq!(got, want_by, "{mtid}");
        let delivered: Vec<&str> = accepted.iter().filter(|g| g.mtid() == mtid).map(Got::ty).collect();
        let want_types: Vec<&str> = want.iter().map(|(t, _)| *t).collect();
        assert_eq!(delivered, want_types, "{mtid}: in order");
        for (e, g) in stored.iter().zip(accepted.iter().filter(|g| g.mtid() == mtid)) {
            assert_eq!(g.id, e.get_str("_id").unwrap(), "webhook-id is the event id");
            assert!(g.id.starts_with("evt_") && g.id.len() == 28, "{}", g.id);
        }
    }
    // The body: what the transition decided, the order's id and amount.
    let paid = accepted.iter().find(|g| g.mtid() == "EV-PAID").expect("EV-PAID");
    let d = &paid.body["data"];
    assert_eq!(
        (
            d["status"].as_str(),
            d["paymentStatus"].as_str(),
            d["amount"].as_i64(),
            d["paidAmount"].as_i64()
        ),
        (Some("confirmed"), Some("paid"), Some(49_900), Some(49_900)),
        "{d}"
    );
    assert_eq!(
        (d["reason"].as_str(), d["by"].as_str()),
        (Some("paid"), Some("reconciler"))
    );
    assert!(
        paid.body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{}",
        paid.body
    );
    assert_eq!(d["at"], paid.body["timestamp"]);
    let short = accepted.iter().find(|g| g.mtid() == "EV-SHORT").expect("EV-SHORT");
    let d = &short.body["data"];
    assert_eq!(
        (d["reason"].as_str(), d["amount"].as_i64(), d["paidAmount"].as_i64()),
        (Some("amount_mismatch"), Some(10_000), Some(9_000))
    );
    let refunded = accepted.iter().find(|g| g.ty() == "order.refunded").expect("refunded");
    let refund = &refunded.body["data"]["refund"];
    assert_eq!(
        (refund["amount"].as_i64(), refund["code"].as_str()),
        (Some(20_000), Some("COMPLETED")),
        "{refund}"
    );
    assert!(refund["id"].as_str().is_some_and(|i| i.starts_with("RF")), "{refund}");
    let unpaid = accepted.iter().find(|g| g.mtid() == "EV-UNPAID").expect("EV-UNPAID");
    assert_eq!(
        unpaid.body["data"]["paymentStatus"].as_str(),
        Some("pending"),
        "left as the shop wrote it, read from the order"
    );
    assert!(!unpaid.body.to_string().contains("never paid"), "notes are not sent");
    assert_eq!(
        count_orders(&w, doc! { "reconciliation.outbox.0": { "$exists": true } }),
        0
    );
}

/// An outbox entry this version cannot read (no id, an unknown type: another version's, or a
/// hand edit) used to stop the relay at it, stranding the order's real event behind it forever.
/// It is set aside in `reconciliation.outboxUnreadable` for a person; the real event moves on.
#[test]
fn an_unreadable_outbox_entry_is_set_aside_and_the_orders_event_still_moves() {
    let w = World::new("events_unreadable_outbox");
    w.insert_product("tee", 5);
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 600_000);
    w.insert_raw(doc! {
        "merchantTransactionId": "EV-BAD", "status": "draft", "paymentStatus": "pending",
        "amount": 10_000, "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
        "updatedAt": created, "history": [],
        "reconciliation": { "outbox": [{ "_id": "evt_bogus", "type": "order.shipped" }, 7] },
    });
    w.sim.script("EV-BAD", vec![Answer::completed(10_000)]);
    w.once();
    assert_eq!(w.status("EV-BAD").0, "confirmed");
    assert_eq!(types(&w, "EV-BAD"), ["order.confirmed"], "the real event moved");
    let rec = w
        .order("EV-BAD")
        .get_document("reconciliation")
        .cloned()
        .unwrap_or_default();
    let left = rec.get_array("outbox").map(Vec::len).unwrap_or(0);
    assert_eq!(left, 0, "nothing left in the outbox: {rec:?}");
    assert_eq!(
        rec.get_array("outboxUnreadable").map(Vec::len).ok(),
        Some(2),
        "both unreadable entries set aside: {rec:?}"
    );
}
