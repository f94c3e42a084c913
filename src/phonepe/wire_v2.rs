//! The API v2 order-status answer (`GET /checkout/v2/order/{merchantOrderId}/status`), classified
//! into the same [`StatusReport`] / [`StatusError`] as v1, so the decision table is the same for
//! both APIs (docs/phonepe.md, "API v2", has the rules and the merchant a v2 answer is read as).
//! The report's `code` is the root state or `ORDER_NOT_FOUND`: a fixed set, safe as a metric
//! label. Details name fields, never values.

use serde_json::{Map, Value};

use super::wire::loggable_code;
use crate::domain::order::Paise;
use crate::domain::payment::{PaymentState, StatusError, StatusReport, TransientKind};

/// Root `state` values of an order (the latest attempt's `state` uses the same words).
pub mod states {
    pub const COMPLETED: &str = "COMPLETED";
    pub const FAILED: &str = "FAILED";
    pub const PENDING: &str = "PENDING";
    /// The order exists but no payment was attempted yet.
    pub const CREATED: &str = "CREATED";
}

/// The error `code` of a 404 about an order PhonePe does not know.
pub const ORDER_NOT_FOUND: &str = "ORDER_NOT_FOUND";
/// The code reported for a rejected token.
pub const AUTHORIZATION_FAILED: &str = "AUTHORIZATION_FAILED";

/// Classify one order-status answer about `merchant_order_id`, for the merchant our token
/// belongs to.
pub fn parse_order_status(
    http_status: u16,
    body: &[u8],
    merchant_order_id: &str,
    token_merchant: &str,
) -> Result<StatusReport, StatusError> {
    if http_status == 429 {
        return Err(StatusError::RateLimited);
    }
    if (500..=599).contains(&http_status) {
        return Err(transient(TransientKind::Server, format!("HTTP {http_status}")));
    }
    if http_status == 401 {
        return Err(StatusError::Rejected {
            code: AUTHORIZATION_FAILED.into(),
            http_status,
        });
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let obj = match &json {
        None => return Err(malformed(format!("HTTP {http_status} body is not JSON"))),
        Some(v) => v
            .as_object()
            .ok_or_else(|| malformed(format!("HTTP {http_status} body is not a JSON object")))?,
    };
    if !(200..=299).contains(&http_status) {
        return error_answer(http_status, obj);
    }
    let report = order_report(obj, token_merchant)?;
    match str_field(obj, "merchantOrderId") {
        Some(other) if other != merchant_order_id => Err(malformed(format!(
            "{} answer about another merchantOrderId than the one asked",
            report.code
        ))),
        _ => Ok(report),
    }
}

/// A non-2xx, non-401/429/5xx answer with a JSON body.
fn error_answer(http_status: u16, obj: &Map<String, Value>) -> Result<StatusReport, StatusError> {
    let code = match str_field(obj, "code") {
        Some(c) => c,
        None => return Err(malformed(format!("HTTP {http_status} body has no string `code`"))),
    };
    if http_status == 404 && code == ORDER_NOT_FOUND {
        return Ok(StatusReport {
            code,
            state: PaymentState::NotFound,
            merchant_id: None,
            amount: None,
            transaction_id: None,
        });
    }
    if (400..=499).contains(&http_status) {
        return Err(StatusError::Refused {
            code: loggable_code(&code).to_string(),
            http_status,
        });
    }
    Err(malformed(format!(
        "HTTP {http_status} with code {}",
        loggable_code(&code)
    )))
}

/// A 2xx answer (or a v2 callback's `payload`): the root state, checked against the amount and
/// the latest attempt.
pub fn order_report(obj: &Map<String, Value>, token_merchant: &str) -> Result<StatusReport, StatusError> {
    let state_text = match obj.get("state") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(malformed("answer without a string `state`".into())),
    };
    let (code, state) = match state_text {
        states::COMPLETED => (states::COMPLETED, PaymentState::Completed),
        states::FAILED => (states::FAILED, PaymentState::Failed),
        states::PENDING => (states::PENDING, PaymentState::Pending),
        states::CREATED => (states::CREATED, PaymentState::Pending),
        other => {
            return Err(transient(
                TransientKind::UnknownCode,
                format!("undocumented order state {}", loggable_code(other)),
            ))
        }
    };
    let amount = integer(obj, "amount", code)?;
    let latest = latest_attempt(obj, code)?;
    if state == PaymentState::Completed {
        check_completed(code, amount, latest)?;
    }
    Ok(StatusReport {
        code: code.to_string(),
        state,
        merchant_id: Some(str_field(obj, "merchantId").unwrap_or_else(|| token_merchant.to_string())),
        amount,
        transaction_id: latest.and_then(|d| str_field(d, "transactionId")),
    })
}

/// A paid order needs its amount, and its latest attempt (if listed) must agree with it.
fn check_completed(code: &str, amount: Option<Paise>, latest: Option<&Map<String, Value>>) -> Result<(), StatusError> {
    let amount = amount.ok_or_else(|| malformed(format!("{code} without amount")))?;
    let Some(attempt) = latest else { return Ok(()) };
    match attempt.get("state") {
        Some(Value::String(s)) if s == states::COMPLETED => {}
        _ => {
            return Err(malformed(format!(
                "{code} with a latest paymentDetails state contradicting it"
            )))
        }
    }
    match integer(attempt, "amount", code)? {
        Some(a) if a != amount => Err(malformed(format!(
            "{code} with a latest paymentDetails amount other than the order's"
        ))),
        _ => Ok(()),
    }
}

/// The last entry of `paymentDetails`, if the list is there and not empty.
fn latest_attempt<'a>(obj: &'a Map<String, Value>, code: &str) -> Result<Option<&'a Map<String, Value>>, StatusError> {
    match obj.get("paymentDetails") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => match list.last() {
            None => Ok(None),
            Some(Value::Object(d)) => Ok(Some(d)),
            Some(_) => Err(malformed(format!(
                "{code} with a paymentDetails entry that is not an object"
            ))),
        },
        Some(_) => Err(malformed(format!("{code} with paymentDetails that is not a list"))),
    }
}

fn integer(obj: &Map<String, Value>, key: &str, code: &str) -> Result<Option<Paise>, StatusError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|a| Some(Paise(a)))
            .ok_or_else(|| malformed(format!("{code} with {key} that is not an integer"))),
        Some(_) => Err(malformed(format!("{code} with {key} that is not a number"))),
    }
}

fn str_field(d: &Map<String, Value>, key: &str) -> Option<String> {
    d.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn malformed(detail: String) -> StatusError {
    transient(TransientKind::Malformed, detail)
}

fn transient(kind: TransientKind, detail: String) -> StatusError {
    StatusError::Transient { kind, detail }
}

#[cfg(test)]
mod tests;
