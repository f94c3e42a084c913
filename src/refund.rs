//! Refunds through PhonePe, exactly once: asked for by `review resolve <id> refund`
//! (`src/review.rs`) or, for the reasons in `refunds.auto`, by the service itself; then polled
//! until PhonePe's answer is final. Every PhonePe call here takes a permit of the PhonePe budget
//! through [`permit`], the one place refunds touch it.
//!
//! The refund is recorded on the order (`store/refunds.rs`) **before** the call, under an id
//! derived from the order; a call that times out is simply asked again under the same id by
//! [`poll_due`] (PhonePe makes one refund per id). COMPLETED → `refunded`; FAILED → parked again
//! (`paid`, reason `refund_failed`). Stock never moves on a refund.

use std::time::Duration;

use mongodb::bson::{DateTime, Document};

use crate::actors::Budget;
use crate::phonepe::client::{RefundRequest, RefundState};
use crate::phonepe::PhonePeClient;
use crate::store::fields::shop;
use crate::store::orders::plus;
use crate::store::refunds::PendingRefund;
use crate::store::{Store, StoreError};
use crate::telemetry::names;

/// Refunds polled (and auto refunds begun) per pass, at most.
const PER_PASS: i64 = 20;

/// What a refund push ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Completed,
    Failed,
    /// PhonePe has it (or could not be asked): polled again later.
    Pending,
    /// Someone else finished it first.
    AlreadyFinished,
}

/// Everything a refund call needs.
#[derive(Clone, Copy)]
pub struct Refunder<'a> {
    pub store: &'a Store,
    pub phonepe: &'a PhonePeClient,
    pub budget: &'a Budget,
    pub poll_interval: Duration,
    /// Who finishes the refund (`store::orders::by`).
    pub by: &'static str,
}

/// One permit of the PhonePe budget for a refund call; `false` while calls are paused.
pub async fn permit(budget: &Budget) -> bool {
    budget.acquire().await.is_ok()
}

/// The paid amount of a parked order, in paise.
pub fn paid_amount(order: &Document) -> Option<i64> {
    match order.get(shop::AMOUNT)? {
        mongodb::bson::Bson::Int32(n) => Some(i64::from(*n)),
        mongodb::bson::Bson::Int64(n) => Some(*n),
        _ => None,
    }
    .filter(|a| *a > 0)
}

/// Record a refund of `order` and ask PhonePe for it. `Ok(None)` when the order is not a paid,
/// parked one (nothing written, nothing asked).
pub async fn start(r: &Refunder<'_>, order: &Document, note: Option<&str>) -> Result<Option<Pushed>, StoreError> {
    let Some(amount) = paid_amount(order) else {
        return Ok(None);
    };
    match r.store.begin_refund(order, amount, r.by, note, DateTime::now()).await? {
        Some(p) => Ok(Some(push(r, &p).await?)),
        None => Ok(None),
    }
}

/// One step of a recorded refund: ask for it (first, or again after no answer) or ask its status.
pub async fn push(r: &Refunder<'_>, p: &PendingRefund) -> Result<Pushed, StoreError> {
    let later = plus(DateTime::now(), r.poll_interval);
    if !permit(r.budget).await {
        r.store.refund_later(p, later).await?;
        return Ok(Pushed::Pending);
    }
    let answer = if p.accepted {
        r.phonepe.refund_status(&p.refund_id).await
    } else {
        let req = RefundRequest {
            refund_id: &p.refund_id,
            original: &p.merchant_transaction_id,
            amount: p.amount,
            callback_url: "",
        };
        r.phonepe.refund(&req).await
    };
    let state = match answer {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e.excerpt(), "PhonePe could not be asked about a refund; asking again later under the same id");
            r.store.refund_later(p, later).await?;
            return Ok(Pushed::Pending);
        }
    };
    finish(r, p, state, later).await
}

async fn finish(
    r: &Refunder<'_>,
    p: &PendingRefund,
    state: RefundState,
    later: DateTime,
) -> Result<Pushed, StoreError> {
    let now = DateTime::now();
    let (done, result) = match state {
        RefundState::Pending => {
            r.store.refund_accepted(p, later).await?;
            return Ok(Pushed::Pending);
        }
        RefundState::Completed => (r.store.finish_refund(p, true, r.by, now).await?, Pushed::Completed),
        RefundState::Failed => (r.store.finish_refund(p, false, r.by, now).await?, Pushed::Failed),
    };
    if !done {
        return Ok(Pushed::AlreadyFinished);
    }
    let label = if result == Pushed::Completed {
        "completed"
    } else {
        "failed"
    };
    metrics::counter!(names::REFUNDS, "result" => label).increment(1);
    if result == Pushed::Failed {
        tracing::error!(refund_id = %p.refund_id, "PhonePe failed a refund; the order is parked again (refund_failed)");
    }
    Ok(result)
}

/// One pass: auto refunds (`refunds.auto`) begun, then every due refund pushed one step.
pub async fn poll_due(r: &Refunder<'_>, auto: &[String]) -> Result<usize, StoreError> {
    let mut stepped = 0;
    for order in r.store.auto_refundable(auto, PER_PASS).await? {
        stepped += usize::from(start(r, &order, Some("refunds.auto")).await?.is_some());
    }
    for p in r.store.due_refunds(DateTime::now(), PER_PASS).await? {
        push(r, &p).await?;
        stepped += 1;
    }
    let pending = r.store.count_pending_refunds().await?;
    metrics::gauge!(names::REFUNDS_PENDING).set(pending as f64);
    let age = r.store.oldest_pending_refund().await?.map_or(0, |t| {
        (DateTime::now().timestamp_millis() - t.timestamp_millis()).max(0) / 1000
    });
    metrics::gauge!(names::REFUND_OLDEST_PENDING).set(age as f64);
    Ok(stepped)
}

/// The service's refund poller: a pass every `poll_interval` until the process ends.
pub async fn poll_forever(env: std::sync::Arc<crate::actors::Env>) {
    let r = Refunder {
        store: &env.store,
        phonepe: &env.phonepe,
        budget: &env.budget,
        poll_interval: env.settings.refunds.poll_interval,
        by: crate::store::orders::by::RECONCILER,
    };
    loop {
        if let Err(e) = poll_due(&r, &env.settings.refunds.auto).await {
            tracing::warn!(error = %e, "refund poll failed; trying again next interval");
        }
        tokio::time::sleep(r.poll_interval).await;
    }
}
