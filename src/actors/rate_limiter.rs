//! RateLimiter: the PhonePe budget, handed out one permit at a time in FIFO order.
//!
//! The budget is a GCRA limiter (governor) with burst 1 and a period a little longer than
//! `60 s / rate_limit_per_minute`, so no 60-second window ever sees more calls than the limit,
//! even with network jitter between our permit and PhonePe's clock. `Acquire` is an
//! `AtomicResponse`: the actor serves one waiter at a time, so permits come out in mailbox (FIFO)
//! order. The budget's state lives in [`Budget`], outside the actor, so a restarted RateLimiter
//! continues the same schedule instead of handing out a fresh burst.
//!
//! It is also the circuit breaker: a 429 pauses every caller for a minute; PhonePe rejecting our
//! credentials (401 / AUTHORIZATION_FAILED / BAD_REQUEST) or a run of transient failures pauses
//! calls for longer, so a dead PhonePe or a bad salt key does not burn the budget on doomed calls.
//!
//! Fault points (feature `fault-injection`): `rate_limiter.started`; `rate_limiter.acquire` on
//! each request (`panic`, `stop`, `error` = answered "paused", `delay<ms>` = a hung limiter).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

use super::supervisor::ChildGuard;
use crate::telemetry::names;

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// When a pause is longer than this, `Acquire` answers `Paused` at once instead of waiting, so
/// the reconciler gives the order back rather than sitting on its lease.
const WAIT_AT_MOST: Duration = Duration::from_secs(10);
/// Consecutive transient failures that open the breaker.
const FAILURES_TO_OPEN: u32 = 5;

/// The shared budget state: survives RateLimiter restarts.
pub struct Budget {
    gcra: Gcra,
    clock: MonotonicClock,
    /// Shared with the task that closes the `circuit_open` gauge when a pause ends.
    state: Arc<Mutex<BreakerState>>,
}

#[derive(Default)]
struct BreakerState {
    paused_until: Option<Instant>,
    consecutive_failures: u32,
    opened: u32,
}

fn lock(state: &Mutex<BreakerState>) -> MutexGuard<'_, BreakerState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a PhonePe call went, reported by the reconciler after each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// A business answer (any state).
    Answered,
    /// HTTP 429: everyone backs off.
    RateLimited,
    /// 5xx, timeout, connection or malformed answer.
    Failed,
    /// Our credentials or request were refused.
    Rejected,
}

impl Budget {
    /// A budget of `per_minute` calls in any 60-second window.
    pub fn per_minute(per_minute: u32) -> Budget {
        let per_minute = per_minute.max(1);
        // Margin per call, because PhonePe counts arrivals while we count departures: 20 ms (or a
        // tenth of the period for very high budgets, so a lifted budget is not capped at 50
        // calls/s), and never less than 1 %. At 30/min that is 2.02 s between calls: no 60 s
        // window PhonePe sees can hold more than 30, even with network jitter.
        let period = Duration::from_secs(60) / per_minute;
        let margin = (period / 100).max(Duration::from_millis(20).min(period / 10));
        let period = (period + margin).max(Duration::from_micros(1));
        // with_period is None only for a zero period, which the max() rules out.
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MIN));
        Budget {
            gcra: governor::RateLimiter::direct_with_clock(quota, MonotonicClock),
            clock: MonotonicClock,
            state: Arc::default(),
        }
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
                tokio::time::sleep_until(until.into()).await;
                let over = lock(&state).paused_until.is_none_or(|t| t <= Instant::now());
                if over {
                    metrics::gauge!(names::CIRCUIT_OPEN).set(0.0);
                }
            });
        }
    }

    /// Feed the breaker with the result of one call.
    pub fn record(&self, r: CallResult) {
        let pause = {
            let mut s = self.lock();
            match r {
                CallResult::Answered => {
                    s.consecutive_failures = 0;
                    s.opened = 0;
                    None
                }
                CallResult::RateLimited => Some(Duration::from_secs(60)),
                CallResult::Rejected => Some(crate::domain::decision::REJECTED_PAUSE),
                CallResult::Failed => {
                    s.consecutive_failures += 1;
                    if s.consecutive_failures >= FAILURES_TO_OPEN {
                        s.consecutive_failures = 0;
                        s.opened = (s.opened + 1).min(4);
                        Some(Duration::from_secs(15 << s.opened)) // 30 s … 4 min
                    } else {
                        None
                    }
                }
            }
        };
        if let Some(d) = pause {
            tracing::warn!(pause_secs = d.as_secs(), cause = ?r, "pausing PhonePe calls");
            self.pause(d);
        }
    }

    /// Wait for the next permit: first for any pause to end, then for the GCRA schedule.
    /// Returns how long the caller waited.
    pub async fn acquire(&self) -> Result<Duration, Paused> {
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
            metrics::gauge!(names::CIRCUIT_OPEN).set(0.0);
            match self.gcra.check() {
                Ok(()) => return Ok(started.elapsed()),
                Err(not_until) => tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await,
            }
        }
    }
}

/// Calls are paused for longer than a caller should hold an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    pub until: Instant,
}

/// Ask for one PhonePe call. Answers in FIFO order.
#[derive(Message)]
#[rtype(result = "Result<Duration, Paused>")]
pub struct Acquire;

/// Report how a call went (feeds the breaker).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Report(pub CallResult);

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
        // Waiters queue here; make the mailbox large enough for the whole pool plus reports.
        ctx.set_mailbox_capacity(1024);
        if crate::fault::point("rate_limiter.started") == Some(crate::fault::Injected::Stop) {
            ctx.stop();
        }
    }
}

impl Handler<Acquire> for RateLimiter {
    type Result = AtomicResponse<Self, Result<Duration, Paused>>;

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

impl Handler<Report> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: Report, _: &mut Self::Context) {
        self.budget.record(msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_circuit_gauge_closes_when_a_pause_ends_even_without_another_call() {
        let recorder = crate::telemetry::prometheus_builder()
            .expect("buckets")
            .build_recorder();
        let metrics = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let budget = Budget::per_minute(30);
        budget.pause(Duration::from_millis(200));
        assert!(metrics.render().contains("reconciler_circuit_open 1"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !metrics.render().contains("reconciler_circuit_open 0") {
            assert!(Instant::now() < deadline, "gauge still open: {}", metrics.render());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(budget.paused_until(), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn burst_is_one_and_spacing_respects_the_limit() {
        let b = Budget::per_minute(6000); // 10 ms period (+ margin)
        let t0 = Instant::now();
        for _ in 0..5 {
            b.acquire().await.unwrap();
        }
        // 5 permits with burst 1 take at least 4 periods.
        assert!(t0.elapsed() >= Duration::from_millis(4 * 10), "{:?}", t0.elapsed());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn long_pause_answers_paused_at_once() {
        let b = Budget::per_minute(30);
        b.record(CallResult::Rejected);
        let err = b.acquire().await.unwrap_err();
        assert!(err.until > Instant::now() + Duration::from_secs(60));
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_only() {
        let b = Budget::per_minute(30);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            b.record(CallResult::Failed);
        }
        b.record(CallResult::Answered);
        b.record(CallResult::Failed);
        assert!(b.paused_until().is_none());
        for _ in 0..FAILURES_TO_OPEN {
            b.record(CallResult::Failed);
        }
        assert!(b.paused_until().is_some());
    }
}
