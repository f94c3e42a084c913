//! What the shop is told about an order: one event per history entry the reconciler writes,
//! typed by the entry (docs/events.md). Pure: the store writes the event in the transition's
//! own update, the sender delivers it.

use super::decision::{Reason, ReviewReason};
use super::order::Status;

/// The type of an event (`type` of the body, Standard Webhooks' dotted form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Confirmed,
    Cancelled,
    NeedsReview,
    /// A payment PhonePe confirmed for an order that had left `draft` without one.
    PaymentRecorded,
    RefundRequested,
    Refunded,
    RefundFailed,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::Confirmed,
        EventType::Cancelled,
        EventType::NeedsReview,
        EventType::PaymentRecorded,
        EventType::RefundRequested,
        EventType::Refunded,
        EventType::RefundFailed,
    ];

    /// The spelling on the wire, in `reconciler_events` and in the metric's `type` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Confirmed => "order.confirmed",
            EventType::Cancelled => "order.cancelled",
            EventType::NeedsReview => "order.needs_review",
            EventType::PaymentRecorded => "order.payment_recorded",
            EventType::RefundRequested => "order.refund_requested",
            EventType::Refunded => "order.refunded",
            EventType::RefundFailed => "order.refund_failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event of a status transition to `to` for `reason`; `None` for the steps that are not
    /// the shop's business (into and out of the journal's `committing`). A payment recorded and
    /// a refund requested are typed where they are written (they are not status transitions).
    pub fn of_transition(to: Status, reason: Reason) -> Option<EventType> {
        match to {
            Status::Confirmed => Some(EventType::Confirmed),
            Status::Cancelled => Some(EventType::Cancelled),
            Status::Refunded => Some(EventType::Refunded),
            Status::NeedsReview if reason == Reason::Review(ReviewReason::RefundFailed) => {
                Some(EventType::RefundFailed)
            }
            Status::NeedsReview => Some(EventType::NeedsReview),
            Status::Draft | Status::Committing => None,
        }
    }

    /// Whether a copy also goes to Slack (`notify.slack_url`): the events a person acts on.
    pub const fn notifies_people(self) -> bool {
        matches!(
            self,
            EventType::NeedsReview | EventType::PaymentRecorded | EventType::RefundFailed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CancelReason;

    #[test]
    fn spellings_round_trip_and_are_the_contract() {
        let spelled: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            spelled,
            [
                "order.confirmed",
                "order.cancelled",
                "order.needs_review",
                "order.payment_recorded",
                "order.refund_requested",
                "order.refunded",
                "order.refund_failed"
            ]
        );
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("order.paid"), None);
    }

    /// The fixed reading: typed by where the transition goes; a park whose reason is a failed
    /// refund is `order.refund_failed`, any other park `order.needs_review`.
    #[test]
    fn a_transition_is_typed_by_its_target_and_a_failed_refund_by_its_reason() {
        let of = EventType::of_transition;
        assert_eq!(of(Status::Confirmed, Reason::Paid), Some(EventType::Confirmed));
        let cancel = Reason::Cancel(CancelReason::Operator);
        assert_eq!(of(Status::Cancelled, cancel), Some(EventType::Cancelled));
        assert_eq!(of(Status::Refunded, Reason::Refunded), Some(EventType::Refunded));
        let failed = Reason::Review(ReviewReason::RefundFailed);
        assert_eq!(of(Status::NeedsReview, failed), Some(EventType::RefundFailed));
        for r in ReviewReason::ALL
            .into_iter()
            .filter(|r| *r != ReviewReason::RefundFailed)
        {
            assert_eq!(of(Status::NeedsReview, r.into()), Some(EventType::NeedsReview), "{r:?}");
        }
        assert_eq!(of(Status::Committing, Reason::Paid), None);
        assert_eq!(of(Status::Draft, Reason::Paid), None);
    }

    #[test]
    fn people_hear_about_what_they_must_act_on() {
        let to_people: Vec<EventType> = EventType::ALL.into_iter().filter(|t| t.notifies_people()).collect();
        assert_eq!(
            to_people,
            [
                EventType::NeedsReview,
                EventType::PaymentRecorded,
                EventType::RefundFailed
            ]
        );
    }
}
