//! Two processes racing over the same orders, and the PhonePe budget as PhonePe sees it.

use std::collections::HashMap;
use std::process::{Output, Stdio};

use mongodb::bson::Document;
use phonepe_sim::Answer;

use super::{base_env, command, output, settle_fixture, text};
use crate::support::{assert_paced, unsettled, World};

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

    let orders: Vec<Document> = w.all_orders();
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
    // 24 calls at one per 400 ms: a budget twice too fast would be 23 * 200 ms = 4.6 s short over
    // the run, well past the allowance for one late call, even if a loaded machine slows every
    // call to 300 ms on its own (the budget must be what paces the run for the test to see it).
    settle_fixture(&w, 24);
    let limit = 150; // one call per 400 ms
    w.sim.set_rate_limit(Some(limit));
    let mut env = base_env(&w);
    env.insert("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", limit.to_string());
    env.insert("RECONCILER_JOB__RECONCILERS", "8".into());
    let out = output(&env, &["once"]);
    assert!(out.status.success(), "{}", text(&out));

    let calls = w.sim.calls();
    assert_eq!(calls.len(), 24);
    assert!(
        calls.iter().all(|c| c.http_status == 200),
        "no 429 from PhonePe: {calls:?}"
    );
    // Burst 1: any k + 1 calls span at least k periods, less one allowance for a late arrival, so
    // no 60 s window holds more than `limit` calls, however the machine is loaded.
    let at: Vec<u64> = calls.iter().map(|c| c.at_ms).collect();
    assert_paced(&at, 60_000 / u64::from(limit));
    assert_eq!(unsettled(&w), 0);
}
