//! Unit tests of `src/actors/rate_limiter.rs`.

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

/// How long calls stay paused from now, in whole seconds (rounded).
fn paused_secs(b: &Budget) -> u64 {
    b.paused_until()
        .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64().round() as u64)
        .unwrap_or(0)
}

fn record(b: &Budget, r: CallResult) -> Verdict {
    b.record(r, Instant::now())
}

#[tokio::test(flavor = "current_thread")]
async fn long_pause_answers_paused_at_once() {
    let b = Budget::per_minute(30);
    record(&b, CallResult::Rejected);
    let err = b.acquire().await.unwrap_err();
    assert!(err.until > Instant::now() + Duration::from_secs(60));
}

#[test]
fn a_429_pauses_a_minute_and_rejected_credentials_five_minutes() {
    let b = Budget::per_minute(30);
    assert!(record(&b, CallResult::RateLimited).service_wide);
    assert_eq!(paused_secs(&b), 60);
    let b = Budget::per_minute(30);
    assert!(record(&b, CallResult::Rejected).service_wide);
    assert_eq!(paused_secs(&b), 300);
}

#[test]
fn one_refused_order_pauses_nothing_but_several_different_ones_do() {
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
    assert_eq!(paused_secs(&b), 300);
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

#[test]
fn unreadable_answers_open_the_breaker_but_make_no_failure_look_service_wide() {
    let b = Budget::per_minute(30);
    record(&b, CallResult::Unreadable);
    assert!(!record(&b, CallResult::Failed(1)).service_wide);
    for _ in 0..FAILURES_TO_OPEN - 2 {
        record(&b, CallResult::Unreadable);
    }
    assert_eq!(paused_secs(&b), 2);
}

#[test]
fn breaker_opens_after_consecutive_failures_only() {
    let b = Budget::per_minute(30);
    for _ in 0..FAILURES_TO_OPEN - 1 {
        record(&b, CallResult::Failed(1));
    }
    record(&b, CallResult::Answered);
    record(&b, CallResult::Failed(1));
    assert!(b.paused_until().is_none());
    for _ in 0..FAILURES_TO_OPEN {
        record(&b, CallResult::Failed(1));
    }
    assert!(b.paused_until().is_some());
}

#[test]
fn failure_pauses_are_short_grow_and_stay_within_what_callers_wait_through() {
    let b = Budget::per_minute(30);
    for _ in 0..FAILURES_TO_OPEN {
        record(&b, CallResult::Failed(1));
    }
    assert_eq!(paused_secs(&b), 2);
    // A call that was in flight before the pause fails too: already accounted for.
    let before = Instant::now() - Duration::from_secs(1);
    b.record(CallResult::Failed(2), before);
    assert_eq!(paused_secs(&b), 2, "a stale failure does not reopen the breaker");
    // Each failed probe (half-open: one failure is enough) pauses longer: 4 s, then 8 s.
    let mut pauses = vec![];
    for _ in 0..3 {
        lock(&b.state).paused_until = None;
        record(&b, CallResult::Failed(1));
        pauses.push(paused_secs(&b));
    }
    assert_eq!(pauses, [4, 8, 8]);
    assert!(failure_pause(u32::MAX) < WAIT_AT_MOST);
    // A good answer closes the breaker: the next run starts from 2 s and five failures.
    record(&b, CallResult::Answered);
    lock(&b.state).paused_until = None;
    for _ in 0..FAILURES_TO_OPEN - 1 {
        record(&b, CallResult::Failed(1));
    }
    assert_eq!(b.paused_until(), None);
    record(&b, CallResult::Failed(1));
    assert_eq!(paused_secs(&b), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn half_open_lets_one_probe_out_and_the_others_wait_for_its_result() {
    let b = Arc::new(Budget::per_minute(6000));
    {
        let mut s = lock(&b.state);
        s.half_open = true; // a failure pause just ended
    }
    b.acquire().await.expect("the probe's permit");
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "nobody calls while the probe is out");
    record(&b, CallResult::Answered);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert!(matches!(got, Ok(Ok(Ok(_)))), "the probe answered: calls resume");
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_failure_waits_for_the_next_result_to_tell_whose_it_was() {
    let b = Arc::new(Budget::per_minute(6000));
    let first = record(&b, CallResult::Failed(1));
    assert!(!first.service_wide);
    // Nobody else calls: the order's own error.
    assert!(!b.await_verdict(first).await);
    // Another order fails next: PhonePe fails for everyone.
    let b2 = b.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        record(&b2, CallResult::Failed(2));
    });
    assert!(b.await_verdict(first).await);
    later.await.unwrap();
    // A good answer next: the failure was the order's alone.
    record(&b, CallResult::Answered);
    let lone = record(&b, CallResult::Failed(3));
    let b3 = b.clone();
    tokio::spawn(async move { record(&b3, CallResult::Answered) });
    assert!(!b.await_verdict(lone).await);
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
