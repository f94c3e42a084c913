//! v2 refund callbacks (`pg.refund.completed`, `pg.refund.failed`, `pg.refund.accepted`): their
//! payload names a refund (`merchantRefundId`) of an order (`originalMerchantOrderId`), not an
//! order. A completed or failed one (the `event` and the payload's `state` must agree) settles
//! the refund recorded on that order under that id at once, by the refund poller's own guarded
//! write (`refund::settle_refund`, `by: "webhook"`); with `confirm_with_status_api` PhonePe's
//! refund status is asked first and acted on instead. A refund id we did not record, an
//! accepted event, or a state that does not match its event: 200, nothing changes.

use serde_json::Value;

use super::{Delivery, Reply, PERMIT_WAIT};
use crate::actors::Env;
use crate::domain::{MerchantTransactionId, Paise, PaymentState, StatusReport};
use crate::phonepe::client::RefundState;
use crate::phonepe::CallError;
use crate::store::refunds::PendingRefund;
use crate::store::By;
use crate::telemetry::labels::{webhook_event as event, webhook_result as result};

fn id_field(p: &Value, key: &str) -> Result<MerchantTransactionId, String> {
    let s = p
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("payload has no string {key}"))?;
    MerchantTransactionId::parse(s).map_err(|e| format!("payload.{key} {e}"))
}

/// A refund event's payload, as a [`Delivery`] about the refunded order whose `report` is the
/// refund's state. Errors name fields, never values.
pub(super) fn parse(ev: &'static str, p: &Value) -> Result<Delivery, String> {
    let refund_id = id_field(p, "merchantRefundId")?;
    let mtid = id_field(p, "originalMerchantOrderId")?;
    let word = p
        .get("state")
        .and_then(Value::as_str)
        .ok_or("payload has no string state")?;
    let state = match word {
        "COMPLETED" => PaymentState::Completed,
        "FAILED" => PaymentState::Failed,
        "PENDING" | "CONFIRMED" | "ACCEPTED" => PaymentState::Pending,
        _ => return Err("payload.state is not a refund state PhonePe documents".into()),
    };
    let report = StatusReport {
        code: word.to_string(),
        state,
        merchant_id: p.get("merchantId").and_then(Value::as_str).map(str::to_string),
        amount: p.get("amount").and_then(Value::as_i64).map(Paise),
        transaction_id: p.get("refundId").and_then(Value::as_str).map(str::to_string),
    };
    Ok(Delivery {
        event: ev,
        mtid,
        report,
        settles: false,
        refund: Some(refund_id.as_str().to_string()),
    })
}

/// Settle the refund a verified refund event names (see the module docs).
pub(super) async fn act(env: &Env, d: Delivery) -> Reply {
    let ev = d.event;
    let refund_id = d.refund.clone().unwrap_or_default();
    let said = match (ev, d.report.state) {
        (event::REFUND_COMPLETED, PaymentState::Completed) => RefundState::Completed,
        (event::REFUND_FAILED, PaymentState::Failed) => RefundState::Failed,
        _ => return Reply::ok(ev, result::IGNORED),
    };
    if d.report
        .merchant_id
        .as_deref()
        .is_some_and(|m| m != env.policy.merchant_id)
    {
        tracing::warn!("webhook: a refund event naming another merchant; ignored");
        return Reply::ok(ev, result::IGNORED);
    }
    let doc = match env.store.find_by_mtid(d.mtid.as_str()).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return Reply::ok(ev, result::IGNORED),
        Err(e) => {
            tracing::error!(error = %e, "webhook: MongoDB failed; answering 503 so PhonePe retries");
            return Reply::unavailable(ev, "database");
        }
    };
    let Some(p) = PendingRefund::of(&doc, &env.store.schema().orders).filter(|p| p.refund_id == refund_id) else {
        tracing::info!(refund_id = %refund_id, "webhook: no refund recorded under this id; ignored");
        return Reply::ok(ev, result::IGNORED);
    };
    let state = if env.settings.webhook.confirm_with_status_api {
        match env
            .phonepe
            .refund_status_within(&p.refund_id, &p.merchant_transaction_id, PERMIT_WAIT)
            .await
        {
            Ok(s @ (RefundState::Completed | RefundState::Failed)) => s,
            Ok(_) => return Reply::ok(ev, result::IGNORED),
            Err(CallError::PhonePe(e)) => {
                tracing::warn!(error = %e, "webhook: the refund status gave no usable answer; answering 503");
                return Reply::unavailable(ev, "the refund status API gave no usable answer");
            }
            Err(_) => return Reply::unavailable(ev, "no PhonePe budget permit in time"),
        }
    } else {
        said
    };
    match crate::refund::settle_refund(&env.store, &p, state, state.code(), By::Webhook.into()).await {
        Ok(true) => Reply::ok(ev, result::ACCEPTED),
        Ok(false) => Reply::ok(ev, result::ALREADY_SETTLED),
        Err(e) => {
            tracing::error!(error = %e, "webhook: settling the refund failed; answering 503 so PhonePe retries");
            Reply::unavailable(ev, "database")
        }
    }
}
