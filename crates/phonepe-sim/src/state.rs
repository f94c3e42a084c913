//! The simulator's memory: configuration, scripts, the call log, the rate-limit window, tokens and
//! refunds, behind one `std::sync::Mutex`. One lock makes "check the credentials, count against
//! the budget, pick the next answer, log the call" a single step, so concurrent calls see one
//! order; it is held only while deciding, never across an `.await` (the delay is slept after).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::answer::{error_response, Answer};
use super::ledger::Refunds;
use super::reply::Reply;
use super::{SimConfig, SimV2};
use crate::checksum;

const WINDOW: Duration = Duration::from_secs(60);

/// One status call the simulator received (admin `GET /__sim/calls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub merchant_transaction_id: String,
    /// When the call arrived, unix milliseconds.
    pub at_ms: u64,
    /// The HTTP status it was (or, if still delayed, will be) answered with.
    pub http_status: u16,
    /// The `code` in the answer; `None` for a raw (possibly malformed) body.
    pub code: Option<String>,
}

/// The credentials of one status call, as received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub path_merchant_id: &'a str,
    pub mtid: &'a str,
    pub header_merchant_id: Option<&'a str>,
    pub x_verify: Option<&'a str>,
}

/// What the token side has seen (admin `GET /__sim/tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStats {
    /// Every token request received (including those an outage answered).
    pub requests: u64,
    /// Token requests with the right credentials (tokens issued).
    pub issued: u64,
    /// Token requests refused (wrong credentials or grant type).
    pub refused: u64,
    /// v2 status calls that carried an expired token.
    pub expired_used: u64,
    /// v2 status calls with no token, or one the simulator never issued or has revoked.
    pub unknown_used: u64,
}

/// Shared simulator state; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Mutex<Inner>>,
}

pub(super) struct Inner {
    pub(super) cfg: SimConfig,
    pub(super) scripts: HashMap<String, Script>,
    pub(super) calls: Vec<Call>,
    /// Arrival times of served calls within the last minute, oldest first.
    window: VecDeque<Instant>,
    /// An outage: every call is answered with this HTTP status and PhonePe's error body.
    pub(super) down: Option<u16>,
    /// API v2: credentials, token lifetime, webhook credentials.
    pub(super) v2: SimV2,
    /// Issued v2 tokens and when each expires.
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) token_stats: TokenStats,
    /// Refunds made, their requests and scripts (`refund.rs`).
    pub(super) refunds: Refunds,
}

pub(super) struct Script {
    answers: Vec<Answer>,
    next: usize,
}

impl Script {
    /// The next answer; the last one repeats forever.
    pub(super) fn advance(&mut self) -> Option<&Answer> {
        let i = self.next.min(self.answers.len().checked_sub(1)?);
        self.next = i + 1;
        self.answers.get(i)
    }

    /// The answer the next call would get, without serving it.
    pub(super) fn peek(&self) -> Option<&Answer> {
        self.answers.get(self.next.min(self.answers.len().checked_sub(1)?))
    }
}

impl SimState {
    pub fn new(cfg: SimConfig) -> Self {
        Self::with_v2(cfg, SimV2::default())
    }

    /// A simulator that also speaks API v2 with these credentials.
    pub fn with_v2(mut cfg: SimConfig, v2: SimV2) -> Self {
        cfg.path_prefix = normalize_prefix(&cfg.path_prefix);
        let inner = Inner {
            cfg,
            scripts: HashMap::new(),
            calls: Vec::new(),
            window: VecDeque::new(),
            down: None,
            v2,
            tokens: HashMap::new(),
            token_stats: TokenStats::default(),
            refunds: Default::default(),
        };
        SimState {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a simulator; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the current configuration (prefix normalised: "" or "/x" without trailing '/').
    pub fn config(&self) -> SimConfig {
        self.lock().cfg.clone()
    }

    /// Replace the script of `mtid`. Answers are served in order; the last repeats.
    pub fn script(&self, mtid: &str, answers: Vec<Answer>) -> Result<(), String> {
        if answers.is_empty() {
            return Err("`answers` must not be empty".into());
        }
        for (i, a) in answers.iter().enumerate() {
            a.validate().map_err(|e| format!("answers[{i}]: {e}"))?;
        }
        let answers = answers.into_iter().map(Answer::with_fixed_ids).collect();
        self.lock()
            .scripts
            .insert(mtid.to_string(), Script { answers, next: 0 });
        Ok(())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// `None` = unlimited. The window of already served calls is kept.
    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        self.lock().cfg.rate_limit_per_minute = per_minute;
    }

    /// An outage: while `Some(status)`, every call gets that HTTP status with PhonePe's error body
    /// (e.g. 500 → `INTERNAL_SERVER_ERROR`), before credentials or budget are looked at, as a
    /// PhonePe that is down would; scripts do not advance. `None` ends it.
    pub fn set_down(&self, status: Option<u16>) {
        self.lock().down = status;
    }

    /// Default delay for every answer without its own `delayMs`.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().cfg.latency = latency;
    }

    /// Decide the answer to one status call and log it.
    pub(crate) fn answer(&self, req: Request<'_>) -> Reply {
        let now = Instant::now();
        let mut inner = self.lock();
        let latency = inner.cfg.latency;
        let (http_status, body, code, delay) = if let Some(status) = inner.down {
            let r = error_response(status, None);
            (status, to_json(&r), Some(r.code), latency)
        } else if !inner.authorized(&req) {
            let r = error_response(401, None);
            (401, to_json(&r), Some(r.code), latency)
        } else if !inner.within_budget(now) {
            let r = error_response(429, None);
            (429, to_json(&r), Some(r.code), latency)
        } else {
            let merchant_id = inner.cfg.merchant_id.clone();
            let answer = inner.scripts.get_mut(req.mtid).and_then(Script::advance).cloned();
            let answer = answer.unwrap_or_else(Answer::not_found);
            let (status, body, code) = answer.render(&merchant_id, req.mtid);
            (
                status,
                body,
                code,
                answer.delay_ms.map(Duration::from_millis).unwrap_or(latency),
            )
        };
        inner.calls.push(Call {
            merchant_transaction_id: req.mtid.to_string(),
            at_ms: unix_ms(),
            http_status,
            code,
        });
        Reply {
            http_status,
            body,
            delay,
        }
    }
}

impl Inner {
    fn authorized(&self, req: &Request<'_>) -> bool {
        let cfg = &self.cfg;
        let path = checksum::status_path(req.path_merchant_id, req.mtid);
        req.path_merchant_id == cfg.merchant_id
            && req.header_merchant_id == Some(cfg.merchant_id.as_str())
            && req
                .x_verify
                .is_some_and(|h| checksum::verify(h, &path, &cfg.salt_key, cfg.salt_index))
    }

    /// Count the call against the rolling minute if there is room.
    pub(super) fn within_budget(&mut self, now: Instant) -> bool {
        while self.window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            self.window.pop_front();
        }
        match self.cfg.rate_limit_per_minute {
            Some(limit) if self.window.len() >= limit as usize => false,
            _ => {
                self.window.push_back(now);
                true
            }
        }
    }
}

/// "" stays ""; "apis/hermes/" becomes "/apis/hermes".
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

pub(super) fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConfigPatch {
    /// Absent: unchanged; `null` or 0: unlimited.
    #[serde(default, deserialize_with = "present")]
    pub rate_limit_per_minute: Option<Option<u32>>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Lifetime of v2 tokens issued from now on.
    #[serde(default)]
    pub token_lifetime_secs: Option<u64>,
}

/// Distinguish `"field": null` (Some(None)) from an absent field (None, via `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

impl SimState {
    pub(crate) fn patch_config(&self, patch: ConfigPatch) {
        let mut inner = self.lock();
        if let Some(limit) = patch.rate_limit_per_minute {
            inner.cfg.rate_limit_per_minute = limit.filter(|n| *n > 0);
        }
        if let Some(ms) = patch.latency_ms {
            inner.cfg.latency = Duration::from_millis(ms);
        }
        if let Some(secs) = patch.token_lifetime_secs {
            inner.v2.token_lifetime = Duration::from_secs(secs.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(limit: Option<u32>) -> SimState {
        SimState::new(SimConfig {
            rate_limit_per_minute: limit,
            ..SimConfig::default()
        })
    }

    fn call<'a>(mtid: &'a str, x_verify: &'a str) -> Request<'a> {
        Request {
            path_merchant_id: "MERCHANTUAT",
            mtid,
            header_merchant_id: Some("MERCHANTUAT"),
            x_verify: Some(x_verify),
        }
    }

    fn signed(mtid: &str) -> String {
        checksum::x_verify(&checksum::status_path("MERCHANTUAT", mtid), "test-salt-key", 1)
    }

    #[test]
    fn script_advances_and_repeats_the_last_answer() {
        let s = state(None);
        s.script(
            "A",
            vec![Answer::http_error(500), Answer::pending(), Answer::completed(7)],
        )
        .unwrap();
        let xv = signed("A");
        let statuses: Vec<_> = (0..5).map(|_| s.answer(call("A", &xv)).http_status).collect();
        assert_eq!(statuses, [500, 200, 200, 200, 200]);
        let codes: Vec<_> = s.calls().into_iter().map(|c| c.code.unwrap_or_default()).collect();
        assert_eq!(
            codes,
            [
                "INTERNAL_SERVER_ERROR",
                "PAYMENT_PENDING",
                "PAYMENT_SUCCESS",
                "PAYMENT_SUCCESS",
                "PAYMENT_SUCCESS"
            ]
        );
    }

    #[test]
    fn limited_and_unauthorized_calls_neither_consume_budget_nor_advance() {
        let s = state(Some(2));
        s.script("A", vec![Answer::pending(), Answer::completed(7)]).unwrap();
        let xv = signed("A");
        assert_eq!(s.answer(call("A", "bad")).http_status, 401);
        assert_eq!(s.answer(call("A", &xv)).http_status, 200);
        assert_eq!(s.answer(call("A", &xv)).http_status, 200);
        assert_eq!(s.answer(call("A", &xv)).http_status, 429);
        assert_eq!(s.answer(call("A", &xv)).http_status, 429);
        s.set_rate_limit(None);
        assert!(s.answer(call("A", &xv)).body.contains("PAYMENT_SUCCESS"));
        let statuses: Vec<_> = s.calls().iter().map(|c| c.http_status).collect();
        assert_eq!(statuses, [401, 200, 200, 429, 429, 200]);
    }

    #[test]
    fn an_outage_answers_every_call_with_the_error_and_keeps_the_script() {
        let s = state(Some(1));
        s.script("A", vec![Answer::pending(), Answer::completed(7)]).unwrap();
        let xv = signed("A");
        s.set_down(Some(500));
        for _ in 0..3 {
            let r = s.answer(call("A", &xv));
            assert_eq!(r.http_status, 500);
            assert!(r.body.contains("INTERNAL_SERVER_ERROR"), "{}", r.body);
        }
        s.set_down(None);
        assert!(
            s.answer(call("A", &xv)).body.contains("PAYMENT_PENDING"),
            "script not advanced"
        );
        assert_eq!(s.answer(call("A", &xv)).http_status, 429, "outage calls used no budget");
    }

    #[test]
    fn rejects_bad_scripts_and_patches_config() {
        let s = state(None);
        assert!(s.script("A", vec![]).is_err());
        assert!(s
            .script("A", vec![Answer::pending(), Answer::default()])
            .unwrap_err()
            .starts_with("answers[1]"));
        let patch: ConfigPatch = serde_json::from_str(r#"{"rateLimitPerMinute":3,"latencyMs":5}"#).unwrap();
        s.patch_config(patch);
        assert_eq!(
            (s.config().rate_limit_per_minute, s.config().latency),
            (Some(3), Duration::from_millis(5))
        );
        s.patch_config(serde_json::from_str(r#"{"latencyMs":0}"#).unwrap());
        assert_eq!(s.config().rate_limit_per_minute, Some(3), "absent means unchanged");
        s.patch_config(serde_json::from_str(r#"{"rateLimitPerMinute":null}"#).unwrap());
        assert_eq!(s.config().rate_limit_per_minute, None);
    }

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("apis/hermes/"), "/apis/hermes");
        assert_eq!(normalize_prefix("/apis/pg-sandbox"), "/apis/pg-sandbox");
    }
}
