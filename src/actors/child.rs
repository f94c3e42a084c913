//! What every supervised child carries: its [`ChildId`] and a [`ChildGuard`] whose `Drop`
//! unwires the child and reports its death ([`ChildExited`]) to whoever supervises it, panic or
//! not. The guard knows its supervisor only as a `Recipient`, so no child imports the
//! supervisor (`supervisor.rs` explains the restart strategy).

use std::cell::RefCell;
use std::sync::{Arc, Once};

use actix::prelude::*;

use super::{set, Wiring};
use crate::telemetry::labels::actor;

/// Which child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildId {
    RateLimiter,
    StockCommitter,
    OrderReconciler(usize),
    Scanner,
    EventSender,
}

impl ChildId {
    /// The `actor` label of `reconciler_actor_restarts_total`.
    pub const fn actor_label(self) -> &'static str {
        match self {
            ChildId::RateLimiter => actor::RATE_LIMITER,
            ChildId::StockCommitter => actor::STOCK_COMMITTER,
            ChildId::OrderReconciler(_) => actor::ORDER_RECONCILER,
            ChildId::Scanner => actor::SCANNER,
            ChildId::EventSender => actor::EVENT_SENDER,
        }
    }
}

/// Lives inside each child; its `Drop` unwires the child and reports its death, panic or not.
pub struct ChildGuard {
    child: ChildId,
    generation: u64,
    supervisor: Recipient<ChildExited>,
    wiring: Arc<Wiring>,
}

impl ChildGuard {
    /// The guard of `child`'s `generation`-th incarnation, reporting its death to `supervisor`.
    pub(crate) fn new(
        child: ChildId,
        generation: u64,
        supervisor: Recipient<ChildExited>,
        wiring: Arc<Wiring>,
    ) -> Self {
        ChildGuard {
            child,
            generation,
            supervisor,
            wiring,
        }
    }

    /// Which child this guard belongs to.
    pub fn child(&self) -> ChildId {
        self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Unwire first, synchronously: by the time anyone notices the dead mailbox, the wiring
        // no longer leads to it.
        let w = &self.wiring;
        match self.child {
            ChildId::RateLimiter => set(&w.rate_limiter, None),
            ChildId::StockCommitter => set(&w.committer, None),
            ChildId::Scanner => set(&w.scanner, None),
            ChildId::EventSender => set(&w.event_sender, None),
            ChildId::OrderReconciler(i) => {
                if let Some(slot) = w.slots.get(i) {
                    set(&slot.addr, None);
                    slot.close(None);
                }
            }
        }
        let reason = if std::thread::panicking() {
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panicked".into())
        } else {
            "stopped".into()
        };
        self.supervisor.do_send(ChildExited {
            child: self.child,
            generation: self.generation,
            reason,
        });
    }
}

thread_local! {
    /// The message of the panic unwinding this thread, for the restart log line.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chain a panic hook that remembers the panic message for [`ChildGuard`] (the default hook
/// still prints it). Installed once per process.
pub(crate) fn remember_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked: {msg}{at}")));
            previous(info);
        }));
    });
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChildExited {
    pub(crate) child: ChildId,
    pub(crate) generation: u64,
    /// "stopped", or "panicked: <message> at <file:line>".
    pub(crate) reason: String,
}
