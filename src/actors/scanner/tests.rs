//! Unit tests of `src/actors/scanner.rs`: the phase rules.

use super::*;

const IDLE: Phase = Phase::Idle { tick_owed: false };

#[test]
fn the_wake_is_at_the_due_moment_but_never_sooner_than_the_floor() {
    let now = DateTime::from_millis(1_000_000);
    let at = |ms: i64| wake_delay(now, DateTime::from_millis(1_000_000 + ms));
    assert_eq!(at(4_500), Duration::from_millis(4_500));
    assert_eq!(at(200), WAKE_FLOOR, "due soon: bursts are claimed together");
    assert_eq!(at(-5_000), WAKE_FLOOR, "already due");
}

#[test]
fn a_tick_scans_when_idle_and_is_owed_while_a_call_runs() {
    let mut p = IDLE;
    assert!(p.tick(), "idle: scan now");
    p.begin(false);
    assert!(!p.tick(), "busy: not now");
    assert_eq!(
        p,
        Phase::Busy {
            tick_owed: true,
            refill_owed: false
        }
    );
    p.end();
    assert_eq!(
        p.step(Next::ScanOrFill { refill: false }, false),
        Step::Scan,
        "paid after the claim"
    );
}

#[test]
fn a_tick_owed_during_a_scan_waits_for_the_next_claim_and_the_scan_pays_it() {
    let mut p = IDLE;
    p.begin(true);
    assert!(!p.tick());
    p.end();
    // After a scan the continuation fills; the tick stays owed through that claim.
    assert_eq!(p.step(Next::Fill, false), Step::Fill);
    p.begin(false);
    assert_eq!(
        p,
        Phase::Busy {
            tick_owed: true,
            refill_owed: false
        }
    );
    p.end();
    assert_eq!(p.step(Next::ScanOrFill { refill: true }, true), Step::Scan);
    p.begin(true);
    p.end();
    assert_eq!(p, IDLE, "the scan paid it");
}

#[test]
fn a_slot_freed_while_a_call_runs_is_owed_and_filled_when_more_wait() {
    let mut p = IDLE;
    assert!(p.refill(), "idle: claim now");
    p.begin(false);
    assert!(!p.refill(), "busy: not now");
    assert!(p.end(), "owed to the claim's continuation");
    assert!(
        !{
            p.begin(false);
            p.end()
        },
        "a new call starts owing nothing"
    );
    assert_eq!(p.step(Next::ScanOrFill { refill: true }, true), Step::Fill);
    assert_eq!(
        p.step(Next::ScanOrFill { refill: true }, false),
        Step::Wait,
        "nothing waits"
    );
    assert_eq!(p.step(Next::ScanOrFill { refill: false }, true), Step::Wait);
    assert_eq!(p.step(Next::FillIfWaiting, true), Step::Fill);
    assert_eq!(p.step(Next::FillIfWaiting, false), Step::Wait);
}

#[test]
fn once_stopped_nothing_starts_and_a_running_call_still_counts_as_busy() {
    let mut p = IDLE;
    p.begin(false);
    p.stop();
    assert!(p.busy(), "the drain waits for the running claim");
    assert!(!p.tick());
    assert!(!p.refill());
    p.end();
    assert_eq!(p, Phase::Stopped { busy: false });
    assert!(!p.busy());
    for next in [Next::Fill, Next::ScanOrFill { refill: true }, Next::FillIfWaiting] {
        assert_eq!(p.step(next, true), Step::Wait, "{next:?}");
    }
    let mut idle = IDLE;
    idle.stop();
    assert!(!idle.busy());
}

#[test]
fn the_next_wake_is_never_later_than_one_lookback_after_the_scan() {
    let lookback = Duration::from_secs(20);
    assert_eq!(
        next_wake(None, lookback),
        lookback,
        "nothing due: wake within the lookback"
    );
    assert_eq!(next_wake(Some(Duration::from_secs(45)), lookback), lookback);
    assert_eq!(
        next_wake(Some(Duration::from_secs(3)), lookback),
        Duration::from_secs(3)
    );
    assert_eq!(next_wake(None, Duration::ZERO), WAKE_FLOOR, "at least the floor");
}

#[test]
fn check_warns_only_about_a_lookback_the_scanner_cannot_honour() {
    let mut job = crate::config::Settings::for_tests("mongodb://127.0.0.1:1/shop", "http://127.0.0.1:1").job;
    job.interval = Duration::from_secs(60);
    job.lookback = Duration::from_secs(20);
    assert_eq!(
        lookback_warning(&job),
        None,
        "shorter than the interval: honoured by the wake"
    );
    job.lookback = Duration::ZERO;
    let w = lookback_warning(&job).expect("a lookback under the wake floor");
    assert!(w.contains("job.lookback_secs = 0"), "{w}");
}
