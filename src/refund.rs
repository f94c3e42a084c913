//! Refunds through PhonePe, exactly once: asked for by `review resolve <id> refund`
//! (`src/review.rs`) or, for the reasons in `refunds.auto`, by the service itself; then polled
//! until PhonePe's answer is final. Every PhonePe call here takes a permit of the PhonePe budget
//! through [`permit`], the one place refunds touch it.
//!
//! Before anything is written PhonePe is asked what was paid: only a COMPLETED payment to our
//! merchant is refunded, and by the amount PhonePe reports (not the order's, which differs for
//! an `amount_mismatch`). The refund is recorded on the order (`store/refunds.rs`) **before** the call, under an id
//! derived from the order; a call that times out is simply asked again under the same id by
//! [`poll_due`] (PhonePe makes one refund per id). COMPLETED → `refunded`; FAILED → parked again
//! (`paid`, reason `refund_failed`, `paidAmount` kept). Stock never moves on a refund. Each call
//! about a recorded refund is claimed in the database first (`Store::claim_refund_poll`), so two
//! instances that find the same refund due spend one PhonePe permit between them, not two.

use std::time::Duration;

use mongodb::bson::{DateTime, Document};

use crate::actors::Budget;
use crate::domain::MerchantTransactionId;
use crate::phonepe::client::{RefundRequest, RefundState};
use crate::phonepe::PhonePeClient;
use crate::store::orders::plus;
use crate::store::refunds::PendingRefund;
use crate::store::{Store, StoreError};
use crate::telemetry::{labels, names};

/// Refunds polled (and auto refunds begun) per pass, at most.
const PER_PASS: i64 = 20;

/// What a refund push ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Nothing recorded: PhonePe did not confirm a completed payment to refund (the reason).
    Unverified(String),
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

/// What PhonePe says was paid for `mtid` to our merchant, in paise: the amount a refund gives
/// back (for an `amount_mismatch` it differs from the order's). `Err` says why there is none.
pub async fn verified_paid(r: &Refunder<'_>, mtid: &str) -> Result<i64, String> {
    let id = MerchantTransactionId::parse(mtid).map_err(|e| format!("the id is not one PhonePe takes: {e}"))?;
    if !permit(r.budget).await {
        return Err("PhonePe calls are paused (the budget); try again shortly".into());
    }
    let report = r
        .phonepe
        .check_status(&id)
        .await
        .map_err(|e| format!("PhonePe could not be asked for the payment: {}", e.excerpt()))?;
    crate::domain::decision::paid_to(&report, r.phonepe.merchant_id()).ok_or_else(|| {
        format!(
            "PhonePe does not report a completed payment to this merchant (code {})",
            report.code
        )
    })
}

/// Record a refund of `order` (of the amount PhonePe reports paid) and ask PhonePe for it.
/// `Ok(None)` when the order is not a paid, parked one: nothing written, nothing asked.
pub async fn start(r: &Refunder<'_>, order: &Document, note: Option<&str>) -> Result<Option<Pushed>, StoreError> {
    let mtid = crate::schema::get_path(order, &r.store.schema().orders.id)
        .and_then(mongodb::bson::Bson::as_str)
        .unwrap_or_default();
    let amount = match verified_paid(r, mtid).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(problem = %why, "refund not started: the payment is not verified");
            return Ok(Some(Pushed::Unverified(why)));
        }
    };
    match r.store.begin_refund(order, amount, r.by, note, DateTime::now()).await? {
        Some(p) => Ok(Some(push(r, &p).await?)),
        None => Ok(None),
    }
}

/// One step of a recorded refund: ask for it (first, or again after no answer) or ask its status.
/// The step is claimed first (`nextPollAt` moved on, guarded by the value read): when another
/// instance claimed it, nothing is asked here and the refund stays pending. The claim is also
/// the next poll's schedule, so a step that cannot ask PhonePe now writes nothing more.
pub async fn push(r: &Refunder<'_>, p: &PendingRefund) -> Result<Pushed, StoreError> {
    let later = plus(DateTime::now(), r.poll_interval);
    if !r.store.claim_refund_poll(p, later).await? {
        tracing::debug!(refund_id = %p.refund_id, "another instance is asking PhonePe about this refund");
        return Ok(Pushed::Pending);
    }
    if !permit(r.budget).await {
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
        labels::refund_result::COMPLETED
    } else {
        labels::refund_result::FAILED
    };
    metrics::counter!(names::REFUNDS, labels::RESULT => label).increment(1);
    if result == Pushed::Failed {
        tracing::error!(refund_id = %p.refund_id, "PhonePe failed a refund; the order is parked again (refund_failed)");
    }
    Ok(result)
}

/// One pass: auto refunds (`refunds.auto`) begun, then every due refund pushed one step.
pub async fn poll_due(r: &Refunder<'_>, auto: &[String]) -> Result<usize, StoreError> {
    let mut stepped = 0;
    for order in r.store.auto_refundable(auto, PER_PASS).await? {
        let started = start(r, &order, Some("refunds.auto")).await?;
        stepped += usize::from(matches!(started, Some(p) if !matches!(p, Pushed::Unverified(_))));
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
