//! The same scripted [`Answer`]s, rendered the API v2 way: the order-status JSON of
//! `GET /checkout/v2/order/{merchantOrderId}/status` (via [`crate::phonepe::wire_v2`]), v2 error
//! bodies, and the webhook bodies of both versions.
//!
//! v2 has no per-answer `code`: a business answer's root `state` is the scripted state, and an
//! answer's `code` (if set) becomes the failed attempt's `errorCode`. `NOT_FOUND` is HTTP 404
//! with code `ORDER_NOT_FOUND`. The order's `merchantId` is only in the answer when the script
//! overrides it (PhonePe's v2 answers need not carry it), so a merchant-mismatch scenario stays
//! a mismatch under v2.

use base64::Engine;
use serde_json::{json, Value};

use super::answer::{Answer, ScriptedState};
use crate::phonepe::wire_v2::{self, ErrorBody, OrderStatus, PaymentDetail};

impl Answer {
    /// The HTTP status, the body, and the code to record, for a v2 order-status call.
    pub(crate) fn render_v2(&self, mtid: &str) -> (u16, String, Option<String>) {
        if let Some(raw) = &self.raw_body {
            return (self.http_status.unwrap_or(200), raw.clone(), None);
        }
        match self.state {
            None => {
                let status = self.http_status.unwrap_or(500);
                let e = error_body_v2(status, self.code.as_deref());
                (status, to_json(&e), Some(e.code))
            }
            Some(ScriptedState::NotFound) => {
                let e = ErrorBody {
                    code: wire_v2::ORDER_NOT_FOUND.into(),
                    message: "No order found for the given merchantOrderId.".into(),
                };
                (self.http_status.unwrap_or(404), to_json(&e), Some(e.code))
            }
            Some(state) => {
                let order = self.order_status(state, mtid, self.merchant_id.clone());
                (self.http_status.unwrap_or(200), to_json(&order), Some(order.state))
            }
        }
    }

    /// The order as v2 describes it (`merchant_id` only when given).
    pub(crate) fn order_status(&self, state: ScriptedState, mtid: &str, merchant_id: Option<String>) -> OrderStatus {
        let state = match state {
            ScriptedState::Completed => wire_v2::states::COMPLETED,
            ScriptedState::Failed => wire_v2::states::FAILED,
            _ => wire_v2::states::PENDING,
        };
        let transaction_id = self.transaction_id.clone().unwrap_or_else(|| "T0".into());
        let error_code =
            (state == wire_v2::states::FAILED).then(|| self.code.clone().unwrap_or_else(|| "PAYMENT_ERROR".into()));
        OrderStatus {
            merchant_id,
            merchant_order_id: Some(mtid.into()),
            order_id: format!("OMO{}", transaction_id.trim_start_matches('T')),
            state: state.into(),
            amount: self.amount,
            expire_at: unix_ms() + 20 * 60 * 1000,
            error_code: error_code.clone(),
            payment_details: vec![PaymentDetail {
                transaction_id,
                payment_mode: "UPI_QR".into(),
                timestamp: unix_ms(),
                amount: self.amount,
                state: state.into(),
                error_code,
            }],
        }
    }

    /// A v2 webhook body, for a final state only (PhonePe does not call back on pending).
    pub(crate) fn webhook_v2_body(&self, merchant_id: &str, mtid: &str) -> Result<String, String> {
        let (event, kind) = match self.state {
            Some(ScriptedState::Completed) => ("checkout.order.completed", "CHECKOUT_ORDER_COMPLETED"),
            Some(ScriptedState::Failed) => ("checkout.order.failed", "CHECKOUT_ORDER_FAILED"),
            _ => return Err("a webhook needs a COMPLETED or FAILED answer".into()),
        };
        let state = self.state.unwrap_or(ScriptedState::Failed);
        let merchant = self.merchant_id.clone().unwrap_or_else(|| merchant_id.into());
        let payload = self.order_status(state, mtid, Some(merchant));
        Ok(to_json(&json!({"event": event, "type": kind, "payload": payload})))
    }

    /// A v1 webhook body `{"response": base64(status JSON)}` and the base64 text that is signed.
    pub(crate) fn webhook_v1_body(&self, merchant_id: &str, mtid: &str) -> Result<(String, String), String> {
        if !matches!(self.state, Some(ScriptedState::Completed | ScriptedState::Failed)) {
            return Err("a webhook needs a COMPLETED or FAILED answer".into());
        }
        let (_, status_json, _) = self.render(merchant_id, mtid);
        let encoded = base64::engine::general_purpose::STANDARD.encode(status_json.as_bytes());
        Ok((to_json(&json!({ "response": encoded })), encoded))
    }
}

/// A v2 error body for an HTTP error status.
pub(crate) fn error_body_v2(http_status: u16, code: Option<&str>) -> ErrorBody {
    let (default_code, message) = match http_status {
        401 => (wire_v2::AUTHORIZATION_FAILED, "Unauthorized"),
        429 => ("TOO_MANY_REQUESTS", "Too many requests. Please try again."),
        400..=499 => ("BAD_REQUEST", "Please check the inputs you have provided."),
        _ => ("INTERNAL_SERVER_ERROR", "Please try again in a while."),
    };
    ErrorBody {
        code: code.unwrap_or(default_code).to_string(),
        message: message.into(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| Value::Null.to_string())
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::Paise;
    use crate::domain::payment::{PaymentState, StatusError};
    use crate::phonepe::wire_v2::parse_order_status;

    fn served(a: Answer) -> Result<crate::domain::payment::StatusReport, StatusError> {
        let (status, body, _) = a.with_fixed_ids().render_v2("ORD-1");
        parse_order_status(status, body.as_bytes(), "ORD-1", "MERCHANTUAT")
    }

    #[test]
    fn every_scripted_state_reaches_the_v2_parser() {
        let r = served(Answer::completed(49900)).unwrap();
        assert_eq!(
            (r.state, r.amount, r.merchant_id.as_deref()),
            (PaymentState::Completed, Some(Paise(49900)), Some("MERCHANTUAT"))
        );
        assert_eq!(served(Answer::failed()).unwrap().state, PaymentState::Failed);
        assert_eq!(served(Answer::pending()).unwrap().state, PaymentState::Pending);
        assert_eq!(served(Answer::not_found()).unwrap().state, PaymentState::NotFound);
        let other = served(Answer::completed(1).merchant("OTHER")).unwrap();
        assert_eq!(other.merchant_id.as_deref(), Some("OTHER"));
        assert!(matches!(served(Answer::http_error(429)), Err(StatusError::RateLimited)));
        assert!(matches!(
            served(Answer::http_error(503)),
            Err(StatusError::Transient { .. })
        ));
        assert!(matches!(
            served(Answer::raw("<html>")),
            Err(StatusError::Transient { .. })
        ));
    }

    #[test]
    fn webhooks_only_for_final_states() {
        let a = Answer::completed(5).with_fixed_ids();
        let body: Value = serde_json::from_str(&a.webhook_v2_body("M", "ORD-1").unwrap()).unwrap();
        assert_eq!(body["event"], "checkout.order.completed");
        assert_eq!(body["payload"]["merchantId"], "M");
        assert_eq!(body["payload"]["merchantOrderId"], "ORD-1");
        assert_eq!(body["payload"]["amount"], 5);
        assert!(Answer::pending().webhook_v2_body("M", "X").is_err());
        let (v1, encoded) = Answer::failed().with_fixed_ids().webhook_v1_body("M", "ORD-1").unwrap();
        assert!(v1.contains(&encoded));
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert!(String::from_utf8(decoded).unwrap().contains("PAYMENT_ERROR"));
    }
}
