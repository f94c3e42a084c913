//! The scanner wakes when an order becomes due (its lookback passes, its `nextCheckAt` comes),
//! not at the next interval: against the real binary with a 60 s interval, each order's first
//! status call comes within a few seconds of its due moment, and never before it.

use std::time::Duration;

use crate::support::{eventually, Running, World};
use draft_reconciler::sim::Answer;
use mongodb::bson::{doc, DateTime};

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
