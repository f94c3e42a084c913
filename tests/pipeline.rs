//! The reconciler end to end: real SecantusDB over the wire, real HTTP to phonepe-sim, the real
//! actor system (`once` mode). One test per row of the decision table, plus stock atomicity,
//! per-size stock, what is left alone, and idempotence of a second pass.

mod support;

use std::time::Duration;

use draft_reconciler::actors::Outcome;
use draft_reconciler::sim::Answer;
use mongodb::bson::{doc, Bson, DateTime};
use support::World;

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

#[test]
fn paid_with_matching_amount_is_confirmed_and_stock_deducted() {
    let w = World::new("paid_ok");
    w.insert_product("tee", 10);
    w.insert_product("mug", 5);
    w.insert_order("ORD-PAID", 49900, OLD, &[("tee", 2, None), ("mug", 1, None)]);
    w.sim.script("ORD-PAID", vec![Answer::completed(49900)]);

    let summary = w.once();

    assert_eq!(summary.get(Outcome::Confirmed), 1, "{summary}");
    assert_eq!(w.status("ORD-PAID"), ("confirmed".into(), "paid".into()));
    assert_eq!((w.stock("tee"), w.stock("mug")), (8, 4));
    let h = w.history("ORD-PAID");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].get_str("from").unwrap(), "draft");
    assert_eq!(h[0].get_str("to").unwrap(), "confirmed");
    assert_eq!(h[0].get_str("by").unwrap(), "reconciler");
    assert_eq!(h[0].get_str("code").unwrap(), "PAYMENT_SUCCESS");
    assert!(
        h[0].get_str("transactionId").is_ok(),
        "PhonePe's transaction id is kept: {h:?}"
    );
    let r = w.order("ORD-PAID");
    let rec = r.get_document("reconciliation").unwrap();
    assert!(rec.get("leaseOwner").is_none(), "lease released: {rec:?}");
}

#[test]
fn paid_with_wrong_amount_or_merchant_goes_to_review_and_deducts_nothing() {
    let w = World::new("mismatch");
    w.insert_product("tee", 10);
    w.insert_order("ORD-AMT", 49900, OLD, &[("tee", 1, None)]);
    w.insert_order("ORD-MER", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-AMT", vec![Answer::completed(100)]);
    w.sim
        .script("ORD-MER", vec![Answer::completed(49900).merchant("SOMEONEELSE")]);

    w.once();

    assert_eq!(w.status("ORD-AMT"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-AMT").as_deref(), Some("amount_mismatch"));
    assert_eq!(w.status("ORD-MER"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-MER").as_deref(), Some("merchant_mismatch"));
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn failed_payments_cancel() {
    let w = World::new("failed");
    w.insert_product("tee", 10);
    for (mtid, code) in [
        ("ORD-F1", "PAYMENT_ERROR"),
        ("ORD-F2", "PAYMENT_DECLINED"),
        ("ORD-F3", "TIMED_OUT"),
    ] {
        w.insert_order(mtid, 49900, OLD, &[("tee", 1, None)]);
        w.sim.script(mtid, vec![Answer::failed().code(code)]);
    }

    let summary = w.once();

    assert_eq!(summary.get(Outcome::Cancelled), 3, "{summary}");
    for mtid in ["ORD-F1", "ORD-F2", "ORD-F3"] {
        assert_eq!(w.status(mtid), ("cancelled".into(), "failed".into()), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("payment_failed"));
    }
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn young_pending_is_rescheduled_and_old_pending_or_not_found_cancelled() {
    let w = World::new("pending");
    w.insert_product("tee", 10);
    w.insert_order("ORD-YOUNG", 49900, OLD, &[("tee", 1, None)]);
    w.insert_order("ORD-YOUNG-NF", 49900, OLD, &[("tee", 1, None)]);
    w.insert_order("ORD-OLD", 49900, ANCIENT, &[("tee", 1, None)]);
    w.insert_order("ORD-OLD-NF", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim.script("ORD-YOUNG", vec![Answer::pending()]);
    w.sim.script("ORD-OLD", vec![Answer::pending()]);
    // ORD-*-NF are unknown to the simulator: TRANSACTION_NOT_FOUND.

    w.once();

    for mtid in ["ORD-YOUNG", "ORD-YOUNG-NF"] {
        assert_untouched(&w, mtid);
        let rec = w.order(mtid).get_document("reconciliation").unwrap().clone();
        let next = rec.get_datetime("nextCheckAt").expect("nextCheckAt set");
        assert!(
            next.timestamp_millis() > DateTime::now().timestamp_millis() + 30_000,
            "backoff of about a minute: {rec:?}"
        );
        assert_eq!(
            rec.get_i32("attempts")
                .map(i64::from)
                .or_else(|_| rec.get_i64("attempts"))
                .unwrap(),
            1
        );
    }
    assert_eq!(w.status("ORD-OLD"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("ORD-OLD").as_deref(), Some("pending_timeout"));
    assert_eq!(w.status("ORD-OLD-NF"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("ORD-OLD-NF").as_deref(), Some("not_found"));

    // A second pass right away does not call PhonePe again for the rescheduled ones.
    let before = w.sim.calls().len();
    w.once();
    assert_eq!(
        w.sim.calls().len(),
        before,
        "rescheduled orders wait for their nextCheckAt"
    );
}

#[test]
fn transient_errors_change_nothing_even_for_old_orders() {
    let w = World::new("transient");
    w.insert_product("tee", 10);
    let cases: Vec<(&str, Answer)> = vec![
        ("ORD-500", Answer::http_error(500)),
        ("ORD-503", Answer::http_error(503)),
        ("ORD-HTML", Answer::raw("<html>gateway timeout</html>")),
        (
            "ORD-HALF",
            Answer::raw(r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"state":"COMPLETED"}}"#),
        ),
        ("ORD-WHAT", Answer::completed(49900).code("SOMETHING_NEW")),
    ];
    for (mtid, answer) in cases.iter().cloned() {
        w.insert_order(mtid, 49900, ANCIENT, &[("tee", 1, None)]);
        w.sim.script(mtid, vec![answer]);
    }

    let summary = w.once();

    let assert_retried_later = |mtid: &str| {
        assert_untouched(&w, mtid);
        assert_eq!(w.calls_for(mtid), 1, "{mtid} was asked once and rescheduled");
        let rec = w.order(mtid).get_document("reconciliation").unwrap().clone();
        assert!(rec.get_datetime("nextCheckAt").is_ok(), "{mtid} retried later: {rec:?}");
    };
    for (mtid, _) in &cases {
        assert_retried_later(mtid);
    }
    assert_eq!(summary.get(Outcome::Retried), cases.len() as u64, "{summary}");

    // A 429 pauses every caller, so it gets a pass of its own (in the same pass it would keep the
    // orders after it from being asked at all — also no change, but not what is checked above).
    w.insert_order("ORD-429", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim.script("ORD-429", vec![Answer::http_error(429)]);
    let summary = w.once();
    assert_retried_later("ORD-429");
    assert_eq!(summary.get(Outcome::Retried), 1, "{summary}");
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn a_timeout_changes_nothing() {
    let mut w = World::new("timeout");
    w.settings.phonepe.request_timeout = Duration::from_millis(300);
    w.insert_product("tee", 10);
    w.insert_order("ORD-SLOW", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim.script("ORD-SLOW", vec![Answer::completed(49900).delay(3000)]);

    w.once();

    assert_untouched(&w, "ORD-SLOW");
    assert_eq!(
        w.order("ORD-SLOW")
            .get_document("reconciliation")
            .unwrap()
            .get_str("lastCode")
            .unwrap(),
        "ERROR_TIMEOUT"
    );
}

#[test]
fn rejected_credentials_change_nothing_and_stop_the_calls() {
    let mut w = World::new("rejected");
    w.settings.phonepe.salt_key = draft_reconciler::config::Secret::new("wrong-salt");
    w.settings.job.reconcilers = 1;
    w.insert_product("tee", 10);
    for i in 0..5 {
        let mtid = format!("ORD-R{i}");
        w.insert_order(&mtid, 49900, ANCIENT, &[("tee", 1, None)]);
        w.sim.script(&mtid, vec![Answer::completed(49900)]);
    }

    w.once();

    for i in 0..5 {
        assert_untouched(&w, &format!("ORD-R{i}"));
    }
    let calls = w.sim.calls();
    assert_eq!(
        calls.len(),
        1,
        "after a 401 the circuit opens instead of burning the budget: {calls:?}"
    );
    assert_eq!(calls[0].http_status, 401);
}

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
    let w = World::new("sizes");
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
        (0, 4, 4)
    );
}

#[test]
fn young_and_settled_orders_are_left_alone_and_not_sent_to_phonepe() {
    let w = World::new("left_alone");
    w.insert_product("tee", 10);
    w.insert_order("ORD-FRESH", 49900, 60, &[("tee", 1, None)]); // inside the lookback
    for (mtid, status, pay) in [
        ("ORD-DONE", "confirmed", "paid"),
        ("ORD-GONE", "cancelled", "failed"),
        ("ORD-HUMAN", "needs_review", "paid"),
    ] {
        let id = w.insert_order(mtid, 49900, OLD, &[("tee", 1, None)]);
        w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
            doc! { "_id": id },
            doc! { "$set": { "status": status, "paymentStatus": pay } },
        ))
        .unwrap();
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    }
    w.sim.script("ORD-FRESH", vec![Answer::completed(49900)]);

    let summary = w.once();

    assert_eq!(summary.total(), 0, "{summary}");
    assert!(w.sim.calls().is_empty(), "no PhonePe call: {:?}", w.sim.calls());
    assert_untouched(&w, "ORD-FRESH");
    assert_eq!(w.status("ORD-DONE").0, "confirmed");
    assert_eq!(w.status("ORD-GONE").0, "cancelled");
    assert_eq!(w.status("ORD-HUMAN").0, "needs_review");
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn a_second_pass_changes_nothing() {
    let w = World::new("idempotent");
    w.insert_product("tee", 10);
    w.insert_order("ORD-A", 49900, OLD, &[("tee", 3, None)]);
    w.insert_order("ORD-B", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-A", vec![Answer::completed(49900)]);
    w.sim.script("ORD-B", vec![Answer::failed()]);

    w.once();
    let (a, b, stock, calls) = (w.order("ORD-A"), w.order("ORD-B"), w.stock("tee"), w.sim.calls().len());
    let summary = w.once();

    assert_eq!(summary.total(), 0, "{summary}");
    assert_eq!((w.order("ORD-A"), w.order("ORD-B"), w.stock("tee")), (a, b, stock));
    assert_eq!(w.sim.calls().len(), calls);
    assert_eq!(stock, 7);
}

#[test]
fn an_invalid_order_document_is_parked_with_the_field_named() {
    let w = World::new("invalid");
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - OLD * 1000);
    w.insert_raw(doc! {
        "merchantTransactionId": "ORD-BAD", "status": "draft", "paymentStatus": "pending",
        "amount": 499.5, "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
    });

    w.once();

    assert_eq!(w.status("ORD-BAD"), ("needs_review".into(), "pending".into()));
    assert_eq!(w.reason("ORD-BAD").as_deref(), Some("invalid_order"));
    let h = w.history("ORD-BAD");
    assert!(h[0].get_str("code").unwrap().contains("amount"), "{h:?}");
    assert!(
        w.sim.calls().is_empty(),
        "an order we cannot read is never checked or confirmed"
    );
}

#[test]
fn a_settlement_racing_a_webhook_is_already_processed() {
    // The webhook confirms the order while PhonePe is slow to answer the reconciler.
    let w = World::new("webhook_race");
    w.insert_product("tee", 10);
    let id = w.insert_order("ORD-RACE", 49900, OLD, &[("tee", 2, None)]);
    w.sim.script("ORD-RACE", vec![Answer::completed(49900).delay(1500)]);
    let uri = w.uri.clone();
    let db = w.db.name().to_string();
    let webhook = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = mongodb::Client::with_uri_str(&uri).await.unwrap();
            let orders = c.database(&db).collection::<mongodb::bson::Document>("orders");
            // Wait until the reconciler holds the lease (it is waiting on PhonePe), then settle.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while orders
                .find_one(doc! { "_id": &id, "reconciliation.leaseOwner": { "$exists": true } })
                .await
                .unwrap()
                .is_none()
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "reconciler never claimed the order"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let r = orders
                .update_one(
                    doc! { "_id": &id, "status": "draft" },
                    doc! { "$set": { "status": "confirmed", "paymentStatus": "paid" },
                    "$push": { "history": { "from": "draft", "to": "confirmed", "by": "webhook" } } },
                )
                .await
                .unwrap();
            assert_eq!(r.matched_count, 1);
            c.database(&db)
                .collection::<mongodb::bson::Document>("products")
                .update_one(doc! { "_id": "tee" }, doc! { "$inc": { "stock": -2 } })
                .await
                .unwrap();
        });
    });

    let summary = w.once();
    webhook.join().unwrap();

    assert_eq!(summary.get(Outcome::AlreadyProcessed), 1, "{summary}");
    assert_eq!(w.stock("tee"), 8, "deducted once, by the webhook");
    let h = w.history("ORD-RACE");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].get_str("by").unwrap(), "webhook");
}

#[test]
fn a_standalone_server_under_auto_commits_with_the_journal() {
    let mut w = World::on(support::standalone_server(), "standalone");
    w.settings.job.commit_strategy = draft_reconciler::config::CommitStrategy::Auto;
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
        (8, 0, 0),
        "the short order was compensated"
    );
    for p in ["tee", "shirt"] {
        let markers = w
            .product(p)
            .get_array("reconcilerCommits")
            .map(|a| a.len())
            .unwrap_or(0);
        assert_eq!(markers, 0, "{p}: commit markers are removed once a journal ends");
    }
    let journal = w
        .order("ORD-PAID")
        .get_document("reconciliation")
        .unwrap()
        .get_document("commit")
        .unwrap()
        .clone();
    assert_eq!(journal.get_str("state").unwrap(), "confirmed", "{journal:?}");
}

#[test]
fn a_timed_out_order_paid_later_goes_to_review_not_left_cancelled() {
    let w = World::new("late_payment");
    w.insert_product("tee", 10);
    w.insert_order("ORD-LATE", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim
        .script("ORD-LATE", vec![Answer::pending(), Answer::completed(49900)]);
    w.once();
    assert_eq!(w.reason("ORD-LATE").as_deref(), Some("pending_timeout"));

    // The late-payment re-check is due (as it would be after LATE_PAYMENT_RECHECK).
    w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
        doc! { "merchantTransactionId": "ORD-LATE" },
        doc! { "$set": { "reconciliation.nextCheckAt": DateTime::now() } },
    ))
    .unwrap();
    w.once();

    assert_eq!(w.status("ORD-LATE"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-LATE").as_deref(), Some("paid_after_cancel"));
    assert_eq!(w.stock("tee"), 10, "a person decides: nothing deducted automatically");
    let h = w.history("ORD-LATE");
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[1].get_str("from").unwrap(), h[1].get_str("to").unwrap()),
        ("cancelled", "needs_review")
    );
}

#[test]
fn claims_are_exclusive_and_releasing_leases_frees_only_our_own() {
    use draft_reconciler::store::Store;
    let w = World::new("claims_release");
    let ids: Vec<Bson> = (0..6)
        .map(|i| w.insert_order(&format!("ORD-C{i}"), 49900, OLD, &[("tee", 1, None)]))
        .collect();
    let store = w.block(Store::connect(&w.uri, w.db.name())).unwrap();
    let lease = Duration::from_secs(300);
    let leased_by = |owner: &str| {
        w.block(
            w.db.collection::<mongodb::bson::Document>("orders")
                .count_documents(doc! { "reconciliation.leaseOwner": owner }),
        )
        .unwrap()
    };

    let a = w
        .block(store.claim_ids(&ids[..4], "A", DateTime::now(), lease))
        .unwrap();
    let b = w.block(store.claim_ids(&ids, "B", DateTime::now(), lease)).unwrap();
    assert_eq!((a.len(), b.len()), (4, 2), "B gets only what A does not hold");
    assert_eq!((leased_by("A"), leased_by("B")), (4, 2));

    assert_eq!(w.block(store.release_leases("A")).unwrap(), 4);
    assert_eq!((leased_by("A"), leased_by("B")), (0, 2), "B's leases are untouched");
    assert_eq!(
        w.block(store.release_leases("A")).unwrap(),
        0,
        "nothing left to release"
    );
    let again = w.block(store.claim_ids(&ids, "B", DateTime::now(), lease)).unwrap();
    assert_eq!(again.len(), 4, "released orders can be claimed at once");
    assert!(
        w.history("ORD-C0").is_empty(),
        "claims and releases are not transitions"
    );
}

#[test]
fn a_large_pool_settles_every_order_once_with_stock_exact() {
    // 32 reconcilers finishing at different times: slots freed while a claim runs are claimed
    // together right after it; every order is still asked and settled exactly once, the pass
    // ends, and the over-sold product parks exactly the orders it cannot fill.
    let mut w = World::new("large_pool");
    w.settings.job.reconcilers = 32;
    w.settings.job.max_orders_per_run = 32;
    w.insert_product("tee", 1000);
    w.insert_product("mug", 30);
    let n = 120;
    for i in 0..n {
        let mtid = format!("ORD-P{i:03}");
        let product = if i % 2 == 0 { "tee" } else { "mug" };
        w.insert_order(&mtid, 1000, OLD, &[(product, 1, None)]);
        w.sim
            .script(&mtid, vec![Answer::completed(1000).delay(i as u64 % 7 * 10)]);
    }

    let summary = w.once();

    // 60 mugs were sold against 30 in stock: 30 confirmed, 30 parked.
    assert_eq!(summary.get(Outcome::Confirmed), 90, "{summary}");
    assert_eq!(summary.get(Outcome::NeedsReview), 30, "{summary}");
    assert_eq!((w.stock("tee"), w.stock("mug")), (940, 0));
    for i in 0..n {
        let mtid = format!("ORD-P{i:03}");
        assert_eq!(w.calls_for(&mtid), 1, "{mtid} asked once");
        assert_eq!(w.history(&mtid).len(), 1, "{mtid} settled once");
    }
}
