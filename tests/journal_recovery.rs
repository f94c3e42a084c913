//! The journal commit strategy stopped between each pair of its steps (a fault point panics the
//! commit there, as a crash would), then recovered from exactly that state: every order ends
//! settled once, stock exact, no markers left — and recovering again changes nothing.
#![cfg(feature = "fault-injection")]

mod support;

use std::sync::Mutex;

use draft_reconciler::config::CommitStrategy;
use draft_reconciler::fault;
use draft_reconciler::sim::Answer;
use mongodb::bson::{doc, DateTime, Document};
use support::World;

/// Fault points are process-wide: one test at a time arms them.
static FAULTS: Mutex<()> = Mutex::new(());

fn world(test: &str) -> World {
    let mut w = World::on(support::standalone_server(), test);
    w.settings.job.commit_strategy = CommitStrategy::Auto; // journal on a standalone server
    w
}

fn markers(w: &World, product: &str) -> usize {
    w.product(product)
        .get_array("reconcilerCommits")
        .map(|a| a.len())
        .unwrap_or(0)
}

fn journal_state(w: &World, mtid: &str) -> String {
    let o = w.order(mtid);
    o.get_document("reconciliation")
        .and_then(|r| r.get_document("commit"))
        .and_then(|c| c.get_str("state"))
        .unwrap_or("-")
        .to_string()
}

/// Pretend the crashed process's lease ran out (as it would after `lease_ttl`).
fn expire_leases(w: &World) {
    w.block(w.db.collection::<Document>("orders").update_many(
        doc! {},
        doc! { "$set": { "reconciliation.leaseUntil": DateTime::from_millis(0) } },
    ))
    .unwrap();
}

/// Crash at `point` on its first hit, check the state left behind, recover, check the end.
fn crash_and_recover(point: &str, short: bool) -> World {
    let _one_at_a_time = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let w = world(&point.replace('.', "_"));
    w.insert_product("tee", 10);
    w.insert_sized_product("shirt", &[("M", 3), ("L", 3)]);
    // The second item is short when `short`: the journal must roll back.
    let shirts = if short { 4 } else { 2 };
    w.insert_order("ORD-J", 49900, 600, &[("tee", 2, None), ("shirt", shirts, Some("M"))]);
    w.sim.script("ORD-J", vec![Answer::completed(49900)]);

    fault::clear();
    fault::arm(point, "panic@1");
    w.once();
    fault::clear();
    let (status, _) = w.status("ORD-J");
    assert!(
        status == "committing" || status == "confirmed",
        "{point}: crashed mid-commit, got {status}"
    );

    expire_leases(&w);
    w.once(); // the recovery pass runs first
    let after_first = (w.order("ORD-J"), w.stock("tee"), w.stock("shirt"));
    expire_leases(&w);
    w.once();
    let after_second = (w.order("ORD-J"), w.stock("tee"), w.stock("shirt"));
    assert_eq!(
        after_first.1, after_second.1,
        "{point}: recovering again changes nothing"
    );
    assert_eq!(
        after_first.2, after_second.2,
        "{point}: recovering again changes nothing"
    );

    if short {
        assert_eq!(w.status("ORD-J"), ("needs_review".into(), "paid".into()), "{point}");
        assert_eq!(w.reason("ORD-J").as_deref(), Some("insufficient_stock"), "{point}");
        assert_eq!(
            (w.stock("tee"), w.stock("shirt"), w.size_stock("shirt", "M")),
            (10, 6, 3),
            "{point}: all compensated"
        );
        assert_eq!(journal_state(&w, "ORD-J"), "rolled_back");
    } else {
        assert_eq!(w.status("ORD-J"), ("confirmed".into(), "paid".into()), "{point}");
        assert_eq!(
            (w.stock("tee"), w.stock("shirt"), w.size_stock("shirt", "M")),
            (8, 4, 1),
            "{point}: deducted once"
        );
        assert_eq!(journal_state(&w, "ORD-J"), "confirmed");
    }
    assert_eq!(
        (markers(&w, "tee"), markers(&w, "shirt")),
        (0, 0),
        "{point}: no markers left"
    );
    let h = w.history("ORD-J");
    assert_eq!(h.len(), 1, "{point}: settled exactly once: {h:?}");
    assert_eq!(h[0].get_str("from").unwrap(), "draft");
    w
}

#[test]
fn crash_after_begin_rolls_forward() {
    crash_and_recover("journal.after_begin", false);
}

#[test]
fn crash_after_the_first_item_rolls_forward() {
    crash_and_recover("journal.after_item", false);
}

#[test]
fn crash_before_confirm_rolls_forward() {
    crash_and_recover("journal.before_confirm", false);
}

#[test]
fn crash_after_confirm_leaves_markers_that_the_sweep_removes() {
    crash_and_recover("journal.after_confirm", false);
}

#[test]
fn crash_after_the_first_item_of_a_short_order_rolls_back() {
    crash_and_recover("journal.after_item", true);
}

#[test]
fn crash_after_deciding_to_roll_back_keeps_rolling_back() {
    crash_and_recover("journal.after_rollback_mark", true);
}

#[test]
fn crash_in_the_middle_of_compensation_finishes_it() {
    crash_and_recover("journal.after_compensate", true);
}

#[test]
fn two_recoveries_at_once_change_nothing_more() {
    let _one_at_a_time = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let w = world("two_recoveries");
    w.insert_product("tee", 100);
    for i in 0..8 {
        let mtid = format!("ORD-{i}");
        w.insert_order(&mtid, 49900, 600, &[("tee", 3, None), ("tee", 2, None)]);
        w.sim.script(&mtid, vec![Answer::completed(49900)]);
    }
    fault::clear();
    fault::arm("journal.after_item", "panic@1+");
    w.once();
    fault::clear();
    expire_leases(&w);

    let settings = w.settings.clone();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let s = settings.clone();
            std::thread::spawn(move || draft_reconciler::app::once(s).expect("once"))
        })
        .collect();
    for r in racers {
        r.join().unwrap();
    }

    assert_eq!(w.stock("tee"), 100 - 8 * 5, "every order deducted exactly once");
    for i in 0..8 {
        assert_eq!(w.status(&format!("ORD-{i}")).0, "confirmed");
        assert_eq!(w.history(&format!("ORD-{i}")).len(), 1);
    }
    assert_eq!(markers(&w, "tee"), 0);
}
