//! Scenario of issue 24: settling throughput of `run` with events off (no `events.url`), on (a
//! receiver answering 200 at once) and with the endpoint down (a port nobody listens on), on the
//! same fixture: the ratios say what sending costs settling. Also how long the last event took to
//! reach the shop after the last order settled, and the database requests per order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};

use super::support::{free_port, Running, World};
use super::{count, db_requests, proc_stats, seed_paid, seed_products};

const SECRET: &str = "whsec_ZXZlbnRzLWJlbmNoLXNpZ25pbmcta2V5LTAxMjM0NTY3ODk=";

/// A shop endpoint answering 204 to every request at once; counts what it got.
fn receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(AtomicUsize::new(0));
    let counter = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                // Keep-alive: one request after another on the connection until it closes.
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    let mut first = true;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if first && !line.starts_with("POST") {
                            return;
                        }
                        first = false;
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

/// How `events.url` is set in one run.
#[derive(Clone, Copy, PartialEq)]
enum Url {
    Off,
    On,
    Down,
}

/// One run of `n` paid orders through `run`: orders per second, seconds from the last order
/// settled until the last event was delivered (`On`), database requests per order, peak RSS.
fn settle(n: usize, url: Url) -> (f64, Option<f64>, f64, f64) {
    let w = World::new("bench_events");
    seed_products(&w);
    w.sim.set_latency(Duration::from_millis(50));
    seed_paid(&w, "EV-", n, 600);
    let (port, got) = receiver();
    let requests = db_requests(&w);
    let mut c = w.reconciler_command(&["run"]);
    c.env("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "100000000")
        .env("RECONCILER_JOB__RECONCILERS", "32")
        .env("RECONCILER_JOB__MAX_ORDERS_PER_RUN", "32")
        .env("RECONCILER_JOB__INTERVAL_SECS", "1")
        .env("RECONCILER_EVENTS__SECRET", SECRET);
    match url {
        Url::Off => {}
        Url::On => {
            c.env("RECONCILER_EVENTS__URL", format!("http://127.0.0.1:{port}/hooks"));
        }
        Url::Down => {
            c.env(
                "RECONCILER_EVENTS__URL",
                format!("http://127.0.0.1:{}/hooks", free_port()),
            );
        }
    }
    let started = Instant::now();
    let child = Running(c.spawn().expect("start"));
    let pid = child.id();
    let mut peak = 0.0;
    while (count(&w, doc! { "status": "confirmed" }) as usize) < n {
        if let Some((hwm, _, _)) = proc_stats(pid) {
            peak = hwm as f64 / 1024.0;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "settling took too long");
        std::thread::sleep(Duration::from_millis(100));
    }
    let settled = started.elapsed().as_secs_f64();
    let per_order = (db_requests(&w) - requests) as f64 / n as f64;
    let lag = (url == Url::On).then(|| {
        let at = Instant::now();
        while got.load(Ordering::SeqCst) < n {
            assert!(at.elapsed() < Duration::from_secs(600), "events not delivered");
            std::thread::sleep(Duration::from_millis(20));
        }
        at.elapsed().as_secs_f64()
    });
    // Each settling process moves its event right after its write: the last few may still be
    // on their way when the last order shows confirmed.
    let moved = || {
        w.block(
            w.db.collection::<Document>("reconciler_events")
                .count_documents(doc! {}),
        )
        .expect("count events") as usize
    };
    let at = Instant::now();
    while moved() < n && at.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(moved(), n, "one event per order");
    drop(child);
    (n as f64 / settled, lag, per_order, peak)
}

/// `scripts/bench.sh events [N]`: the three runs, twice each (off, on, down, off, on, down).
pub fn events(n: usize) {
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..2 {
        for (i, url) in [Url::Off, Url::On, Url::Down].into_iter().enumerate() {
            let (rate, lag, per_order, peak) = settle(n, url);
            let name = ["off", "on", "down"][i];
            println!("events.{round}.{name}.orders_per_sec: {rate:.1}");
            println!("events.{round}.{name}.db_requests_per_order: {per_order:.2}");
            println!("events.{round}.{name}.peak_rss_mib: {peak:.1}");
            if let Some(lag) = lag {
                println!("events.{round}.{name}.last_event_after_last_settle_secs: {lag:.2}");
            }
            rates[i].push(rate);
        }
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    println!("events.orders: {n}");
    println!("events.ratio_on_to_off: {:.2}", mean(&rates[1]) / mean(&rates[0]));
    println!("events.ratio_down_to_off: {:.2}", mean(&rates[2]) / mean(&rates[0]));
}
