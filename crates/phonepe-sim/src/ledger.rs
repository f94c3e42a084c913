//! The simulator's refund ledger: the one refund made under each id, the requests and status
//! calls counted per id, and what each refund is scripted to answer or fail with (`refund.rs`
//! serves it).

use std::collections::HashMap;
use std::time::Duration;

/// What a refund's status answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundAnswer {
    Completed,
    Pending,
    Failed,
}

impl RefundAnswer {
    pub(crate) fn v2_state(self) -> &'static str {
        match self {
            RefundAnswer::Completed => "COMPLETED",
            RefundAnswer::Pending => "PENDING",
            RefundAnswer::Failed => "FAILED",
        }
    }

    pub(crate) fn v1_code(self) -> &'static str {
        match self {
            RefundAnswer::Completed => "PAYMENT_SUCCESS",
            RefundAnswer::Pending => "PAYMENT_PENDING",
            RefundAnswer::Failed => "PAYMENT_ERROR",
        }
    }
}

#[derive(Default)]
pub(crate) struct Refunds {
    /// refund id → (original transaction, amount) of the one refund made under it.
    pub(crate) made: HashMap<String, (String, i64)>,
    pub(crate) requests: HashMap<String, u32>,
    pub(crate) status_calls: HashMap<String, u32>,
    pub(crate) scripts: HashMap<String, (Vec<RefundAnswer>, usize)>,
    pub(crate) delays: HashMap<String, Duration>,
    /// Requests refused with this code (HTTP 400), no refund made.
    pub(crate) refusals: HashMap<String, String>,
    /// Every call about the id answered with this HTTP status.
    pub(crate) failures: HashMap<String, u16>,
    /// The next status call answered only after this delay (once).
    pub(crate) status_delays: HashMap<String, Duration>,
}

/// How a request or status call about a refund is answered, decided under the lock.
pub(crate) enum Decided {
    /// PhonePe's error body with this HTTP status (and code, when not the status's own).
    Error(u16, Option<String>),
    /// A business answer, after the delay.
    Answer(RefundAnswer, Duration),
    /// No refund under the id.
    Unknown,
}

impl Refunds {
    /// The next scripted status of `id` (the last repeats), or a failure set for it.
    pub(crate) fn status(&mut self, id: &str) -> Decided {
        if let Some(status) = self.failures.get(id) {
            *self.status_calls.entry(id.to_string()).or_default() += 1;
            return Decided::Error(*status, None);
        }
        if !self.made.contains_key(id) {
            return Decided::Unknown;
        }
        *self.status_calls.entry(id.to_string()).or_default() += 1;
        let delay = self.status_delays.remove(id).unwrap_or_default();
        let Some((answers, next)) = self.scripts.get_mut(id) else {
            return Decided::Answer(RefundAnswer::Completed, delay);
        };
        let i = (*next).min(answers.len().saturating_sub(1));
        *next = i + 1;
        Decided::Answer(answers.get(i).copied().unwrap_or(RefundAnswer::Completed), delay)
    }

    /// Record a request; create the refund unless this id has one (or it is refused, or failing).
    pub(crate) fn request(&mut self, id: &str, original: &str, amount: i64) -> Decided {
        *self.requests.entry(id.to_string()).or_default() += 1;
        if let Some(status) = self.failures.get(id) {
            return Decided::Error(*status, None);
        }
        if let Some(code) = self.refusals.get(id) {
            return Decided::Error(400, Some(code.clone()));
        }
        self.made
            .entry(id.to_string())
            .or_insert_with(|| (original.to_string(), amount));
        Decided::Answer(RefundAnswer::Pending, self.delays.remove(id).unwrap_or_default())
    }
}
