//! Benchmarks (not tests): `scripts/bench.sh [drain|latency|throughput|idle|scan|instances|settlement|events|all]`.
//!
//! Each scenario starts its own SecantusDB and phonepe-sim and runs the **release** binary
//! `draft-reconciler` as a child process, so the numbers (calls per window, settle times, orders
//! per second, RSS, CPU seconds) are the product's own. Results go to stdout as `key: value`
//! lines; `BENCHMARKS.md` records them with the method.

// The integration tests' support module; the bench uses a part of it.
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, DateTime, Document};
use phonepe_sim::Answer;
use support::{Running, World};

#[path = "reconciler/events.rs"]
mod events;
#[path = "reconciler/poison.rs"]
mod poison;
#[path = "scenarios/settlement.rs"]
mod settlement;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("all");
    let n = |default: usize| args.get(1).and_then(|s| s.parse().ok()).unwrap_or(default);
    match scenario {
        "drain" => drain(n(100)),
        "latency" => latency(),
        "latency-short" => poison::latency_short_lookback(),
        "starve" => poison::starve(),
        "throughput" => throughput(n(10_000)),
        "idle" => idle(n(10_000)),
        "scan" => scan(),
        "instances" => instances(n(2000)),
        "events" => events::events(n(2000)),
        "settlement" => settlement::settlement(n(100_000)),
        "instances-unthrottled" => [1usize, 2, 4]
            .into_iter()
            .for_each(|k| instances_unthrottled(k, n(2000))),
        "all" => {
            scan();
            idle(10_000);
            throughput(10_000);
            latency();
            poison::latency_short_lookback();
            poison::starve();
            drain(100);
        }
        other => panic!(
            "unknown scenario {other}: drain | latency | latency-short | throughput | idle | scan | instances | starve | settlement | events | all"
        ),
    }
}

/// Process statistics from /proc: (peak RSS KiB, current RSS KiB, CPU seconds).
fn proc_stats(pid: u32) -> Option<(u64, u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses): utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = 100.0; // USER_HZ on Linux
    Some((kib("VmHWM:")?, kib("VmRSS:")?, (ticks(11) + ticks(12)) / hz))
}

/// How many products the orders are spread over (a shop's catalogue; one hot product would make
/// every commit conflict with every other).
const PRODUCTS: usize = 100;

/// Insert the catalogue: `PRODUCTS` products with plenty of stock.
fn seed_products(w: &World) {
    let docs: Vec<Document> = (0..PRODUCTS)
        .map(|i| doc! { "_id": format!("p{i:03}"), "stock": 1_000_000_i64 })
        .collect();
    w.block(w.db.collection::<Document>("products").insert_many(docs))
        .expect("seed products");
}

/// Insert `n` paid drafts (one item each, spread over the catalogue), created `age_secs` ago,
/// scripted as paid.
fn seed_paid(w: &World, prefix: &str, n: usize, age_secs: i64) {
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - age_secs * 1000);
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            doc! {
                "merchantTransactionId": format!("{prefix}{i:06}"), "status": "draft", "paymentStatus": "pending",
                "amount": 1000_i64, "items": [{ "productId": format!("p{:03}", i % PRODUCTS), "quantity": 1_i64 }],
                "createdAt": created, "updatedAt": created, "history": [],
            }
        })
        .collect();
    for chunk in docs.chunks(1000) {
        w.block(w.db.collection::<Document>("orders").insert_many(chunk.to_vec()))
            .expect("seed orders");
    }
    for i in 0..n {
        w.sim.script(&format!("{prefix}{i:06}"), vec![Answer::completed(1000)]);
    }
}

fn count(w: &World, filter: Document) -> u64 {
    w.block(w.db.collection::<Document>("orders").count_documents(filter))
        .expect("count")
}

/// Requests the database server has received so far (`serverStatus.network.numRequests`). The
/// server is shared by every world of the run, so take differences around one phase at a time.
fn db_requests(w: &World) -> i64 {
    let status = w
        .block(w.db.run_command(doc! { "serverStatus": 1 }))
        .expect("serverStatus");
    let network = status.get_document("network").expect("serverStatus.network");
    match network.get("numRequests") {
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        Some(mongodb::bson::Bson::Double(n)) => *n as i64,
        other => panic!("serverStatus.network.numRequests is {other:?}"),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// 1. A backlog of eligible paid orders drained at the default budget (30/min).
fn drain(n: usize) {
    let w = World::new("bench_drain");
    seed_products(&w);
    w.sim.set_rate_limit(Some(30));
    seed_paid(&w, "DRAIN-", n, 600);
    let started = Instant::now();
    let start_ms = DateTime::now().timestamp_millis() as u64;
    let child = Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_JOB__COMMIT_STRATEGY", "auto")
            .spawn()
            .expect("start"),
    );
    while count(&w, doc! { "status": "draft" }) > 0 {
        assert!(started.elapsed() < Duration::from_secs(900), "drain did not finish");
        std::thread::sleep(Duration::from_millis(250));
    }
    let drained = started.elapsed();
    drop(child);
    let calls = w.sim.calls();
    let statuses: Vec<u64> = calls.iter().map(|c| c.at_ms).collect();
    let too_many = calls.iter().filter(|c| c.http_status == 429).count();
    // The most calls PhonePe saw in any 60 s window (sliding over every call).
    let mut max_window = 0;
    for (i, t) in statuses.iter().enumerate() {
        let in_window = statuses[i..].iter().take_while(|u| **u < t + 60_000).count();
        max_window = max_window.max(in_window);
    }
    // Calls in each full minute counted from the start.
    let per_minute: Vec<usize> = (0..)
        .map(|m| start_ms + m * 60_000)
        .take_while(|from| *from < start_ms + drained.as_millis() as u64)
        .map(|from| statuses.iter().filter(|t| **t >= from && **t < from + 60_000).count())
        .collect();
    let original_runs = n.div_ceil(20);
    // The original: one run a minute, 20 orders each (at 30/min those 20 calls take 40 s).
    let original_secs = (original_runs - 1) * 60 + (n - (original_runs - 1) * 20) * 2;
    println!("drain.orders: {n}");
    println!("drain.calls: {}", calls.len());
    println!("drain.http_429: {too_many}");
    println!("drain.max_calls_in_any_60s_window: {max_window}");
    println!("drain.calls_per_minute_from_start: {per_minute:?}");
    println!("drain.minutes_to_drain: {:.2}", drained.as_secs_f64() / 60.0);
    println!("drain.original_policy_minutes: {:.2}", original_secs as f64 / 60.0);
    println!(
        "drain.budget_use_first_minute_pct: {:.0}",
        per_minute.first().copied().unwrap_or(0) as f64 / 30.0 * 100.0
    );
}

/// 2. From the moment an order becomes eligible to the moment it is settled.
fn latency() {
    for interval in [60u64, 5] {
        let w = World::new("bench_latency");
        w.insert_product("tee", 1_000_000);
        let lookback = 300i64;
        // 20 orders becoming eligible 4 s apart from now: 15 a minute, half the 30/min budget,
        // so what is measured is the wait for a scan plus the budget queue a tick finds.
        let spread_ms = 20 * 4_000;
        let now = DateTime::now().timestamp_millis();
        let mut eligible_at = HashMap::new();
        let docs: Vec<Document> = (0..20)
            .map(|i| {
                let becomes_eligible = now + spread_ms * i / 20 + 1000;
                let created = DateTime::from_millis(becomes_eligible - lookback * 1000);
                let mtid = format!("LAT-{interval}-{i:02}");
                eligible_at.insert(mtid.clone(), becomes_eligible);
                w.sim.script(&mtid, vec![Answer::completed(1000)]);
                doc! {
                    "merchantTransactionId": mtid, "status": "draft", "paymentStatus": "pending", "amount": 1000_i64,
                    "items": [{ "productId": "tee", "quantity": 1_i64 }], "createdAt": created, "history": [],
                }
            })
            .collect();
        w.block(w.db.collection::<Document>("orders").insert_many(docs))
            .expect("seed");
        let started = Instant::now();
        let child = Running(
            w.reconciler_command(&["run"])
                .env("RECONCILER_JOB__INTERVAL_SECS", interval.to_string())
                .spawn()
                .expect("start"),
        );
        while count(&w, doc! { "status": "draft" }) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(interval * 4 + 120),
                "latency run did not finish"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(child);
        let mut lat: Vec<f64> = eligible_at
            .iter()
            .map(|(mtid, at)| {
                let h = w.history(mtid);
                let settled = h[0].get_datetime("at").expect("history.at").timestamp_millis();
                (settled - at) as f64 / 1000.0
            })
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        println!("latency.interval_{interval}s.p50_secs: {:.1}", percentile(&lat, 0.5));
        println!("latency.interval_{interval}s.p99_secs: {:.1}", percentile(&lat, 0.99));
        println!("latency.interval_{interval}s.max_secs: {:.1}", percentile(&lat, 1.0));
    }
}

/// 3. + 4. Unthrottled end-to-end throughput next to the raw driver baseline; RSS and CPU.
fn throughput(n: usize) {
    let reconcilers: usize = std::env::var("BENCH_RECONCILERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let latency = Duration::from_millis(50);

    // The product: the release binary, `once`, budget lifted, PhonePe answering in 50 ms.
    let w = World::new("bench_throughput");
    seed_products(&w);
    w.sim.set_latency(latency);
    seed_paid(&w, "TP-", n, 600);
    let requests = db_requests(&w);
    let started = Instant::now();
    let mut child = Running(
        w.reconciler_command(&["once"])
            .env("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "100000000")
            .env("RECONCILER_JOB__RECONCILERS", reconcilers.to_string())
            .env("RECONCILER_JOB__MAX_ORDERS_PER_RUN", reconcilers.to_string())
            .spawn()
            .expect("start"),
    );
    let pid = child.id();
    let mut last = (0, 0, 0.0);
    while child.try_wait().expect("wait").is_none() {
        if let Some(s) = proc_stats(pid) {
            last = s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let confirmed = count(&w, doc! { "status": "confirmed" });
    assert_eq!(confirmed as usize, n, "every order confirmed");
    let product_rate = n as f64 / elapsed;
    let product_requests = (db_requests(&w) - requests) as f64 / n as f64;

    // The raw baseline: the same commit transactions straight through the driver, same
    // concurrency, no actors, no HTTP, no claims.
    let (raw_rate, raw_requests) = raw_baseline("bench_raw", n, reconcilers, false);
    // The same plus the claims (lease write + read-back per batch): what the database itself can
    // do for the work the product must do to be safe with several instances.
    let (claimed_rate, claimed_requests) = raw_baseline("bench_raw_claims", n, reconcilers, true);

    println!("throughput.orders: {n}");
    println!("throughput.reconcilers: {reconcilers}");
    println!("throughput.phonepe_latency_ms: {}", latency.as_millis());
    println!("throughput.seconds: {elapsed:.1}");
    println!("throughput.orders_per_sec: {product_rate:.1}");
    println!("throughput.raw_baseline_orders_per_sec: {raw_rate:.1}");
    println!("throughput.ratio_to_raw: {:.2}", product_rate / raw_rate);
    println!("throughput.raw_with_claims_orders_per_sec: {claimed_rate:.1}");
    println!(
        "throughput.ratio_to_raw_with_claims: {:.2}",
        product_rate / claimed_rate
    );
    // Requests the database received per order (every command, including transaction retries,
    // counted by the server): where the product's database time goes compared with the baselines.
    println!("throughput.db_requests_per_order: {product_requests:.2}");
    println!("throughput.raw_db_requests_per_order: {raw_requests:.2}");
    println!("throughput.raw_with_claims_db_requests_per_order: {claimed_requests:.2}");
    println!("throughput.peak_rss_mib: {:.1}", last.0 as f64 / 1024.0);
    println!("throughput.cpu_secs: {:.2}", last.2);
    println!("throughput.cpu_secs_per_1000_orders: {:.2}", last.2 / n as f64 * 1000.0);
}

/// One raw baseline on a fresh world of `n` paid orders: (orders per second, database requests
/// per order).
fn raw_baseline(name: &str, n: usize, concurrency: usize, claims: bool) -> (f64, f64) {
    let w = World::new(name);
    seed_products(&w);
    seed_paid(&w, "RAW-", n, 600);
    let requests = db_requests(&w);
    let rate = w.block(raw_commits(&w, concurrency, claims));
    (rate, (db_requests(&w) - requests) as f64 / n as f64)
}

/// Orders per claim in the raw baseline with claims.
const CLAIM_BATCH: usize = 8;

/// The raw baseline: every order's commit transaction straight through the driver, `concurrency`
/// at a time. With `claims`, orders are first claimed in batches of [`CLAIM_BATCH`] (the same
/// `Store::claim_ids` the scanner uses: one update command and one read-back per batch).
async fn raw_commits(w: &World, concurrency: usize, claims: bool) -> f64 {
    use draft_reconciler::domain::Order;
    use draft_reconciler::store::commit::confirm_transition;
    use draft_reconciler::store::{Claimed, Lease, Store, StrategyChoice};
    use futures_util::{StreamExt, TryStreamExt};
    let store = Store::connect(&w.uri, w.db.name()).await.expect("connect");
    let docs: Vec<Document> =
        w.db.collection::<Document>("orders")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
    let orders: Vec<Order> = docs
        .iter()
        .map(|d| Order::parse(d, &Default::default()).expect("order"))
        .collect();
    let commit = |store: Store, order: Order| async move {
        let t = confirm_transition("PAYMENT_SUCCESS", Some("T1".into()));
        let lease = Lease {
            owner: "bench",
            ttl: Duration::from_secs(300),
            now: DateTime::now(),
        };
        // A commit that fails for good is not counted as done (the rate is over successes).
        let _ = store.commit(StrategyChoice::Transaction, &order, &t, &lease).await;
    };
    let started = Instant::now();
    if claims {
        let batches: Vec<Vec<Order>> = orders.chunks(CLAIM_BATCH).map(<[Order]>::to_vec).collect();
        futures_util::stream::iter(batches)
            .for_each_concurrent((concurrency / CLAIM_BATCH).max(1), |batch| {
                let store = store.clone();
                async move {
                    let ids: Vec<_> = batch.iter().map(|o| o.id.clone()).collect();
                    let claimed = store
                        .claim_ids(&ids, "bench", DateTime::now(), Duration::from_secs(300))
                        .await
                        .expect("claim");
                    let commits = claimed.into_iter().filter_map(|c| match c {
                        Claimed::Valid(o) => Some(commit(store.clone(), o)),
                        Claimed::Invalid { .. } => None,
                    });
                    futures_util::future::join_all(commits).await;
                }
            })
            .await;
    } else {
        futures_util::stream::iter(orders)
            .for_each_concurrent(concurrency, |order| commit(store.clone(), order))
            .await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = store
        .database()
        .collection::<Document>("orders")
        .count_documents(doc! { "status": "confirmed" })
        .await
        .expect("count");
    done as f64 / elapsed
}

/// How long the idle scenario measures.
const IDLE_WINDOW: Duration = Duration::from_secs(120);

/// 4. Idle with a backlog that is not eligible yet: RSS, CPU and database requests per minute.
fn idle(n: usize) {
    let w = World::new("bench_idle");
    seed_products(&w);
    seed_paid(&w, "IDLE-", n, 0); // created now: inside the 5-minute lookback
    let child = Running(w.reconciler_command(&["run"]).spawn().expect("start"));
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(10)); // start-up done, first scan run
    let (_, _, cpu0) = proc_stats(pid).expect("stats");
    let ops0 = server_requests(&w);
    // Two intervals, so the scans (one a minute) and the 10 s heartbeats fall evenly in it.
    std::thread::sleep(IDLE_WINDOW);
    let ops1 = server_requests(&w);
    let (peak, rss, cpu1) = proc_stats(pid).expect("stats");
    drop(child);
    assert_eq!(
        count(&w, doc! { "status": "draft" }) as usize,
        n,
        "nothing was eligible"
    );
    println!("idle.backlog_not_eligible: {n}");
    println!("idle.rss_mib: {:.1}", rss as f64 / 1024.0);
    println!("idle.peak_rss_mib: {:.1}", peak as f64 / 1024.0);
    let minutes = IDLE_WINDOW.as_secs_f64() / 60.0;
    println!("idle.cpu_secs_per_minute: {:.3}", (cpu1 - cpu0) / minutes);
    // Includes the second reading's own connection and `serverStatus` (a few requests).
    println!("idle.db_requests_per_minute: {:.1}", (ops1 - ops0) as f64 / minutes);
}

/// Requests the database server has answered so far (`serverStatus`'s `network.numRequests`),
/// read through a fresh client (the world's idles between calls and loses its connections): the
/// bench's server serves only this scenario's world.
fn server_requests(w: &World) -> i64 {
    let status = w
        .block(async {
            let client = mongodb::Client::with_uri_str(&w.uri).await?;
            client.database("admin").run_command(doc! { "serverStatus": 1 }).await
        })
        .expect("serverStatus");
    let n = status.get_document("network").ok().and_then(|n| n.get("numRequests"));
    n.and_then(|b| b.as_i64().or_else(|| b.as_i32().map(i64::from)))
        .expect("network.numRequests")
}

/// 5. The scanner's queries use an index and cost the same as settled orders pile up.
fn scan() {
    use draft_reconciler::store::Eligibility;
    use draft_reconciler::store::Store;
    let w = World::new("bench_scan");
    let store = w.block(Store::connect(&w.uri, w.db.name())).expect("connect");
    w.block(store.ensure_indexes()).expect("indexes");
    seed_paid(&w, "SCAN-DRAFT-", 50, 600);
    let e = Eligibility {
        lookback: Duration::from_secs(300),
        watch_horizon: None,
    };
    let explain_of = |filter: Document| {
        let explain = w
            .block(w.db.run_command(doc! {
                "explain": { "find": "orders", "filter": filter, "sort": { "createdAt": 1 }, "limit": 20 },
                "verbosity": "queryPlanner",
            }))
            .expect("explain");
        let plan = format!(
            "{:?}",
            explain
                .get_document("queryPlanner")
                .and_then(|q| q.get_document("winningPlan"))
        );
        if plan.contains("IXSCAN") {
            "IXSCAN"
        } else {
            "COLLSCAN"
        }
    };
    let real = Store::draft_filter(&Default::default(), DateTime::now(), &e);
    let mut prefix = real.clone();
    prefix.remove("reconciliation.nextCheckAt");
    prefix.remove("reconciliation.leaseUntil");
    println!("scan.plan_eligible_filter: {}", explain_of(real));
    println!("scan.plan_without_lease_clauses: {}", explain_of(prefix));
    let mut settled = 0usize;
    for target in [1_000usize, 10_000, 100_000] {
        let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 86_400_000);
        while settled < target {
            let batch: Vec<Document> = (settled..(settled + 1000).min(target))
                .map(|i| {
                    doc! { "merchantTransactionId": format!("SETTLED-{i:07}"), "status": "confirmed", "paymentStatus": "paid",
                           "amount": 1000_i64, "items": [{ "productId": "tee", "quantity": 1_i64 }], "createdAt": created }
                })
                .collect();
            settled += batch.len();
            w.block(w.db.collection::<Document>("orders").insert_many(batch))
                .expect("insert settled");
        }
        let mut times = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            let now = DateTime::now();
            let eligible = w.block(store.count_eligible(now, &e)).expect("count");
            assert_eq!(eligible, 50);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "scan.settled_{target}.count_eligible_ms_median: {:.2}",
            percentile(&times, 0.5)
        );
    }
}

/// Scenario 6: N instances sharing one budget (1, 2, 4), at the budget (60/min, the simulator
/// limited to 60/min, a backlog outlasting the run) and unthrottled (`once` in N processes at
/// once over `n` orders, budget lifted, PhonePe latency 50 ms).
fn instances(n: usize) {
    for k in [1usize, 2, 4] {
        instances_at_budget(k);
    }
    for k in [1usize, 2, 4] {
        instances_unthrottled(k, n);
    }
}

fn instances_at_budget(k: usize) {
    const BUDGET: usize = 60;
    let w = World::new("bench_instances_budget");
    seed_products(&w);
    w.sim.set_rate_limit(Some(BUDGET as u32));
    seed_paid(&w, "INST-", 200, 600);
    let children: Vec<Running> = (0..k)
        .map(|_| {
            Running(
                w.reconciler_command(&["run"])
                    .env("RECONCILER_JOB__INTERVAL_SECS", "1")
                    .env("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", BUDGET.to_string())
                    .spawn()
                    .expect("start"),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(100));
    drop(children);
    let calls = w.sim.calls();
    let mut at: Vec<u64> = calls.iter().map(|c| c.at_ms).collect();
    at.sort_unstable();
    let first = at.first().copied().unwrap_or(0);
    let first_minute = at.iter().filter(|t| **t < first + 60_000).count();
    let max_window = (0..at.len())
        .map(|i| at[i..].iter().take_while(|u| **u < at[i] + 60_000).count())
        .max()
        .unwrap_or(0);
    let too_many = calls.iter().filter(|c| c.http_status == 429).count();
    println!("instances.budget.{k}.calls_first_minute: {first_minute}");
    println!("instances.budget.{k}.max_calls_in_any_60s_window: {max_window}");
    println!(
        "instances.budget.{k}.share_used_pct: {:.0}",
        first_minute as f64 / BUDGET as f64 * 100.0
    );
    println!("instances.budget.{k}.http_429: {too_many}");
}

fn instances_unthrottled(k: usize, n: usize) {
    let w = World::new("bench_instances_free");
    seed_products(&w);
    w.sim.set_latency(Duration::from_millis(50));
    seed_paid(&w, "FREE-", n, 600);
    let requests = db_requests(&w);
    let started = Instant::now();
    let mut children: Vec<Running> = (0..k)
        .map(|_| {
            Running(
                w.reconciler_command(&["once"])
                    .env("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "100000000")
                    .env("RECONCILER_JOB__RECONCILERS", "32")
                    .env("RECONCILER_JOB__MAX_ORDERS_PER_RUN", "32")
                    .spawn()
                    .expect("start"),
            )
        })
        .collect();
    for c in &mut children {
        c.wait().expect("wait");
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(
        count(&w, doc! { "status": "confirmed" }) as usize,
        n,
        "every order confirmed"
    );
    println!("instances.unthrottled.{k}.orders_per_sec: {:.1}", n as f64 / elapsed);
    println!(
        "instances.unthrottled.{k}.db_requests_per_order: {:.2}",
        (db_requests(&w) - requests) as f64 / n as f64
    );
}
