//! OrderReconciler: one order at a time, top to bottom.
//!
//! permit from the RateLimiter → PhonePe status → `decide` → StockCommitter. The reconciler
//! itself writes nothing; if anything between the claim and the committer fails (an actor died,
//! calls are paused), the order is given back — its lease expires, or it is rescheduled — and a
//! later scan claims it again. The slot permit that came with the order is dropped when the work
//! ends, however it ends (a panic drops it too), which is what frees this reconciler for the
//! scanner.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use mongodb::bson::DateTime;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::committer::{ParkInvalid, Settle};
use super::rate_limiter::{Acquire, CallResult, Report};
use super::supervisor::ChildGuard;
use super::{Env, Outcome, Wiring};
use crate::domain::{decide, Decision, Order, StatusError, StatusReport};
use crate::store::orders::plus;
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
    _guard: ChildGuard,
}

impl OrderReconciler {
    pub fn new(env: Arc<Env>, wiring: Arc<Wiring>, guard: ChildGuard) -> OrderReconciler {
        OrderReconciler {
            env,
            wiring,
            _guard: guard,
        }
    }
}

impl Actor for OrderReconciler {
    type Context = Context<Self>;
}

impl Handler<Reconcile> for OrderReconciler {
    type Result = ResponseActFuture<Self, Outcome>;

    fn handle(&mut self, msg: Reconcile, _: &mut Self::Context) -> Self::Result {
        crate::fault::point("reconciler.reconcile");
        let (env, wiring) = (self.env.clone(), self.wiring.clone());
        let span = tracing::info_span!("order", merchantTransactionId = %msg.order.log_id());
        let slot = msg.slot;
        Box::pin(
            async move {
                let outcome = reconcile(&env, &wiring, msg.order).await;
                drop(slot);
                outcome
            }
            .instrument(span)
            .into_actor(self),
        )
    }
}

/// The path of one order.
pub async fn reconcile(env: &Env, wiring: &Wiring, claimed: Claimed) -> Outcome {
    let order = match claimed {
        Claimed::Valid(order) => order,
        Claimed::Invalid { id, status, error, .. } => {
            let Some(committer) = wiring.committer() else {
                return Outcome::Released;
            };
            return match committer.send(ParkInvalid { id, status, error }).await {
                Ok(Ok(o)) => o,
                _ => Outcome::Retried,
            };
        }
    };
    // 1. A permit from the PhonePe budget (FIFO; may wait).
    let Some(limiter) = wiring.rate_limiter() else {
        return Outcome::Released;
    };
    match limiter.send(Acquire).await {
        Ok(Ok(waited)) => metrics::histogram!(names::RATE_LIMIT_WAIT).record(waited.as_secs_f64()),
        Ok(Err(paused)) => return give_back(env, &order, paused.until).await,
        // The RateLimiter died while we waited: the supervisor restarts it; the lease brings the
        // order back.
        Err(_) => return Outcome::Released,
    }
    if let Some(d) = crate::fault::delay("reconciler.before_call") {
        tokio::time::sleep(d).await;
    }
    // 2. Ask PhonePe.
    let answer = ask_phonepe(env, &order).await;
    limiter.do_send(Report(call_result(&answer)));
    // 3. Decide.
    let decision = decide(&order, &answer, DateTime::now(), &env.policy);
    log_decision(&decision);
    // 4. Settle, through the one writer.
    let Some(committer) = wiring.committer() else {
        return Outcome::Released;
    };
    match committer.send(Settle { order, decision }).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not settle the order now; it will be retried");
            Outcome::Retried
        }
        Err(_) => {
            tracing::warn!("the committer stopped before answering; the order's lease will bring it back");
            Outcome::Released
        }
    }
}

async fn ask_phonepe(env: &Env, order: &Order) -> Result<StatusReport, StatusError> {
    let started = Instant::now();
    let answer = env.phonepe.check_status(&order.merchant_transaction_id).await;
    metrics::histogram!(names::PHONEPE_REQUEST_DURATION).record(started.elapsed().as_secs_f64());
    let code = match &answer {
        Ok(r) => r.code.clone(),
        Err(e) => e.code(),
    };
    metrics::counter!(names::PHONEPE_REQUESTS, "code" => code).increment(1);
    match &answer {
        Ok(_) => {}
        Err(StatusError::RateLimited) => metrics::counter!(names::PHONEPE_RATE_LIMITED).increment(1),
        Err(e) => metrics::counter!(names::PHONEPE_API_ERRORS, "kind" => e.kind_label()).increment(1),
    }
    answer
}

fn call_result(answer: &Result<StatusReport, StatusError>) -> CallResult {
    match answer {
        Ok(_) => CallResult::Answered,
        Err(StatusError::RateLimited) => CallResult::RateLimited,
        Err(StatusError::Rejected { .. }) => CallResult::Rejected,
        Err(StatusError::Transient { .. }) => CallResult::Failed,
    }
}

fn log_decision(d: &Decision) {
    match d {
        Decision::Retry { after, error } => {
            tracing::warn!(error = %error, retry_in_secs = after.as_secs(), "PhonePe could not answer; nothing changes, retrying later")
        }
        Decision::PauseCalls { after, error } => {
            tracing::error!(error = %error, pause_secs = after.as_secs(), "PhonePe rejected the request: configuration error; pausing calls")
        }
        other => tracing::debug!(decision = ?other, "decided"),
    }
}

/// Calls are paused for a while: release the order until then, without a call.
async fn give_back(env: &Env, order: &Order, until: Instant) -> Outcome {
    let wait = until.saturating_duration_since(Instant::now());
    let now = DateTime::now();
    let _ = env
        .store
        .reschedule(
            &order.id,
            &env.owner,
            order.status,
            plus(now, wait),
            "CALLS_PAUSED",
            now,
        )
        .await;
    Outcome::Released
}
