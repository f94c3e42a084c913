//! Named fault points for supervision tests (cargo feature `fault-injection`, off in release).
//!
//! Each actor calls `fault::point("actor.step")` at the places a real failure could happen. With
//! the feature off this is an empty inline function. With it on, a fault can be armed in-process
//! (`fault::arm`) or from outside through `RECONCILER_FAULTS`, a comma-separated list of
//! `point=action[@n]`: `action` is `panic`, `stop` or `delay<ms>`; `@n` fires on the n-th hit
//! only, `@n+` on the n-th and every later hit; without `@`, every hit. Example:
//! `RECONCILER_FAULTS="committer.settle=panic@3,scanner.tick=panic@1+"`.

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn delay(_name: &str) -> Option<std::time::Duration> {
    None
}

#[cfg(feature = "fault-injection")]
pub use armed::{arm, clear, delay, point};

#[cfg(feature = "fault-injection")]
mod armed {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Action {
        Panic,
        Delay(Duration),
    }

    #[derive(Debug, Clone)]
    struct Fault {
        action: Action,
        /// Fire on hit number `from` (1-based) …
        from: u64,
        /// … and every later one when true.
        repeat: bool,
        hits: u64,
    }

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

    fn parse(spec: &str) -> HashMap<String, Fault> {
        let mut out = HashMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, rest)) = part.split_once('=') else {
                eprintln!("RECONCILER_FAULTS: ignoring {part:?} (expected point=action[@n])");
                continue;
            };
            let (action, when) = rest.split_once('@').unwrap_or((rest, "1+"));
            let action = match action {
                "panic" => Action::Panic,
                a if a.starts_with("delay") => match a[5..].parse() {
                    Ok(ms) => Action::Delay(Duration::from_millis(ms)),
                    Err(_) => {
                        eprintln!("RECONCILER_FAULTS: bad delay in {part:?}");
                        continue;
                    }
                },
                _ => {
                    eprintln!("RECONCILER_FAULTS: unknown action in {part:?}");
                    continue;
                }
            };
            let repeat = when.ends_with('+');
            let from = when.trim_end_matches('+').parse().unwrap_or(1);
            out.insert(
                name.to_string(),
                Fault {
                    action,
                    from,
                    repeat,
                    hits: 0,
                },
            );
        }
        out
    }

    /// Arm `point` with a spec like `panic@3` or `delay500@1+`.
    pub fn arm(point: &str, spec: &str) {
        let parsed = parse(&format!("{point}={spec}"));
        table().lock().unwrap_or_else(|p| p.into_inner()).extend(parsed);
    }

    pub fn clear() {
        table().lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn fire(name: &str) -> Option<Action> {
        let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
        let f = t.get_mut(name)?;
        f.hits += 1;
        let due = f.hits == f.from || (f.repeat && f.hits > f.from);
        due.then(|| f.action.clone())
    }

    /// A synchronous fault point: panics when armed with `panic`.
    pub fn point(name: &str) {
        if let Some(Action::Panic) = fire(name) {
            panic!("fault injected at {name}");
        }
    }

    /// An asynchronous fault point: the delay to wait when armed with `delay<ms>`, panics when
    /// armed with `panic`.
    pub fn delay(name: &str) -> Option<Duration> {
        match fire(name)? {
            Action::Panic => panic!("fault injected at {name}"),
            Action::Delay(d) => Some(d),
        }
    }
}
