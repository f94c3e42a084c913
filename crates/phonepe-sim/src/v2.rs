//! The simulator's API v2 side (docs/phonepe.md, "phonepe-sim"): the OAuth token endpoint, the v2
//! order status for the same scripts as v1, and the callbacks of both versions. Every v2 call with
//! an expired, unknown (never issued, or revoked) or missing token gets 401 and is counted in
//! [`TokenStats`], so tests can prove no call went out with a stale token; token requests are
//! counted too (one refresh for a whole pool). A callback describes the answer the transaction's
//! script would serve next, without advancing it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::answer::Answer;
use super::answer_v2::error_body_v2;
use super::reply::Reply;
use super::state::{to_json, unix_ms, Call, Inner, SimState, TokenStats};
use super::SimV2;
use crate::checksum;

/// Which webhook format to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookVersion {
    V1,
    V2,
}

/// A webhook ready to send: headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The token request's form, as received (an absent field is empty).
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenForm {
    pub client_id: String,
    pub client_secret: String,
    pub client_version: String,
    pub grant_type: String,
}

impl TokenForm {
    /// Decode an `application/x-www-form-urlencoded` body; unknown fields are ignored.
    pub(crate) fn parse(body: &str) -> TokenForm {
        let mut form = TokenForm::default();
        for (key, value) in form_urlencoded::parse(body.as_bytes()) {
            let field = match key.as_ref() {
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                "client_version" => &mut form.client_version,
                "grant_type" => &mut form.grant_type,
                _ => continue,
            };
            *field = value.into_owned();
        }
        form
    }
}

impl SimState {
    /// Answer a token request.
    pub(crate) fn issue_token(&self, form: &TokenForm) -> Reply {
        let mut inner = self.lock();
        inner.token_stats.requests += 1;
        let latency = inner.cfg.latency;
        if let Some(status) = inner.down {
            let e = error_body_v2(status, None);
            return reply(status, to_json(&e), latency);
        }
        let v2 = &inner.v2;
        let valid = form.client_id == v2.client_id
            && form.client_secret == v2.client_secret
            && form.client_version == v2.client_version
            && form.grant_type == "client_credentials";
        if !valid {
            inner.token_stats.refused += 1;
            let e = json!({"code": "INVALID_CLIENT", "message": "Client authentication failed"});
            return reply(401, e.to_string(), latency);
        }
        let lifetime = inner.v2.token_lifetime.as_secs().max(1);
        let token = format!("sim-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        inner
            .tokens
            .insert(token.clone(), Instant::now() + Duration::from_secs(lifetime));
        inner.token_stats.issued += 1;
        let issued_at = (unix_ms() / 1000) as i64;
        let body = json!({
            "access_token": token, "token_type": "O-Bearer", "issued_at": issued_at,
            "expires_at": issued_at + lifetime as i64, "encrypted_access_token": token,
            "session_expires_at": issued_at + lifetime as i64, "refresh_token": null, "expires_in": null,
        });
        reply(200, body.to_string(), latency)
    }

    /// Decide the answer to one v2 order-status call and log it.
    pub(crate) fn answer_v2(&self, mtid: &str, authorization: Option<&str>) -> Reply {
        let now = Instant::now();
        let mut inner = self.lock();
        let latency = inner.cfg.latency;
        let (status, body, code, delay) = if let Some(status) = inner.down {
            let e = error_body_v2(status, None);
            (status, to_json(&e), Some(e.code), latency)
        } else if !inner.token_valid(authorization, now) {
            let e = error_body_v2(401, None);
            (401, to_json(&e), Some(e.code), latency)
        } else if !inner.within_budget(now) {
            let e = error_body_v2(429, None);
            (429, to_json(&e), Some(e.code), latency)
        } else {
            let answer = inner.scripts.get_mut(mtid).and_then(|s| s.advance()).cloned();
            let answer = answer.unwrap_or_else(Answer::not_found);
            let (status, body, code) = answer.render_v2(mtid);
            (
                status,
                body,
                code,
                answer.delay_ms.map(Duration::from_millis).unwrap_or(latency),
            )
        };
        inner.calls.push(Call {
            merchant_transaction_id: mtid.to_string(),
            at_ms: unix_ms(),
            http_status: status,
            code,
        });
        reply(status, body, delay)
    }

    /// The v2 refund routes' check of `Authorization: O-Bearer <token>`, the status route's
    /// own: `Some(401 reply)` (counted in [`TokenStats`]) without a valid token.
    pub(crate) fn refuse_v2_token(&self, authorization: Option<&str>) -> Option<Reply> {
        let mut inner = self.lock();
        if inner.token_valid(authorization, Instant::now()) {
            return None;
        }
        let e = error_body_v2(401, None);
        Some(reply(401, to_json(&e), inner.cfg.latency))
    }

    pub fn token_stats(&self) -> TokenStats {
        self.lock().token_stats
    }

    /// Forget every issued token: the next v2 call with one gets 401 (a key rotation at PhonePe).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Lifetime of tokens issued from now on (whole seconds, at least 1).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().v2.token_lifetime = lifetime;
    }

    pub fn v2_config(&self) -> SimV2 {
        self.lock().v2.clone()
    }

    /// The webhook PhonePe would send about `mtid` now (its script's next answer, or `answer`).
    pub fn webhook(&self, mtid: &str, version: WebhookVersion, answer: Option<Answer>) -> Result<Webhook, String> {
        let inner = self.lock();
        let answer = match answer {
            Some(a) => a.with_fixed_ids(),
            None => inner
                .scripts
                .get(mtid)
                .and_then(|s| s.peek())
                .cloned()
                .ok_or_else(|| format!("no script for {mtid}"))?,
        };
        let (cfg, v2) = (&inner.cfg, &inner.v2);
        match version {
            WebhookVersion::V2 => Ok(Webhook {
                headers: vec![(
                    "Authorization".into(),
                    checksum::webhook_v2_authorization(&v2.webhook_username, &v2.webhook_password),
                )],
                body: answer.webhook_v2_body(&cfg.merchant_id, mtid)?,
            }),
            WebhookVersion::V1 => {
                let (body, encoded) = answer.webhook_v1_body(&cfg.merchant_id, mtid)?;
                // v1 callbacks are signed like a GET, over the base64 `response` instead of a path.
                let x_verify = checksum::x_verify(&encoded, &cfg.salt_key, cfg.salt_index);
                Ok(Webhook {
                    headers: vec![("X-VERIFY".into(), x_verify)],
                    body,
                })
            }
        }
    }
}

/// POST `webhook` to `url` as JSON; the receiver's HTTP status.
pub async fn deliver(url: &str, webhook: &Webhook) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("building the webhook client: {e}"))?;
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(webhook.body.clone());
    for (name, value) in &webhook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| format!("delivering to {url}: {e}"))?;
    Ok(response.status().as_u16())
}

impl Inner {
    /// Whether `authorization` is `O-Bearer <a token issued and not expired>`; a refused one is
    /// counted (unknown or expired) in [`TokenStats`].
    fn token_valid(&mut self, authorization: Option<&str>, now: Instant) -> bool {
        let token = authorization.and_then(|h| h.strip_prefix("O-Bearer ")).map(str::trim);
        let expiry = token.and_then(|t| self.tokens.get(t).copied());
        match expiry {
            Some(at) if now < at => return true,
            None => self.token_stats.unknown_used += 1,
            Some(_) => self.token_stats.expired_used += 1,
        }
        false
    }
}

fn reply(http_status: u16, body: String, delay: Duration) -> Reply {
    Reply {
        http_status,
        body,
        delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn form(secret: &str) -> TokenForm {
        TokenForm {
            client_id: "TESTCLIENT".into(),
            client_secret: secret.into(),
            client_version: "1".into(),
            grant_type: "client_credentials".into(),
        }
    }

    fn bearer(reply: &Reply) -> String {
        let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        format!("O-Bearer {}", v["access_token"].as_str().unwrap())
    }

    #[test]
    fn tokens_are_issued_for_the_right_credentials_and_checked_on_every_call() {
        let s = SimState::new(SimConfig::default());
        assert_eq!(s.issue_token(&form("wrong")).http_status, 401);
        let t = s.issue_token(&form("test-client-secret"));
        assert_eq!(t.http_status, 200);
        s.script("A", vec![Answer::completed(5)]).unwrap();
        assert_eq!(s.answer_v2("A", Some(&bearer(&t))).http_status, 200);
        assert_eq!(s.answer_v2("A", None).http_status, 401);
        assert_eq!(s.answer_v2("A", Some("O-Bearer forged")).http_status, 401);
        s.revoke_tokens();
        assert_eq!(s.answer_v2("A", Some(&bearer(&t))).http_status, 401);
        assert_eq!(
            s.token_stats(),
            TokenStats {
                requests: 2,
                issued: 1,
                refused: 1,
                expired_used: 0,
                unknown_used: 3
            }
        );
    }

    #[test]
    fn the_token_form_is_percent_decoded() {
        let f = TokenForm::parse(
            "grant_type=client_credentials&client_id=TESTCLIENT&client_secret=a%2Bb+c%26d&client_version=1&x=y",
        );
        assert_eq!(
            (
                f.client_id.as_str(),
                f.client_secret.as_str(),
                f.client_version.as_str(),
                f.grant_type.as_str()
            ),
            ("TESTCLIENT", "a+b c&d", "1", "client_credentials")
        );
        assert_eq!(TokenForm::parse("").client_id, "", "absent fields are empty");
    }

    #[test]
    fn an_expired_token_is_rejected_and_counted() {
        let s = SimState::new(SimConfig::default());
        s.set_token_lifetime(Duration::from_secs(1));
        let t = s.issue_token(&form("test-client-secret"));
        let v: serde_json::Value = serde_json::from_str(&t.body).unwrap();
        assert_eq!(v["expires_at"].as_i64().unwrap() - v["issued_at"].as_i64().unwrap(), 1);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(s.answer_v2("A", Some(&bearer(&t))).http_status, 401);
        assert_eq!(s.token_stats().expired_used, 1);
    }
}
