//! The shop hears about every settlement (docs/events.md). Each transition's event is recorded by
//! the process that makes it, in the same write (`store/outbox.rs`), and moved to
//! `reconciler_events` (`store/events.rs`); `run`'s `EventSender` actor delivers them: signed as
//! Standard Webhooks ([`sign`]) to `events.url`, in order per order, retried on the decaying
//! schedule of `events.retry_secs` for `events.retry_for_hours` ([`send`]); a one-line copy of
//! those a person acts on to `notify.slack_url`. `draft-reconciler events` lists, shows and
//! replays them ([`cli`]).

pub mod cli;
pub mod send;
pub mod settings;
pub mod sign;

use std::time::Duration;

/// The wait after the `attempts`-th failed attempt: `retry[attempts - 1]`, the last repeating,
/// scaled by `jitter` (drawn in 0.9..=1.1, so attempts that failed together spread out).
pub fn retry_wait(attempts: i64, retry: &[Duration], jitter: f64) -> Duration {
    let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0);
    let base = retry
        .get(i)
        .or(retry.last())
        .copied()
        .unwrap_or(Duration::from_secs(60));
    base.mul_f64(jitter.clamp(0.9, 1.1))
}

/// A jitter factor for [`retry_wait`]: uniform in 0.9..1.1.
pub fn jitter() -> f64 {
    0.9 + fastrand::f64() * 0.2
}

/// The one-line Slack copy of an event a person acts on (`notify.slack_url`): the order, what
/// happened and the command to look at it. Never customer data.
pub fn slack_line(event: &mongodb::bson::Document) -> String {
    let data = event
        .get_document("payload")
        .and_then(|p| p.get_document("data"))
        .cloned()
        .unwrap_or_default();
    let text = |k: &str| data.get_str(k).unwrap_or("-").to_string();
    let rupees = |k: &str| {
        crate::store::events::int(data.get(k)).map_or("-".to_string(), |p| format!("₹{}.{:02}", p / 100, p % 100))
    };
    let mtid = text("merchantTransactionId");
    let look = format!("`draft-reconciler review show {mtid}`");
    match event.get_str("type").ok().and_then(crate::domain::EventType::parse) {
        Some(crate::domain::EventType::PaymentRecorded) => format!(
            "Order {mtid}: PhonePe reports a payment of {} after the order left draft ({}); refund or fulfil it: {look}",
            rupees("paidAmount"),
            text("reason")
        ),
        Some(crate::domain::EventType::RefundFailed) => {
            let refund = data.get_document("refund").ok();
            let id = refund.and_then(|r| r.get_str("id").ok()).unwrap_or("-");
            let code = refund.and_then(|r| r.get_str("code").ok()).unwrap_or("-");
            format!("Order {mtid}: refund {id} failed at PhonePe ({code}); refund it again, or cancel it with a note: {look}")
        }
        _ => format!(
            "Order {mtid} needs a person: parked as needs_review ({}), amount {}, paid {}: {look}",
            text("reason"),
            rupees("amount"),
            rupees("paidAmount")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_list_and_the_last_repeats() {
        let retry: Vec<Duration> = [5, 30, 120].map(Duration::from_secs).to_vec();
        let waits: Vec<u64> = (1..=5).map(|n| retry_wait(n, &retry, 1.0).as_secs()).collect();
        assert_eq!(waits, [5, 30, 120, 120, 120]);
        assert_eq!(
            retry_wait(0, &retry, 1.0),
            Duration::from_secs(5),
            "no attempt: the first wait"
        );
    }

    #[test]
    fn the_slack_line_names_the_order_the_reason_and_the_command() {
        use mongodb::bson::doc;
        let event =
            |ty: &str, data: mongodb::bson::Document| doc! { "type": ty, "payload": { "type": ty, "data": data } };
        let parked = event(
            "order.needs_review",
            doc! { "merchantTransactionId": "ORD-7", "reason": "amount_mismatch", "amount": 49_900_i64, "paidAmount": 100_i64 },
        );
        assert_eq!(
            slack_line(&parked),
            "Order ORD-7 needs a person: parked as needs_review (amount_mismatch), amount ₹499.00, paid ₹1.00: \
             `draft-reconciler review show ORD-7`"
        );
        let paid = event(
            "order.payment_recorded",
            doc! { "merchantTransactionId": "ORD-8", "reason": "paid_after_cancel", "paidAmount": 1_005_i64 },
        );
        assert!(slack_line(&paid).contains("payment of ₹10.05"), "{}", slack_line(&paid));
        let failed = event(
            "order.refund_failed",
            doc! { "merchantTransactionId": "ORD-9", "refund": { "id": "RF1-1", "code": "FAILED" } },
        );
        assert!(
            slack_line(&failed).contains("refund RF1-1 failed at PhonePe (FAILED)"),
            "{}",
            slack_line(&failed)
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let retry = [Duration::from_secs(100)];
        assert_eq!(retry_wait(1, &retry, 0.5), Duration::from_secs(90));
        assert_eq!(retry_wait(1, &retry, 2.0), Duration::from_secs(110));
        for _ in 0..200 {
            let j = jitter();
            assert!((0.9..=1.1).contains(&j), "{j}");
        }
        assert!((0..50).map(|_| jitter()).any(|j| (j - 1.0).abs() > 0.01), "it varies");
    }
}
