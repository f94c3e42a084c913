//! A decided answer and how it goes out: the simulator decides under its lock, then sleeps the
//! answer's delay with no lock held and writes it.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The decided answer to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub http_status: u16,
    pub body: String,
    pub delay: Duration,
}

/// Sleep the decided delay (no lock held), then write the reply.
pub(crate) async fn send(reply: Reply) -> Response {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], reply.body).into_response()
}
