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
    match rec.get(field) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        None => 0,
        other => panic!("{mtid} reconciliation.{field} is {other:?}"),
    }
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

#[test]
fn transient_errors_change_nothing_even_for_old_orders() {
    let mut w = World::new("transient");
    // One reconciler, and a paid order between the two server errors: each failure is then one
    // order's own (failures of different orders in a row are an outage, see the breaker).
    w.settings.job.reconcilers = 1;
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
    for (i, (mtid, answer)) in cases.iter().cloned().enumerate() {
        let age = ANCIENT + 100 - 10 * i as i64;
        w.insert_order(mtid, 49900, age, &[("tee", 1, None)]);
        w.sim.script(mtid, vec![answer]);
        let ok = format!("ORD-OK{i}");
        w.insert_order(&ok, 100, age - 5, &[("tee", 1, None)]);
        w.sim.script(&ok, vec![Answer::completed(100)]);
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
    assert_eq!(summary.get(Outcome::Confirmed), cases.len() as u64, "{summary}");
    // Each kind of failure is counted apart, and the first error backs off 30 s.
    for mtid in ["ORD-500", "ORD-503"] {
        assert_eq!(
            (counter(&w, mtid, "errors"), counter(&w, mtid, "unreadable")),
            (1, 0),
            "{mtid}"
        );
        assert_due_in(&w, mtid, 30);
    }
    for mtid in ["ORD-HTML", "ORD-HALF", "ORD-WHAT"] {
        assert_eq!(
            (counter(&w, mtid, "errors"), counter(&w, mtid, "unreadable")),
            (0, 1),
            "{mtid}"
        );
    }

    // A 429 pauses every caller, so it gets a pass of its own (in the same pass it would keep the
    // orders after it from being asked at all — also no change, but not what is checked above).
    w.insert_order("ORD-429", 49900, ANCIENT, &[("tee", 1, None)]);
    w.sim.script("ORD-429", vec![Answer::http_error(429)]);
    let summary = w.once();
    assert_retried_later("ORD-429");
    assert_eq!(summary.get(Outcome::Retried), 1, "{summary}");
    assert_due_in(&w, "ORD-429", 60);
    assert_eq!(counter(&w, "ORD-429", "errors"), 0, "a 429 is not the order's error");
    assert_eq!(w.stock("tee"), 5);
}

#[test]
fn the_error_backoff_doubles_with_the_orders_own_errors() {
    let mut w = World::new("backoff");
    w.settings.job.reconcilers = 1;
    w.insert_product("tee", 10);
    // Two errors already (and many other checks): the third waits 2 minutes, not 30 s.
    let id = w.insert_order("ORD-E2", 49900, OLD, &[("tee", 1, None)]);
    w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
        doc! { "_id": id },
        doc! { "$set": { "reconciliation.errors": 2, "reconciliation.attempts": 9 } },
    ))
    .unwrap();
    w.sim.script("ORD-E2", vec![Answer::http_error(500)]);

    w.once();

    assert_untouched(&w, "ORD-E2");
    assert_due_in(&w, "ORD-E2", 120);
    assert_eq!(counter(&w, "ORD-E2", "errors"), 3);
    assert_eq!(counter(&w, "ORD-E2", "attempts"), 10);
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
    w.settings.phonepe.salt_key = Some(draft_reconciler::config::Secret::new("wrong-salt"));
    w.settings.job.reconcilers = 1;
    w.insert_product("tee", 10);
    for i in 0..5 {
        let mtid = format!("ORD-R{i}");
        w.insert_order(&mtid, 49900, ANCIENT, &[("tee", 1, None)]);
        w.sim.script(&mtid, vec![Answer::completed(49900)]);
    }

    w.once();

    for i in 0..5 {
        let mtid = format!("ORD-R{i}");
        assert_untouched(&w, &mtid);
        // Calls pause 5 minutes: the rejected order and those given back wait that long.
        assert_due_in(&w, &mtid, 300);
        assert_eq!(
            counter(&w, &mtid, "rejections"),
            0,
            "credentials are not the order's fault"
        );
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
fn a_429_stops_a_large_pool_at_once() {
    let mut w = World::new("pool_429");
    // 32 reconcilers on a lifted budget (1200/min: a permit every 50 ms, so only a call whose
    // round trip outlasts 50 ms can overlap the next), against a PhonePe that takes 3 a minute.
    w.settings.job.reconcilers = 32;
    w.settings.job.rate_limit_per_minute = 1200;
    w.settings.job.max_orders_per_run = 64;
    w.sim.set_rate_limit(Some(3));
    w.insert_product("tee", 100);
    let all: Vec<String> = (0..40).map(|i| format!("ORD-Q{i:02}")).collect();
    for m in &all {
        w.insert_order(m, 49900, OLD, &[("tee", 1, None)]);
        w.sim.script(m, vec![Answer::completed(49900)]);
    }

    w.once();

    let calls = w.sim.calls();
    let limited = calls.iter().filter(|c| c.http_status == 429).count();
    eprintln!("pool of 32, quota 3/min: {} calls, {limited} answered 429", calls.len());
    // The first 429 pauses everyone; only a call already on the wire may still meet one.
    assert!((1..=2).contains(&limited), "{limited} calls answered 429: {calls:?}");
    let confirmed = all.iter().filter(|m| w.status(m).0 == "confirmed").count();
    assert_eq!(confirmed, 3, "the three calls PhonePe served settled their orders");
    assert_eq!(w.stock("tee"), 97);
    for m in all.iter().filter(|m| w.status(m).0 != "confirmed") {
        assert_untouched(&w, m);
    }
}

/// Make `mtid` due now (as if its backoff were over).
fn make_due(w: &World, mtid: &str) {
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1000);
    w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
        doc! { "merchantTransactionId": mtid },
        doc! { "$set": { "reconciliation.nextCheckAt": past } },
    ))
    .unwrap();
}

fn bad_request() -> Answer {
    Answer::http_error(400)
}

#[test]
fn one_order_refused_by_phonepe_holds_up_no_other_order() {
    let w = World::new("refused_one");
    w.insert_product("tee", 20);
    // The refused order is the oldest: it is claimed first, every pass.
    w.insert_order("ORD-BAD", 49900, OLD + 100, &[("tee", 1, None)]);
    w.sim.script("ORD-BAD", vec![bad_request()]);
    let paid: Vec<String> = (0..10).map(|i| format!("ORD-P{i:02}")).collect();
    for m in &paid {
        w.insert_order(m, 49900, OLD, &[("tee", 1, None)]);
        w.sim.script(m, vec![Answer::completed(49900)]);
    }

    let summary = w.once();

    assert_eq!(summary.get(Outcome::Confirmed), 10, "{summary}");
    for m in &paid {
        assert_eq!(w.status(m), ("confirmed".into(), "paid".into()), "{m}");
    }
    assert_eq!(w.stock("tee"), 10);
    assert_untouched(&w, "ORD-BAD");
    assert_eq!(counter(&w, "ORD-BAD", "rejections"), 1);
    assert_eq!(counter(&w, "ORD-BAD", "errors"), 0);
    assert_due_in(&w, "ORD-BAD", 30);
    assert_eq!(w.calls_for("ORD-BAD"), 1);
}

#[test]
fn an_order_refused_three_times_is_parked_as_phonepe_rejected() {
    let w = World::new("refused_thrice");
    w.insert_product("tee", 10);
    w.insert_order("ORD-BAD", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-BAD", vec![bad_request()]);

    let mut due = vec![];
    for pass in 1..=3 {
        w.once();
        assert_eq!(counter(&w, "ORD-BAD", "rejections"), pass.min(2), "after pass {pass}");
        if pass < 3 {
            assert_untouched(&w, "ORD-BAD");
            due.push(due_in_secs(&w, "ORD-BAD"));
            make_due(&w, "ORD-BAD");
        }
    }

    assert!(due[1] > due[0] * 1.5, "the backoff grows between refusals: {due:?}");
    assert_eq!(w.status("ORD-BAD"), ("needs_review".into(), "pending".into()));
    assert_eq!(w.reason("ORD-BAD").as_deref(), Some("phonepe_rejected"));
    let rec = w.order("ORD-BAD").get_document("reconciliation").unwrap().clone();
    assert_eq!(rec.get_str("lastCode").unwrap(), "BAD_REQUEST");
    let h = w.history("ORD-BAD");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].get_str("to").unwrap(), "needs_review");
    assert_eq!(w.calls_for("ORD-BAD"), 3);
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn the_same_refusal_for_several_different_orders_pauses_every_call() {
    let mut w = World::new("refused_many");
    w.settings.job.reconcilers = 1;
    w.insert_product("tee", 10);
    for i in 0..3 {
        let m = format!("ORD-BAD{i}");
        w.insert_order(&m, 49900, OLD + 100 - i, &[("tee", 1, None)]);
        w.sim.script(&m, vec![bad_request()]);
    }
    w.insert_order("ORD-LATER", 49900, OLD, &[("tee", 1, None)]);
    w.sim.script("ORD-LATER", vec![Answer::completed(49900)]);

    w.once();

    assert_eq!(w.sim.calls().len(), 3, "calls paused after the third refused order");
    for m in ["ORD-BAD0", "ORD-BAD1", "ORD-BAD2", "ORD-LATER"] {
        assert_untouched(&w, m);
    }
    // The refusal that turned out to be everyone's is not held against its order.
    assert_eq!(counter(&w, "ORD-BAD2", "rejections"), 0);
    assert_due_in(&w, "ORD-BAD2", 300);
    assert_due_in(&w, "ORD-LATER", 300);
}

#[test]
fn an_order_whose_answers_stay_unreadable_is_parked_after_the_configured_attempts() {
    let mut w = World::new("unreadable");
    w.settings.job.unreadable_max_attempts = 3;
    w.settings.job.reconcilers = 1;
    w.insert_product("tee", 10);
    w.insert_order("ORD-GARBLED", 49900, OLD, &[("tee", 1, None)]);
    // A success whose amount is a string (and a customer's VPA in the body): never acted on.
    w.sim.script(
        "ORD-GARBLED",
        vec![Answer::raw(
            r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"merchantId":"MERCHANTUAT","amount":"49900","state":"COMPLETED","vpa":"asha@ybl"}}"#,
        )],
    );
    // Errors of another kind, already counted, do not bring the limit closer.
    make_due(&w, "ORD-GARBLED");
    w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
        doc! { "merchantTransactionId": "ORD-GARBLED" },
        doc! { "$set": { "reconciliation.errors": 5 } },
    ))
    .unwrap();

    for pass in 1..=2 {
        w.once();
        assert_untouched(&w, "ORD-GARBLED");
        assert_eq!(counter(&w, "ORD-GARBLED", "unreadable"), pass);
        make_due(&w, "ORD-GARBLED");
    }
    w.once();

    assert_eq!(w.status("ORD-GARBLED"), ("needs_review".into(), "pending".into()));
    assert_eq!(w.reason("ORD-GARBLED").as_deref(), Some("phonepe_unreadable"));
    let rec = w.order("ORD-GARBLED").get_document("reconciliation").unwrap().clone();
    assert_eq!(rec.get_str("lastCode").unwrap(), "ERROR_MALFORMED");
    let excerpt = rec.get_str("lastError").expect("lastError kept").to_string();
    assert_eq!(
        excerpt,
        "malformed: PAYMENT_SUCCESS with data.amount that is not a number"
    );
    assert!(!excerpt.contains("ybl") && !excerpt.contains("49900"), "{excerpt}");
    assert_eq!(w.calls_for("ORD-GARBLED"), 3);
    assert_eq!(w.history("ORD-GARBLED").len(), 1);
    assert_eq!(w.stock("tee"), 10);
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
        .map(|s| match s.as_document().unwrap().get("stock") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            other => panic!("size stock {other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![3, 2, 3], "only L moved, for the order that asked for L");
    assert_eq!(
        w.status("ORD-L").0,
        "confirmed",
        "a unique size of the same product still works"
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

/// The store, connected to `w`'s database, and the eligibility the service derives from `w`'s
/// settings (5-minute lookback, 30-minute timeout + 24-hour watch).
fn store_of(
    w: &World,
) -> (
    draft_reconciler::store::Store,
    draft_reconciler::store::orders::Eligibility,
) {
    let store = w
        .block(draft_reconciler::store::Store::connect(&w.uri, w.db.name()))
        .unwrap();
    let e = draft_reconciler::store::orders::Eligibility {
        lookback: w.settings.job.lookback,
        watch_horizon: Some(w.settings.job.pending_timeout + w.settings.job.late_payment_watch),
    };
    (store, e)
}

fn ms_ago(secs: i64) -> i64 {
    DateTime::now().timestamp_millis() - secs * 1000
}

/// An ObjectId whose embedded time is `secs` ago.
fn object_id_aged(secs: i64) -> Bson {
    let mut bytes = mongodb::bson::oid::ObjectId::new().bytes();
    let t = u32::try_from(ms_ago(secs) / 1000).unwrap();
    bytes[..4].copy_from_slice(&t.to_be_bytes());
    Bson::ObjectId(mongodb::bson::oid::ObjectId::from_bytes(bytes))
}

/// A one-tee draft for 49900 paise with `_id` = `id`, `createdAt` = `created` (absent when
/// `None`) and `paymentStatus` = `payment` (absent when `None`).
fn insert_irregular(w: &World, mtid: &str, id: Bson, created: Option<Bson>, payment: Option<&str>) {
    let mut d = doc! {
        "_id": id, "merchantTransactionId": mtid, "status": "draft", "amount": 49900_i64,
        "items": [{ "productId": "tee", "quantity": 1 }], "history": [],
    };
    if let Some(c) = created {
        d.insert("createdAt", c);
    }
    if let Some(p) = payment {
        d.insert("paymentStatus", p);
    }
    w.block(w.db.collection::<mongodb::bson::Document>("orders").insert_one(d))
        .unwrap();
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn drafts_the_indexed_query_cannot_match_are_reconciled_or_parked() {
    let w = World::new("irregular_drafts");
    w.insert_product("tee", 10);
    let iso = DateTime::from_millis(ms_ago(OLD)).try_to_rfc3339_string().unwrap();
    let paid: Vec<(&str, Bson, Option<Bson>)> = vec![
        ("ORD-ISO", object_id_aged(0), Some(Bson::String(iso))),
        ("ORD-MS64", object_id_aged(0), Some(Bson::Int64(ms_ago(OLD)))),
        ("ORD-MSF", object_id_aged(0), Some(Bson::Double(ms_ago(OLD) as f64))),
        ("ORD-OID", object_id_aged(OLD), None),
    ];
    for (mtid, id, created) in paid.iter().cloned() {
        insert_irregular(&w, mtid, id, created, Some("pending"));
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    }
    let never_asked = ["ORD-YESTERDAY", "ORD-YOUNG", "ORD-PAID-DRAFT", "ORD-NO-PAYSTATUS"];
    insert_irregular(
        &w,
        "ORD-YESTERDAY",
        Bson::String("order-yesterday".into()),
        Some(Bson::String("yesterday".into())),
        Some("pending"),
    );
    insert_irregular(&w, "ORD-YOUNG", object_id_aged(0), None, Some("pending"));
    let old = Some(Bson::DateTime(DateTime::from_millis(ms_ago(OLD))));
    insert_irregular(&w, "ORD-PAID-DRAFT", object_id_aged(OLD), old.clone(), Some("paid"));
    insert_irregular(&w, "ORD-NO-PAYSTATUS", object_id_aged(OLD), old, None);
    for mtid in never_asked {
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    }
    let (store, e) = store_of(&w);
    let swept = w.block(store.sweep(DateTime::now(), &e)).unwrap();
    assert_eq!(swept.drafts.len(), 7, "all but the young one: {swept:?}");
    // Candidate lists take the sweep's ids in turn, none lost or listed twice.
    let mut left = swept.clone();
    let now = DateTime::now();
    let first = w.block(store.candidates_with(now, &e, 3, &mut left)).unwrap();
    let second = w.block(store.candidates_with(now, &e, 10, &mut left)).unwrap();
    assert_eq!([first, second].concat(), swept.drafts);
    assert!(left.drafts.is_empty(), "{left:?}");
    assert_eq!(
        w.block(store.count_eligible(DateTime::now(), &e)).unwrap(),
        0,
        "none of them fits the indexed query"
    );

    let recorder = draft_reconciler::telemetry::prometheus_builder()
        .unwrap()
        .build_recorder();
    let summary = metrics::with_local_recorder(&recorder, || w.once());
    let text = recorder.handle().render();

    assert_eq!(gauge(&text, "reconciler_irregular_drafts"), Some(7.0), "{text}");
    assert_eq!(gauge(&text, "reconciler_eligible_backlog"), Some(7.0), "{text}");
    assert_eq!(summary.get(Outcome::Confirmed), 4, "{summary}");
    for (mtid, _, created) in &paid {
        assert_eq!(w.status(mtid), ("confirmed".into(), "paid".into()), "{mtid}");
        assert_eq!(w.calls_for(mtid), 1, "{mtid}");
        assert_eq!(
            w.order(mtid).get("createdAt"),
            created.as_ref(),
            "{mtid}: createdAt kept"
        );
    }
    assert_eq!(w.stock("tee"), 6, "one tee for each paid order");
    let parked = |mtid: &str, payment: &str, field: &str| {
        assert_eq!(w.status(mtid), ("needs_review".into(), payment.into()), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("invalid_order"), "{mtid}");
        let h = w.history(mtid);
        let code = h[0].get_str("code").unwrap();
        assert!(code.contains(&format!("`{field}`")), "{mtid}: {code}");
    };
    parked("ORD-YESTERDAY", "pending", "createdAt");
    parked("ORD-PAID-DRAFT", "paid", "paymentStatus");
    let no_paystatus = w.order("ORD-NO-PAYSTATUS");
    assert_eq!(no_paystatus.get_str("status").unwrap(), "needs_review");
    assert!(no_paystatus.get("paymentStatus").is_none(), "left as the shop wrote it");
    assert!(w.history("ORD-NO-PAYSTATUS")[0]
        .get_str("code")
        .unwrap()
        .contains("`paymentStatus`"));
    assert_eq!(w.order("ORD-YESTERDAY").get_str("createdAt").unwrap(), "yesterday");
    assert_untouched(&w, "ORD-YOUNG");
    for mtid in never_asked {
        assert_eq!(w.calls_for(mtid), 0, "{mtid} is never sent to PhonePe");
    }
    let swept = w.block(store.sweep(DateTime::now(), &e)).unwrap();
    assert!(swept.drafts.is_empty(), "nothing left: {swept:?}");
}

#[test]
fn a_watched_cancellation_with_an_irregular_created_at_is_still_watched() {
    let w = World::new("irregular_watch");
    w.insert_product("tee", 10);
    let cancelled = |mtid: &str, created: Bson, due_secs_ago: i64| {
        insert_irregular(&w, mtid, object_id_aged(0), Some(created), Some("pending"));
        w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
            doc! { "merchantTransactionId": mtid },
            doc! { "$set": { "status": "cancelled", "reconciliation.reason": "not_found",
            "reconciliation.nextCheckAt": DateTime::from_millis(ms_ago(due_secs_ago)) } },
        ))
        .unwrap();
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    };
    let iso = |secs| Bson::String(DateTime::from_millis(ms_ago(secs)).try_to_rfc3339_string().unwrap());
    cancelled("ORD-W-ISO", iso(ANCIENT), 0);
    cancelled("ORD-W-MS", Bson::Int64(ms_ago(ANCIENT)), 30 * 60); // overdue
    cancelled("ORD-W-EXPIRED", iso(3 * 86400), 3600); // past the 30 min + 24 h window
    let (store, e) = store_of(&w);
    let now = DateTime::now();
    let swept = w.block(store.sweep(now, &e)).unwrap();
    assert_eq!((swept.watches.len(), swept.overdue_watches), (2, 1), "{swept:?}");
    assert_eq!(w.block(store.count_overdue_watches(now, &e, &swept)).unwrap(), 1);

    w.once();

    for mtid in ["ORD-W-ISO", "ORD-W-MS"] {
        assert_eq!(w.status(mtid), ("needs_review".into(), "paid".into()), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("paid_after_cancel"), "{mtid}");
    }
    assert_eq!(w.status("ORD-W-EXPIRED"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.calls_for("ORD-W-EXPIRED"), 0, "outside its window: not asked");
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn a_due_watch_gets_its_share_of_candidates_when_drafts_fill_the_pool() {
    let w = World::new("watch_share");
    let drafts: Vec<Bson> = (0..12)
        .map(|i| w.insert_order(&format!("ORD-D{i:02}"), 49900, OLD + 100 - i, &[("tee", 1, None)]))
        .collect();
    let watch = |mtid: &str, age: i64, due_secs_ago: i64| {
        let id = w.insert_order(mtid, 49900, age, &[("tee", 1, None)]);
        w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
            doc! { "_id": &id },
            doc! { "$set": { "status": "cancelled", "reconciliation.reason": "pending_timeout",
            "reconciliation.nextCheckAt": DateTime::from_millis(ms_ago(due_secs_ago)) } },
        ))
        .unwrap();
        id
    };
    let overdue = watch("ORD-W1", ANCIENT + 60, 30 * 60);
    let due = watch("ORD-W2", ANCIENT, 60);
    watch("ORD-W-EXPIRED", 3 * 86400, 3600);
    let (store, e) = store_of(&w);
    let now = DateTime::now();

    let ids = w.block(store.candidates(now, &e, 8)).unwrap();
    let mut expected = vec![overdue.clone()];
    expected.extend(drafts[..3].iter().cloned());
    expected.push(due.clone());
    expected.extend(drafts[3..6].iter().cloned());
    assert_eq!(ids, expected, "every 4th place a due watch, oldest first");
    assert_eq!(
        w.block(store.count_overdue_watches(now, &e, &Default::default()))
            .unwrap(),
        1,
        "only ORD-W1 is due longer than the grace, inside its window"
    );

    let claimed = w.block(store.claim("A", now, Duration::from_secs(300), &e, 2)).unwrap();
    let claimed: Vec<String> = claimed.iter().map(|c| c.log_id()).collect();
    assert!(
        claimed.contains(&"ORD-W1".to_string()),
        "a claim of 2 with 12 drafts waiting still takes the watch: {claimed:?}"
    );
    assert_eq!(claimed.len(), 2, "{claimed:?}");
}

#[test]
fn a_not_found_order_paid_later_goes_to_review_after_its_first_watch_interval() {
    let w = World::new("late_payment_nf");
    w.insert_product("tee", 10);
    w.insert_order("ORD-NF", 49900, ANCIENT, &[("tee", 1, None)]);
    // Unknown to PhonePe: TRANSACTION_NOT_FOUND.
    w.once();
    assert_eq!(w.status("ORD-NF"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("ORD-NF").as_deref(), Some("not_found"));
    let cancelled_at = w.history("ORD-NF")[0].get_datetime("at").unwrap().timestamp_millis();
    let next = w
        .order("ORD-NF")
        .get_document("reconciliation")
        .unwrap()
        .get_datetime("nextCheckAt")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        next - cancelled_at,
        15 * 60 * 1000,
        "the first late-payment check is 15 minutes after the cancellation"
    );

    // Paid late at PhonePe; the re-check comes due.
    w.sim.script("ORD-NF", vec![Answer::completed(49900)]);
    w.block(w.db.collection::<mongodb::bson::Document>("orders").update_one(
        doc! { "merchantTransactionId": "ORD-NF" },
        doc! { "$set": { "reconciliation.nextCheckAt": DateTime::now() } },
    ))
    .unwrap();
    w.once();

    assert_eq!(w.status("ORD-NF"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-NF").as_deref(), Some("paid_after_cancel"));
    assert_eq!(w.stock("tee"), 10, "a person decides: nothing deducted automatically");
    let h = w.history("ORD-NF");
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[1].get_str("from").unwrap(), h[1].get_str("to").unwrap()),
        ("cancelled", "needs_review")
    );
}
