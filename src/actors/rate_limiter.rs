//! RateLimiter: the PhonePe budget, one permit at a time in FIFO order (`Acquire` is an
//! `AtomicResponse`), and the circuit breaker. The state lives in [`Budget`], outside the actor, so
//! a restarted RateLimiter continues the same schedule; in the service that schedule is one
//! document per merchant in MongoDB that every instance shares ([`shared`], `store::budget`), and
//! no database means no permit. docs/architecture.md, "Backpressure" (budget and breaker).
//!
//! Fault points (feature `fault-injection`): `rate_limiter.started`; `rate_limiter.acquire` on
//! each request (`panic`, `stop`, `error` = answered "paused", `delay<ms>` = a hung limiter).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use tokio::time::Instant;

use super::child::ChildGuard;
pub use crate::domain::decision::{RATE_LIMITED_PAUSE, REJECTED_PAUSE};
use crate::store::budget::SharedBudget;
use crate::telemetry::names;

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The GCRA's clock: tokio's time since the budget was made. In the service that is the monotonic
/// clock, as with governor's own; under tokio's paused clock (`start_paused`, tests) the budget's
/// schedule moves with `tokio::time::advance` and auto-advance like every sleep here does.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    fn new() -> TokioClock {
        TokioClock { origin: Instant::now() }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

/// When a pause is longer than this, `Acquire` answers `Paused` at once instead of waiting, so
/// the reconciler gives the order back rather than sitting on its lease.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(10);
/// When the shared budget cannot be read, callers hold their calls this long (fail closed).
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(5);
/// Consecutive transient failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// Different orders refused (`BAD_REQUEST`) in a row that pause every call as if rejected.
pub const REFUSALS_TO_PAUSE: usize = 3;
/// How long the other callers wait for a half-open probe's result at most (a probe whose caller
/// never reports, e.g. it died, must not block the budget for good).
const PROBE_AT_MOST: Duration = Duration::from_secs(30);
/// How often waiters look at the shared state while they wait for a probe or a verdict.
const POLL: Duration = Duration::from_millis(20);
/// Different orders remembered in a run of failures or refusals (only "how many" matters).
const RUN_MEMORY: usize = 8;

/// The pause after the breaker opened `opened` times without a good answer between: 2 s, 4 s,
/// then 8 s. Short on purpose: reconcilers wait through it (it is below [`WAIT_AT_MOST`]) and
/// the half-open probe keeps an outage at one call per pause.
pub fn failure_pause(opened: u32) -> Duration {
    Duration::from_secs(1u64 << opened.clamp(1, 3))
}

/// The GCRA period for `per_minute` calls a minute, margin included.
fn period_for(per_minute: u32) -> Duration {
    let per_minute = per_minute.max(1);
    // Margin per call, because PhonePe counts arrivals while we count departures: 20 ms (or a
    // tenth of the period for very high budgets, so a lifted budget is not capped at 50
    // calls/s), and never less than 1 %. At 30/min that is 2.02 s between calls: no 60 s
    // window PhonePe sees can hold more than 30, even with network jitter.
    let period = Duration::from_secs(60) / per_minute;
    let margin = (period / 100).max(Duration::from_millis(20).min(period / 10));
    (period + margin).max(Duration::from_micros(1))
}

/// The budget state: survives RateLimiter restarts. With a [`SharedBudget`] (how the service
/// runs) permits come from the schedule every instance shares in MongoDB; without one (unit
/// tests) from an in-process GCRA.
pub struct Budget {
    gcra: Gcra,
    /// The schedule shared with every instance of this merchant, when there is one.
    shared: Option<shared::Shared>,
    clock: TokioClock,
    /// The GCRA period: one permit per `period`.
    period: Duration,
    /// Shared with the task that closes the `circuit_open` gauge when a pause ends.
    state: Arc<Mutex<BreakerState>>,
}

#[derive(Default)]
struct BreakerState {
    paused_until: Option<Instant>,
    /// Transient failures in a row (calls sent since the last pause began).
    consecutive_failures: u32,
    /// The different orders among the failures in a row (keys, see [`order_key`]).
    failing: Vec<u64>,
    /// The different orders refused in a row.
    refused: Vec<u64>,
    /// Failure pauses in a row without a good answer (sets the next pause's length).
    opened: u32,
    /// When the last failure pause began: results of calls sent before it are stale (they were
    /// in flight already) and do not open the breaker again.
    opened_at: Option<Instant>,
    /// After a failure pause: the next call is a probe, the others wait for its result.
    half_open: bool,
    /// When the probe was let out, while it has not reported.
    probe: Option<Instant>,
    /// Results recorded so far (waiters for a verdict watch it move).
    results: u64,
}

impl BreakerState {
    /// Whether a failure now is the whole service's, not one order's: failures of at least two
    /// different orders in a row, or calls paused. (Two orders failing alone with no other
    /// traffic look like an outage; they are then retried at the breaker's pace.) Unreadable
    /// answers never count here: PhonePe did answer.
    fn service_wide(&self, now: Instant) -> bool {
        self.failing.len() >= 2 || self.paused_until.is_some_and(|t| t > now)
    }

    fn close(&mut self) {
        self.consecutive_failures = 0;
        self.failing.clear();
        self.opened = 0;
        self.opened_at = None;
        self.half_open = false;
        self.probe = None;
    }
}

fn lock(state: &Mutex<BreakerState>) -> MutexGuard<'_, BreakerState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn remember(run: &mut Vec<u64>, key: u64) {
    if !run.contains(&key) && run.len() < RUN_MEMORY {
        run.push(key);
    }
}

/// The breaker's key for an order: a hash of its merchantTransactionId (the breaker only tells
/// orders apart; it keeps no id).
pub fn order_key(mtid: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    mtid.hash(&mut h);
    h.finish()
}

/// How a PhonePe call went, recorded by the reconciler right after each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// A business answer (any state).
    Answered,
    /// HTTP 429: everyone backs off.
    RateLimited,
    /// 5xx, timeout or connection error, for the order with this key.
    Failed(u64),
    /// A malformed or undocumented answer: counts towards opening the breaker, but never makes
    /// another order's failure look service-wide (it is about this order; see `domain::decision`).
    Unreadable,
    /// Our credentials were refused (401 / AUTHORIZATION_FAILED).
    Rejected,
    /// PhonePe refused the request about the order with this key (BAD_REQUEST).
    Refused(u64),
}

/// What the breaker made of one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The failure looks like the whole service's (`BreakerState::service_wide`), not the order's:
    /// it is retried in place and adds nothing to the order's own backoff.
    pub service_wide: bool,
    /// Results recorded up to and including this one (for [`Budget::await_verdict`]).
    pub seq: u64,
}
impl Budget {
    /// A budget of `per_minute` calls in any 60-second window.
    pub fn per_minute(per_minute: u32) -> Budget {
        let period = period_for(per_minute);
        // with_period is None only for a zero period, which period_for rules out.
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MIN));
        let clock = TokioClock::new();
        Budget {
            gcra: governor::RateLimiter::direct_with_clock(quota, clock),
            shared: None,
            clock,
            period,
            state: Arc::default(),
        }
    }

    /// A budget of `per_minute` calls in any 60-second window for *every* instance using `db`'s
    /// merchant together (see `store::budget`).
    pub fn shared(per_minute: u32, db: SharedBudget) -> Budget {
        let mut b = Budget::per_minute(per_minute);
        b.shared = Some(shared::Shared::new(db, b.period));
        b
    }

    /// The shared schedule's handle, when this budget is shared.
    pub fn shared_db(&self) -> Option<&SharedBudget> {
        self.shared.as_ref().map(shared::Shared::db)
    }

    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        lock(&self.state)
    }

    /// Until when calls are paused, if they are.
    pub fn paused_until(&self) -> Option<Instant> {
        self.lock().paused_until.filter(|t| *t > Instant::now())
    }

    /// Pause every caller for `d` (never shortens an existing pause).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut s = self.lock();
        if s.paused_until.is_none_or(|t| t < until) {
            s.paused_until = Some(until);
        }
        drop(s);
        metrics::gauge!(names::CIRCUIT_OPEN).set(1.0);
        // Close the gauge when the pause ends even if no call comes after it (an idle shop), so
        // dashboards and alerts do not show a pause that is over. `acquire` closes it too.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let state = self.state.clone();
            rt.spawn(async move {
                tokio::time::sleep_until(until).await;
                let over = lock(&state).paused_until.is_none_or(|t| t <= Instant::now());
                if over {
                    metrics::gauge!(names::CIRCUIT_OPEN).set(0.0);
                }
            });
        }
    }

    /// Feed the breaker with the result of one call sent at `sent`. Called by the reconciler
    /// directly, so it takes effect before the next permit is handed out.
    pub fn record(&self, r: CallResult, sent: Instant) -> Verdict {
        let now = Instant::now();
        let (pause, verdict) = {
            let mut s = self.lock();
            s.results += 1;
            let pause = Self::apply(&mut s, r, sent);
            if pause.is_some() {
                s.probe = None;
            }
            let service_wide = pause.is_some() || s.service_wide(now);
            (
                pause,
                Verdict {
                    service_wide,
                    seq: s.results,
                },
            )
        };
        if let Some(d) = pause {
            tracing::warn!(pause_secs = d.as_secs_f64(), cause = ?r, "pausing PhonePe calls");
            self.pause(d);
            // A 429 or refused credentials concern the merchant account: pause every instance.
            if matches!(
                r,
                CallResult::RateLimited | CallResult::Rejected | CallResult::Refused(_)
            ) {
                self.share_pause(d);
            }
        }
        verdict
    }

    /// Write a pause of `d` to the shared schedule (in the background: `record` must not wait).
    fn share_pause(&self, d: Duration) {
        let (Some(shared), Ok(rt)) = (&self.shared, tokio::runtime::Handle::try_current()) else {
            return;
        };
        shared.forget();
        let db = shared.db().clone();
        rt.spawn(async move {
            if let Err(e) = db.pause(d).await {
                tracing::warn!(error = %e, "could not share the pause with the other instances");
            }
        });
    }

    /// The breaker's transition for one result; `Some` pause if calls must pause now.
    fn apply(s: &mut BreakerState, r: CallResult, sent: Instant) -> Option<Duration> {
        match r {
            CallResult::Answered => {
                s.close();
                s.refused.clear();
                None
            }
            CallResult::RateLimited => Some(RATE_LIMITED_PAUSE),
            CallResult::Rejected => Some(REJECTED_PAUSE),
            CallResult::Refused(key) => {
                // PhonePe answered coherently: it is up, whatever it thinks of this order.
                s.close();
                remember(&mut s.refused, key);
                if s.refused.len() >= REFUSALS_TO_PAUSE {
                    s.refused.clear();
                    return Some(REJECTED_PAUSE);
                }
                None
            }
            CallResult::Failed(_) | CallResult::Unreadable => {
                if let CallResult::Failed(key) = r {
                    remember(&mut s.failing, key);
                }
                if s.opened_at.is_some_and(|t| sent < t) {
                    return None; // in flight before the last pause: already accounted for
                }
                s.consecutive_failures += 1;
                if s.half_open || s.consecutive_failures >= FAILURES_TO_OPEN {
                    s.consecutive_failures = 0;
                    s.opened = (s.opened + 1).min(3);
                    s.opened_at = Some(Instant::now());
                    s.half_open = true; // the next call is a probe; the others wait for its result
                    return Some(failure_pause(s.opened));
                }
                None
            }
        }
    }

    /// After a failure the breaker could not yet call service-wide (`verdict`): wait for the next
    /// result of any call (bounded by about two permits), then tell whether the failure was the
    /// whole service's after all. With no other call meanwhile, it was this order's alone.
    pub async fn await_verdict(&self, verdict: Verdict) -> bool {
        if verdict.service_wide {
            return true;
        }
        let deadline = Instant::now() + (self.period * 2 + Duration::from_secs(1)).min(WAIT_AT_MOST);
        loop {
            {
                let s = self.lock();
                if s.results > verdict.seq {
                    return s.service_wide(Instant::now());
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A half-open probe is out and has not reported yet: wait for it.
    fn probe_out(&self) -> bool {
        let s = self.lock();
        s.half_open && s.probe.is_some_and(|t| t.elapsed() < PROBE_AT_MOST)
    }

    /// Take a GCRA permit if one is due; a permit in the half-open state makes its call the probe.
    fn try_permit(&self) -> Result<(), Duration> {
        let mut s = self.lock();
        match self.gcra.check() {
            Ok(()) => {
                if s.half_open {
                    s.probe = Some(Instant::now());
                }
                Ok(())
            }
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Wait for the next permit: first for any pause to end and any half-open probe to report,
    /// then for the GCRA schedule. The permit says how long the caller waited.
    pub async fn acquire(&self) -> Result<Permit, Paused> {
        let started = Instant::now();
        loop {
            if let Some(until) = self.paused_until() {
                let left = until.saturating_duration_since(Instant::now());
                if left > WAIT_AT_MOST {
                    return Err(Paused { until });
                }
                tokio::time::sleep(left).await;
                continue;
            }
            if self.probe_out() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            metrics::gauge!(names::CIRCUIT_OPEN).set(0.0);
            if let Some(shared) = &self.shared {
                match self.shared_permit(shared).await {
                    Some(Ok(())) => return Ok(Permit::after(started)),
                    // A slow or briefly unreachable database: still no call, but look again
                    // while the caller may hold its order, rather than give the order back.
                    Some(Err(_)) if started.elapsed() + UNREACHABLE_RETRY <= WAIT_AT_MOST => {
                        tokio::time::sleep(UNREACHABLE_RETRY).await;
                        continue;
                    }
                    Some(Err(paused)) => return Err(paused),
                    None => continue,
                }
            }
            match self.try_permit() {
                Ok(()) => return Ok(Permit::after(started)),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// A permit from the shared schedule, waited for; `None` when a shared pause began (now in
    /// force locally: look again); `Err` when MongoDB cannot be asked (fail closed: no call).
    async fn shared_permit(&self, shared: &shared::Shared) -> Option<Result<(), Paused>> {
        match shared.next().await {
            Ok(shared::Next::At(at)) => {
                if at > Instant::now() {
                    tokio::time::sleep_until(at).await;
                }
                let mut s = self.lock();
                if s.half_open {
                    s.probe = Some(Instant::now());
                }
                Some(Ok(()))
            }
            Ok(shared::Next::Paused(d)) => {
                shared.forget();
                self.pause(d);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the shared PhonePe budget cannot be read: no call");
                Some(Err(Paused {
                    until: Instant::now() + UNREACHABLE_RETRY,
                }))
            }
        }
    }
}

/// Calls are paused for longer than a caller should hold an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    pub until: Instant,
}

/// One PhonePe call of the budget. Only [`Budget::acquire`] makes one (the RateLimiter hands
/// them out in FIFO order), and the PhonePe gateway (`phonepe::gateway`) takes one for every
/// call it makes, so no call goes out without its permit.
#[derive(Debug)]
pub struct Permit {
    waited: Duration,
}

impl Permit {
    fn after(started: Instant) -> Permit {
        Permit {
            waited: started.elapsed(),
        }
    }

    /// How long the caller waited for it.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

/// Ask for one PhonePe call. Answers in FIFO order.
#[derive(Message)]
#[rtype(result = "Result<Permit, Paused>")]
pub struct Acquire;

pub struct RateLimiter {
    budget: std::sync::Arc<Budget>,
    _guard: ChildGuard,
}

impl RateLimiter {
    pub fn new(budget: std::sync::Arc<Budget>, guard: ChildGuard) -> RateLimiter {
        RateLimiter { budget, _guard: guard }
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Waiters queue here; make the mailbox large enough for the whole pool.
        ctx.set_mailbox_capacity(1024);
        if crate::fault::point("rate_limiter.started") == Some(crate::fault::Injected::Stop) {
            ctx.stop();
        }
    }
}

impl Handler<Acquire> for RateLimiter {
    type Result = AtomicResponse<Self, Result<Permit, Paused>>;

    fn handle(&mut self, _: Acquire, ctx: &mut Self::Context) -> Self::Result {
        use crate::fault::Injected;
        let injected = crate::fault::point("rate_limiter.acquire");
        if injected == Some(Injected::Stop) {
            ctx.stop();
        }
        let budget = self.budget.clone();
        AtomicResponse::new(Box::pin(
            async move {
                match injected {
                    Some(Injected::Stop | Injected::Error) => return Err(Paused { until: Instant::now() }),
                    Some(Injected::Delay(d)) => tokio::time::sleep(d).await,
                    None => {}
                }
                budget.acquire().await
            }
            .into_actor(self),
        ))
    }
}

pub(crate) mod shared;
#[cfg(test)]
mod tests;
