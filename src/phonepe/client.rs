//! The HTTP side of the status call: one GET with the v1 headers, and transport failures mapped
//! onto [`StatusError`] so callers see a single error type.
//!
//! The answer itself is classified by [`wire::parse_status_for`]; this module only adds what the
//! network can go wrong with (timeouts, refused connections, truncated bodies). Redirects are not
//! followed: PhonePe does not redirect status calls, and following one would send our signed
//! request somewhere we did not configure. The salt key and the `X-VERIFY` value are never logged
//! or formatted into errors (`Debug` of the client prints the merchant and base URL only).
//!
//! A `reqwest::Client` is bound to the tokio runtime that first drives it; build one client per
//! runtime (per actix arbiter), which is what callers do by calling [`PhonePeClient::new`] there.

use std::fmt;

use anyhow::Context;
use tracing::debug;

use super::{checksum, wire};
use crate::config::{PhonePeSettings, Secret};
use crate::domain::order::MerchantTransactionId;
use crate::domain::payment::{StatusError, StatusReport, TransientKind};

/// A client for `GET /pg/v1/status/{merchantId}/{merchantTransactionId}`. Cheap to clone.
#[derive(Clone)]
pub struct PhonePeClient {
    http: reqwest::Client,
    /// Without a trailing '/', including PhonePe's own prefix (e.g. `/apis/hermes`).
    base_url: String,
    merchant_id: String,
    salt_key: Secret,
    salt_index: u32,
}

impl fmt::Debug for PhonePeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhonePeClient")
            .field("base_url", &self.base_url)
            .field("merchant_id", &self.merchant_id)
            .field("salt_key", &self.salt_key)
            .field("salt_index", &self.salt_index)
            .finish()
    }
}

impl PhonePeClient {
    pub fn new(settings: &PhonePeSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("draft-reconciler/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the PhonePe HTTP client")?;
        Ok(Self {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_string(),
            merchant_id: settings.merchant_id.clone(),
            salt_key: settings.salt_key.clone(),
            salt_index: settings.salt_index,
        })
    }

    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }

    /// Ask PhonePe for the status of one transaction. Every failure — transport or answer — is a
    /// [`StatusError`]; an `Ok` is a complete, consistent business answer about `mtid`.
    pub async fn check_status(&self, mtid: &MerchantTransactionId) -> Result<StatusReport, StatusError> {
        // The checksum covers the API path only, never the base URL's prefix.
        let path = checksum::status_path(&self.merchant_id, mtid.as_str());
        let x_verify = checksum::x_verify(&path, self.salt_key.expose(), self.salt_index);
        let response = self
            .http
            .get(format!("{}{}", self.base_url, path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header("X-MERCHANT-ID", &self.merchant_id)
            .header("X-VERIFY", x_verify)
            .send()
            .await
            .map_err(transport_error)?;
        let http_status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport_error)?;
        debug!(merchant_transaction_id = %mtid, http_status, "PhonePe status answered");
        wire::parse_status_for(http_status, &body, mtid.as_str())
    }
}

/// Map a reqwest error without its URL (harmless here, but kept out of habit) or any header.
fn transport_error(e: reqwest::Error) -> StatusError {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(base_url: &str) -> PhonePeSettings {
        PhonePeSettings {
            base_url: base_url.into(),
            merchant_id: "MERCHANTUAT".into(),
            salt_key: Secret::new("test-salt-key"),
            salt_index: 1,
            request_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn debug_never_shows_the_salt() {
        let c = PhonePeClient::new(&settings("https://api.phonepe.com/apis/hermes/")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("test-salt-key"), "{shown}");
        assert!(
            shown.contains("\"https://api.phonepe.com/apis/hermes\""),
            "trailing '/' trimmed: {shown}"
        );
        assert_eq!(c.merchant_id(), "MERCHANTUAT");
    }

    #[tokio::test]
    async fn refused_connection_is_a_transient_connection_error() {
        // Bind then drop, so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PhonePeClient::new(&settings(&format!("http://127.0.0.1:{port}"))).unwrap();
        let mtid = MerchantTransactionId::parse("ORD-1001").unwrap();
        match c.check_status(&mtid).await {
            Err(StatusError::Transient {
                kind: TransientKind::Connection,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
