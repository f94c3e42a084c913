//! What an order is, once read: amounts in paise, a path-safe transaction id, the status and
//! payment-status vocabularies, its lines, and what is wrong with a document that is none of these.
//! Reading a document through the shop's mapping is `schema/reading.rs` (docs/architecture.md,
//! "Order lifecycle"); the types make the wrong states unrepresentable.

use std::fmt;

use mongodb::bson::{Bson, DateTime};

/// An amount of money in paise (1/100 rupee), as PhonePe and the `orders.amount` field carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Paise(pub i64);

impl fmt::Display for Paise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} paise", self.0)
    }
}

/// The shop's id for the payment, also the id PhonePe knows it by. It goes into a URL path and the
/// X-VERIFY checksum, so only PhonePe's documented characters are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MerchantTransactionId(String);

impl MerchantTransactionId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!("is longer than {} characters", Self::MAX_LEN));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!("contains {c:?}; only letters, digits, '_' and '-' are allowed"));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MerchantTransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `orders.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    /// Internal to the journal commit strategy: stock is being moved for this order.
    Committing,
    Confirmed,
    Cancelled,
    NeedsReview,
    /// A paid order whose money went back to the customer through PhonePe (`review resolve
    /// refund`, or `refunds.auto`); nothing was deducted.
    Refunded,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Draft,
        Status::Committing,
        Status::Confirmed,
        Status::Cancelled,
        Status::NeedsReview,
        Status::Refunded,
    ];

    /// The stored spelling (the one place it is written).
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Committing => "committing",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
            Status::NeedsReview => "needs_review",
            Status::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// `orders.paymentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Paid,
    Failed,
    /// A refund was recorded on the order (`reconciliation.refund`) and asked of PhonePe; the
    /// poller settles it.
    RefundPending,
    /// PhonePe completed the refund.
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Pending,
        PaymentStatus::Paid,
        PaymentStatus::Failed,
        PaymentStatus::RefundPending,
        PaymentStatus::Refunded,
    ];

    /// The stored spelling (the one place it is written).
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Failed => "failed",
            PaymentStatus::RefundPending => "refund_pending",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One line of an order: `quantity` units of `product_id`, of `size` when the product has sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `products._id` (usually an ObjectId, sometimes a string; kept as the shop stored it).
    pub product_id: Bson,
    pub quantity: i64,
    pub size: Option<String>,
}

/// A parsed order. Only what the reconciler needs; the shop's other fields are left alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: Bson,
    pub merchant_transaction_id: MerchantTransactionId,
    pub status: Status,
    pub payment_status: PaymentStatus,
    pub amount: Paise,
    pub items: Vec<Item>,
    /// When the order was created, as `schema::effective_created_at` reads it (the document's own
    /// `createdAt` is never rewritten).
    pub created_at: DateTime,
    /// `reconciliation.attempts`: how many PhonePe checks were made so far.
    pub attempts: u32,
    /// `reconciliation.reason`: why the order was last settled (used by the late-payment watch).
    pub reason: Option<String>,
    /// `reconciliation.errors`: PhonePe errors of this order alone (5xx, timeout, connection while
    /// other orders' calls went through); drives its error backoff.
    pub errors: u32,
    /// `reconciliation.unreadable`: malformed or undocumented answers about this order.
    pub unreadable: u32,
    /// `reconciliation.rejections`: `BAD_REQUEST` refusals of this order's transaction.
    pub rejections: u32,
}

/// What is wrong with an order document: the field and the problem, never the field's value
/// (which could be customer data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order document field `{field}` {problem}")]
pub struct OrderError {
    pub field: String,
    pub problem: String,
}

pub(crate) fn bad(field: impl Into<String>, problem: impl Into<String>) -> OrderError {
    OrderError {
        field: field.into(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_have_their_stored_spellings_and_parse_back() {
        let statuses = [
            (Status::Draft, "draft"),
            (Status::Committing, "committing"),
            (Status::Confirmed, "confirmed"),
            (Status::Cancelled, "cancelled"),
            (Status::NeedsReview, "needs_review"),
            (Status::Refunded, "refunded"),
        ];
        for (status, word) in statuses {
            assert_eq!(status.as_str(), word);
            assert_eq!(Status::parse(word), Some(status));
        }
        let payments = [
            (PaymentStatus::Pending, "pending"),
            (PaymentStatus::Paid, "paid"),
            (PaymentStatus::Failed, "failed"),
            (PaymentStatus::RefundPending, "refund_pending"),
            (PaymentStatus::Refunded, "refunded"),
        ];
        for (payment, word) in payments {
            assert_eq!(payment.as_str(), word);
            assert_eq!(PaymentStatus::parse(word), Some(payment));
        }
        for unknown in ["", "Draft", "Refunded", "xyzzy"] {
            assert_eq!(Status::parse(unknown), None, "{unknown}");
            assert_eq!(PaymentStatus::parse(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn ids_are_at_most_64_characters_and_display_as_themselves() {
        let longest = "A".repeat(MerchantTransactionId::MAX_LEN);
        assert_eq!(MerchantTransactionId::parse(&longest).unwrap().as_str(), longest);
        assert!(MerchantTransactionId::parse(&format!("{longest}B")).is_err());
        let id = MerchantTransactionId::parse("ORD-1001_x").unwrap();
        assert_eq!(id.to_string(), "ORD-1001_x");
        assert_eq!(Paise(49900).to_string(), "49900 paise");
    }
}
