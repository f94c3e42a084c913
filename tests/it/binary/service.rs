//! The `run` service: orders settled, every metric family served, JSON logs that carry each
//! order's id and no secrets; graceful shutdown on SIGTERM, and a second signal.

use std::time::Duration;

use mongodb::bson::doc;
use phonepe_sim::Answer;

use super::{assert_no_secrets, base_env, command, kill_term, settle_fixture, wait_exit, LOUD_SALT};
use crate::support::{self, eventually, unsettled, World};

/// Every JSON line of `logs` that mentions an order id must carry it as `merchantTransactionId`
/// (on the event, or on an enclosing span); returns the ids that had at least one such line.
fn order_lines_carry_their_id(logs: &str, ids: &[&str]) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let mut carried: Vec<&str> = vec![];
        carried.extend(v["merchantTransactionId"].as_str());
        carried.extend(v["span"]["merchantTransactionId"].as_str());
        for span in v["spans"].as_array().into_iter().flatten() {
            carried.extend(span["merchantTransactionId"].as_str());
        }
        for id in ids.iter().filter(|id| line.contains(*id)) {
            assert!(
                carried.contains(id),
                "a line about {id} without merchantTransactionId: {line}"
            );
        }
        seen.extend(carried.into_iter().map(str::to_string));
    }
    seen
}

#[test]
fn run_settles_orders_serves_every_metric_and_logs_json_without_secrets() {
    let w = World::with_salt("run_service", LOUD_SALT);
    settle_fixture(&w, 5);
    // One order for each other path the metrics count.
    w.insert_product("rare", 0);
    w.insert_order("ORD-FAIL", 100, 600, &[("tee", 1, None)]);
    w.sim.script("ORD-FAIL", vec![Answer::failed()]);
    w.insert_order("ORD-MISMATCH", 49900, 600, &[("tee", 1, None)]);
    w.sim.script("ORD-MISMATCH", vec![Answer::completed(100)]);
    w.insert_order("ORD-SHORT", 500, 600, &[("rare", 1, None)]);
    w.sim.script("ORD-SHORT", vec![Answer::completed(500)]);
    w.insert_order("ORD-5XX", 500, 600, &[("tee", 1, None)]);
    w.sim.script("ORD-5XX", vec![Answer::http_error(500)]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = base_env(&w);
    env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    env.insert("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{port}"));
    env.insert("RECONCILER_JOB__INTERVAL_SECS", "1".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let mut child = support::Running(
        command(&env, &["run"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    eventually(
        Duration::from_secs(60),
        "every answered order settled by the service",
        || unsettled(&w) == 1 && w.calls_for("ORD-5XX") >= 1,
    );
    assert_eq!(w.stock("tee"), 995);
    assert_eq!(w.stock("rare"), 0);
    assert_eq!(w.status("ORD-FAIL"), ("cancelled".into(), "failed".into()));
    assert_eq!(w.status("ORD-MISMATCH").0, "needs_review");
    assert_eq!(w.reason("ORD-SHORT").as_deref(), Some("insufficient_stock"));
    assert_eq!(w.status("ORD-5XX").0, "draft", "a 5xx changes nothing");
    // Last, so its 60 s pause of every PhonePe call holds up nothing else: a 429.
    w.insert_order("ORD-429", 500, 600, &[("tee", 1, None)]);
    w.sim.script("ORD-429", vec![Answer::http_error(429)]);
    eventually(Duration::from_secs(30), "PhonePe answered ORD-429 with 429", || {
        w.calls_for("ORD-429") >= 1
    });

    let get = |path: &str| support::http_get(port, path).ok_or(());
    let expected = [
        "reconciler_orders_settled_total{outcome=\"confirmed\"} 5",
        "reconciler_orders_settled_total{outcome=\"cancelled\"} 1",
        "reconciler_orders_settled_total{outcome=\"needs_review\"} 2",
        "reconciler_stock_commit_failures_total{reason=\"insufficient_stock\"} 1",
        "reconciler_phonepe_api_errors_total{kind=\"server_error\"} 1",
        "reconciler_phonepe_rate_limited_total 1",
        "reconciler_phonepe_requests_total{api=\"status\",code=\"PAYMENT_SUCCESS\"} 7",
        "reconciler_needs_review_orders 2",
        "reconciler_scan_interval_seconds 1",
        "reconciler_rate_limit_per_minute 6000",
        "reconciler_actor_restarts_total{actor=\"scanner\"} 0",
        "reconciler_phonepe_request_duration_seconds_bucket{api=\"status\",le=\"+Inf\"} 10",
        "reconciler_rate_limit_wait_seconds_bucket{le=\"0.01\"}",
        "reconciler_scan_runs_total{result=\"ok\"}",
        "reconciler_last_successful_scan_timestamp_seconds ",
        "reconciler_eligible_backlog ",
        "reconciler_circuit_open 1", // the 429 paused every call for 60 s
    ];
    let metrics = support::eventually_ok(Duration::from_secs(30), "every expected line in /metrics", || {
        let body = get("/metrics").map(|(_, body)| body).unwrap_or_default();
        let missing: Vec<&&str> = expected.iter().filter(|e| !body.contains(**e)).collect();
        if missing.is_empty() {
            return Ok(body);
        }
        Err(format!("/metrics lacks {missing:?}:\n{body}"))
    });
    let build = format!("reconciler_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(metrics.contains(&build), "{metrics}");
    for family in draft_reconciler::telemetry::names::ALL {
        assert!(
            metrics.contains(&format!("# HELP {family} ")),
            "no HELP for {family}:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}:\n{metrics}"
        );
        assert!(
            metrics.lines().any(|l| l.starts_with(family) && !l.starts_with('#')),
            "no sample of {family}:\n{metrics}"
        );
    }
    assert_eq!(get("/healthz").unwrap().0, 200);
    assert_eq!(get("/readyz").unwrap().0, 200);

    kill_term(&child);
    let status = support::eventually_some(Duration::from_secs(60), "the service exits after SIGTERM", || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let stdout = std::fs::read_to_string(&log).unwrap();
    let logs = format!(
        "{stdout}{}",
        std::fs::read_to_string(dir.path().join("err.log")).unwrap()
    );
    assert_no_secrets(&logs, &["ORD-000", "ORD-FAIL", "ORD-429"]);
    assert!(
        logs.lines().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "LOG_LEVEL=debug took effect"
    );
    let ids = [
        "ORD-000",
        "ORD-004",
        "ORD-FAIL",
        "ORD-MISMATCH",
        "ORD-SHORT",
        "ORD-5XX",
        "ORD-429",
    ];
    let seen = order_lines_carry_their_id(&stdout, &ids);
    for id in ids {
        assert!(seen.contains(id), "no JSON line carries merchantTransactionId {id}");
    }
}

#[test]
fn sigterm_lets_in_flight_orders_finish_then_releases_leases_and_exits_0() {
    let w = World::new("sigterm_graceful");
    w.insert_product("tee", 10);
    w.insert_order("ORD-INFLIGHT", 49900, 600, &[("tee", 1, None)]);
    w.sim.script("ORD-INFLIGHT", vec![Answer::completed(49900).delay(2000)]);
    let mut child = support::Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_JOB__INTERVAL_SECS", "1")
            .spawn()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(30),
        "PhonePe is being asked about the order",
        || w.calls_for("ORD-INFLIGHT") == 1,
    );

    kill_term(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));

    assert_eq!(status.code(), Some(0));
    assert_eq!(
        w.status("ORD-INFLIGHT"),
        ("confirmed".into(), "paid".into()),
        "in-flight work finished"
    );
    assert_eq!(w.stock("tee"), 9);
    let leased = w.block(
        w.orders()
            .count_documents(doc! { "reconciliation.leaseOwner": { "$exists": true } }),
    );
    assert_eq!(leased.unwrap(), 0, "no lease left behind");
}

#[test]
fn a_second_signal_exits_at_once_without_settling_anything() {
    let w = World::new("sigterm_twice");
    w.insert_product("tee", 10);
    w.insert_order("ORD-SLOW", 49900, 600, &[("tee", 1, None)]);
    // PhonePe takes 20 s to answer: a graceful exit would wait for it and confirm the order.
    w.sim.script("ORD-SLOW", vec![Answer::completed(49900).delay(20_000)]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let mut child = support::Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_JOB__INTERVAL_SECS", "1")
            .env("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "30")
            .env("RECONCILER_JOB__LEASE_TTL_SECS", "120")
            .env("LOG_FORMAT", "json")
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(30),
        "PhonePe is being asked about the order",
        || w.calls_for("ORD-SLOW") == 1,
    );

    kill_term(&child);
    // Two signals sent back to back could merge into one: send the second only once the first
    // has been taken (its graceful shutdown is then waiting for the slow order).
    eventually(Duration::from_secs(30), "the first signal was taken", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("graceful shutdown")
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for in-flight work"
    );
    kill_term(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15));

    assert_eq!(status.code(), Some(130), "the second signal exits at once");
    assert_eq!(
        w.status("ORD-SLOW"),
        ("draft".into(), "pending".into()),
        "nothing settled on the way out"
    );
    assert_eq!(w.stock("tee"), 10);
}
