//! What PhonePe answered about one transaction, as a domain value.
//!
//! The wire format (JSON, HTTP status codes) is parsed in `phonepe::wire`; by the time a value of
//! these types exists, the answer has been classified: either a business state we may act on
//! (`StatusReport`) or an error that must never change an order (`StatusError`).

use super::order::Paise;

/// The payment state PhonePe reports (`data.state`, or the code when there is no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// `PAYMENT_SUCCESS` / `COMPLETED`: money was taken.
    Completed,
    /// `PAYMENT_ERROR`, `PAYMENT_DECLINED`, `TIMED_OUT` / `FAILED`: final failure.
    Failed,
    /// `PAYMENT_PENDING` / `PENDING`: not final yet.
    Pending,
    /// `TRANSACTION_NOT_FOUND`: PhonePe has no such transaction (yet).
    NotFound,
}

/// A business answer from PhonePe's status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// PhonePe's `code`, e.g. `PAYMENT_SUCCESS` (never customer data, safe to log and label).
    pub code: String,
    pub state: PaymentState,
    /// `data.merchantId`; always present for `Completed` (the parser refuses it otherwise).
    pub merchant_id: Option<String>,
    /// `data.amount` in paise; always present for `Completed`.
    pub amount: Option<Paise>,
    /// PhonePe's own `data.transactionId`, kept in the order history.
    pub transaction_id: Option<String>,
}

/// Why a transient error happened: the `kind` label of `reconciler_phonepe_api_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientKind {
    /// HTTP 5xx or code `INTERNAL_SERVER_ERROR`.
    Server,
    /// No answer within `request_timeout_secs`.
    Timeout,
    /// Could not connect / connection dropped.
    Connection,
    /// Not JSON, or JSON missing the fields a decision needs.
    Malformed,
    /// A code or state PhonePe does not document.
    UnknownCode,
}

impl TransientKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TransientKind::Server => "server_error",
            TransientKind::Timeout => "timeout",
            TransientKind::Connection => "connection",
            TransientKind::Malformed => "malformed",
            TransientKind::UnknownCode => "unknown_code",
        }
    }
}

/// The longest [`StatusError::excerpt`].
pub const EXCERPT_MAX: usize = 200;

/// An answer that must not change any order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// HTTP 429 / `TOO_MANY_REQUESTS`: everyone backs off.
    #[error("PhonePe rate limit hit (429 TOO_MANY_REQUESTS)")]
    RateLimited,
    /// Retry later with backoff.
    #[error("transient PhonePe error ({}): {detail}", kind.as_str())]
    Transient { kind: TransientKind, detail: String },
    /// HTTP 401 / `AUTHORIZATION_FAILED`: our configuration is wrong; retrying the same call will
    /// not help, so calls pause (circuit breaker).
    #[error("PhonePe rejected our request as {code} (HTTP {http_status}): check merchant id, salt key, salt index and base URL")]
    Rejected { code: String, http_status: u16 },
    /// `BAD_REQUEST` (not on a 401): PhonePe refused the request about *this* transaction (an id
    /// it cannot take). It concerns one order: that order is retried with backoff and parked
    /// after a few refusals; only the same refusal for several different orders in a row pauses
    /// every call (then it looks like our configuration after all).
    #[error("PhonePe refused the request for this transaction as {code} (HTTP {http_status})")]
    Refused { code: String, http_status: u16 },
}

impl StatusError {
    /// [`StatusError::RateLimited`]'s label (stored as `lastCode`; 429s have a metric of their own).
    pub const RATE_LIMITED_LABEL: &'static str = "rate_limited";
    /// [`StatusError::Rejected`]'s label.
    pub const REJECTED_LABEL: &'static str = "rejected";
    /// [`StatusError::Refused`]'s label.
    pub const REFUSED_LABEL: &'static str = "refused";

    /// The `kind` label used in metrics and the `lastCode` stored on the order.
    pub fn kind_label(&self) -> &'static str {
        match self {
            StatusError::RateLimited => Self::RATE_LIMITED_LABEL,
            StatusError::Transient { kind, .. } => kind.as_str(),
            StatusError::Rejected { .. } => Self::REJECTED_LABEL,
            StatusError::Refused { .. } => Self::REFUSED_LABEL,
        }
    }

    /// A malformed answer or an undocumented code: PhonePe answered, but not in a way anyone may
    /// act on. Counted per order and parked after `job.unreadable_max_attempts`.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            StatusError::Transient {
                kind: TransientKind::Malformed | TransientKind::UnknownCode,
                ..
            }
        )
    }

    /// A short, secret-free description of what was wrong, for `reconciliation.lastError`: the
    /// classified detail `phonepe::wire` builds from codes and field names (never values from the
    /// body), at most [`EXCERPT_MAX`] characters.
    pub fn excerpt(&self) -> String {
        let full = match self {
            StatusError::Transient { kind, detail } => format!("{}: {detail}", kind.as_str()),
            other => other.to_string(),
        };
        full.chars().take(EXCERPT_MAX).collect()
    }

    /// The code to record in `reconciliation.lastCode`.
    pub fn code(&self) -> String {
        match self {
            StatusError::RateLimited => "TOO_MANY_REQUESTS".to_string(),
            StatusError::Transient { kind, .. } => format!("ERROR_{}", kind.as_str().to_uppercase()),
            StatusError::Rejected { code, .. } | StatusError::Refused { code, .. } => code.clone(),
        }
    }
}
