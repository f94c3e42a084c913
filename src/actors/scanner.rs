//! Scanner: finds eligible orders, claims them with a lease, and keeps the reconcilers busy.
//!
//! Every `interval` it measures the backlog and claims as many eligible orders as there are free
//! reconciler slots (never more than `max_orders_per_run` at once). When a reconciler finishes
//! and the last claim was full — the backlog is not drained — it claims again for the freed slot
//! straight away, so a backlog drains at the full PhonePe budget instead of one batch a minute.
//! The claim is a lease in MongoDB, so several processes can scan the same collection safely.
//!
//! Each tick also sets the backlog gauges: eligible drafts (the indexed filter's plus the sweep's,
//! see `crate::store::orders`), the irregular drafts only the sweep finds, and late-payment
//! watches overdue by more than `WATCH_OVERDUE_GRACE`. The tick's sweep (drafts and watches the
//! indexed filters cannot match) is kept and fed to `Store::candidates_with`, which lists its
//! ids first and reserves a share for due watches, so the sweep runs once per tick.
//!
//! In `once` mode there is no timer: `Drain` claims and dispatches until nothing eligible is left,
//! then answers with a summary of outcomes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use actix::prelude::*;
use mongodb::bson::{Bson, DateTime};
use tokio::sync::OwnedSemaphorePermit;

use super::child::ChildGuard;
use super::reconciler::Reconcile;
use super::{Env, Outcome, Wiring};
use crate::store::orders::Swept;
use crate::store::Claimed;
use crate::telemetry::names;

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

/// What a scan counts for the gauges.
struct ScanCounts {
    /// Drafts the eligible (indexed) filter matches.
    eligible: u64,
    /// Drafts only the sweep finds (`createdAt` not a date, `paymentStatus` not pending).
    irregular: u64,
    overdue_watches: u64,
    review: u64,
}

/// `once`: claim and reconcile everything eligible now, answer when done.
#[derive(Message)]
#[rtype(result = "Summary")]
pub struct Drain;

/// Shutdown: claim nothing more. In-flight orders finish on their own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopClaiming;

pub struct Scanner {
    env: Arc<Env>,
    wiring: Arc<Wiring>,
    mode: Mode,
    claiming: bool,
    /// A tick arrived while a claim was running: run its scan as soon as the claim ends, so a
    /// busy drain never skips the recovery pass or the scan metrics.
    tick_pending: bool,
    /// A slot freed up while a claim was running: claim again as soon as it ends.
    refill_pending: bool,
    /// Eligible order ids, oldest first, not claimed yet (see `fill`).
    candidates: VecDeque<Bson>,
    /// What this tick's sweep found and no candidate list has taken yet.
    swept: Swept,
    /// The last fetch found every eligible order: no need to look again before the next tick.
    listed_all: bool,
    /// The last claim got every order it asked for: more are probably waiting.
    more_waiting: bool,
    in_flight: usize,
    stopping: bool,
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
            claiming: false,
            tick_pending: false,
            refill_pending: false,
            candidates: VecDeque::new(),
            swept: Swept::default(),
            listed_all: false,
            more_waiting: false,
            in_flight: 0,
            stopping: false,
            summary: Summary::default(),
            drain_reply: None,
            _guard: guard,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(f) = crate::fault::point("scanner.tick") {
            // `stop`: the scanner stops; `error` or `delay`: this tick is lost, as if it failed.
            if f == crate::fault::Injected::Stop {
                ctx.stop();
            }
            return;
        }
        self.env.health.scanner_ticked();
        if self.stopping {
            return;
        }
        if self.claiming {
            self.tick_pending = true;
            return;
        }
        self.recover_then_fill(ctx);
    }

    /// The recovery pass (interrupted journal commits), the backlog gauges, then a claim.
    /// `claiming` stays set meanwhile, so nothing is claimed before recovery has run.
    fn recover_then_fill(&mut self, ctx: &mut Context<Self>) {
        self.claiming = true;
        self.tick_pending = false;
        // Every scan starts from a fresh list: orders that became eligible since are seen, oldest
        // first.
        self.candidates.clear();
        self.swept = Swept::default();
        self.listed_all = false;
        let env = self.env.clone();
        let scan = async move {
            let recovered = env
                .store
                .recover_journals(&env.owner, env.settings.job.lease_ttl)
                .await?;
            if !recovered.is_empty() {
                tracing::warn!(report = ?recovered, "recovery pass finished interrupted commits");
            }
            let now = DateTime::now();
            let swept = env.store.sweep(now, &env.eligibility).await?;
            let counts = ScanCounts {
                eligible: env.store.count_eligible(now, &env.eligibility).await?,
                irregular: swept.drafts.len() as u64,
                overdue_watches: env.store.count_overdue_watches(now, &env.eligibility, &swept).await?,
                review: env.store.count_needs_review().await?,
            };
            Ok::<_, crate::store::StoreError>((counts, swept))
        };
        ctx.spawn(scan.into_actor(self).map(|res, act, ctx| {
            match res {
                Ok((c, swept)) => {
                    act.swept = swept;
                    if c.irregular > 0 {
                        tracing::warn!(
                            drafts = c.irregular,
                            "drafts whose createdAt or paymentStatus the indexed query cannot match; \
                             the sweep reconciles or parks them"
                        );
                    }
                    metrics::gauge!(names::ELIGIBLE_BACKLOG).set((c.eligible + c.irregular) as f64);
                    metrics::gauge!(names::IRREGULAR_DRAFTS).set(c.irregular as f64);
                    metrics::gauge!(names::OVERDUE_WATCHES).set(c.overdue_watches as f64);
                    metrics::gauge!(names::NEEDS_REVIEW_ORDERS).set(c.review as f64);
                    metrics::counter!(names::SCAN_RUNS, "result" => "ok").increment(1);
                    metrics::gauge!(names::LAST_SUCCESSFUL_SCAN)
                        .set(DateTime::now().timestamp_millis() as f64 / 1000.0);
                }
                Err(e) => {
                    metrics::counter!(names::SCAN_RUNS, "result" => "error").increment(1);
                    tracing::error!(error = %e, "scan failed; will try again next interval");
                }
            }
            act.claiming = false;
            act.fill(ctx);
            act.maybe_finish_drain();
        }));
    }

    /// Claim orders for every free slot (at most `max_orders_per_run`) and dispatch them.
    ///
    /// Claims come from `candidates`, a list of eligible ids fetched oldest first and refreshed
    /// every tick or when it runs dry, so the scan for eligible orders is not repeated for every
    /// freed slot. Only free slots are ever claimed for: the list itself holds no leases.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if self.claiming {
            // Slots freed while a claim runs are filled as soon as it ends.
            self.refill_pending = true;
            return;
        }
        self.refill_pending = false;
        let cap = self.env.settings.job.max_orders_per_run as usize;
        let permits: Vec<(usize, OwnedSemaphorePermit)> = self
            .wiring
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.free.clone().try_acquire_owned().ok().map(|p| (i, p)))
            .take(cap)
            .collect();
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
        self.claiming = true;
        let env = self.env.clone();
        let asked = ids.len();
        let claim = async move {
            let lease = env.settings.job.lease_ttl;
            env.store.claim_ids(&ids, &env.owner, DateTime::now(), lease).await
        };
        ctx.spawn(claim.into_actor(self).map(move |res, act, ctx| {
            act.claiming = false;
            let mut refill = act.refill_pending;
            match res {
                Ok(claimed) => {
                    if !claimed.is_empty() {
                        tracing::debug!(claimed = claimed.len(), "claimed orders");
                    }
                    // Fewer than asked: some candidates were taken or settled meanwhile; the
                    // freed permits go to the next candidates straight away.
                    refill |= claimed.len() < asked;
                    for (order, (idx, permit)) in claimed.into_iter().zip(permits) {
                        act.dispatch(idx, order, permit, ctx);
                    }
                    act.more_waiting = !act.candidates.is_empty() || !act.listed_all;
                }
                Err(e) => {
                    refill = false;
                    act.more_waiting = false;
                    tracing::error!(error = %e, "claiming orders failed; will try again next interval");
                }
            }
            if std::mem::take(&mut act.tick_pending) && !act.stopping {
                act.recover_then_fill(ctx);
            } else if refill && act.more_waiting {
                act.fill(ctx);
            }
            act.maybe_finish_drain();
        }));
    }

    /// Fetch a fresh list of eligible ids, then fill.
    fn fetch_candidates(&mut self, ctx: &mut Context<Self>) {
        self.claiming = true;
        let env = self.env.clone();
        let limit = CANDIDATES_PER_SLOT * self.wiring.slots.len().max(1);
        let mut swept = std::mem::take(&mut self.swept);
        let fetch = async move {
            let ids = env
                .store
                .candidates_with(DateTime::now(), &env.eligibility, limit, &mut swept)
                .await;
            (ids, swept)
        };
        ctx.spawn(fetch.into_actor(self).map(move |(res, swept), act, ctx| {
            act.claiming = false;
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
            if std::mem::take(&mut act.tick_pending) && !act.stopping {
                act.recover_then_fill(ctx);
            } else if act.more_waiting {
                act.fill(ctx);
            }
            act.maybe_finish_drain();
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
                    if act.more_waiting {
                        act.fill(ctx);
                    }
                    act.maybe_finish_drain();
                }),
        );
    }

    fn maybe_finish_drain(&mut self) {
        if self.mode == Mode::Once && !self.claiming && self.in_flight == 0 && !self.more_waiting {
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
            ctx.run_interval(self.env.settings.job.interval, |act, ctx| act.tick(ctx));
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
        self.stopping = true;
        self.more_waiting = false;
    }
}
