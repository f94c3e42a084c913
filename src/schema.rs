//! The shop's schema, from `[schema]` (README.md, "Fitting your schema"; docs/schema.md): which
//! collections, field paths, status words and amount unit the shop's documents use; defaults are
//! the reconciler's own names. Every query, guard, update and index that touches a shop field takes
//! its name from here; the reconciler's own fields ([`own`]) keep theirs, and no mapped path may
//! collide with them. [`Schema::validate`] names the key of the first mistake.

use std::collections::BTreeMap;

use mongodb::bson::{Bson, Document};
use serde::{Deserialize, Serialize};

use crate::domain::{PaymentStatus, Status};

/// Fields on `orders` documents that belong to the reconciler, never to the shop.
pub const OWN_ORDER_FIELDS: [&str; 3] = ["_id", "reconciliation", "history"];
/// Field on `products` documents that belongs to the reconciler (the journal's commit markers).
pub const OWN_PRODUCT_FIELDS: [&str; 2] = ["_id", "reconcilerCommits"];

const STATUSES: [Status; 6] = Status::ALL;
const PAYMENT_STATUSES: [PaymentStatus; 5] = PaymentStatus::ALL;

/// How an item's product reference is matched against the products' `_id`
/// (`schema.orders.item_product_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductIdType {
    /// As stored, and a 24-hex-digit string also matches the ObjectId it spells (and an ObjectId
    /// the string of its hex digits): Mongoose shops often store one and query by the other.
    #[default]
    Auto,
    /// The products' `_id` are ObjectIds: a 24-hex-digit string reference is read as one.
    Objectid,
    /// The products' `_id` are strings: an ObjectId reference is read as its hex digits.
    String,
}

/// The unit of the order's amount field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountUnit {
    /// An integer number of paise (what PhonePe speaks).
    Paise,
    /// A number of rupees with at most two decimals (a double, an integer or a Decimal128).
    Rupees,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schema {
    pub orders: OrdersSchema,
    pub products: ProductsSchema,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSchema {
    pub collection: String,
    /// The id sent to PhonePe (its `merchantTransactionId` / `merchantOrderId`).
    pub id: String,
    pub status: String,
    pub payment_status: String,
    pub amount: String,
    pub amount_unit: AmountUnit,
    pub created_at: String,
    /// Set to the time of each status change the reconciler makes.
    pub updated_at: String,
    pub items: String,
    /// Paths inside one element of `items`.
    pub item_product: String,
    pub item_quantity: String,
    pub item_size: String,
    /// How `item_product` is matched against the products' `_id`.
    pub item_product_type: ProductIdType,
    pub status_values: StatusWords,
    pub payment_status_values: PaymentStatusWords,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProductsSchema {
    pub collection: String,
    pub stock: String,
    /// The array of per-size entries; inside one entry, `size_name` and `size_stock`.
    pub sizes: String,
    pub size_name: String,
    pub size_stock: String,
}

/// Our order state → the shop's word for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusWords {
    pub draft: String,
    pub confirmed: String,
    pub cancelled: String,
    pub needs_review: String,
    pub committing: String,
    pub refunded: String,
}

/// Our payment state → the shop's word for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentStatusWords {
    pub pending: String,
    pub paid: String,
    pub failed: String,
    pub refund_pending: String,
    pub refunded: String,
}

impl Default for OrdersSchema {
    fn default() -> Self {
        OrdersSchema {
            collection: "orders".into(),
            id: "merchantTransactionId".into(),
            status: "status".into(),
            payment_status: "paymentStatus".into(),
            amount: "amount".into(),
            amount_unit: AmountUnit::Paise,
            created_at: "createdAt".into(),
            updated_at: "updatedAt".into(),
            items: "items".into(),
            item_product: "productId".into(),
            item_quantity: "quantity".into(),
            item_size: "size".into(),
            item_product_type: ProductIdType::Auto,
            status_values: StatusWords::default(),
            payment_status_values: PaymentStatusWords::default(),
        }
    }
}

impl Default for ProductsSchema {
    fn default() -> Self {
        ProductsSchema {
            collection: "products".into(),
            stock: "stock".into(),
            sizes: "sizes".into(),
            size_name: "size".into(),
            size_stock: "stock".into(),
        }
    }
}

impl Default for StatusWords {
    fn default() -> Self {
        StatusWords {
            draft: "draft".into(),
            confirmed: "confirmed".into(),
            cancelled: "cancelled".into(),
            needs_review: "needs_review".into(),
            committing: "committing".into(),
            refunded: "refunded".into(),
        }
    }
}

impl Default for PaymentStatusWords {
    fn default() -> Self {
        PaymentStatusWords {
            pending: "pending".into(),
            paid: "paid".into(),
            failed: "failed".into(),
            refund_pending: "refund_pending".into(),
            refunded: "refunded".into(),
        }
    }
}

/// A mistake in the mapping: the dotted key (`schema.orders.status`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SchemaError {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> SchemaError {
    SchemaError {
        key: key.into(),
        problem: problem.into(),
    }
}

impl StatusWords {
    pub fn word(&self, s: Status) -> &str {
        match s {
            Status::Draft => &self.draft,
            Status::Committing => &self.committing,
            Status::Confirmed => &self.confirmed,
            Status::Cancelled => &self.cancelled,
            Status::NeedsReview => &self.needs_review,
            Status::Refunded => &self.refunded,
        }
    }

    pub fn parse(&self, word: &str) -> Option<Status> {
        STATUSES.into_iter().find(|s| self.word(*s) == word)
    }

    fn entries(&self) -> [(&'static str, &str); 6] {
        [
            ("draft", &self.draft),
            ("confirmed", &self.confirmed),
            ("cancelled", &self.cancelled),
            ("needs_review", &self.needs_review),
            ("committing", &self.committing),
            ("refunded", &self.refunded),
        ]
    }
}

impl PaymentStatusWords {
    pub fn word(&self, s: PaymentStatus) -> &str {
        match s {
            PaymentStatus::Pending => &self.pending,
            PaymentStatus::Paid => &self.paid,
            PaymentStatus::Failed => &self.failed,
            PaymentStatus::RefundPending => &self.refund_pending,
            PaymentStatus::Refunded => &self.refunded,
        }
    }

    pub fn parse(&self, word: &str) -> Option<PaymentStatus> {
        PAYMENT_STATUSES.into_iter().find(|s| self.word(*s) == word)
    }

    fn entries(&self) -> [(&'static str, &str); 5] {
        [
            ("pending", &self.pending),
            ("paid", &self.paid),
            ("failed", &self.failed),
            ("refund_pending", &self.refund_pending),
            ("refunded", &self.refunded),
        ]
    }
}

impl Schema {
    /// Check the mapping once at start; the error names the first wrong key.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let (o, p) = (&self.orders, &self.products);
        collection("schema.orders.collection", &o.collection)?;
        collection("schema.products.collection", &p.collection)?;
        if o.collection == p.collection {
            return Err(err(
                "schema.products.collection",
                format!("is `{}`, the same collection as schema.orders.collection", p.collection),
            ));
        }
        let order_fields = [
            ("id", &o.id),
            ("status", &o.status),
            ("payment_status", &o.payment_status),
            ("amount", &o.amount),
            ("created_at", &o.created_at),
            ("updated_at", &o.updated_at),
            ("items", &o.items),
        ];
        disjoint_paths("schema.orders", &order_fields, &OWN_ORDER_FIELDS)?;
        if o.id == "_id" {
            return Err(err(
                "schema.orders.id",
                "cannot be `_id`: name the string field sent to PhonePe",
            ));
        }
        let item_fields = [
            ("item_product", &o.item_product),
            ("item_quantity", &o.item_quantity),
            ("item_size", &o.item_size),
        ];
        disjoint_paths("schema.orders", &item_fields, &[])?;
        let product_fields = [("stock", &p.stock), ("sizes", &p.sizes)];
        disjoint_paths("schema.products", &product_fields, &OWN_PRODUCT_FIELDS)?;
        let size_fields = [("size_name", &p.size_name), ("size_stock", &p.size_stock)];
        disjoint_paths("schema.products", &size_fields, &[])?;
        let (words, pay) = (StatusWords::default(), PaymentStatusWords::default());
        distinct_words(
            "schema.orders.status_values",
            &o.status_values.entries(),
            &words.entries(),
        )?;
        distinct_words(
            "schema.orders.payment_status_values",
            &o.payment_status_values.entries(),
            &pay.entries(),
        )
    }

    /// The value an item's product reference `id` is matched with as a products `_id` (see
    /// [`ProductIdType`]): the reference itself, its other spelling, or `{$in: [both]}`.
    pub fn product_ref(&self, id: &Bson) -> Bson {
        use mongodb::bson::oid::ObjectId;
        let oid = match id {
            Bson::String(s) => ObjectId::parse_str(s).ok(),
            _ => None,
        };
        match (self.orders.item_product_type, id) {
            (ProductIdType::Objectid, Bson::String(_)) => oid.map_or_else(|| id.clone(), Bson::ObjectId),
            (ProductIdType::String, Bson::ObjectId(o)) => Bson::String(o.to_hex()),
            (ProductIdType::Auto, Bson::String(_)) => match oid {
                Some(o) => mongodb::bson::bson!({ "$in": [id.clone(), o] }),
                None => id.clone(),
            },
            (ProductIdType::Auto, Bson::ObjectId(o)) => mongodb::bson::bson!({ "$in": [id.clone(), o.to_hex()] }),
            _ => id.clone(),
        }
    }

    /// The stock of the size entry a positional guard (`$elemMatch` on `sizes`) matched.
    pub fn sizes_matched_stock(&self) -> String {
        format!("{}.$.{}", self.products.sizes, self.products.size_stock)
    }

    /// The stock of the size entry the array filter `s` names (see [`Schema::size_filter`]).
    pub fn sizes_filtered_stock(&self) -> String {
        format!("{}.$[s].{}", self.products.sizes, self.products.size_stock)
    }

    /// The array filter's path for [`Schema::sizes_filtered_stock`].
    pub fn size_filter(&self) -> String {
        format!("s.{}", self.products.size_name)
    }

    /// The mapping as `key = value` lines for `draft-reconciler config` (nothing here is secret).
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(toml::Value::Table(t)) = toml::Value::try_from(self) {
            flatten("schema", &toml::Value::Table(t), &mut out);
        }
        out
    }
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| flatten(&format!("{prefix}.{k}"), v, out)),
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn collection(key: &str, name: &str) -> Result<(), SchemaError> {
    if name.is_empty() {
        return Err(err(key, "is empty"));
    }
    if name.contains('$') || name.contains('\0') || name.starts_with("system.") {
        return Err(err(key, format!("`{name}` is not a valid collection name")));
    }
    Ok(())
}

/// A dotted field path: non-empty segments, none starting with `$`.
fn path(key: &str, value: &str) -> Result<(), SchemaError> {
    if value.is_empty() {
        return Err(err(key, "is empty"));
    }
    if value
        .split('.')
        .any(|s| s.is_empty() || s.starts_with('$') || s.contains('\0'))
    {
        return Err(err(
            key,
            format!("`{value}` is not a field path (dot-separated names, none empty or starting with `$`)"),
        ));
    }
    Ok(())
}

/// Whether one path is the other or lies inside it (`payment` and `payment.status`).
fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

fn disjoint_paths(section: &str, fields: &[(&str, &String)], reserved: &[&str]) -> Result<(), SchemaError> {
    for (i, (name, value)) in fields.iter().enumerate() {
        let key = format!("{section}.{name}");
        path(&key, value)?;
        if let Some(own) = reserved.iter().find(|own| overlaps(value, own)) {
            return Err(err(
                key,
                format!("`{value}` collides with the reconciler's own field `{own}`"),
            ));
        }
        if let Some((other, _)) = fields[..i].iter().find(|(_, v)| overlaps(value, v)) {
            return Err(err(
                key,
                format!("`{value}` is the same field as, or overlaps, {section}.{other}"),
            ));
        }
    }
    Ok(())
}

/// Every state has its own non-empty word. Of two states sharing a word, the error names the one
/// whose word was changed from its default (the key the operator wrote), else the later one.
fn distinct_words(section: &str, words: &[(&str, &str)], defaults: &[(&str, &str)]) -> Result<(), SchemaError> {
    for (i, (state, word)) in words.iter().enumerate() {
        if word.is_empty() {
            return Err(err(format!("{section}.{state}"), "is empty"));
        }
        if let Some(j) = words[..i].iter().position(|(_, w)| w == word) {
            let changed = |k: usize| words[k].1 != defaults[k].1;
            let (named, other) = if changed(j) && !changed(i) { (j, i) } else { (i, j) };
            return Err(err(
                format!("{section}.{}", words[named].0),
                format!("`{word}` is also the word for {section}.{}", words[other].0),
            ));
        }
    }
    Ok(())
}

/// The value at a dotted path of a document (`payment.status`), `None` when any part is absent.
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_document()?.get(part)?;
    }
    Some(cur)
}

/// Read an amount in `unit` as paise, exactly. The problem names no value (it may be customer data).
pub fn amount_paise(v: Option<&Bson>, unit: AmountUnit) -> Result<i64, String> {
    let v = match v {
        None | Some(Bson::Null) => return Err("is missing".into()),
        Some(v) => v,
    };
    match (unit, v) {
        (_, Bson::Int32(n)) => scale(i64::from(*n), unit),
        (_, Bson::Int64(n)) => scale(*n, unit),
        (AmountUnit::Paise, Bson::Double(_)) => Err("is a floating-point number; an integer is required".into()),
        (AmountUnit::Rupees, Bson::Double(f)) if f.is_finite() => decimal_paise(&f.to_string()),
        (AmountUnit::Rupees, Bson::Decimal128(d)) => decimal_paise(&d.to_string()),
        (AmountUnit::Paise, other) => Err(format!("has type {:?}; an integer is required", other.element_type())),
        (AmountUnit::Rupees, other) => Err(format!(
            "has type {:?}; a number of rupees with at most two decimals is required",
            other.element_type()
        )),
    }
}

fn scale(n: i64, unit: AmountUnit) -> Result<i64, String> {
    match unit {
        AmountUnit::Paise => Ok(n),
        AmountUnit::Rupees => n.checked_mul(100).ok_or_else(|| "is too large".to_string()),
    }
}

/// Rupees written in decimal (`199.9`, `1.5E+2`, `-0`) → paise, refusing a third decimal.
/// Decimal text, never float arithmetic: an f64 prints as the shortest decimal that reads back to
/// it, which is the number the shop wrote.
fn decimal_paise(text: &str) -> Result<i64, String> {
    let bad = || "is not a number of rupees with at most two decimals".to_string();
    let upper = text.to_ascii_uppercase();
    let (mantissa, exp) = match upper.split_once('E') {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
        None => (upper.as_str(), 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !(int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    // digits × 10^(exp − frac.len()) rupees = digits × 10^(exp − frac.len() + 2) paise
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let shift = exp - frac.len() as i32 + 2;
    let (digits, shift) = strip_zeros(digits, shift);
    if shift < 0 {
        return Err("has more than two decimals".into());
    }
    if digits.len() as i32 + shift > 18 {
        return Err("is too large".into());
    }
    let n: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let n = n * 10_i64.pow(shift as u32);
    Ok(if neg { -n } else { n })
}

/// Trailing zeros of the digits move into the power of ten (`1500`, −3 → `15`, −1).
fn strip_zeros(digits: &str, shift: i32) -> (&str, i32) {
    let kept = digits.trim_end_matches('0');
    (kept, shift + (digits.len() - kept.len()) as i32)
}

mod created_at;
mod fields;
mod reading;
mod translate;
pub use created_at::{effective_created_at, EARLIEST_PLAUSIBLE_MS, FUTURE_TOLERANCE_MS};
pub use fields::own;
pub use reading::{read_payment_status, read_status};
pub use translate::{remove_path, set_path};

#[cfg(test)]
#[path = "schema/tests.rs"]
mod tests;
