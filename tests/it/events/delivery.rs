//! How events reach the shop: at least once, in order per order, signed anew on every attempt.
//! 500 three times then 200 (four attempts, one id); the endpoint down for 30 s (everything after,
//! in order, later events waiting without spending attempts); kill -9 with a delivery in flight
//! (the same id again after restart); two instances (no event twice); replay (same ids and
//! bodies); the window (`failed` after it, `expired` unsent when first seen past it); Slack
//! copies of what a person must act on.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use mongodb::bson::{doc, DateTime};
use phonepe_sim::Answer;
use serde_json::json;

use super::*;
use crate::support::{eventually, http_get};

/// `n` paid drafts `PREFIX-i` due now (one item each).
fn paid_drafts(w: &World, prefix: &str, n: usize) -> Vec<String> {
    w.insert_product("tee", 10_000);
    (0..n)
        .map(|i| {
            let mtid = format!("{prefix}-{i:02}");
            w.insert_order(&mtid, 10_000, 600, &[("tee", 1, None)]);
            w.sim.script(&mtid, vec![Answer::completed(10_000)]);
            mtid
        })
        .collect()
}

#[test]
fn a_receiver_answering_500_three_times_then_200_gets_the_same_id_four_times_and_it_is_delivered() {
    let w = World::new("events_500s");
    paid_drafts(&w, "EV-R", 1);
    let r = Receiver::start();
    r.control(json!({ "fail_first": 3 }));
    let ops = free_port();
    let mut env = sending_to(&r);
    env.push(("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{ops}")));
    let _run = service(&w, &env);
    all_delivered(&w, 1);
    let e = &events(&w, None)[0];
    let got = r.got();
    assert_eq!(got.len(), 4, "{got:?}");
    let id = e.get_str("_id").unwrap();
    assert!(got.iter().all(|g| g.id == id), "one id on every attempt: {got:?}");
    assert!(got.iter().all(|g| g.body == got[0].body), "the same body every attempt");
    assert!(got.iter().all(|g| g.verified == Some(true) && !g.timestamp.is_empty()));
    assert_eq!(got.iter().map(|g| g.answer).collect::<Vec<_>>(), [500, 500, 500, 200]);
    assert_eq!(attempts(e), 4);
    assert_eq!(
        e.get_document("deliveries").unwrap().get_i32("lastStatus").ok(),
        Some(200)
    );
    assert!(e.get_datetime("deliveredAt").is_ok());
    eventually(WAIT, "the metrics count the attempts", || {
        let m = http_get(ops, "/metrics").map(|(_, b)| b).unwrap_or_default();
        m.contains("reconciler_events_total{type=\"order.confirmed\",result=\"retried\"} 3")
            && m.contains("reconciler_events_total{type=\"order.confirmed\",result=\"delivered\"} 1")
            && m.contains("reconciler_events_undelivered 0")
    });
}

#[test]
fn an_endpoint_down_for_30_s_gets_everything_after_in_order_per_order() {
    let w = World::new("events_down");
    // Each refunded automatically: needs_review, refund_requested, refunded, in that order.
    paid_drafts(&w, "EV-C", 3);
    let orders: Vec<String> = (0..4)
        .map(|i| {
            let mtid = format!("EV-D-{i}");
            w.insert_order(&mtid, 10_000, 600, &[("tee", 1, None)]);
            w.sim.script(&mtid, vec![Answer::completed(9_000)]);
            mtid
        })
        .collect();
    let mut r = Receiver::start();
    r.down();
    let mut env = sending_to(&r);
    env.push(("RECONCILER_REFUNDS__AUTO", "amount_mismatch".into()));
    let _run = service(&w, &env);
    let down = Instant::now();
    eventually(
        WAIT,
        "every order settled and refunded while the endpoint is down",
        || orders.iter().all(|m| w.status(m).0 == "refunded") && events(&w, None).len() == 4 * 3 + 3,
    );
    // Down for 30 s at least, and until each order's first event has failed twice.
    eventually(WAIT, "30 s down, retried", || {
        let first_of_each = events(&w, None)
            .into_iter()
            .filter(|e| e.get_str("type") != Ok("order.refund_requested") && e.get_str("type") != Ok("order.refunded"));
        down.elapsed() >= Duration::from_secs(30) && first_of_each.into_iter().all(|e| attempts(&e) >= 2)
    });
    for mtid in &orders {
        let waiting: Vec<i64> = events(&w, Some(mtid)).iter().skip(1).map(attempts).collect();
        assert_eq!(waiting, [0, 0], "{mtid}: later events wait without spending attempts");
    }
    r.up();
    all_delivered(&w, 15);
    let accepted = r.accepted();
    assert_eq!(accepted.len(), 15, "each delivered once");
    for mtid in &orders {
        let got: Vec<&str> = accepted.iter().filter(|g| g.mtid() == mtid).map(Got::ty).collect();
        assert_eq!(
            got,
            ["order.needs_review", "order.refund_requested", "order.refunded"],
            "{mtid}"
        );
        assert_eq!(types(&w, mtid), got, "{mtid}: in the order they were recorded");
        let later: Vec<i64> = events(&w, Some(mtid)).iter().skip(1).map(attempts).collect();
        assert_eq!(later, [1, 1], "{mtid}: each later event sent once, when its turn came");
    }
}

#[test]
fn kill_9_during_a_delivery_sends_the_same_id_again_after_restart() {
    let w = World::new("events_kill");
    let orders = paid_drafts(&w, "EV-K", 3);
    // Settled first, so the kill lands on deliveries only (no order left leased to the dead).
    w.once();
    assert_eq!(events(&w, None).len(), 3);
    let r = Receiver::start();
    // The first delivery of each event is held far longer than the kill takes.
    r.control(json!({ "hold_first": 120 }));
    let env = sending_to(&r);
    let mut run = service(&w, &env);
    eventually(WAIT, "a delivery in flight", || !r.got().is_empty());
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    let held = r.got()[0].id.clone();
    let e = events(&w, None)
        .into_iter()
        .find(|e| e.get_str("_id") == Ok(held.as_str()))
        .expect("the held event");
    assert_eq!(state(&e), "pending", "killed before the answer: not delivered");
    assert_eq!(attempts(&e), 1);
    assert!(
        e.get_document("deliveries").unwrap().get_str("leaseOwner").is_ok(),
        "leased to the dead process"
    );

    let _again = service(&w, &env);
    all_delivered(&w, orders.len());
    let got = r.got();
    let ids: Vec<&str> = got.iter().filter(|g| g.id == held).map(|g| g.id.as_str()).collect();
    assert!(ids.len() >= 2, "the held event was sent again under its id: {got:?}");
    let accepted: HashSet<String> = r.accepted().into_iter().map(|g| g.id).collect();
    assert!(accepted.contains(&held));
    assert_eq!(events(&w, None).len(), orders.len(), "no event lost");
    for e in events(&w, None) {
        assert!(accepted.contains(e.get_str("_id").unwrap()), "{e:?} delivered");
    }
}

#[test]
fn two_instances_deliver_each_event_once() {
    let w = World::new("events_two");
    let orders = paid_drafts(&w, "EV-2", 40);
    let r = Receiver::start();
    let env = sending_to(&r);
    let _a = service(&w, &env);
    let _b = service(&w, &env);
    all_delivered(&w, orders.len());
    assert_eq!(events(&w, None).len(), orders.len());
    let got = r.got();
    let mut seen = HashMap::new();
    for g in &got {
        *seen.entry(g.id.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), orders.len());
    assert!(seen.values().all(|n| *n == 1), "an event was sent twice: {seen:?}");
    assert_eq!(r.accepted().len(), orders.len());
}

#[test]
fn replay_sends_the_same_ids_and_bodies_again_and_list_and_show_say_what_happened() {
    let w = World::new("events_replay");
    let orders = paid_drafts(&w, "EV-P", 3);
    w.once();
    let r = Receiver::start();
    let env = sending_to(&r);
    let run = service(&w, &env);
    all_delivered(&w, 3);
    drop(run);
    let first = r.accepted();
    assert_eq!(first.len(), 3);

    let list = command(&w, &["events", "list", "--json"], &[]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let lines: Vec<Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let mut keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let mut want = [
            "attempts",
            "createdAt",
            "deliveredAt",
            "id",
            "lastStatus",
            "merchantTransactionId",
            "state",
            "type",
        ];
        want.sort();
        assert_eq!(keys, want, "{l}");
        assert_eq!(
            (l["state"].as_str(), l["attempts"].as_i64(), l["lastStatus"].as_i64()),
            (Some("delivered"), Some(1), Some(200))
        );
    }
    let one = lines[0]["id"].as_str().unwrap().to_string();
    let show = command(&w, &["events", "show", &one], &[]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    let shown: Value = serde_json::from_slice(&show.stdout).expect("JSON");
    assert_eq!(
        shown["body"],
        first.iter().find(|g| g.id == one).unwrap().body,
        "the body as sent"
    );
    assert_eq!(command(&w, &["events", "show", "evt_nope"], &[]).status.code(), Some(1));

    // Replay one by id, then one order's, then everything since a moment before the first.
    let out = command(&w, &["events", "replay", &one], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let e = events(&w, None)
        .into_iter()
        .find(|e| e.get_str("_id") == Ok(one.as_str()))
        .unwrap();
    assert_eq!((state(&e), attempts(&e)), ("pending", 0));
    assert!(e.get_datetime("deliveredAt").is_err(), "deliveredAt cleared");
    let out = command(&w, &["events", "replay", "--order", &orders[1]], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let none = command(&w, &["events", "replay", "--order", "EV-NOBODY"], &[]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    let _run = service(&w, &env);
    eventually(WAIT, "the replays delivered", || r.accepted().len() == 5);
    all_delivered(&w, 3);
    let again: Vec<Got> = r.accepted().into_iter().skip(3).collect();
    let ids: HashSet<&str> = again.iter().map(|g| g.id.as_str()).collect();
    let order1 = events(&w, Some(&orders[1]))[0].get_str("_id").unwrap().to_string();
    assert_eq!(ids, HashSet::from([one.as_str(), order1.as_str()]));
    for g in &again {
        let before = first.iter().find(|f| f.id == g.id).unwrap();
        assert_eq!(g.body, before.body, "the same body");
    }
    let since = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    let since = since.try_to_rfc3339_string().unwrap();
    let out = command(&w, &["events", "replay", "--since", &since], &[]);
    assert!(text(&out).contains("3 event(s)"), "{}", text(&out));
    eventually(WAIT, "everything since then delivered again", || {
        r.accepted().len() == 8
    });
}

#[test]
fn outside_the_window_an_event_fails_and_old_news_expires_unsent() {
    let w = World::new("events_window");
    let orders = paid_drafts(&w, "EV-W", 2);
    w.once();
    let hours_ago = |h: i64| DateTime::from_millis(DateTime::now().timestamp_millis() - h * 3_600_000);
    // One recorded long before the URL was set: old news. One tried for longer than the window.
    let old = events(&w, Some(&orders[0]))[0].get_str("_id").unwrap().to_string();
    let tried = events(&w, Some(&orders[1]))[0].get_str("_id").unwrap().to_string();
    let set = |id: &str, d: mongodb::bson::Document| {
        w.block(
            w.db.collection::<mongodb::bson::Document>("reconciler_events")
                .update_one(doc! { "_id": id }, d),
        )
        .expect("update");
    };
    set(
        &old,
        doc! { "$set": { "createdAt": hours_ago(73), "deliveries.windowStart": hours_ago(73) } },
    );
    set(
        &tried,
        doc! { "$set": { "deliveries.windowStart": hours_ago(73), "deliveries.attempts": 5_i64 } },
    );
    let r = Receiver::start();
    let ops = free_port();
    let mut env = sending_to(&r);
    env.push(("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{ops}")));
    let _run = service(&w, &env);
    eventually(WAIT, "both closed", || {
        let states: Vec<String> = events(&w, None).iter().map(|e| state(e).to_string()).collect();
        states.contains(&"expired".to_string()) && states.contains(&"failed".to_string())
    });
    assert!(r.got().is_empty(), "nothing sent: {:?}", r.got());
    let e = |id: &str| {
        events(&w, None)
            .into_iter()
            .find(|e| e.get_str("_id") == Ok(id))
            .unwrap()
    };
    assert_eq!(state(&e(&old)), "expired");
    assert_eq!(state(&e(&tried)), "failed");
    let failed = command(&w, &["events", "list", "--failed", "--json"], &[]);
    let lines: Vec<&str> = std::str::from_utf8(&failed.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&tried), "{}", lines[0]);
    eventually(WAIT, "the failed gauge and counter", || {
        let m = http_get(ops, "/metrics").map(|(_, b)| b).unwrap_or_default();
        m.contains("reconciler_events_failed 1")
            && m.contains("reconciler_events_total{type=\"order.confirmed\",result=\"failed\"} 1")
            && m.contains("reconciler_events_total{type=\"order.confirmed\",result=\"expired\"} 1")
    });
}

#[test]
fn a_person_gets_a_slack_line_for_what_they_must_act_on_and_the_shop_gets_everything() {
    let w = World::new("events_slack");
    paid_drafts(&w, "EV-S", 1);
    w.insert_order("EV-S-SHORT", 10_000, 600, &[("tee", 1, None)]);
    w.sim.script("EV-S-SHORT", vec![Answer::completed(9_000)]);
    let r = Receiver::start();
    let mut env = sending_to(&r);
    env.push((
        "RECONCILER_NOTIFY__SLACK_URL",
        format!("http://127.0.0.1:{}/slack", r.port),
    ));
    let _run = service(&w, &env);
    all_delivered(&w, 2);
    eventually(WAIT, "the Slack copy delivered", || {
        events(&w, Some("EV-S-SHORT"))[0]
            .get_document("slack")
            .is_ok_and(|s| s.get_str("state") == Ok("delivered"))
    });
    let slack: Vec<Got> = r.got().into_iter().filter(|g| g.path == "/slack").collect();
    assert_eq!(slack.len(), 1, "one copy, for the parked order only: {slack:?}");
    let line = slack[0].body["text"].as_str().expect("incoming-webhook JSON");
    assert!(
        line.contains("EV-S-SHORT") && line.contains("amount_mismatch"),
        "{line}"
    );
    assert!(
        events(&w, Some("EV-S-00"))[0].get("slack").is_none(),
        "a confirmation is the shop's only"
    );
    assert_eq!(r.accepted().len(), 2);
}
