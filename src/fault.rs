//! Named fault points for supervision tests (cargo feature `fault-injection`, off in release;
//! docs/operations.md, "Fault injection", for `RECONCILER_FAULTS`' syntax). Each actor calls
//! `fault::point("actor.step")` where a real failure could happen and acts on the answer: a panic
//! happens inside `point`, [`Injected::Stop`] stops the actor, [`Injected::Error`] fails the step,
//! [`Injected::Delay`] waits. With the feature off `point` returns `None` inline and the caller's
//! branch compiles away. `RECONCILER_FAULTS` arms the whole process; `arm` (tests) only the
//! calling thread, so a test's in-process `once` reaches its own run and no other test's.

use std::time::Duration;

/// What a fault point asks its actor to do (a `panic` never gets here: it happens in `point`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Stop the actor (`ctx.stop()`), as if it had decided to.
    Stop,
    /// Fail this step as if its dependency had failed.
    Error,
    /// Wait this long before going on.
    Delay(Duration),
}

/// Every fault point the code has. Arming a name not listed here is an error (a renamed point
/// must not leave a test silently injecting nothing).
pub const POINTS: &[&str] = &[
    "committer.settle",
    "committer.settled",
    "committer.started",
    "journal.after_begin",
    "journal.after_compensate",
    "journal.after_confirm",
    "journal.after_item",
    "journal.after_rollback_mark",
    "journal.before_confirm",
    "rate_limiter.acquire",
    "rate_limiter.started",
    "reconciler.after_settle",
    "reconciler.before_call",
    "reconciler.before_settle",
    "reconciler.reconcile",
    "refund.before_call",
    "scanner.tick",
];

/// Whether `name` (optionally `name#instance`) is a fault point of this code.
pub fn is_known(name: &str) -> bool {
    let base = match name.split_once('#') {
        Some((base, i)) if i.parse::<usize>().is_ok() => base,
        Some(_) => return false,
        None => name,
    };
    POINTS.contains(&base)
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) -> Option<Injected> {
    None
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point_at(_name: &str, _instance: usize) -> Option<Injected> {
    None
}

/// The delay to wait at an asynchronous point (`Stop` and `Error` are not meaningful there).
#[inline(always)]
pub fn delay(name: &str) -> Option<Duration> {
    match point(name) {
        Some(Injected::Delay(d)) => Some(d),
        _ => None,
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::{arm, clear, point, point_at};

#[cfg(feature = "fault-injection")]
mod armed {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use super::Injected;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Action {
        Panic,
        Do(Injected),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum When {
        /// Hits `from..=to` (1-based); `to == u64::MAX` for "and every later one".
        Range { from: u64, to: u64 },
        /// Every n-th hit.
        Every(u64),
    }

    impl When {
        fn parse(s: &str) -> Option<When> {
            let n = |t: &str| t.parse::<u64>().ok().filter(|n| *n >= 1);
            if let Some(t) = s.strip_suffix('+') {
                return Some(When::Range {
                    from: n(t)?,
                    to: u64::MAX,
                });
            }
            if let Some(t) = s.strip_suffix('*') {
                return Some(When::Every(n(t)?));
            }
            if let Some((a, b)) = s.split_once('-') {
                let (from, to) = (n(a)?, n(b)?);
                return (from <= to).then_some(When::Range { from, to });
            }
            let k = n(s)?;
            Some(When::Range { from: k, to: k })
        }

        fn due(self, hit: u64) -> bool {
            match self {
                When::Range { from, to } => (from..=to).contains(&hit),
                When::Every(n) => hit % n == 0,
            }
        }
    }

    #[derive(Debug, Clone)]
    struct Fault {
        action: Action,
        when: When,
        hits: u64,
    }

    thread_local! {
        /// Faults armed by [`arm`] on this thread, checked before the process-wide table.
        static ARMED: RefCell<HashMap<String, Fault>> = RefCell::new(HashMap::new());
    }

    /// The faults of `RECONCILER_FAULTS`, for every thread of the process.
    fn table() -> &'static Mutex<HashMap<String, Fault>> {
        static T: OnceLock<Mutex<HashMap<String, Fault>>> = OnceLock::new();
        T.get_or_init(|| {
            Mutex::new(
                std::env::var("RECONCILER_FAULTS")
                    .map(|s| parse(&s))
                    .unwrap_or_default(),
            )
        })
    }

    fn parse_action(a: &str) -> Option<Action> {
        Some(match a {
            "panic" => Action::Panic,
            "stop" => Action::Do(Injected::Stop),
            "error" => Action::Do(Injected::Error),
            _ => Action::Do(Injected::Delay(Duration::from_millis(
                a.strip_prefix("delay")?.parse().ok()?,
            ))),
        })
    }

    fn parse(spec: &str) -> HashMap<String, Fault> {
        let mut out = HashMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, rest)) = part.split_once('=') else {
                eprintln!("RECONCILER_FAULTS: ignoring {part:?} (expected point=action[@when])");
                continue;
            };
            if !super::is_known(name.trim()) {
                eprintln!(
                    "RECONCILER_FAULTS: ignoring {part:?}: no fault point is named {:?} (see fault::POINTS)",
                    name.trim()
                );
                continue;
            }
            let (action, when) = rest.split_once('@').unwrap_or((rest, "1+"));
            let (Some(action), Some(when)) = (parse_action(action), When::parse(when)) else {
                eprintln!(
                    "RECONCILER_FAULTS: ignoring {part:?} (action: panic|stop|error|delay<ms>; when: n|n+|n-m|n*)"
                );
                continue;
            };
            out.insert(name.trim().to_string(), Fault { action, when, hits: 0 });
        }
        out
    }

    /// Arm `point` with a spec like `panic@3`, `stop@2-4` or `delay500@1+`, on the calling
    /// thread only: hits of `point` on other threads neither fire it nor count.
    ///
    /// # Panics
    /// When `point` is not a fault point of this code or `spec` does not parse: a test arming a
    /// fault that can never fire would prove nothing.
    pub fn arm(point: &str, spec: &str) {
        assert!(super::is_known(point), "fault::arm: no fault point is named {point:?}");
        let parsed = parse(&format!("{point}={spec}"));
        assert!(!parsed.is_empty(), "fault::arm: cannot parse {spec:?} for {point}");
        ARMED.with(|t| t.borrow_mut().extend(parsed));
    }

    /// Disarm every fault armed on the calling thread (`RECONCILER_FAULTS` stays armed).
    pub fn clear() {
        ARMED.with(|t| t.borrow_mut().clear());
    }

    /// Count a hit of `name` in `t`: `None` when `t` does not arm it, else whether it is due.
    fn hit(t: &mut HashMap<String, Fault>, name: &str) -> Option<Option<Action>> {
        let f = t.get_mut(name)?;
        f.hits += 1;
        Some(f.when.due(f.hits).then_some(f.action))
    }

    fn fire(name: &str) -> Option<Action> {
        // `try_with`: a point hit while the thread's locals are being destroyed is not armed.
        if let Some(own) = ARMED.try_with(|t| hit(&mut t.borrow_mut(), name)).ok().flatten() {
            return own;
        }
        hit(&mut table().lock().unwrap_or_else(|p| p.into_inner()), name).flatten()
    }

    fn act(name: &str, action: Option<Action>) -> Option<Injected> {
        match action? {
            // Outside the table's lock: the panic must not poison it for the restarted actor.
            Action::Panic => panic!("fault injected at {name}"),
            Action::Do(i) => {
                tracing::warn!(point = name, injected = ?i, "fault injected");
                Some(i)
            }
        }
    }

    /// A fault point: panics when armed with `panic`, else what the actor should do, if anything.
    pub fn point(name: &str) -> Option<Injected> {
        act(name, fire(name))
    }

    /// A fault point of one instance of a pool: `name#instance` is checked first, then `name`.
    pub fn point_at(name: &str, instance: usize) -> Option<Injected> {
        let own = format!("{name}#{instance}");
        match fire(&own) {
            Some(a) => act(&own, Some(a)),
            None => point(name),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn when_syntax() {
            let hits = |w: &str| -> Vec<u64> { (1..=10).filter(|h| When::parse(w).unwrap().due(*h)).collect() };
            assert_eq!(hits("3"), vec![3]);
            assert_eq!(hits("8+"), vec![8, 9, 10]);
            assert_eq!(hits("2-4"), vec![2, 3, 4]);
            assert_eq!(hits("3*"), vec![3, 6, 9]);
            for bad in ["0", "x", "4-2", "0*", ""] {
                assert!(When::parse(bad).is_none(), "{bad}");
            }
        }

        #[test]
        fn spec_parsing_skips_bad_parts() {
            let t = parse(
                "scanner.tick=panic@2, committer.settle=stop, reconciler.reconcile#1=delay250@1-3, \
                 committer.started=explode, rate_limiter.acquire=error@2*, f, journal.afterbegin=panic",
            );
            assert_eq!(t.len(), 4, "{:?}", t.keys());
            assert_eq!(t["scanner.tick"].action, Action::Panic);
            assert_eq!(t["committer.settle"].when, When::Range { from: 1, to: u64::MAX });
            assert_eq!(
                t["reconciler.reconcile#1"].action,
                Action::Do(Injected::Delay(Duration::from_millis(250)))
            );
            assert_eq!(t["rate_limiter.acquire"].when, When::Every(2));
        }

        #[test]
        fn unknown_points_are_refused() {
            assert!(super::super::is_known("journal.after_begin"));
            assert!(super::super::is_known("reconciler.reconcile#3"));
            assert!(!super::super::is_known("journal.afterbegin"));
            assert!(!super::super::is_known("reconciler.reconcile#x"));
            let armed = std::panic::catch_unwind(|| arm("journal.renamed_point", "panic@1"));
            assert!(armed.is_err(), "arming an unknown point must fail");
        }

        #[test]
        fn a_fault_armed_on_one_thread_fires_only_there() {
            arm("committer.settled", "error@1+");
            let elsewhere = std::thread::spawn(|| point("committer.settled")).join().unwrap();
            assert_eq!(elsewhere, None, "a fault armed on another thread fired here");
            assert_eq!(point("committer.settled"), Some(Injected::Error));
            clear();
            assert_eq!(point("committer.settled"), None, "clear disarms this thread's faults");
        }

        #[test]
        fn every_listed_point_is_in_the_code() {
            let src = concat!(
                include_str!("actors/committer.rs"),
                include_str!("actors/rate_limiter.rs"),
                include_str!("actors/reconciler.rs"),
                include_str!("actors/scanner.rs"),
                include_str!("refund.rs"),
                include_str!("store/journal/driver.rs"),
            );
            for p in super::super::POINTS {
                assert!(src.contains(&format!("\"{p}\"")), "{p} is listed but no code fires it");
            }
        }
    }
}
