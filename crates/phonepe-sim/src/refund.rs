//! Refunds in the simulator: v1 `POST /pg/v1/refund` (status through the v1 status route with
//! the refund's id) and v2 `POST /payments/v2/refund`, `GET /payments/v2/refund/{id}/status`.
//!
//! A refund id seen twice never creates a second refund: [`SimState::refunds_created`] counts
//! refunds per id (0 or 1) and [`SimState::refund_requests`] counts the requests, so a test can
//! prove "exactly once". What a refund's status says is scripted with
//! [`SimState::script_refund`] (the last answer repeats; unscripted refunds complete); a
//! creation can be delayed past the client's timeout with [`SimState::delay_refund`] — the refund
//! is created before the delay, as a real PhonePe would have done. A v1 request must carry the
//! `X-VERIFY` PhonePe documents (sha256 of the base64 body, the path and the salt key); a v2
//! refund or refund-status request must carry a valid `Authorization: O-Bearer <token>`, checked
//! exactly as the v2 order-status route checks it (401 otherwise, counted in `TokenStats`).
//! [`SimState::refund_status_calls`] counts the status calls per refund (both APIs), so a test
//! can prove how often a refund's status was asked.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::state::SimState;
use crate::checksum::{self, REFUND_V1_PATH};

/// What a refund's status answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundAnswer {
    Completed,
    Pending,
    Failed,
}

impl RefundAnswer {
    fn v2_state(self) -> &'static str {
        match self {
            RefundAnswer::Completed => "COMPLETED",
            RefundAnswer::Pending => "PENDING",
            RefundAnswer::Failed => "FAILED",
        }
    }

    fn v1_code(self) -> &'static str {
        match self {
            RefundAnswer::Completed => "PAYMENT_SUCCESS",
            RefundAnswer::Pending => "PAYMENT_PENDING",
            RefundAnswer::Failed => "PAYMENT_ERROR",
        }
    }
}

#[derive(Default)]
pub(super) struct Refunds {
    /// refund id → (original transaction, amount) of the one refund made under it.
    made: HashMap<String, (String, i64)>,
    requests: HashMap<String, u32>,
    status_calls: HashMap<String, u32>,
    scripts: HashMap<String, (Vec<RefundAnswer>, usize)>,
    delays: HashMap<String, Duration>,
}

impl Refunds {
    /// The next scripted status of `id` (the last repeats), `None` when no refund has this id.
    fn status(&mut self, id: &str) -> Option<RefundAnswer> {
        self.made.get(id)?;
        *self.status_calls.entry(id.to_string()).or_default() += 1;
        let Some((answers, next)) = self.scripts.get_mut(id) else {
            return Some(RefundAnswer::Completed);
        };
        let i = (*next).min(answers.len().saturating_sub(1));
        *next = i + 1;
        answers.get(i).copied().or(Some(RefundAnswer::Completed))
    }

    /// Record a request; create the refund unless this id has one. The delay to answer after.
    fn request(&mut self, id: &str, original: &str, amount: i64) -> Duration {
        *self.requests.entry(id.to_string()).or_default() += 1;
        self.made
            .entry(id.to_string())
            .or_insert_with(|| (original.to_string(), amount));
        self.delays.remove(id).unwrap_or_default()
    }
}

impl SimState {
    /// Script what the status of refund `id` answers (in order, the last repeats).
    pub fn script_refund(&self, id: &str, answers: Vec<RefundAnswer>) {
        self.lock().refunds.scripts.insert(id.to_string(), (answers, 0));
    }

    /// Answer the next creation request of refund `id` only after `delay` (once).
    pub fn delay_refund(&self, id: &str, delay: Duration) {
        self.lock().refunds.delays.insert(id.to_string(), delay);
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

    /// The v1 status answer for `mtid` when it is a refund's id.
    pub(super) fn refund_status_v1(&self, mtid: &str) -> Option<Response> {
        let answer = self.lock().refunds.status(mtid)?;
        let success = answer != RefundAnswer::Failed;
        let body = json!({ "success": success, "code": answer.v1_code(), "message": "refund status",
            "data": { "merchantTransactionId": mtid, "state": answer.v2_state() } });
        Some((StatusCode::OK, Json(body)).into_response())
    }
}

fn bad_request(what: &str) -> Response {
    let body = json!({ "success": false, "code": "BAD_REQUEST", "message": what });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn accepted(delay: Duration, body: Value) -> Response {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (StatusCode::OK, Json(body)).into_response()
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
    let delay = state.lock().refunds.request(id, original, amount);
    let body = json!({ "success": true, "code": "PAYMENT_PENDING", "message": "refund accepted",
        "data": { "merchantTransactionId": id, "amount": amount, "state": "PENDING" } });
    accepted(delay, body).await
}

/// The 401 reply (after the simulator's latency, as the v2 status route sends it) when the
/// request has no valid v2 token.
async fn refuse_token(state: &SimState, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let reply = state.refuse_v2_token(authorization)?;
    Some(super::server::send(reply).await)
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
    let delay = state.lock().refunds.request(id, original, amount);
    accepted(
        delay,
        json!({ "refundId": format!("OMR{id}"), "amount": amount, "state": "PENDING" }),
    )
    .await
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
    match state.lock().refunds.status(&id) {
        Some(a) => (
            StatusCode::OK,
            Json(json!({ "merchantRefundId": id, "state": a.v2_state() })),
        )
            .into_response(),
        None => {
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
