//! Refunds end, and every PhonePe call they make goes through the one gateway: a refund PhonePe
//! refuses is `refund_failed` at once (one request, never re-sent); refund ids fit PhonePe's
//! limits whatever the order id; two shells after a failed refund start one new refund; a v2
//! refund callback settles the refund it names; an automatic refund PhonePe cannot verify backs
//! off, then stops; a 429 met by the refund poller pauses the reconcilers' calls and is counted.

use std::process::Stdio;
use std::time::{Duration, Instant};

use draft_reconciler::refund::AUTO_REFUND_TRIES;
use mongodb::bson::{doc, DateTime, Document};
use phonepe_sim::Webhook;
use phonepe_sim::{Answer, RefundAnswer};

use super::late::Hooked;
use super::{code, parked_paid, poll, refund_doc, review, rid, text, WAIT};
use crate::support::{eventually, World};

/// Another paid order parked short of stock (product `tee` exists already, with no stock).
fn also_parked(w: &World, mtid: &str) {
    w.insert_order(mtid, 49900, 600, &[("tee", 2, None)]);
    w.sim.script(mtid, vec![Answer::completed(49900)]);
    w.once();
    assert_eq!(w.reason(mtid).as_deref(), Some("insufficient_stock"));
}

fn recon(w: &World, mtid: &str) -> Document {
    w.order(mtid)
        .get_document("reconciliation")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_refund_phonepe_refuses_is_refund_failed_at_once_and_never_asked_again() {
    let w = World::new("refund_refused");
    parked_paid(&w, "RF-400", 0);
    let id = rid("RF-400", 1);
    w.sim.state().refuse_refund(&id, "BAD_REQUEST");
    let out = review(&w, &["review", "resolve", "RF-400", "refund"], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("BAD_REQUEST"), "{}", text(&out));
    assert_eq!(w.status("RF-400"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("RF-400").as_deref(), Some("refund_failed"));
    assert_eq!(refund_doc(&w, "RF-400").get_str("failCode").ok(), Some("BAD_REQUEST"));
    let last = w.history("RF-400").last().cloned().expect("history");
    assert_eq!(
        (last.get_str("to").ok(), last.get_str("code").ok()),
        (Some("needs_review"), Some("BAD_REQUEST"))
    );
    for _ in 0..3 {
        poll(&w, &[]);
    }
    assert_eq!(w.sim.state().refund_requests(&id), 1, "one request, never re-sent");
    assert_eq!(w.sim.state().refund_status_calls(&id), 0);

    // The operator tries again: a new id, and this one PhonePe takes.
    let again = review(&w, &["review", "resolve", "RF-400", "refund"], &[]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert_eq!(w.sim.state().refunds_created(&rid("RF-400", 2)), 1);
    assert_eq!(w.sim.state().refund_requests(&id), 1);
}

#[test]
fn refund_ids_fit_phonepes_limits_whatever_the_order_id() {
    let w = World::new("refund_ids");
    let ids = [format!("ORD-{}", "A".repeat(30)), format!("ORD-{}", "B".repeat(58))];
    assert_eq!((ids[0].len(), ids[1].len()), (34, 62));
    parked_paid(&w, &ids[0], 0);
    also_parked(&w, &ids[1]);
    for mtid in &ids {
        let out = review(&w, &["review", "resolve", mtid, "refund"], &[]);
        assert_eq!(code(&out), 0, "{mtid}: {}", text(&out));
        let refund = refund_doc(&w, mtid);
        let id = refund.get_str("id").expect("a refund id");
        assert!(id.len() <= 35, "{id}: PhonePe v1 takes at most 35 characters");
        assert!(
            id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{id}"
        );
        assert_eq!(w.sim.state().refunds_created(id), 1, "{mtid}: PhonePe made it");
    }
    eventually(WAIT, "both refunds complete", || {
        poll(&w, &[]);
        ids.iter().all(|m| w.status(m).0 == "refunded")
    });
}

/// Two shells refund again after a FAILED refund: the attempt number is taken together with the
/// check that the refund read is the last one, so one shell starts refund 2 and the other,
/// whose read is stale by then, exits 1. PhonePe never sees refund 2 twice.
#[test]
fn two_shells_after_a_failed_refund_start_one_new_refund() {
    let w = World::new("refund_two_shells");
    parked_paid(&w, "RS-2", 0);
    w.sim.state().script_refund(&rid("RS-2", 1), vec![RefundAnswer::Failed]);
    let first = review(&w, &["review", "resolve", "RS-2", "refund"], &[]);
    assert_eq!(code(&first), 0, "{}", text(&first));
    eventually(WAIT, "refund 1 failed", || {
        poll(&w, &[]);
        w.reason("RS-2").as_deref() == Some("refund_failed")
    });
    // Refund 2 fails too. Both shells read the order, then check the payment with PhonePe: the
    // first check is answered after 5 s (so both reads happen before either shell writes), the
    // second after 15 s, so that shell's read is stale by the time it writes.
    w.sim.state().script_refund(&rid("RS-2", 2), vec![RefundAnswer::Failed]);
    w.sim.script(
        "RS-2",
        vec![
            Answer::completed(49900).delay(5_000),
            Answer::completed(49900).delay(15_000),
        ],
    );
    let spawn = || {
        let mut c = w.reconciler_command(&["review", "resolve", "RS-2", "refund"]);
        c.env("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "60")
            .env("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::support::Running(c.spawn().expect("spawn"))
    };
    let (mut a, mut b) = (spawn(), spawn());
    eventually(WAIT, "the first shell is done", || {
        a.try_wait().expect("wait").is_some() || b.try_wait().expect("wait").is_some()
    });
    // PhonePe fails refund 2 before the slow shell writes.
    eventually(WAIT, "refund 2 failed", || {
        poll(&w, &[]);
        w.status("RS-2").1 == "paid" && refund_doc(&w, "RS-2").get_str("id").ok() == Some(rid("RS-2", 2).as_str())
    });
    let outputs = [a, b].map(|mut c| {
        let status = c.0.wait().expect("wait");
        let mut err = String::new();
        std::io::Read::read_to_string(c.0.stderr.as_mut().expect("stderr"), &mut err).ok();
        (status.code().unwrap_or(-1), err)
    });
    let mut codes = [outputs[0].0, outputs[1].0];
    codes.sort_unstable();
    assert_eq!(codes, [0, 1], "{outputs:?}");
    assert_eq!(w.sim.state().refund_requests(&rid("RS-2", 2)), 1, "refund 2 asked once");
    assert_eq!(w.sim.state().refund_requests(&rid("RS-2", 3)), 0, "no refund 3");
    let asked = w
        .history("RS-2")
        .iter()
        .filter(|h| h.get_str("reason").ok() == Some("refund_requested"))
        .count();
    assert_eq!(asked, 2, "refunds 1 and 2, each recorded once");
}

#[test]
fn a_v2_refund_callback_settles_the_refund_it_names_at_once() {
    let w = World::new("refund_callback");
    parked_paid(&w, "RC-OK", 0);
    also_parked(&w, "RC-NO");
    let svc = Hooked::start(&w, &[("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "3600")]);
    for mtid in ["RC-OK", "RC-NO"] {
        w.sim.state().script_refund(&rid(mtid, 1), vec![RefundAnswer::Pending]);
        let out = review(&w, &["review", "resolve", mtid, "refund"], &[]);
        assert_eq!(code(&out), 0, "{mtid}: {}", text(&out));
    }
    let asked = |m: &str| w.sim.state().refund_status_calls(&rid(m, 1));
    let asked_before = (asked("RC-OK"), asked("RC-NO"));
    let hook = |m: &str, a| w.sim.state().refund_webhook(&rid(m, 1), a).expect("a refund callback");

    assert_eq!(svc.deliver(&w, &hook("RC-OK", RefundAnswer::Completed)), 200);
    assert_eq!(w.status("RC-OK"), ("refunded".into(), "refunded".into()));
    let last = w.history("RC-OK").last().cloned().expect("history");
    assert_eq!(
        (last.get_str("to").ok(), last.get_str("by").ok()),
        (Some("refunded"), Some("webhook"))
    );
    assert_eq!(svc.deliver(&w, &hook("RC-NO", RefundAnswer::Failed)), 200);
    assert_eq!(w.status("RC-NO"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("RC-NO").as_deref(), Some("refund_failed"));

    // A duplicate, an accepted event and a refund id we never recorded: 200, nothing changes.
    let (ok, no) = (w.order("RC-OK"), w.order("RC-NO"));
    assert_eq!(svc.deliver(&w, &hook("RC-OK", RefundAnswer::Completed)), 200);
    assert_eq!(svc.deliver(&w, &hook("RC-NO", RefundAnswer::Pending)), 200);
    let auth = draft_reconciler::phonepe::checksum::webhook_v2_authorization("webhook-user", "webhook-pass");
    let body = serde_json::json!({ "event": "pg.refund.completed", "payload": {
        "merchantRefundId": rid("RC-OK", 7), "originalMerchantOrderId": "RC-OK", "state": "COMPLETED", "amount": 100 } });
    let unknown = Webhook {
        headers: vec![("Authorization".into(), auth)],
        body: body.to_string(),
    };
    assert_eq!(svc.deliver(&w, &unknown), 200);
    assert_eq!((w.order("RC-OK"), w.order("RC-NO")), (ok, no));
    assert_eq!(
        (asked("RC-OK"), asked("RC-NO")),
        asked_before,
        "settled by the callback: PhonePe not asked"
    );
    eventually(WAIT, "counted", || {
        svc.metrics()
            .contains("reconciler_webhooks_total{event=\"pg.refund.completed\",result=\"accepted\"} 1")
    });
}

/// At a 2 s poll, an automatic refund of an order PhonePe no longer reports paid is tried on
/// the decaying schedule (a minute, then two, ...), not every pass. The window is a minute of
/// wall time: it measures the pace, it does not wait for an effect.
#[test]
fn an_automatic_refund_phonepe_cannot_verify_is_asked_at_most_three_times_a_minute() {
    let w = World::new("refund_auto_backoff");
    parked_paid(&w, "AB-1", 0);
    w.sim.script("AB-1", vec![Answer::pending()]);
    let before = w.calls_for("AB-1");
    let svc = Hooked::start(
        &w,
        &[
            ("RECONCILER_REFUNDS__AUTO", "insufficient_stock"),
            ("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "2"),
        ],
    );
    eventually(WAIT, "the first automatic try", || w.calls_for("AB-1") > before);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let asked = w.calls_for("AB-1") - before;
        assert!(asked <= 3, "asked {asked} times within {:?}", started.elapsed());
        // A look every half second all through the measured minute (not a wait for an effect).
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(svc);
    let auto = recon(&w, "AB-1")
        .get_document("autoRefund")
        .cloned()
        .unwrap_or_default();
    assert!(auto.get_i64("tries").unwrap_or(0) >= 1, "{auto:?}");
    assert_eq!(w.status("AB-1"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.sim.state().refund_requests(&rid("AB-1", 1)), 0, "nothing refunded");
}

#[test]
fn an_automatic_refund_stops_after_its_cap_and_review_says_why() {
    let w = World::new("refund_auto_cap");
    parked_paid(&w, "AB-CAP", 0);
    w.sim.script("AB-CAP", vec![Answer::pending()]);
    let before = w.calls_for("AB-CAP");
    let due_now = || {
        w.update_order(
            doc! { "merchantTransactionId": "AB-CAP" },
            doc! { "$set": { "reconciliation.autoRefund.nextAt": DateTime::now() } },
        )
    };
    poll(&w, &["insufficient_stock"]);
    for _ in 1..AUTO_REFUND_TRIES + 2 {
        due_now();
        poll(&w, &["insufficient_stock"]);
    }
    let asked = w.calls_for("AB-CAP") - before;
    assert_eq!(asked, AUTO_REFUND_TRIES as usize, "tried up to the cap, then not again");
    let auto = recon(&w, "AB-CAP")
        .get_document("autoRefund")
        .cloned()
        .unwrap_or_default();
    assert_eq!(auto.get_bool("stopped").ok(), Some(true), "{auto:?}");
    assert_eq!(w.status("AB-CAP"), ("needs_review".into(), "paid".into()));
    let stopped = w.history("AB-CAP");
    assert!(
        stopped
            .iter()
            .any(|h| h.get_str("reason").ok() == Some("auto_refund_stopped")),
        "{stopped:?}"
    );
    let show = review(&w, &["review", "show", "AB-CAP"], &[]);
    let out = text(&show);
    assert!(
        out.contains("auto_refund_stopped") && out.contains("does not report a completed payment"),
        "{out}"
    );
    let list = review(&w, &["review", "list", "--json"], &[]);
    assert!(text(&list).contains("auto_refund_stopped"), "{}", text(&list));
}

/// The refund poller's calls go through the gateway: a 429 it meets pauses every PhonePe call
/// (a due draft is given back unasked) and is counted in the request metric.
#[test]
fn a_429_met_by_the_refund_poller_pauses_the_reconcilers_calls_and_is_counted() {
    let w = World::new("refund_429");
    parked_paid(&w, "RL-R", 0);
    let id = rid("RL-R", 1);
    w.sim.state().script_refund(&id, vec![RefundAnswer::Pending]);
    let out = review(&w, &["review", "resolve", "RL-R", "refund"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    w.sim.state().fail_refund_calls(&id, Some(429));
    let asked = w.sim.state().refund_status_calls(&id);
    let svc = Hooked::start(
        &w,
        &[
            ("RECONCILER_JOB__INTERVAL_SECS", "1"),
            ("RECONCILER_JOB__LOOKBACK_SECS", "300"),
            ("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1"),
        ],
    );
    eventually(WAIT, "the poller met the 429", || {
        w.sim.state().refund_status_calls(&id) > asked
    });
    w.insert_order("RL-D", 10_000, 600, &[("tee", 1, None)]);
    w.sim.script("RL-D", vec![Answer::completed(10_000)]);
    eventually(WAIT, "the scanner handed RL-D to a reconciler", || {
        recon(&w, "RL-D").get_str("lastCode").is_ok()
    });
    assert_eq!(recon(&w, "RL-D").get_str("lastCode").ok(), Some("CALLS_PAUSED"));
    assert_eq!(w.calls_for("RL-D"), 0, "no call while paused");
    assert_eq!(w.status("RL-D"), ("draft".into(), "pending".into()));
    let counted = [
        "reconciler_phonepe_requests_total{api=\"refund_status\",code=\"TOO_MANY_REQUESTS\"} 1",
        "reconciler_phonepe_rate_limited_total 1",
    ];
    eventually(WAIT, "the 429 counted", || {
        let m = svc.metrics();
        counted.iter().all(|l| m.contains(l))
    });
}

/// A refund PhonePe keeps answering PENDING is asked on the decaying schedule and, after
/// `refund::TRIES_TO_FLAG` asks, flagged for a person: `review list` and `show` say so.
#[test]
fn a_refund_without_a_final_answer_is_flagged_after_its_cap() {
    use draft_reconciler::refund::TRIES_TO_FLAG;
    let w = World::new("refund_flagged");
    parked_paid(&w, "RP-F", 0);
    let id = rid("RP-F", 1);
    w.sim.state().script_refund(&id, vec![RefundAnswer::Pending]);
    let out = review(&w, &["review", "resolve", "RP-F", "refund"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // The request answered PENDING was the first ask; the poller asks the rest.
    let tries = || crate::support::int(refund_doc(&w, "RP-F").get("tries"));
    while tries() < i64::from(TRIES_TO_FLAG) {
        assert!(!refund_doc(&w, "RP-F").get_bool("flagged").unwrap_or(false));
        w.update_order(
            doc! { "merchantTransactionId": "RP-F" },
            doc! { "$set": { "reconciliation.refund.nextPollAt": DateTime::now() } },
        );
        poll(&w, &[]);
    }
    let refund = refund_doc(&w, "RP-F");
    assert_eq!(refund.get_bool("flagged").ok(), Some(true), "{refund:?}");
    assert_eq!(
        w.sim.state().refund_status_calls(&id),
        TRIES_TO_FLAG - 1,
        "one status call per due ask"
    );
    assert_eq!(w.sim.state().refund_requests(&id), 1);
    let list = review(&w, &["review", "list"], &[]);
    assert!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l.starts_with("RP-F") && l.contains("refund_flagged")),
        "{}",
        text(&list)
    );
    // Still asked, and PhonePe's answer still ends it.
    w.sim.state().script_refund(&id, vec![RefundAnswer::Completed]);
    eventually(WAIT, "the flagged refund completes", || {
        w.update_order(
            doc! { "merchantTransactionId": "RP-F" },
            doc! { "$set": { "reconciliation.refund.nextPollAt": DateTime::now() } },
        );
        poll(&w, &[]);
        w.status("RP-F").0 == "refunded"
    });
}
