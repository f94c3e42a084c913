//! Scripted answers: what the simulator says about one transaction, and how that becomes an HTTP
//! status and a body shaped exactly like PhonePe's (the v1 check-status answer, `crate::wire`).
//!
//! An [`Answer`] is either a business state (`COMPLETED`, `FAILED`, `PENDING`, `NOT_FOUND`) with
//! optional overrides, an HTTP error (`httpStatus` without `state`), or a verbatim `rawBody` for
//! malformed-answer tests. Defaults that must stay stable while an answer repeats (PhonePe's
//! `transactionId`, the UTR) are filled in once, when the script is stored.

use serde::{Deserialize, Serialize};

use crate::wire::{codes, states, PaymentInstrument, StatusData, StatusResponse};

/// The business state an answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScriptedState {
    Completed,
    Failed,
    Pending,
    NotFound,
}

/// One scripted answer (admin JSON, camelCase). `state` is required unless `httpStatus` or
/// `rawBody` says what to answer instead; `amount` is required for `COMPLETED`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ScriptedState>,
    /// Overrides the code (default per state: PAYMENT_SUCCESS / PAYMENT_ERROR / PAYMENT_PENDING /
    /// TRANSACTION_NOT_FOUND; per HTTP status for an error answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Paise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// `data.merchantId` (default: the simulator's merchant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// `data.transactionId` (default: a generated `T` + 20 digits, fixed per answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Delay before answering; overrides the simulator-wide latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// With `state`: the HTTP status of the business body (default 200). Without `state`: answer
    /// this status with PhonePe's error body (`INTERNAL_SERVER_ERROR` for 5xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Served verbatim (with `httpStatus` or 200): for malformed-body tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
}

impl Answer {
    fn state(state: ScriptedState) -> Self {
        Answer {
            state: Some(state),
            ..Answer::default()
        }
    }

    /// `PAYMENT_SUCCESS` / `COMPLETED` for `amount` paise.
    pub fn completed(amount: i64) -> Self {
        Answer {
            amount: Some(amount),
            ..Answer::state(ScriptedState::Completed)
        }
    }

    /// `PAYMENT_ERROR` / `FAILED` (use `.code("PAYMENT_DECLINED")` or `"TIMED_OUT"` for the others).
    pub fn failed() -> Self {
        Answer::state(ScriptedState::Failed)
    }

    /// `PAYMENT_PENDING` / `PENDING`.
    pub fn pending() -> Self {
        Answer::state(ScriptedState::Pending)
    }

    /// `TRANSACTION_NOT_FOUND` (also what an unscripted transaction gets).
    pub fn not_found() -> Self {
        Answer::state(ScriptedState::NotFound)
    }

    /// HTTP `status` with PhonePe's error body (e.g. 500 → `INTERNAL_SERVER_ERROR`).
    pub fn http_error(status: u16) -> Self {
        Answer {
            http_status: Some(status),
            ..Answer::default()
        }
    }

    /// HTTP 200 with `body` verbatim (chain `.status(..)` for another status).
    pub fn raw(body: impl Into<String>) -> Self {
        Answer {
            raw_body: Some(body.into()),
            ..Answer::default()
        }
    }

    pub fn delay(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    pub fn merchant(mut self, merchant_id: impl Into<String>) -> Self {
        self.merchant_id = Some(merchant_id.into());
        self
    }

    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn amount(mut self, amount: i64) -> Self {
        self.amount = Some(amount);
        self
    }

    pub fn status(mut self, http_status: u16) -> Self {
        self.http_status = Some(http_status);
        self
    }

    pub fn transaction(mut self, transaction_id: impl Into<String>) -> Self {
        self.transaction_id = Some(transaction_id.into());
        self
    }

    /// Why this answer cannot be served, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = self.http_status {
            if !(100..=599).contains(&s) {
                return Err(format!("httpStatus {s} is not an HTTP status"));
            }
        }
        match self.state {
            None if self.http_status.is_none() && self.raw_body.is_none() => {
                Err("an answer needs `state`, `httpStatus` or `rawBody`".into())
            }
            Some(ScriptedState::Completed) if self.amount.is_none() && self.raw_body.is_none() => {
                Err("a COMPLETED answer needs `amount` (paise)".into())
            }
            _ => Ok(()),
        }
    }

    /// Fill the defaults that must not change while the answer repeats.
    pub(crate) fn with_fixed_ids(mut self) -> Self {
        if self.transaction_id.is_none() {
            self.transaction_id = Some(format!("T{}", digits(20)));
        }
        self
    }

    /// The HTTP status, the body, and the code to record for this answer.
    pub(crate) fn render(&self, merchant_id: &str, mtid: &str) -> (u16, String, Option<String>) {
        if let Some(raw) = &self.raw_body {
            return (self.http_status.unwrap_or(200), raw.clone(), None);
        }
        let response = match self.state {
            Some(state) => self.business_response(state, merchant_id, mtid),
            None => error_response(self.http_status.unwrap_or(500), self.code.as_deref()),
        };
        let status = self.http_status.unwrap_or(200);
        let body = serde_json::to_string(&response).unwrap_or_default();
        (status, body, Some(response.code))
    }

    fn business_response(&self, state: ScriptedState, merchant_id: &str, mtid: &str) -> StatusResponse {
        let (code, data_state, message, response_code) = match state {
            ScriptedState::Completed => (
                codes::PAYMENT_SUCCESS,
                states::COMPLETED,
                "Your payment is successful.",
                "SUCCESS",
            ),
            ScriptedState::Failed => (codes::PAYMENT_ERROR, states::FAILED, "Payment Failed", "ZM"),
            ScriptedState::Pending => (
                codes::PAYMENT_PENDING,
                states::PENDING,
                "Your payment is pending.",
                "PENDING",
            ),
            ScriptedState::NotFound => {
                let code = self.code.clone().unwrap_or_else(|| codes::TRANSACTION_NOT_FOUND.into());
                return StatusResponse {
                    success: false,
                    code,
                    message: "No Transaction found with the given details.".into(),
                    data: None,
                };
            }
        };
        let paid = state == ScriptedState::Completed;
        StatusResponse {
            success: paid,
            code: self.code.clone().unwrap_or_else(|| code.into()),
            message: message.into(),
            data: Some(StatusData {
                merchant_id: self.merchant_id.clone().unwrap_or_else(|| merchant_id.into()),
                merchant_transaction_id: mtid.into(),
                transaction_id: self.transaction_id.clone().unwrap_or_else(|| "T0".into()),
                amount: self.amount,
                state: data_state.into(),
                response_code: response_code.into(),
                payment_instrument: paid.then(|| PaymentInstrument {
                    kind: "UPI".into(),
                    utr: Some(utr_for(&self.transaction_id)),
                }),
            }),
        }
    }
}

/// PhonePe's error body for an HTTP error status.
pub(crate) fn error_response(http_status: u16, code: Option<&str>) -> StatusResponse {
    let (default_code, message) = match http_status {
        401 => (codes::AUTHORIZATION_FAILED, "Authorization failed."),
        429 => (codes::TOO_MANY_REQUESTS, "Too many requests. Please try again."),
        400..=499 => (codes::BAD_REQUEST, "Please check the inputs you have provided."),
        _ => (
            codes::INTERNAL_SERVER_ERROR,
            "There is an error trying to process your transaction at the moment. Please try again in a while.",
        ),
    };
    StatusResponse {
        success: false,
        code: code.unwrap_or(default_code).to_string(),
        message: message.into(),
        data: None,
    }
}

fn digits(n: usize) -> String {
    (0..n).map(|_| fastrand::char('0'..='9')).collect()
}

/// A stable 12-digit UTR derived from PhonePe's transaction id (so repeats agree).
fn utr_for(transaction_id: &Option<String>) -> String {
    let seed: String = transaction_id
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{:0>12}", &seed[seed.len().saturating_sub(12)..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn served(a: Answer) -> (u16, Value, Option<String>) {
        let (status, body, code) = a.with_fixed_ids().render("MERCHANTUAT", "ORD-1");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null), code)
    }

    /// Each constructor renders PhonePe's documented v1 answer, field for field. (That the
    /// product's client reads them so is proved in the product's tests, tests/it/phonepe_v1.rs.)
    #[test]
    fn constructors_render_phonepes_documented_answers() {
        let (status, paid, code) = served(Answer::completed(49900).transaction("T2311000000000000001"));
        assert_eq!((status, code.as_deref()), (200, Some("PAYMENT_SUCCESS")));
        assert_eq!(
            paid,
            json!({"success": true, "code": "PAYMENT_SUCCESS", "message": "Your payment is successful.",
                "data": {"merchantId": "MERCHANTUAT", "merchantTransactionId": "ORD-1",
                    "transactionId": "T2311000000000000001", "amount": 49900, "state": "COMPLETED",
                    "responseCode": "SUCCESS", "paymentInstrument": {"type": "UPI", "utr": "000000000001"}}})
        );
        let (_, failed, _) = served(Answer::failed().code("TIMED_OUT"));
        assert_eq!(
            (&failed["success"], &failed["code"], &failed["data"]["state"]),
            (&json!(false), &json!("TIMED_OUT"), &json!("FAILED"))
        );
        assert!(
            failed["data"].get("paymentInstrument").is_none(),
            "no instrument on a failure"
        );
        let (_, pending, _) = served(Answer::pending());
        assert_eq!(
            (&pending["code"], &pending["data"]["state"]),
            (&json!("PAYMENT_PENDING"), &json!("PENDING"))
        );
        assert_eq!(
            served(Answer::not_found()),
            (
                200,
                json!({"success": false, "code": "TRANSACTION_NOT_FOUND",
                    "message": "No Transaction found with the given details."}),
                Some("TRANSACTION_NOT_FOUND".into())
            )
        );
        let (_, other, _) = served(Answer::completed(1).merchant("OTHER"));
        assert_eq!(other["data"]["merchantId"], "OTHER");
        for (status, code) in [
            (500, "INTERNAL_SERVER_ERROR"),
            (503, "INTERNAL_SERVER_ERROR"),
            (429, "TOO_MANY_REQUESTS"),
            (401, "AUTHORIZATION_FAILED"),
            (400, "BAD_REQUEST"),
        ] {
            let (s, body, c) = served(Answer::http_error(status));
            assert_eq!(
                (s, &body["code"], c.as_deref(), &body["success"]),
                (status, &json!(code), Some(code), &json!(false))
            );
            assert!(body.get("data").is_none(), "{status}: an error has no data");
        }
        let raw = Answer::raw("<html>").status(502).render("MERCHANTUAT", "ORD-1");
        assert_eq!(raw, (502, "<html>".to_string(), None), "a raw body is served verbatim");
    }

    #[test]
    fn validation_and_admin_json() {
        assert!(Answer::default().validate().is_err());
        assert!(Answer {
            state: Some(ScriptedState::Completed),
            ..Answer::default()
        }
        .validate()
        .is_err());
        assert!(Answer::http_error(700).validate().is_err());
        assert!(Answer::completed(1).validate().is_ok());
        let a: Answer =
            serde_json::from_str(r#"{"state":"NOT_FOUND","delayMs":5,"httpStatus":404,"merchantId":"M"}"#).unwrap();
        assert_eq!(a, Answer::not_found().delay(5).status(404).merchant("M"));
        assert!(serde_json::from_str::<Answer>(r#"{"state":"PAID"}"#).is_err());
        assert!(
            serde_json::from_str::<Answer>(r#"{"state":"FAILED","amuont":1}"#).is_err(),
            "typos are refused"
        );
    }

    #[test]
    fn repeated_answer_keeps_its_transaction_id() {
        let a = Answer::completed(5).with_fixed_ids();
        assert_eq!(a.render("M", "X").1, a.render("M", "X").1);
        assert!(a
            .transaction_id
            .as_deref()
            .is_some_and(|t| t.len() == 21 && t.starts_with('T')));
    }
}
