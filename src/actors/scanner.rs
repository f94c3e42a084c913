//! Scanner: finds eligible orders, claims them with a lease, and keeps the reconcilers busy
//! (docs/architecture.md, "Leases and claims" and "Backpressure"). Every `interval`, and as soon as
//! the next order is due (`Store::next_due`, at least `WAKE_FLOOR` after a scan and never more than
//! one lookback after it), it runs a scan (`scan.rs`) and claims as many orders as there are free
//! reconciler slots; a freed slot is refilled at once while a backlog remains. At most one store
//! call runs at a time: the scanner's state is one `Phase`, and every call and every returning
//! order ends in `proceed`, which pays what is owed. In `once` mode there is no timer: `Drain`
//! claims until nothing eligible is left and answers with a summary.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use mongodb::bson::{Bson, DateTime};
use tokio::sync::OwnedSemaphorePermit;

use super::child::ChildGuard;
use super::reconciler::Reconcile;
use super::{Env, Wiring};
use crate::domain::Outcome;
use crate::store::Claimed;
use crate::store::Swept;
use crate::telemetry::{labels, names};

/// Counts of outcomes (the `once` summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub counts: BTreeMap<&'static str, u64>,
}

impl Summary {
    pub fn add(&mut self, o: Outcome) {
        *self.counts.entry(o.as_str()).or_default() += 1;
    }

    pub fn get(&self, o: Outcome) -> u64 {
        self.counts.get(o.as_str()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reconciled {} order(s)", self.total())?;
        for (k, v) in &self.counts {
            write!(f, ", {k} {v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tick every `interval` (the service).
    Run,
    /// No timer; `Drain` does one pass (`draft-reconciler once`).
    Once,
}

/// Candidate ids fetched per reconciler slot: enough that the eligible-orders scan runs once per
/// many claims, few enough that the list stays fresh between ticks.
const CANDIDATES_PER_SLOT: usize = 16;

/// The least wait before a wake-up for a due order: orders due within it are claimed together,
/// and a steady stream of drafts costs at most one scan a second.
const WAKE_FLOOR: Duration = Duration::from_secs(1);

/// How long to sleep from `now` until `due` (at least `WAKE_FLOOR`).
fn wake_delay(now: DateTime, due: DateTime) -> Duration {
    let ms = due.timestamp_millis().saturating_sub(now.timestamp_millis());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).max(WAKE_FLOOR)
}

/// When to scan next after a scan: at the next due moment, and never later than one lookback
/// after this scan, so a draft inserted while the scanner sleeps is seen before it becomes due
/// even when the lookback is shorter than the interval (the interval tick, armed separately,
/// comes first when it is the earlier). At least `WAKE_FLOOR`.
fn next_wake(due_in: Option<Duration>, lookback: Duration) -> Duration {
    let horizon = lookback.max(WAKE_FLOOR);
    due_in.map_or(horizon, |d| d.min(horizon))
}

/// What `check` warns about the scan timing: only what the scanner cannot honour. A lookback
/// shorter than the interval is honoured (the scanner wakes within the lookback); one shorter
/// than `WAKE_FLOOR` is not to the second.
pub fn lookback_warning(job: &crate::config::JobSettings) -> Option<String> {
    (job.lookback < WAKE_FLOOR).then(|| {
        format!(
            "job.lookback_secs = {} is shorter than the scanner's {} s wake floor: a draft may be asked \
             about up to {} s after it is due",
            job.lookback.as_secs(),
            WAKE_FLOOR.as_secs(),
            WAKE_FLOOR.as_secs()
        )
    })
}

/// `once`: claim and reconcile everything eligible now, answer when done.
#[derive(Message)]
#[rtype(result = "Summary")]
pub struct Drain;

/// Shutdown: claim nothing more. In-flight orders finish on their own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopClaiming;

/// Where the Scanner stands. At most one store call (a scan, a candidate fetch or a claim) runs
/// at a time; what arrives meanwhile is owed and paid by [`Scanner::proceed`] when the call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No store call runs. `tick_owed`: a tick arrived during the last scan; its scan runs after
    /// the next claim or fetch.
    Idle { tick_owed: bool },
    /// A store call runs. `tick_owed`: a tick arrived meanwhile, so a busy drain never skips the
    /// recovery pass or the scan metrics; `refill_owed`: a slot freed up meanwhile.
    Busy { tick_owed: bool, refill_owed: bool },
    /// `StopClaiming` arrived: nothing new starts. `busy` until the running call ends.
    Stopped { busy: bool },
}

/// What [`Scanner::proceed`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The recovery pass, the gauges, then a claim (`recover_then_fill`).
    Scan,
    /// Claim for free slots (`fill`); while a call runs, that owes a refill.
    Fill,
    /// Nothing until a tick or a returning order.
    Wait,
}

/// The Scanner's transitions, apart from the actor so they can be tested row by row.
impl Phase {
    /// A store call runs.
    fn busy(self) -> bool {
        matches!(self, Phase::Busy { .. } | Phase::Stopped { busy: true })
    }

    /// A tick: returns whether to scan now; while a call runs the tick is owed instead.
    fn tick(&mut self) -> bool {
        match self {
            Phase::Idle { .. } => true,
            Phase::Busy { tick_owed, .. } => {
                *tick_owed = true;
                false
            }
            Phase::Stopped { .. } => false,
        }
    }

    /// A store call starts. A scan pays the tick owed; a fetch or claim keeps it owed.
    fn begin(&mut self, scan: bool) {
        if let Phase::Idle { tick_owed } | Phase::Busy { tick_owed, .. } = *self {
            *self = Phase::Busy {
                tick_owed: tick_owed && !scan,
                refill_owed: false,
            };
        }
    }

    /// The running store call ended. Returns whether a slot freed up meanwhile.
    fn end(&mut self) -> bool {
        match *self {
            Phase::Busy { tick_owed, refill_owed } => {
                *self = Phase::Idle { tick_owed };
                refill_owed
            }
            Phase::Stopped { .. } => {
                *self = Phase::Stopped { busy: false };
                false
            }
            Phase::Idle { .. } => false,
        }
    }

    /// A slot freed up: returns whether to claim now; while a call runs the refill is owed.
    fn refill(&mut self) -> bool {
        match self {
            Phase::Idle { .. } => true,
            Phase::Busy { refill_owed, .. } => {
                *refill_owed = true;
                false
            }
            Phase::Stopped { .. } => false,
        }
    }

    /// `StopClaiming`: nothing new starts; a running call still ends.
    fn stop(&mut self) {
        *self = Phase::Stopped { busy: self.busy() };
    }

    /// The continuation's table: what to do after `next`, given whether more orders wait.
    fn step(self, next: Next, more_waiting: bool) -> Step {
        match (next, self) {
            (_, Phase::Stopped { .. }) => Step::Wait,
            (Next::Fill, _) => Step::Fill,
            (Next::ScanOrFill { .. }, Phase::Idle { tick_owed: true }) => Step::Scan,
            (Next::ScanOrFill { refill: true } | Next::FillIfWaiting, _) if more_waiting => Step::Fill,
            _ => Step::Wait,
        }
    }
}

/// What a finished store call, or an order coming back, asks [`Scanner::proceed`] to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A scan ended: claim for every free slot (a tick owed stays owed).
    Fill,
    /// Run the owed tick's scan if there is one, else fill when `refill` and more orders wait.
    ScanOrFill { refill: bool },
    /// An order came back: fill its slot when more orders wait.
    FillIfWaiting,
}

pub struct Scanner {
    env: Arc<Env>,
    wiring: Arc<Wiring>,
    mode: Mode,
    phase: Phase,
    /// Eligible order ids, oldest first, not claimed yet (see `fill`).
    candidates: VecDeque<Bson>,
    /// What this tick's sweep found and no candidate list has taken yet.
    swept: Swept,
    /// Orders no candidate list may hold until the next scan: the held ones
    /// (`store/refusals.rs`, loaded by the scan) and those a claim of this tick did not get, so a
    /// refill never fetches the same failed candidates again within one tick.
    avoid: Vec<Bson>,
    /// The last fetch found every eligible order: no need to look again before the next tick.
    listed_all: bool,
    /// The last claim got every order it asked for: more are probably waiting.
    more_waiting: bool,
    in_flight: usize,
    /// When the last scan looked for near-miss status words (`store/words.rs`).
    words_checked: Option<Instant>,
    /// The armed tick: when it fires and its handle (`Mode::Run` only, see `arm`).
    wake: Option<(Instant, SpawnHandle)>,
    summary: Summary,
    drain_reply: Option<tokio::sync::oneshot::Sender<Summary>>,
    _guard: ChildGuard,
}

impl Scanner {
    pub fn new(env: Arc<Env>, wiring: Arc<Wiring>, mode: Mode, guard: ChildGuard) -> Scanner {
        Scanner {
            env,
            wiring,
            mode,
            phase: Phase::Idle { tick_owed: false },
            candidates: VecDeque::new(),
            swept: Swept::default(),
            avoid: Vec::new(),
            listed_all: false,
            more_waiting: false,
            in_flight: 0,
            words_checked: None,
            wake: None,
            summary: Summary::default(),
            drain_reply: None,
            _guard: guard,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // The safety net first, so a lost tick (fault, failed scan) never stops the timer.
        self.wake = None;
        self.arm(Instant::now() + self.env.settings.job.interval, ctx);
        if let Some(f) = crate::fault::point("scanner.tick") {
            // `stop`: the scanner stops; `error` or `delay`: this tick is lost, as if it failed.
            if f == crate::fault::Injected::Stop {
                ctx.stop();
            }
            return;
        }
        self.env.health.scanner_ticked();
        if self.phase.tick() {
            self.recover_then_fill(ctx);
        }
    }

    /// Tick at `at` unless a tick is already armed no later than that (`Mode::Run` only).
    fn arm(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if self.mode != Mode::Run || self.wake.is_some_and(|(armed, _)| armed <= at) {
            return;
        }
        if let Some((_, old)) = self.wake.take() {
            ctx.cancel_future(old);
        }
        let handle = ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| act.tick(ctx));
        self.wake = Some((at, handle));
    }

    /// The one continuation: every store call and every returned order ends here.
    fn proceed(&mut self, next: Next, ctx: &mut Context<Self>) {
        match self.phase.step(next, self.more_waiting) {
            Step::Scan => self.recover_then_fill(ctx),
            Step::Fill => self.fill(ctx),
            Step::Wait => {}
        }
        self.maybe_finish_drain();
    }

    /// The recovery pass (interrupted journal commits), the backlog gauges, then a claim.
    /// The phase stays busy meanwhile, so nothing is claimed before recovery has run.
    fn recover_then_fill(&mut self, ctx: &mut Context<Self>) {
        if let Phase::Stopped { .. } = self.phase {
            return;
        }
        self.phase.begin(true);
        // Every scan starts from a fresh list: orders that became eligible since are seen, oldest
        // first.
        self.candidates.clear();
        self.swept = Swept::default();
        self.avoid.clear();
        self.listed_all = false;
        let env = self.env.clone();
        // The service looks at its first scan and every `WORD_CHECK_EVERY` (the query reads every
        // order); a `once` pass does not.
        let words = self.mode == Mode::Run
            && self
                .words_checked
                .is_none_or(|at| at.elapsed() >= crate::store::words::WORD_CHECK_EVERY);
        if words {
            self.words_checked = Some(Instant::now());
        }
        ctx.spawn(scan(env, words).into_actor(self).map(|res, act, ctx| {
            match res {
                Ok((counts, swept, held)) => {
                    act.swept = swept;
                    act.avoid = held;
                    // An idle scan costs no candidate fetch: the counts just said it finds nothing.
                    act.listed_all = counts.nothing_due();
                    counts.record();
                    act.env.health.scan_succeeded();
                    let lookback = act.env.settings.job.lookback;
                    let delay = next_wake(counts.next_due.map(|due| wake_delay(DateTime::now(), due)), lookback);
                    act.arm(Instant::now() + delay, ctx);
                }
                Err(e) => {
                    metrics::counter!(names::SCAN_RUNS, labels::RESULT => labels::scan::ERROR).increment(1);
                    tracing::error!(error = %e, "scan failed; will try again next interval");
                }
            }
            act.phase.end();
            act.proceed(Next::Fill, ctx);
        }));
    }

    /// Claim orders for every free slot (at most `max_orders_per_run`) and dispatch them.
    ///
    /// Claims come from `candidates`, a list of eligible ids fetched oldest first and refreshed
    /// every tick or when it runs dry, so the scan for eligible orders is not repeated for every
    /// freed slot. Only free slots are ever claimed for: the list itself holds no leases.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        // Slots freed while a store call runs are filled as soon as it ends.
        if !self.phase.refill() {
            return;
        }
        let permits = self.free_slots();
        if permits.is_empty() {
            return;
        }
        if self.candidates.len() < permits.len() && !self.listed_all {
            self.fetch_candidates(ctx);
            return; // the permits drop; `fetch_candidates` fills again
        }
        let ids: Vec<Bson> = (0..permits.len()).map_while(|_| self.candidates.pop_front()).collect();
        if ids.is_empty() {
            self.more_waiting = false;
            self.maybe_finish_drain();
            return;
        }
        self.phase.begin(false);
        let env = self.env.clone();
        let asked = ids.len();
        let claim = async move {
            let lease = env.settings.job.lease_ttl;
            let claimed = env.store.claim_ids(&ids, &env.owner, DateTime::now(), lease).await;
            (ids, claimed)
        };
        ctx.spawn(claim.into_actor(self).map(move |(ids, res), act, ctx| {
            let refill_owed = act.phase.end();
            let refill = match res {
                Ok(claimed) => {
                    if !claimed.is_empty() {
                        tracing::debug!(claimed = claimed.len(), "claimed orders");
                    }
                    // Not got (taken, settled, refused, stuck): not fetched again this tick.
                    let got: Vec<&Bson> = claimed.iter().map(Claimed::id).collect();
                    act.avoid.extend(ids.into_iter().filter(|id| !got.contains(&id)));
                    // Fewer than asked: some candidates were taken or settled meanwhile; the
                    // freed permits go to the next candidates straight away.
                    let short = claimed.len() < asked;
                    for (order, (idx, permit)) in claimed.into_iter().zip(permits) {
                        act.dispatch(idx, order, permit, ctx);
                    }
                    act.more_waiting = !act.candidates.is_empty() || !act.listed_all;
                    refill_owed || short
                }
                Err(e) => {
                    act.more_waiting = false;
                    tracing::error!(error = %e, "claiming orders failed; will try again next interval");
                    false
                }
            };
            act.proceed(Next::ScanOrFill { refill }, ctx);
        }));
    }

    /// A permit for every free reconciler slot, at most `max_orders_per_run`.
    fn free_slots(&self) -> Vec<(usize, OwnedSemaphorePermit)> {
        let cap = self.env.settings.job.max_orders_per_run as usize;
        self.wiring
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.free.clone().try_acquire_owned().ok().map(|p| (i, p)))
            .take(cap)
            .collect()
    }

    /// Fetch a fresh list of eligible ids, then fill.
    fn fetch_candidates(&mut self, ctx: &mut Context<Self>) {
        self.phase.begin(false);
        let env = self.env.clone();
        let limit = CANDIDATES_PER_SLOT * self.wiring.slots.len().max(1);
        let mut swept = std::mem::take(&mut self.swept);
        let avoid = self.avoid.clone();
        let fetch = async move {
            let ids = env
                .store
                .candidates_avoiding(DateTime::now(), &env.eligibility, limit, &mut swept, &avoid)
                .await;
            (ids, swept)
        };
        ctx.spawn(fetch.into_actor(self).map(move |(res, swept), act, ctx| {
            act.phase.end();
            act.swept = swept;
            match res {
                Ok(ids) => {
                    act.listed_all = ids.len() < limit;
                    act.candidates = ids.into();
                    act.more_waiting = !act.candidates.is_empty();
                }
                Err(e) => {
                    act.listed_all = true;
                    act.candidates.clear();
                    act.more_waiting = false;
                    tracing::error!(error = %e, "finding eligible orders failed; will try again next interval");
                }
            }
            act.proceed(Next::ScanOrFill { refill: true }, ctx);
        }));
    }

    fn dispatch(&mut self, idx: usize, order: Claimed, slot: OwnedSemaphorePermit, ctx: &mut Context<Self>) {
        let Some(addr) = self.wiring.reconciler(idx) else {
            // The reconciler is being restarted: the lease brings the order back later.
            tracing::warn!(slot = idx, "reconciler unavailable; order left to its lease");
            return;
        };
        self.in_flight += 1;
        ctx.spawn(
            addr.send(Reconcile { order, slot })
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.in_flight -= 1;
                    act.summary.add(res.unwrap_or(Outcome::Released));
                    act.proceed(Next::FillIfWaiting, ctx);
                }),
        );
    }

    fn maybe_finish_drain(&mut self) {
        if self.mode == Mode::Once && !self.phase.busy() && self.in_flight == 0 && !self.more_waiting {
            if let Some(tx) = self.drain_reply.take() {
                let _ = tx.send(std::mem::take(&mut self.summary));
            }
        }
    }
}

impl Actor for Scanner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.mode == Mode::Run {
            self.tick(ctx);
        }
    }
}

impl Handler<Drain> for Scanner {
    type Result = ResponseFuture<Summary>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.drain_reply = Some(tx);
        self.more_waiting = true;
        self.recover_then_fill(ctx);
        Box::pin(async move { rx.await.unwrap_or_default() })
    }
}

impl Handler<StopClaiming> for Scanner {
    type Result = ();

    fn handle(&mut self, _: StopClaiming, _: &mut Self::Context) {
        self.phase.stop();
        self.more_waiting = false;
    }
}

mod scan;
use scan::scan;

#[cfg(test)]
mod tests;
