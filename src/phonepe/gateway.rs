//! The one way to PhonePe (docs/architecture.md, invariants): every call, whoever makes it, takes a
//! permit of the merchant's shared budget, records its result on it (the breaker, the shared
//! pauses), is counted in `reconciler_phonepe_requests_total{api,code}` and logged by id and code,
//! never with a secret. [`Gateway::status`], [`Gateway::refund`] and [`Gateway::refund_status`]
//! wait for their permit themselves; the reconciler pool takes its permits from the RateLimiter
//! actor in FIFO order and hands one in with [`Gateway::status_with`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::client::{RefundRequest, RefundState};
use super::PhonePeClient;
use crate::actors::rate_limiter::{order_key, Budget, CallResult, Permit, Verdict};
use crate::domain::{MerchantTransactionId, StatusError, StatusReport};
use crate::telemetry::{labels, names};

/// Which PhonePe API a call used: the `api` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Order status (v1 `/pg/v1/status`, v2 `/checkout/v2/order/{id}/status`).
    Status,
    /// A refund request (v1 `POST /pg/v1/refund`, v2 `POST /payments/v2/refund`).
    Refund,
    /// A refund's status (v1 status API with the refund's id, v2 `/payments/v2/refund/{id}/status`).
    RefundStatus,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Status, Api::Refund, Api::RefundStatus];

    pub const fn as_str(self) -> &'static str {
        match self {
            Api::Status => labels::phonepe_api::STATUS,
            Api::Refund => labels::phonepe_api::REFUND,
            Api::RefundStatus => labels::phonepe_api::REFUND_STATUS,
        }
    }
}

/// Why a call through the gateway has no business answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No call made: calls are paused until `until` (a 429, refused credentials, the breaker), or
    /// the shared budget in MongoDB cannot be read.
    Paused { until: Instant },
    /// No call made: no permit within the caller's wait.
    NoPermitInTime(Duration),
    /// PhonePe was asked (or the request was refused before sending, HTTP status 0) and gave no
    /// usable answer.
    PhonePe(StatusError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Paused { until } => write!(
                f,
                "no PhonePe call made: calls are paused for {} s more, or the shared budget in MongoDB cannot be read",
                until.saturating_duration_since(Instant::now()).as_secs()
            ),
            CallError::NoPermitInTime(d) => {
                write!(f, "no PhonePe call made: no permit of the budget within {d:?}")
            }
            CallError::PhonePe(e) => write!(f, "{}", e.excerpt()),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// The answer of a call that was made (`Ok(Err(e))` for PhonePe's error), or why none was.
    pub fn split<T>(r: Result<T, CallError>) -> Result<Result<T, StatusError>, CallError> {
        match r {
            Ok(t) => Ok(Ok(t)),
            Err(CallError::PhonePe(e)) => Ok(Err(e)),
            Err(other) => Err(other),
        }
    }
}

/// The PhonePe client behind the merchant's budget. Cheap to share (`Env` holds one); build it
/// on the runtime that uses it (the client's HTTP connections belong to that runtime).
pub struct Gateway {
    client: PhonePeClient,
    budget: Arc<Budget>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(client: PhonePeClient, budget: Arc<Budget>) -> Gateway {
        Gateway { client, budget }
    }

    /// The merchant whose credentials the calls carry.
    pub fn merchant_id(&self) -> &str {
        self.client.merchant_id()
    }

    /// The budget every call draws from.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    async fn permit(&self, within: Option<Duration>) -> Result<Permit, CallError> {
        let acquired = match within {
            Some(d) => tokio::time::timeout(d, self.budget.acquire())
                .await
                .map_err(|_| CallError::NoPermitInTime(d))?,
            None => self.budget.acquire().await,
        };
        let permit = acquired.map_err(|p| CallError::Paused { until: p.until })?;
        metrics::histogram!(names::RATE_LIMIT_WAIT).record(permit.waited().as_secs_f64());
        Ok(permit)
    }

    /// The status of order `mtid`, after a permit of the budget.
    pub async fn status(&self, mtid: &MerchantTransactionId) -> Result<StatusReport, CallError> {
        let permit = self.permit(None).await?;
        self.status_with(permit, mtid).await.0.map_err(CallError::PhonePe)
    }

    /// [`Gateway::status`], waiting at most `wait` for the permit.
    pub async fn status_within(&self, mtid: &MerchantTransactionId, wait: Duration) -> Result<StatusReport, CallError> {
        let permit = self.permit(Some(wait)).await?;
        self.status_with(permit, mtid).await.0.map_err(CallError::PhonePe)
    }

    /// The status of order `mtid` with a permit the caller took (the reconciler's, from the
    /// RateLimiter), and what the breaker made of the result.
    pub async fn status_with(
        &self,
        permit: Permit,
        mtid: &MerchantTransactionId,
    ) -> (Result<StatusReport, StatusError>, Verdict) {
        let call = self.client.check_status(mtid);
        self.call(permit, Api::Status, mtid.as_str(), mtid.as_str(), call, |r| {
            r.code.clone()
        })
        .await
    }

    /// Ask PhonePe for a refund. A request PhonePe could not take (id, original, amount) is
    /// refused before any permit is taken (`Refused`, HTTP status 0).
    pub async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundState, CallError> {
        self.client.check_refund(req).map_err(CallError::PhonePe)?;
        let permit = self.permit(None).await?;
        let call = self.client.refund(req);
        let code = |s: &RefundState| s.code().to_string();
        let (answer, _) = self
            .call(permit, Api::Refund, req.original, req.refund_id, call, code)
            .await;
        answer.map_err(CallError::PhonePe)
    }

    /// Where refund `refund_id` (of the order `original`) stands at PhonePe.
    pub async fn refund_status(&self, refund_id: &str, original: &str) -> Result<RefundState, CallError> {
        self.refund_status_after(self.permit(None).await?, refund_id, original)
            .await
    }

    /// [`Gateway::refund_status`], waiting at most `wait` for the permit.
    pub async fn refund_status_within(
        &self,
        refund_id: &str,
        original: &str,
        wait: Duration,
    ) -> Result<RefundState, CallError> {
        self.refund_status_after(self.permit(Some(wait)).await?, refund_id, original)
            .await
    }

    async fn refund_status_after(
        &self,
        permit: Permit,
        refund_id: &str,
        original: &str,
    ) -> Result<RefundState, CallError> {
        let call = self.client.refund_status(refund_id);
        let code = |s: &RefundState| s.code().to_string();
        let (answer, _) = self
            .call(permit, Api::RefundStatus, original, refund_id, call, code)
            .await;
        answer.map_err(CallError::PhonePe)
    }

    /// One call with its permit: timed, counted, recorded on the budget (keyed by the order
    /// `order`, so the breaker tells orders apart), logged by `id` and code.
    async fn call<T>(
        &self,
        _permit: Permit,
        api: Api,
        order: &str,
        id: &str,
        call: impl Future<Output = Result<T, StatusError>>,
        code_of: impl Fn(&T) -> String,
    ) -> (Result<T, StatusError>, Verdict) {
        // `_permit` is spent by this call: no call without one.
        let sent = Instant::now();
        let answer = call.await;
        let took = sent.elapsed();
        let code = match &answer {
            Ok(t) => code_of(t),
            Err(e) => e.code(),
        };
        metrics::histogram!(names::PHONEPE_REQUEST_DURATION, labels::API => api.as_str()).record(took.as_secs_f64());
        metrics::counter!(names::PHONEPE_REQUESTS, labels::API => api.as_str(), labels::CODE => code.clone())
            .increment(1);
        match &answer {
            Ok(_) => {}
            Err(StatusError::RateLimited) => metrics::counter!(names::PHONEPE_RATE_LIMITED).increment(1),
            Err(e) => metrics::counter!(names::PHONEPE_API_ERRORS, labels::KIND => e.kind_label()).increment(1),
        }
        let verdict = self.budget.record(call_result(&answer, order_key(order)), sent);
        tracing::debug!(
            api = api.as_str(),
            id,
            code = %code,
            ms = took.as_millis() as u64,
            "PhonePe answered"
        );
        (answer, verdict)
    }
}

/// How a call went, for the breaker.
pub(crate) fn call_result<T>(answer: &Result<T, StatusError>, key: u64) -> CallResult {
    match answer {
        Ok(_) => CallResult::Answered,
        Err(StatusError::RateLimited) => CallResult::RateLimited,
        Err(StatusError::Rejected { .. }) => CallResult::Rejected,
        Err(StatusError::Refused { .. }) => CallResult::Refused(key),
        Err(e @ StatusError::Transient { .. }) if e.is_unreadable() => CallResult::Unreadable,
        Err(StatusError::Transient { .. }) => CallResult::Failed(key),
    }
}
