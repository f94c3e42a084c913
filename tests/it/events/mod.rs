//! The shop hears about every settlement (docs/events.md), against the real binary: one event per
//! transition on every path, recorded by whichever process made it, and delivered by `run` to a
//! receiver (`tests/events_receiver.py`) that verifies every delivery with the official
//! `standardwebhooks` Python package; retries, an endpoint down, kill -9 mid-delivery, two
//! instances, replay. The suite's commit strategy applies (`RECONCILER_TEST_STRATEGY=journal`).

mod delivery;
mod paths;
mod sender;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::Value;

use crate::support::{eventually, free_port, manifest_dir, wait_for_port, Running, World};

/// The shop's signing secret in these tests (32 bytes of key).
const SECRET: &str = "whsec_ZXZlbnRzLXN1aXRlLXNpZ25pbmcta2V5LTAxMjM0NTY3";

const WAIT: Duration = Duration::from_secs(90);

/// The shop's endpoint: `tests/events_receiver.py` on a free port, verifying with the official
/// package, recording every delivery, answering as its control file says.
struct Receiver {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Running>,
}

/// One delivery as the receiver recorded it.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    id: String,
    timestamp: String,
    verified: Option<bool>,
    body: Value,
    answer: u16,
}

impl Got {
    fn ty(&self) -> &str {
        self.body["type"].as_str().unwrap_or("?")
    }

    fn mtid(&self) -> &str {
        self.body["data"]["merchantTransactionId"].as_str().unwrap_or("?")
    }
}

impl Receiver {
    fn start() -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Receiver {
            port: free_port(),
            dir,
            child: None,
        };
        r.up();
        r
    }

    /// (Re)start on the same port, same log.
    fn up(&mut self) {
        let python = manifest_dir().join(".venv/bin/python");
        assert!(python.exists(), "no .venv: run scripts/setup-dev.sh");
        let child = Command::new(python)
            .arg(manifest_dir().join("tests/events_receiver.py"))
            .arg(self.port.to_string())
            .arg(SECRET)
            .arg(self.log())
            .arg(self.dir.path().join("control.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the receiver");
        self.child = Some(Running(child));
        wait_for_port(self.port, Duration::from_secs(30));
    }

    /// Stop it: the endpoint is down (connections refused).
    fn down(&mut self) {
        self.child = None;
        eventually(Duration::from_secs(30), "the receiver stops listening", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("got.jsonl")
    }

    /// How the next deliveries are answered (see the script's docs).
    fn control(&self, c: Value) {
        std::fs::write(self.dir.path().join("control.json"), c.to_string()).expect("control");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/shop", self.port)
    }

    /// Every delivery so far, in arrival order.
    fn got(&self) -> Vec<Got> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Got {
                path: v["path"].as_str().unwrap_or_default().to_string(),
                id: v["id"].as_str().unwrap_or_default().to_string(),
                timestamp: v["timestamp"].as_str().unwrap_or_default().to_string(),
                verified: v["verified"].as_bool(),
                body: v["body"].clone(),
                answer: v["answer"].as_u64().unwrap_or(0) as u16,
            })
            .collect()
    }

    /// The shop's deliveries answered 2xx, in arrival order; each one verified.
    fn accepted(&self) -> Vec<Got> {
        let got: Vec<Got> = self.got().into_iter().filter(|g| g.path == "/shop").collect();
        for g in &got {
            assert_eq!(g.verified, Some(true), "standardwebhooks refused a delivery: {g:?}");
        }
        got.into_iter().filter(|g| (200..300).contains(&g.answer)).collect()
    }
}

/// The variables that point `run` at `r` with fast retries (1 s, then 2 s), a short timeout
/// and a fast scan.
fn sending_to(r: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("RECONCILER_EVENTS__URL", r.url()),
        ("RECONCILER_EVENTS__SECRET", SECRET.to_string()),
        ("RECONCILER_EVENTS__RETRY_SECS", "[1, 2]".to_string()),
        ("RECONCILER_EVENTS__TIMEOUT_SECS", "10".to_string()),
        ("RECONCILER_JOB__INTERVAL_SECS", "1".to_string()),
        ("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1".to_string()),
    ]
}

/// `draft-reconciler run` against `w` with `env`; stdout to `log` when given.
fn service(w: &World, env: &[(&str, String)]) -> Running {
    let mut c = w.reconciler_command(&["run"]);
    for (k, v) in env {
        c.env(k, v);
    }
    Running(c.spawn().expect("start draft-reconciler run"))
}

/// `draft-reconciler <args>` against `w`, output captured.
fn command(w: &World, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = w.reconciler_command(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    // A refund asked here is asked about again within seconds, not minutes.
    c.env("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run draft-reconciler")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every event in `reconciler_events` (oldest first), optionally of one order.
fn events(w: &World, mtid: Option<&str>) -> Vec<Document> {
    let filter = mtid.map_or_else(Document::new, |m| doc! { "merchantTransactionId": m });
    w.block(async {
        use futures_util::TryStreamExt;
        w.db.collection::<Document>("reconciler_events")
            .find(filter)
            .sort(doc! { "seq": 1 })
            .await
            .expect("find events")
            .try_collect::<Vec<_>>()
            .await
            .expect("read events")
    })
}

/// The types of an order's events, in order.
fn types(w: &World, mtid: &str) -> Vec<String> {
    events(w, Some(mtid))
        .iter()
        .map(|e| e.get_str("type").unwrap_or("?").to_string())
        .collect()
}

/// Outbox entries still in the order (not moved yet).
fn outbox(w: &World, mtid: &str) -> usize {
    w.order(mtid)
        .get_document("reconciliation")
        .ok()
        .and_then(|r| r.get_array("outbox").ok())
        .map_or(0, |a| a.len())
}

/// An event's `data` as stored (the body's `data`).
fn data(e: &Document) -> Document {
    e.get_document("payload")
        .and_then(|p| p.get_document("data"))
        .cloned()
        .unwrap_or_default()
}

fn state(e: &Document) -> &str {
    e.get_str("state").unwrap_or("?")
}

fn attempts(e: &Document) -> i64 {
    crate::support::int(e.get_document("deliveries").ok().and_then(|d| d.get("attempts")))
}

/// Wait until there are `n` events, every one delivered.
fn all_delivered(w: &World, n: usize) {
    crate::support::eventually(WAIT, &format!("{n} events, every one delivered"), || {
        let e = events(w, None);
        e.len() == n && e.iter().all(|e| state(e) == "delivered")
    });
}

/// A free port with the webhook listener on it, for `run` (PhonePe's dashboard credentials).
fn webhook_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("RECONCILER_WEBHOOK__LISTEN", format!("127.0.0.1:{port}")),
        ("PHONEPE_WEBHOOK_USERNAME", "webhook-user".into()),
        ("PHONEPE_WEBHOOK_PASSWORD", "webhook-pass".into()),
    ]
}

#[allow(dead_code)]
fn wait_port(port: u16) {
    wait_for_port(port, Duration::from_secs(60));
}
