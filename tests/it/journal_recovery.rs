//! The journal commit strategy stopped between each pair of its steps (a fault point panics the
//! commit there, as a crash would): the exact state each crash leaves is checked (status, journal
//! state, markers, stock), then recovered from: every order ends settled once, stock exact, and
//! recovering again changes nothing; once no driver can act any more, the sweep removes the
//! markers. (These tests need `--features fault-injection`: without it this file compiles to
//! nothing.) The faults are armed on the test's own thread, where its `once` runs (see
//! `src/fault.rs`): these tests run in parallel with each other and with every other suite.

use crate::support;

use crate::support::World;
use draft_reconciler::config::CommitStrategy;
use draft_reconciler::fault;
use mongodb::bson::{doc, DateTime, Document};
use phonepe_sim::Answer;

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

/// What a crash at a fault point must have left behind, before any recovery runs.
struct Left {
    status: &'static str,
    journal: &'static str,
    /// Markers on (tee, cap, shirt).
    markers: (usize, usize, usize),
    /// Stock of (tee, cap, shirt size M).
    stock: (i64, i64, i64),
}

/// Make every ended journal's markers due for the sweep (as they are `lease_ttl` + the grace
/// after the journal ended).
fn age_journals(w: &World) {
    w.block(w.db.collection::<Document>("orders").update_many(
        doc! { "reconciliation.commit.sweepAt": { "$exists": true } },
        doc! { "$set": { "reconciliation.commit.sweepAt": DateTime::from_millis(0) } },
    ))
    .unwrap();
}

/// Crash at `point` (armed with `spec`), check the exact state left behind, recover, check the
/// end. The order: tee ×2, cap ×1, shirt size M ×2 (×4 when `short`: only 3 in stock, so the
/// journal must roll back after deducting tee and cap).
fn crash_and_recover(point: &str, spec: &str, short: bool, left: Left) -> World {
    let w = world(&point.replace('.', "_"));
    w.insert_product("tee", 10);
    w.insert_product("cap", 5);
    w.insert_sized_product("shirt", &[("M", 3), ("L", 3)]);
    let shirts = if short { 4 } else { 2 };
    w.insert_order(
        "ORD-J",
        49900,
        600,
        &[("tee", 2, None), ("cap", 1, None), ("shirt", shirts, Some("M"))],
    );
    w.sim.script("ORD-J", vec![Answer::completed(49900)]);

    fault::clear();
    fault::arm(point, spec);
    w.once();
    fault::clear();
    let marks = |w: &World| (markers(w, "tee"), markers(w, "cap"), markers(w, "shirt"));
    let stock = |w: &World| (w.stock("tee"), w.stock("cap"), w.size_stock("shirt", "M"));
    assert_eq!(w.status("ORD-J").0, left.status, "{point}: status the crash left");
    assert_eq!(
        journal_state(&w, "ORD-J"),
        left.journal,
        "{point}: journal state the crash left"
    );
    assert_eq!(marks(&w), left.markers, "{point}: markers the crash left");
    assert_eq!(stock(&w), left.stock, "{point}: stock the crash left");

    expire_leases(&w);
    w.once(); // the recovery pass runs first
    let after_first = (stock(&w), w.stock("shirt"));
    expire_leases(&w);
    w.once();
    assert_eq!(
        after_first,
        (stock(&w), w.stock("shirt")),
        "{point}: recovering again changes nothing"
    );

    if short {
        assert_eq!(w.status("ORD-J"), ("needs_review".into(), "paid".into()), "{point}");
        assert_eq!(w.reason("ORD-J").as_deref(), Some("insufficient_stock"), "{point}");
        assert_eq!(stock(&w), (10, 5, 3), "{point}: all compensated");
        assert_eq!(journal_state(&w, "ORD-J"), "rolled_back");
        assert_eq!(marks(&w), (0, 0, 0), "{point}: compensation removes the markers");
    } else {
        assert_eq!(w.status("ORD-J"), ("confirmed".into(), "paid".into()), "{point}");
        assert_eq!(stock(&w), (8, 4, 1), "{point}: deducted once");
        assert_eq!(journal_state(&w, "ORD-J"), "confirmed");
        // The markers outlive any driver that could still act, then the sweep removes them.
        assert_eq!(marks(&w), (1, 1, 1), "{point}: markers kept until no driver can act");
        age_journals(&w);
        w.once();
        assert_eq!(marks(&w), (0, 0, 0), "{point}: the sweep removed the markers");
        assert_eq!(stock(&w), (8, 4, 1), "{point}: sweeping moves no stock");
    }
    assert_eq!(
        w.stock("shirt"),
        6,
        "{point}: a sized item moves its size, not the total"
    );
    let h = w.history("ORD-J");
    assert_eq!(h.len(), 1, "{point}: settled exactly once: {h:?}");
    assert_eq!(h[0].get_str("from").unwrap(), "draft");
    w
}

#[test]
fn crash_after_begin_rolls_forward() {
    let left = Left {
        status: "committing",
        journal: "applying",
        markers: (0, 0, 0),
        stock: (10, 5, 3),
    };
    crash_and_recover("journal.after_begin", "panic@1", false, left);
}

#[test]
fn crash_after_the_first_item_rolls_forward() {
    let left = Left {
        status: "committing",
        journal: "applying",
        markers: (1, 0, 0),
        stock: (8, 5, 3),
    };
    crash_and_recover("journal.after_item", "panic@1", false, left);
}

#[test]
fn crash_before_confirm_rolls_forward() {
    let left = Left {
        status: "committing",
        journal: "applying",
        markers: (1, 1, 1),
        stock: (8, 4, 1),
    };
    crash_and_recover("journal.before_confirm", "panic@1", false, left);
}

#[test]
fn crash_after_confirm_leaves_markers_that_the_sweep_removes() {
    let left = Left {
        status: "confirmed",
        journal: "confirmed",
        markers: (1, 1, 1),
        stock: (8, 4, 1),
    };
    crash_and_recover("journal.after_confirm", "panic@1", false, left);
}

#[test]
fn crash_after_the_first_item_of_a_short_order_rolls_back() {
    let left = Left {
        status: "committing",
        journal: "applying",
        markers: (1, 0, 0),
        stock: (8, 5, 3),
    };
    crash_and_recover("journal.after_item", "panic@1", true, left);
}

#[test]
fn crash_after_deciding_to_roll_back_keeps_rolling_back() {
    let left = Left {
        status: "committing",
        journal: "rolling_back",
        markers: (1, 1, 0),
        stock: (8, 4, 3),
    };
    crash_and_recover("journal.after_rollback_mark", "panic@1", true, left);
}

#[test]
fn crash_in_the_middle_of_compensation_finishes_it() {
    // Compensation runs last item first: shirt (never deducted, nothing to undo), then cap,
    // then the crash before tee.
    let left = Left {
        status: "committing",
        journal: "rolling_back",
        markers: (1, 0, 0),
        stock: (8, 5, 3),
    };
    crash_and_recover("journal.after_compensate", "panic@2", true, left);
}

#[test]
fn two_recoveries_at_once_change_nothing_more() {
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
    assert_eq!(markers(&w, "tee"), 8 * 2, "markers kept until no driver can act");
    age_journals(&w);
    w.once();
    assert_eq!(markers(&w, "tee"), 0);
    assert_eq!(w.stock("tee"), 100 - 8 * 5);
}
