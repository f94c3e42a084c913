//! The one path from a decision to the database: commit (confirm and deduct stock), park for
//! review, cancel, reschedule or retry (docs/architecture.md, "Order lifecycle"). The
//! StockCommitter, `check --apply` and the webhook all settle through [`settle`], so they cannot
//! disagree; [`Settler::by`] is who the history names. A completed payment for an order that
//! already left `draft` unpaid is recorded through [`record_late_payment`], the one path for it.

use std::time::Duration;

use mongodb::bson::{Bson, DateTime};

use crate::domain::decision::{watch_recheck, Tally, LATE_PAYMENT_RECHECK};
use crate::domain::{Decision, Order, OrderError, Outcome, PaymentStatus, Policy, ReviewReason, Status};
use crate::store::commit::confirm_transition;
use crate::store::orders::{plus, Recheck};
use crate::store::payments::{LeftDraft, PaymentSeen};
use crate::store::refusals::{Facts, Refused};
use crate::store::{Author, By, CommitOutcome, Lease, Store, StoreError, StrategyChoice, Transition};
use crate::telemetry::{labels, names};

/// What settling needs: the store, how to commit, who holds the lease, and the policy.
#[derive(Clone, Copy)]
pub struct Settler<'a> {
    pub store: &'a Store,
    pub strategy: StrategyChoice,
    /// This process's lease owner id.
    pub owner: &'a str,
    pub lease_ttl: Duration,
    pub policy: &'a Policy,
    /// Author settles (`store::by`): recorded in every history entry written.
    pub by: By,
}

fn count(o: Outcome) -> Outcome {
    if o.is_settlement() {
        metrics::counter!(names::ORDERS_SETTLED, labels::OUTCOME => o.as_str()).increment(1);
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

/// What the decision knows about the payment, for a park after refused writes.
fn facts(order: &Order, decision: &Decision) -> Facts {
    match decision {
        Decision::Commit { .. } => Facts {
            payment: Some(PaymentStatus::Paid),
            paid_amount: Some(order.amount.0),
        },
        Decision::Review {
            payment_status,
            paid_amount,
            ..
        } => Facts {
            payment: Some(*payment_status),
            paid_amount: *paid_amount,
        },
        Decision::Cancel { payment_status, .. } => Facts {
            payment: Some(*payment_status),
            paid_amount: None,
        },
        _ => Facts::default(),
    }
}

/// The path of one decision into the database. A write the database refuses for this order's
/// document is counted, and at the cap the order is parked `unwritable_order` (see
/// `store/refusals.rs`); any other database error is returned (nothing changed, or a journal
/// commit recovery finishes).
pub async fn settle(env: &Settler<'_>, order: &Order, decision: Decision) -> Result<Outcome, StoreError> {
    let facts = facts(order, &decision);
    match settle_once(env, order, decision).await {
        Err(e) if e.is_refusal() => refused(env, &order.id, order.status, &e.refusal_excerpt("settle"), facts).await,
        other => other,
    }
}

/// A write refused for this order (`error`, an excerpt): counted against it, parked at the cap.
pub(crate) async fn refused(
    env: &Settler<'_>,
    id: &Bson,
    status: Status,
    error: &str,
    facts: Facts,
) -> Result<Outcome, StoreError> {
    let word = Bson::String(env.store.schema().orders.status_values.word(status).to_string());
    Ok(
        match env.store.refused(id, &word, Some(env.owner), error, facts).await? {
            Refused::Counted(_) | Refused::Excluded => Outcome::Retried,
            Refused::Parked => Outcome::NeedsReview,
            Refused::Gone => count(Outcome::AlreadyProcessed),
        },
    )
}

async fn settle_once(env: &Settler<'_>, order: &Order, decision: Decision) -> Result<Outcome, StoreError> {
    let now = DateTime::now();
    let outcome = match decision {
        Decision::Commit { code, transaction_id } => {
            // `decide` commits only when PhonePe reported exactly the order's amount paid to us:
            // recorded as `paidAmount` if the commit parks the order (short stock).
            let t = confirm_transition(&code, transaction_id)
                .by(env.by)
                .paid(Some(order.amount.0));
            commit(env, order, t, now).await?
        }
        Decision::Review {
            reason,
            payment_status,
            code,
            transaction_id,
            paid_amount,
        } => {
            tracing::warn!(reason = reason.as_str(), "parking order as needs_review");
            let t = Transition::new(
                order.status,
                Status::NeedsReview,
                payment_status,
                reason,
                code,
                transaction_id,
            )
            .by(env.by)
            .paid(paid_amount);
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
            )
            .by(env.by);
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
            let matched = env
                .store
                .reschedule(
                    &order.id,
                    env.owner,
                    Recheck::new(
                        order.status,
                        plus(now, jitter_unless_watched(order.status, after)),
                        &code,
                    ),
                    now,
                )
                .await?;
            held(matched, Outcome::Rescheduled)
        }
        Decision::Retry { after, error, tally } => retry(env, order, after, &error, tally, now).await?,
        Decision::PauseCalls { after, error } => retry(env, order, after, &error, Tally::Service, now).await?,
        Decision::GiveUp { reason, error } => {
            tracing::error!(reason = reason.as_str(), error = %error.excerpt(), "PhonePe's answers about this order stay unusable; parking it as needs_review");
            let mut t = Transition::new(
                order.status,
                Status::NeedsReview,
                PaymentStatus::Pending,
                reason,
                error.code(),
                None,
            )
            .by(env.by);
            t.last_error = Some(error.excerpt());
            guarded(env, order, &t, now).await?
        }
        Decision::RecordPayment {
            code,
            transaction_id,
            paid_amount,
        } => {
            let seen = PaymentSeen {
                code,
                transaction_id,
                paid_amount,
            };
            let target = LeftDraft::of_order(order, env.store.schema());
            if record_late_payment(env.store, &target, &seen, env.by.into()).await? {
                Outcome::NeedsReview
            } else {
                Outcome::AlreadyProcessed
            }
        }
        Decision::StopWatching => {
            let end = plus(now, env.policy.late_payment_watch);
            let matched = env
                .store
                .reschedule(
                    &order.id,
                    env.owner,
                    Recheck::new(order.status, end, "WATCH_ENDED"),
                    now,
                )
                .await?;
            held(matched, Outcome::Rescheduled)
        }
    };
    tracing::info!(outcome = outcome.as_str(), "order reconciled");
    Ok(count(outcome))
}

/// Record a completed payment PhonePe reports for an order that left `draft` without one
/// (`store::payments`), by whoever saw it (`by`): counted in `reconciler_late_payments_total`
/// and logged for a person. `false` when the order changed meanwhile (nothing written).
pub async fn record_late_payment(
    store: &Store,
    target: &LeftDraft,
    seen: &PaymentSeen,
    by: Author<'_>,
) -> Result<bool, StoreError> {
    let recorded = store.record_payment(target, seen, by, DateTime::now()).await?;
    if recorded {
        metrics::counter!(names::LATE_PAYMENTS).increment(1);
        tracing::error!(
            from = target.status.as_str(),
            code = %seen.code,
            paid = ?seen.paid_amount,
            by = by.by.as_str(),
            "PhonePe reports a payment for an order that had left draft unpaid: recorded and parked \
             as needs_review for a person to refund or fulfil"
        );
    }
    Ok(recorded)
}

/// No status change after a PhonePe error: due again after `after` (with jitter), the error's
/// excerpt kept, and the order's counter of that kind of failure (`tally`) incremented.
async fn retry(
    env: &Settler<'_>,
    order: &Order,
    after: Duration,
    error: &crate::domain::StatusError,
    tally: Tally,
    now: DateTime,
) -> Result<Outcome, StoreError> {
    let (code, excerpt) = (error.code(), error.excerpt());
    let next = plus(now, jitter(after));
    let recheck = Recheck::new(order.status, next, &code).after_error(&excerpt, tally);
    let matched = env.store.reschedule(&order.id, env.owner, recheck, now).await?;
    Ok(held(matched, Outcome::Retried))
}

/// A reschedule is guarded by the status and our lease: when it matched nothing, the order was
/// settled or taken meanwhile and nothing was written (`Released`), whatever was meant.
fn held(matched: bool, outcome: Outcome) -> Outcome {
    if matched {
        return outcome;
    }
    tracing::info!("order changed under us or our lease was lost; nothing rescheduled");
    Outcome::Released
}

async fn guarded(env: &Settler<'_>, order: &Order, t: &Transition, now: DateTime) -> Result<Outcome, StoreError> {
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

async fn commit(env: &Settler<'_>, order: &Order, t: Transition, now: DateTime) -> Result<Outcome, StoreError> {
    let lease = Lease {
        owner: env.owner,
        ttl: env.lease_ttl,
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
        // The database refused this order's document: `settle` counts it (nothing changed).
        Err(e) if e.is_refusal() => return Err(e),
        Err(e) => {
            metrics::counter!(names::STOCK_COMMIT_FAILURES, labels::REASON => labels::commit_failure::DATABASE)
                .increment(1);
            if env.strategy == StrategyChoice::Journal {
                // The saga may have moved stock: its journal says how far, and the recovery pass
                // finishes it (forward, or back) once the lease expires.
                tracing::error!(error = %e, "stock commit stopped; an order left committing is finished from its journal by the recovery pass, a draft is retried");
            } else {
                tracing::error!(error = %e, "stock commit failed; the transaction changed nothing, the order will be retried");
            }
            // Best effort: bring it back soon. If this write fails too, the lease expires.
            let _ = env
                .store
                .reschedule(
                    &order.id,
                    env.owner,
                    Recheck::new(
                        Status::Draft,
                        plus(now, jitter(Duration::from_secs(30))),
                        "COMMIT_ERROR",
                    ),
                    now,
                )
                .await;
            return Err(e);
        }
    };
    let reason = parked
        .review_reason()
        .unwrap_or(ReviewReason::InsufficientStock)
        .as_str();
    let product = parked.product().unwrap_or_default().to_string();
    metrics::counter!(names::STOCK_COMMIT_FAILURES, labels::REASON => reason).increment(1);
    if let CommitOutcome::Unwritable { parked, .. } = parked {
        // The journal's confirmation was refused: its deductions were restored first.
        if parked {
            tracing::error!(error = %product, "the database refused the order's confirmation; stock restored, parked as needs_review (unwritable_order)");
            return Ok(Outcome::NeedsReview);
        }
        tracing::error!(error = %product, "the database refused the order's confirmation and its park; stock restored, order excluded until its document is fixed");
        return Ok(Outcome::Retried);
    }
    // Both strategies have already parked the order as needs_review, with nothing deducted.
    tracing::warn!(reason, product = %product, "paid order cannot be fulfilled; nothing deducted, parked as needs_review");
    Ok(Outcome::NeedsReview)
}

/// Park an order whose document cannot be reconciled (a field is missing or wrong); its
/// `paymentStatus` is left as the shop wrote it.
pub async fn park_invalid(
    env: &Settler<'_>,
    id: &Bson,
    status: Status,
    error: &OrderError,
) -> Result<Outcome, StoreError> {
    let t = Transition::new(
        status,
        Status::NeedsReview,
        PaymentStatus::Pending,
        ReviewReason::InvalidOrder,
        error.to_string(),
        None,
    )
    .by(env.by);
    let won = match env.store.park_invalid(id, &t, DateTime::now()).await {
        Ok(won) => won,
        Err(e) if e.is_refusal() => {
            tracing::error!(order_id = %id, problem = %error, "order document is invalid, and the database refused its park");
            return refused(
                env,
                id,
                status,
                &e.refusal_excerpt("park invalid order"),
                Facts::default(),
            )
            .await;
        }
        Err(e) => return Err(e),
    };
    if won {
        tracing::error!(order_id = %id, problem = %error, "order document is invalid; parked as needs_review");
    } else {
        tracing::info!(order_id = %id, "invalid order was settled by someone else first");
    }
    Ok(count(if won {
        Outcome::NeedsReview
    } else {
        Outcome::AlreadyProcessed
    }))
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
