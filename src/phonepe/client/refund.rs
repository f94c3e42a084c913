//! Refund calls on the same [`PhonePeClient`] (and the same authentication, [`Api`]):
//! v1 `POST /pg/v1/refund` (body `{"request": base64(JSON)}`, `X-VERIFY` over the base64 body and
//! the path) whose status is the v1 status API with the refund's own id; v2
//! `POST /payments/v2/refund` and `GET /payments/v2/refund/{merchantRefundId}/status`.
//!
//! A refund is identified by its own id (`merchantTransactionId` under v1, `merchantRefundId`
//! under v2), which the caller derives from the order: PhonePe makes one refund per id, so a
//! retry after a timeout cannot refund twice. Every failure is a [`StatusError`], like the status
//! call's: a transient one means "ask again with the same id".

use base64::Engine;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{Api, PhonePeClient};
use crate::domain::order::MerchantTransactionId;
use crate::domain::payment::{StatusError, TransientKind};
use crate::phonepe::checksum;

/// The v1 refund API path (hashed into `X-VERIFY` after the base64 body).
pub const REFUND_V1_PATH: &str = "/pg/v1/refund";
/// The v2 refund API path.
pub const REFUND_V2_PATH: &str = "/payments/v2/refund";

/// Where a refund stands at PhonePe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    Pending,
    Completed,
    Failed,
}

/// One refund to ask for.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    /// The refund's own id, derived from the order (`<mtid>-R1`).
    pub refund_id: &'a str,
    /// The paid order's `merchantTransactionId`.
    pub original: &'a str,
    /// In paise.
    pub amount: i64,
    /// v1 only: PhonePe requires a callback URL; our poller does not rely on it.
    pub callback_url: &'a str,
}

impl PhonePeClient {
    /// Ask PhonePe to refund; the same `refund_id` never creates a second refund.
    pub async fn refund(&self, r: &RefundRequest<'_>) -> Result<RefundState, StatusError> {
        let id = log_id(r.refund_id)?;
        let (http_status, body) = match &self.api {
            Api::V1 { salt_key, salt_index } => {
                let payload = json!({
                    "merchantId": self.merchant_id, "merchantUserId": self.merchant_id,
                    "originalTransactionId": r.original, "merchantTransactionId": r.refund_id,
                    "amount": r.amount, "callbackUrl": r.callback_url,
                });
                let b64 = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
                let x_verify =
                    checksum::x_verify(&format!("{b64}{REFUND_V1_PATH}"), salt_key.expose_secret(), *salt_index);
                let request = self
                    .http
                    .post(format!("{}{REFUND_V1_PATH}", self.base_url))
                    .header("X-VERIFY", x_verify)
                    .json(&json!({ "request": b64 }));
                self.send(request, &id).await?
            }
            Api::V2 { tokens } => {
                let url = format!("{}{REFUND_V2_PATH}", self.base_url);
                let body = json!({ "merchantRefundId": r.refund_id, "originalMerchantOrderId": r.original, "amount": r.amount });
                self.send_with_token(tokens, &id, |token| {
                    self.http
                        .post(&url)
                        .header(reqwest::header::AUTHORIZATION, token.authorization())
                        .json(&body)
                })
                .await?
            }
        };
        parse_refund(http_status, &body)
    }

    /// Where refund `refund_id` stands now.
    pub async fn refund_status(&self, refund_id: &str) -> Result<RefundState, StatusError> {
        let id = log_id(refund_id)?;
        let (http_status, body) = match &self.api {
            Api::V1 { salt_key, salt_index } => {
                let path = checksum::status_path(&self.merchant_id, refund_id);
                let request = self
                    .http
                    .get(format!("{}{}", self.base_url, path))
                    .header("X-MERCHANT-ID", &self.merchant_id)
                    .header(
                        "X-VERIFY",
                        checksum::x_verify(&path, salt_key.expose_secret(), *salt_index),
                    );
                self.send(request, &id).await?
            }
            Api::V2 { tokens } => {
                let url = format!("{}{REFUND_V2_PATH}/{refund_id}/status", self.base_url);
                self.send_with_token(tokens, &id, |token| {
                    self.http
                        .get(&url)
                        .header(reqwest::header::AUTHORIZATION, token.authorization())
                })
                .await?
            }
        };
        parse_refund(http_status, &body)
    }
}

fn log_id(refund_id: &str) -> Result<MerchantTransactionId, StatusError> {
    MerchantTransactionId::parse(refund_id).map_err(|_| StatusError::Refused {
        code: "INVALID_REFUND_ID".into(),
        http_status: 0,
    })
}

/// PhonePe's answer about a refund (v1: `code` and `data.state`; v2: `state`).
pub fn parse_refund(http_status: u16, body: &[u8]) -> Result<RefundState, StatusError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v.get("code").and_then(Value::as_str).unwrap_or_default().to_string();
    match http_status {
        429 => return Err(StatusError::RateLimited),
        401 => return Err(StatusError::Rejected { code, http_status }),
        500.. => {
            return Err(StatusError::Transient {
                kind: TransientKind::Server,
                detail: format!("HTTP {http_status} on a refund call"),
            })
        }
        400..=499 => return Err(StatusError::Refused { code, http_status }),
        _ => {}
    }
    let state = v
        .get("state")
        .or_else(|| v.pointer("/data/state"))
        .and_then(Value::as_str);
    match (state, code.as_str()) {
        (Some("COMPLETED"), _) | (None, "PAYMENT_SUCCESS") => Ok(RefundState::Completed),
        (Some("FAILED"), _) | (None, "PAYMENT_ERROR") => Ok(RefundState::Failed),
        (Some("PENDING" | "CONFIRMED"), _) | (None, "PAYMENT_PENDING") => Ok(RefundState::Pending),
        _ => Err(StatusError::Transient {
            kind: TransientKind::Malformed,
            detail: format!("unreadable refund answer (HTTP {http_status}, code {code:?})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_refund_states() {
        assert_eq!(
            parse_refund(200, br#"{"state":"COMPLETED"}"#).unwrap(),
            RefundState::Completed
        );
        assert_eq!(
            parse_refund(200, br#"{"state":"FAILED"}"#).unwrap(),
            RefundState::Failed
        );
        assert_eq!(
            parse_refund(200, br#"{"code":"PAYMENT_PENDING","data":{"state":"PENDING"}}"#).unwrap(),
            RefundState::Pending
        );
        assert!(matches!(parse_refund(503, b""), Err(StatusError::Transient { .. })));
        assert!(matches!(parse_refund(200, b"{}"), Err(StatusError::Transient { .. })));
        assert!(matches!(parse_refund(400, b"{}"), Err(StatusError::Refused { .. })));
    }
}
