//! Refunds in the simulator (docs/phonepe.md, "phonepe-sim"): v1 `POST /pg/v1/refund` (its status
//! through the v1 status route with the refund's id) and v2 `POST /payments/v2/refund`,
//! `GET /payments/v2/refund/{id}/status`, checked as PhonePe checks them (`X-VERIFY`, the v2 token,
//! PhonePe's limits on ids and amounts). One refund per id however often it is asked; what each
//! refund answers or fails with is scripted per id on [`SimState`] and kept in `ledger.rs`, so a
//! test can prove "exactly once" and how often a status was asked.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::answer::error_response;
use super::answer_v2::error_body_v2;
use super::ledger::{Decided, RefundAnswer};
use super::reply::send;
use super::state::{unix_ms, SimState};
use super::v2::Webhook;
use crate::checksum::{self, REFUND_V1_PATH};

/// PhonePe's limits on a refund (its API reference): the smallest amount, and the longest
/// refund id under v1 (a `merchantTransactionId`) and v2 (a `merchantRefundId`).
const REFUND_MIN_PAISE: i64 = 100;
const REFUND_ID_MAX_V1: usize = 35;
const REFUND_ID_MAX_V2: usize = 63;

impl SimState {
    /// Script what the status of refund `id` answers (in order, the last repeats).
    pub fn script_refund(&self, id: &str, answers: Vec<RefundAnswer>) {
        self.lock().refunds.scripts.insert(id.to_string(), (answers, 0));
    }

    /// Answer the next creation request of refund `id` only after `delay` (once).
    pub fn delay_refund(&self, id: &str, delay: Duration) {
        self.lock().refunds.delays.insert(id.to_string(), delay);
    }

    /// Refuse every request of refund `id` with PhonePe's `code` (HTTP 400; no refund made).
    pub fn refuse_refund(&self, id: &str, code: &str) {
        self.lock().refunds.refusals.insert(id.to_string(), code.to_string());
    }

    /// Answer every call about refund `id` (request and status) with HTTP `status` and PhonePe's
    /// error body, until `None`.
    pub fn fail_refund_calls(&self, id: &str, status: Option<u16>) {
        let failures = &mut self.lock().refunds.failures;
        match status {
            Some(s) => failures.insert(id.to_string(), s),
            None => failures.remove(id),
        };
    }

    /// Answer the next status call about refund `id` only after `delay` (once).
    pub fn delay_refund_status(&self, id: &str, delay: Duration) {
        self.lock().refunds.status_delays.insert(id.to_string(), delay);
    }

    /// The v2 callback PhonePe sends when refund `id` ends (`Completed` or `Failed`), signed with
    /// the dashboard credentials; `Err` when no refund has this id.
    pub fn refund_webhook(&self, id: &str, answer: RefundAnswer) -> Result<Webhook, String> {
        let inner = self.lock();
        let (original, amount) = inner.refunds.made.get(id).ok_or_else(|| format!("no refund {id}"))?;
        let (event, kind) = match answer {
            RefundAnswer::Completed => ("pg.refund.completed", "PG_REFUND_COMPLETED"),
            RefundAnswer::Failed => ("pg.refund.failed", "PG_REFUND_FAILED"),
            RefundAnswer::Pending => ("pg.refund.accepted", "PG_REFUND_ACCEPTED"),
        };
        let body = json!({ "event": event, "type": kind, "payload": {
            "merchantId": inner.cfg.merchant_id, "merchantRefundId": id, "originalMerchantOrderId": original,
            "refundId": format!("OMR{id}"), "state": answer.v2_state(), "amount": amount,
            "timestamp": unix_ms(), "errorCode": (answer == RefundAnswer::Failed).then_some("REFUND_FAILED"),
        }});
        let v2 = &inner.v2;
        Ok(Webhook {
            headers: vec![(
                "Authorization".into(),
                checksum::webhook_v2_authorization(&v2.webhook_username, &v2.webhook_password),
            )],
            body: body.to_string(),
        })
    }

    /// How many refunds exist under `id`: 0 or 1, however often it was requested.
    pub fn refunds_created(&self, id: &str) -> usize {
        usize::from(self.lock().refunds.made.contains_key(id))
    }

    /// The amount (paise) of the refund made under `id`.
    pub fn refund_amount(&self, id: &str) -> Option<i64> {
        self.lock().refunds.made.get(id).map(|(_, a)| *a)
    }

    /// How many creation requests named `id`.
    pub fn refund_requests(&self, id: &str) -> u32 {
        self.lock().refunds.requests.get(id).copied().unwrap_or(0)
    }

    /// How many status calls (v1 or v2) asked about the refund `id`.
    pub fn refund_status_calls(&self, id: &str) -> u32 {
        self.lock().refunds.status_calls.get(id).copied().unwrap_or(0)
    }

    /// The v1 status answer for `mtid` when it is a refund's id (or one whose calls fail).
    pub(super) async fn refund_status_v1(&self, mtid: &str) -> Option<Response> {
        let decided = self.lock().refunds.status(mtid);
        match decided {
            Decided::Unknown => None,
            Decided::Error(status, code) => Some(v1_error(status, code.as_deref())),
            Decided::Answer(answer, delay) => {
                let success = answer != RefundAnswer::Failed;
                let body = json!({ "success": success, "code": answer.v1_code(), "message": "refund status",
                    "data": { "merchantTransactionId": mtid, "state": answer.v2_state() } });
                Some(after(delay, StatusCode::OK, body).await)
            }
        }
    }
}

fn v1_error(status: u16, code: Option<&str>) -> Response {
    let body = serde_json::to_value(error_response(status, code)).unwrap_or_default();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn v2_error(status: u16, code: Option<&str>) -> Response {
    let body = serde_json::to_value(error_body_v2(status, code)).unwrap_or_default();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

async fn after(delay: Duration, status: StatusCode, body: Value) -> Response {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (status, Json(body)).into_response()
}

/// PhonePe's limits on a refund request: the id at most `max` characters of letters, digits,
/// `_` and `-` (35 under v1, 63 under v2), at least 100 paise.
fn takes(id: &str, max: usize, amount: i64) -> Result<(), &'static str> {
    let alphabet = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if id.is_empty() || id.len() > max || !alphabet {
        return Err("the refund id is too long or has characters PhonePe does not take");
    }
    if amount < REFUND_MIN_PAISE {
        return Err("the amount is below the minimum of 100 paise");
    }
    Ok(())
}

fn bad_request(what: &str) -> Response {
    let body = json!({ "success": false, "code": "BAD_REQUEST", "message": what });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// v1 `POST /pg/v1/refund`, body `{"request": base64(JSON)}`.
pub(super) async fn refund_v1(State(state): State<SimState>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let b64 = body.get("request").and_then(Value::as_str).unwrap_or_default();
    let cfg = state.config();
    let x_verify = headers
        .get("x-verify")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signed = format!("{b64}{REFUND_V1_PATH}");
    if !checksum::verify(x_verify, &signed, &cfg.salt_key, cfg.salt_index) {
        let body = json!({ "success": false, "code": "AUTHORIZATION_FAILED", "message": "X-VERIFY" });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let decoded = Some(b64)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(req) = decoded else {
        return bad_request("request is not base64 JSON");
    };
    let (Some(id), Some(original), Some(amount)) = (
        req.get("merchantTransactionId").and_then(Value::as_str),
        req.get("originalTransactionId").and_then(Value::as_str),
        req.get("amount").and_then(Value::as_i64),
    ) else {
        return bad_request("merchantTransactionId, originalTransactionId and amount are required");
    };
    if let Err(why) = takes(id, REFUND_ID_MAX_V1, amount) {
        *state.lock().refunds.requests.entry(id.to_string()).or_default() += 1;
        return bad_request(why);
    }
    let decided = state.lock().refunds.request(id, original, amount);
    let delay = match decided {
        Decided::Error(status, code) => return v1_error(status, code.as_deref()),
        Decided::Answer(_, delay) => delay,
        Decided::Unknown => Duration::ZERO,
    };
    let body = json!({ "success": true, "code": "PAYMENT_PENDING", "message": "refund accepted",
        "data": { "merchantTransactionId": id, "amount": amount, "state": "PENDING" } });
    after(delay, StatusCode::OK, body).await
}

/// The 401 reply (after the simulator's latency, as the v2 status route sends it) when the
/// request has no valid v2 token.
async fn refuse_token(state: &SimState, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let reply = state.refuse_v2_token(authorization)?;
    Some(send(reply).await)
}

/// v2 `POST /payments/v2/refund`.
pub(super) async fn refund_v2(State(state): State<SimState>, headers: HeaderMap, Json(req): Json<Value>) -> Response {
    if let Some(refused) = refuse_token(&state, &headers).await {
        return refused;
    }
    let (Some(id), Some(original), Some(amount)) = (
        req.get("merchantRefundId").and_then(Value::as_str),
        req.get("originalMerchantOrderId").and_then(Value::as_str),
        req.get("amount").and_then(Value::as_i64),
    ) else {
        return bad_request("merchantRefundId, originalMerchantOrderId and amount are required");
    };
    if let Err(why) = takes(id, REFUND_ID_MAX_V2, amount) {
        *state.lock().refunds.requests.entry(id.to_string()).or_default() += 1;
        return bad_request(why);
    }
    let decided = state.lock().refunds.request(id, original, amount);
    let delay = match decided {
        Decided::Error(status, code) => return v2_error(status, code.as_deref()),
        Decided::Answer(_, delay) => delay,
        Decided::Unknown => Duration::ZERO,
    };
    let body = json!({ "refundId": format!("OMR{id}"), "amount": amount, "state": "PENDING" });
    after(delay, StatusCode::OK, body).await
}

/// v2 `GET /payments/v2/refund/{id}/status`.
pub(super) async fn refund_status_v2(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse_token(&state, &headers).await {
        return refused;
    }
    let decided = state.lock().refunds.status(&id);
    match decided {
        Decided::Answer(a, delay) => {
            let body = json!({ "merchantRefundId": id, "state": a.v2_state() });
            after(delay, StatusCode::OK, body).await
        }
        Decided::Error(status, code) => v2_error(status, code.as_deref()),
        Decided::Unknown => {
            let body = json!({ "code": "NOT_FOUND", "message": "no refund with this id" });
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::v2::TokenForm;
    use super::super::{SimConfig, SimHandle};
    use super::*;

    /// The v2 refund routes check the OAuth token as the v2 status route does: none, a forged
    /// one or a revoked one gets 401 and makes no refund; a valid one is served.
    #[tokio::test]
    async fn v2_refund_routes_need_a_valid_token() {
        let sim = SimHandle::spawn(SimConfig::default()).expect("sim");
        let form = TokenForm {
            client_id: "TESTCLIENT".into(),
            client_secret: "test-client-secret".into(),
            client_version: "1".into(),
            grant_type: "client_credentials".into(),
        };
        let issued: Value = serde_json::from_str(&sim.state().issue_token(&form).body).expect("token");
        let valid = format!("O-Bearer {}", issued["access_token"].as_str().expect("token"));
        let http = reqwest::Client::new();
        let body = json!({ "merchantRefundId": "R-1", "originalMerchantOrderId": "ORD-1", "amount": 100 });
        let refund = |auth: Option<&str>| {
            let mut r = http.post(format!("{}/payments/v2/refund", sim.base_url())).json(&body);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send()
        };
        let status = |auth: &str| {
            http.get(format!("{}/payments/v2/refund/R-1/status", sim.base_url()))
                .header("Authorization", auth)
                .send()
        };
        for auth in [None, Some("O-Bearer forged"), Some("Bearer x")] {
            let r = refund(auth).await.expect("send");
            assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        }
        assert_eq!(sim.state().refunds_created("R-1"), 0, "refused requests make no refund");
        assert_eq!(refund(Some(&valid)).await.expect("send").status().as_u16(), 200);
        assert_eq!(sim.state().refunds_created("R-1"), 1);
        assert_eq!(status("O-Bearer forged").await.expect("send").status().as_u16(), 401);
        assert_eq!(status(&valid).await.expect("send").status().as_u16(), 200);
        assert_eq!(
            sim.state().refund_status_calls("R-1"),
            1,
            "a refused status call is not served"
        );
        sim.state().revoke_tokens();
        assert_eq!(status(&valid).await.expect("send").status().as_u16(), 401);
        assert_eq!(sim.state().token_stats().unknown_used, 5);
    }
}
