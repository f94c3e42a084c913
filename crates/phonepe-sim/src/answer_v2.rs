//! The same scripted [`Answer`]s, rendered the API v2 way: the order-status JSON of
//! `GET /checkout/v2/order/{merchantOrderId}/status` (`crate::wire::v2`), v2 error
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
use crate::wire::v2::{self as wire_v2, ErrorBody, OrderStatus, PaymentDetail};

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

    fn served(a: Answer) -> (u16, Value, Option<String>) {
        let (status, body, code) = a.with_fixed_ids().render_v2("ORD-1");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null), code)
    }

    /// Each scripted state as the SDK's `OrderStatusResponse` models it: root `state` and
    /// `amount`, the latest attempt in `paymentDetails`, `merchantId` only when scripted.
    /// (That the product's v2 client reads them so: tests/it/phonepe_v2.rs.)
    #[test]
    fn every_scripted_state_renders_the_documented_order_status() {
        let (status, paid, code) = served(Answer::completed(49900).transaction("T123"));
        assert_eq!((status, code.as_deref()), (200, Some("COMPLETED")));
        assert_eq!(
            (
                &paid["state"],
                &paid["amount"],
                &paid["merchantOrderId"],
                &paid["orderId"]
            ),
            (&json!("COMPLETED"), &json!(49900), &json!("ORD-1"), &json!("OMO123"))
        );
        assert!(
            paid.get("merchantId").is_none(),
            "PhonePe's v2 answers need not carry it"
        );
        assert!(paid["expireAt"].is_i64());
        let attempt = &paid["paymentDetails"][0];
        assert_eq!(
            (&attempt["transactionId"], &attempt["state"], &attempt["amount"]),
            (&json!("T123"), &json!("COMPLETED"), &json!(49900))
        );
        assert!(attempt["timestamp"].is_i64() && attempt.get("errorCode").is_none());
        let (_, failed, _) = served(Answer::failed().code("TIMED_OUT"));
        assert_eq!(
            (&failed["state"], &failed["errorCode"]),
            (&json!("FAILED"), &json!("TIMED_OUT"))
        );
        assert_eq!(failed["paymentDetails"][0]["errorCode"], "TIMED_OUT");
        assert_eq!(served(Answer::pending()).1["state"], "PENDING");
        let (status, unknown, code) = served(Answer::not_found());
        assert_eq!(
            (status, &unknown["code"], code.as_deref()),
            (404, &json!("ORDER_NOT_FOUND"), Some("ORDER_NOT_FOUND"))
        );
        assert_eq!(served(Answer::completed(1).merchant("OTHER")).1["merchantId"], "OTHER");
        for (status, code) in [
            (429, "TOO_MANY_REQUESTS"),
            (503, "INTERNAL_SERVER_ERROR"),
            (401, "AUTHORIZATION_FAILED"),
        ] {
            let (s, body, _) = served(Answer::http_error(status));
            assert_eq!((s, &body["code"]), (status, &json!(code)));
        }
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
