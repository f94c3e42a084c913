//! The real `draft-reconciler` binary: configuration errors, redaction, the `run` service with
//! its ops HTTP and graceful shutdown, two processes racing over the same orders, and the
//! PhonePe budget as PhonePe sees it.

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

fn drafts_left(w: &World) -> u64 {
    w.block(
        w.db.collection::<Document>("orders")
            .count_documents(doc! { "status": "draft" }),
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

#[test]
fn run_settles_orders_serves_ops_http_and_shuts_down_cleanly_without_leaking_secrets() {
    let w = World::with_salt("run_service", LOUD_SALT);
    settle_fixture(&w, 5);
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
    let mut child = command(&env, &["run"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err.log")).unwrap())
        .spawn()
        .unwrap();

    eventually(Duration::from_secs(60), "all orders settled by the service", || {
        drafts_left(&w) == 0
    });
    assert_eq!(w.stock("tee"), 995);

    let get = |path: &str| support::http_get(port, path).ok_or(());
    eventually(Duration::from_secs(30), "/metrics shows the settled orders", || {
        get("/metrics")
            .map(|(s, body)| s == 200 && body.contains("reconciler_orders_settled_total{outcome=\"confirmed\"} 5"))
            .unwrap_or(false)
    });
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
    let logs = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(dir.path().join("err.log")).unwrap()
    );
    assert!(logs.contains("ORD-000"), "order lines carry the merchantTransactionId");
    assert!(!logs.contains(LOUD_SALT), "salt key leaked into logs");
    assert!(
        !logs.to_lowercase().contains("x-verify: ") && !logs.contains("###1"),
        "X-VERIFY leaked into logs"
    );
    for customer in ["Asha Rao", "+919800000000", "asha@example.com"] {
        assert!(!logs.contains(customer), "customer data {customer} leaked into logs");
    }
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
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = command(&env, &["once"])
        .stdout(Stdio::null())
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
    assert_eq!(drafts_left(&w), 0);
}
