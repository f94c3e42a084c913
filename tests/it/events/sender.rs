//! The sender in-process (`events::send::Sender`, the pass the `EventSender` actor loops over)
//! against the suite's database and an endpoint of the test's own, for what the binary tests
//! cannot hold still: events waiting behind an earlier one of their order never crowd the others
//! out, a slow answer holds up no other delivery, and a replay during an attempt in flight is
//! not overwritten by that attempt's outcome.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use draft_reconciler::events::send::Sender;
use draft_reconciler::store::events::{Attempt, Channel, End};
use mongodb::bson::{doc, Bson, DateTime, Document};

use super::{attempts, state, SECRET};
use crate::support::World;

/// The test's endpoint: records every delivery's `webhook-id` and answers 200, except that the
/// id in `hold` is held until `release` is notified (or 60 s pass).
#[derive(Clone, Default)]
struct Endpoint {
    got: Arc<Mutex<Vec<String>>>,
    hold: Arc<Mutex<Option<String>>>,
    release: Arc<tokio::sync::Notify>,
    held_answered: Arc<AtomicBool>,
}

async fn receive(State(e): State<Endpoint>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    e.got.lock().unwrap().push(id.clone());
    if e.hold.lock().unwrap().as_deref() == Some(id.as_str()) {
        let _ = tokio::time::timeout(Duration::from_secs(60), e.release.notified()).await;
        e.held_answered.store(true, Ordering::SeqCst);
    }
    StatusCode::OK
}

impl Endpoint {
    /// Serve on a free port of this runtime; the URL to post to.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new()
            .route("/shop", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{port}/shop")
    }
}

fn ago(secs: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - secs * 1000)
}

/// A `reconciler_events` document as the relay writes it, its next attempt at `next`.
fn event(id: &str, order: i64, seq: i64, next: DateTime, tried: i64) -> Document {
    let mtid = format!("SND-{order}");
    doc! {
        "_id": id, "type": "order.confirmed", "merchantTransactionId": &mtid, "orderId": order,
        "seq": seq, "createdAt": ago(600),
        "payload": { "type": "order.confirmed", "timestamp": "2026-12-04T10:00:00Z",
                     "data": { "merchantTransactionId": &mtid, "status": "confirmed" } },
        "state": "pending",
        "deliveries": { "attempts": tried, "lastStatus": Bson::Null, "lastError": Bson::Null,
                        "nextAttemptAt": next, "windowStart": ago(600) },
    }
}

/// A sender to `url`; made outside the world's runtime (it connects a store).
fn sender(w: &World, url: String, timeout: Duration) -> Sender {
    let mut settings = w.settings.clone();
    settings.events.url = Some(url);
    settings.events.secret = Some(secrecy::SecretString::from(SECRET));
    settings.events.timeout = timeout;
    Sender::new(w.store(), &settings, "sender-test").expect("sender")
}

fn find(w: &World, id: &str) -> Document {
    w.block(
        w.db.collection::<Document>("reconciler_events")
            .find_one(doc! { "_id": id }),
    )
    .expect("read")
    .expect("the event")
}

fn next_attempt(e: &Document) -> DateTime {
    *e.get_document("deliveries")
        .and_then(|d| d.get_datetime("nextAttemptAt"))
        .expect("nextAttemptAt")
}

/// Passes until `done` holds (waking when an attempt lands, as the actor does), for at most 30 s
/// and 40 passes; how many passes it took.
async fn passes_until(s: &mut Sender, mut done: impl FnMut() -> bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 1..=40 {
        s.pass().await.expect("a pass");
        if done() {
            return n;
        }
        assert!(Instant::now() < deadline, "not done after {n} passes");
        let _ = tokio::time::timeout(Duration::from_millis(500), s.landed()).await;
    }
    panic!("not done after 40 passes");
}

#[test]
fn events_waiting_behind_their_order_never_crowd_out_other_orders() {
    let w = World::new("events_sender_waiting");
    // 80 orders whose first event is being retried (next attempt in an hour) and whose second,
    // due for ten minutes, must wait behind it: more waiting events than a pass fetches.
    let mut docs = Vec::new();
    for i in 0..80 {
        docs.push(event(
            &format!("evt_h{i}"),
            i,
            1,
            DateTime::from_millis(ago(0).timestamp_millis() + 3_600_000),
            1,
        ));
        docs.push(event(&format!("evt_w{i}"), i, 2, ago(600), 0));
    }
    // Another order's event, due later than all of them and last by seq too.
    docs.push(event("evt_z", 1000, 10, ago(60), 0));
    w.block(w.db.collection::<Document>("reconciler_events").insert_many(docs))
        .expect("insert");

    let endpoint = Endpoint::default();
    let url = w.block(endpoint.serve());
    let mut s = sender(&w, url.clone(), Duration::from_secs(10));
    w.block(async {
        let got = endpoint.got.clone();
        let n = passes_until(&mut s, || got.lock().unwrap().contains(&"evt_z".to_string())).await;
        assert!(n <= 4, "the other order's event went out only after {n} passes");
    });
    // Nothing waiting was sent or spent an attempt; each is out of the due set for a while.
    assert_eq!(endpoint.got.lock().unwrap().clone(), vec!["evt_z".to_string()]);
    for i in 0..80 {
        let e = find(&w, &format!("evt_w{i}"));
        assert_eq!((state(&e), attempts(&e)), ("pending", 0), "{e}");
        assert!(next_attempt(&e) > DateTime::now(), "set aside while it waits: {e}");
    }

    // The first event of order 0 is delivered: its second is due at once, not after the recheck.
    w.block(w.db.collection::<Document>("reconciler_events").update_one(
        doc! { "_id": "evt_h0" },
        doc! { "$set": { "deliveries.nextAttemptAt": ago(1) } },
    ))
    .expect("make h0 due");
    let mut s = sender(&w, url, Duration::from_secs(10));
    w.block(async {
        let got = endpoint.got.clone();
        passes_until(&mut s, || got.lock().unwrap().contains(&"evt_w0".to_string())).await;
    });
    let got = endpoint.got.lock().unwrap().clone();
    assert_eq!(got, ["evt_z", "evt_h0", "evt_w0"], "in order for order 0");
    assert_eq!(state(&find(&w, "evt_w1")), "pending", "other orders still wait");
}

#[test]
fn a_slow_answer_holds_up_no_other_delivery() {
    let w = World::new("events_sender_slow");
    let events = w.db.collection::<Document>("reconciler_events");
    w.block(events.insert_one(event("evt_slow", 1, 1, ago(5), 0)))
        .expect("insert");
    let endpoint = Endpoint::default();
    *endpoint.hold.lock().unwrap() = Some("evt_slow".into());
    let url = w.block(endpoint.serve());
    let mut s = sender(&w, url, Duration::from_secs(120));
    w.block(async {
        let got = endpoint.got.clone();
        passes_until(&mut s, || !got.lock().unwrap().is_empty()).await;
        // The shop holds its answer; meanwhile another order's event is recorded.
        events
            .insert_one(event("evt_quick", 2, 1, ago(0), 0))
            .await
            .expect("insert");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            s.pass().await.expect("a pass");
            let e = events
                .find_one(doc! { "_id": "evt_quick" })
                .await
                .expect("read")
                .expect("quick");
            if state(&e) == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "the quick event was not delivered: {e}");
            let _ = tokio::time::timeout(Duration::from_millis(500), s.landed()).await;
        }
        assert!(
            !endpoint.held_answered.load(Ordering::SeqCst),
            "the quick event went out only after the slow answer"
        );
        let slow = events
            .find_one(doc! { "_id": "evt_slow" })
            .await
            .expect("read")
            .expect("slow");
        assert_eq!(
            (state(&slow), attempts(&slow)),
            ("pending", 1),
            "still in flight: {slow}"
        );
        endpoint.release.notify_one();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            s.pass().await.expect("a pass");
            let e = events
                .find_one(doc! { "_id": "evt_slow" })
                .await
                .expect("read")
                .expect("slow");
            if state(&e) == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "the slow event was not recorded: {e}");
            let _ = tokio::time::timeout(Duration::from_millis(500), s.landed()).await;
        }
    });
    let got: HashSet<String> = endpoint.got.lock().unwrap().iter().cloned().collect();
    assert_eq!(got, HashSet::from(["evt_slow".to_string(), "evt_quick".to_string()]));
}

#[test]
fn a_replay_during_an_attempt_in_flight_is_not_overwritten_by_its_outcome() {
    let w = World::new("events_sender_replay");
    let store = w.store();
    w.block(
        w.db.collection::<Document>("reconciler_events")
            .insert_one(event("evt_r", 1, 1, ago(5), 4)),
    )
    .expect("insert");
    let now = DateTime::now();
    let until = DateTime::from_millis(now.timestamp_millis() + 20_000);
    let claimed = w
        .block(store.claim_event(Channel::Shop, "evt_r", "instance-a", now, until))
        .expect("claim");
    assert!(claimed.is_some(), "claimed for the attempt");
    // An operator replays it while the attempt is in flight; then the attempt fails on the old
    // window (its last chance) and tries to close the event.
    let queued = w
        .block(store.replay_events(doc! { "_id": "evt_r" }, DateTime::now()))
        .expect("replay");
    assert_eq!(queued, 1);
    let failed = Attempt {
        status: Some(500),
        error: Some("not a 2xx answer".into()),
        end: End::Failed,
    };
    let recorded = w
        .block(store.end_attempt(Channel::Shop, "evt_r", "instance-a", &failed, DateTime::now()))
        .expect("end");
    assert!(!recorded, "the attempt's outcome is not written over the replay");
    let e = find(&w, "evt_r");
    assert_eq!((state(&e), attempts(&e)), ("pending", 0), "queued again: {e}");
    // And it goes out again at once: another instance may claim it now.
    let now = DateTime::now();
    let until = DateTime::from_millis(now.timestamp_millis() + 20_000);
    let again = w
        .block(store.claim_event(Channel::Shop, "evt_r", "instance-b", now, until))
        .expect("claim");
    assert!(again.is_some(), "the replayed event is due at once: {e}");
}
