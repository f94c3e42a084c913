//! The reconciler's indexes, planned against what the shop already has (docs/operations.md,
//! "MongoDB schema"): an index with the same key is reused whatever its name; the ones created are
//! partial, so they never hold a document the reconciler does not manage and can never refuse one
//! of the shop's writes. A name taken with another key is an [`IndexConflict`] (exit 2); `check`
//! prints the plan without creating anything.

use std::fmt;

use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::Store;
use super::{StoreError, StoreResult};
use crate::domain::Status;
use crate::schema::own;

/// A start-up conflict between an index the reconciler needs and one the database has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index conflict on collection `{collection}`: {problem}; fix: {fix}")]
pub struct IndexConflict {
    pub collection: String,
    pub problem: String,
    pub fix: String,
}

/// One index the reconciler needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub collection: String,
    pub name: String,
    pub keys: Document,
    pub unique: bool,
    pub partial: Document,
}

/// What start-up does about one [`Wanted`] index.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An index with the same key exists (named so): nothing is created.
    Reuse {
        wanted: Wanted,
        existing: String,
        unique: bool,
    },
    /// Created as wanted.
    Create(Wanted),
    /// The unique, non-partial id index an earlier version created (`<id>_unique`), which refused
    /// a second order without an id: dropped, then created partial.
    Replace { wanted: Wanted, legacy: String },
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` on {} {}", self.name, self.collection, self.keys)?;
        if self.unique {
            write!(f, " unique")?;
        }
        write!(f, " partial {}", self.partial)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Reuse {
                wanted,
                existing,
                unique,
            } => {
                let note = match (wanted.unique, unique) {
                    (true, false) => " (not unique: the database does not refuse two orders with one id)",
                    _ => "",
                };
                write!(f, "reuse `{existing}` on {} {}{note}", wanted.collection, wanted.keys)
            }
            Step::Create(w) => write!(f, "create {w}"),
            Step::Replace { wanted, legacy } => write!(
                f,
                "replace `{legacy}` (unique over every order, from an earlier version) with {wanted}"
            ),
        }
    }
}

/// `{field: {$exists: true}}`: only documents carrying one of the reconciler's own fields.
fn has(field: &str) -> Document {
    doc! { field: { "$exists": true } }
}

/// An index as `listIndexes` describes it.
#[derive(Debug, Clone)]
struct Existing {
    name: String,
    keys: Document,
    unique: bool,
    sparse: bool,
    partial: bool,
}

/// Whether two key documents name the same fields in the same order and directions (a shell
/// writes `1` as a double, the driver as an int).
fn same_keys(a: &Document, b: &Document) -> bool {
    let num = |v: &Bson| match v {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(d) => Some(*d),
        _ => None,
    };
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| {
            ka == kb
                && match (num(va), num(vb)) {
                    (Some(x), Some(y)) => x == y,
                    _ => va == vb,
                }
        })
}

/// The plan for `wanted` given what exists.
fn plan_one(wanted: Wanted, existing: &[Existing], legacy_id_name: &str) -> Result<Step, IndexConflict> {
    if let Some(e) = existing.iter().find(|e| same_keys(&e.keys, &wanted.keys)) {
        if wanted.unique && e.name == legacy_id_name && e.unique && !e.sparse && !e.partial {
            return Ok(Step::Replace {
                legacy: e.name.clone(),
                wanted,
            });
        }
        return Ok(Step::Reuse {
            existing: e.name.clone(),
            unique: e.unique,
            wanted,
        });
    }
    if let Some(e) = existing.iter().find(|e| e.name == wanted.name) {
        return Err(IndexConflict {
            collection: wanted.collection.clone(),
            problem: format!(
                "the index `{}` exists with key {}, but the reconciler needs {} under that name \
                 (the [schema] mapping changed since it was created?)",
                e.name, e.keys, wanted.keys
            ),
            fix: format!(
                "drop it (db.getCollection(\"{}\").dropIndex(\"{}\")); the reconciler creates the one it needs",
                wanted.collection, e.name
            ),
        });
    }
    Ok(Step::Create(wanted))
}

impl Store {
    /// Every index the reconciler needs, in the shop's names.
    pub fn wanted_indexes(&self) -> Vec<Wanted> {
        let o = &self.schema.orders;
        let orders = o.collection.clone();
        let want = |name: &str, keys: Document, unique: bool, partial: Document| Wanted {
            collection: orders.clone(),
            name: name.into(),
            keys,
            unique,
            partial,
        };
        let worked_on: Vec<&str> = [
            Status::Draft,
            Status::Cancelled,
            Status::NeedsReview,
            Status::Committing,
        ]
        .into_iter()
        .map(|s| self.word(s))
        .collect();
        let mut out = vec![
            // Unique among the orders that have a string id: COD orders without one are not in it.
            want(
                "reconciler_id",
                doc! { &o.id: 1 },
                true,
                doc! { &o.id: { "$exists": true, "$type": "string" } },
            ),
            // The scanner's queries: drafts, watched cancellations, the review and commit counts.
            want(
                "reconciler_eligible",
                doc! { &o.status: 1, &o.payment_status: 1, &o.created_at: 1 },
                false,
                doc! { &o.status: { "$in": worked_on } },
            ),
            want(
                "reconciler_journal",
                doc! { own::COMMIT_ID: 1 },
                false,
                has(own::COMMIT_ID),
            ),
            // Journals whose markers wait for their sweep (the field is removed once swept).
            want(
                "reconciler_journal_sweep",
                doc! { own::COMMIT_SWEEP_AT: 1 },
                false,
                has(own::COMMIT_SWEEP_AT),
            ),
            want(
                "reconciler_lease_owner",
                doc! { own::LEASE_OWNER: 1 },
                false,
                has(own::LEASE_OWNER),
            ),
            // The scanner's next due moment (`Store::next_due`): rescheduled orders by `nextCheckAt`.
            want(
                "reconciler_next_check",
                doc! { own::NEXT_CHECK_AT: 1 },
                false,
                has(own::NEXT_CHECK_AT),
            ),
            // Orders whose events wait to be moved (`store/outbox.rs`): none once they are.
            want(
                "reconciler_outbox",
                doc! { own::OUTBOX_ID: 1 },
                false,
                has(own::OUTBOX_ID),
            ),
            // Settlement imports find a refund's order by the refund's id.
            want(
                "reconciler_refund_id",
                doc! { super::refunds::REFUND_ID: 1 },
                false,
                has(super::refunds::REFUND_ID),
            ),
        ];
        // The journal strategy's per-item commit markers on products (swept by recovery).
        let markers = super::journal::MARKERS;
        out.push(Wanted {
            collection: self.schema.products.collection.clone(),
            name: "reconciler_commit_markers".into(),
            keys: doc! { markers: 1 },
            unique: false,
            partial: has(markers),
        });
        out
    }

    /// What start-up would do about each index (nothing is created): `check` prints it.
    pub async fn plan_indexes(&self) -> StoreResult<Result<Vec<Step>, IndexConflict>> {
        let orders = existing(&self.orders).await?;
        let products = existing(&self.products).await?;
        let legacy = format!("{}_unique", self.schema.orders.id);
        Ok(self
            .wanted_indexes()
            .into_iter()
            .map(|w| {
                let here = if w.collection == self.schema.orders.collection {
                    &orders
                } else {
                    &products
                };
                plan_one(w, here, &legacy)
            })
            .collect())
    }

    /// Carry out [`Store::plan_indexes`]. A conflict, or an index the database refuses to build
    /// (two orders already sharing an id), is an [`IndexConflict`]; anything else a store error.
    pub async fn ensure_indexes(&self) -> anyhow::Result<Vec<Step>> {
        let steps = self.plan_indexes().await??;
        for step in &steps {
            match step {
                Step::Reuse { .. } => {}
                Step::Create(w) => self.create(w).await?,
                Step::Replace { wanted, legacy } => {
                    tracing::warn!(index = %legacy, "replacing the id index of an earlier version: it refused a second order without an id");
                    self.orders
                        .drop_index(legacy.as_str())
                        .await
                        .map_err(StoreError::mongo("drop the legacy id index"))?;
                    self.create(wanted).await?;
                }
            }
            tracing::info!(index = %step, "index");
        }
        Ok(steps)
    }

    async fn create(&self, w: &Wanted) -> anyhow::Result<()> {
        let coll = self.db.collection::<Document>(&w.collection);
        let options = IndexOptions::builder()
            .name(w.name.clone())
            .unique(w.unique.then_some(true))
            .partial_filter_expression(w.partial.clone())
            .build();
        let model = IndexModel::builder().keys(w.keys.clone()).options(options).build();
        let Err(e) = coll.create_index(model).await else {
            return Ok(());
        };
        let e = StoreError::Mongo {
            op: "create index",
            error: e,
        };
        if !w.partial.is_empty() && !w.unique && e.code() == Some(67) {
            // A server older than MongoDB 6.0 accepts no `$in` in a partial filter. A non-unique
            // index refuses no write, so it is built whole rather than not at all.
            tracing::warn!(index = %w, error = %e, "the server refuses this partial filter; creating the index without it");
            let whole = IndexOptions::builder().name(w.name.clone()).build();
            let model = IndexModel::builder().keys(w.keys.clone()).options(whole).build();
            coll.create_index(model)
                .await
                .map_err(StoreError::mongo("create index"))?;
            return Ok(());
        }
        if e.is_duplicate_key() {
            return Err(IndexConflict {
                collection: w.collection.clone(),
                problem: format!("the unique index {w} cannot be built: two orders already share an id ({e})"),
                fix: format!(
                    "give those orders distinct ids, or create an index of your own on {} (unique or not): the reconciler reuses it",
                    w.keys
                ),
            }
            .into());
        }
        Err(e.into())
    }
}

/// The indexes of `coll` (none when the collection does not exist yet).
async fn existing(coll: &Collection<Document>) -> StoreResult<Vec<Existing>> {
    use futures_util::TryStreamExt;
    let listed = match coll.list_indexes().await {
        Ok(cursor) => cursor.try_collect::<Vec<IndexModel>>().await,
        Err(e) => Err(e),
    };
    let models = match listed {
        Ok(m) => m,
        Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 26) => vec![],
        Err(e) => return Err(StoreError::mongo("list indexes")(e)),
    };
    Ok(models
        .into_iter()
        .map(|m| {
            let o = m.options.unwrap_or_default();
            Existing {
                name: o.name.unwrap_or_default(),
                keys: m.keys,
                unique: o.unique == Some(true),
                sparse: o.sparse == Some(true),
                partial: o.partial_filter_expression.is_some(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(name: &str, keys: Document, unique: bool) -> Wanted {
        Wanted {
            collection: "orders".into(),
            name: name.into(),
            keys,
            unique,
            partial: doc! {},
        }
    }

    fn ex(name: &str, keys: Document, unique: bool) -> Existing {
        Existing {
            name: name.into(),
            keys,
            unique,
            sparse: false,
            partial: false,
        }
    }

    #[test]
    fn an_index_with_the_same_key_is_reused_whatever_its_name_or_uniqueness() {
        let w = wanted("reconciler_id", doc! { "orderRef": 1 }, true);
        for unique in [true, false] {
            let e = [ex("orderRef_1", doc! { "orderRef": 1.0 }, unique)];
            let step = plan_one(w.clone(), &e, "orderRef_unique").unwrap();
            assert!(
                matches!(&step, Step::Reuse { existing, .. } if existing == "orderRef_1"),
                "{step}"
            );
        }
    }

    #[test]
    fn the_legacy_unique_id_index_is_replaced_and_a_taken_name_is_a_conflict() {
        let w = wanted("reconciler_id", doc! { "merchantTransactionId": 1 }, true);
        let legacy = [ex(
            "merchantTransactionId_unique",
            doc! { "merchantTransactionId": 1 },
            true,
        )];
        let step = plan_one(w.clone(), &legacy, "merchantTransactionId_unique").unwrap();
        assert!(matches!(step, Step::Replace { .. }), "{step}");
        let e = [ex("reconciler_id", doc! { "ref": 1 }, true)];
        let err = plan_one(w.clone(), &e, "x").unwrap_err();
        assert!(
            err.to_string().contains("`reconciler_id`") && err.fix.contains("dropIndex"),
            "{err}"
        );
        assert!(matches!(plan_one(w, &[], "x").unwrap(), Step::Create(_)));
    }

    #[test]
    fn keys_compare_by_field_order_and_direction() {
        assert!(same_keys(&doc! { "a": 1, "b": -1 }, &doc! { "a": 1.0, "b": -1_i64 }));
        assert!(!same_keys(&doc! { "a": 1, "b": 1 }, &doc! { "b": 1, "a": 1 }));
        assert!(!same_keys(&doc! { "a": 1 }, &doc! { "a": -1 }));
        assert!(!same_keys(&doc! { "a": 1 }, &doc! { "a": 1, "b": 1 }));
    }
}
