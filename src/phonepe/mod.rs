//! PhonePe, API v1 (salt key) and v2 (OAuth), split the way the protocol is (docs/phonepe.md):
//! `checksum` (signatures), `wire` and `wire_v2` (answers, classified into the domain's
//! `StatusReport` / `StatusError`, pure and table-tested), `oauth` (v2 tokens), `client` (the HTTP
//! calls, private to this module) and `gateway` (the one way every caller reaches PhonePe).

pub mod checksum;
pub mod client;
pub mod gateway;
pub mod oauth;
pub mod wire;
pub(crate) mod wire_v2;

pub use client::PhonePeClient;
pub use gateway::{CallError, Gateway};
pub use oauth::V2Credentials;

use crate::domain::{StatusError, TransientKind};

/// Sandbox PG and OAuth root (PhonePe uses one host for both in UAT).
pub const SANDBOX_BASE_URL: &str = "https://api-preprod.phonepe.com/apis/pg-sandbox";
/// Production PG root for API v1.
pub const PRODUCTION_V1_BASE_URL: &str = "https://api.phonepe.com/apis/hermes";
/// Production PG root for API v2.
pub const PRODUCTION_PG_BASE_URL: &str = "https://api.phonepe.com/apis/pg";
/// Production OAuth root.
pub const PRODUCTION_OAUTH_BASE_URL: &str = "https://api.phonepe.com/apis/identity-manager";

/// Which PhonePe API the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// Salt key + salt index (`X-VERIFY`), `GET /pg/v1/status/{merchantId}/{mtid}`.
    #[default]
    V1,
    /// OAuth client credentials, `GET /checkout/v2/order/{merchantOrderId}/status`.
    V2,
}

/// Map a reqwest error without its URL (harmless here, but kept out of habit) or any header.
pub(crate) fn transport_error(e: reqwest::Error) -> StatusError {
    let (kind, detail) = if e.is_timeout() {
        (TransientKind::Timeout, "no answer within the request timeout")
    } else if e.is_connect() {
        (TransientKind::Connection, "could not connect")
    } else if e.is_body() || e.is_decode() {
        (TransientKind::Connection, "connection dropped while reading the body")
    } else if e.is_request() {
        (TransientKind::Connection, "request failed to send")
    } else {
        (TransientKind::Connection, "HTTP transport error")
    };
    StatusError::Transient {
        kind,
        detail: detail.to_string(),
    }
}
