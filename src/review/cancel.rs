//! `review resolve <id> cancel`: close a parked order only when PhonePe, asked once through the
//! gateway (a permit of the budget), reports no payment to this merchant: FAILED, no such
//! transaction, still PENDING past PhonePe's payment expiry, paid to another merchant (a
//! `merchant_mismatch` may be cancelled: the history says so), or an id PhonePe refuses. A
//! completed payment to us refuses the cancel (exit 1, with what PhonePe reported) and records
//! the payment on the order if it was not. PhonePe unreachable or unreadable: exit 1, nothing
//! written. A paid order whose refund failed is closed only with a `--note` (how the money went
//! back), without asking PhonePe. The write is guarded by the payment status (and reason) the
//! decision rests on, so a payment recorded meanwhile makes it refuse.

use mongodb::bson::{Bson, DateTime, Document};

use super::{names, Resolution, Who};
use crate::actors::Env;
use crate::domain::decision::{late_payment, paid_to, PAYMENT_EXPIRY};
use crate::domain::{
    Decision, MerchantTransactionId, PaymentState, PaymentStatus, ReviewReason, StatusError, StatusReport,
};
use crate::phonepe::CallError;
use crate::schema::own;
use crate::settle::record_late_payment;
use crate::store::orders::plus;
use crate::store::payments::{LeftDraft, PaymentSeen};
use crate::store::refunds::{Cancel, CancelKind, REFUND_KEY};
use crate::store::Author;

/// How a cancel of a parked order goes, from its stored state alone (`view`, the reconciler's
/// names): the console's confirmation page shows it before anything is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRoute {
    /// Paid to us and its refund failed (PhonePe's `failCode`): closed with the note, unasked.
    RefundFailed(String),
    /// Asked of PhonePe first: closed only if it reports no payment to this merchant.
    Ask(CancelKind),
    /// Refused without asking: the order is recorded as paid to this merchant.
    PaidToUs,
}

/// Why a cancel of an order recorded as paid to us is refused.
pub const PAID_TO_US: &str = "it was paid to this merchant: refund or fulfil it instead";

pub fn cancel_route(view: &Document) -> CancelRoute {
    let recon = view.get_document(own::RECONCILIATION_KEY).ok();
    let reason = recon.and_then(|r| r.get_str(own::key(own::REASON)).ok());
    let payment = view
        .get_str(&names().payment_status)
        .ok()
        .and_then(PaymentStatus::parse);
    match (payment, reason) {
        (Some(PaymentStatus::Paid), Some(r)) if r == ReviewReason::RefundFailed.as_str() => {
            let fail = recon
                .and_then(|r| r.get_document(REFUND_KEY).ok())
                .and_then(|r| r.get_str("failCode").ok())
                .unwrap_or("FAILED");
            CancelRoute::RefundFailed(fail.to_string())
        }
        (Some(PaymentStatus::Paid), Some(r)) if r == ReviewReason::MerchantMismatch.as_str() => {
            CancelRoute::Ask(CancelKind::PaidElsewhere)
        }
        (Some(PaymentStatus::Paid | PaymentStatus::Refunded), _) => CancelRoute::PaidToUs,
        _ => CancelRoute::Ask(CancelKind::Unpaid),
    }
}

/// Cancel the parked order `d` (as stored; `view` in the reconciler's names) if PhonePe agrees.
pub(super) async fn cancel(
    env: &Env,
    mtid: &str,
    d: &Document,
    view: &Document,
    who: Who,
) -> anyhow::Result<Resolution> {
    let id = d.get("_id").cloned().unwrap_or(Bson::Null);
    let kind = match cancel_route(view) {
        CancelRoute::RefundFailed(fail) => return refund_failed(env, mtid, &id, &fail, who).await,
        CancelRoute::PaidToUs => return Ok(Resolution::refused(PAID_TO_US)),
        CancelRoute::Ask(kind) => kind,
    };
    let Ok(txn) = MerchantTransactionId::parse(mtid) else {
        let detail = "PhonePe cannot take this id: no payment can exist under it";
        return write(env, mtid, &id, cancellation(kind, "ID_NOT_TAKEN", detail, who)).await;
    };
    let answer = match CallError::split(env.phonepe.status(&txn).await) {
        Ok(answer) => answer,
        Err(no_call) => {
            return Ok(Resolution::refused(format!("nothing cancelled: {no_call}")).reported(no_call.to_string()))
        }
    };
    let report = match answer {
        Ok(report) => report,
        Err(StatusError::Refused { code, .. }) => {
            let detail = format!("PhonePe refuses requests about this id ({code}): no payment can be made under it");
            return write(env, mtid, &id, cancellation(kind, &code, &detail, who)).await;
        }
        Err(e) => {
            let r = Resolution::refused(format!(
                "nothing cancelled: PhonePe gave no usable answer: {}",
                e.excerpt()
            ));
            return Ok(r.reported(format!("no usable answer: {}", e.excerpt())));
        }
    };
    if let Some(paid) = paid_to(&report, env.phonepe.merchant_id()) {
        return paid_to_us(env, d, &report, paid, who.operator.as_deref()).await;
    }
    let detail = match report.state {
        PaymentState::Completed => format!(
            "PhonePe reports it paid to merchant {}, not to this merchant",
            report.merchant_id.as_deref().unwrap_or("(none named)")
        ),
        PaymentState::Failed => "PhonePe reports the payment failed".to_string(),
        PaymentState::NotFound => "PhonePe has no payment under this id".to_string(),
        PaymentState::Pending => {
            let created = crate::schema::effective_created_at(d, env.store.schema());
            let Ok(expires) = created.map(|t| plus(t, PAYMENT_EXPIRY)) else {
                return Ok(Resolution::refused(
                    "PhonePe reports the payment pending and the order's creation time cannot be read: nothing cancelled",
                )
                .reported("the payment is PENDING"));
            };
            if DateTime::now() < expires {
                let at = expires.try_to_rfc3339_string().unwrap_or_default();
                return Ok(Resolution::refused(format!(
                    "PhonePe reports the payment still pending; it can complete until {at}: nothing cancelled, try again after"
                ))
                .reported("the payment is PENDING"));
            }
            "PhonePe reports it pending past PhonePe's payment expiry: it can no longer complete".to_string()
        }
    };
    write(env, mtid, &id, cancellation(kind, &report.code, &detail, who)).await
}

fn cancellation(kind: CancelKind, code: &str, detail: &str, who: Who) -> Cancel {
    Cancel {
        kind,
        code: code.to_string(),
        detail: Some(detail.to_string()),
        note: who.note,
        operator: who.operator,
    }
}

/// PhonePe reports our money: refused, and the payment recorded if the order did not have it.
async fn paid_to_us(
    env: &Env,
    d: &Document,
    r: &StatusReport,
    paid: i64,
    operator: Option<&str>,
) -> anyhow::Result<Resolution> {
    let schema = env.store.schema();
    let payment = crate::schema::read_payment_status(d, schema);
    let target = LeftDraft::of_doc(d, schema);
    let decision = target
        .as_ref()
        .and_then(|t| late_payment(t.status, payment, r, env.phonepe.merchant_id()));
    let recorded = match (target, decision) {
        (
            Some(target),
            Some(Decision::RecordPayment {
                code,
                transaction_id,
                paid_amount,
            }),
        ) => {
            let seen = PaymentSeen {
                code,
                transaction_id,
                paid_amount,
            };
            record_late_payment(&env.store, &target, &seen, Author::operator(operator)).await?
        }
        _ => false,
    };
    let also = if recorded {
        "; the payment is now recorded on the order"
    } else {
        ""
    };
    let why = format!(
        "PhonePe reports a completed payment of {paid} paise to this merchant (code {}){also}: \
         nothing cancelled; refund or fulfil it instead",
        r.code
    );
    Ok(Resolution::refused(why).reported(format!(
        "a completed payment of {paid} paise to this merchant ({})",
        r.code
    )))
}

/// A paid order whose refund through PhonePe failed: closed only with the operator's note.
async fn refund_failed(env: &Env, mtid: &str, id: &Bson, fail: &str, who: Who) -> anyhow::Result<Resolution> {
    let Some(note) = who.note.filter(|n| !n.trim().is_empty()) else {
        return Ok(Resolution::refused(
            "it was paid and its refund failed: refund it again, or cancel it with a --note saying how the money went back",
        ));
    };
    let who = Who {
        note: Some(note),
        operator: who.operator,
    };
    let detail = format!("paid to this merchant; the refund through PhonePe failed ({fail}); closed by the operator");
    write(
        env,
        mtid,
        id,
        cancellation(CancelKind::RefundFailed, "REFUND_FAILED", &detail, who),
    )
    .await
}

async fn write(env: &Env, mtid: &str, id: &Bson, c: Cancel) -> anyhow::Result<Resolution> {
    let detail = c.detail.as_deref().unwrap_or("-");
    let r = if env.store.operator_cancel(id, &c, DateTime::now()).await? {
        Resolution::done(format!("{mtid} cancelled ({detail})"))
    } else {
        Resolution::refused("it changed meanwhile (someone else resolved it, or a payment was recorded)")
    };
    Ok(r.reported(detail))
}
