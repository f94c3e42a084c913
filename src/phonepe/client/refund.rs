//! Refund calls on the same [`PhonePeClient`] (docs/phonepe.md, "Callbacks and refunds"): v1
//! `POST /pg/v1/refund`, whose status is the v1 status API with the refund's own id; v2
//! `POST /payments/v2/refund` and `GET /payments/v2/refund/{merchantRefundId}/status`. What PhonePe
//! cannot take is refused before anything is sent ([`PhonePeClient::check_refund`]); an answer that
//! leaves the refund's fate open is never read as a refusal, since PhonePe may have started it.

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
/// The longest refund id PhonePe takes under v1 (`merchantTransactionId`).
pub const REFUND_ID_MAX_V1: usize = 35;
/// The longest refund id PhonePe takes under v2 (`merchantRefundId`).
pub const REFUND_ID_MAX_V2: usize = 63;
/// The smallest refund PhonePe takes, in paise.
pub const REFUND_MIN_PAISE: i64 = 100;

/// Where a refund stands at PhonePe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    Pending,
    Completed,
    Failed,
    /// PhonePe has no refund under this id (a status call only): the request never reached it.
    NotFound,
}

impl RefundState {
    /// The `code` label of the call that reported it.
    pub const fn code(self) -> &'static str {
        match self {
            RefundState::Pending => "PENDING",
            RefundState::Completed => "COMPLETED",
            RefundState::Failed => "FAILED",
            RefundState::NotFound => "NOT_FOUND",
        }
    }
}

/// One refund to ask for.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    /// The refund's own id, derived from the order (`store::refunds::refund_id`).
    pub refund_id: &'a str,
    /// The paid order's `merchantTransactionId`.
    pub original: &'a str,
    /// In paise.
    pub amount: i64,
    /// v1 only: PhonePe requires a callback URL; our poller does not rely on it.
    pub callback_url: &'a str,
}

fn invalid(code: &str) -> StatusError {
    // HTTP status 0: refused here, never sent.
    StatusError::Refused {
        code: code.into(),
        http_status: 0,
    }
}

impl PhonePeClient {
    /// Whether PhonePe can take this refund at all: `Refused` (HTTP status 0, nothing sent)
    /// with `INVALID_REFUND_ID`, `INVALID_ORIGINAL_ID` or `AMOUNT_BELOW_MINIMUM` otherwise.
    pub(in crate::phonepe) fn check_refund(&self, r: &RefundRequest<'_>) -> Result<(), StatusError> {
        let max = match self.api {
            Api::V1 { .. } => REFUND_ID_MAX_V1,
            Api::V2 { .. } => REFUND_ID_MAX_V2,
        };
        if r.refund_id.len() > max || MerchantTransactionId::parse(r.refund_id).is_err() {
            return Err(invalid("INVALID_REFUND_ID"));
        }
        if MerchantTransactionId::parse(r.original).is_err() {
            return Err(invalid("INVALID_ORIGINAL_ID"));
        }
        if r.amount < REFUND_MIN_PAISE {
            return Err(invalid("AMOUNT_BELOW_MINIMUM"));
        }
        Ok(())
    }

    /// Ask PhonePe to refund (checked first by [`PhonePeClient::check_refund`]).
    pub(in crate::phonepe) async fn refund(&self, r: &RefundRequest<'_>) -> Result<RefundState, StatusError> {
        self.check_refund(r)?;
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
    pub(in crate::phonepe) async fn refund_status(&self, refund_id: &str) -> Result<RefundState, StatusError> {
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
        parse_refund_status(http_status, &body)
    }
}

fn log_id(refund_id: &str) -> Result<MerchantTransactionId, StatusError> {
    MerchantTransactionId::parse(refund_id).map_err(|_| invalid("INVALID_REFUND_ID"))
}

/// The answer's `code` (v1 and v2 error bodies), `""` when there is none.
fn code_of(v: &Value) -> String {
    v.get("code").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// What any refund answer says before its state is read: `Err` for a rate limit, rejected
/// credentials, a server error and the codes that mean the same at any HTTP status.
fn classify_errors(http_status: u16, code: &str) -> Result<(), StatusError> {
    match (http_status, code) {
        (429, _) | (_, "TOO_MANY_REQUESTS") => Err(StatusError::RateLimited),
        (401, _) | (_, "AUTHORIZATION_FAILED") => Err(StatusError::Rejected {
            code: if code.is_empty() {
                "AUTHORIZATION_FAILED".into()
            } else {
                code.into()
            },
            http_status,
        }),
        (500.., _) | (_, "INTERNAL_SERVER_ERROR") => Err(StatusError::Transient {
            kind: TransientKind::Server,
            detail: format!("HTTP {http_status} on a refund call"),
        }),
        _ => Ok(()),
    }
}

fn unreadable(http_status: u16, code: &str) -> StatusError {
    StatusError::Transient {
        kind: TransientKind::Malformed,
        detail: format!(
            "unreadable refund answer (HTTP {http_status}, code {})",
            crate::phonepe::wire::loggable_code(code)
        ),
    }
}

/// A refusal with PhonePe's code, when it looks like a code (it is stored and used as a label).
fn refused(code: &str, http_status: u16) -> StatusError {
    let looks = crate::phonepe::wire::loggable_code(code) == code;
    StatusError::Refused {
        code: if looks { code } else { "REFUSED" }.to_string(),
        http_status,
    }
}

/// The state a 2xx refund answer reports (v1 `code` / `data.state`, v2 `state`).
fn state_of(v: &Value, code: &str) -> Option<RefundState> {
    let state = v
        .get("state")
        .or_else(|| v.pointer("/data/state"))
        .and_then(Value::as_str);
    match (state, code) {
        (Some("COMPLETED"), _) | (None, "PAYMENT_SUCCESS") => Some(RefundState::Completed),
        (Some("FAILED"), _) | (None, "PAYMENT_ERROR") => Some(RefundState::Failed),
        // TIMED_OUT: "the refund might get initiated" (PhonePe): open, never a failure.
        (Some("PENDING" | "CONFIRMED"), _) | (None, "PAYMENT_PENDING" | "TIMED_OUT") => Some(RefundState::Pending),
        _ => None,
    }
}

/// PhonePe's answer to a refund request. A 4xx carrying a code (`BAD_REQUEST`,
/// `TRANSACTION_NOT_FOUND` for the original payment, `REVERSAL_WINDOW_EXCEEDED`, ...) refuses
/// the refund; a 4xx without a JSON code (a proxy's page, a wrong URL) says nothing about it.
pub fn parse_refund(http_status: u16, body: &[u8]) -> Result<RefundState, StatusError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = code_of(&v);
    classify_errors(http_status, &code)?;
    let refusal = matches!(
        code.as_str(),
        "BAD_REQUEST" | "TRANSACTION_NOT_FOUND" | "REVERSAL_WINDOW_EXCEEDED"
    );
    match http_status {
        400..=499 if !code.is_empty() => return Err(refused(&code, http_status)),
        400..=499 => return Err(unreadable(http_status, &code)),
        _ if refusal => return Err(refused(&code, http_status)),
        _ => {}
    }
    state_of(&v, &code).ok_or_else(|| unreadable(http_status, &code))
}

/// PhonePe's answer about a refund's status. No refund under the id (v1
/// `TRANSACTION_NOT_FOUND`, v2 HTTP 404 with a code) is [`RefundState::NotFound`]; any other
/// 4xx is transient: a status call PhonePe refuses says nothing about the refund.
pub fn parse_refund_status(http_status: u16, body: &[u8]) -> Result<RefundState, StatusError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = code_of(&v);
    classify_errors(http_status, &code)?;
    if code == "TRANSACTION_NOT_FOUND" || (http_status == 404 && !code.is_empty()) {
        return Ok(RefundState::NotFound);
    }
    if !(200..300).contains(&http_status) {
        return Err(unreadable(http_status, &code));
    }
    state_of(&v, &code).ok_or_else(|| unreadable(http_status, &code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PhonePeSettings;
    use crate::phonepe::V2Credentials;
    use secrecy::SecretString;

    fn clients() -> (PhonePeClient, PhonePeClient) {
        let settings = PhonePeSettings {
            base_url: "http://127.0.0.1:1".into(),
            merchant_id: "MERCHANTUAT".into(),
            salt_key: Some(SecretString::from("test-salt-key")),
            salt_index: Some(1),
            request_timeout: std::time::Duration::from_secs(1),
            api_version: Default::default(),
            client_id: None,
            client_secret: None,
            client_version: None,
            oauth_base_url: String::new(),
        };
        let creds = V2Credentials {
            client_id: "TESTCLIENT".into(),
            client_secret: SecretString::from("test-client-secret"),
            client_version: "1".into(),
            oauth_base_url: "http://127.0.0.1:1".into(),
        };
        let v1 = PhonePeClient::new(&settings).expect("v1");
        (v1, PhonePeClient::new_v2(&settings, creds).expect("v2"))
    }

    /// What PhonePe cannot take is refused before sending: ids over 35 characters under v1 (63
    /// under v2) or outside its alphabet, and less than 100 paise.
    #[test]
    fn refunds_phonepe_cannot_take_are_refused_before_sending() {
        let (v1, v2) = clients();
        let req = |id: &'static str, amount| RefundRequest {
            refund_id: id,
            original: "ORD-1",
            amount,
            callback_url: "",
        };
        let code = |r: Result<(), StatusError>| match r {
            Ok(()) => "ok".to_string(),
            Err(StatusError::Refused { code, http_status: 0 }) => code,
            Err(other) => panic!("{other:?}"),
        };
        let id35 = "R2345678901234567890123456789012345";
        let id36 = "R23456789012345678901234567890123456";
        let id63 = "R23456789012345678901234567890123456789012345678901234567890123";
        let id64 = "R234567890123456789012345678901234567890123456789012345678901234";
        assert_eq!((id35.len(), id36.len(), id63.len(), id64.len()), (35, 36, 63, 64));
        assert_eq!(code(v1.check_refund(&req(id35, 100))), "ok");
        assert_eq!(code(v1.check_refund(&req(id36, 100))), "INVALID_REFUND_ID");
        assert_eq!(code(v2.check_refund(&req(id63, 100))), "ok");
        assert_eq!(code(v2.check_refund(&req(id64, 100))), "INVALID_REFUND_ID");
        assert_eq!(code(v1.check_refund(&req("R 1", 100))), "INVALID_REFUND_ID");
        assert_eq!(code(v1.check_refund(&req("R-1", 99))), "AMOUNT_BELOW_MINIMUM");
        let bad_original = RefundRequest {
            original: "ORD 1",
            ..req("R-1", 100)
        };
        assert_eq!(code(v1.check_refund(&bad_original)), "INVALID_ORIGINAL_ID");
    }

    #[test]
    fn answers_to_a_refund_request() {
        assert_eq!(
            parse_refund(200, br#"{"state":"PENDING"}"#).unwrap(),
            RefundState::Pending
        );
        assert_eq!(
            parse_refund(200, br#"{"code":"PAYMENT_PENDING","data":{"state":"PENDING"}}"#).unwrap(),
            RefundState::Pending
        );
        assert_eq!(
            parse_refund(200, br#"{"success":false,"code":"TIMED_OUT"}"#).unwrap(),
            RefundState::Pending,
            "a timed-out refund may still be made: never a failure"
        );
        for (status, body) in [
            (400, r#"{"code":"BAD_REQUEST"}"#),
            (200, r#"{"success":false,"code":"BAD_REQUEST"}"#),
            (200, r#"{"success":false,"code":"TRANSACTION_NOT_FOUND"}"#),
            (400, r#"{"code":"REVERSAL_WINDOW_EXCEEDED"}"#),
            (409, r#"{"code":"SOMETHING_ELSE"}"#),
        ] {
            assert!(
                matches!(parse_refund(status, body.as_bytes()), Err(StatusError::Refused { .. })),
                "{status} {body}"
            );
        }
        // PhonePe's code is kept when it looks like one (it is stored and used as a label).
        let refusal = |status, body: &str| match parse_refund(status, body.as_bytes()) {
            Err(StatusError::Refused { code, .. }) => code,
            other => panic!("{status} {body}: {other:?}"),
        };
        assert_eq!(refusal(400, r#"{"code":"BAD_REQUEST"}"#), "BAD_REQUEST");
        assert_eq!(refusal(400, r#"{"code":"call +91 98000"}"#), "REFUSED");
        assert_eq!(parse_refund(429, b""), Err(StatusError::RateLimited));
        assert!(matches!(parse_refund(401, b"{}"), Err(StatusError::Rejected { .. })));
        for (status, body, kind) in [
            (503, "", TransientKind::Server),
            (500, r#"{"code":"BAD_REQUEST"}"#, TransientKind::Server),
            (
                200,
                r#"{"success":false,"code":"INTERNAL_SERVER_ERROR"}"#,
                TransientKind::Server,
            ),
            (200, "{}", TransientKind::Malformed),
            (404, "<html>not found</html>", TransientKind::Malformed),
            (404, r#"{"state":"COMPLETED"}"#, TransientKind::Malformed),
        ] {
            let answer = parse_refund(status, body.as_bytes());
            assert!(
                matches!(answer, Err(StatusError::Transient { kind: k, .. }) if k == kind),
                "{status} {body}: the refund's fate stays open ({kind:?}): {answer:?}"
            );
        }
    }

    #[test]
    fn answers_about_a_refunds_status() {
        assert_eq!(
            parse_refund_status(200, br#"{"state":"COMPLETED"}"#).unwrap(),
            RefundState::Completed
        );
        assert_eq!(
            parse_refund_status(200, br#"{"code":"PAYMENT_ERROR","data":{"state":"FAILED"}}"#).unwrap(),
            RefundState::Failed
        );
        assert_eq!(
            parse_refund_status(200, br#"{"success":false,"code":"TRANSACTION_NOT_FOUND"}"#).unwrap(),
            RefundState::NotFound
        );
        assert_eq!(
            parse_refund_status(404, br#"{"code":"NOT_FOUND"}"#).unwrap(),
            RefundState::NotFound
        );
        assert!(matches!(
            parse_refund_status(404, b"<html/>"),
            Err(StatusError::Transient { .. })
        ));
        assert!(matches!(
            parse_refund_status(400, br#"{"code":"BAD_REQUEST"}"#),
            Err(StatusError::Transient { .. })
        ));
    }
}
