//! The real `draft-reconciler` binary: configuration errors, redaction, the `run` service with
//! its ops HTTP and graceful shutdown, two processes racing over the same orders, and the
//! PhonePe budget as PhonePe sees it; every metric family after a run; the operator commands
//! `check` and `selftest`; and the help texts.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use draft_reconciler::sim::Answer;
use mongodb::bson::{doc, Document};
use support::{eventually, reconciler_bin, World, MERCHANT, SALT};

/// A salt key that is easy to grep for in output.
const LOUD_SALT: &str = "S3CRET-SALT-do-not-print-4f1a";

fn base_env(w: &World) -> HashMap<&'static str, String> {
    HashMap::from([
        ("MONGODB_URI", w.uri.clone()),
        ("PHONEPE_BASE_URL", w.sim.base_url()),
        ("PHONEPE_MERCHANT_ID", MERCHANT.to_string()),
        ("PHONEPE_SALT_KEY", SALT.to_string()),
        ("PHONEPE_SALT_INDEX", "1".to_string()),
        ("RECONCILER_OPS__LISTEN", String::new()),
        ("LOG_FORMAT", "json".to_string()),
        ("LOG_LEVEL", "debug".to_string()),
        ("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "6000".to_string()),
        (
            "RECONCILER_JOB__COMMIT_STRATEGY",
            support::test_strategy_name().to_string(),
        ),
    ])
}

fn command(env: &HashMap<&'static str, String>, args: &[&str]) -> Command {
    let mut c = Command::new(reconciler_bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v)));
    c.stdin(Stdio::null());
    c
}

fn output(env: &HashMap<&'static str, String>, args: &[&str]) -> Output {
    command(env, args).output().expect("run draft-reconciler")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_bad_config_fails_at_start_naming_the_key() {
    let w = World::new("bad_config");
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("PHONEPE_SALT_KEY", None, "phonepe.salt_key"),
        ("PHONEPE_MERCHANT_ID", None, "phonepe.merchant_id"),
        ("PHONEPE_SALT_INDEX", Some("zero"), "phonepe.salt_index"),
        ("MONGODB_URI", Some("postgres://localhost/shop"), "mongodb.uri"),
        (
            "RECONCILER_JOB__RATE_LIMIT_PER_MINUTE",
            Some("0"),
            "job.rate_limit_per_minute",
        ),
        ("RECONCILER_JOB__INTERVAL_SECS", Some("soon"), "job.interval_secs"),
    ];
    for (key, value, named) in cases {
        let mut env = base_env(&w);
        env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
        match value {
            Some(v) => env.insert(key, v.to_string()),
            None => env.remove(key),
        };
        let out = output(&env, &["once"]);
        assert_eq!(out.status.code(), Some(2), "{key}={value:?}: {}", text(&out));
        assert!(
            text(&out).contains(named),
            "{key}={value:?} should name {named}: {}",
            text(&out)
        );
        assert!(!text(&out).contains(LOUD_SALT), "salt key leaked: {}", text(&out));
    }
}

#[test]
fn unreachable_mongodb_makes_once_fail() {
    let w = World::new("no_mongo");
    let mut env = base_env(&w);
    env.insert(
        "MONGODB_URI",
        "mongodb://127.0.0.1:1/shop?serverSelectionTimeoutMS=500".into(),
    );
    let out = output(&env, &["once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("MongoDB"), "{}", text(&out));
}

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let w = World::new("config_cmd");
    let mut env = base_env(&w);
    env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    env.insert("MONGODB_URI", "mongodb://shop:hunter2pass@127.0.0.1:27017/shop".into());
    env.insert("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "25".into());
    let out = output(&env, &["config"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("rate_limit_per_minute = 25"), "{t}");
    assert!(
        !t.contains(LOUD_SALT) && !t.contains("hunter2pass"),
        "secrets leaked: {t}"
    );
}

fn settle_fixture(w: &World, n: usize) {
    w.insert_product("tee", 1000);
    for i in 0..n {
        let mtid = format!("ORD-{i:03}");
        w.insert_order(&mtid, 49900, 600, &[("tee", 1, None)]);
        w.sim.script(&mtid, vec![Answer::completed(49900)]);
    }
}

/// Orders not settled yet: drafts, and orders the journal strategy is committing right now.
fn unsettled(w: &World) -> u64 {
    w.block(
        w.db.collection::<Document>("orders")
            .count_documents(doc! { "status": { "$in": ["draft", "committing"] } }),
    )
    .unwrap()
}

fn kill_term(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "could not signal the service");
}

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
        "reconciler_phonepe_requests_total{code=\"PAYMENT_SUCCESS\"} 7",
        "reconciler_needs_review_orders 2",
        "reconciler_scan_interval_seconds 1",
        "reconciler_rate_limit_per_minute 6000",
        "reconciler_actor_restarts_total{actor=\"scanner\"} 0",
        "reconciler_phonepe_request_duration_seconds_bucket{le=\"+Inf\"} 10",
        "reconciler_rate_limit_wait_seconds_bucket{le=\"0.01\"}",
        "reconciler_scan_runs_total{result=\"ok\"}",
        "reconciler_last_successful_scan_timestamp_seconds ",
        "reconciler_eligible_backlog ",
        "reconciler_circuit_open 1", // the 429 paused every call for 60 s
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let body = get("/metrics").map(|(_, body)| body).unwrap_or_default();
        let missing: Vec<&&str> = expected.iter().filter(|e| !body.contains(**e)).collect();
        if missing.is_empty() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics lacks {missing:?}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
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
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "service did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
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

/// Neither the salt key, nor any X-VERIFY header value, nor customer fields are in `logs`.
fn assert_no_secrets(logs: &str, mtids: &[&str]) {
    use draft_reconciler::phonepe::checksum::{status_path, x_verify};
    assert!(!logs.contains(LOUD_SALT), "salt key leaked into logs");
    assert!(!logs.contains("###"), "an X-VERIFY value leaked into logs");
    for mtid in mtids {
        let header = x_verify(&status_path(MERCHANT, mtid), LOUD_SALT, 1);
        let digest = header.split("###").next().unwrap();
        assert!(!logs.contains(digest), "X-VERIFY of {mtid} leaked into logs");
    }
    for customer in ["Asha Rao", "+919800000000", "asha@example.com"] {
        assert!(!logs.contains(customer), "customer data {customer} leaked into logs");
    }
}

// ---------------------------------------------------------------------------------------------
// Operator commands: check, selftest, --help
// ---------------------------------------------------------------------------------------------

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn count(w: &World, collection: &str, filter: Document) -> u64 {
    w.block(w.db.collection::<Document>(collection).count_documents(filter))
        .unwrap()
}

#[test]
fn check_is_a_dry_run_until_apply_and_apply_settles_exactly_once() {
    let w = World::with_salt("check_cmd", LOUD_SALT);
    w.insert_product("tee", 5);
    w.insert_order("CHK-1", 49900, 600, &[("tee", 2, None)]);
    w.sim
        .script("CHK-1", vec![Answer::completed(49900).transaction("T-CHK-1")]);
    let mut env = base_env(&w);
    env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    let before = w.order("CHK-1");

    let dry = output(&env, &["check", "CHK-1"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let out = stdout(&dry);
    assert!(out.contains("PhonePe: code PAYMENT_SUCCESS"), "{out}");
    assert!(out.contains("amount 49900") && out.contains("T-CHK-1"), "{out}");
    assert!(
        out.contains("order: status draft paymentStatus pending amount 49900"),
        "{out}"
    );
    assert!(out.contains("decision: Commit"), "{out}");
    assert!(out.contains("dry run: nothing changed"), "{out}");
    assert_eq!(w.calls_for("CHK-1"), 1, "PhonePe was asked");
    assert_eq!(w.order("CHK-1"), before, "a dry run writes nothing");
    assert_eq!(w.stock("tee"), 5);

    let apply = output(&env, &["check", "CHK-1", "--apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(stdout(&apply).contains("applied: confirmed"), "{}", text(&apply));
    assert_eq!(w.status("CHK-1"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 3);
    let history = w.history("CHK-1");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].get_str("transactionId").ok(), Some("T-CHK-1"));

    // Applying again finds the order settled: nothing is deducted twice.
    let again = output(&env, &["check", "CHK-1", "--apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(w.stock("tee"), 3);
    assert_eq!(w.history("CHK-1").len(), 1);
    for o in [&dry, &apply, &again] {
        assert_no_secrets(&text(o), &["CHK-1"]);
    }
}

#[test]
fn check_an_unknown_or_malformed_id_fails_and_touches_nothing() {
    let w = World::new("check_unknown");
    w.insert_order("CHK-KNOWN", 100, 600, &[("tee", 1, None)]);
    let env = base_env(&w);
    let before = w.order("CHK-KNOWN");

    let unknown = output(&env, &["check", "NO-SUCH-ORDER", "--apply"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        stdout(&unknown).contains("order: none with merchantTransactionId NO-SUCH-ORDER"),
        "{}",
        text(&unknown)
    );
    let malformed = output(&env, &["check", "has space"]);
    assert_eq!(malformed.status.code(), Some(2), "{}", text(&malformed));
    assert!(
        text(&malformed).contains("merchantTransactionId contains ' '"),
        "{}",
        text(&malformed)
    );
    let missing = output(&env, &["check"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));

    assert_eq!(count(&w, "orders", doc! {}), 1);
    assert_eq!(w.order("CHK-KNOWN"), before);
}

#[test]
fn selftest_passes_against_the_database_and_phonepe_and_leaves_nothing_behind() {
    let w = World::new("selftest");
    w.insert_product("tee", 7);
    w.insert_order("REAL-1", 100, 10, &[("tee", 1, None)]);
    let env = base_env(&w);

    let out = output(&env, &["selftest"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = stdout(&out);
    for step in [
        "selftest: MongoDB answers",
        "selftest: created draft order SELFTEST-",
        "selftest: PhonePe answered: code TRANSACTION_NOT_FOUND",
        "selftest: reconciled as rescheduled (status draft)",
        "selftest: test order and product removed",
        "selftest: OK",
    ] {
        assert!(t.contains(step), "missing {step:?} in:\n{t}");
    }
    let calls = w.sim.calls();
    assert_eq!(calls.len(), 1, "one status call: {calls:?}");
    assert!(calls[0].merchant_transaction_id.starts_with("SELFTEST-"));
    assert_eq!(calls[0].http_status, 200, "X-VERIFY accepted");
    assert_eq!(count(&w, "orders", doc! {}), 1, "only the shop's own order is left");
    assert_eq!(count(&w, "products", doc! {}), 1, "only the shop's own product is left");
    assert_eq!(count(&w, "orders", doc! { "selftest": true }), 0);
    assert_eq!(w.status("REAL-1").0, "draft", "the shop's orders are untouched");
    assert_eq!(w.stock("tee"), 7);

    // Wrong credentials: the step that failed is named, exit 1, and it still cleans up.
    let mut bad = base_env(&w);
    bad.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    let out = output(&bad, &["selftest"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("selftest: FAILED: PhonePe call failed"),
        "{}",
        text(&out)
    );
    assert_eq!(w.sim.calls().last().map(|c| c.http_status), Some(401));
    assert_eq!(count(&w, "orders", doc! {}), 1);
    assert_eq!(count(&w, "products", doc! {}), 1);
    assert!(!text(&out).contains(LOUD_SALT));
}

#[test]
fn help_texts_name_every_command_and_the_exit_codes() {
    let env = HashMap::new();
    let top = output(&env, &["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let t = stdout(&top);
    for word in [
        "run",
        "once",
        "check",
        "selftest",
        "config",
        "--config <FILE>",
        "Exit codes: 0 ok, 1",
    ] {
        assert!(t.contains(word), "--help lacks {word:?}:\n{t}");
    }
    for (args, words) in [
        (
            &["check", "--help"][..],
            &["<MERCHANT_TRANSACTION_ID>", "--apply", "dry run", "Exit codes"][..],
        ),
        (&["selftest", "--help"], &["SELFTEST-", "clean up", "Exit codes"]),
        (&["run", "--help"], &["SIGTERM", "/metrics", "Exit codes"]),
        (&["once", "--help"], &["summary", "Exit codes"]),
        (&["config", "--help"], &["redacted", "Exit codes"]),
    ] {
        let o = output(&env, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let t = stdout(&o);
        for word in words {
            assert!(t.contains(word), "{args:?} lacks {word:?}:\n{t}");
        }
        assert!(
            t.lines().all(|l| l.len() <= 100),
            "{args:?}: a line longer than 100 columns:\n{t}"
        );
    }
    let usage = output(&env, &["reconcile"]);
    assert_eq!(usage.status.code(), Some(2), "unknown subcommand is a usage error");
    let version = output(&env, &["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("draft-reconciler {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn two_processes_racing_settle_each_order_once_and_stock_stays_exact() {
    let w = World::new("two_processes");
    // 40 paid orders of 1..=3 units each over two products that cannot cover all of them.
    w.insert_product("tee", 30);
    w.insert_product("mug", 12);
    let mut expected_units = 0;
    for i in 0..40 {
        let mtid = format!("ORD-{i:03}");
        let q = (i % 3 + 1) as i64;
        expected_units += q;
        let product = if i % 2 == 0 { "tee" } else { "mug" };
        w.insert_order(&mtid, 1000 * q, 600 + i as i64, &[(product, q, None)]);
        w.sim
            .script(&mtid, vec![Answer::completed(1000 * q).delay(fastrand_delay(i))]);
    }
    assert!(expected_units > 42, "the fixture must oversell");
    let mut env = base_env(&w);
    env.insert("RECONCILER_JOB__RECONCILERS", "4".into());
    let a = command(&env, &["once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = command(&env, &["once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        oa.status.success() && ob.status.success(),
        "{}\n{}",
        text(&oa),
        text(&ob)
    );

    let orders: Vec<Document> = w.rt.block_on(async {
        use futures_util::TryStreamExt;
        w.db.collection::<Document>("orders")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    });
    let mut confirmed = HashMap::from([("tee", 0i64), ("mug", 0i64)]);
    for o in &orders {
        let status = o.get_str("status").unwrap();
        assert!(status == "confirmed" || status == "needs_review", "{o:?}");
        let history = o.get_array("history").unwrap();
        assert_eq!(history.len(), 1, "settled exactly once: {o:?}");
        if status == "confirmed" {
            let item = o.get_array("items").unwrap()[0].as_document().unwrap();
            *confirmed.get_mut(item.get_str("productId").unwrap()).unwrap() += item
                .get_i64("quantity")
                .or_else(|_| item.get_i32("quantity").map(i64::from))
                .unwrap();
        }
    }
    for (p, initial) in [("tee", 30), ("mug", 12)] {
        let stock = w.stock(p);
        assert!(stock >= 0, "{p} went negative");
        assert_eq!(
            initial - stock,
            confirmed[p],
            "{p}: initial - stock = units over confirmed orders"
        );
    }
    // Both processes did work: the leases spread the orders, and no order was asked twice.
    let calls = w.sim.calls();
    assert_eq!(calls.len(), 40, "each order sent to PhonePe exactly once");
    let (settled_a, settled_b) = (settled_by(&oa), settled_by(&ob));
    assert!(
        settled_a > 0 && settled_b > 0,
        "both processes settled orders: {settled_a} and {settled_b}"
    );
    assert_eq!(settled_a + settled_b, 40, "each order settled by one process");
}

/// Orders a `once` run settled (confirmed or parked), from the summary it prints on stdout:
/// `reconciled N order(s), confirmed X, needs_review Y, ...`.
fn settled_by(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("reconciled "))
        .unwrap_or_else(|| panic!("no summary line in the output of once: {stdout}"));
    summary
        .split(", ")
        .skip(1)
        .filter_map(|kv| kv.split_once(' '))
        .filter(|(k, _)| *k == "confirmed" || *k == "needs_review")
        .map(|(_, v)| v.parse::<u64>().expect("a count"))
        .sum()
}

fn fastrand_delay(i: usize) -> u64 {
    (i as u64 * 37) % 40
}

#[test]
fn the_budget_is_never_exceeded_as_phonepe_sees_it() {
    let w = World::new("budget");
    settle_fixture(&w, 12);
    let limit = 300; // one call per 200 ms
    w.sim.set_rate_limit(Some(limit));
    let mut env = base_env(&w);
    env.insert("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", limit.to_string());
    env.insert("RECONCILER_JOB__RECONCILERS", "8".into());
    let out = output(&env, &["once"]);
    assert!(out.status.success(), "{}", text(&out));

    let calls = w.sim.calls();
    assert_eq!(calls.len(), 12);
    assert!(
        calls.iter().all(|c| c.http_status == 200),
        "no 429 from PhonePe: {calls:?}"
    );
    let period_ms = 60_000 / limit as i64;
    for pair in calls.windows(2) {
        let gap = pair[1].at_ms as i64 - pair[0].at_ms as i64;
        // Burst 1: consecutive calls are a full period apart (a few ms of scheduling slack),
        // so no 60 s window can hold more than `limit` calls.
        assert!(
            gap >= period_ms - 5,
            "calls {gap} ms apart, limit allows one per {period_ms} ms: {calls:?}"
        );
    }
    assert_eq!(unsettled(&w), 0);
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
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
        w.db.collection::<Document>("orders")
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
