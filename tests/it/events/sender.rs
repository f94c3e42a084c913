//! The sender in-process (`events::send::Sender`, the pass the `EventSender` actor loops over)
//! against the suite's database and an endpoint of the test's own, for what the binary tests
//! cannot hold still: events waiting behind an earlier one of their order never crowd the others
//! out, a slow answer holds up no other delivery, and a replay during an attempt in flight is
//! not overwritten by that attempt's outcome.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The test's endpoint: records every delivery's `webhook-id` and answers 200, except the
/// first deliveries of the id in `hold`: the n-th is held until `releases[n - 1]` is notified (or
/// 60 s pass) and then gets the n-th answer listed.
#[derive(Clone, Default)]
struct Endpoint {
    got: Arc<Mutex<Vec<String>>>,
    hold: Arc<Mutex<Option<Held>>>,
    releases: Arc<[tokio::sync::Notify; 2]>,
    held_answered: Arc<AtomicUsize>,
}

/// An id whose first deliveries are held, and the answer each of them gets.
type Held = (String, Vec<u16>);

async fn receive(State(e): State<Endpoint>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let n = {
        let mut got = e.got.lock().unwrap();
        got.push(id.clone());
        got.iter().filter(|g| **g == id).count()
    };
    let hold = e.hold.lock().unwrap().clone();
    if let Some((held, answers)) = hold {
        if held == id && n <= answers.len() {
            let _ = tokio::time::timeout(Duration::from_secs(60), e.releases[n - 1].notified()).await;
            e.held_answered.fetch_add(1, Ordering::SeqCst);
            return StatusCode::from_u16(answers[n - 1]).unwrap_or(StatusCode::OK);
        }
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

/// A `reconciler_events` document as the relay writes it, recorded ten minutes ago, its next
/// attempt at `next`.
fn event(id: &str, order: i64, seq: i64, next: DateTime, tried: i64) -> Document {
    event_recorded(id, order, seq, next, tried, ago(600))
}

/// The same, recorded at `created` (its window starting then).
fn event_recorded(id: &str, order: i64, seq: i64, next: DateTime, tried: i64, created: DateTime) -> Document {
    let mtid = format!("SND-{order}");
    doc! {
        "_id": id, "type": "order.confirmed", "merchantTransactionId": &mtid, "orderId": order,
        "seq": seq, "createdAt": created,
        "payload": { "type": "order.confirmed", "timestamp": "2026-12-04T10:00:00Z",
                     "data": { "merchantTransactionId": &mtid, "status": "confirmed" } },
        "state": "pending",
        "deliveries": { "attempts": tried, "lastStatus": Bson::Null, "lastError": Bson::Null,
                        "nextAttemptAt": next, "windowStart": created },
    }
}

/// `e` as set aside to wait behind an earlier event of its order.
fn marked_waiting(mut e: Document) -> Document {
    e.get_document_mut("deliveries")
        .expect("deliveries")
        .insert("waiting", true);
    e
}

/// `docs` stored, an endpoint answering 200 and a sender to it.
fn seeded(w: &World, docs: Vec<Document>) -> (Endpoint, Sender) {
    w.block(w.db.collection::<Document>("reconciler_events").insert_many(docs))
        .expect("insert");
    let endpoint = Endpoint::default();
    let url = w.block(endpoint.serve());
    let s = sender(w, url, Duration::from_secs(10));
    (endpoint, s)
}

/// A sender to `url`; made outside the world's runtime (it connects a store).
fn sender(w: &World, url: String, timeout: Duration) -> Sender {
    sender_with(w, url, timeout, |_| {})
}

fn sender_with(
    w: &World,
    url: String,
    timeout: Duration,
    change: impl FnOnce(&mut draft_reconciler::config::Settings),
) -> Sender {
    let mut settings = w.settings.clone();
    change(&mut settings);
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

/// Passes until event `id` as stored satisfies `done` (as [`passes_until`]); the event then.
async fn passes_until_stored(
    s: &mut Sender,
    events: &mongodb::Collection<Document>,
    id: &str,
    done: impl Fn(&Document) -> bool,
) -> Document {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        s.pass().await.expect("a pass");
        let e = events
            .find_one(doc! { "_id": id })
            .await
            .expect("read")
            .expect("the event");
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "not done: {e}");
        let _ = tokio::time::timeout(Duration::from_millis(500), s.landed()).await;
    }
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
    // And one order with 150 events waiting behind its first.
    docs.push(event(
        "evt_big_1",
        500,
        1,
        DateTime::from_millis(ago(0).timestamp_millis() + 3_600_000),
        1,
    ));
    for seq in 2..=151 {
        docs.push(event(&format!("evt_big_{seq}"), 500, seq, ago(600), 0));
    }
    // Another order's event, due later than all of them and last by seq too.
    docs.push(event("evt_z", 1000, 1000, ago(60), 0));
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
    let waiting = (0..80)
        .map(|i| format!("evt_w{i}"))
        .chain((2..=151).map(|s| format!("evt_big_{s}")));
    for id in waiting {
        let e = find(&w, &id);
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
    *endpoint.hold.lock().unwrap() = Some(("evt_slow".into(), vec![200]));
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
        passes_until_stored(&mut s, &events, "evt_quick", |e| state(e) == "delivered").await;
        assert_eq!(
            endpoint.held_answered.load(Ordering::SeqCst),
            0,
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
        endpoint.releases[0].notify_one();
        passes_until_stored(&mut s, &events, "evt_slow", |e| state(e) == "delivered").await;
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

#[test]
fn a_replay_while_the_same_instance_still_sends_the_event_counts_only_the_replayed_attempt() {
    let w = World::new("events_sender_replay_same");
    let events = w.db.collection::<Document>("reconciler_events");
    // Recorded 71.5 hours ago: a failure now, with an hour to wait, is its last (`failed`).
    let created = ago(71 * 3600 + 1800);
    w.block(events.insert_many([
        event_recorded("evt_r", 7, 1, ago(5), 0, created),
        event_recorded("evt_r2", 7, 2, ago(5), 0, ago(5)),
    ]))
    .expect("insert");
    let endpoint = Endpoint::default();
    // The first delivery is answered 500, the replayed one 200, each when the test says.
    *endpoint.hold.lock().unwrap() = Some(("evt_r".into(), vec![500, 200]));
    let url = w.block(endpoint.serve());
    let store = w.store();
    let mut s = sender_with(&w, url, Duration::from_secs(30), |settings| {
        settings.events.retry = vec![Duration::from_secs(3600)];
    });
    let got = endpoint.got.clone();
    let count = move |id: &str| got.lock().unwrap().iter().filter(|g| *g == id).count();
    let stored = |id: &'static str| {
        let events = events.clone();
        async move {
            events
                .find_one(doc! { "_id": id })
                .await
                .expect("read")
                .expect("the event")
        }
    };
    w.block(async {
        passes_until(&mut s, || count("evt_r") == 1).await;
        // While the shop holds the first delivery, an operator replays the event, and this
        // same instance sends it again.
        store
            .replay_events(doc! { "_id": "evt_r" }, DateTime::now())
            .await
            .expect("replay");
        passes_until(&mut s, || count("evt_r") == 2).await;
        // The first attempt's 500 lands while the replayed one is still out.
        endpoint.releases[0].notify_one();
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.in_flight(Channel::Shop) != 1 {
            assert!(Instant::now() < deadline, "the first attempt never landed");
            let _ = tokio::time::timeout(Duration::from_millis(500), s.landed()).await;
            s.pass().await.expect("a pass");
        }
        let r = stored("evt_r").await;
        assert_eq!(
            (state(&r), attempts(&r)),
            ("pending", 1),
            "the first attempt's failure is not recorded: {r}"
        );
        assert_eq!(count("evt_r2"), 0, "the order's next event waits for the replayed one");
        // The replayed attempt's 200 is the one recorded; then the next event goes.
        endpoint.releases[1].notify_one();
        passes_until(&mut s, || count("evt_r2") == 1).await;
        let r = stored("evt_r").await;
        assert_eq!(state(&r), "delivered", "{r}");
    });
    assert_eq!(endpoint.got.lock().unwrap().clone(), ["evt_r", "evt_r", "evt_r2"]);
}

#[test]
fn an_event_whose_wait_ended_unseen_starts_its_window_then_and_is_sent() {
    let w = World::new("events_sender_unseen_end");
    // What a kill -9 (or a refused write) between an event's end and the release of the one
    // waiting behind it leaves: the first failed after its whole window, the second still marked
    // waiting, its recheck due, recorded as long ago as the first.
    let created = ago(72 * 3600 + 60);
    let mut first = event_recorded("evt_a", 5, 1, ago(60), 40, created);
    first.insert("state", "failed");
    let second = marked_waiting(event_recorded("evt_b", 5, 2, ago(1), 0, created));
    let (endpoint, mut s) = seeded(&w, vec![first, second]);
    let got = endpoint.got.clone();
    w.block(passes_until(&mut s, || {
        got.lock().unwrap().contains(&"evt_b".to_string())
    }));
    let b = find(&w, "evt_b");
    assert!(
        b.get_document("deliveries").is_ok_and(|d| d.get("waiting").is_none()),
        "no longer marked waiting: {b}"
    );
}

#[test]
fn old_news_waiting_behind_an_expired_event_expires_too_even_when_its_wait_ended_unseen() {
    let w = World::new("events_sender_old_news");
    // All recorded 80 hours ago (events.url set only now): the first expired unsent, the second
    // was set aside behind it and the release was not seen through, the third never looked at.
    let created = ago(80 * 3600);
    let mut first = event_recorded("evt_o1", 9, 1, ago(60), 0, created);
    first.insert("state", "expired");
    let second = marked_waiting(event_recorded("evt_o2", 9, 2, ago(1), 0, created));
    let third = event_recorded("evt_o3", 9, 3, created, 0, created);
    let (endpoint, mut s) = seeded(&w, vec![first, second, third]);
    let events = w.db.collection::<Document>("reconciler_events");
    w.block(async {
        for id in ["evt_o2", "evt_o3"] {
            passes_until_stored(&mut s, &events, id, |e| state(e) != "pending").await;
        }
    });
    assert_eq!(state(&find(&w, "evt_o2")), "expired");
    assert_eq!(state(&find(&w, "evt_o3")), "expired");
    assert!(endpoint.got.lock().unwrap().is_empty(), "old news is never sent");
}

#[test]
fn an_event_tried_before_that_waited_behind_a_replayed_one_gets_its_window_again() {
    let w = World::new("events_sender_waited_tried");
    // The first event was replayed (due, a fresh window); the second, tried twice before, was
    // set aside behind it long enough for its own window to have run out meanwhile.
    let first = event_recorded("evt_t1", 3, 1, ago(1), 0, ago(1));
    let second = marked_waiting(event_recorded(
        "evt_t2",
        3,
        2,
        DateTime::from_millis(ago(0).timestamp_millis() + 60_000),
        2,
        ago(73 * 3600),
    ));
    let (endpoint, mut s) = seeded(&w, vec![first, second]);
    let events = w.db.collection::<Document>("reconciler_events");
    let second = w.block(passes_until_stored(&mut s, &events, "evt_t2", |e| {
        state(e) != "pending"
    }));
    assert_eq!((state(&second), attempts(&second)), ("delivered", 3), "{second}");
    assert_eq!(endpoint.got.lock().unwrap().clone(), ["evt_t1", "evt_t2"]);
}

#[test]
fn a_replay_between_reading_old_news_and_expiring_it_wins() {
    let w = World::new("events_sender_expire_replay");
    let store = w.store();
    let created = ago(80 * 3600);
    w.block(
        w.db.collection::<Document>("reconciler_events")
            .insert_one(event_recorded("evt_x", 4, 1, created, 0, created)),
    )
    .expect("insert");
    // A pass read it as old news; an operator replays it before the pass expires it.
    let start = Channel::Shop.window_start(&find(&w, "evt_x"));
    w.block(store.replay_events(doc! { "_id": "evt_x" }, DateTime::now()))
        .expect("replay");
    let closed = w
        .block(store.close_event(Channel::Shop, "evt_x", 0, start, "expired", DateTime::now()))
        .expect("close");
    assert!(!closed, "the replay's fresh window is not expired on the old one");
    assert_eq!(state(&find(&w, "evt_x")), "pending");
    // Read again, within its new window, it is not closed.
    let start = Channel::Shop.window_start(&find(&w, "evt_x"));
    assert!(start.is_some_and(|t| t.timestamp_millis() > created.timestamp_millis()));
}
