//! PhonePe's server-to-server callback, `POST /webhooks/phonepe`, on its own listener
//! (`webhook.listen`, off by default), separate from the private ops listener (docs/operations.md,
//! "Webhook"; the formats and signatures in docs/phonepe.md, "Callbacks and refunds"). A delivery's
//! signature is checked before anything else is read; a verified one goes down the reconciler's own
//! path (`domain::decide`, then `settle::settle`, `by: webhook`), acting only on final answers.
//! Refund events are [`refund`]'s. Every delivery is counted in `reconciler_webhooks_total` and
//! logged by its id, never with its body or a header.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use mongodb::bson::DateTime;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::actors::Env;
use crate::domain::decision::late_payment;
use crate::domain::Outcome;
use crate::domain::{decide, Decision, MerchantTransactionId, Order, PaymentState, PaymentStatus, Status};
use crate::domain::{StatusError, StatusReport};
use crate::phonepe::CallError;
use crate::store::payments::{LeftDraft, PaymentSeen};
use crate::store::By;
use crate::telemetry::labels::{webhook_event as event, webhook_result as result};
use crate::telemetry::{labels, names};

/// The one route.
pub const PATH: &str = "/webhooks/phonepe";
/// The largest body read (a callback is well under 4 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long the body may take to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long handling may take before answering 503 (PhonePe wants an answer within 3–5 s). The
/// handling goes on after that answer; PhonePe's retry then finds the order settled.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// With `confirm_with_status_api`: the longest wait for a PhonePe budget permit.
pub const PERMIT_WAIT: Duration = Duration::from_secs(1);

/// What one delivery came to: the HTTP answer and the metric's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub event: &'static str,
    pub result: &'static str,
    /// The response body's first line: what was wrong, naming fields, never quoting values.
    pub message: String,
}

impl Reply {
    fn new(status: StatusCode, event: &'static str, result: &'static str, message: impl Into<String>) -> Reply {
        Reply {
            status,
            event,
            result,
            message: message.into(),
        }
    }

    fn bad_signature(why: &str) -> Reply {
        Reply::new(
            StatusCode::UNAUTHORIZED,
            event::UNKNOWN,
            result::BAD_SIGNATURE,
            format!("bad signature: {why}"),
        )
    }

    fn malformed(event: &'static str, why: impl Into<String>) -> Reply {
        Reply::new(
            StatusCode::BAD_REQUEST,
            event,
            result::MALFORMED,
            format!("malformed: {}", why.into()),
        )
    }

    fn unavailable(event: &'static str, why: &str) -> Reply {
        Reply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            event,
            result::UNAVAILABLE,
            format!("unavailable: {why}"),
        )
    }

    fn ok(event: &'static str, result: &'static str) -> Reply {
        Reply::new(StatusCode::OK, event, result, result)
    }
}

/// A verified, parsed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `event` label value.
    pub event: &'static str,
    pub mtid: MerchantTransactionId,
    pub report: StatusReport,
    /// Whether this kind of event may settle an order (v2 attempt and refund events may not).
    pub settles: bool,
    /// A v2 refund event: the refund's id (`merchantRefundId`); `mtid` is then the refunded
    /// order and `report` the refund's state.
    pub refund: Option<String>,
}

/// What verification needs: the v1 salt and the v2 credentials (each when configured; a
/// callback of a version whose keys are not configured is refused as unsigned).
pub struct Keys<'a> {
    /// Ours: a v2 payload without `merchantId` is taken as ours (PhonePe signed it with our credentials).
    pub merchant_id: &'a str,
    /// `None` under API v2 (no salt key).
    pub salt_key: Option<&'a str>,
    pub salt_index: u32,
    pub v2_authorization: Option<String>,
}

impl<'a> Keys<'a> {
    pub fn of(settings: &'a crate::config::Settings) -> Keys<'a> {
        let w = &settings.webhook;
        Keys {
            merchant_id: &settings.phonepe.merchant_id,
            salt_key: settings.phonepe.salt_key.as_ref().map(|k| k.expose_secret()),
            salt_index: settings.phonepe.salt_index.unwrap_or(1),
            v2_authorization: match (&w.username, &w.password) {
                (Some(u), Some(p)) => Some(v2_authorization(u, p.expose_secret())),
                _ => None,
            },
        }
    }
}

use crate::phonepe::checksum::constant_time_eq;
/// The v2 `Authorization` header PhonePe sends: `sha256_hex(username + ":" + password)`.
pub use crate::phonepe::checksum::webhook_v2_authorization as v2_authorization;

/// Verify and parse one delivery: `X-VERIFY` means v1, else `Authorization` means v2.
pub fn verify(keys: &Keys<'_>, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, Reply> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or_default().trim());
    if let Some(x_verify) = header("x-verify") {
        return verify_v1(keys, x_verify, body);
    }
    match (header("authorization"), &keys.v2_authorization) {
        (Some(_), None) => Err(Reply::bad_signature(
            "v2 callback, but webhook.username / webhook.password are not configured",
        )),
        (Some(auth), Some(expected)) => {
            // In constant time, and before the body is parsed: nothing unsigned is read.
            if !constant_time_eq(auth.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
                return Err(Reply::bad_signature("Authorization does not match"));
            }
            parse_v2(body, keys.merchant_id)
        }
        (None, _) => Err(Reply::bad_signature("neither X-VERIFY nor Authorization")),
    }
}

fn verify_v1(keys: &Keys<'_>, x_verify: &str, body: &[u8]) -> Result<Delivery, Reply> {
    // Only the outer `response` string is read before the check: it is the signed text.
    let outer: Value =
        serde_json::from_slice(body).map_err(|_| Reply::malformed(event::UNKNOWN, "body is not JSON"))?;
    let Some(encoded) = outer.get("response").and_then(Value::as_str) else {
        return Err(Reply::malformed(event::UNKNOWN, "v1 body has no string `response`"));
    };
    let Some(salt_key) = keys.salt_key else {
        return Err(Reply::bad_signature(
            "a v1 callback, but no salt key is configured (API v2)",
        ));
    };
    if !crate::phonepe::checksum::verify(x_verify, encoded, salt_key, keys.salt_index) {
        return Err(Reply::bad_signature("X-VERIFY does not match"));
    }
    let inner = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| Reply::malformed(event::UNKNOWN, "`response` is not base64"))?;
    parse_v1(&inner)
}

/// The decoded v1 `response`: the status API's JSON about `data.merchantTransactionId`.
fn parse_v1(inner: &[u8]) -> Result<Delivery, Reply> {
    let json: Value =
        serde_json::from_slice(inner).map_err(|_| Reply::malformed(event::UNKNOWN, "`response` is not JSON"))?;
    let mtid = json
        .pointer("/data/merchantTransactionId")
        .and_then(Value::as_str)
        .ok_or_else(|| Reply::malformed(event::UNKNOWN, "no data.merchantTransactionId"))?;
    let mtid = MerchantTransactionId::parse(mtid)
        .map_err(|p| Reply::malformed(event::UNKNOWN, format!("data.merchantTransactionId {p}")))?;
    let report = crate::phonepe::wire::parse_status_for(200, inner, mtid.as_str())
        .map_err(|e| Reply::malformed(event::UNKNOWN, status_error(&e)))?;
    let event = match report.state {
        PaymentState::Completed => event::V1_COMPLETED,
        PaymentState::Failed => event::V1_FAILED,
        PaymentState::Pending => event::V1_PENDING,
        PaymentState::NotFound => event::V1_NOT_FOUND,
    };
    Ok(Delivery {
        event,
        mtid,
        report,
        settles: true,
        refund: None,
    })
}

fn status_error(e: &StatusError) -> String {
    match e {
        StatusError::Transient { .. } => e.excerpt(),
        other => format!("callback carries {}", other.code()),
    }
}

/// A v2 body: `{"event": ..., "payload": {...}}`.
fn parse_v2(body: &[u8], merchant_id: &str) -> Result<Delivery, Reply> {
    let json: Value = serde_json::from_slice(body).map_err(|_| Reply::malformed(event::UNKNOWN, "body is not JSON"))?;
    let name = json
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| Reply::malformed(event::UNKNOWN, "v2 body has no string `event`"))?;
    let event = event::v2(name);
    let payload = json
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| Reply::malformed(event, "v2 body has no object `payload`"))?;
    if event::REFUND_EVENTS.contains(&event) {
        return refund::parse(event, payload).map_err(|why| Reply::malformed(event, why));
    }
    let (mtid, report) = parse_v2_payload(payload, merchant_id).map_err(|why| Reply::malformed(event, why))?;
    Ok(Delivery {
        event,
        mtid,
        report,
        settles: matches!(event, event::ORDER_COMPLETED | event::ORDER_FAILED),
        refund: None,
    })
}

/// A v2 callback `payload` as a status answer: the same parser as the v2 status API
/// (`phonepe::wire_v2::order_report`: `state`, `amount` in paise required when COMPLETED and
/// agreeing with the latest attempt, `merchantId` if present else the merchant whose credentials
/// PhonePe signed with), plus the `merchantOrderId` it is about. Errors name fields, never values.
pub fn parse_v2_payload(p: &Value, merchant_id: &str) -> Result<(MerchantTransactionId, StatusReport), String> {
    let mtid = p
        .get("merchantOrderId")
        .and_then(Value::as_str)
        .ok_or("payload has no string merchantOrderId")?;
    let mtid = MerchantTransactionId::parse(mtid).map_err(|e| format!("payload.merchantOrderId {e}"))?;
    let obj = p.as_object().ok_or("payload is not an object")?;
    let report = crate::phonepe::wire_v2::order_report(obj, merchant_id).map_err(|e| format!("payload: {e}"))?;
    Ok((mtid, report))
}

/// Act on a verified delivery, as the reconciler would on the same answer.
pub async fn act(env: Arc<Env>, d: Delivery) -> Reply {
    let ev = d.event;
    if d.refund.is_some() {
        return refund::act(&env, d).await;
    }
    let doc = match env.store.find_by_mtid(d.mtid.as_str()).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return Reply::ok(ev, result::UNKNOWN_ORDER),
        Err(e) => {
            tracing::error!(error = %e, "webhook: MongoDB failed; answering 503 so PhonePe retries");
            return Reply::unavailable(ev, "database");
        }
    };
    match crate::schema::read_status(&doc, env.store.schema()) {
        Some(Status::Draft) => {}
        // Left draft without a payment: a completed payment now is recorded.
        Some(Status::Cancelled | Status::NeedsReview) => return left_draft(&env, d, &doc).await,
        Some(_) => return Reply::ok(ev, result::ALREADY_SETTLED),
        // A draft in all but the word (another case, an array): the reconciler never claims
        // it, so a completed payment in this callback is recorded now.
        None if LeftDraft::of_loose_draft(&doc, env.store.schema()).is_some() => {
            tracing::error!("webhook: a draft whose status is not the schema's word; a payment is recorded");
            return unreadable_draft(&env, d, &doc).await;
        }
        None => {
            tracing::error!("webhook: the order's status cannot be read; nothing recorded");
            return Reply::ok(ev, result::IGNORED);
        }
    }
    let order = match Order::parse(&doc, env.store.schema()) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(problem = %e, "webhook: the order document cannot be reconciled; the reconciler parks it");
            return unreadable_draft(&env, d, &doc).await;
        }
    };
    if order.payment_status != PaymentStatus::Pending {
        tracing::warn!("webhook: a draft whose paymentStatus is not pending; the reconciler parks it");
        return unreadable_draft(&env, d, &doc).await;
    }
    if !d.settles || !is_final(&d.report) {
        return Reply::ok(ev, result::IGNORED);
    }
    let report = match confirmed(&env, d.report, &d.mtid).await {
        Ok(Some(r)) => r,
        Ok(None) => return Reply::ok(ev, result::IGNORED),
        Err(why) => return Reply::unavailable(ev, why),
    };
    let decision = decide(&order, &Ok(report), DateTime::now(), &env.policy);
    settle(&env, &order, decision, ev).await
}

/// The final answer to act on: the delivery's own, or with `confirm_with_status_api` the status
/// API's (`None` when that is not final). `Err` says why PhonePe could not confirm it (503).
async fn confirmed(
    env: &Env,
    delivered: StatusReport,
    mtid: &MerchantTransactionId,
) -> Result<Option<StatusReport>, &'static str> {
    if !env.settings.webhook.confirm_with_status_api {
        return Ok(Some(with_merchant_default(delivered, &env.policy.merchant_id)));
    }
    let r = ask_status_api(env, mtid).await?;
    Ok(is_final(&r).then_some(r))
}

/// A delivery about an order that left `draft` (cancelled or parked): only a completed payment
/// it does not record yet changes it (`settle::record_late_payment`).
async fn left_draft(env: &Env, d: Delivery, doc: &mongodb::bson::Document) -> Reply {
    let ev = d.event;
    if !d.settles || !is_final(&d.report) {
        return Reply::ok(ev, result::IGNORED);
    }
    if d.report.state != PaymentState::Completed {
        return Reply::ok(ev, result::ALREADY_SETTLED);
    }
    let schema = env.store.schema();
    let Some(target) = LeftDraft::of_doc(doc, schema) else {
        return Reply::ok(ev, result::IGNORED);
    };
    let payment = crate::schema::read_payment_status(doc, schema);
    let report = match confirmed(env, d.report, &d.mtid).await {
        Ok(Some(r)) => r,
        Ok(None) => return Reply::ok(ev, result::IGNORED),
        Err(why) => return Reply::unavailable(ev, why),
    };
    let Some(Decision::RecordPayment {
        code,
        transaction_id,
        paid_amount,
    }) = late_payment(target.status, payment, &report, &env.policy.merchant_id)
    else {
        // Its payment is recorded already (or the status API does not report one).
        return Reply::ok(ev, result::ALREADY_SETTLED);
    };
    let seen = PaymentSeen {
        code,
        transaction_id,
        paid_amount,
    };
    match crate::settle::record_late_payment(&env.store, &target, &seen, By::Webhook.into()).await {
        Ok(true) => Reply::ok(ev, result::ACCEPTED),
        Ok(false) => Reply::ok(ev, result::ALREADY_SETTLED),
        Err(e) => {
            tracing::error!(error = %e, "webhook: recording the payment failed; answering 503 so PhonePe retries");
            Reply::unavailable(ev, "database")
        }
    }
}

/// A delivery about a draft the reconciler cannot settle (its document cannot be parsed, its
/// `paymentStatus` is not `pending`, or its status is the draft word only loosely: another case,
/// an array): the reconciler parks it `invalid_order` (or never claims it) without asking
/// PhonePe, so a completed payment in this callback is the only word of it and is recorded now
/// (parked `invalid_order`, `paymentStatus: paid`, one history entry), never answered `ignored`.
/// If the draft changed meanwhile (parked by the reconciler), 503: PhonePe's next delivery finds
/// it in review and records the payment there.
async fn unreadable_draft(env: &Env, d: Delivery, doc: &mongodb::bson::Document) -> Reply {
    let ev = d.event;
    if !d.settles || d.report.state != PaymentState::Completed {
        return Reply::ok(ev, result::IGNORED);
    }
    let schema = env.store.schema();
    let target = LeftDraft::of_doc(doc, schema).or_else(|| LeftDraft::of_loose_draft(doc, schema));
    let Some(target) = target else {
        return Reply::ok(ev, result::IGNORED);
    };
    let report = match confirmed(env, d.report, &d.mtid).await {
        Ok(Some(r)) if r.state == PaymentState::Completed => r,
        Ok(_) => return Reply::ok(ev, result::IGNORED),
        Err(why) => return Reply::unavailable(ev, why),
    };
    let seen = PaymentSeen {
        paid_amount: crate::domain::decision::paid_to(&report, &env.policy.merchant_id),
        code: report.code,
        transaction_id: report.transaction_id,
    };
    match crate::settle::record_late_payment(&env.store, &target, &seen, By::Webhook.into()).await {
        Ok(true) => Reply::ok(ev, result::ACCEPTED),
        Ok(false) => Reply::unavailable(ev, "the order changed meanwhile"),
        Err(e) => {
            tracing::error!(error = %e, "webhook: recording the payment failed; answering 503 so PhonePe retries");
            Reply::unavailable(ev, "database")
        }
    }
}

fn is_final(r: &StatusReport) -> bool {
    matches!(r.state, PaymentState::Completed | PaymentState::Failed)
}

/// Only final decisions are applied; the rest answer 200 and change nothing.
async fn settle(env: &Env, order: &Order, decision: Decision, ev: &'static str) -> Reply {
    match decision {
        Decision::Commit { .. } | Decision::Review { .. } | Decision::Cancel { .. } => {}
        Decision::StopWatching => return Reply::ok(ev, result::ALREADY_SETTLED),
        _ => return Reply::ok(ev, result::IGNORED),
    }
    let settler = crate::settle::Settler {
        by: By::Webhook,
        ..env.settler()
    };
    match crate::settle::settle(&settler, order, decision).await {
        Ok(Outcome::AlreadyProcessed) => Reply::ok(ev, result::ALREADY_SETTLED),
        Ok(Outcome::Confirmed | Outcome::Cancelled | Outcome::NeedsReview) => Reply::ok(ev, result::ACCEPTED),
        Ok(_) => Reply::ok(ev, result::IGNORED),
        Err(e) => {
            tracing::error!(error = %e, "webhook: settling failed; answering 503 so PhonePe retries");
            Reply::unavailable(ev, "database")
        }
    }
}

/// `confirm_with_status_api`: one status call through the PhonePe gateway (a permit of the
/// shared budget within [`PERMIT_WAIT`], fed to its breaker).
async fn ask_status_api(env: &Env, mtid: &MerchantTransactionId) -> Result<StatusReport, &'static str> {
    match env.phonepe.status_within(mtid, PERMIT_WAIT).await {
        Ok(r) => Ok(r),
        Err(CallError::Paused { .. }) => Err("PhonePe calls are paused"),
        Err(CallError::NoPermitInTime(_)) => Err("no PhonePe budget permit in time"),
        Err(CallError::PhonePe(e)) => {
            tracing::warn!(error = %e, "webhook: the status API gave no usable answer; answering 503");
            Err("the status API gave no usable answer")
        }
    }
}

/// A v2 callback without `merchantId` is ours: its credentials authenticated it (module doc).
/// (A v1 answer that could confirm always names its merchant: `parse_status_for` requires it.)
fn with_merchant_default(mut report: StatusReport, merchant_id: &str) -> StatusReport {
    report.merchant_id.get_or_insert_with(|| merchant_id.to_string());
    report
}

/// The body, at most [`BODY_LIMIT`] bytes, within `within`.
pub async fn read_body(headers: &HeaderMap, body: Body, within: Duration) -> Result<axum::body::Bytes, Reply> {
    let too_long = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > BODY_LIMIT);
    let too_large = || {
        Reply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            event::UNKNOWN,
            result::MALFORMED,
            "body too large",
        )
    };
    if too_long {
        return Err(too_large());
    }
    match tokio::time::timeout(within, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(Reply::new(
            StatusCode::REQUEST_TIMEOUT,
            event::UNKNOWN,
            result::MALFORMED,
            "body too slow",
        )),
    }
}

/// Read the body, verify, act within [`ANSWER_WITHIN`] (then answer 503 and let it finish).
/// Every delivery is counted and logged once, inside a span with its `merchantTransactionId`
/// once that is known.
pub async fn handle(env: Arc<Env>, headers: HeaderMap, body: Body) -> Reply {
    let (reply, span) = receive(env, headers, body).await;
    match span {
        Some(span) => span.in_scope(|| record(&reply)),
        None => record(&reply),
    }
    reply
}

async fn receive(env: Arc<Env>, headers: HeaderMap, body: Body) -> (Reply, Option<tracing::Span>) {
    let body = match read_body(&headers, body, READ_TIMEOUT).await {
        Ok(b) => b,
        Err(reply) => return (reply, None),
    };
    let delivery = match verify(&Keys::of(&env.settings), &headers, &body) {
        Ok(d) => d,
        Err(reply) => return (reply, None),
    };
    let ev = delivery.event;
    let span = tracing::info_span!("webhook", merchantTransactionId = %delivery.mtid);
    let work = tokio::spawn(tracing::Instrument::instrument(act(env, delivery), span.clone()));
    let reply = match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Reply::unavailable(ev, "internal error"),
        Err(_) => Reply::unavailable(ev, "busy; retry"),
    };
    (reply, Some(span))
}

/// The metric and the one log line of a delivery (never the body or a header).
fn record(reply: &Reply) {
    metrics::counter!(names::WEBHOOKS, labels::EVENT => reply.event, labels::RESULT => reply.result).increment(1);
    if reply.status.is_success() {
        tracing::info!(event = reply.event, result = reply.result, "PhonePe webhook");
    } else {
        tracing::warn!(
            event = reply.event,
            result = reply.result,
            status = reply.status.as_u16(),
            why = %reply.message,
            "PhonePe webhook refused"
        );
    }
}

async fn endpoint(State(env): State<Arc<Env>>, headers: HeaderMap, body: Body) -> Response {
    let reply = handle(env, headers, body).await;
    (reply.status, format!("{}\n", reply.message)).into_response()
}

/// The webhook app: `POST /webhooks/phonepe` only.
pub fn router(env: Arc<Env>) -> Router {
    Router::new().route(PATH, post(endpoint)).with_state(env)
}

/// Bind `webhook.listen` (an error names the key).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("webhook.listen: cannot listen on {addr}"))
}

/// Serve until `shutdown` resolves. Run it on the runtime that built `env` (its MongoDB client).
pub async fn serve(
    listener: TcpListener,
    env: Arc<Env>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Bounded: idle or half-sent connections cannot eat the process's descriptors.
    let listener = crate::listener::Bounded::new(listener, crate::listener::WEBHOOK_CONNECTIONS);
    axum::serve(listener, router(env))
        .with_graceful_shutdown(shutdown)
        .await
}

mod refund;

#[cfg(test)]
mod tests;
