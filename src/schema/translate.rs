//! Documents in the reconciler's default names ↔ the shop's names, for the documents the
//! reconciler creates itself (`selftest`, the demo) and for test suites that run on a mapping.
//! Only mapped fields move; every other field (the shop's own, `reconciliation`, `history`) is
//! carried over untouched. Words and amounts are translated when they are ones the mapping knows;
//! anything else is carried over as it is, so a deliberately broken document stays broken.

use mongodb::bson::{Bson, Document};

use super::{amount_paise, get_path, AmountUnit, PaymentStatusWords, Schema, StatusWords};

/// Which way a document is translated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    ToShop,
    FromShop,
}

impl Schema {
    /// An `orders` document in default names → the shop's names.
    pub fn order_to_shop(&self, d: &Document) -> Document {
        self.order(d, Way::ToShop)
    }

    /// An `orders` document in the shop's names → default names (amounts in integer paise).
    pub fn order_from_shop(&self, d: &Document) -> Document {
        self.order(d, Way::FromShop)
    }

    /// A `products` document in default names → the shop's names.
    pub fn product_to_shop(&self, d: &Document) -> Document {
        self.product(d, Way::ToShop)
    }

    /// A `products` document in the shop's names → default names.
    pub fn product_from_shop(&self, d: &Document) -> Document {
        self.product(d, Way::FromShop)
    }

    fn order(&self, d: &Document, way: Way) -> Document {
        let (o, def) = (&self.orders, Schema::default().orders);
        let pairs = [
            (def.id.as_str(), o.id.as_str()),
            (&def.status, &o.status),
            (&def.payment_status, &o.payment_status),
            (&def.amount, &o.amount),
            (&def.created_at, &o.created_at),
            (&def.updated_at, &o.updated_at),
            (&def.items, &o.items),
        ];
        let (words, pay) = (&o.status_values, &o.payment_status_values);
        let unit = o.amount_unit;
        let item_pairs = [
            (def.item_product.as_str(), o.item_product.as_str()),
            (&def.item_quantity, &o.item_quantity),
            (&def.item_size, &o.item_size),
        ];
        move_fields(d, &pairs, way, |key, v| match key {
            k if k == def.status => status_word(words, v, way),
            k if k == def.payment_status => payment_word(pay, v, way),
            k if k == def.amount => amount(v, unit, way),
            k if k == def.items => each_element(v, &item_pairs, way),
            _ => v,
        })
    }

    fn product(&self, d: &Document, way: Way) -> Document {
        let (p, def) = (&self.products, Schema::default().products);
        let pairs = [(def.stock.as_str(), p.stock.as_str()), (&def.sizes, &p.sizes)];
        let size_pairs = [
            (def.size_name.as_str(), p.size_name.as_str()),
            (&def.size_stock, &p.size_stock),
        ];
        move_fields(d, &pairs, way, |key, v| match key {
            k if k == def.sizes => each_element(v, &size_pairs, way),
            _ => v,
        })
    }
}

/// Move every mapped field of `d` (pairs of default, shop path) the given way, converting values.
fn move_fields(d: &Document, pairs: &[(&str, &str)], way: Way, convert: impl Fn(&str, Bson) -> Bson) -> Document {
    let mut out = d.clone();
    let mut moved = Vec::new();
    for (default, shop) in pairs {
        let (from, to) = if way == Way::ToShop {
            (default, shop)
        } else {
            (shop, default)
        };
        if let Some(v) = get_path(d, from).cloned() {
            remove_path(&mut out, from);
            moved.push((*to, convert(default, v)));
        }
    }
    for (to, v) in moved {
        set_path(&mut out, to, v);
    }
    out
}

fn each_element(v: Bson, pairs: &[(&str, &str)], way: Way) -> Bson {
    match v {
        Bson::Array(a) => Bson::Array(
            a.into_iter()
                .map(|e| match e {
                    Bson::Document(d) => Bson::Document(move_fields(&d, pairs, way, |_, v| v)),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

fn status_word(words: &StatusWords, v: Bson, way: Way) -> Bson {
    let defaults = StatusWords::default();
    translate_word(v, way, &defaults.entries(), &words.entries())
}

fn payment_word(words: &PaymentStatusWords, v: Bson, way: Way) -> Bson {
    let defaults = PaymentStatusWords::default();
    translate_word(v, way, &defaults.entries(), &words.entries())
}

fn translate_word(v: Bson, way: Way, defaults: &[(&str, &str)], shop: &[(&str, &str)]) -> Bson {
    let Bson::String(s) = &v else { return v };
    let (from, to) = if way == Way::ToShop {
        (defaults, shop)
    } else {
        (shop, defaults)
    };
    match from.iter().position(|(_, w)| w == s) {
        Some(i) => Bson::String(to[i].1.to_string()),
        None => v,
    }
}

/// Integer paise ↔ the shop's unit. To rupees, a value that is not integer paise becomes a
/// string, which is no valid amount in rupees either.
fn amount(v: Bson, unit: AmountUnit, way: Way) -> Bson {
    if unit == AmountUnit::Paise {
        return v;
    }
    match way {
        Way::ToShop => match v {
            Bson::Int32(n) => Bson::Double(f64::from(n) / 100.0),
            Bson::Int64(n) => Bson::Double(n as f64 / 100.0),
            Bson::Null => Bson::Null,
            other => Bson::String(format!("not paise: {other}")),
        },
        Way::FromShop => match amount_paise(Some(&v), unit) {
            Ok(p) => Bson::Int64(p),
            Err(_) => v,
        },
    }
}

/// Remove the value at a dotted path (leaving any emptied parent in place).
pub fn remove_path(d: &mut Document, path: &str) -> Option<Bson> {
    match path.split_once('.') {
        None => d.remove(path),
        Some((head, rest)) => match d.get_mut(head) {
            Some(Bson::Document(sub)) => remove_path(sub, rest),
            _ => None,
        },
    }
}

/// Set the value at a dotted path, creating the documents on the way.
pub fn set_path(d: &mut Document, path: &str, v: Bson) {
    match path.split_once('.') {
        None => {
            d.insert(path, v);
        }
        Some((head, rest)) => {
            if !matches!(d.get(head), Some(Bson::Document(_))) {
                d.insert(head, Document::new());
            }
            if let Some(Bson::Document(sub)) = d.get_mut(head) {
                set_path(sub, rest, v);
            }
        }
    }
}
