//! The monitoring path of the README, for real: a Prometheus server started with
//! `deploy/prometheus/prometheus.yml` (target and intervals adapted for a test) scrapes the real
//! `draft-reconciler run`, loads `alerts.yml`, evaluates every rule against the live metrics
//! without error, and the alerts about a paid order that could not be fulfilled go off.
//!
//! Prometheus is the binary from Debian's `prometheus` package that `scripts/ops-tools.sh`
//! unpacks into `.tools/prometheus` (or `PROMETHEUS`, or one on PATH).

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::tools::prometheus_bin;
use crate::support::{eventually, free_port, manifest_dir, World};
use phonepe_sim::Answer;
use serde_json::Value;

/// GET a Prometheus API path; the `data` field of a successful answer.
fn api(port: u16, path_and_query: &str) -> Option<Value> {
    let (status, body) = support::http_get(port, path_and_query)?;
    let v: Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["status"] == "success").then(|| v["data"].clone())
}

/// An instant query; the value of the first sample, if any.
fn query(port: u16, promql: &str) -> Option<String> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let data = api(port, &format!("/api/v1/query?query={encoded}"))?;
    data["result"][0]["value"][1].as_str().map(str::to_string)
}

#[test]
fn prometheus_scrapes_the_service_and_evaluates_every_alert_rule() {
    let w = World::new("monitoring");
    w.insert_product("tee", 10);
    w.insert_product("rare", 0);
    let tmp = tempfile::tempdir().expect("tempdir");

    // The service, as under PM2/systemd: JSON logs, ops HTTP on a port of its own.
    let ops_port = free_port();
    let service = w
        .reconciler_command(&["run"])
        .env("LOG_FORMAT", "json")
        .env("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{ops_port}"))
        .env("RECONCILER_JOB__INTERVAL_SECS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start draft-reconciler");
    let _service = support::Running(service);

    // Prometheus with the shipped config: only the target, the intervals and the rule path change.
    let shipped =
        std::fs::read_to_string(manifest_dir().join("deploy/prometheus/prometheus.yml")).expect("prometheus.yml");
    let alerts = manifest_dir().join("deploy/prometheus/alerts.yml");
    let config = shipped
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{ops_port}"))
        .replace("15s", "1s")
        .replace("- alerts.yml", &format!("- {}", alerts.display()));
    assert!(config.contains(&format!("127.0.0.1:{ops_port}")) && config.contains("scrape_interval: 1s"));
    let config_file = tmp.path().join("prometheus.yml");
    std::fs::write(&config_file, config).expect("write config");
    let prom_port = free_port();
    let prometheus = Command::new(prometheus_bin())
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!("--storage.tsdb.path={}", tmp.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("prometheus.log")).expect("log"))
        .spawn()
        .expect("start prometheus");
    let _prometheus = support::Running(prometheus);

    eventually(
        Duration::from_secs(90),
        "Prometheus scrapes the service (up == 1)",
        || query(prom_port, "up{job=\"draft-reconciler\"}").as_deref() == Some("1"),
    );
    eventually(Duration::from_secs(30), "the zeroed counters were scraped", || {
        query(
            prom_port,
            "reconciler_stock_commit_failures_total{reason=\"insufficient_stock\"}",
        )
        .as_deref()
            == Some("0")
    });

    // Now a paid order that settles, and a paid order whose product is out of stock.
    w.insert_order("MON-OK", 49900, 600, &[("tee", 1, None)]);
    w.sim.script("MON-OK", vec![Answer::completed(49900)]);
    w.insert_order("MON-SHORT", 500, 600, &[("rare", 1, None)]);
    w.sim.script("MON-SHORT", vec![Answer::completed(500)]);
    eventually(Duration::from_secs(60), "Prometheus sees the confirmed order", || {
        query(prom_port, "reconciler_orders_settled_total{outcome=\"confirmed\"}").as_deref() == Some("1")
    });
    eventually(Duration::from_secs(60), "MON-SHORT parked", || {
        w.status("MON-SHORT").0 == "needs_review"
    });

    // Every rule loaded and evaluates without error against the live series.
    let shipped_rules = std::fs::read_to_string(&alerts)
        .expect("alerts.yml")
        .matches("- alert:")
        .count();
    let mut rules = vec![];
    eventually(
        Duration::from_secs(60),
        "every alert rule evaluated with health ok",
        || {
            rules = api(prom_port, "/api/v1/rules")
                .and_then(|d| d["groups"][0]["rules"].as_array().cloned())
                .unwrap_or_default();
            rules.len() == shipped_rules && rules.iter().all(|r| r["health"] == "ok")
        },
    );
    let loaded: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    for name in [
        "ReconcilerJobNotRunning",
        "ReconcilerDown",
        "ReconcilerPhonePeErrorRateHigh",
    ] {
        assert!(loaded.contains(&name), "{name} not loaded: {loaded:?}");
    }

    // The out-of-stock order sets off the commit-failure alert, and needs_review is pending.
    let mut alerts = vec![];
    eventually(
        Duration::from_secs(60),
        "commit failure firing, needs_review pending",
        || {
            alerts = api(prom_port, "/api/v1/alerts")
                .and_then(|d| d["alerts"].as_array().cloned())
                .unwrap_or_default();
            let state = |name: &str| {
                alerts
                    .iter()
                    .find(|a| a["labels"]["alertname"] == name)
                    .and_then(|a| a["state"].as_str().map(str::to_string))
            };
            state("ReconcilerStockCommitFailures").as_deref() == Some("firing")
                && state("ReconcilerNeedsReviewOrdersWaiting").as_deref() == Some("pending")
        },
    );
    let failure = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "ReconcilerStockCommitFailures")
        .expect("alert");
    assert_eq!(failure["labels"]["reason"], "insufficient_stock");
    for quiet in [
        "ReconcilerDown",
        "ReconcilerJobNotRunning",
        "ReconcilerPhonePeRateLimitExceeded",
    ] {
        assert!(
            !alerts.iter().any(|a| a["labels"]["alertname"] == quiet),
            "{quiet} should be quiet: {alerts:?}"
        );
    }
}
