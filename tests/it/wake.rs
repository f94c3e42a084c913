//! The scanner wakes when an order becomes due (its lookback passes, its `nextCheckAt` comes),
//! not at the next interval: against the real binary with a 60 s interval, each order's first
//! status call comes within a few seconds of its due moment, and never before it.

use std::time::Duration;

use crate::support::{eventually, Running, World};
use mongodb::bson::{doc, DateTime};
use phonepe_sim::Answer;

const LOOKBACK_SECS: i64 = 5;
/// Twice the 3 s target: the first call comes no later than this after the due moment.
const LATE_BOUND_MS: u64 = 6_000;

#[test]
fn each_order_is_asked_about_when_it_becomes_due_not_at_the_next_interval() {
    let w = World::new("wake_at_due");
    w.insert_product("tee", 100);
    let now = DateTime::now().timestamp_millis();
    // Drafts inside the lookback, due 12 s and 30 s from now; an old draft rescheduled to 21 s:
    // each due moment more than `LATE_BOUND_MS` after the one before, so each kind must wake
    // the scanner itself.
    let mut due = Vec::new();
    for (mtid, due_in) in [("WAKE-1", 12), ("WAKE-2", 30)] {
        w.insert_order(mtid, 5_000, LOOKBACK_SECS - due_in, &[("tee", 1, None)]);
        due.push((mtid, now + due_in * 1000));
    }
    w.insert_order("WAKE-R", 5_000, 600, &[("tee", 1, None)]);
    let next_check = DateTime::from_millis(now + 21_000);
    w.update_order(
        doc! { "merchantTransactionId": "WAKE-R" },
        doc! { "$set": { "reconciliation.nextCheckAt": next_check } },
    );
    due.push(("WAKE-R", next_check.timestamp_millis()));
    for (mtid, _) in &due {
        w.sim.script(mtid, vec![Answer::completed(5_000)]);
    }

    let _service = Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_JOB__INTERVAL_SECS", "60")
            .env("RECONCILER_JOB__LOOKBACK_SECS", LOOKBACK_SECS.to_string())
            .spawn()
            .expect("start draft-reconciler"),
    );
    // Well before the first interval tick after the start scan (60 s).
    eventually(Duration::from_secs(45), "every order confirmed", || {
        due.iter().all(|(mtid, _)| w.status(mtid).0 == "confirmed")
    });
    let calls = w.sim.calls();
    for (mtid, due_ms) in &due {
        let first = calls
            .iter()
            .filter(|c| c.merchant_transaction_id == *mtid)
            .map(|c| c.at_ms)
            .min()
            .expect("a status call");
        let due_ms = u64::try_from(*due_ms).expect("after 1970");
        assert!(first >= due_ms, "{mtid}: asked {} ms before it was due", due_ms - first);
        assert!(
            first - due_ms <= LATE_BOUND_MS,
            "{mtid}: asked {} ms after it became due",
            first - due_ms
        );
    }
    assert_eq!(w.stock("tee"), 97, "each order deducted once");
}

/// Operations the server counted on this world's `orders` collection so far (`top`: per
/// collection, so other tests on the same server do not add to it).
fn orders_ops(w: &World) -> i64 {
    let top = w
        .block(w.db.client().database("admin").run_command(doc! { "top": 1 }))
        .expect("top");
    let ns = format!("{}.{}", w.db.name(), w.schema.orders.collection);
    let totals = top.get_document("totals").expect("top totals");
    let total = totals.get_document(&ns).and_then(|c| c.get_document("total"));
    total.map_or(0, |t| crate::support::int(t.get("count")))
}

/// The most operations on `orders` one `once` pass over a young backlog with nothing due may
/// run: its start-up `createIndexes` and (when it lands before the process returns) the
/// shutdown's lease release, then the scan itself: the recovery pass (a `findAndModify` of
/// interrupted commits, a `find` of markers to sweep), the sweep's two `find`s, the three gauge
/// counts and `next_due`'s two find-ones (9). The candidate fetch (two `find`s) is skipped
/// because the counts found nothing due: before the wake an idle scan ran that fetch and no
/// `next_due`, so an idle minute costs the database what it did before. Without the skip the
/// pass runs 11 or 12.
const IDLE_PASS_ORDERS_OPS: i64 = 10;

#[test]
fn an_idle_scan_asks_the_database_no_more_than_before_the_wake() {
    let w = World::new("wake_idle_cost");
    w.insert_product("tee", 100);
    for i in 0..50 {
        w.insert_order(&format!("YOUNG-{i}"), 5_000, 10, &[("tee", 1, None)]);
    }
    w.once(); // start-up work (indexes) out of the way
    let before = orders_ops(&w);
    let summary = w.once();
    let spent = orders_ops(&w) - before;
    assert_eq!(summary.total(), 0, "nothing is due yet: {summary}");
    assert!(
        spent <= IDLE_PASS_ORDERS_OPS,
        "an idle pass ran {spent} operations on orders, more than {IDLE_PASS_ORDERS_OPS}"
    );
    assert_eq!(w.all_orders().len(), 50, "every draft is still there");
    assert!(w.all_orders().iter().all(|o| o.get_str("status") == Ok("draft")));
}
