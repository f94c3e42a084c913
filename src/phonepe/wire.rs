//! The v1 status answer on the wire, and its classification into the domain (docs/phonepe.md,
//! "Classification, in order"). [`parse_status`] walks a `serde_json::Value` rather than a typed
//! struct, so every refusal names the problem ("PAYMENT_SUCCESS without data.amount"). Anything
//! incomplete, contradictory or undocumented is a transient error: no order is settled on a half
//! answer. Details never contain the body (it may carry customer data).

use serde_json::{Map, Value};

use crate::domain::order::Paise;
use crate::domain::payment::{PaymentState, StatusError, StatusReport, TransientKind};

/// `code` values PhonePe documents for the v1 status API.
pub mod codes {
    pub const PAYMENT_SUCCESS: &str = "PAYMENT_SUCCESS";
    pub const PAYMENT_ERROR: &str = "PAYMENT_ERROR";
    pub const PAYMENT_DECLINED: &str = "PAYMENT_DECLINED";
    pub const TIMED_OUT: &str = "TIMED_OUT";
    pub const PAYMENT_PENDING: &str = "PAYMENT_PENDING";
    pub const TRANSACTION_NOT_FOUND: &str = "TRANSACTION_NOT_FOUND";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const AUTHORIZATION_FAILED: &str = "AUTHORIZATION_FAILED";
    pub const TOO_MANY_REQUESTS: &str = "TOO_MANY_REQUESTS";
}

/// `data.state` values.
pub mod states {
    pub const COMPLETED: &str = "COMPLETED";
    pub const FAILED: &str = "FAILED";
    pub const PENDING: &str = "PENDING";
}

/// Classify one status answer: its HTTP status and raw body.
pub fn parse_status(http_status: u16, body: &[u8]) -> Result<StatusReport, StatusError> {
    classify(http_status, body).map(|(report, _)| report)
}

/// [`parse_status`], and also refuse an answer whose `data.merchantTransactionId` is present but
/// names another transaction than the one asked about (a proxy or cache mix-up must not settle
/// the wrong order). This is what the client uses.
pub fn parse_status_for(http_status: u16, body: &[u8], mtid: &str) -> Result<StatusReport, StatusError> {
    let (report, answered_mtid) = classify(http_status, body)?;
    match answered_mtid {
        Some(other) if other != mtid => Err(malformed(format!(
            "{} answer about another data.merchantTransactionId than the one asked",
            report.code
        ))),
        _ => Ok(report),
    }
}

fn classify(http_status: u16, body: &[u8]) -> Result<(StatusReport, Option<String>), StatusError> {
    // Transport-level classes win over whatever the body says (a 429 may come with no body).
    if http_status == 429 {
        return Err(StatusError::RateLimited);
    }
    if (500..=599).contains(&http_status) {
        return Err(transient(TransientKind::Server, format!("HTTP {http_status}")));
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let obj = json.as_ref().and_then(Value::as_object);
    let code = obj.and_then(|o| o.get("code")).and_then(Value::as_str);
    if http_status == 401 {
        let code = match code {
            Some(c @ (codes::AUTHORIZATION_FAILED | codes::BAD_REQUEST)) => c,
            _ => codes::AUTHORIZATION_FAILED,
        };
        return Err(StatusError::Rejected {
            code: code.to_string(),
            http_status,
        });
    }
    let obj = match (&json, obj) {
        (None, _) => return Err(malformed(format!("HTTP {http_status} body is not JSON"))),
        (Some(_), None) => return Err(malformed(format!("HTTP {http_status} body is not a JSON object"))),
        (Some(_), Some(o)) => o,
    };
    let code = code.ok_or_else(|| malformed(format!("HTTP {http_status} body has no string `code`")))?;
    classify_code(http_status, code, obj.get("data"))
}

fn classify_code(
    http_status: u16,
    code: &str,
    data: Option<&Value>,
) -> Result<(StatusReport, Option<String>), StatusError> {
    let business = match code {
        codes::TOO_MANY_REQUESTS => return Err(StatusError::RateLimited),
        codes::AUTHORIZATION_FAILED => {
            return Err(StatusError::Rejected {
                code: code.to_string(),
                http_status,
            })
        }
        // About this transaction only (a 401 never gets here: it is a credentials rejection).
        codes::BAD_REQUEST => {
            return Err(StatusError::Refused {
                code: code.to_string(),
                http_status,
            })
        }
        codes::INTERNAL_SERVER_ERROR => return Err(transient(TransientKind::Server, code.to_string())),
        codes::TRANSACTION_NOT_FOUND => return Ok((bare_report(code, PaymentState::NotFound, data), None)),
        codes::PAYMENT_SUCCESS => PaymentState::Completed,
        codes::PAYMENT_ERROR | codes::PAYMENT_DECLINED | codes::TIMED_OUT => PaymentState::Failed,
        codes::PAYMENT_PENDING => PaymentState::Pending,
        other => {
            return Err(transient(
                TransientKind::UnknownCode,
                format!("undocumented code {}", loggable_code(other)),
            ))
        }
    };
    if !(200..=299).contains(&http_status) {
        return Err(malformed(format!("{code} with HTTP {http_status}")));
    }
    business_report(code, business, data)
}

/// A payment outcome: check `data` is consistent with the code before anyone may act on it.
fn business_report(
    code: &str,
    state: PaymentState,
    data: Option<&Value>,
) -> Result<(StatusReport, Option<String>), StatusError> {
    let data = match data {
        Some(Value::Object(d)) => Some(d),
        None | Some(Value::Null) => None,
        Some(_) => return Err(malformed(format!("{code} with data that is not an object"))),
    };
    let expected_state = match state {
        PaymentState::Completed => states::COMPLETED,
        PaymentState::Failed => states::FAILED,
        _ => states::PENDING,
    };
    match data.and_then(|d| d.get("state")) {
        Some(Value::String(s)) if s == expected_state => {}
        None | Some(Value::Null) if state != PaymentState::Completed => {}
        None | Some(Value::Null) => return Err(malformed(format!("{code} without data.state"))),
        Some(_) => return Err(malformed(format!("{code} with data.state contradicting it"))),
    }
    let amount = match data.and_then(|d| d.get("amount")) {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(a) => Some(Paise(a)),
            None => return Err(malformed(format!("{code} with data.amount that is not an integer"))),
        },
        None | Some(Value::Null) => None,
        Some(_) => return Err(malformed(format!("{code} with data.amount that is not a number"))),
    };
    let merchant_id = data.and_then(|d| str_field(d, "merchantId"));
    if state == PaymentState::Completed {
        if amount.is_none() {
            return Err(malformed(format!("{code} without data.amount")));
        }
        if merchant_id.is_none() {
            return Err(malformed(format!("{code} without data.merchantId")));
        }
    }
    let report = StatusReport {
        code: code.to_string(),
        state,
        merchant_id,
        amount,
        transaction_id: data.and_then(|d| str_field(d, "transactionId")),
    };
    Ok((report, data.and_then(|d| str_field(d, "merchantTransactionId"))))
}

/// A report for a code whose `data`, if any, is informational only.
fn bare_report(code: &str, state: PaymentState, data: Option<&Value>) -> StatusReport {
    let data = data.and_then(Value::as_object);
    StatusReport {
        code: code.to_string(),
        state,
        merchant_id: data.and_then(|d| str_field(d, "merchantId")),
        amount: data.and_then(|d| d.get("amount")).and_then(Value::as_i64).map(Paise),
        transaction_id: data.and_then(|d| str_field(d, "transactionId")),
    }
}

fn str_field(d: &Map<String, Value>, key: &str) -> Option<String> {
    d.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// An undocumented code is logged only if it looks like a code (it comes from the network).
pub(crate) fn loggable_code(code: &str) -> &str {
    let looks_like_code = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if looks_like_code {
        code
    } else {
        "(not shown: not a code-like string)"
    }
}

fn malformed(detail: String) -> StatusError {
    transient(TransientKind::Malformed, detail)
}

fn transient(kind: TransientKind, detail: String) -> StatusError {
    StatusError::Transient { kind, detail }
}

#[cfg(test)]
mod tests;
