//! An order as the reconciler sees it, parsed from its MongoDB document.
//!
//! Documents come from a shop's database and are not trusted: `Order::parse` checks every field
//! the reconciler relies on and names the first one that is wrong, so a bad document is parked
//! for a person with a clear reason instead of being guessed at. Once parsed, the types make the
//! wrong states unrepresentable: amounts are `Paise`, quantities are positive, ids are path-safe.
//! `created_at` is the effective creation time (`effective_created_at`: a date, an ISO string,
//! epoch milliseconds, or the ObjectId's time); the document's `createdAt` is never rewritten.
//! Field names, status words and the amount's unit are the shop's, from the `[schema]` mapping
//! (`src/schema.rs`); the default names are used in these comments, and errors name the field as
//! the shop spells it.

use std::fmt;

use mongodb::bson::{Bson, DateTime, Document};

use crate::schema::{amount_paise, get_path, Schema};

pub use super::created_at::effective_created_at;
use crate::store::fields::own;

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
    /// When the order was created, as [`effective_created_at`] reads it (the document's own
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

fn int_field(v: Option<&Bson>, field: &str) -> Result<i64, OrderError> {
    match v {
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Double(_)) => Err(bad(field, "is a floating-point number; an integer is required")),
        Some(Bson::Null) | None => Err(bad(field, "is missing")),
        Some(other) => Err(bad(
            field,
            format!("has type {:?}; an integer is required", other.element_type()),
        )),
    }
}

impl Order {
    /// Parse an `orders` document read through `schema` (the shop's paths, words and amount
    /// unit), naming the first field (as the shop spells it) that is missing or wrong.
    pub fn parse(doc: &Document, schema: &Schema) -> Result<Order, OrderError> {
        let o = &schema.orders;
        let id = doc.get("_id").cloned().ok_or_else(|| bad("_id", "is missing"))?;
        let mtid = match get_path(doc, &o.id) {
            Some(Bson::String(s)) => MerchantTransactionId::parse(s).map_err(|p| bad(&o.id, p))?,
            None | Some(Bson::Null) => return Err(bad(&o.id, "is missing")),
            Some(_) => return Err(bad(&o.id, "is not a string")),
        };
        let status = read_status(doc, schema)
            .ok_or_else(|| bad(&o.status, format!("is missing or not one of {}", status_words(schema))))?;
        let payment_status = read_payment_status(doc, schema).ok_or_else(|| {
            bad(
                &o.payment_status,
                format!("is missing or not one of {}", payment_words(schema)),
            )
        })?;
        let amount = amount_paise(get_path(doc, &o.amount), o.amount_unit).map_err(|p| bad(&o.amount, p))?;
        if amount <= 0 {
            return Err(bad(&o.amount, "must be a positive amount"));
        }
        let items = parse_items(get_path(doc, &o.items), schema)?;
        let created_at = effective_created_at(doc, schema)?;
        let recon = doc.get_document(own::RECONCILIATION_KEY).ok();
        let attempts = counter(recon, own::ATTEMPTS)?;
        let (errors, unreadable, rejections) = (
            counter(recon, own::ERRORS)?,
            counter(recon, own::UNREADABLE)?,
            counter(recon, own::REJECTIONS)?,
        );
        let reason = recon
            .and_then(|r| r.get_str(own::key(own::REASON)).ok())
            .map(str::to_string);
        Ok(Order {
            id,
            merchant_transaction_id: mtid,
            status,
            payment_status,
            amount: Paise(amount),
            items,
            created_at,
            attempts,
            reason,
            errors,
            unreadable,
            rejections,
        })
    }
}

/// A `reconciliation.*` counter (`path`, one of [`own`]'s): absent is 0.
fn counter(recon: Option<&Document>, path: &str) -> Result<u32, OrderError> {
    match recon.and_then(|r| r.get(own::key(path))) {
        None | Some(Bson::Null) => Ok(0),
        v => Ok(int_field(v, path)?.clamp(0, i64::from(u32::MAX)) as u32),
    }
}

/// The order's status, read through the schema's path and words (`None`: missing or unmapped).
pub fn read_status(doc: &Document, schema: &Schema) -> Option<Status> {
    let word = get_path(doc, &schema.orders.status)?.as_str()?;
    schema.orders.status_values.parse(word)
}

/// The order's payment status, read through the schema's path and words.
pub fn read_payment_status(doc: &Document, schema: &Schema) -> Option<PaymentStatus> {
    let word = get_path(doc, &schema.orders.payment_status)?.as_str()?;
    schema.orders.payment_status_values.parse(word)
}

fn status_words(schema: &Schema) -> String {
    let w = &schema.orders.status_values;
    [
        Status::Draft,
        Status::Committing,
        Status::Confirmed,
        Status::Cancelled,
        Status::NeedsReview,
    ]
    .map(|s| w.word(s).to_string())
    .join(", ")
}

fn payment_words(schema: &Schema) -> String {
    let w = &schema.orders.payment_status_values;
    [PaymentStatus::Pending, PaymentStatus::Paid, PaymentStatus::Failed]
        .map(|s| w.word(s).to_string())
        .join(", ")
}

fn parse_items(v: Option<&Bson>, schema: &Schema) -> Result<Vec<Item>, OrderError> {
    let o = &schema.orders;
    let items = &o.items;
    let arr = match v {
        Some(Bson::Array(a)) => a,
        None | Some(Bson::Null) => return Err(bad(items, "is missing")),
        Some(_) => return Err(bad(items, "is not an array")),
    };
    if arr.is_empty() {
        return Err(bad(items, "is empty"));
    }
    arr.iter()
        .enumerate()
        .map(|(i, it)| {
            let f = |name: &str| format!("{items}.{i}.{name}");
            let d = it
                .as_document()
                .ok_or_else(|| bad(format!("{items}.{i}"), "is not a document"))?;
            let product_id = match get_path(d, &o.item_product) {
                None | Some(Bson::Null) => return Err(bad(f(&o.item_product), "is missing")),
                Some(p) => p.clone(),
            };
            let quantity = int_field(get_path(d, &o.item_quantity), &f(&o.item_quantity))?;
            if quantity <= 0 {
                return Err(bad(f(&o.item_quantity), "must be a positive integer"));
            }
            let size = match get_path(d, &o.item_size) {
                None | Some(Bson::Null) => None,
                Some(Bson::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(_) => return Err(bad(f(&o.item_size), "must be a non-empty string when present")),
            };
            Ok(Item {
                product_id,
                quantity,
                size,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId};

    fn good() -> Document {
        doc! {
            "_id": ObjectId::new(), "merchantTransactionId": "ORD-1001", "status": "draft",
            "paymentStatus": "pending", "amount": 49900_i64,
            "items": [{"productId": ObjectId::new(), "quantity": 2, "size": "M"}, {"productId": "sku-2", "quantity": 1}],
            "createdAt": DateTime::now(),
        }
    }

    #[test]
    fn parses_a_well_formed_order() {
        let o = Order::parse(&good(), &Schema::default()).unwrap();
        assert_eq!(o.amount, Paise(49900));
        assert_eq!(o.items.len(), 2);
        assert_eq!(o.items[0].size.as_deref(), Some("M"));
        assert_eq!(o.items[1].size, None);
        assert_eq!(o.attempts, 0);
        assert_eq!(o.status, Status::Draft);
    }

    #[test]
    fn names_the_bad_field() {
        let cases: Vec<(&str, Bson, &str)> = vec![
            ("amount", Bson::Double(499.0), "amount"),
            ("amount", Bson::Int32(0), "amount"),
            ("amount", Bson::String("499".into()), "amount"),
            (
                "merchantTransactionId",
                Bson::String("a/b".into()),
                "merchantTransactionId",
            ),
            (
                "merchantTransactionId",
                Bson::String(String::new()),
                "merchantTransactionId",
            ),
            ("status", Bson::String("paid".into()), "status"),
            ("paymentStatus", Bson::Int32(1), "paymentStatus"),
            ("items", Bson::Array(vec![]), "items"),
            (
                "items",
                Bson::Array(vec![Bson::Document(doc! {"productId": 1, "quantity": -1})]),
                "items.0.quantity",
            ),
            (
                "items",
                Bson::Array(vec![Bson::Document(doc! {"quantity": 1})]),
                "items.0.productId",
            ),
        ];
        for (key, value, field) in cases {
            let mut d = good();
            d.insert(key, value.clone());
            let err = Order::parse(&d, &Schema::default()).unwrap_err();
            assert_eq!(err.field, field, "{key}={value:?} gave {err}");
        }
        let mut d = good();
        d.remove("amount");
        assert_eq!(
            Order::parse(&d, &Schema::default()).unwrap_err().to_string(),
            "order document field `amount` is missing"
        );
    }

    #[test]
    fn created_at_is_read_from_every_type_a_shop_stores() {
        let ms = 1_790_000_000_000_i64; // 2026-09-21
        let cases: Vec<Bson> = vec![
            Bson::DateTime(DateTime::from_millis(ms)),
            Bson::String("2026-09-21T14:13:20.000Z".into()),
            Bson::String("2026-09-21T19:43:20+05:30".into()),
            Bson::Int64(ms),
            Bson::Double(ms as f64),
        ];
        for v in cases {
            let mut d = good();
            d.insert("createdAt", v.clone());
            assert_eq!(
                Order::parse(&d, &Schema::default())
                    .unwrap()
                    .created_at
                    .timestamp_millis(),
                ms,
                "{v:?}"
            );
            assert_eq!(d.get("createdAt"), Some(&v), "the document is not rewritten");
        }
    }

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

    #[test]
    fn failure_counters_are_read_from_the_reconciliation_block() {
        let mut d = good();
        d.insert(
            "reconciliation",
            doc! { "errors": 2, "unreadable": 3_i64, "rejections": 1 },
        );
        let o = Order::parse(&d, &Schema::default()).unwrap();
        assert_eq!((o.errors, o.unreadable, o.rejections), (2, 3, 1));
        d.insert("reconciliation", doc! { "errors": "two" });
        assert_eq!(
            Order::parse(&d, &Schema::default()).unwrap_err().field,
            "reconciliation.errors"
        );
    }

    #[test]
    fn an_empty_size_is_an_error_naming_the_item() {
        let mut d = good();
        d.insert(
            "items",
            vec![Bson::Document(doc! { "productId": 1, "quantity": 1, "size": "" })],
        );
        assert_eq!(Order::parse(&d, &Schema::default()).unwrap_err().field, "items.0.size");
    }
}
