//! The operator's console (`src/console`), against the real binary (`console serve`, or `run`
//! with `console.listen`): its HTTP contract without a browser (`http.rs`: CSRF, sessions,
//! logout, what answers, throttling, metrics) and its pages in headless Chromium over WebDriver
//! (`browser.rs`). Outcomes are asserted in MongoDB.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use mongodb::bson::Document;
use phonepe_sim::Answer;

use crate::support::{free_port, wait_for_port, Running, World};

mod audit;
mod browser;
mod http;

pub const ASHA: (&str, &str) = ("asha", "asha-correct-horse");
pub const RAVI: (&str, &str) = ("ravi", "ravi battery staple");
pub const WAIT: Duration = Duration::from_secs(60);

/// `console.users` for ASHA and RAVI (hashed once per test binary: each hash takes a while).
pub fn users() -> &'static str {
    static USERS: OnceLock<String> = OnceLock::new();
    USERS.get_or_init(|| {
        let hash = |pw| draft_reconciler::console::password::hash(pw).expect("hash");
        format!("{}:{} {}:{}", ASHA.0, hash(ASHA.1), RAVI.0, hash(RAVI.1))
    })
}

/// A console process on a free port.
pub struct Console {
    pub base: String,
    pub port: u16,
    _child: Option<Running>,
}

/// `draft-reconciler <args>` (`console serve`, or `run`) with the console on a free port, the two
/// operators, plain-HTTP cookies unless `extra` says otherwise, then `extra`.
pub fn start(w: &World, args: &[&str], extra: &[(&str, &str)]) -> Console {
    let port = free_port();
    let mut c = w.reconciler_command(args);
    c.env("RECONCILER_CONSOLE__LISTEN", format!("127.0.0.1:{port}"))
        .env("RECONCILER_CONSOLE__USERS", users())
        .env("RECONCILER_CONSOLE__SECURE_COOKIES", "false")
        .env("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1")
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        c.env(k, v);
    }
    let child = Running(c.spawn().expect("start draft-reconciler"));
    wait_for_port(port, Duration::from_secs(90));
    Console {
        base: format!("http://127.0.0.1:{port}"),
        port,
        _child: Some(child),
    }
}

impl Console {
    /// A console some test started itself on `port`.
    pub fn at(port: u16) -> Console {
        Console {
            base: format!("http://127.0.0.1:{port}"),
            port,
            _child: None,
        }
    }
}

/// `console serve` on `w`.
pub fn serve(w: &World) -> Console {
    start(w, &["console", "serve"], &[])
}

/// A paid order parked as `insufficient_stock` (product `tee` has `stock`, the order wants 2).
pub fn parked_paid(w: &World, mtid: &str, stock: i64) {
    w.insert_product("tee", stock);
    w.insert_order(mtid, 49900, 600, &[("tee", 2, None)]);
    w.sim.script(mtid, vec![Answer::completed(49900)]);
    w.once();
    assert_eq!(w.status(mtid), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason(mtid).as_deref(), Some("insufficient_stock"));
}

/// The types of order `mtid`'s events in `reconciler_events`, oldest first, read as the product
/// reads them (`Store::list_events`).
pub fn event_types(w: &World, mtid: &str) -> Vec<String> {
    use draft_reconciler::store::events::field;
    let events = w.block(w.store().list_events(mongodb::bson::doc! { field::MTID: mtid }));
    let events = events.expect("read the events");
    events
        .iter()
        .map(|e| e.get_str(field::TYPE).unwrap_or("?").to_string())
        .collect()
}

pub fn last_history(w: &World, mtid: &str) -> Document {
    w.history(mtid).last().cloned().expect("a history entry")
}

/// The sessions stored, as documents.
pub fn sessions(w: &World) -> Vec<Document> {
    use futures_util::TryStreamExt;
    let coll =
        w.db.collection::<Document>(draft_reconciler::console::session::COLLECTION);
    w.block(async {
        coll.find(mongodb::bson::doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    })
}
