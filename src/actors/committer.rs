//! StockCommitter: the one writer of order and stock state.
//!
//! It receives a decision for an order and makes it true in MongoDB exactly once: commit (confirm
//! and deduct stock atomically), park for review, cancel, or reschedule. A retry after a PhonePe
//! error also increments the order's counter of that kind of failure (`Tally`) and keeps the
//! error's secret-free excerpt in `reconciliation.lastError`; giving up on unusable answers parks
//! the order as `needs_review` with that excerpt. Every status change is
//! guarded by the status the reconciler saw, so when the webhook (or another instance) got there
//! first the answer is `AlreadyProcessed` and nothing is written. Each `Settle` runs as its own
//! future (`ResponseFuture`): commits of different orders overlap, and MongoDB's guards and
//! transactions — not a lock in this process — keep them correct, which also holds across
//! several processes.
//!
//! Fault points (feature `fault-injection`): `committer.started`; `committer.settle` on receipt
//! (`panic`, `stop`, `error` = the write fails, `delay<ms>` = a slow or hung database);
//! `committer.settled` after the write and before the answer (`panic` = the committer dies
//! between writing and answering — the reconciler never hears back and hands the order back, and
//! the next check finds it already settled; `delay<ms>` = a slow answer).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mongodb::bson::{Bson, DateTime};
use tracing::Instrument;

use super::child::ChildGuard;
use super::{Env, Outcome};
use crate::domain::decision::{review, watch_recheck, LATE_PAYMENT_RECHECK};
use crate::domain::{Decision, Order, OrderError, PaymentStatus, Status};
use crate::fault::Injected;
use crate::store::commit::confirm_transition;
use crate::store::orders::plus;
use crate::store::{CommitOutcome, Lease, StoreError, Transition};
use crate::telemetry::names;

/// Make `decision` true for `order`.
#[derive(Message)]
#[rtype(result = "Result<Outcome, StoreError>")]
pub struct Settle {
    pub order: Order,
    pub decision: Decision,
}

/// Park an order whose document cannot be reconciled (a field is missing or wrong). Its
/// `paymentStatus` is left as the shop wrote it.
#[derive(Message)]
#[rtype(result = "Result<Outcome, StoreError>")]
pub struct ParkInvalid {
    pub id: Bson,
    pub status: Status,
    pub error: OrderError,
}

pub struct StockCommitter {
    env: Arc<Env>,
    _guard: ChildGuard,
}

impl StockCommitter {
    pub fn new(env: Arc<Env>, guard: ChildGuard) -> StockCommitter {
        StockCommitter { env, _guard: guard }
    }
}

impl Actor for StockCommitter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if crate::fault::point("committer.started") == Some(Injected::Stop) {
            ctx.stop();
        }
    }
}

/// Die now (fault injection: the committer crashed while a settle was being answered).
#[derive(Message)]
#[rtype(result = "()")]
struct Crash(String);

impl Handler<Crash> for StockCommitter {
    type Result = ();

    fn handle(&mut self, msg: Crash, _: &mut Self::Context) {
        panic!("{}", msg.0);
    }
}

impl Handler<Settle> for StockCommitter {
    type Result = ResponseFuture<Result<Outcome, StoreError>>;

    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) -> Self::Result {
        let injected = crate::fault::point("committer.settle");
        if injected == Some(Injected::Stop) {
            ctx.stop();
        }
        let env = self.env.clone();
        let me = ctx.address();
        let span = tracing::info_span!("order", merchantTransactionId = %msg.order.merchant_transaction_id);
        Box::pin(
            async move {
                match injected {
                    Some(Injected::Error | Injected::Stop) => {
                        return Err(StoreError::Unsupported("fault injected at committer.settle".into()))
                    }
                    Some(Injected::Delay(d)) => tokio::time::sleep(d).await,
                    None => {}
                }
                // Work on an order must end within its lease; past that, give it back.
                let limit = env.settings.job.lease_ttl;
                let result = match tokio::time::timeout(limit, settle(&env, &msg.order, msg.decision)).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Timeout {
                        op: "settle order",
                        secs: limit.as_secs(),
                    }),
                };
                after_settle(&me).await;
                result
            }
            .instrument(span),
        )
    }
}

/// The `committer.settled` fault point. This future runs detached from the actor, so a panic here
/// alone would only lose the answer; take the actor down with it, as a real crash would.
async fn after_settle(me: &Addr<StockCommitter>) {
    match std::panic::catch_unwind(|| crate::fault::point("committer.settled")) {
        Ok(Some(Injected::Delay(d))) => tokio::time::sleep(d).await,
        Ok(_) => {}
        Err(panic) => {
            me.do_send(Crash("fault injected at committer.settled".into()));
            std::panic::resume_unwind(panic);
        }
    }
}

impl Handler<ParkInvalid> for StockCommitter {
    type Result = ResponseFuture<Result<Outcome, StoreError>>;

    fn handle(&mut self, msg: ParkInvalid, _: &mut Self::Context) -> Self::Result {
        let env = self.env.clone();
        Box::pin(async move {
            let t = Transition::new(
                msg.status,
                Status::NeedsReview,
                PaymentStatus::Pending,
                review::INVALID_ORDER,
                msg.error.to_string(),
                None,
            );
            tracing::error!(order_id = %msg.id, problem = %msg.error, "order document is invalid; parked as needs_review");
            let won = env.store.park_invalid(&msg.id, &t, DateTime::now()).await?;
            Ok(count(if won {
                Outcome::NeedsReview
            } else {
                Outcome::AlreadyProcessed
            }))
        })
    }
}

fn count(o: Outcome) -> Outcome {
    if o.is_settlement() {
        metrics::counter!(names::ORDERS_SETTLED, "outcome" => o.as_str()).increment(1);
    }
    o
}

/// Add up to 20 % jitter so orders that failed together do not come back together.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.2)
}

/// Jitter, except for a late-payment watch (a cancelled order): it keeps its exact schedule, so
/// its last check lands inside the window.
fn jitter_unless_watched(status: Status, d: Duration) -> Duration {
    if status == Status::Cancelled {
        d
    } else {
        jitter(d)
    }
}

/// The path of one decision into the database.
pub async fn settle(env: &Env, order: &Order, decision: Decision) -> Result<Outcome, StoreError> {
    let now = DateTime::now();
    let outcome = match decision {
        Decision::Commit { code, transaction_id } => {
            commit(env, order, confirm_transition(&code, transaction_id), now).await?
        }
        Decision::Review {
            reason,
            payment_status,
            code,
            transaction_id,
        } => {
            if reason == review::PAID_AFTER_CANCEL {
                metrics::counter!(names::LATE_PAYMENTS).increment(1);
                tracing::error!(
                    "PhonePe reports a payment for an order we cancelled: parking it as needs_review \
                     (paid_after_cancel) for a person to refund or fulfil"
                );
            } else {
                tracing::warn!(reason, "parking order as needs_review");
            }
            let t = Transition::new(
                order.status,
                Status::NeedsReview,
                payment_status,
                reason,
                code,
                transaction_id,
            );
            guarded(env, order, &t, now).await?
        }
        Decision::Cancel {
            reason,
            payment_status,
            code,
            transaction_id,
        } => {
            let mut t = Transition::new(
                order.status,
                Status::Cancelled,
                payment_status,
                reason,
                code,
                transaction_id,
            );
            if payment_status == PaymentStatus::Pending {
                // Watched for a late payment: the first re-check is the schedule's first wait
                // (15 min) after the cancellation; `decide_watch` sets the later ones.
                let window = env.policy.late_payment_watch;
                let first = watch_recheck(Duration::ZERO, window).unwrap_or(LATE_PAYMENT_RECHECK);
                t.next_check_at = Some(plus(now, first));
            }
            guarded(env, order, &t, now).await?
        }
        Decision::Reschedule { after, code } => {
            env.store
                .reschedule(
                    &order.id,
                    &env.owner,
                    order.status,
                    plus(now, jitter_unless_watched(order.status, after)),
                    &code,
                    now,
                )
                .await?;
            Outcome::Rescheduled
        }
        Decision::Retry { after, error, tally } => retry(env, order, after, &error, tally.field(), now).await?,
        Decision::PauseCalls { after, error } => retry(env, order, after, &error, None, now).await?,
        Decision::GiveUp { reason, error } => {
            tracing::error!(reason, error = %error.excerpt(), "PhonePe's answers about this order stay unusable; parking it as needs_review");
            let mut t = Transition::new(
                order.status,
                Status::NeedsReview,
                PaymentStatus::Pending,
                reason,
                error.code(),
                None,
            );
            t.last_error = Some(error.excerpt());
            guarded(env, order, &t, now).await?
        }
        Decision::StopWatching => {
            let end = plus(now, env.policy.late_payment_watch);
            env.store
                .reschedule(&order.id, &env.owner, order.status, end, "WATCH_ENDED", now)
                .await?;
            Outcome::Rescheduled
        }
    };
    tracing::info!(outcome = outcome.as_str(), "order reconciled");
    Ok(count(outcome))
}

/// No status change after a PhonePe error: due again after `after` (with jitter), the error's
/// excerpt kept, and the order's counter of that kind of failure (`count`) incremented.
async fn retry(
    env: &Env,
    order: &Order,
    after: Duration,
    error: &crate::domain::StatusError,
    count: Option<&str>,
    now: DateTime,
) -> Result<Outcome, StoreError> {
    env.store
        .reschedule_after_error(
            &order.id,
            &env.owner,
            order.status,
            plus(now, jitter(after)),
            &error.code(),
            &error.excerpt(),
            count,
            now,
        )
        .await?;
    Ok(Outcome::Retried)
}

async fn guarded(env: &Env, order: &Order, t: &Transition, now: DateTime) -> Result<Outcome, StoreError> {
    if env.store.transition(&order.id, t, now).await? {
        Ok(match t.to {
            Status::Cancelled => Outcome::Cancelled,
            Status::Confirmed => Outcome::Confirmed,
            _ => Outcome::NeedsReview,
        })
    } else {
        tracing::info!(
            from = t.from.as_str(),
            "order changed under us; someone else settled it"
        );
        Ok(Outcome::AlreadyProcessed)
    }
}

async fn commit(env: &Env, order: &Order, t: Transition, now: DateTime) -> Result<Outcome, StoreError> {
    let lease = Lease {
        owner: &env.owner,
        ttl: env.settings.job.lease_ttl,
        now,
    };
    let result = env.store.commit(env.strategy, order, &t, &lease).await;
    let parked = match result {
        Ok(CommitOutcome::Committed) => return Ok(Outcome::Confirmed),
        Ok(CommitOutcome::AlreadyProcessed) => {
            tracing::info!("order was settled by someone else; stock untouched");
            return Ok(Outcome::AlreadyProcessed);
        }
        Ok(parked) => parked,
        Err(e) => {
            metrics::counter!(names::STOCK_COMMIT_FAILURES, "reason" => "database").increment(1);
            tracing::error!(error = %e, "stock commit failed; nothing changed, the order will be retried");
            // Best effort: bring it back soon. If this write fails too, the lease expires.
            let _ = env
                .store
                .reschedule(
                    &order.id,
                    &env.owner,
                    Status::Draft,
                    plus(now, jitter(Duration::from_secs(30))),
                    "COMMIT_ERROR",
                    now,
                )
                .await;
            return Err(e);
        }
    };
    let reason = parked.review_reason().unwrap_or(review::INSUFFICIENT_STOCK);
    let product = parked.product().unwrap_or_default().to_string();
    // Both strategies have already parked the order as needs_review, with nothing deducted.
    metrics::counter!(names::STOCK_COMMIT_FAILURES, "reason" => reason).increment(1);
    tracing::warn!(reason, product = %product, "paid order cannot be fulfilled; nothing deducted, parked as needs_review");
    Ok(Outcome::NeedsReview)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_keep_their_exact_schedule_and_drafts_get_jitter() {
        let d = Duration::from_secs(1000);
        for _ in 0..50 {
            assert_eq!(jitter_unless_watched(Status::Cancelled, d), d);
            let j = jitter_unless_watched(Status::Draft, d);
            assert!(j >= d && j <= d.mul_f64(1.2), "{j:?}");
        }
        assert!((0..50).any(|_| jitter_unless_watched(Status::Draft, d) != d));
    }
}
