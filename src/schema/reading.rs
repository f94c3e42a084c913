//! `check`'s view of an order: each mapped field as the shop stores it and what the reconciler
//! reads it as (`orderStatus "DRAFT" → draft`, `totalAmount 1299.5 rupees → 129950 paise`), so an
//! operator sees a mapping mistake before running the service.

use mongodb::bson::{Bson, Document};

use super::{amount_paise, get_path, AmountUnit, Schema};
use crate::domain::order::{effective_created_at, read_payment_status, read_status};

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
