//! Errors change nothing: transient errors and timeouts reschedule with backoff, rejected
//! credentials and 429s stop the calls, one refused or unreadable order holds up no other and
//! is parked after its attempts.

use std::time::Duration;

use draft_reconciler::domain::Outcome;
use mongodb::bson::{doc, DateTime};
use phonepe_sim::Answer;

use super::{assert_due_in, assert_untouched, counter, due_in_secs, ANCIENT, OLD};
use crate::support::World;

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
    w.update_order(
        doc! { "_id": id },
        doc! { "$set": { "reconciliation.errors": 2, "reconciliation.attempts": 9 } },
    );
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
    w.settings.phonepe.salt_key = Some(secrecy::SecretString::from("wrong-salt"));
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
    w.update_order(
        doc! { "merchantTransactionId": mtid },
        doc! { "$set": { "reconciliation.nextCheckAt": past } },
    );
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
    w.update_order(
        doc! { "merchantTransactionId": "ORD-GARBLED" },
        doc! { "$set": { "reconciliation.errors": 5 } },
    );

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
