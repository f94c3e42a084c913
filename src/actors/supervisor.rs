//! Supervisor: starts the children (RateLimiter, StockCommitter, reconcilers, Scanner, each
//! depending only on those before it), restarts the ones that die — one-for-one, after a growing
//! backoff — and escalates a restart storm (more than `max_restarts` deaths of one child within
//! `restart_window`): children stopped in reverse order, this process's leases released, exit 1.
//! actix's own `Supervisor` does not restart a panicked actor, and why there is no rest_for_one:
//! docs/architecture.md, "Supervision".

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::child::{remember_panics, ChildExited, ChildGuard, ChildId};
use super::committer::StockCommitter;
use super::event_sender::EventSender;
use super::rate_limiter::RateLimiter;
use super::reconciler::OrderReconciler;
use super::scanner::{Mode, Scanner, StopClaiming};
use super::{set, Env, Wiring};
use crate::telemetry::{labels, names};

/// Graceful shutdown: stop claiming, wait (at most `grace`) for in-flight orders, release leases,
/// stop the System with exit code 0.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub grace: Duration,
}

pub struct Supervisor {
    env: Arc<Env>,
    wiring: Arc<Wiring>,
    mode: Mode,
    generations: HashMap<ChildId, u64>,
    deaths: HashMap<ChildId, VecDeque<Instant>>,
    stopping: bool,
}

impl Supervisor {
    /// Start the supervisor and, before this returns, all its children: the wiring is complete
    /// as soon as the caller gets the address.
    pub fn launch(env: Arc<Env>, wiring: Arc<Wiring>, mode: Mode) -> Addr<Supervisor> {
        remember_panics();
        Supervisor::create(move |ctx| {
            let mut sup = Supervisor {
                env,
                wiring,
                mode,
                generations: HashMap::new(),
                deaths: HashMap::new(),
                stopping: false,
            };
            for child in sup.children() {
                sup.start_child(child, ctx);
            }
            sup
        })
    }

    fn children(&self) -> Vec<ChildId> {
        let mut c = vec![ChildId::RateLimiter, ChildId::StockCommitter];
        c.extend((0..self.wiring.slots.len()).map(ChildId::OrderReconciler));
        c.push(ChildId::Scanner);
        // Events are sent by the service only; `once` records them (its writes move them).
        if self.mode == Mode::Run {
            c.push(ChildId::EventSender);
        }
        c
    }

    fn start_child(&mut self, child: ChildId, ctx: &mut Context<Self>) {
        let generation = {
            let g = self.generations.entry(child).or_insert(0);
            *g += 1;
            *g
        };
        let guard = ChildGuard::new(child, generation, ctx.address().recipient(), self.wiring.clone());
        let (env, wiring) = (self.env.clone(), self.wiring.clone());
        match child {
            ChildId::RateLimiter => set(
                &wiring.rate_limiter,
                Some(RateLimiter::new(env.budget.clone(), guard).start()),
            ),
            ChildId::StockCommitter => set(&wiring.committer, Some(StockCommitter::new(env, guard).start())),
            ChildId::OrderReconciler(i) => {
                let addr = OrderReconciler::new(env, wiring.clone(), guard).start();
                set(&wiring.slots[i].addr, Some(addr));
                // Wired in: the scanner may use this slot again.
                wiring.slots[i].reopen();
            }
            ChildId::Scanner => set(
                &wiring.scanner,
                Some(Scanner::new(env, wiring.clone(), self.mode, guard).start()),
            ),
            ChildId::EventSender => set(&wiring.event_sender, Some(EventSender::new(env, guard).start())),
        }
    }

    /// Record a death; `true` when the child may be restarted, `false` when the storm escalates.
    fn within_intensity(&mut self, child: ChildId) -> (bool, usize) {
        let sup = &self.env.settings.supervisor;
        let now = Instant::now();
        let deaths = self.deaths.entry(child).or_default();
        deaths.push_back(now);
        while deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > sup.restart_window)
        {
            deaths.pop_front();
        }
        (deaths.len() <= sup.max_restarts as usize, deaths.len())
    }

    fn escalate(&mut self, child: ChildId, ctx: &mut Context<Self>) {
        self.stopping = true;
        self.env.health.set_supervisor_alive(false);
        let sup = &self.env.settings.supervisor;
        tracing::error!(
            actor = child.actor_label(),
            max_restarts = sup.max_restarts,
            window_secs = sup.restart_window.as_secs(),
            "restart intensity exceeded; stopping everything and exiting with code 1 so the process manager restarts us clean"
        );
        // Stop in reverse start order: the scanner first, so nothing new is claimed; then unwire
        // the reconcilers, the committer and the rate limiter, so work in flight gives its orders
        // back instead of going on (an actor whose last address is dropped stops by itself).
        let w = &self.wiring;
        if let Some(s) = w.scanner() {
            s.do_send(StopClaiming);
        }
        set(&w.scanner, None);
        set(&w.event_sender, None);
        for slot in w.slots.iter().rev() {
            set(&slot.addr, None);
        }
        set(&w.committer, None);
        set(&w.rate_limiter, None);
        // Give this process's leases back (bounded), so another instance need not wait for them.
        let env = self.env.clone();
        ctx.spawn(
            async move {
                match tokio::time::timeout(Duration::from_secs(3), env.store.release_leases(&env.owner)).await {
                    Ok(Ok(n)) => tracing::info!(released = n, "released leases before exiting"),
                    _ => tracing::warn!("could not release leases before exiting; they will expire"),
                }
                System::current().stop_with_code(1);
            }
            .into_actor(self),
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.env.health.set_supervisor_alive(true);
        tracing::info!(reconcilers = self.wiring.slots.len(), owner = %self.env.owner, "supervisor started its children");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.env.health.set_supervisor_alive(false);
    }
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let current = self.generations.get(&msg.child).copied().unwrap_or(0);
        if self.stopping || msg.generation != current {
            return;
        }
        let actor = msg.child.actor_label();
        if let ChildId::OrderReconciler(i) = msg.child {
            // In case the dying reconciler could not close its slot (its permit was still held
            // by work being dropped): close it now, so nothing is dispatched to it meanwhile.
            if let Some(slot) = self.wiring.slots.get(i) {
                slot.close(None);
            }
        }
        let (ok, recent) = self.within_intensity(msg.child);
        if !ok {
            tracing::error!(actor, child = ?msg.child, reason = %msg.reason, recent_deaths = recent, "child died once too often");
            self.escalate(msg.child, ctx);
            return;
        }
        metrics::counter!(names::ACTOR_RESTARTS, labels::ACTOR => actor).increment(1);
        // Back off a little more for each recent death, so a child that dies at start cannot
        // spin the arbiter: 50 ms, 100 ms, 200 ms, … capped at 5 s.
        let backoff = Duration::from_millis(50u64 << (recent.saturating_sub(1)).min(7)).min(Duration::from_secs(5));
        tracing::warn!(actor, child = ?msg.child, reason = %msg.reason, recent_deaths = recent, backoff_ms = backoff.as_millis() as u64, "child died; restarting it");
        ctx.run_later(backoff, move |act, ctx| {
            if !act.stopping {
                act.start_child(msg.child, ctx);
            }
        });
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        tracing::info!(
            grace_secs = msg.grace.as_secs(),
            "shutting down: no new claims; waiting for in-flight orders"
        );
        if let Some(s) = self.wiring.scanner() {
            s.do_send(StopClaiming);
        }
        // Slots closed for a dead reconciler hold no order: do not wait for them.
        for slot in &self.wiring.slots {
            slot.reopen();
        }
        let (env, wiring) = (self.env.clone(), self.wiring.clone());
        ctx.spawn(
            async move {
                let all_idle = async {
                    for slot in &wiring.slots {
                        // Holding every slot permit means no reconciler has an order.
                        let _ = slot.free.acquire().await.map(|p| p.forget());
                    }
                };
                if tokio::time::timeout(msg.grace, all_idle).await.is_err() {
                    tracing::warn!("in-flight orders did not finish within the grace period; their leases will expire");
                }
                match env.store.release_leases(&env.owner).await {
                    Ok(n) => tracing::info!(released = n, "released leases; bye"),
                    Err(e) => tracing::warn!(error = %e, "could not release leases; they will expire"),
                }
                System::current().stop_with_code(0);
            }
            .into_actor(self),
        );
    }
}
