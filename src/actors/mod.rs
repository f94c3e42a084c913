//! The actor system (docs/architecture.md, "The actors" and "State outside the actors"): the
//! Supervisor owns the RateLimiter, the StockCommitter, the OrderReconciler pool and the Scanner,
//! and (`run` only) the EventSender, which tells the shop about each settlement apart from settling.
//! What survives an actor's death lives here, outside them: [`Env`] (read-only, one per process)
//! and [`Wiring`], the current address of every child and one slot per reconciler. Actors read an
//! address from the wiring at the moment they send, so nobody talks to a dead mailbox.

pub(crate) mod child;
pub(crate) mod committer;
pub(crate) mod event_sender;
pub mod rate_limiter;
pub(crate) mod reconciler;
pub(crate) mod scanner;
pub(crate) mod supervisor;

use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;
use crate::domain::Policy;
use crate::ops::Health;
use crate::phonepe::Gateway;
use crate::store::By;
use crate::store::Eligibility;
use crate::store::{Store, StrategyChoice};

pub use child::{ChildGuard, ChildId};
pub use committer::StockCommitter;
pub use event_sender::EventSender;
pub use rate_limiter::{Budget, Permit, RateLimiter};
pub use reconciler::OrderReconciler;
pub use scanner::{Scanner, Summary};
pub use supervisor::Supervisor;

/// Everything the actors share read-only. Created once per process, on the System arbiter
/// (the MongoDB and HTTP clients must be used on the runtime that created them).
pub struct Env {
    pub settings: Settings,
    pub store: Store,
    /// Every PhonePe call goes through here (a permit of [`Env::budget`], the breaker, metrics).
    pub phonepe: Gateway,
    pub strategy: StrategyChoice,
    pub policy: Policy,
    /// This process's lease owner id: host, pid and a random suffix.
    pub owner: String,
    pub eligibility: Eligibility,
    pub health: Health,
    /// The PhonePe budget outlives RateLimiter restarts: a restart must not hand out a fresh burst.
    pub budget: Arc<Budget>,
}

/// A reconciler's place in the pool: its one-permit slot and its current address.
pub struct Slot {
    pub free: Arc<Semaphore>,
    pub addr: Mutex<Option<Addr<OrderReconciler>>>,
    /// The slot's permit while its reconciler is dead: taken by the dying reconciler (or the
    /// supervisor), given back by the supervisor once the new reconciler is wired in.
    pub(crate) held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Slot {
    /// Keep the slot closed until the supervisor reopens it (`permit` if we have one, else
    /// whatever is free now).
    pub(crate) fn close(&self, permit: Option<OwnedSemaphorePermit>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = permit.or_else(|| self.free.clone().try_acquire_owned().ok());
        }
    }

    /// Let the scanner use the slot again.
    pub(crate) fn reopen(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Current addresses of the children; the supervisor rewrites an entry when it restarts one.
pub struct Wiring {
    pub rate_limiter: Mutex<Option<Addr<RateLimiter>>>,
    pub committer: Mutex<Option<Addr<StockCommitter>>>,
    pub scanner: Mutex<Option<Addr<Scanner>>>,
    pub event_sender: Mutex<Option<Addr<EventSender>>>,
    pub slots: Vec<Slot>,
}

impl Wiring {
    pub fn new(reconcilers: usize) -> Wiring {
        Wiring {
            rate_limiter: Mutex::new(None),
            committer: Mutex::new(None),
            scanner: Mutex::new(None),
            event_sender: Mutex::new(None),
            slots: (0..reconcilers)
                .map(|_| Slot {
                    free: Arc::new(Semaphore::new(1)),
                    addr: Mutex::new(None),
                    held: Mutex::new(None),
                })
                .collect(),
        }
    }

    pub fn rate_limiter(&self) -> Option<Addr<RateLimiter>> {
        get(&self.rate_limiter)
    }

    pub fn committer(&self) -> Option<Addr<StockCommitter>> {
        get(&self.committer)
    }

    pub fn scanner(&self) -> Option<Addr<Scanner>> {
        get(&self.scanner)
    }

    pub fn reconciler(&self, idx: usize) -> Option<Addr<OrderReconciler>> {
        self.slots.get(idx).and_then(|s| get(&s.addr))
    }
}

fn get<A: Actor>(m: &Mutex<Option<Addr<A>>>) -> Option<Addr<A>> {
    // A poisoned lock only means a panic happened while it was held; the Addr inside is intact.
    m.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn set<A: Actor>(m: &Mutex<Option<Addr<A>>>, addr: Option<Addr<A>>) {
    *m.lock().unwrap_or_else(|p| p.into_inner()) = addr;
}

impl Env {
    /// What [`crate::settle::settle`] needs from this environment.
    pub fn settler(&self) -> crate::settle::Settler<'_> {
        crate::settle::Settler {
            store: &self.store,
            strategy: self.strategy,
            owner: &self.owner,
            lease_ttl: self.settings.job.lease_ttl,
            policy: &self.policy,
            by: By::Reconciler,
        }
    }
}
