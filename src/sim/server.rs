//! The HTTP face of the simulator: PhonePe's status route under the configured prefix, and the
//! admin API under `/__sim/` (a path PhonePe does not use, so a client pointed at the simulator
//! can never hit it by accident).
//!
//! Handlers are thin: [`SimState::answer`] decides everything under its lock; the handler only
//! sleeps the scripted delay (lock released) and writes the reply.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::answer::Answer;
use super::state::{ConfigPatch, Request, SimState};

/// Serve the simulator on `listener` until the future is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: SimState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// The simulator's routes (exposed for embedding it in another axum app).
pub fn router(state: SimState) -> Router {
    let status_route = format!("{}/pg/v1/status/{{merchant_id}}/{{mtid}}", state.config().path_prefix);
    Router::new()
        .route(&status_route, get(status))
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
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let reply = state.answer(Request {
        path_merchant_id: &merchant_id,
        mtid: &mtid,
        header_merchant_id: header("x-merchant-id"),
        x_verify: header("x-verify"),
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], reply.body).into_response()
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
}

async fn get_config(State(state): State<SimState>) -> Json<ConfigView> {
    let cfg = state.config();
    Json(ConfigView {
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
