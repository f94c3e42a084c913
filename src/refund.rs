//! Refunds through PhonePe, exactly once and always to an end (docs/operations.md, "Refunds"):
//! asked for by `review resolve <id> refund` or, for the reasons in `refunds.auto`, by the service,
//! then stepped until PhonePe's answer is final. Only a COMPLETED payment to our merchant is
//! refunded, by the amount PhonePe reports; the refund is recorded on the order (`store/refunds.rs`)
//! before it is requested, under an id derived from the order and the attempt, and each step is
//! claimed in the database first. Every call goes through the gateway; stock never moves.

use std::time::Duration;

use mongodb::bson::{DateTime, Document};

use crate::domain::decision::{PENDING_RECHECK, RATE_LIMITED_PAUSE, REJECTED_PAUSE};
use crate::domain::{MerchantTransactionId, StatusError};
use crate::phonepe::client::{RefundRequest, RefundState};
use crate::phonepe::{CallError, Gateway};
use crate::store::orders::plus;
use crate::store::refunds::{AutoRefund, PendingRefund, Step};
use crate::store::{Author, By};
use crate::store::{Store, StoreError};
use crate::telemetry::{labels, names};

pub mod settings;

/// Refunds polled (and auto refunds begun) per pass, at most.
const PER_PASS: i64 = 20;
/// Asks about one refund without a final answer before it is flagged for a person.
pub const TRIES_TO_FLAG: u32 = 10;
/// The longest wait between two asks about one refund (and between automatic tries).
pub const REFUND_WAIT_MAX: Duration = Duration::from_secs(3600);
/// Tries of an automatic refund whose payment PhonePe does not confirm, before it stops.
pub const AUTO_REFUND_TRIES: u32 = 6;

/// How long after its `tries`-th unanswered ask a refund is asked about again: the poll
/// interval (`refunds.poll_interval_secs`) doubling with each ask, at most an hour. With the
/// default 60 s: 1, 2, 4, 8, 16, 32 min, then hourly; the 10th ask is about 5 h after the first.
pub fn refund_backoff(tries: u32, poll_interval: Duration) -> Duration {
    poll_interval.saturating_mul(1u32 << tries.min(20)).min(REFUND_WAIT_MAX)
}

/// How long after its `tries`-th try an automatic refund PhonePe did not confirm is tried again:
/// a minute (the tail of PhonePe's own schedule for asking about a payment) doubling, at most an
/// hour: 1, 2, 4, 8, 16 min, then it stops ([`AUTO_REFUND_TRIES`]).
pub fn auto_backoff(tries: u32) -> Duration {
    PENDING_RECHECK
        .saturating_mul(1u32 << tries.saturating_sub(1).min(20))
        .min(REFUND_WAIT_MAX)
}

/// Why no refund was recorded: PhonePe did not confirm a completed payment to this merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverified {
    /// No call was made (calls paused, the budget unreadable, an id PhonePe cannot take).
    NotAsked(String),
    /// PhonePe was asked and did not confirm a completed payment to us (or gave no usable answer).
    Unconfirmed(String),
}

impl Unverified {
    pub fn why(&self) -> &str {
        match self {
            Unverified::NotAsked(w) | Unverified::Unconfirmed(w) => w,
        }
    }
}

/// What a refund step ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Nothing recorded: PhonePe did not confirm a completed payment to refund.
    Unverified(Unverified),
    Completed,
    /// PhonePe answered FAILED: parked again (`refund_failed`).
    Failed,
    /// PhonePe (or the check before sending) refused the request, with this code: parked again
    /// (`refund_failed`).
    Refused(String),
    /// PhonePe has it (or could not be asked): stepped again later.
    Pending,
    /// Someone else finished it first.
    AlreadyFinished,
}

/// Everything a refund call needs.
#[derive(Clone, Copy)]
pub struct Refunder<'a> {
    pub store: &'a Store,
    pub phonepe: &'a Gateway,
    /// `refunds.poll_interval_secs`: the first wait of [`refund_backoff`].
    pub poll_interval: Duration,
    /// Author finishes the refund (`store::by`).
    pub by: By,
    /// The operator's name when a person asked for it (`review resolve`, the console).
    pub operator: Option<&'a str>,
}

impl Refunder<'_> {
    fn who(&self) -> Author<'_> {
        Author {
            by: self.by,
            operator: self.operator,
        }
    }
}

/// What PhonePe says was paid for `mtid` to our merchant, in paise: the amount a refund gives
/// back (for an `amount_mismatch` it differs from the order's). `Err` says why there is none.
pub async fn verified_paid(phonepe: &Gateway, mtid: &str) -> Result<i64, Unverified> {
    let id = MerchantTransactionId::parse(mtid)
        .map_err(|e| Unverified::NotAsked(format!("the id is not one PhonePe takes: {e}")))?;
    let report = match phonepe.status(&id).await {
        Ok(report) => report,
        Err(CallError::PhonePe(e)) => {
            return Err(Unverified::Unconfirmed(format!(
                "PhonePe could not be asked for the payment: {}",
                e.excerpt()
            )))
        }
        Err(no_call) => return Err(Unverified::NotAsked(no_call.to_string())),
    };
    crate::domain::decision::paid_to(&report, phonepe.merchant_id()).ok_or_else(|| {
        Unverified::Unconfirmed(format!(
            "PhonePe does not report a completed payment to this merchant (code {})",
            report.code
        ))
    })
}

/// Record a refund of `order` (of the amount PhonePe reports paid) and ask PhonePe for it.
/// `Ok(None)` when the order is not a paid, parked one (or its refund changed since it was
/// read): nothing written, nothing asked.
pub async fn start(r: &Refunder<'_>, order: &Document, note: Option<&str>) -> Result<Option<Pushed>, StoreError> {
    let mtid = crate::schema::get_path(order, &r.store.schema().orders.id)
        .and_then(mongodb::bson::Bson::as_str)
        .unwrap_or_default();
    let amount = match verified_paid(r.phonepe, mtid).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(problem = %why.why(), "refund not started: the payment is not verified");
            return Ok(Some(Pushed::Unverified(why)));
        }
    };
    match r
        .store
        .begin_refund(order, amount, r.who(), note, DateTime::now())
        .await?
    {
        Some(p) => Ok(Some(push(r, &p).await?)),
        None => Ok(None),
    }
}

/// One step of a recorded refund: request it (first, or again when PhonePe has none under its
/// id) or ask its status. The step is claimed first (`nextPollAt` moved on, guarded by the value
/// read): when another instance claimed it, nothing is asked here. The claim is also the next
/// step's schedule, so a step that cannot ask PhonePe now writes nothing more.
pub async fn push(r: &Refunder<'_>, p: &PendingRefund) -> Result<Pushed, StoreError> {
    let post = p.requests_next();
    let later = plus(DateTime::now(), refund_backoff(p.tries, r.poll_interval));
    if !r.store.claim_refund_poll(p, later, post).await? {
        tracing::debug!(refund_id = %p.refund_id, "another instance is asking PhonePe about this refund");
        return Ok(Pushed::Pending);
    }
    if let Some(d) = crate::fault::delay("refund.before_call") {
        tokio::time::sleep(d).await;
    }
    let answer = if post {
        let req = RefundRequest {
            refund_id: &p.refund_id,
            original: &p.merchant_transaction_id,
            amount: p.amount,
            callback_url: "",
        };
        r.phonepe.refund(&req).await
    } else {
        r.phonepe.refund_status(&p.refund_id, &p.merchant_transaction_id).await
    };
    let next = |at_least: Duration| {
        let wait = refund_backoff(p.tries.saturating_add(1), r.poll_interval).max(at_least);
        plus(DateTime::now(), wait)
    };
    let step = match answer {
        Ok(s @ (RefundState::Completed | RefundState::Failed)) => return finish(r, p, s, s.code()).await,
        Ok(RefundState::Pending) => (Step::Pending, next(Duration::ZERO)),
        // PhonePe never got the request: make it now, under the same id.
        Ok(RefundState::NotFound) if !p.accepted => (Step::Missing, DateTime::now()),
        Ok(RefundState::NotFound) => {
            let e = "PhonePe no longer finds a refund it accepted";
            return no_answer(r, p, "NOT_FOUND", e, next(Duration::ZERO)).await;
        }
        // No call was made: the claim already scheduled the next step.
        Err(CallError::Paused { .. } | CallError::NoPermitInTime(_)) => return Ok(Pushed::Pending),
        Err(CallError::PhonePe(StatusError::Refused { code, .. })) if post => {
            tracing::error!(refund_id = %p.refund_id, code = %code, "PhonePe refused the refund; the order is parked again (refund_failed)");
            let done = settle_refund(r.store, p, RefundState::Failed, &code, r.who()).await?;
            return Ok(if done {
                Pushed::Refused(code)
            } else {
                Pushed::AlreadyFinished
            });
        }
        Err(CallError::PhonePe(e)) => {
            let pause = match e {
                StatusError::RateLimited => RATE_LIMITED_PAUSE,
                StatusError::Rejected { .. } => REJECTED_PAUSE,
                _ => Duration::ZERO,
            };
            return no_answer(r, p, &e.code(), &e.excerpt(), next(pause)).await;
        }
    };
    r.store.refund_step(p, step.0, step.1, TRIES_TO_FLAG).await?;
    flag_once(p);
    Ok(Pushed::Pending)
}

/// An ask that brought no usable answer: asked again at `next` under the same id.
async fn no_answer(
    r: &Refunder<'_>,
    p: &PendingRefund,
    code: &str,
    excerpt: &str,
    next: DateTime,
) -> Result<Pushed, StoreError> {
    tracing::warn!(refund_id = %p.refund_id, error = %excerpt, "PhonePe gave no usable answer about a refund; asking again later under the same id");
    r.store
        .refund_step(p, Step::NoAnswer { code, excerpt }, next, TRIES_TO_FLAG)
        .await?;
    flag_once(p);
    Ok(Pushed::Pending)
}

/// Say so, once, when this step is the one that flags the refund.
fn flag_once(p: &PendingRefund) {
    if p.tries.saturating_add(1) == TRIES_TO_FLAG {
        tracing::error!(
            refund_id = %p.refund_id,
            tries = TRIES_TO_FLAG,
            "a refund has no final answer from PhonePe after {TRIES_TO_FLAG} asks: flagged for a person (still asked hourly)"
        );
    }
}

async fn finish(r: &Refunder<'_>, p: &PendingRefund, state: RefundState, code: &str) -> Result<Pushed, StoreError> {
    if !settle_refund(r.store, p, state, code, r.who()).await? {
        return Ok(Pushed::AlreadyFinished);
    }
    Ok(if state == RefundState::Completed {
        Pushed::Completed
    } else {
        Pushed::Failed
    })
}

/// PhonePe's final word on refund `p` (`Completed`, or `Failed` with PhonePe's `code`), by
/// `by`: the one guarded write the poller, the CLI and the webhook finish a refund with.
/// `false` when it was finished already.
pub async fn settle_refund(
    store: &Store,
    p: &PendingRefund,
    state: RefundState,
    code: &str,
    by: Author<'_>,
) -> Result<bool, StoreError> {
    let completed = state == RefundState::Completed;
    let done = store.finish_refund(p, completed, code, by, DateTime::now()).await?;
    if done {
        let label = if completed {
            labels::refund_result::COMPLETED
        } else {
            labels::refund_result::FAILED
        };
        metrics::counter!(names::REFUNDS, labels::RESULT => label).increment(1);
        if !completed {
            tracing::error!(refund_id = %p.refund_id, code, "a refund ended unmade; the order is parked again (refund_failed)");
        }
    }
    Ok(done)
}

/// An automatic refund of `order` PhonePe did not confirm: tried again on [`auto_backoff`], or
/// stopped after [`AUTO_REFUND_TRIES`] (the order stays in review, the reason in its record).
async fn auto_unverified(r: &Refunder<'_>, order: &Document, why: &str) -> Result<(), StoreError> {
    let tries = AutoRefund::of(order).tries.saturating_add(1);
    let stop = tries >= AUTO_REFUND_TRIES;
    let now = DateTime::now();
    let next = plus(now, auto_backoff(tries));
    if r.store.auto_refund_unverified(order, why, next, stop, now).await? && stop {
        tracing::error!(tries, problem = %why, "automatic refund stopped: PhonePe does not confirm the payment; the order stays in review for a person");
    }
    Ok(())
}

/// One pass: due automatic refunds (`refunds.auto`) begun, then every due refund stepped.
pub async fn poll_due(r: &Refunder<'_>, auto: &[String]) -> Result<usize, StoreError> {
    let mut stepped = 0;
    for order in r.store.auto_refundable(auto, DateTime::now(), PER_PASS).await? {
        match start(r, &order, Some("refunds.auto")).await? {
            Some(Pushed::Unverified(Unverified::Unconfirmed(why))) => auto_unverified(r, &order, &why).await?,
            // No call made (calls paused): not a try; the next pass asks again.
            Some(Pushed::Unverified(Unverified::NotAsked(_))) | None => {}
            Some(_) => stepped += 1,
        }
    }
    for p in r.store.due_refunds(DateTime::now(), PER_PASS).await? {
        push(r, &p).await?;
        stepped += 1;
    }
    let (pending, flagged) = r.store.count_pending_refunds().await?;
    metrics::gauge!(names::REFUNDS_PENDING).set(pending as f64);
    metrics::gauge!(names::REFUNDS_FLAGGED).set(flagged as f64);
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
        poll_interval: env.settings.refunds.poll_interval,
        by: By::Reconciler,
        operator: None,
    };
    loop {
        if let Err(e) = poll_due(&r, &env.settings.refunds.auto).await {
            tracing::warn!(error = %e, "refund poll failed; trying again next interval");
        }
        tokio::time::sleep(r.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> u64 {
        d.as_secs()
    }

    #[test]
    fn refund_asks_decay_from_the_poll_interval_to_an_hour() {
        let waits: Vec<u64> = (0..9)
            .map(|t| secs(refund_backoff(t, Duration::from_secs(60))))
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(refund_backoff(u32::MAX, Duration::from_secs(60)), REFUND_WAIT_MAX);
        assert_eq!(refund_backoff(3, Duration::from_millis(1)), Duration::from_millis(8));
    }

    #[test]
    fn automatic_tries_start_at_a_minute_whatever_the_poll_interval() {
        let waits: Vec<u64> = (1..=AUTO_REFUND_TRIES).map(|t| secs(auto_backoff(t))).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920]);
        // At a 2 s poll, the tries in the first minute: at 0 s and at 60 s at the earliest.
        assert!(auto_backoff(1) >= Duration::from_secs(60));
    }
}
