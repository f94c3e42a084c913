//! Scenarios of issue 22: bad documents never stall the pipeline, and a draft inserted while the
//! scanner sleeps is asked about when it becomes due (`lookback < interval`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use phonepe_sim::Answer;

use super::support::{Running, World};
use super::{count, percentile, seed_products, server_requests};

/// Poison drafts of each kind (claim refused; claimed but unreadable), older than the good ones.
const POISON_EACH: usize = 35;
const GOOD: usize = 5;

/// Scenario 7, starvation: 70 drafts the reconciler cannot claim or read (35 with `reconciliation: null`,
/// every claim write refused; 35 with `status: ["draft"]`), older than 5 good paid drafts. Prints
/// when the good ones were confirmed, the database requests in the first minute, and the
/// requests per minute once the poison has been dealt with (from 150 s to 270 s).
pub fn starve() {
    let w = World::new("bench_starve");
    seed_products(&w);
    let orders = w.db.collection::<Document>("orders");
    let old = DateTime::from_millis(DateTime::now().timestamp_millis() - 7_200_000);
    let poison: Vec<Document> = (0..2 * POISON_EACH)
        .map(|i| {
            let mut d = doc! {
                "_id": ObjectId::new(), "merchantTransactionId": format!("POISON-{i:03}"), "status": "draft",
                "paymentStatus": "pending", "amount": 1000_i64, "items": [{ "productId": "p000", "quantity": 1_i64 }],
                "createdAt": old, "history": [],
            };
            if i < POISON_EACH {
                d.insert("reconciliation", Bson::Null);
            } else {
                d.insert("status", vec![Bson::String("draft".into())]);
            }
            d
        })
        .collect();
    w.block(orders.insert_many(poison)).expect("seed poison");
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 600_000);
    for i in 0..GOOD {
        let mtid = format!("GOOD-{i}");
        w.sim.script(&mtid, vec![Answer::completed(1000)]);
        w.block(orders.insert_one(doc! {
            "merchantTransactionId": &mtid, "status": "draft", "paymentStatus": "pending", "amount": 1000_i64,
            "items": [{ "productId": "p001", "quantity": 1_i64 }], "createdAt": created, "history": [],
        }))
        .expect("seed good");
    }
    let ops0 = server_requests(&w);
    let started = Instant::now();
    let child = Running(w.reconciler_command(&["run"]).spawn().expect("start"));
    let good_confirmed = || {
        count(
            &w,
            doc! { "merchantTransactionId": { "$regex": "^GOOD-" }, "status": "confirmed" },
        )
    };
    let mut all_good_at = None;
    while started.elapsed() < Duration::from_secs(60) {
        if all_good_at.is_none() && good_confirmed() == GOOD as u64 {
            all_good_at = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let ops60 = server_requests(&w);
    println!("starve.good_confirmed_within_60s: {}", good_confirmed());
    match all_good_at {
        Some(t) => println!("starve.all_good_confirmed_after_secs: {:.1}", t.as_secs_f64()),
        None => println!("starve.all_good_confirmed_after_secs: not within 60 s"),
    }
    println!("starve.db_requests_first_minute: {}", ops60 - ops0);
    std::thread::sleep(Duration::from_secs(150).saturating_sub(started.elapsed()));
    let ops_a = server_requests(&w);
    std::thread::sleep(Duration::from_secs(120));
    let ops_b = server_requests(&w);
    drop(child);
    println!(
        "starve.db_requests_per_idle_minute: {:.1}",
        (ops_b - ops_a) as f64 / 2.0
    );
    println!(
        "starve.poison_parked: {}",
        count(
            &w,
            doc! { "merchantTransactionId": { "$regex": "^POISON-" }, "status": "needs_review" }
        )
    );
    let excluded = w
        .block(
            w.db.collection::<Document>("reconciler_excluded")
                .count_documents(doc! {}),
        )
        .unwrap_or(0);
    println!("starve.poison_excluded: {excluded}");
}

/// Scenario 2b, detection latency with `lookback < interval` (interval 60 s, lookback 20 s): 20 drafts
/// inserted while the service runs, one every 4 s; each becomes due 20 s after its insertion.
pub fn latency_short_lookback() {
    const LOOKBACK: i64 = 20;
    let w = World::new("bench_latency_short");
    w.insert_product("tee", 1_000_000);
    let child = Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_JOB__INTERVAL_SECS", "60")
            .env("RECONCILER_JOB__LOOKBACK_SECS", LOOKBACK.to_string())
            .spawn()
            .expect("start"),
    );
    std::thread::sleep(Duration::from_secs(5)); // the start-up scan has run
    let orders = w.db.collection::<Document>("orders");
    let mut due_at = HashMap::new();
    for i in 0..20 {
        let mtid = format!("LATS-{i:02}");
        w.sim.script(&mtid, vec![Answer::completed(1000)]);
        let now = DateTime::now();
        due_at.insert(mtid.clone(), now.timestamp_millis() + LOOKBACK * 1000);
        w.block(orders.insert_one(doc! {
            "merchantTransactionId": &mtid, "status": "draft", "paymentStatus": "pending", "amount": 1000_i64,
            "items": [{ "productId": "tee", "quantity": 1_i64 }], "createdAt": now, "history": [],
        }))
        .expect("insert");
        std::thread::sleep(Duration::from_secs(4));
    }
    let started = Instant::now();
    while count(&w, doc! { "status": "draft" }) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "latency run did not finish"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(child);
    let mut lat: Vec<f64> = due_at
        .iter()
        .map(|(mtid, at)| {
            let h = w.history(mtid);
            let settled = h[0].get_datetime("at").expect("history.at").timestamp_millis();
            (settled - at) as f64 / 1000.0
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency.lookback_20s_interval_60s.p50_secs: {:.1}",
        percentile(&lat, 0.5)
    );
    println!(
        "latency.lookback_20s_interval_60s.p99_secs: {:.1}",
        percentile(&lat, 0.99)
    );
    println!(
        "latency.lookback_20s_interval_60s.max_secs: {:.1}",
        percentile(&lat, 1.0)
    );
}
