//! kill -9 of the service in the middle of a refund, at each step where PhonePe's answer is
//! not recorded yet: after the refund is recorded and before the request is sent; while PhonePe
//! holds the request (it made the refund, its answer never arrives); while a status call is
//! out. After a restart, PhonePe has seen each refund id requested once (the restarted service
//! asks the refund's status before requesting it again), no second attempt is started, and the
//! order ends `refunded`.

use std::time::Duration;

use phonepe_sim::{Answer, RefundAnswer};

use super::{parked_paid, refund_doc, rid, WAIT};
use crate::support::{eventually, int, Running, World};

/// `draft-reconciler run` refunding `insufficient_stock` orders by itself, polling every second.
fn service(w: &World, faults: Option<&str>) -> Running {
    let mut c = w.reconciler_command(&["run"]);
    c.env("RECONCILER_REFUNDS__AUTO", "insufficient_stock")
        .env("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1")
        .env("RECONCILER_JOB__INTERVAL_SECS", "3600")
        .env("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "120");
    if let Some(f) = faults {
        c.env("RECONCILER_FAULTS", f);
    }
    Running(c.spawn().expect("start draft-reconciler"))
}

/// SIGKILL, and reap it.
fn kill_nine(mut s: Running) {
    s.0.kill().expect("kill -9");
    s.0.wait().expect("reaped");
}

/// Another paid order parked short of stock (product `tee`, no stock).
fn parked(w: &World, mtid: &str) {
    w.insert_order(mtid, 49900, 600, &[("tee", 2, None)]);
    w.sim.script(mtid, vec![Answer::completed(49900)]);
    w.once();
    assert_eq!(w.reason(mtid).as_deref(), Some("insufficient_stock"));
}

/// After the restart: refunded once, and PhonePe saw the one refund id requested once.
fn refunded_once(w: &World, mtid: &str) {
    let service = service(w, None);
    eventually(WAIT, "the refund completes after the restart", || {
        w.status(mtid).0 == "refunded"
    });
    drop(service);
    let id = rid(mtid, 1);
    assert_eq!(w.status(mtid), ("refunded".into(), "refunded".into()), "{mtid}");
    assert_eq!(w.sim.state().refund_requests(&id), 1, "{mtid}: requested once");
    assert_eq!(w.sim.state().refunds_created(&id), 1, "{mtid}: one refund");
    assert_eq!(
        w.sim.state().refund_requests(&rid(mtid, 2)),
        0,
        "{mtid}: no second attempt"
    );
    let ended = w
        .history(mtid)
        .iter()
        .filter(|h| h.get_str("to").ok() == Some("refunded"))
        .count();
    assert_eq!(ended, 1, "{mtid}: one history entry for the refund's end");
    assert_eq!(w.stock("tee"), 0, "stock never moves on a refund");
}

#[test]
fn kill_9_mid_refund_leaves_one_refund_per_id_and_the_order_refunded() {
    let w = World::new("refund_kill9");

    // 1. Recorded and claimed, killed before the request left (fault point, test builds only).
    if cfg!(feature = "fault-injection") {
        parked_paid(&w, "K9-SENT", 0);
        let id = rid("K9-SENT", 1);
        let s = service(&w, Some("refund.before_call=delay600000@1"));
        eventually(WAIT, "the request is claimed", || {
            int(refund_doc(&w, "K9-SENT").get("posts").or(Some(&0.into()))) == 1
        });
        kill_nine(s);
        assert_eq!(w.sim.state().refund_requests(&id), 0, "killed before sending");
        refunded_once(&w, "K9-SENT");
        assert!(w.calls_for(&id) >= 1, "its status was asked before it was requested");
    } else {
        w.insert_product("tee", 0);
    }

    // 2. PhonePe makes the refund but its answer never reaches us.
    parked(&w, "K9-HELD");
    let id = rid("K9-HELD", 1);
    w.sim.state().delay_refund(&id, Duration::from_secs(120));
    let s = service(&w, None);
    eventually(WAIT, "PhonePe holds the request", || {
        w.sim.state().refund_requests(&id) == 1
    });
    kill_nine(s);
    refunded_once(&w, "K9-HELD");
    assert!(
        w.sim.state().refund_status_calls(&id) >= 1,
        "asked, not requested again"
    );

    // 3. Accepted, killed while a status call is out.
    parked(&w, "K9-POLL");
    let id = rid("K9-POLL", 1);
    w.sim
        .state()
        .script_refund(&id, vec![RefundAnswer::Pending, RefundAnswer::Completed]);
    w.sim.state().delay_refund_status(&id, Duration::from_secs(120));
    let s = service(&w, None);
    eventually(WAIT, "a status call is out", || {
        w.sim.state().refund_status_calls(&id) >= 1
    });
    kill_nine(s);
    refunded_once(&w, "K9-POLL");
}
