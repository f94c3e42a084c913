//! Failed logins slow further ones. After [`FAILURES`] failures for one name or from one address
//! within [`WINDOW`], each further attempt for that name or from that address must come at least
//! [`SPACING`] after the previous one, for as long as those failures are within the window; one
//! sooner is refused (with when to retry) before any password is verified. A name nobody has is
//! counted like a real one. The allowed attempt takes its slot before it is verified, so parallel
//! attempts cannot share it. State is this process's (each instance throttles what it serves);
//! every function takes `now`, so tests construct times instead of sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures within [`WINDOW`] after which attempts are spaced.
pub const FAILURES: usize = 3;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The least time between two attempts on a throttled name or address.
pub const SPACING: Duration = Duration::from_secs(1);
/// Names and addresses remembered at most; past it, entries without a live failure are dropped,
/// and if that is not enough every attempt is refused until some expire (memory stays bounded
/// whatever names an attacker makes up).
const MAX_KEYS: usize = 100_000;
/// Failures remembered per key (only "at least [`FAILURES`]" matters, and when they expire).
const KEEP: usize = 64;

#[derive(Default)]
struct Entry {
    failures: VecDeque<Instant>,
    next_try: Option<Instant>,
}

impl Entry {
    fn expire(&mut self, now: Instant) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.failures.pop_front();
        }
    }

    fn throttled(&self) -> bool {
        self.failures.len() >= FAILURES
    }
}

/// The throttle of one process: keys are `name:<name>` and `addr:<ip>`.
#[derive(Default)]
pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
}

/// The keys one attempt counts against.
pub fn keys(name: &str, address: std::net::IpAddr) -> [String; 2] {
    // A name is at most 64 characters (longer ones are nobody's): a key cannot be made huge.
    let name: String = name.chars().take(65).collect();
    [format!("name:{name}"), format!("addr:{address}")]
}

impl Throttle {
    /// May an attempt on `keys` be verified at `now`? `Err` says how long to wait. An allowed
    /// attempt on a throttled key takes that key's next slot.
    pub fn attempt(&self, keys: &[String], now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !make_room(&mut entries, keys.len(), now) {
            return Err(FULL_WAIT);
        }
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(e) = entries.get_mut(key) {
                e.expire(now);
                if e.throttled() {
                    let next = e.next_try.unwrap_or(now);
                    wait = wait.max(next.saturating_duration_since(now));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for key in keys {
            if let Some(e) = entries.get_mut(key).filter(|e| e.throttled()) {
                e.next_try = Some(now + SPACING);
            }
        }
        Ok(())
    }

    /// Count a failed attempt on `keys` at `now`.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !make_room(&mut entries, keys.len(), now) {
            return;
        }
        for key in keys {
            let e = entries.entry(key.clone()).or_default();
            e.expire(now);
            if e.failures.len() == KEEP {
                e.failures.pop_front();
            }
            e.failures.push_back(now);
            if e.throttled() {
                e.next_try = Some(e.next_try.map_or(now + SPACING, |t| t.max(now + SPACING)));
            }
        }
    }
}

/// How long a login is told to wait while the throttle is full.
const FULL_WAIT: Duration = Duration::from_secs(60);

/// Room for `more` keys, dropping entries without a live failure if needed; `false` when the
/// throttle is full of live ones (every attempt is refused until some expire).
fn make_room(entries: &mut HashMap<String, Entry>, more: usize, now: Instant) -> bool {
    if entries.len() + more <= MAX_KEYS {
        return true;
    }
    entries.retain(|_, e| {
        e.expire(now);
        !e.failures.is_empty()
    });
    let room = entries.len() + more <= MAX_KEYS;
    if !room {
        tracing::error!("console: the login throttle is full; logins are refused until failures expire");
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn three_failures_space_further_attempts_by_a_second_for_fifteen_minutes() {
        let t = Throttle::default();
        let k = keys("asha", ip("10.0.0.1"));
        let t0 = Instant::now();
        for i in 0..3 {
            let at = t0 + Duration::from_millis(i * 10);
            assert_eq!(t.attempt(&k, at), Ok(()), "attempt {i} is not slowed");
            t.failed(&k, at);
        }
        let third = t0 + Duration::from_millis(20);
        // The fourth attempt, at once: refused, with how long to wait.
        let wait = t.attempt(&k, third + Duration::from_millis(100)).expect_err("slowed");
        assert_eq!(wait, Duration::from_millis(900));
        // After the wait it is verified (and takes the next slot: a parallel one is refused).
        let later = third + SPACING;
        assert_eq!(t.attempt(&k, later), Ok(()));
        assert!(t.attempt(&k, later).is_err(), "the slot is taken");
        assert_eq!(t.attempt(&k, later + SPACING), Ok(()));
        // Still slowed until the failures are 15 minutes old, then free again.
        assert!(t.attempt(&k, t0 + WINDOW - Duration::from_millis(1)).is_ok());
        assert!(t.attempt(&k, t0 + WINDOW - Duration::from_millis(1)).is_err());
        assert_eq!(t.attempt(&k, third + WINDOW), Ok(()));
        assert_eq!(t.attempt(&k, third + WINDOW), Ok(()), "no longer slowed");
    }

    #[test]
    fn a_name_or_an_address_alone_is_enough_and_unknown_names_count_the_same() {
        let t = Throttle::default();
        let t0 = Instant::now();
        // Three failures for one (unknown) name from three addresses: that name is slowed
        // from a fourth address too, another name from that address is not.
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            t.failed(&keys("nobody", ip(a)), t0 + Duration::from_millis(i as u64));
        }
        assert!(t.attempt(&keys("nobody", ip("10.0.0.4")), t0).is_err());
        assert!(t.attempt(&keys("asha", ip("10.0.0.4")), t0).is_ok());
        // Three failures from one address, three names: the address is slowed for any name.
        for n in ["a", "b", "c"] {
            t.failed(&keys(n, ip("10.9.9.9")), t0);
        }
        assert!(t.attempt(&keys("asha", ip("10.9.9.9")), t0).is_err());
        assert!(t.attempt(&keys("asha", ip("10.9.9.8")), t0).is_ok());
    }

    #[test]
    fn two_failures_slow_nothing() {
        let t = Throttle::default();
        let k = keys("asha", ip("::1"));
        let t0 = Instant::now();
        t.failed(&k, t0);
        t.failed(&k, t0);
        assert_eq!(t.attempt(&k, t0), Ok(()));
        assert_eq!(t.attempt(&k, t0), Ok(()));
    }
}
