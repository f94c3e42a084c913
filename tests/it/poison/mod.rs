//! Issue 22, against the real binary: a bad document never stalls the pipeline, and the
//! reconciler never breaks the shop. Writes the database refuses (a `history` that is not an
//! array, a validator, `reconciliation: null`, a status that is an array) are counted and the
//! order parked (or excluded) with its stock exact, on transactions and on the journal; poison
//! drafts never starve good ones. `indexes` has the Mongoose shop's indexes, `inputs` the dates,
//! words, product references and the wake within the lookback.

mod indexes;
mod inputs;

use std::process::ExitStatus;
use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use phonepe_sim::Answer;

use crate::support::{count_orders, db_server, eventually_some, int, standalone_server, DbServer, Running, World};

/// The longest one `once` pass may take here: one that spins on a poison document never ends.
const PASS_LIMIT: Duration = Duration::from_secs(120);

/// `draft-reconciler once` on `w` with the strategy `auto` picks for its server (transaction on
/// the replica-set-like one, journal on the standalone one); killed and failed past `PASS_LIMIT`.
fn once(w: &World, env: &[(&str, &str)]) -> ExitStatus {
    let mut c = w.reconciler_command(&["once"]);
    c.env("RECONCILER_JOB__COMMIT_STRATEGY", "auto");
    c.envs(env.iter().copied());
    let mut child = Running(c.spawn().expect("start draft-reconciler once"));
    eventually_some(
        PASS_LIMIT,
        "`once` to finish (if it does not, it spins on something)",
        || child.try_wait().expect("wait"),
    )
}

/// The two servers and what `auto` commits by on each.
fn both_strategies() -> [(&'static DbServer, &'static str); 2] {
    [(db_server(), "transaction"), (standalone_server(), "journal")]
}

/// Every refused order's retry is due now: the waits (`REFUSAL_RETRY`) pass without sleeping.
fn make_due(w: &World) {
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    w.block(w.orders().update_many(
        doc! { "reconciliation.nextCheckAt": { "$type": "date" } },
        doc! { "$set": { "reconciliation.nextCheckAt": past } },
    ))
    .expect("make orders due");
    w.block(holds(w).update_many(
        doc! { "excluded": { "$ne": true } },
        doc! { "$set": { "nextCheckAt": past } },
    ))
    .expect("make holds due");
}

fn holds(w: &World) -> mongodb::Collection<Document> {
    w.db.collection("reconciler_holds")
}

/// The order's `reconciliation` sub-document (empty when it is not one).
fn recon(w: &World, mtid: &str) -> Document {
    w.order(mtid)
        .get_document("reconciliation")
        .cloned()
        .unwrap_or_default()
}

/// A paid order whose `history` is not an array: the confirmation is refused. Transactions
/// retry it (nothing changed each time) and park it at the third refusal; the journal restores
/// the stock it deducted and parks it at once. Stock exact, nothing left `committing`, a good
/// order beside it confirmed in the first pass.
#[test]
fn a_paid_order_whose_history_is_not_an_array_is_parked_with_its_stock_exact() {
    for (server, strategy) in both_strategies() {
        let w = World::on(server, "poison_history");
        w.insert_product("tee", 5);
        w.insert_order("HIST-1", 49900, 600, &[("tee", 2, None)]);
        w.update_order(
            doc! { "merchantTransactionId": "HIST-1" },
            doc! { "$set": { "history": "see the CRM" } },
        );
        w.insert_order("GOOD-1", 100, 500, &[("tee", 1, None)]);
        w.sim.script("HIST-1", vec![Answer::completed(49900)]);
        w.sim.script("GOOD-1", vec![Answer::completed(100)]);

        assert!(once(&w, &[]).success(), "{strategy}");
        assert_eq!(
            w.status("GOOD-1").0,
            "confirmed",
            "{strategy}: the good order is not held up"
        );
        let passes = if strategy == "transaction" {
            for pass in 1..3 {
                assert_eq!(
                    w.status("HIST-1"),
                    ("draft".into(), "pending".into()),
                    "{strategy} {pass}"
                );
                assert_eq!(int(recon(&w, "HIST-1").get("refusedWrites")), pass, "{strategy}");
                assert_eq!(w.stock("tee"), 4, "{strategy}: the refused commit changed nothing");
                make_due(&w);
                assert!(once(&w, &[]).success(), "{strategy}");
            }
            3
        } else {
            1
        };
        assert_eq!(w.status("HIST-1"), ("needs_review".into(), "paid".into()), "{strategy}");
        let r = recon(&w, "HIST-1");
        assert_eq!(r.get_str("reason"), Ok("unwritable_order"), "{strategy}: {r:?}");
        let last = r.get_str("lastError").unwrap_or_default();
        assert!(
            last.contains("MongoDB error 2") && last.contains("history"),
            "{strategy}: {last}"
        );
        assert!(
            !last.contains("see the CRM"),
            "{strategy}: no stored value in lastError: {last}"
        );
        assert_eq!(r.get_i64("paidAmount"), Ok(49900), "{strategy}");
        assert_eq!(
            w.order("HIST-1").get_str("history"),
            Ok("see the CRM"),
            "{strategy}: untouched"
        );
        assert_eq!(w.stock("tee"), 4, "{strategy}: only the good order's unit is deducted");
        let markers = w
            .product("tee")
            .get_array("reconcilerCommits")
            .map(|a| a.len())
            .unwrap_or(0);
        assert_eq!(
            markers,
            usize::from(strategy == "journal"),
            "{strategy}: only GOOD-1's marker"
        );
        assert_eq!(count_orders(&w, doc! { "status": "committing" }), 0, "{strategy}");
        assert_eq!(w.calls_for("HIST-1"), passes, "{strategy}: PhonePe asked once a pass");
        make_due(&w);
        assert!(once(&w, &[]).success());
        assert_eq!(
            w.calls_for("HIST-1"),
            passes,
            "{strategy}: a parked order is left alone"
        );
    }
}

/// The shop's validator refuses what the reconciler writes. Refusing `paid`: the order is parked
/// by the rung without the payment word. Refusing every status but draft and confirmed: a failed
/// payment cannot be cancelled nor parked, so the order is excluded (a record in
/// `reconciler_holds`) and left alone; stock untouched either way.
#[test]
fn a_validator_refusing_the_reconciler_parks_the_order_or_excludes_it() {
    for (server, strategy) in both_strategies() {
        let w = World::on(server, "poison_validator");
        w.insert_product("tee", 5);
        w.insert_order("VAL-PAID", 49900, 600, &[("tee", 1, None)]);
        w.insert_order("VAL-FAIL", 49900, 590, &[("tee", 1, None)]);
        w.sim.script("VAL-PAID", vec![Answer::completed(49900)]);
        w.sim.script("VAL-FAIL", vec![Answer::failed()]);
        let (o, pay) = (&w.schema.orders, &w.schema.orders.payment_status_values);
        let validator = doc! { "$or": [
            { &o.status: { "$in": [&o.status_values.draft, &o.status_values.confirmed, &o.status_values.committing, &o.status_values.needs_review] },
              &o.payment_status: { "$in": [&pay.pending, &pay.failed] } },
        ] };
        // VAL-FAIL: the words it would be cancelled or parked with are refused.
        let validator = doc! { "$and": [validator, { "$or": [
            { &o.id: { "$ne": "VAL-FAIL" } },
            { &o.status: &o.status_values.draft },
        ] }] };
        w.block(w.db.run_command(doc! { "collMod": &o.collection, "validator": validator }))
            .expect("collMod validator");

        for _ in 0..3 {
            assert!(once(&w, &[]).success(), "{strategy}");
            make_due(&w);
        }
        assert_eq!(
            w.status("VAL-PAID"),
            ("needs_review".into(), "pending".into()),
            "{strategy}: parked without the refused `paid`"
        );
        assert_eq!(w.reason("VAL-PAID").as_deref(), Some("unwritable_order"), "{strategy}");
        assert!(recon(&w, "VAL-PAID")
            .get_str("lastError")
            .unwrap_or_default()
            .contains("121"));
        assert_eq!(w.status("VAL-FAIL"), ("draft".into(), "pending".into()), "{strategy}");
        let id = w.stored_order("VAL-FAIL").get("_id").cloned().expect("_id");
        let hold = w.block(holds(&w).find_one(doc! { "_id": &id })).unwrap();
        assert_eq!(hold.and_then(|h| h.get_bool("excluded").ok()), Some(true), "{strategy}");
        assert_eq!(w.stock("tee"), 5, "{strategy}: nothing deducted");
        assert_eq!(count_orders(&w, doc! { "status": "committing" }), 0, "{strategy}");
        let asked = w.calls_for("VAL-FAIL");
        assert!(once(&w, &[]).success());
        assert_eq!(
            w.calls_for("VAL-FAIL"),
            asked,
            "{strategy}: an excluded order is left alone"
        );
    }
}

/// 30 drafts whose claim is refused (`reconciliation: null`) and 30 whose status is an array,
/// all older than 5 good paid drafts: the good ones are confirmed in the first pass and the pass
/// ends; the arrays are parked `invalid_order` at once, the others `unwritable_order` at their
/// third refused claim, and PhonePe is never asked about any of them.
#[test]
fn drafts_that_cannot_be_claimed_never_starve_the_good_ones() {
    let w = World::new("poison_starve");
    w.insert_product("tee", 100);
    let draft = Bson::String(w.schema.orders.status_values.draft.clone());
    for i in 0..30 {
        let id = w.insert_order(&format!("NULL-{i:02}"), 100, 7200 - i, &[("tee", 1, None)]);
        let id2 = w.insert_order(&format!("ARR-{i:02}"), 100, 7100 - i, &[("tee", 1, None)]);
        let status = w.schema.orders.status.clone();
        w.block(
            w.orders()
                .update_one(doc! { "_id": id }, doc! { "$set": { "reconciliation": Bson::Null } }),
        )
        .unwrap();
        w.block(
            w.orders()
                .update_one(doc! { "_id": id2 }, doc! { "$set": { status: [draft.clone()] } }),
        )
        .unwrap();
    }
    for i in 0..5 {
        let mtid = format!("GOOD-{i}");
        w.insert_order(&mtid, 100, 600, &[("tee", 1, None)]);
        w.sim.script(&mtid, vec![Answer::completed(100)]);
    }
    // A watched cancellation whose status is an array: matched by the watch filter, unreadable
    // once claimed, so released with a retry an hour away instead of claimed every tick.
    let watched = w.insert_order("WATCH-ARR", 100, 3600, &[("tee", 1, None)]);
    let cancelled = Bson::String(w.schema.orders.status_values.cancelled.clone());
    w.block(w.orders().update_one(
        doc! { "_id": watched },
        doc! { "$set": { &w.schema.orders.status: [cancelled], "reconciliation.reason": "pending_timeout" } },
    ))
    .unwrap();

    assert!(once(&w, &[]).success());
    let next = recon(&w, "WATCH-ARR")
        .get_datetime("nextCheckAt")
        .ok()
        .map(|d| d.timestamp_millis());
    let in_an_hour = DateTime::now().timestamp_millis() + 3_000_000;
    assert!(
        next.is_some_and(|n| n > in_an_hour),
        "WATCH-ARR released with a retry an hour away: {next:?}"
    );
    assert_eq!(w.calls_for("WATCH-ARR"), 0);
    for i in 0..5 {
        assert_eq!(w.status(&format!("GOOD-{i}")).0, "confirmed", "GOOD-{i}");
    }
    for i in 0..30 {
        let arr = format!("ARR-{i:02}");
        assert_eq!(w.status(&arr).0, "needs_review", "{arr}");
        assert_eq!(w.reason(&arr).as_deref(), Some("invalid_order"), "{arr}");
    }
    let nulls = doc! { "merchantTransactionId": { "$regex": "^NULL-" } };
    assert_eq!(
        count_orders(
            &w,
            doc! { "merchantTransactionId": { "$regex": "^NULL-" }, "status": "draft" }
        ),
        30
    );
    assert_eq!(w.block(holds(&w).count_documents(doc! { "refused": 1 })).unwrap(), 30);
    for _ in 0..2 {
        make_due(&w);
        assert!(once(&w, &[]).success());
    }
    let mut parked = nulls.clone();
    parked.insert("status", "needs_review");
    parked.insert("reconciliation.reason", "unwritable_order");
    assert_eq!(count_orders(&w, parked), 30, "parked at the third refused claim");
    let last = recon(&w, "NULL-00")
        .get_str("lastError")
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("claim: MongoDB error 28"), "{last}");
    assert_eq!(w.block(holds(&w).count_documents(doc! {})).unwrap(), 0, "holds cleared");
    let poison_calls = w
        .sim
        .calls()
        .iter()
        .filter(|c| !c.merchant_transaction_id.starts_with("GOOD-"))
        .count();
    assert_eq!(poison_calls, 0, "PhonePe is never asked about a poison draft");
    assert_eq!(w.stock("tee"), 95);
}
