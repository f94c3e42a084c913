//! The reconciler end to end: real SecantusDB over the wire, real HTTP to phonepe-sim, the real
//! actor system (`once` mode). One test per row of the decision table, plus stock atomicity,
//! per-size stock, what is left alone, and idempotence of a second pass; split by subject into
//! the modules below, which share the helpers here.

mod concurrency;
mod decisions;
mod errors;
mod schema;
mod stock;
mod sweep;

use crate::support::World;
use mongodb::bson::DateTime;

const OLD: i64 = 600; // 10 minutes: past the 5-minute lookback, inside the 30-minute pending timeout
const ANCIENT: i64 = 7200; // 2 hours: past the pending timeout

fn assert_untouched(w: &World, mtid: &str) {
    assert_eq!(
        w.status(mtid),
        ("draft".into(), "pending".into()),
        "{mtid} must stay a pending draft"
    );
    assert!(w.history(mtid).is_empty(), "{mtid} must have no history entry");
}

/// Seconds from now until the order is due again.
fn due_in_secs(w: &World, mtid: &str) -> f64 {
    let rec = w.order(mtid).get_document("reconciliation").unwrap().clone();
    let next = rec
        .get_datetime("nextCheckAt")
        .unwrap_or_else(|_| panic!("{mtid} has no nextCheckAt: {rec:?}"));
    (next.timestamp_millis() - DateTime::now().timestamp_millis()) as f64 / 1000.0
}

/// `reconciliation.<field>` as a number (0 when absent).
fn counter(w: &World, mtid: &str, field: &str) -> i64 {
    let o = w.order(mtid);
    let rec = o.get_document("reconciliation").unwrap();
    crate::support::int_or_zero(rec.get(field))
}

/// `expected` plus the committer's jitter (up to 20 %), with slack for a slow machine; a delay
/// from another row of the backoff schedule is outside.
fn assert_due_in(w: &World, mtid: &str, expected: u64) {
    let due = due_in_secs(w, mtid);
    let (low, high) = (expected as f64 - 8.0, expected as f64 * 1.2 + 2.0);
    assert!(
        (low..=high).contains(&due),
        "{mtid} due in {due:.1} s, expected {expected} s + jitter"
    );
}
