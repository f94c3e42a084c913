//! Reading an `orders` document through the shop's mapping (docs/schema.md). [`Order::parse`] is
//! the service's reading: the documents come from the shop and are not trusted, so every field the
//! reconciler relies on is checked and the first wrong one named as the shop spells it; the order
//! is then parked for a person, never guessed at. [`Schema::read_order`] is `check`'s view: each
//! mapped field as stored and what it reads as.

use mongodb::bson::{Bson, Document};

use super::own;
use super::{amount_paise, effective_created_at, get_path, AmountUnit, Schema};
use crate::domain::order::bad;
use crate::domain::{Item, MerchantTransactionId, Order, OrderError, Paise, PaymentStatus, Status};

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

impl Schema {
    /// One line per mapped field of an `orders` document: the shop's name, the stored value, and
    /// its meaning (or why it has none).
    pub fn read_order(&self, doc: &Document) -> Vec<String> {
        let o = &self.orders;
        let mut out = vec![
            line(doc, &o.id, "", |v| match v.as_str() {
                Some(s) => format!("the id sent to PhonePe ({s})"),
                None => "not a string: no id to send to PhonePe".into(),
            }),
            line(doc, &o.status, "", |_| match read_status(doc, self) {
                Some(s) => s.as_str().to_string(),
                None => "not a word of schema.orders.status_values".into(),
            }),
            line(doc, &o.payment_status, "", |_| match read_payment_status(doc, self) {
                Some(p) => p.as_str().to_string(),
                None => "not a word of schema.orders.payment_status_values".into(),
            }),
            line(doc, &o.amount, unit_name(o.amount_unit), |v| {
                match amount_paise(Some(v), o.amount_unit) {
                    Ok(p) => format!("{p} paise"),
                    Err(problem) => format!("unreadable: {problem}"),
                }
            }),
            line(doc, &o.created_at, "", |_| match effective_created_at(doc, self) {
                Ok(t) => format!("created {}", t.try_to_rfc3339_string().unwrap_or_default()),
                Err(e) => format!("unreadable: {}", e.problem),
            }),
        ];
        out.extend(self.read_items(doc));
        out
    }

    fn read_items(&self, doc: &Document) -> Vec<String> {
        let o = &self.orders;
        let Some(Bson::Array(items)) = get_path(doc, &o.items) else {
            return vec![format!("{} (missing or not an array) → no items", o.items)];
        };
        let fields = [&o.item_product, &o.item_quantity, &o.item_size];
        items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|f| match it.as_document().and_then(|d| get_path(d, f)) {
                        Some(v) => format!("{f} {v}"),
                        None => format!("{f} (missing)"),
                    })
                    .collect();
                format!("{}.{i}: {}", o.items, parts.join(", "))
            })
            .collect()
    }
}

fn unit_name(unit: AmountUnit) -> &'static str {
    match unit {
        AmountUnit::Paise => " paise",
        AmountUnit::Rupees => " rupees",
    }
}

/// `path value[unit] → meaning`, or `path (missing)`.
fn line(doc: &Document, path: &str, unit: &str, meaning: impl FnOnce(&Bson) -> String) -> String {
    match get_path(doc, path) {
        Some(v) => format!("{path} {v}{unit} → {}", meaning(v)),
        None => format!("{path} (missing)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, DateTime};

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
