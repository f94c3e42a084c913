//! What a settlement does to the orders: a payment for an order that left draft unpaid recorded
//! and parked, a draft asked about at once and settled by the reconciler, refunds settled; and
//! the gauge the running service reads from the database.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use phonepe_sim::Answer;

use super::files::write_csv;
use super::*;
use crate::support::{eventually_ok, free_port, http_get, Running};

fn reconciliation(w: &World, mtid: &str) -> Document {
    w.order(mtid)
        .get_document("reconciliation")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_settled_payment_for_a_cancelled_order_is_recorded_and_the_order_parked() {
    let w = World::new("settle_late_payment");
    order_in(&w, "SL-C", 49_900, "cancelled", "failed");
    order_in(&w, "SL-R", 49_900, "needs_review", "pending");
    w.update_order(
        doc! { "merchantTransactionId": "SL-R" },
        doc! { "$set": { "reconciliation.reason": "phonepe_rejected" } },
    );
    let d = dir();
    let file = path(&d, "late.csv");
    // PhonePe paid out another amount for the cancelled order: recorded whatever the amount.
    write_csv(&file, &[payment("SL-C", 45_000), payment("SL-R", 49_900)]);
    import(&w, &[&file], 0);

    assert_eq!(w.status("SL-C"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("SL-C").as_deref(), Some("paid_after_cancel"));
    assert_eq!(w.paid_amount("SL-C"), Some(45_000), "the row's amount");
    let h = w.history("SL-C").last().cloned().expect("a history entry");
    assert_eq!(h.get_str("by"), Ok("settlement"), "{h:?}");
    assert_eq!(h.get_str("from"), Ok("cancelled"), "{h:?}");
    assert_eq!(h.get_str("transactionId"), Ok("TSL-C"), "{h:?}");
    assert_eq!(outcome(&w, "PAYMENT", "SL-C").0, "payment_recorded");
    // Parked already: the payment is recorded, the order keeps its reason.
    assert_eq!(w.status("SL-R"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("SL-R").as_deref(), Some("phonepe_rejected"));
    assert_eq!(w.paid_amount("SL-R"), Some(49_900));
    assert_eq!(
        w.history("SL-R")
            .last()
            .and_then(|h| h.get_str("by").ok().map(str::to_string)),
        Some("settlement".into())
    );

    let listed = run(&w, &["review", "list", "--reason", "paid_after_cancel", "--json"]);
    assert_eq!(code(&listed), 0, "{}", text(&listed));
    let lines: Vec<&str> = std::str::from_utf8(&listed.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("\"SL-C\"") && lines[0].contains("\"paidAmount\":45000"),
        "{}",
        lines[0]
    );

    // Each recorded payment is the shop's event, by the settlement, moved by the importing
    // process (docs/events.md).
    let events = w.db.collection::<Document>("reconciler_events");
    let recorded = |mtid: &str| -> Vec<Document> {
        w.block(async {
            use futures_util::TryStreamExt;
            let found = events
                .find(doc! { "merchantTransactionId": mtid })
                .await
                .expect("find events");
            found.try_collect().await.expect("read events")
        })
    };
    for mtid in ["SL-C", "SL-R"] {
        let events = recorded(mtid);
        assert_eq!(events.len(), 1, "{mtid}: {events:?}");
        assert_eq!(events[0].get_str("type"), Ok("order.payment_recorded"), "{mtid}");
        let data = events[0].get_document("payload").and_then(|p| p.get_document("data"));
        assert_eq!(
            data.map(|d| d.get_str("by")),
            Ok(Ok("settlement")),
            "{mtid}: {events:?}"
        );
    }

    // Imported again: recorded once, one event.
    let history = w.history("SL-C").len();
    import(&w, &[&file], 0);
    assert_eq!(w.history("SL-C").len(), history);
    assert_eq!(w.paid_amount("SL-C"), Some(45_000));
    assert_eq!(recorded("SL-C").len(), 1, "no second event");
}

#[test]
fn a_settled_payment_for_a_draft_has_it_asked_at_once_and_the_reconciler_settles_it() {
    let w = World::new("settle_draft");
    w.insert_product("tee", 5);
    w.insert_order("SD-1", 49_900, 600, &[("tee", 1, None)]);
    // Rescheduled for an hour from now (PhonePe said PENDING a while ago).
    let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
    w.update_order(
        doc! { "merchantTransactionId": "SD-1" },
        doc! { "$set": { "reconciliation.nextCheckAt": later } },
    );
    let d = dir();
    let file = path(&d, "draft.csv");
    write_csv(&file, &[payment("SD-1", 49_900)]);
    let before = DateTime::now();
    import(&w, &[&file], 0);
    assert_eq!(
        w.status("SD-1"),
        ("draft".into(), "pending".into()),
        "not settled by the report"
    );
    let next = reconciliation(&w, "SD-1")
        .get_datetime("nextCheckAt")
        .copied()
        .expect("nextCheckAt");
    assert!(next >= before && next <= DateTime::now(), "asked about at once: {next}");
    assert_eq!(outcome(&w, "PAYMENT", "SD-1").0, "draft_woken");
    assert_eq!(w.stock("tee"), 5);

    // The reconciler's own path settles it (either commit strategy), then the next import
    // finds it confirmed and marks it settled.
    w.sim.script("SD-1", vec![Answer::completed(49_900)]);
    w.once();
    assert_eq!(w.status("SD-1"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 4);
    let empty = path(&d, "next-day.csv");
    write_csv(&empty, &[refund("RF-UNRELATED", 100)]);
    let out = import(&w, &[&empty], 0);
    assert!(text(&out).contains("matched 1"), "{}", text(&out));
    assert_eq!(outcome(&w, "PAYMENT", "SD-1").0, "matched");
    assert_eq!(
        mark(&w, "SD-1").and_then(|m| m.get_i64("net").ok()),
        Some(49_900 - 998 - 179)
    );
}

/// An order refunding (or refunded) through PhonePe under refund id `id`.
fn refunding(w: &World, mtid: &str, id: &str, amount: i64, payment: &str) {
    let status = if payment == "refunded" {
        "refunded"
    } else {
        "needs_review"
    };
    order_in(w, mtid, amount, status, payment);
    let now = DateTime::now();
    let later = DateTime::from_millis(now.timestamp_millis() + 3_600_000);
    w.update_order(
        doc! { "merchantTransactionId": mtid },
        doc! { "$set": { "reconciliation.reason": "refund_requested", "reconciliation.refund": {
            "id": id, "amount": amount, "attempt": 1_i64, "accepted": true, "requestedAt": now,
            "nextPollAt": later, "by": "operator", "posts": 1, "tries": 0,
        } } },
    );
}

#[test]
fn refund_rows_settle_the_refunds_they_pay_out() {
    let w = World::new("settle_refunds");
    refunding(&w, "SR-P", "RFSRP-1", 49_900, "refund_pending");
    refunding(&w, "SR-D", "RFSRD-1", 30_000, "refunded");
    refunding(&w, "SR-X", "RFSRX-1", 20_000, "refund_pending");
    let d = dir();
    let file = path(&d, "refunds.csv");
    let mut negative = refund("RFSRD-1", 30_000);
    negative.amount = -30_000;
    write_csv(&file, &[refund("RFSRP-1", 49_900), negative, refund("RFSRX-1", 19_000)]);
    import(&w, &[&file], 0);

    assert_eq!(w.status("SR-P"), ("refunded".into(), "refunded".into()));
    let h = w.history("SR-P").last().cloned().expect("history");
    assert_eq!(h.get_str("by"), Ok("settlement"), "{h:?}");
    let r = reconciliation(&w, "SR-P")
        .get_document("refund")
        .cloned()
        .expect("refund");
    assert_eq!(
        r.get_document("settlement")
            .and_then(|s| s.get_str("phonePeReferenceId")),
        Ok("TRFSRP-1")
    );
    assert_eq!(
        r.get("nextPollAt"),
        Some(&mongodb::bson::Bson::Null),
        "nothing left to poll"
    );

    assert_eq!(w.status("SR-D"), ("refunded".into(), "refunded".into()));
    let r = reconciliation(&w, "SR-D")
        .get_document("refund")
        .cloned()
        .expect("refund");
    assert_eq!(r.get_document("settlement").and_then(|s| s.get_i64("net")), Ok(-30_000));
    assert_eq!(outcome(&w, "REFUND", "RFSRD-1").0, "refund_settled");

    assert_eq!(
        w.status("SR-X"),
        ("needs_review".into(), "refund_pending".into()),
        "unchanged"
    );
    assert_eq!(
        outcome(&w, "REFUND", "RFSRX-1"),
        ("discrepancy".into(), Some("refund_amount_differs".into()))
    );
    assert_eq!(
        kinds(&report(&w, &[])),
        [("refund_amount_differs".to_string(), "RFSRX-1".to_string())]
    );
}

#[test]
fn the_running_service_reads_the_discrepancy_gauge_from_the_database() {
    let w = World::new("settle_gauge");
    confirmed(&w, "SG-LATE", 30_000, "2024-01-15 11:00:00");
    confirmed(&w, "SG-DIFF", 10_000, "2024-01-15 11:00:00");
    confirmed(&w, "SG-OK", 20_000, "2024-01-18 11:00:00");
    let d = dir();
    let file = path(&d, "week.csv");
    // Rows from Monday to Thursday: Monday's SG-LATE is 3 business days overdue.
    let mut thu = payment("SG-OK", 20_000);
    thu.txn = "2024-01-18 12:00:00";
    write_csv(&file, &[payment("SG-DIFF", 9_000), thu]);
    import(&w, &[&file], 0);

    let port = free_port();
    let mut c = w.reconciler_command(&["run"]);
    c.env("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{port}"));
    let _service = Running(c.spawn().expect("start the service"));
    let want = [
        "reconciler_settlement_discrepancies{kind=\"not_settled\"} 1",
        "reconciler_settlement_discrepancies{kind=\"amount_differs\"} 1",
        "reconciler_settlement_discrepancies{kind=\"unknown_order\"} 0",
    ];
    eventually_ok(Duration::from_secs(60), "the gauge counts what the import left", || {
        let last = http_get(port, "/metrics").map(|(_, body)| body).unwrap_or_default();
        if want.iter().all(|line| last.lines().any(|l| l == *line)) {
            return Ok(());
        }
        let gauge: Vec<&str> = last.lines().filter(|l| l.contains("settlement")).collect();
        Err(format!("{gauge:?}"))
    });
}
