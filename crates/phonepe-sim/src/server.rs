//! The simulator's routes: PhonePe's under the configured prefix, the admin API under `/__sim/`
//! (docs/phonepe.md, "phonepe-sim"). Handlers are thin: [`SimState`] decides everything under its
//! lock, and the reply is sent after its delay with no lock held (`reply.rs`).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::answer::Answer;
use super::reply::send;
use super::state::{ConfigPatch, Request, SimState};
use super::v2::{deliver, TokenForm, WebhookVersion};

/// Serve the simulator on `listener` until the future is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: SimState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// The simulator's routes (exposed for embedding it in another axum app).
pub fn router(state: SimState) -> Router {
    let prefix = state.config().path_prefix;
    let status_route = format!("{prefix}/pg/v1/status/{{merchant_id}}/{{mtid}}");
    Router::new()
        .route(&status_route, get(status))
        .route(&format!("{prefix}/v1/oauth/token"), post(token))
        .route(&format!("{prefix}/checkout/v2/order/{{mtid}}/status"), get(status_v2))
        .route(&format!("{prefix}/pg/v1/refund"), post(super::refund::refund_v1))
        .route(&format!("{prefix}/payments/v2/refund"), post(super::refund::refund_v2))
        .route(
            &format!("{prefix}/payments/v2/refund/{{id}}/status"),
            get(super::refund::refund_status_v2),
        )
        .route("/__sim/tokens", get(get_tokens).delete(delete_tokens))
        .route("/__sim/webhooks", post(post_webhook))
        .route("/__sim/transactions/{mtid}", put(put_script))
        .route("/__sim/calls", get(get_calls).delete(delete_calls))
        .route("/__sim/config", get(get_config).put(put_config))
        .route("/__sim/health", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state)
}

async fn status(
    State(state): State<SimState>,
    Path((merchant_id, mtid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refund) = state.refund_status_v1(&mtid).await {
        return refund;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let reply = state.answer(Request {
        path_merchant_id: &merchant_id,
        mtid: &mtid,
        header_merchant_id: header("x-merchant-id"),
        x_verify: header("x-verify"),
    });
    send(reply).await
}

/// `POST {prefix}/v1/oauth/token`, form-encoded.
async fn token(State(state): State<SimState>, body: String) -> Response {
    send(state.issue_token(&TokenForm::parse(&body))).await
}

async fn status_v2(State(state): State<SimState>, Path(mtid): Path<String>, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let reply = state.answer_v2(&mtid, authorization);
    send(reply).await
}

async fn get_tokens(State(state): State<SimState>) -> Response {
    Json(state.token_stats()).into_response()
}

async fn delete_tokens(State(state): State<SimState>) -> StatusCode {
    state.revoke_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookRequest {
    url: String,
    merchant_transaction_id: String,
    version: WebhookVersion,
    /// Describe this answer instead of the transaction's scripted next one.
    #[serde(default)]
    answer: Option<Answer>,
}

/// `POST /__sim/webhooks`: send the webhook PhonePe would send; answers the receiver's status.
async fn post_webhook(State(state): State<SimState>, Json(req): Json<WebhookRequest>) -> Response {
    let webhook = match state.webhook(&req.merchant_transaction_id, req.version, req.answer) {
        Ok(w) => w,
        Err(error) => return (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response(),
    };
    match deliver(&req.url, &webhook).await {
        Ok(status) => Json(json!({"deliveredStatus": status})).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, Json(json!({"error": error}))).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptBody {
    answers: Vec<Answer>,
}

async fn put_script(State(state): State<SimState>, Path(mtid): Path<String>, Json(body): Json<ScriptBody>) -> Response {
    let count = body.answers.len();
    match state.script(&mtid, body.answers) {
        Ok(()) => Json(json!({"merchantTransactionId": mtid, "answers": count})).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response(),
    }
}

async fn get_calls(State(state): State<SimState>) -> Response {
    Json(state.calls()).into_response()
}

async fn delete_calls(State(state): State<SimState>) -> StatusCode {
    state.clear_calls();
    StatusCode::NO_CONTENT
}

/// The configuration as the admin API shows it (never the salt key).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigView {
    merchant_id: String,
    salt_index: u32,
    path_prefix: String,
    rate_limit_per_minute: Option<u32>,
    latency_ms: u64,
    client_id: String,
    client_version: String,
    token_lifetime_secs: u64,
    webhook_username: String,
}

async fn get_config(State(state): State<SimState>) -> Json<ConfigView> {
    let cfg = state.config();
    let v2 = state.v2_config();
    Json(ConfigView {
        client_id: v2.client_id,
        client_version: v2.client_version,
        token_lifetime_secs: v2.token_lifetime.as_secs(),
        webhook_username: v2.webhook_username,
        merchant_id: cfg.merchant_id,
        salt_index: cfg.salt_index,
        path_prefix: cfg.path_prefix,
        rate_limit_per_minute: cfg.rate_limit_per_minute,
        latency_ms: u64::try_from(cfg.latency.as_millis()).unwrap_or(u64::MAX),
    })
}

async fn put_config(State(state): State<SimState>, Json(patch): Json<ConfigPatch>) -> Json<ConfigView> {
    state.patch_config(patch);
    get_config(State(state)).await
}
