//! One pass of `run`'s sender (the `EventSender` actor loops over [`Sender::pass`]): move what
//! other processes left in orders' outboxes, then claim what is due and send it on tasks of its
//! own, at most [`IN_FLIGHT`] attempts in flight per channel, none of them on the settle path. A
//! pass never waits for an answer: one slow endpoint answer holds up neither the others nor the
//! next claims, and the actor is woken when an attempt lands ([`Sender::landed`]).
//!
//! The shop's channel keeps the order per order: an event is not claimed while an earlier event
//! of its order is pending (it waits without spending attempts, set aside from the due set until
//! the earlier one ends, and its window starts then), so one event per order is in flight at a
//! time. Each attempt is claimed in
//! MongoDB first (`Store::claim_event`, a lease of twice the timeout), so one instance sends a
//! given event at a time; a 2xx marks it delivered, anything else schedules the next attempt from
//! `events.retry_secs` (±10 %), and once the next would fall outside `events.retry_for_hours`
//! the event is `failed`. An event already older than the window when first seen is `expired`,
//! unsent. Slack copies go the same way on their own record, in no particular order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, DateTime, Document};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::Settings;
use crate::store::events::{int, Attempt, Channel, End, EXPIRED, FAILED};
use crate::store::orders::plus;
use crate::store::{Store, StoreResult};
use crate::telemetry::{labels, names};

/// Attempts in flight per channel, at most.
pub const IN_FLIGHT: usize = 16;

/// How often the gauges are refreshed, at most.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Where the shop's events go and how they are signed.
struct Shop {
    url: String,
    key: Vec<u8>,
}

/// Everything a pass needs; built once by the actor.
pub struct Sender {
    inner: Arc<Inner>,
    /// The attempts in flight, per channel.
    shop_flights: JoinSet<StoreResult<()>>,
    slack_flights: JoinSet<StoreResult<()>>,
    gauges_at: Option<Instant>,
}

/// What the attempts in flight share with the passes.
struct Inner {
    store: Store,
    http: reqwest::Client,
    shop: Option<Shop>,
    slack: Option<SecretString>,
    owner: String,
    timeout: Duration,
    retry: Vec<Duration>,
    window: Duration,
    /// Notified when an attempt has landed (its outcome recorded).
    landed: Notify,
    /// Claims made so far: each attempt's lease is the owner and this number.
    claims: AtomicU64,
}

/// What one attempt came to: the HTTP status when an answer came, and why it was not a 2xx
/// (`None`: delivered).
type Answer = (Option<u16>, Option<String>);

impl Sender {
    /// The sender of this process (`owner`: its lease owner id).
    pub fn new(store: Store, settings: &Settings, owner: &str) -> anyhow::Result<Sender> {
        let e = &settings.events;
        let shop = match (&e.url, &e.secret) {
            (Some(url), Some(secret)) => Some(Shop {
                url: url.clone(),
                key: super::sign::key(secret.expose_secret()).map_err(anyhow::Error::msg)?,
            }),
            _ => None,
        };
        let http = reqwest::Client::builder()
            .timeout(e.timeout)
            // A redirect is a failed attempt (Standard Webhooks): the URL should be updated.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("draft-reconciler/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let inner = Inner {
            store,
            http,
            shop,
            slack: settings.notify.slack_url.clone(),
            owner: owner.to_string(),
            timeout: e.timeout,
            retry: e.retry.clone(),
            window: e.window(),
            landed: Notify::new(),
            // From a random number, so a restarted sender never reuses an earlier lease name.
            claims: AtomicU64::new(fastrand::u64(..u64::MAX / 2)),
        };
        Ok(Sender {
            inner: Arc::new(inner),
            shop_flights: JoinSet::new(),
            slack_flights: JoinSet::new(),
            gauges_at: None,
        })
    }

    /// Resolves when an attempt has landed since the last call (the actor's wake-up: the next
    /// event of that order may be due now).
    pub async fn landed(&self) {
        self.inner.landed.notified().await;
    }

    /// Attempts in flight on `ch`.
    pub fn in_flight(&self, ch: Channel) -> usize {
        match ch {
            Channel::Shop => self.shop_flights.len(),
            Channel::Slack => self.slack_flights.len(),
        }
    }

    /// One pass; whether it did anything (the actor then goes again at once).
    pub async fn pass(&mut self) -> StoreResult<bool> {
        // What landed since the last pass: an attempt whose record failed is this pass's error
        // (its lease runs out and the event is sent again); a panic goes on to the actor.
        let mut landed = false;
        for flights in [&mut self.shop_flights, &mut self.slack_flights] {
            while let Some(done) = flights.try_join_next() {
                landed = true;
                match done {
                    Ok(r) => r?,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                }
            }
        }
        let s = &self.inner;
        // Moving leftovers is best effort: a refusal there must not stop sending what is
        // moved already, nor the gauges the alerts read.
        let mut worked = match s.store.relay_leftovers().await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "events: moving leftover events failed; sending the others");
                false
            }
        };
        if s.shop.is_some() {
            worked |= self.send_due(Channel::Shop).await?;
        }
        if self.inner.slack.is_some() {
            worked |= self.send_due(Channel::Slack).await?;
        }
        if self.gauges_at.is_none_or(|t| t.elapsed() >= GAUGES_EVERY) {
            self.gauges_at = Some(Instant::now());
            self.inner.gauges().await?;
        }
        Ok(worked || landed)
    }

    /// Claim what is due on `ch`, as far as there is room in flight, and send each claimed
    /// event on a task of its own; whether anything was claimed or closed.
    async fn send_due(&mut self, ch: Channel) -> StoreResult<bool> {
        let room = IN_FLIGHT.saturating_sub(self.in_flight(ch));
        if room == 0 {
            return Ok(false);
        }
        let s = self.inner.clone();
        let now = DateTime::now();
        let due = s.store.due_events(ch, now, (IN_FLIGHT * 4) as i64).await?;
        // Per order, this pass: an event claimed, and the lowest `seq` set aside to wait.
        let mut claimed_orders = HashSet::new();
        let mut waiting_from: HashMap<String, i64> = HashMap::new();
        let mut claimed = 0;
        let mut worked = false;
        for mut event in due {
            if claimed == room {
                break;
            }
            let Ok(id) = event.get_str("_id").map(str::to_string) else {
                continue;
            };
            if ch == Channel::Shop {
                let order = event.get("orderId").map_or_else(String::new, Bson::to_string);
                let seq = int(event.get("seq"));
                if let (Some(from), Some(seq)) = (waiting_from.get(&order), seq) {
                    if seq >= *from {
                        continue; // set aside with an earlier one of its order, this pass
                    }
                }
                if claimed_orders.contains(&order) || s.store.waits_behind(&event).await? {
                    if let (Some(order_id), Some(seq)) = (event.get("orderId"), seq) {
                        s.store.defer_waiting(order_id, seq, now).await?;
                        let from = waiting_from.entry(order).or_insert(seq);
                        *from = (*from).min(seq);
                        // More may be due behind these: the actor goes again at once.
                        worked = true;
                    }
                    continue;
                }
                if record_flag(ch, &event, "waiting") {
                    // It was set aside, and the end of the event it waited for was not seen
                    // through: its wait ends now (and its window starts then, unless that
                    // event expired unsent).
                    match s.store.end_wait(&event, now).await? {
                        Some(now_stored) => event = now_stored,
                        None => continue,
                    }
                }
            }
            if let Some(to) = s.out_of_window(ch, &event, now) {
                let attempts = record_int(ch, &event, "attempts");
                let start = ch.window_start(&event);
                if s.store.close_event(ch, &id, attempts, start, to, now).await? {
                    worked = true;
                    s.closed(ch, &event, to).await?;
                }
                continue;
            }
            // This attempt's own lease, from the moment of its claim (the loop's round trips
            // may have taken a while): a replay takes the event from it for good, even when
            // this instance claims the replayed event again.
            let at = DateTime::now();
            let until = plus(at, s.timeout * 2);
            let lease = format!("{}#{}", s.owner, s.claims.fetch_add(1, Ordering::Relaxed));
            let Some(e) = s.store.claim_event(ch, &id, &lease, at, until).await? else {
                continue;
            };
            if let (Channel::Shop, Some(order)) = (ch, e.get("orderId")) {
                claimed_orders.insert(order.to_string());
            }
            // Sent at once, so a later refusal in this loop cannot strand a claimed event.
            let flights = match ch {
                Channel::Shop => &mut self.shop_flights,
                Channel::Slack => &mut self.slack_flights,
            };
            let s = s.clone();
            flights.spawn(async move {
                let r = s.attempt(ch, &e, &lease).await;
                s.landed.notify_one();
                r
            });
            claimed += 1;
            worked = true;
        }
        Ok(worked)
    }
}

impl Inner {
    /// `expired` for an event never attempted whose window has passed (old news: never sent),
    /// `failed` for one attempted whose window passed while it waited; `None` inside the window.
    fn out_of_window(&self, ch: Channel, event: &Document, now: DateTime) -> Option<&'static str> {
        let start = ch
            .window_start(event)
            .or_else(|| event.get_datetime("createdAt").ok().copied())?;
        if now <= plus(start, self.window) {
            return None;
        }
        Some(if record_int(ch, event, "attempts") == 0 {
            EXPIRED
        } else {
            FAILED
        })
    }

    /// An event closed without an attempt: counted, and (for the shop) the next of its order
    /// may go.
    async fn closed(&self, ch: Channel, event: &Document, to: &'static str) -> StoreResult<()> {
        let result = if to == EXPIRED {
            labels::event_result::EXPIRED
        } else {
            labels::event_result::FAILED
        };
        count(ch, event, result);
        let id = event.get_str("_id").unwrap_or("?");
        tracing::warn!(
            event_id = id,
            state = to,
            "event closed without another attempt: outside events.retry_for_hours"
        );
        if ch == Channel::Shop {
            self.unblock(event, to == FAILED).await?;
        }
        Ok(())
    }

    /// Send one claimed event (under `lease`) and record how it went.
    async fn attempt(&self, ch: Channel, event: &Document, lease: &str) -> StoreResult<()> {
        let id = event.get_str("_id").unwrap_or_default();
        let (status, error) = match ch {
            Channel::Shop => self.post_shop(id, event).await,
            Channel::Slack => self.post_slack(event).await,
        };
        let now = DateTime::now();
        let attempts = record_int(ch, event, "attempts");
        let end = if error.is_none() {
            End::Delivered
        } else {
            let next = plus(now, super::retry_wait(attempts, &self.retry, super::jitter()));
            let start = ch.window_start(event).unwrap_or(now);
            if next <= plus(start, self.window) {
                End::Retry(next)
            } else {
                End::Failed
            }
        };
        let attempt = Attempt { status, error, end };
        if !self.store.end_attempt(ch, id, lease, &attempt, now).await? {
            tracing::warn!(
                event_id = id,
                "an event's attempt was not recorded: it outlived its lease, or the event was replayed meanwhile"
            );
            return Ok(());
        }
        let result = match end {
            End::Delivered => labels::event_result::DELIVERED,
            End::Retry(_) => labels::event_result::RETRIED,
            End::Failed => labels::event_result::FAILED,
        };
        count(ch, event, result);
        if end == End::Delivered {
            tracing::info!(event_id = id, attempts, "event delivered");
        } else {
            let status = status.map_or_else(|| "-".to_string(), |s| s.to_string());
            let error = attempt.error.as_deref().unwrap_or("-");
            tracing::warn!(event_id = id, attempts, status = %status, error, result, "event not accepted");
        }
        if ch == Channel::Shop && !matches!(end, End::Retry(_)) {
            self.unblock(event, true).await?;
        }
        Ok(())
    }

    /// The event ended: the later ones of its order waiting behind it go on (their window
    /// restarted when it was delivered or failed, `restart`).
    async fn unblock(&self, event: &Document, restart: bool) -> StoreResult<()> {
        match (event.get("orderId"), int(event.get("seq"))) {
            (Some(order), Some(seq)) => self.store.unblock_after(order, seq, restart, DateTime::now()).await,
            _ => Ok(()),
        }
    }

    /// POST the event's frozen body to the shop, signed for this attempt.
    async fn post_shop(&self, id: &str, event: &Document) -> Answer {
        let Some(shop) = &self.shop else {
            return refused(None, "no events.url");
        };
        let body = body(event);
        let timestamp = DateTime::now().timestamp_millis() / 1000;
        let signature = super::sign::signature(&shop.key, id, timestamp, &body);
        let request = self
            .http
            .post(&shop.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        answer(request.send().await)
    }

    /// POST the one-line Slack copy.
    async fn post_slack(&self, event: &Document) -> Answer {
        let Some(url) = &self.slack else {
            return refused(None, "no notify.slack_url");
        };
        let text = super::slack_line(event);
        let request = self
            .http
            .post(url.expose_secret())
            .json(&serde_json::json!({ "text": text }));
        answer(request.send().await)
    }

    /// The gauges: only with `events.url` set (without it nothing is expected to leave).
    async fn gauges(&self) -> StoreResult<()> {
        let (pending, failed, oldest) = if self.shop.is_some() {
            self.store.event_counts().await?
        } else {
            (0, 0, None)
        };
        let age = oldest.map_or(0, |t| {
            (DateTime::now().timestamp_millis() - t.timestamp_millis()).max(0) / 1000
        });
        metrics::gauge!(names::EVENTS_UNDELIVERED).set(pending as f64);
        metrics::gauge!(names::EVENTS_FAILED).set(failed as f64);
        metrics::gauge!(names::EVENTS_OLDEST_UNDELIVERED).set(age as f64);
        Ok(())
    }
}

/// The body an event is sent with: its frozen payload as compact JSON (the same bytes every
/// attempt and every replay).
pub fn body(event: &Document) -> String {
    let payload = event.get_document("payload").cloned().unwrap_or_default();
    Bson::Document(payload).into_relaxed_extjson().to_string()
}

/// A flag of `ch`'s delivery record in `event`.
fn record_flag(ch: Channel, event: &Document, k: &str) -> bool {
    ch.record(event).and_then(|r| r.get_bool(k).ok()).unwrap_or(false)
}

/// A counter of `ch`'s delivery record in `event`.
fn record_int(ch: Channel, event: &Document, k: &str) -> i64 {
    int(ch.record(event).and_then(|r| r.get(k))).unwrap_or(0)
}

fn count(ch: Channel, event: &Document, result: &'static str) {
    match ch {
        Channel::Shop => {
            // The type label is one of the fixed event types, never anything read raw.
            let ty = event
                .get_str("type")
                .ok()
                .and_then(crate::domain::EventType::parse)
                .map_or("unknown", |t| t.as_str());
            metrics::counter!(names::EVENTS, labels::TYPE => ty, labels::RESULT => result).increment(1);
        }
        Channel::Slack => metrics::counter!(names::NOTIFICATIONS, labels::RESULT => result).increment(1),
    }
}

fn refused(status: Option<u16>, error: &str) -> Answer {
    (status, Some(error.to_string()))
}

/// A 2xx is delivered; anything else (another status, a timeout, no connection) is not. Errors
/// are described without their URL (the Slack one is a credential).
fn answer(result: reqwest::Result<reqwest::Response>) -> Answer {
    match result {
        Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
        Ok(r) => refused(Some(r.status().as_u16()), "not a 2xx answer"),
        Err(e) if e.is_timeout() => refused(None, "timeout"),
        Err(e) if e.is_connect() => refused(None, "connection failed"),
        Err(e) => refused(None, &format!("request failed: {}", e.without_url())),
    }
}
