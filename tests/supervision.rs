//! Supervision against the real binary, with faults armed through `RECONCILER_FAULTS`
//! (the binary is built with the `fault-injection` feature by `scripts/test.sh`): a panicking
//! actor is restarted and the orders it held are settled exactly once; a restart storm exits 1.
#![cfg(feature = "fault-injection")]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use draft_reconciler::sim::Answer;
use mongodb::bson::{doc, Document};
use support::{eventually, reconciler_bin, World, MERCHANT, SALT};

fn service(w: &World, faults: &str, extra: &[(&str, &str)]) -> Command {
    let mut c = Command::new(reconciler_bin());
    c.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MONGODB_URI", &w.uri)
        .env("PHONEPE_BASE_URL", w.sim.base_url())
        .env("PHONEPE_MERCHANT_ID", MERCHANT)
        .env("PHONEPE_SALT_KEY", SALT)
        .env("PHONEPE_SALT_INDEX", "1")
        .env("RECONCILER_OPS__LISTEN", "")
        .env("RECONCILER_JOB__INTERVAL_SECS", "1")
        .env("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "1")
        .env("RECONCILER_JOB__LEASE_TTL_SECS", "3")
        .env("RECONCILER_FAULTS", faults)
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn seed(w: &World, n: usize) {
    w.insert_product("tee", 100);
    for i in 0..n {
        let mtid = format!("ORD-{i:02}");
        w.insert_order(&mtid, 49900, 600, &[("tee", 1, None)]);
        w.sim.script(&mtid, vec![Answer::completed(49900)]);
    }
}

fn count(w: &World, filter: Document) -> u64 {
    w.block(w.db.collection::<Document>("orders").count_documents(filter))
        .unwrap()
}

#[test]
fn a_committer_that_panics_is_restarted_and_every_order_is_settled_once() {
    let w = World::new("committer_panic");
    seed(&w, 6);
    // The committer panics on its 1st and 3rd settlement: the orders it held are reclaimed
    // when their leases expire.
    let mut child = service(&w, "committer.settle=panic@1,reconciler.reconcile=panic@3", &[])
        .spawn()
        .unwrap();

    eventually(
        Duration::from_secs(90),
        "every order confirmed after the restarts",
        || count(&w, doc! { "status": "confirmed" }) == 6,
    );
    assert_eq!(w.stock("tee"), 94, "each order deducted exactly once");
    for i in 0..6 {
        assert_eq!(w.history(&format!("ORD-{i:02}")).len(), 1, "ORD-{i:02} settled once");
    }
    assert!(child.try_wait().unwrap().is_none(), "the service survived the panics");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_restart_storm_escalates_to_a_non_zero_exit() {
    let w = World::new("restart_storm");
    seed(&w, 1);
    let mut child = service(
        &w,
        "scanner.tick=panic@1+",
        &[
            ("RECONCILER_SUPERVISOR__MAX_RESTARTS", "3"),
            ("RECONCILER_SUPERVISOR__RESTART_WINDOW_SECS", "60"),
        ],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "a scanner that panics on every tick must escalate"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(1),
        "escalation exits 1 so PM2/systemd restart the process"
    );
    assert_eq!(
        count(&w, doc! { "status": "draft" }),
        1,
        "nothing was settled by a broken scanner"
    );
}
