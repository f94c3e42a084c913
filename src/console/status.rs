//! `GET /status`: is the service running, and how it is doing, from the state `/healthz` and the
//! metrics read: this process's health and last successful scan (inside `run`), the instances
//! heard from through the shared budget, the PhonePe budget and its breaker, parked orders,
//! pending refunds, and the events not delivered to the shop.

use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use mongodb::bson::DateTime;

use super::html::{frame, when};
use super::{auth, events, internal, Console};
use crate::store::StoreResult;

/// What the page shows, read once per request.
struct Reading {
    instances: Option<u64>,
    schedule: Option<crate::store::budget::Schedule>,
    parked: u64,
    refunds: (u64, u64),
    events: (u64, u64),
}

async fn read(c: &Console) -> StoreResult<Reading> {
    let env = &c.0.env;
    let shared = env.budget.shared_db();
    let instances = match shared {
        Some(db) => Some(db.count_seen().await?),
        None => None,
    };
    let schedule = match shared {
        Some(db) => db.look().await?,
        None => None,
    };
    Ok(Reading {
        instances,
        schedule,
        parked: env.store.count_needs_review().await?,
        refunds: env.store.count_pending_refunds().await?,
        events: events::undelivered(&env.store).await?,
    })
}

pub async fn page(State(c): State<Console>, headers: HeaderMap) -> Response {
    let session = match auth::required(&c, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let r = match read(&c).await {
        Ok(r) => r,
        Err(e) => return internal("reading the status", &e),
    };
    let env = &c.0.env;
    let budget = env.settings.job.rate_limit_per_minute;
    let breaker = env
        .budget
        .paused_until()
        .map(|t| t.saturating_duration_since(tokio::time::Instant::now()));
    let main = html! {
        h1 { "Status" }
        dl {
            dt { "This process" }
            dd { (this_process(&c)) }
            dt { "Instances running" }
            dd { @match r.instances {
                Some(n) => { (n) " heard from in the last 30 s (sharing this merchant's PhonePe budget)" }
                None => "—",
            } }
            dt { "PhonePe budget" }
            dd {
                (budget) " calls a minute for every instance together; "
                @match r.schedule {
                    Some(s) if !s.booked_ahead.is_zero() => { "in use: the next free call is " (secs(s.booked_ahead)) " ahead" }
                    Some(_) => "a call is free now",
                    None => "no call made yet",
                }
            }
            dt { "Breaker" }
            dd {
                @match (breaker, r.schedule.map(|s| s.paused_for).filter(|d| !d.is_zero())) {
                    (_, Some(shared)) => { "open: every instance holds its PhonePe calls for " (secs(shared)) " more (a 429 or refused credentials)" }
                    (Some(local), None) => { "open in this process: calls paused for " (secs(local)) " more" }
                    (None, None) => "closed: PhonePe calls go out",
                }
            }
            dt { "Parked orders" }
            dd { a href="/" { (r.parked) } " in needs_review" }
            dt { "Pending refunds" }
            dd { (r.refunds.0) " pending at PhonePe" @if r.refunds.1 > 0 { ", " strong { (r.refunds.1) " flagged" } " (no final answer after 10 asks)" } }
            dt { "Undelivered events" }
            dd { (r.events.0) " waiting to be delivered" @if r.events.1 > 0 { ", " strong { (r.events.1) " failed" } } }
        }
        p { "Shown at " (when(DateTime::now())) "." }
    };
    frame(StatusCode::OK, "Status", Some(&session), main).into_response()
}

/// The service in this process, or that this console runs alone.
fn this_process(c: &Console) -> Markup {
    let Some(health) = &c.0.service else {
        return html! { "the console alone (" code { "console serve" } "): no scanner here; see the instances below" };
    };
    let last = health.last_scan().map(|t| {
        let millis = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        when(DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX)))
    });
    html! {
        @match health.check_at(Instant::now()) {
            Ok(()) => { strong { "running" } " (healthy: the supervisor is up and the scanner ticks)" }
            Err(why) => { strong { "unhealthy" } ": " (why.to_string()) }
        }
        br;
        "Last successful scan: " (last.unwrap_or_else(|| "none yet".into()))
        " (scans at least every " (secs(health.interval())) ")"
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{s} s")
}
