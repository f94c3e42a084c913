//! The HTTP side of PhonePe's calls, for either API (docs/phonepe.md, "The status call" and "API
//! v2"): [`PhonePeClient`] signs each v1 call with `X-VERIFY` or carries a v2 OAuth token from the
//! shared [`TokenCache`], maps transport failures onto [`StatusError`], and leaves the answer to the
//! wire parsers (`wire`, `wire_v2`). Its calls are visible inside `crate::phonepe` only: the rest of
//! the crate reaches PhonePe through the gateway. No secret is ever logged or formatted into an
//! error. A `reqwest::Client` is bound to the runtime that first drives it: build one client per
//! runtime; clones share the token cache.

use std::fmt;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tracing::debug;

use super::oauth::{Token, TokenCache, V2Credentials};
use super::{checksum, wire, wire_v2};
use super::{transport_error, ApiVersion};
use crate::config::PhonePeSettings;
use crate::domain::order::MerchantTransactionId;
use crate::domain::payment::{StatusError, StatusReport};

/// How calls are authenticated.
#[derive(Clone)]
enum Api {
    V1 { salt_key: SecretString, salt_index: u32 },
    V2 { tokens: TokenCache },
}

/// A PhonePe status client (v1: `GET /pg/v1/status/{merchantId}/{mtid}`; v2:
/// `GET /checkout/v2/order/{merchantOrderId}/status`). Cheap to clone.
#[derive(Clone)]
pub struct PhonePeClient {
    http: reqwest::Client,
    /// Without a trailing '/', including PhonePe's own prefix (e.g. `/apis/hermes`, `/apis/pg`).
    base_url: String,
    merchant_id: String,
    api: Api,
}

impl fmt::Debug for PhonePeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PhonePeClient");
        d.field("base_url", &self.base_url)
            .field("merchant_id", &self.merchant_id);
        match &self.api {
            Api::V1 { salt_key, salt_index } => d
                .field("api", &"v1")
                .field("salt_key", salt_key)
                .field("salt_index", salt_index),
            Api::V2 { tokens } => d.field("api", &"v2").field("oauth", tokens),
        };
        d.finish()
    }
}

/// The v2 client credentials (`None` under v1, or when one is missing).
pub fn v2_credentials(p: &PhonePeSettings) -> Option<V2Credentials> {
    Some(V2Credentials {
        client_id: p.client_id.clone()?,
        client_secret: p.client_secret.clone()?,
        client_version: p.client_version?.to_string(),
        oauth_base_url: p.oauth_base_url.clone(),
    })
}

impl PhonePeClient {
    /// An API v1 client (salt key and index from `settings`).
    /// The client `settings.api_version` names, with its credentials (checked present by
    /// `config::cross_checks`).
    pub fn new(settings: &PhonePeSettings) -> anyhow::Result<Self> {
        match settings.api_version {
            ApiVersion::V1 => {
                let (Some(salt_key), Some(salt_index)) = (settings.salt_key.clone(), settings.salt_index) else {
                    anyhow::bail!("phonepe.salt_key and phonepe.salt_index are required under API v1");
                };
                Self::build(settings, Api::V1 { salt_key, salt_index })
            }
            ApiVersion::V2 => {
                let creds = v2_credentials(settings)
                    .context("phonepe.client_id, client_secret and client_version are required under API v2")?;
                Self::new_v2(settings, creds)
            }
        }
    }

    /// An API v2 client: `settings` gives the PG base URL, the merchant the credentials belong
    /// to and the request timeout (its salt fields are not used).
    pub fn new_v2(settings: &PhonePeSettings, creds: V2Credentials) -> anyhow::Result<Self> {
        let api = Api::V2 {
            tokens: TokenCache::new(creds),
        };
        Self::build(settings, api)
    }

    fn build(settings: &PhonePeSettings, api: Api) -> anyhow::Result<Self> {
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
            api,
        })
    }

    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }

    /// Ask PhonePe for the status of one transaction. Every failure — transport, token or
    /// answer — is a [`StatusError`]; an `Ok` is a complete, consistent business answer about
    /// `mtid`.
    pub(super) async fn check_status(&self, mtid: &MerchantTransactionId) -> Result<StatusReport, StatusError> {
        match &self.api {
            Api::V1 { salt_key, salt_index } => self.status_v1(mtid, salt_key, *salt_index).await,
            Api::V2 { tokens } => self.status_v2(mtid, tokens).await,
        }
    }

    async fn status_v1(
        &self,
        mtid: &MerchantTransactionId,
        salt_key: &SecretString,
        salt_index: u32,
    ) -> Result<StatusReport, StatusError> {
        // The checksum covers the API path only, never the base URL's prefix.
        let path = checksum::status_path(&self.merchant_id, mtid.as_str());
        let x_verify = checksum::x_verify(&path, salt_key.expose_secret(), salt_index);
        let request = self
            .http
            .get(format!("{}{}", self.base_url, path))
            .header("X-MERCHANT-ID", &self.merchant_id)
            .header("X-VERIFY", x_verify);
        let (http_status, body) = self.send(request, mtid).await?;
        wire::parse_status_for(http_status, &body, mtid.as_str())
    }

    async fn status_v2(&self, mtid: &MerchantTransactionId, tokens: &TokenCache) -> Result<StatusReport, StatusError> {
        let url = format!("{}{}", self.base_url, order_status_path(mtid.as_str()));
        let (http_status, body) = self
            .send_with_token(tokens, mtid, |token| {
                self.http
                    .get(&url)
                    .query(&[("details", "false")])
                    .header(reqwest::header::AUTHORIZATION, token.authorization())
            })
            .await?;
        wire_v2::parse_order_status(http_status, &body, mtid.as_str(), &self.merchant_id)
    }

    /// One v2 call (`request` builds it for a token) with the cached token; on a 401 one refresh
    /// and one retry, never more. Every v2 call goes through here: status and refunds.
    async fn send_with_token(
        &self,
        tokens: &TokenCache,
        id: &MerchantTransactionId,
        request: impl Fn(&Token) -> reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), StatusError> {
        let token = tokens.get(&self.http).await?;
        let (http_status, body) = self.send(request(&token), id).await?;
        if http_status != 401 {
            return Ok((http_status, body));
        }
        debug!(merchant_transaction_id = %id, "PhonePe rejected the token: refreshing once");
        let fresh = tokens.refresh_after_401(&self.http, &token).await?;
        self.send(request(&fresh), id).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        mtid: &MerchantTransactionId,
    ) -> Result<(u16, Vec<u8>), StatusError> {
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport_error)?;
        let http_status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport_error)?.to_vec();
        debug!(merchant_transaction_id = %mtid, http_status, "PhonePe status answered");
        Ok((http_status, body))
    }
}

/// The v2 order-status path under the PG base URL; our `merchantTransactionId` is PhonePe's
/// `merchantOrderId`.
pub fn order_status_path(merchant_order_id: &str) -> String {
    format!("/checkout/v2/order/{merchant_order_id}/status")
}

mod refund;
pub use refund::{
    parse_refund, parse_refund_status, RefundRequest, RefundState, REFUND_ID_MAX_V1, REFUND_ID_MAX_V2,
    REFUND_MIN_PAISE, REFUND_V1_PATH, REFUND_V2_PATH,
};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::TransientKind;

    fn settings(base_url: &str) -> PhonePeSettings {
        PhonePeSettings {
            base_url: base_url.into(),
            merchant_id: "MERCHANTUAT".into(),
            salt_key: Some(SecretString::from("test-salt-key")),
            salt_index: Some(1),
            request_timeout: Duration::from_secs(2),
            api_version: Default::default(),
            client_id: None,
            client_secret: None,
            client_version: None,
            oauth_base_url: String::new(),
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
