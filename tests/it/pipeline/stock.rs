//! Stock: one short item deducts nothing, missing products and sizes, per-size stock, a
//! maintained total, a size listed twice; a standalone server commits with the journal.

use draft_reconciler::domain::Outcome;
use mongodb::bson::doc;
use phonepe_sim::Answer;

use super::OLD;
use crate::support::{self, World};

#[test]
fn one_short_item_deducts_nothing_and_parks_the_order() {
    let w = World::new("atomic");
    w.insert_product("tee", 10);
    w.insert_product("mug", 1);
    w.insert_product("cap", 10);
    w.insert_order(
        "ORD-SHORT",
        99900,
        OLD,
        &[("tee", 3, None), ("mug", 2, None), ("cap", 1, None)],
    );
    w.sim.script("ORD-SHORT", vec![Answer::completed(99900)]);

    let summary = w.once();

    assert_eq!(summary.get(Outcome::NeedsReview), 1, "{summary}");

    assert_eq!(w.status("ORD-SHORT"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-SHORT").as_deref(), Some("insufficient_stock"));
    assert_eq!(
        (w.stock("tee"), w.stock("mug"), w.stock("cap")),
        (10, 1, 10),
        "nothing deducted"
    );
}

#[test]
fn missing_product_or_size_parks_the_order() {
    let w = World::new("missing");
    w.insert_product("tee", 10);
    w.insert_sized_product("shirt", &[("M", 3)]);
    w.insert_order("ORD-GONE", 49900, OLD, &[("tee", 1, None), ("ghost", 1, None)]);
    w.insert_order("ORD-NOSIZE", 49900, OLD, &[("shirt", 1, Some("XXL"))]);
    w.sim.script("ORD-GONE", vec![Answer::completed(49900)]);
    w.sim.script("ORD-NOSIZE", vec![Answer::completed(49900)]);

    w.once();

    assert_eq!(w.reason("ORD-GONE").as_deref(), Some("product_missing"));
    assert_eq!(w.reason("ORD-NOSIZE").as_deref(), Some("product_missing"));
    assert_eq!(
        (w.stock("tee"), w.stock("shirt"), w.size_stock("shirt", "M")),
        (10, 3, 3)
    );
}

#[test]
fn per_size_stock_is_deducted_and_guarded() {
    let mut w = World::new("sizes");
    // One reconciler: the two orders compete for size M and the older must commit first.
    w.settings.job.reconcilers = 1;
    w.insert_sized_product("shirt", &[("M", 2), ("L", 5)]);
    w.insert_order("ORD-M", 49900, OLD, &[("shirt", 2, Some("M")), ("shirt", 1, Some("L"))]);
    w.insert_order("ORD-M2", 49900, OLD - 10, &[("shirt", 1, Some("M"))]);
    w.sim.script("ORD-M", vec![Answer::completed(49900)]);
    w.sim.script("ORD-M2", vec![Answer::completed(49900)]);

    w.once();

    // Oldest first: ORD-M takes both M; ORD-M2 finds size M empty though L has plenty.
    assert_eq!(w.status("ORD-M"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.status("ORD-M2"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-M2").as_deref(), Some("insufficient_stock"));
    assert_eq!(
        (w.size_stock("shirt", "M"), w.size_stock("shirt", "L"), w.stock("shirt")),
        (0, 4, 7),
        "a sized item moves its size only (job.sized_items_decrement_total = false)"
    );
}

/// A product that keeps stock per size only: no total at all, or a total of 0.
#[test]
fn sized_items_need_only_the_size_stock() {
    let mut w = World::new("sizes_only");
    w.settings.job.reconcilers = 1; // ORD-S and ORD-S2 compete for the last S: oldest first

    w.insert_raw_product(doc! { "_id": "kurta", "sizes": [ { "size": "M", "stock": 2 } ] });
    w.insert_raw_product(doc! { "_id": "saree", "stock": 0, "sizes": [ { "size": "S", "stock": 1 } ] });
    w.insert_order("ORD-K", 49900, OLD, &[("kurta", 2, Some("M"))]);
    w.insert_order("ORD-S", 49900, OLD - 1, &[("saree", 1, Some("S"))]);
    w.insert_order("ORD-S2", 49900, OLD - 2, &[("saree", 1, Some("S"))]);
    for m in ["ORD-K", "ORD-S", "ORD-S2"] {
        w.sim.script(m, vec![Answer::completed(49900)]);
    }

    w.once();

    assert_eq!(w.status("ORD-K"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.status("ORD-S"), ("confirmed".into(), "paid".into()));
    assert_eq!(
        w.reason("ORD-S2").as_deref(),
        Some("insufficient_stock"),
        "the size is the guard"
    );
    assert_eq!(w.size_stock("kurta", "M"), 0);
    assert!(w.product("kurta").get("stock").is_none(), "no total is invented");
    assert_eq!((w.size_stock("saree", "S"), w.stock("saree")), (0, 0));
}

/// `job.sized_items_decrement_total = true`: the total is maintained too, and guarded.
#[test]
fn a_maintained_total_is_decremented_and_guarded_when_configured() {
    let mut w = World::new("sizes_total");
    w.settings.job.sized_items_decrement_total = true;
    w.insert_sized_product("shirt", &[("M", 2), ("L", 5)]); // total 7
    w.insert_raw_product(doc! { "_id": "cap", "stock": 0, "sizes": [ { "size": "S", "stock": 4 } ] });
    w.insert_order("ORD-T", 49900, OLD, &[("shirt", 2, Some("M")), ("shirt", 1, Some("L"))]);
    w.insert_order("ORD-C", 49900, OLD - 1, &[("cap", 1, Some("S"))]);
    w.sim.script("ORD-T", vec![Answer::completed(49900)]);
    w.sim.script("ORD-C", vec![Answer::completed(49900)]);

    w.once();

    assert_eq!(w.status("ORD-T").0, "confirmed");
    assert_eq!(
        (w.size_stock("shirt", "M"), w.size_stock("shirt", "L"), w.stock("shirt")),
        (0, 4, 4)
    );
    assert_eq!(
        w.reason("ORD-C").as_deref(),
        Some("insufficient_stock"),
        "a total of 0 guards"
    );
    assert_eq!((w.size_stock("cap", "S"), w.stock("cap")), (4, 0));
}

/// A product whose `sizes` lists the ordered size twice: which entry is the stock? Park it.
#[test]
fn a_size_listed_twice_parks_the_order_and_deducts_nothing() {
    let w = World::new("sizes_twice");
    w.insert_product("tee", 10);
    w.insert_raw_product(doc! {
        "_id": "shirt", "stock": 9,
        "sizes": [ { "size": "M", "stock": 3 }, { "size": "L", "stock": 3 }, { "size": "M", "stock": 3 } ],
    });
    w.insert_order("ORD-DUP", 49900, OLD, &[("tee", 1, None), ("shirt", 1, Some("M"))]);
    w.insert_order("ORD-L", 49900, OLD - 1, &[("shirt", 1, Some("L"))]);
    w.sim.script("ORD-DUP", vec![Answer::completed(49900)]);
    w.sim.script("ORD-L", vec![Answer::completed(49900)]);

    w.once();

    assert_eq!(w.status("ORD-DUP"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-DUP").as_deref(), Some("invalid_product"));
    assert_eq!(w.stock("tee"), 10, "nothing deducted");
    let sizes: Vec<i64> = w
        .product("shirt")
        .get_array("sizes")
        .unwrap()
        .iter()
        .map(|s| crate::support::int(s.as_document().unwrap().get("stock")))
        .collect();
    assert_eq!(sizes, vec![3, 2, 3], "only L moved, for the order that asked for L");
    assert_eq!(
        w.status("ORD-L").0,
        "confirmed",
        "a unique size of the same product still works"
    );
}

#[test]
fn a_standalone_server_under_auto_commits_with_the_journal() {
    let mut w = World::on(support::standalone_server(), "standalone");
    w.settings.job.commit_strategy = draft_reconciler::config::CommitStrategy::Auto;
    w.settings.job.reconcilers = 1; // both orders want the last shirt M: oldest first
    w.insert_product("tee", 10);
    w.insert_sized_product("shirt", &[("M", 1)]);
    w.insert_order("ORD-PAID", 49900, OLD, &[("tee", 2, None), ("shirt", 1, Some("M"))]);
    w.insert_order(
        "ORD-SHORT",
        49900,
        OLD - 1,
        &[("tee", 1, None), ("shirt", 1, Some("M"))],
    );
    w.insert_order("ORD-FAIL", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-PAID", vec![Answer::completed(49900)]);
    w.sim.script("ORD-SHORT", vec![Answer::completed(49900)]);
    w.sim.script("ORD-FAIL", vec![Answer::failed()]);

    w.once();

    assert_eq!(w.status("ORD-PAID"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.status("ORD-SHORT"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.status("ORD-FAIL"), ("cancelled".into(), "failed".into()));
    assert_eq!(
        (w.stock("tee"), w.stock("shirt"), w.size_stock("shirt", "M")),
        (8, 1, 0),
        "the short order was compensated"
    );
    let markers = |p: &str| {
        w.product(p)
            .get_array("reconcilerCommits")
            .map(|a| a.len())
            .unwrap_or(0)
    };
    // The paid order's markers stay until no driver of its commit can act (see journal.rs); the
    // short order's were removed by its compensation.
    assert_eq!((markers("tee"), markers("shirt")), (1, 1));
    let journal = w
        .order("ORD-PAID")
        .get_document("reconciliation")
        .unwrap()
        .get_document("commit")
        .unwrap()
        .clone();
    assert_eq!(journal.get_str("state").unwrap(), "confirmed", "{journal:?}");
}
