//! API v2 access tokens (docs/phonepe.md, "API v2"): `POST {oauth_base_url}/v1/oauth/token`,
//! cached and shared by every clone of the client, so the whole pool refreshes once. A token is
//! refreshed once half its life has passed, measured on our monotonic clock; callers that find it
//! stale wait for the one refresh in flight and share its result, error included. The token and the
//! client secret are [`SecretString`]s: never logged, never in `Debug` or errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::debug;

use crate::domain::payment::{StatusError, TransientKind};

/// The token endpoint's path under `oauth_base_url`.
pub const TOKEN_PATH: &str = "/v1/oauth/token";

/// What API v2 needs besides the PG `base_url`: PhonePe's client credentials and the OAuth host.
#[derive(Debug, Clone)]
pub struct V2Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
    /// PhonePe issues it with the client id (an integer, sent as a form field).
    pub client_version: String,
    /// OAuth root without a trailing '/', e.g. [`super::PRODUCTION_OAUTH_BASE_URL`].
    pub oauth_base_url: String,
}

/// A token as PhonePe issued it, with the instant we stop using it.
#[derive(Clone)]
pub struct Token {
    /// `{token_type} {access_token}`, the `Authorization` header value.
    authorization: SecretString,
    /// Half-way through the token's life, on our clock.
    refresh_at: Instant,
    /// Distinguishes tokens without comparing secrets (a 401 names the one it rejected).
    generation: u64,
}

impl Token {
    pub fn authorization(&self) -> &str {
        self.authorization.expose_secret()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("authorization", &"***")
            .field("generation", &self.generation)
            .finish()
    }
}

/// A successful token answer: the header value and the token's lifetime.
#[derive(Debug, Clone)]
pub struct Issued {
    pub authorization: SecretString,
    pub lifetime: Duration,
}

/// Classify the token endpoint's answer. Error details name fields, never values.
pub fn parse_token(http_status: u16, body: &[u8]) -> Result<Issued, StatusError> {
    match http_status {
        200..=299 => {}
        429 => return Err(StatusError::RateLimited),
        400 | 401 | 403 => {
            return Err(StatusError::Rejected {
                code: "OAUTH_TOKEN_REJECTED".into(),
                http_status,
            })
        }
        500..=599 => {
            return Err(token_error(
                TransientKind::Server,
                format!("token endpoint HTTP {http_status}"),
            ))
        }
        other => return Err(malformed(format!("token endpoint answered HTTP {other}"))),
    }
    let json: Value = serde_json::from_slice(body).map_err(|_| malformed("token answer is not JSON".into()))?;
    let text = |k: &str| json.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    let number = |k: &str| json.get(k).and_then(Value::as_i64);
    let access_token = text("access_token").ok_or_else(|| malformed("token answer without access_token".into()))?;
    let token_type = text("token_type").ok_or_else(|| malformed("token answer without token_type".into()))?;
    let (issued_at, expires_at) = match (number("issued_at"), number("expires_at")) {
        (Some(i), Some(e)) => (i, e),
        _ => return Err(malformed("token answer without integer issued_at/expires_at".into())),
    };
    let lifetime = u64::try_from(expires_at - issued_at)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| malformed("token answer with expires_at not after issued_at".into()))?;
    Ok(Issued {
        authorization: SecretString::from(format!("{token_type} {access_token}")),
        lifetime: Duration::from_secs(lifetime),
    })
}

/// The shared cache; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct TokenCache {
    creds: Arc<V2Credentials>,
    slot: Arc<Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    token: Option<Token>,
    /// The last failed fetch: when it ended, and its error.
    failed: Option<(Instant, StatusError)>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("creds", &self.creds).finish()
    }
}

impl TokenCache {
    pub fn new(mut creds: V2Credentials) -> Self {
        creds.oauth_base_url = creds.oauth_base_url.trim_end_matches('/').to_string();
        TokenCache {
            creds: Arc::new(creds),
            slot: Arc::new(Mutex::new(Slot::default())),
        }
    }

    pub fn credentials(&self) -> &V2Credentials {
        &self.creds
    }

    /// A token that is still in the first half of its life, fetching one if needed.
    pub async fn get(&self, http: &reqwest::Client) -> Result<Token, StatusError> {
        let arrived = Instant::now();
        let mut slot = self.slot.lock().await;
        match (&slot.token, &slot.failed) {
            (Some(t), _) if Instant::now() < t.refresh_at => Ok(t.clone()),
            (_, Some((at, e))) if *at > arrived => Err(e.clone()),
            _ => self.fetch_into(&mut slot, http).await,
        }
    }

    /// `rejected` got a 401: replace it, unless another caller already has.
    pub async fn refresh_after_401(&self, http: &reqwest::Client, rejected: &Token) -> Result<Token, StatusError> {
        let arrived = Instant::now();
        let mut slot = self.slot.lock().await;
        match (&slot.token, &slot.failed) {
            (Some(t), _) if t.generation != rejected.generation && Instant::now() < t.refresh_at => Ok(t.clone()),
            (_, Some((at, e))) if *at > arrived => Err(e.clone()),
            _ => self.fetch_into(&mut slot, http).await,
        }
    }

    async fn fetch_into(&self, slot: &mut Slot, http: &reqwest::Client) -> Result<Token, StatusError> {
        let asked_at = Instant::now();
        let issued = match self.request(http).await {
            Ok(issued) => issued,
            Err(e) => {
                slot.failed = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        let token = Token {
            authorization: issued.authorization,
            refresh_at: asked_at + issued.lifetime / 2,
            generation: slot.token.as_ref().map_or(1, |t| t.generation + 1),
        };
        debug!(
            generation = token.generation,
            lifetime_secs = issued.lifetime.as_secs(),
            "PhonePe OAuth token refreshed"
        );
        slot.token = Some(token.clone());
        Ok(token)
    }

    async fn request(&self, http: &reqwest::Client) -> Result<Issued, StatusError> {
        let c = &self.creds;
        let form = [
            ("client_id", c.client_id.as_str()),
            ("client_version", c.client_version.as_str()),
            ("client_secret", c.client_secret.expose_secret()),
            ("grant_type", "client_credentials"),
        ];
        let response = http
            .post(format!("{}{TOKEN_PATH}", c.oauth_base_url))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| with_context(super::transport_error(e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| with_context(super::transport_error(e)))?;
        parse_token(status, &body)
    }
}

/// Say the failure was the token call, not the status call.
fn with_context(e: StatusError) -> StatusError {
    match e {
        StatusError::Transient { kind, detail } => token_error(kind, format!("token endpoint: {detail}")),
        other => other,
    }
}

fn token_error(kind: TransientKind, detail: String) -> StatusError {
    StatusError::Transient { kind, detail }
}

fn malformed(detail: String) -> StatusError {
    token_error(TransientKind::Malformed, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answer_becomes_the_header_and_its_lifetime() {
        let body = br#"{"access_token":"tok-123","token_type":"O-Bearer","issued_at":1700000000,
            "expires_at":1700003600,"encrypted_access_token":"x"}"#;
        let t = parse_token(200, body).unwrap();
        assert_eq!(t.authorization.expose_secret(), "O-Bearer tok-123");
        assert_eq!(t.lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn bad_token_answers_are_errors_that_never_show_the_token() {
        let kind = |status: u16, body: &str| match parse_token(status, body.as_bytes()) {
            Err(StatusError::Transient { kind, detail }) => {
                assert!(!detail.contains("tok-123"), "{detail}");
                Some(kind)
            }
            Err(_) => None,
            Ok(_) => panic!("{status} {body} accepted"),
        };
        let ok = r#"{"access_token":"tok-123","token_type":"O-Bearer","issued_at":10,"expires_at":20}"#;
        assert_eq!(kind(503, ok), Some(TransientKind::Server));
        assert_eq!(kind(200, "<html>"), Some(TransientKind::Malformed));
        assert_eq!(kind(302, ok), Some(TransientKind::Malformed));
        for broken in [
            r#"{"token_type":"O-Bearer","issued_at":10,"expires_at":20}"#,
            r#"{"access_token":"tok-123","issued_at":10,"expires_at":20}"#,
            r#"{"access_token":"tok-123","token_type":"O-Bearer","issued_at":10}"#,
            r#"{"access_token":"tok-123","token_type":"O-Bearer","issued_at":"10","expires_at":20}"#,
            r#"{"access_token":"tok-123","token_type":"O-Bearer","issued_at":20,"expires_at":20}"#,
            r#"{"access_token":"","token_type":"O-Bearer","issued_at":10,"expires_at":20}"#,
        ] {
            assert_eq!(kind(200, broken), Some(TransientKind::Malformed), "{broken}");
        }
        assert_eq!(parse_token(429, b"").unwrap_err(), StatusError::RateLimited);
        assert!(matches!(
            parse_token(401, ok.as_bytes()),
            Err(StatusError::Rejected { http_status: 401, .. })
        ));
    }

    #[test]
    fn debug_never_shows_secret_or_token() {
        let cache = TokenCache::new(V2Credentials {
            client_id: "CID".into(),
            client_secret: SecretString::from("very-secret"),
            client_version: "1".into(),
            oauth_base_url: "http://x/".into(),
        });
        let shown = format!("{cache:?}");
        assert!(!shown.contains("very-secret") && shown.contains("CID"), "{shown}");
        assert_eq!(cache.credentials().oauth_base_url, "http://x", "trailing '/' trimmed");
        let token = Token {
            authorization: SecretString::from("O-Bearer tok-123"),
            refresh_at: Instant::now(),
            generation: 1,
        };
        assert!(!format!("{token:?}").contains("tok-123"));
    }
}
