//! Unit tests of `src/actors/rate_limiter.rs`. Everything timed runs on tokio's paused clock
//! (`start_paused`): the budget's spacing, its pauses and the waits through them are asserted to
//! the millisecond with `tokio::time::advance` (or the runtime's auto-advance when every task
//! sleeps), and a minute's pause takes no time.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Let the tasks woken at this instant run (the clock does not move).
async fn run_woken_tasks() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// How long calls stay paused from now (exact: the clock is paused).
fn paused_for(b: &Budget) -> Duration {
    b.paused_until()
        .map(|t| t.saturating_duration_since(Instant::now()))
        .unwrap_or_default()
}

fn record(b: &Budget, r: CallResult) -> Verdict {
    b.record(r, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn the_circuit_gauge_closes_when_a_pause_ends_even_without_another_call() {
    let recorder = crate::telemetry::prometheus_builder()
        .expect("buckets")
        .build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let budget = Budget::per_minute(30);
    budget.pause(secs(2));
    assert!(metrics.render().contains("reconciler_circuit_open 1"));
    tokio::time::advance(secs(2) - MS).await;
    run_woken_tasks().await;
    assert!(
        metrics.render().contains("reconciler_circuit_open 1"),
        "closed 1 ms early: {}",
        metrics.render()
    );
    tokio::time::advance(MS).await;
    run_woken_tasks().await;
    assert!(
        metrics.render().contains("reconciler_circuit_open 0"),
        "still open when the pause ended: {}",
        metrics.render()
    );
    assert_eq!(budget.paused_until(), None);
}

/// 30 calls a minute: a permit every 2.02 s (2 s plus the 20 ms margin), the first at once, never
/// two together (burst 1), none a millisecond early.
#[tokio::test(start_paused = true)]
async fn burst_is_one_and_thirty_a_minute_is_a_permit_every_2_02_s() {
    let b = Budget::per_minute(30);
    let t0 = Instant::now();
    let mut at = vec![];
    for _ in 0..4 {
        b.acquire().await.expect("a permit");
        at.push(t0.elapsed());
    }
    assert_eq!(at, [millis(0), millis(2_020), millis(4_040), millis(6_060)]);
    let early = tokio::time::timeout(millis(2_019), b.acquire()).await;
    assert!(early.is_err(), "a permit 1 ms before its time");
    let permit = b.acquire().await.expect("a permit");
    assert_eq!(t0.elapsed(), millis(8_080));
    assert_eq!(permit.waited(), MS, "asked 1 ms before it was due");
}

#[tokio::test(start_paused = true)]
async fn long_pause_answers_paused_at_once() {
    let b = Budget::per_minute(30);
    let t0 = Instant::now();
    record(&b, CallResult::Rejected);
    let err = b.acquire().await.unwrap_err();
    assert_eq!(err.until, t0 + secs(300));
    assert_eq!(t0.elapsed(), Duration::ZERO, "answered without waiting");
}

/// A 429 holds every call a minute: a caller is answered `Paused` at once while more than
/// [`WAIT_AT_MOST`] (10 s) is left, waits out the last 10 s, and its permit comes when the minute
/// is over, not before.
#[tokio::test(start_paused = true)]
async fn a_429_holds_every_call_exactly_a_minute() {
    let b = Budget::per_minute(30);
    b.acquire().await.expect("the call that meets the 429");
    let t0 = Instant::now();
    assert!(record(&b, CallResult::RateLimited).service_wide);
    assert_eq!(b.paused_until(), Some(t0 + secs(60)));
    assert_eq!(b.acquire().await.unwrap_err(), Paused { until: t0 + secs(60) });
    assert_eq!(t0.elapsed(), Duration::ZERO, "answered without waiting");
    tokio::time::advance(secs(50) - MS).await;
    assert!(b.acquire().await.is_err(), "10.001 s left: too long to hold an order");
    tokio::time::advance(MS).await;
    let permit = b.acquire().await.expect("waited through the last 10 s");
    assert_eq!(t0.elapsed(), secs(60));
    assert_eq!(permit.waited(), WAIT_AT_MOST);
}

#[tokio::test(start_paused = true)]
async fn a_429_pauses_a_minute_and_rejected_credentials_five_minutes() {
    let b = Budget::per_minute(30);
    assert!(record(&b, CallResult::RateLimited).service_wide);
    assert_eq!(paused_for(&b), secs(60));
    let b = Budget::per_minute(30);
    assert!(record(&b, CallResult::Rejected).service_wide);
    assert_eq!(paused_for(&b), secs(300));
    tokio::time::advance(secs(300) - MS).await;
    assert_eq!(paused_for(&b), MS);
    tokio::time::advance(MS).await;
    assert_eq!(b.paused_until(), None, "over after five minutes");
}

#[tokio::test(start_paused = true)]
async fn one_refused_order_pauses_nothing_but_several_different_ones_do() {
    let b = Budget::per_minute(30);
    // The same order refused again and again (it is claimed oldest first): its problem only.
    for _ in 0..10 {
        assert!(!record(&b, CallResult::Refused(1)).service_wide);
    }
    assert_eq!(b.paused_until(), None);
    // A good answer between refusals of different orders: still nothing.
    record(&b, CallResult::Refused(2));
    record(&b, CallResult::Answered);
    record(&b, CallResult::Refused(3));
    assert_eq!(b.paused_until(), None);
    // Three different orders refused in a row: our request is wrong for everyone.
    record(&b, CallResult::Refused(4));
    assert!(record(&b, CallResult::Refused(5)).service_wide);
    assert_eq!(paused_for(&b), secs(300));
}

#[test]
fn failures_of_one_order_are_its_own_and_of_several_the_services() {
    let b = Budget::per_minute(30);
    assert!(!record(&b, CallResult::Failed(1)).service_wide);
    assert!(!record(&b, CallResult::Failed(1)).service_wide);
    assert!(record(&b, CallResult::Failed(2)).service_wide);
    record(&b, CallResult::Answered);
    assert!(!record(&b, CallResult::Failed(3)).service_wide);
}

#[tokio::test(start_paused = true)]
async fn unreadable_answers_open_the_breaker_but_make_no_failure_look_service_wide() {
    let b = Budget::per_minute(30);
    record(&b, CallResult::Unreadable);
    assert!(!record(&b, CallResult::Failed(1)).service_wide);
    for _ in 0..FAILURES_TO_OPEN - 2 {
        record(&b, CallResult::Unreadable);
    }
    assert_eq!(paused_for(&b), secs(2));
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_after_consecutive_failures_only() {
    let b = Budget::per_minute(30);
    for _ in 0..FAILURES_TO_OPEN - 1 {
        record(&b, CallResult::Failed(1));
    }
    record(&b, CallResult::Answered);
    record(&b, CallResult::Failed(1));
    assert_eq!(b.paused_until(), None);
    for _ in 0..FAILURES_TO_OPEN - 2 {
        record(&b, CallResult::Failed(1));
    }
    assert_eq!(b.paused_until(), None, "four failures in a row");
    record(&b, CallResult::Failed(1));
    assert_eq!(paused_for(&b), secs(2), "the fifth opens the breaker");
}

/// Five failures in a row open the breaker: nobody calls for 2 s, then one probe goes out; each
/// failed probe pauses longer (4 s, then 8 s, never more: callers wait through it); a good answer
/// closes the breaker and the next run starts again from five failures and 2 s. The callers'
/// permits come exactly when each pause ends.
#[tokio::test(start_paused = true)]
async fn failure_pauses_are_short_grow_and_stay_within_what_callers_wait_through() {
    let b = Budget::per_minute(30);
    let t0 = Instant::now();
    for _ in 0..FAILURES_TO_OPEN {
        record(&b, CallResult::Failed(1));
    }
    assert_eq!(paused_for(&b), secs(2));
    // A call that was in flight before the pause fails too: already accounted for.
    b.record(CallResult::Failed(2), t0 - secs(1));
    assert_eq!(paused_for(&b), secs(2), "a stale failure does not reopen the breaker");
    let mut probes = vec![];
    for _ in 0..4 {
        let permit = b.acquire().await.expect("the probe's permit, waited for");
        assert!(permit.waited() < WAIT_AT_MOST);
        probes.push(t0.elapsed());
        record(&b, CallResult::Failed(1)); // the probe fails: half-open, one failure is enough
    }
    // Pauses of 2 s, then 4, 8 and 8 s, each begun by the failed probe before it.
    assert_eq!(probes, [secs(2), secs(6), secs(14), secs(22)]);
    assert_eq!(paused_for(&b), secs(8));
    assert!(failure_pause(u32::MAX) < WAIT_AT_MOST);
    b.acquire().await.expect("the fifth probe");
    assert_eq!(t0.elapsed(), secs(30));
    // A good answer closes the breaker: the next run starts from 2 s and five failures.
    record(&b, CallResult::Answered);
    for _ in 0..FAILURES_TO_OPEN - 1 {
        record(&b, CallResult::Failed(1));
    }
    assert_eq!(b.paused_until(), None);
    record(&b, CallResult::Failed(1));
    assert_eq!(paused_for(&b), secs(2));
}

/// Half-open: the probe's permit goes out, every other caller waits for its result (however long
/// that takes, up to [`PROBE_AT_MOST`]) and gets its permit at the next look after it.
#[tokio::test(start_paused = true)]
async fn half_open_lets_one_probe_out_and_the_others_wait_for_its_result() {
    let b = Arc::new(Budget::per_minute(30));
    lock(&b.state).half_open = true; // a failure pause just ended
    b.acquire().await.expect("the probe's permit");
    let t0 = Instant::now();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire().await.map(|_| Instant::now()) })
    };
    // The waiter is queued behind the probe.
    run_woken_tasks().await;
    // Its place in the schedule (2.02 s) comes and goes; nobody calls while the probe is out.
    tokio::time::advance(secs(29)).await;
    run_woken_tasks().await;
    assert!(!waiter.is_finished(), "nobody calls while the probe is out");
    record(&b, CallResult::Answered);
    let at = waiter.await.unwrap().expect("the probe answered: calls resume");
    let after = at - t0;
    assert!(after >= secs(29) && after <= secs(29) + POLL, "{after:?}");
}

/// A probe whose caller never reports (it died) holds the others [`PROBE_AT_MOST`] (30 s), not
/// for good.
#[tokio::test(start_paused = true)]
async fn a_probe_that_never_reports_holds_the_others_30_s() {
    let b = Arc::new(Budget::per_minute(30));
    lock(&b.state).half_open = true;
    b.acquire().await.expect("the probe's permit");
    let t0 = Instant::now();
    let permit = b.acquire().await.expect("a permit after the silent probe");
    assert_eq!(t0.elapsed(), secs(30));
    assert_eq!(permit.waited(), secs(30));
}

/// A lone failure: the breaker waits for the next result of any call (about two permits: 2 × 2.02 s
/// + 1 s at 30/min, at most [`WAIT_AT_MOST`]) to tell whether PhonePe fails for everyone.
#[tokio::test(start_paused = true)]
async fn a_lone_failure_waits_for_the_next_result_to_tell_whose_it_was() {
    let b = Arc::new(Budget::per_minute(30));
    let first = record(&b, CallResult::Failed(1));
    assert!(!first.service_wide);
    // Nobody else calls: the order's own error, known after about two permits.
    let t0 = Instant::now();
    assert!(!b.await_verdict(first).await);
    assert_eq!(t0.elapsed(), millis(5_040));
    // A budget of one call a minute: still no more than WAIT_AT_MOST.
    let slow = Budget::per_minute(1);
    let lone = record(&slow, CallResult::Failed(1));
    let t0 = Instant::now();
    assert!(!slow.await_verdict(lone).await);
    assert_eq!(t0.elapsed(), WAIT_AT_MOST);
    // Another order fails 100 ms later: PhonePe fails for everyone, known at the next look.
    let b2 = b.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(millis(100)).await;
        record(&b2, CallResult::Failed(2));
    });
    let t0 = Instant::now();
    assert!(b.await_verdict(first).await);
    assert!(t0.elapsed() >= millis(100) && t0.elapsed() <= millis(100) + POLL);
    later.await.unwrap();
    // A good answer next: the failure was the order's alone.
    record(&b, CallResult::Answered);
    let lone = record(&b, CallResult::Failed(3));
    let b3 = b.clone();
    tokio::spawn(async move { record(&b3, CallResult::Answered) });
    let t0 = Instant::now();
    assert!(!b.await_verdict(lone).await);
    assert!(t0.elapsed() <= POLL);
}

/// The GCRA's clock is tokio's: it stands still while tokio's clock is paused and moves with it.
#[tokio::test(start_paused = true)]
async fn the_budgets_clock_is_tokios() {
    let clock = TokioClock::new();
    let t0 = clock.now();
    std::thread::sleep(millis(5));
    assert_eq!(clock.now(), t0, "paused");
    tokio::time::advance(millis(2_020)).await;
    assert_eq!(Duration::from(clock.now()), millis(2_020));
}

#[test]
fn the_period_is_the_limit_plus_its_margin() {
    // 60 s / limit, plus 1 % or 20 ms (at most a tenth of the period), whichever is more.
    let period = |per_minute| Budget::per_minute(per_minute).period;
    assert_eq!(period(30), Duration::from_millis(2_020));
    assert_eq!(period(600), Duration::from_millis(110));
    assert_eq!(period(6_000), Duration::from_millis(11));
    assert_eq!(period(1), Duration::from_millis(60_600));
    assert_eq!(period(0), period(1), "a zero budget is read as one call a minute");
}

#[test]
fn a_pause_makes_failures_service_wide_only_while_it_lasts() {
    let now = Instant::now();
    let mut s = BreakerState::default();
    assert!(!s.service_wide(now));
    s.paused_until = Some(now + Duration::from_secs(1));
    assert!(s.service_wide(now));
    s.paused_until = Some(now);
    assert!(!s.service_wide(now), "a pause ending now is over");
    s.paused_until = Some(now - Duration::from_secs(1));
    assert!(!s.service_wide(now));
    s.failing = vec![1, 2];
    assert!(s.service_wide(now), "two different orders failing in a row");
}

#[test]
fn orders_get_their_own_breaker_keys() {
    assert_eq!(order_key("ORD-1"), order_key("ORD-1"));
    assert_ne!(order_key("ORD-1"), order_key("ORD-2"));
    assert_ne!(order_key("ORD-1"), 0);
    assert_ne!(order_key("ORD-2"), 1);
}

#[test]
fn a_failure_sent_the_instant_a_pause_began_counts_and_one_sent_before_does_not() {
    let t = Instant::now();
    let mut s = BreakerState {
        opened_at: Some(t),
        half_open: true,
        ..BreakerState::default()
    };
    let before = t.checked_sub(Duration::from_millis(1)).expect("an instant before now");
    assert_eq!(
        Budget::apply(&mut s, CallResult::Failed(1), before),
        None,
        "in flight before"
    );
    assert!(
        Budget::apply(&mut s, CallResult::Failed(1), t).is_some(),
        "the probe failed"
    );
}

/// Stands in for the supervisor in [`the_rate_limiter_hands_out_permits_in_order_one_every_2_02_s`]:
/// takes the guard's death report.
struct NoSupervisor;

impl Actor for NoSupervisor {
    type Context = Context<Self>;
}

impl Handler<super::super::child::ChildExited> for NoSupervisor {
    type Result = ();

    fn handle(&mut self, _: super::super::child::ChildExited, _: &mut Context<Self>) {}
}

/// The actor on actix's runtime, its clock paused: four `Acquire`s sent together are answered in
/// the order sent, one every 2.02 s at 30 calls a minute. (Paused after the runtime started, the
/// clock is not on a millisecond of tokio's timer: each wait ends on the next one, as it does in
/// the service, so a gap may be 1 ms longer.)
#[actix_rt::test]
async fn the_rate_limiter_hands_out_permits_in_order_one_every_2_02_s() {
    tokio::time::pause();
    let guard = ChildGuard::new(
        super::super::child::ChildId::RateLimiter,
        1,
        NoSupervisor.start().recipient(),
        Arc::new(super::super::Wiring::new(0)),
    );
    let limiter = RateLimiter::new(Arc::new(Budget::per_minute(30)), guard).start();
    let t0 = Instant::now();
    let asks: Vec<_> = (0..4)
        .map(|_| {
            let ask = limiter.send(Acquire);
            actix_rt::spawn(async move {
                ask.await.expect("the limiter is up").expect("a permit");
                t0.elapsed()
            })
        })
        .collect();
    let mut answered = vec![];
    for ask in asks {
        answered.push(ask.await.unwrap());
    }
    assert_eq!(answered[0], Duration::ZERO, "the first at once");
    for gap in answered.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= millis(2_020) && gap <= millis(2_021), "{answered:?}");
    }
}
