//! OrderReconciler: one order at a time — a permit from the RateLimiter, PhonePe's status through
//! the gateway, `decide`, then the StockCommitter (docs/architecture.md, "The path of one order").
//! It writes no decision itself: when anything between the claim and the committer fails, the order
//! is handed back (rescheduled, lease released, guarded by status and lease). The order and its slot
//! permit travel in a [`Holding`], whose `Drop` hands the order back and keeps the slot closed when
//! the reconciler dies mid-order (docs/architecture.md, "Supervision").
//!
//! Fault points (feature `fault-injection`; `#i` aims at reconciler i): `reconciler.reconcile`
//! (on receipt), `reconciler.before_call` (after the permit), `reconciler.before_settle` (after
//! the decision), `reconciler.after_settle` (after the committer answered).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mongodb::bson::{Bson, DateTime};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument;

use super::child::{ChildGuard, ChildId};
use super::committer::{ParkInvalid, Settle};
use super::rate_limiter::{Acquire, Paused, Permit, RateLimiter, WAIT_AT_MOST};
use super::{set, Env, Wiring};
use crate::domain::decision::on_service_error;
use crate::domain::Outcome;
use crate::domain::{decide, Decision, Order, Status, StatusError, StatusReport};
use crate::fault::Injected;
use crate::store::orders::{plus, Recheck};
use crate::store::Claimed;
use crate::telemetry::names;

/// Reconcile one claimed order. The slot permit is held until the work is done.
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct Reconcile {
    pub order: Claimed,
    pub slot: OwnedSemaphorePermit,
}

pub struct OrderReconciler {
    env: Arc<Env>,
    wiring: Arc<Wiring>,
    /// This reconciler's place in the pool.
    index: usize,
    _guard: ChildGuard,
}

impl OrderReconciler {
    pub fn new(env: Arc<Env>, wiring: Arc<Wiring>, guard: ChildGuard) -> OrderReconciler {
        let index = match guard.child() {
            ChildId::OrderReconciler(i) => i,
            _ => 0,
        };
        OrderReconciler {
            env,
            wiring,
            index,
            _guard: guard,
        }
    }
}

impl Actor for OrderReconciler {
    type Context = Context<Self>;
}

impl Handler<Reconcile> for OrderReconciler {
    type Result = ResponseActFuture<Self, Outcome>;

    fn handle(&mut self, msg: Reconcile, ctx: &mut Self::Context) -> Self::Result {
        let (env, wiring, index) = (self.env.clone(), self.wiring.clone(), self.index);
        // First thing: from here on, however this ends, the order and the slot are accounted for.
        let holding = Holding::new(env.clone(), wiring.clone(), index, &msg.order, msg.slot);
        let injected = crate::fault::point_at("reconciler.reconcile", index);
        if injected == Some(Injected::Stop) {
            ctx.stop();
            // Dropped without `done`: handed back like an order of a reconciler that died.
            return Box::pin(
                async move { drop(holding) }
                    .into_actor(self)
                    .map(|(), _, _| Outcome::Released),
            );
        }
        let span = tracing::info_span!("order", merchantTransactionId = %msg.order.log_id());
        Box::pin(
            async move {
                let outcome = match injected {
                    Some(Injected::Error) => {
                        let (id, status) = holding.order();
                        release(&env, &id, status, ACTOR_DOWN_RETRY, "INJECTED_ERROR").await;
                        Outcome::Retried
                    }
                    Some(Injected::Delay(d)) => {
                        tokio::time::sleep(d).await;
                        reconcile(&env, &wiring, index, msg.order).await
                    }
                    _ => reconcile(&env, &wiring, index, msg.order).await,
                };
                holding.done(outcome)
            }
            .instrument(span)
            .into_actor(self),
        )
    }
}

/// An order a reconciler holds, with the slot permit that came with it.
///
/// `done` ends the work normally: the permit is dropped and the slot frees up. Dropping a holding
/// without `done` means the reconciler died mid-order (panic, or stopped): the `Drop` closes the
/// slot until the supervisor restarts this reconciler, unwires the dead reconciler, and gives the
/// order back at once.
struct Holding {
    env: Arc<Env>,
    wiring: Arc<Wiring>,
    index: usize,
    order: Option<(Bson, Status)>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Holding {
    fn new(env: Arc<Env>, wiring: Arc<Wiring>, index: usize, order: &Claimed, slot: OwnedSemaphorePermit) -> Holding {
        let order = match order {
            Claimed::Valid(o) => (o.id.clone(), o.status),
            Claimed::Invalid { id, status, .. } => (id.clone(), *status),
        };
        Holding {
            env,
            wiring,
            index,
            order: Some(order),
            slot: Some(slot),
        }
    }

    fn order(&self) -> (Bson, Status) {
        self.order.clone().unwrap_or((Bson::Null, Status::Draft))
    }

    fn done(mut self, outcome: Outcome) -> Outcome {
        self.order = None;
        outcome
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let Some((id, status)) = self.order.take() else {
            return; // finished normally; the slot permit drops with us
        };
        if let Some(slot) = self.wiring.slots.get(self.index) {
            set(&slot.addr, None);
            slot.close(self.slot.take());
        }
        tracing::warn!(order_id = %id, reconciler = self.index, "reconciler died holding an order; handing it back");
        // We may be unwinding: spawn only if a runtime is there (a panic here would abort).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let env = self.env.clone();
            rt.spawn(async move { release(&env, &id, status, Duration::ZERO, "RECONCILER_DIED").await });
        }
    }
}

/// Give an order back without a decision: due again after `after`, lease released. Guarded by
/// `status` and our lease, so if the order was settled meanwhile this changes nothing.
async fn release(env: &Env, id: &Bson, status: Status, after: Duration, code: &str) -> Outcome {
    let now = DateTime::now();
    match env
        .store
        .reschedule(id, &env.owner, Recheck::new(status, plus(now, after), code), now)
        .await
    {
        Ok(_) => {}
        // The order's document refuses even this: counted, parked at the cap.
        Err(e) if e.is_refusal() => {
            let error = e.refusal_excerpt("hand back");
            let facts = crate::store::refusals::Facts::default();
            if let Err(e) = crate::settle::refused(&env.settler(), id, status, &error, facts).await {
                tracing::warn!(error = %e, "could not record a refused write; the order's lease will expire");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not hand the order back; its lease will expire"),
    }
    Outcome::Released
}

/// How long an order waits when an actor it needs is being restarted: long enough not to spin,
/// short next to the restart backoff's cap.
const ACTOR_DOWN_RETRY: Duration = Duration::from_secs(1);

/// How long a reconciler waits for a dead RateLimiter to be restarted before giving its order back.
const LIMITER_RESTART_WAIT: Duration = Duration::from_secs(6);

/// A permit from the current RateLimiter. If it dies (before or while we wait), wait for the
/// supervisor to wire in its successor and queue there: the budget lives outside the actor, so the
/// new one continues the same schedule. `None` if no RateLimiter came back in time.
async fn acquire(wiring: &Wiring) -> Option<(Addr<RateLimiter>, Result<Permit, Paused>)> {
    let deadline = Instant::now() + LIMITER_RESTART_WAIT;
    loop {
        if let Some(limiter) = wiring.rate_limiter() {
            if let Ok(answer) = limiter.send(Acquire).await {
                return Some((limiter, answer));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How long an order waits after the committer could not settle it (the database failed).
const SETTLE_FAILED_RETRY: Duration = Duration::from_secs(5);

/// The path of one order.
pub async fn reconcile(env: &Env, wiring: &Wiring, index: usize, claimed: Claimed) -> Outcome {
    let order = match claimed {
        Claimed::Valid(order) => order,
        Claimed::Invalid { id, status, error, .. } => {
            let Some(committer) = wiring.committer() else {
                return release(env, &id, status, ACTOR_DOWN_RETRY, "COMMITTER_DOWN").await;
            };
            return match committer.send(ParkInvalid { id, status, error }).await {
                Ok(Ok(o)) => o,
                _ => Outcome::Retried,
            };
        }
    };
    // The committer must be up before we spend a PhonePe call on this order.
    if wiring.committer().is_none() {
        return release(env, &order.id, order.status, ACTOR_DOWN_RETRY, "COMMITTER_DOWN").await;
    }
    // 1–2. A permit, then PhonePe's answer; a failure of the whole service is retried in place.
    let (answer, service_wide) = match ask_until_answered(env, wiring, index, &order).await {
        Ok(asked) => asked,
        Err(given_back) => return given_back,
    };
    // 3. Decide: an error of the whole service is not held against the order.
    let decision = match &answer {
        Err(e) if service_wide => on_service_error(e),
        _ => decide(&order, &answer, DateTime::now(), &env.policy),
    };
    log_decision(&decision);
    if let Some(Injected::Delay(d)) = crate::fault::point_at("reconciler.before_settle", index) {
        tokio::time::sleep(d).await;
    }
    // 4. Settle, through the one writer.
    let Some(committer) = wiring.committer() else {
        return release(env, &order.id, order.status, ACTOR_DOWN_RETRY, "COMMITTER_DOWN").await;
    };
    let (id, status) = (order.id.clone(), order.status);
    let outcome = match committer.send(Settle { order, decision }).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            // Nothing changed. Hand it back for a later try (a no-op if the committer already
            // rescheduled it: that released our lease).
            tracing::warn!(error = %e, "could not settle the order now; it will be retried");
            release(env, &id, status, SETTLE_FAILED_RETRY, "SETTLE_FAILED").await;
            Outcome::Retried
        }
        Err(_) => {
            // The committer died before answering: the settlement happened or it did not. Hand
            // the order back (a no-op if it was settled: the release is guarded by its status);
            // the next check settles it or finds it already processed.
            tracing::warn!("the committer died before answering; handing the order back");
            release(env, &id, status, Duration::ZERO, "COMMITTER_DIED").await
        }
    };
    if let Some(Injected::Delay(d)) = crate::fault::point_at("reconciler.after_settle", index) {
        tokio::time::sleep(d).await;
    }
    outcome
}

/// A permit, then PhonePe's answer, with whether a failure was the whole service's (the breaker's
/// [`Verdict`](super::rate_limiter::Verdict), waiting for the next call's result when one failure
/// alone cannot tell). A service-wide failure (5xx, timeout, connection) is retried right here,
/// holding the order, while half its lease is left: the breaker paces the retries (one probe per
/// short pause), and when PhonePe answers again the held orders go first, at the budget's pace,
/// instead of waiting for the next scan. `Err` is the outcome of giving the order back unasked.
async fn ask_until_answered(
    env: &Env,
    wiring: &Wiring,
    index: usize,
    order: &Order,
) -> Result<(Result<StatusReport, StatusError>, bool), Outcome> {
    let hold_until = Instant::now() + env.settings.job.lease_ttl / 2;
    loop {
        let permit = permit(env, wiring, index, order).await?;
        let (answer, verdict) = env.phonepe.status_with(permit, &order.merchant_transaction_id).await;
        let outage = matches!(&answer, Err(e @ StatusError::Transient { .. }) if !e.is_unreadable());
        let service_wide = match &answer {
            Ok(_) => false,
            // PhonePe did answer, unreadably, about this order: always the order's own count.
            Err(e) if e.is_unreadable() => false,
            Err(_) if outage => env.budget.await_verdict(verdict).await,
            Err(_) => verdict.service_wide,
        };
        if outage && service_wide && Instant::now() < hold_until {
            tracing::debug!("PhonePe is failing for every order; retrying in place");
            continue;
        }
        return Ok((answer, service_wide));
    }
}

/// A permit from the budget that may be spent now: if calls were paused after it was granted
/// (another call met a 429 or a dead PhonePe), it is not spent: wait out a short pause and ask
/// again, or give the order back for a long one.
async fn permit(env: &Env, wiring: &Wiring, index: usize, order: &Order) -> Result<Permit, Outcome> {
    loop {
        let permit = match acquire(wiring).await {
            Some((_, Ok(permit))) => {
                metrics::histogram!(names::RATE_LIMIT_WAIT).record(permit.waited().as_secs_f64());
                permit
            }
            Some((_, Err(paused))) => {
                return Err(release(
                    env,
                    &order.id,
                    order.status,
                    paused.until.saturating_duration_since(Instant::now()),
                    "CALLS_PAUSED",
                )
                .await)
            }
            None => return Err(release(env, &order.id, order.status, ACTOR_DOWN_RETRY, "RATE_LIMITER_DOWN").await),
        };
        if let Some(Injected::Delay(d)) = crate::fault::point_at("reconciler.before_call", index) {
            tokio::time::sleep(d).await;
        }
        // Right before sending: the permit may predate a pause.
        match env.budget.paused_until() {
            None => return Ok(permit),
            Some(until) if until.saturating_duration_since(Instant::now()) > WAIT_AT_MOST => {
                return Err(release(
                    env,
                    &order.id,
                    order.status,
                    until.saturating_duration_since(Instant::now()),
                    "CALLS_PAUSED",
                )
                .await)
            }
            Some(_) => continue, // a short pause: `acquire` waits it out
        }
    }
}

fn log_decision(d: &Decision) {
    match d {
        Decision::Retry { after, error, tally } => {
            tracing::warn!(error = %error, retry_in_secs = after.as_secs(), counted = ?tally, "PhonePe could not answer; nothing changes, retrying later")
        }
        Decision::GiveUp { reason, error } => {
            tracing::error!(error = %error.excerpt(), reason = reason.as_str(), "PhonePe's answers about this order stay unusable; parking it for a person")
        }
        Decision::PauseCalls { after, error } => {
            tracing::error!(error = %error, pause_secs = after.as_secs(), "PhonePe rejected the request: configuration error; pausing calls")
        }
        other => tracing::debug!(decision = ?other, "decided"),
    }
}
