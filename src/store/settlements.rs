//! Settlement rows in MongoDB (`reconciler_settlements`, the reconciler's own collection) and the
//! settlement's marks on the orders.
//!
//! A row's `_id` is derived from its key (`settlement::Key::id`), so importing it again is a
//! lookup, not a second document. Rows are written in bulk: one `find` of the batch's ids, one
//! `find` of its orders (and one of its refunds), one `insertMany`, and one `update` command of
//! single-document statements for the orders' marks — a few requests per 1,000 rows. The marks
//! are the reconciler's own subdocuments only: `reconciliation.settlement` on a confirmed order
//! (guarded by its status and the amount read, never over another row's mark) and
//! `reconciliation.refund.settlement` on a refunded one; a draft's `reconciliation.nextCheckAt`
//! is set to now (guarded by `draft`) so the reconciler asks PhonePe about it at once.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::orders::per_document_update;
use super::refunds::{REFUND_ID, REFUND_KEY};
use super::{Store, StoreError, StoreResult};
use crate::domain::{PaymentStatus, Status};
use crate::schema::own;
use crate::schema::{amount_paise, get_path};
use crate::schema::{read_payment_status, read_status};
use crate::settlement::matcher::{Discrepancy, OrderFacts, Outcome, RefundFacts};
use crate::settlement::report::Confirmed;
use crate::settlement::{Key, PaymentType, Row};

/// The reconciler's collection of imported settlement rows.
pub const SETTLEMENTS: &str = "reconciler_settlements";
/// `reconciliation.settlement` on a confirmed order: `{utr, settledAt, fee, tax, net,
/// phonePeReferenceId}` (paise).
pub const SETTLEMENT: &str = "reconciliation.settlement";
pub const SETTLEMENT_REF: &str = "reconciliation.settlement.phonePeReferenceId";
/// `reconciliation.refund.settlement` on a refunded order (the same fields).
pub const REFUND_SETTLEMENT: &str = "reconciliation.refund.settlement";
/// Whether a row is matched again by the next import (`settlement::matcher::Outcome::open`).
pub const OPEN: &str = "match.open";

/// Documents per reply of the batch's finds: a whole batch of rows in one reply (the driver's
/// first reply holds 101 otherwise, and each further one is another request).
const FETCH_BATCH: u32 = 1001;

/// How far before the first covered day an order may have been created and still be looked at
/// for `not_settled` (its confirmation, not its creation, is what counts; the index is on
/// creation).
pub const CREATED_BEFORE_CONFIRMED_DAYS: i64 = 30;

/// The stored document of a row, with its outcome and the order it concerns.
pub fn row_doc(r: &Row, outcome: &Outcome, order: Option<&str>, now: DateTime) -> Document {
    let mut d = doc! {
        "_id": r.key().id(),
        "paymentType": r.payment_type.as_str(),
        "merchantReferenceId": &r.merchant_reference_id,
        "phonePeReferenceId": &r.phonepe_reference_id,
    };
    d.extend(values(r));
    d.insert("file", &r.file);
    d.insert("line", r.line as i64);
    d.insert("importedAt", now);
    d.insert("match", match_doc(outcome, order, now));
    d
}

/// The values compared between two rows of one key (and kept for a conflicting one).
fn values(r: &Row) -> Document {
    let ms = |t: i64| Bson::DateTime(DateTime::from_millis(t));
    doc! {
        "instrument": r.instrument.clone(),
        "creationDate": r.creation_date.map_or(Bson::Null, ms),
        "transactionDate": ms(r.transaction_date),
        "settlementDate": ms(r.settlement_date),
        "amount": r.amount, "fee": r.fee, "igst": r.igst, "cgst": r.cgst, "sgst": r.sgst,
        "tax": r.tax(), "net": r.net(),
        "utr": r.utr.clone(),
    }
}

/// The `match` subdocument of a stored row.
pub fn match_doc(outcome: &Outcome, order: Option<&str>, now: DateTime) -> Document {
    let mut m = doc! { "outcome": outcome.as_str(), "open": outcome.open(), "at": now, "order": order };
    if let Outcome::Discrepancy { kind, detail } = outcome {
        m.insert("discrepancy", kind.as_str());
        m.insert("detail", *detail);
    }
    m
}

/// A conflicting row as kept beside the first one (`conflicts[]`).
pub fn conflict_doc(r: &Row) -> Document {
    let mut d = values(r);
    d.insert("file", &r.file);
    d.insert("line", r.line as i64);
    d
}

fn int(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

/// A stored row read back; `None` when the document is not one this version wrote.
pub fn row_of(d: &Document) -> Option<Row> {
    let date = |k: &str| d.get_datetime(k).ok().map(|t| t.timestamp_millis());
    let text = |k: &str| d.get_str(k).ok().map(str::to_string);
    Some(Row {
        payment_type: PaymentType::parse(d.get_str("paymentType").ok()?)?,
        merchant_reference_id: text("merchantReferenceId")?,
        phonepe_reference_id: text("phonePeReferenceId")?,
        instrument: text("instrument"),
        creation_date: date("creationDate"),
        transaction_date: date("transactionDate")?,
        settlement_date: date("settlementDate")?,
        amount: int(d.get("amount"))?,
        fee: int(d.get("fee"))?,
        igst: int(d.get("igst"))?,
        cgst: int(d.get("cgst"))?,
        sgst: int(d.get("sgst"))?,
        utr: text("utr"),
        file: text("file").unwrap_or_default(),
        line: int(d.get("line")).unwrap_or(0).max(0) as u64,
    })
}

/// The settlement mark of a matched row (`reconciliation.settlement`).
pub fn mark(r: &Row) -> Document {
    doc! {
        "utr": r.utr.clone(), "settledAt": DateTime::from_millis(r.settlement_date),
        "fee": r.fee, "tax": r.tax(), "net": r.net(), "phonePeReferenceId": &r.phonepe_reference_id,
    }
}

/// An order read for matching: what the matcher is told, and what the writes are guarded by.
#[derive(Debug, Clone)]
pub struct OrderRead {
    pub facts: OrderFacts,
    /// The document as fetched (projected): `_id`, status, payment status, amount.
    pub doc: Document,
}

/// A refund read for matching.
#[derive(Debug, Clone)]
pub struct RefundRead {
    pub facts: RefundFacts,
    pub doc: Document,
}

/// One `reconciliation.settlement` to record.
#[derive(Debug, Clone)]
pub struct MarkWrite {
    pub order_id: Bson,
    /// The amount field as read (the guard: a corrected amount is not marked).
    pub amount_as_read: Option<Bson>,
    pub mark: Document,
}

fn index(keys: Document, name: &str) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_string()).build();
    IndexModel::builder().keys(keys).options(options).build()
}

async fn collect(cursor: mongodb::Cursor<Document>, op: &'static str) -> StoreResult<Vec<Document>> {
    cursor.try_collect().await.map_err(StoreError::mongo(op))
}

impl Store {
    pub fn settlements(&self) -> Collection<Document> {
        self.db.collection(SETTLEMENTS)
    }

    /// The indexes `settlement import` and `report` query by, on `reconciler_settlements` (the
    /// orders' refund-id index is in the start-up plan, `store::indexes`).
    pub async fn ensure_settlement_indexes(&self) -> StoreResult<()> {
        let models = vec![
            index(doc! { "merchantReferenceId": 1 }, "by_reference"),
            index(doc! { "settlementDate": 1 }, "by_settlement_date"),
            index(doc! { "transactionDate": 1 }, "by_transaction_date"),
            index(doc! { OPEN: 1 }, "open"),
        ];
        self.settlements()
            .create_indexes(models)
            .await
            .map_err(StoreError::mongo("create settlement indexes"))?;
        Ok(())
    }

    /// The stored rows among `ids`, by key.
    pub async fn stored_rows(&self, ids: &[String]) -> StoreResult<HashMap<Key, Row>> {
        let docs = collect(
            self.settlements()
                .find(doc! { "_id": { "$in": ids } })
                .batch_size(FETCH_BATCH)
                .projection(doc! { "match": 0, "conflicts": 0 })
                .await
                .map_err(StoreError::mongo("read settlement rows"))?,
            "read settlement rows",
        )
        .await?;
        Ok(docs.iter().filter_map(row_of).map(|r| (r.key(), r)).collect())
    }

    /// Rows whose outcome is open (matched again by the next import), at most `max`, each with
    /// its stored `match`.
    pub async fn open_rows(&self, max: i64) -> StoreResult<Vec<(Row, Document)>> {
        let docs = collect(
            self.settlements()
                .find(doc! { OPEN: true })
                .projection(doc! { "conflicts": 0 })
                .sort(doc! { "_id": 1 })
                .limit(max)
                .await
                .map_err(StoreError::mongo("read open settlement rows"))?,
            "read open settlement rows",
        )
        .await?;
        Ok(docs
            .iter()
            .filter_map(|d| Some((row_of(d)?, d.get_document("match").ok()?.clone())))
            .collect())
    }

    /// The orders whose merchantTransactionId is among `mtids`.
    pub async fn order_facts(&self, mtids: &[String]) -> StoreResult<HashMap<String, OrderRead>> {
        let o = &self.schema.orders;
        if mtids.is_empty() {
            return Ok(HashMap::new());
        }
        let projection = doc! {
            "_id": 1, &o.id: 1, &o.status: 1, &o.payment_status: 1, &o.amount: 1,
            own::PAID_AMOUNT: 1, SETTLEMENT_REF: 1,
        };
        let docs = collect(
            self.orders
                .find(doc! { &o.id: { "$in": mtids } })
                .batch_size(FETCH_BATCH)
                .projection(projection)
                .await
                .map_err(StoreError::mongo("read the settled orders"))?,
            "read the settled orders",
        )
        .await?;
        let mut out = HashMap::with_capacity(docs.len());
        for d in docs {
            let Some(mtid) = get_path(&d, &o.id).and_then(Bson::as_str).map(str::to_string) else {
                continue;
            };
            let facts = OrderFacts {
                status: read_status(&d, &self.schema),
                payment: read_payment_status(&d, &self.schema),
                amount: amount_paise(get_path(&d, &o.amount), o.amount_unit).ok(),
                paid_amount: int(get_path(&d, own::PAID_AMOUNT)),
                settled_by: get_path(&d, SETTLEMENT_REF).and_then(Bson::as_str).map(str::to_string),
            };
            out.insert(mtid, OrderRead { facts, doc: d });
        }
        Ok(out)
    }

    /// The orders recording a refund whose id is among `ids`, by refund id.
    pub async fn refund_facts(&self, ids: &[String]) -> StoreResult<HashMap<String, RefundRead>> {
        let o = &self.schema.orders;
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let docs = collect(
            self.orders
                .find(doc! { REFUND_ID: { "$in": ids } })
                .batch_size(FETCH_BATCH)
                .projection(doc! { "_id": 1, &o.id: 1, &o.status: 1, &o.payment_status: 1, own::RECONCILIATION_KEY: 1 })
                .await
                .map_err(StoreError::mongo("read the settled refunds"))?,
            "read the settled refunds",
        )
        .await?;
        let mut out = HashMap::with_capacity(docs.len());
        for d in docs {
            let refund = d
                .get_document(own::RECONCILIATION_KEY)
                .and_then(|r| r.get_document(REFUND_KEY));
            let (Ok(refund), Some(order)) = (refund, get_path(&d, &o.id).and_then(Bson::as_str)) else {
                continue;
            };
            let (Ok(id), Some(amount)) = (refund.get_str("id"), int(refund.get("amount"))) else {
                continue;
            };
            let facts = RefundFacts {
                order: order.to_string(),
                amount,
                payment: read_payment_status(&d, &self.schema),
                settled_by: refund
                    .get_document("settlement")
                    .and_then(|s| s.get_str("phonePeReferenceId"))
                    .ok()
                    .map(str::to_string),
            };
            out.insert(id.to_string(), RefundRead { facts, doc: d.clone() });
        }
        Ok(out)
    }

    /// Insert new rows (unordered). A row another import inserted meanwhile (duplicate key) is
    /// left to that import; the others are inserted. Returns how many were inserted.
    pub async fn insert_rows(&self, docs: Vec<Document>) -> StoreResult<u64> {
        if docs.is_empty() {
            return Ok(0);
        }
        let n = docs.len() as u64;
        match self.settlements().insert_many(docs).ordered(false).await {
            Ok(r) => Ok(r.inserted_ids.len() as u64),
            Err(e) => match e.kind.as_ref() {
                mongodb::error::ErrorKind::InsertMany(m)
                    if m.write_concern_error.is_none()
                        && m.write_errors
                            .as_ref()
                            .is_some_and(|w| w.iter().all(|e| e.code == 11000)) =>
                {
                    Ok(n - m.write_errors.as_ref().map_or(0, |w| w.len() as u64))
                }
                _ => Err(StoreError::Mongo {
                    op: "insert settlement rows",
                    source: e,
                }),
            },
        }
    }

    /// One `update` command of single-document statements on `reconciler_settlements`.
    pub async fn update_rows(&self, statements: Vec<(Document, Document)>) -> StoreResult<u64> {
        self.batch(SETTLEMENTS, statements, "update settlement rows").await
    }

    /// One `update` command of single-document statements on `collection`: matched count.
    async fn batch(
        &self,
        collection: &str,
        statements: Vec<(Document, Document)>,
        op: &'static str,
    ) -> StoreResult<u64> {
        if statements.is_empty() {
            return Ok(0);
        }
        let r = self
            .db
            .run_command(per_document_update(collection, statements.into_iter()))
            .await
            .map_err(StoreError::mongo(op))?;
        if let Ok(errors) = r.get_array("writeErrors") {
            return Err(StoreError::Unsupported(format!(
                "{op}: {} statement(s) refused: {errors:?}",
                errors.len()
            )));
        }
        Ok(int(r.get("n")).unwrap_or(0).max(0) as u64)
    }

    /// Record `reconciliation.settlement` on confirmed orders, each guarded by its status, the
    /// amount read, and no other row's mark. Returns the orders whose mark is now the one given
    /// (a statement that matched nothing — the order changed meanwhile — is not among them).
    pub async fn mark_settled(&self, writes: &[MarkWrite]) -> StoreResult<HashSet<String>> {
        let o = &self.schema.orders;
        let statements = writes.iter().map(|w| {
            let mut guard = doc! { "_id": &w.order_id, &o.status: o.status_values.word(Status::Confirmed) };
            guard.insert(&o.amount, w.amount_as_read.clone().unwrap_or(Bson::Null));
            let pref = w.mark.get_str("phonePeReferenceId").unwrap_or_default();
            // No mark, or this row's (`null` also matches a missing field). Not an `$or`: a server
            // may then not find the `_id` by its index (SecantusDB scans the collection).
            guard.insert(
                SETTLEMENT_REF,
                doc! { "$in": [Bson::Null, Bson::String(pref.to_string())] },
            );
            (guard, doc! { "$set": { SETTLEMENT: &w.mark } })
        });
        let n = self
            .batch(o.collection.as_str(), statements.collect(), "mark settled orders")
            .await?;
        let refs: Vec<&str> = writes
            .iter()
            .filter_map(|w| w.mark.get_str("phonePeReferenceId").ok())
            .collect();
        if n as usize == writes.len() {
            return Ok(refs.into_iter().map(str::to_string).collect());
        }
        // Some order changed meanwhile: read back which marks are in place.
        let ids: Vec<&Bson> = writes.iter().map(|w| &w.order_id).collect();
        let docs = collect(
            self.orders
                .find(doc! { "_id": { "$in": ids } })
                .batch_size(FETCH_BATCH)
                .projection(doc! { SETTLEMENT_REF: 1 })
                .await
                .map_err(StoreError::mongo("read settled marks"))?,
            "read settled marks",
        )
        .await?;
        Ok(docs
            .iter()
            .filter_map(|d| get_path(d, SETTLEMENT_REF).and_then(Bson::as_str).map(str::to_string))
            .collect())
    }

    /// Ask about these drafts at once: `reconciliation.nextCheckAt` = now, guarded by `draft`.
    pub async fn wake_drafts(&self, ids: &[Bson], now: DateTime) -> StoreResult<u64> {
        let o = &self.schema.orders;
        let statements = ids
            .iter()
            .map(|id| {
                (
                    doc! { "_id": id, &o.status: o.status_values.word(Status::Draft) },
                    doc! { "$set": { own::NEXT_CHECK_AT: now } },
                )
            })
            .collect();
        self.batch(o.collection.as_str(), statements, "wake drafts").await
    }

    /// Record the settlement of a finished refund (`reconciliation.refund.settlement`), guarded
    /// by the refund's id, the order `refunded`, and no other row's mark.
    pub async fn mark_refund_settled(&self, order_id: &Bson, refund_id: &str, mark: &Document) -> StoreResult<bool> {
        let o = &self.schema.orders;
        let pref = mark.get_str("phonePeReferenceId").unwrap_or_default();
        let guard = doc! {
            "_id": order_id, REFUND_ID: refund_id,
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Refunded),
            format!("{REFUND_SETTLEMENT}.phonePeReferenceId"): { "$in": [Bson::Null, Bson::String(pref.to_string())] },
        };
        let r = self
            .orders
            .update_one(guard, doc! { "$set": { REFUND_SETTLEMENT: mark } })
            .await
            .map_err(StoreError::mongo("mark a refund settled"))?;
        Ok(r.matched_count == 1)
    }

    /// Rows settled between `from` and `to` (UTC ms, inclusive; `None`: open-ended), with their
    /// stored documents (for their outcome and conflicts).
    pub async fn settled_between(&self, from: Option<i64>, to: Option<i64>) -> StoreResult<Vec<Document>> {
        let mut range = Document::new();
        if let Some(f) = from {
            range.insert("$gte", DateTime::from_millis(f));
        }
        if let Some(t) = to {
            range.insert("$lte", DateTime::from_millis(t));
        }
        let filter = if range.is_empty() {
            doc! {}
        } else {
            doc! { "settlementDate": range }
        };
        collect(
            self.settlements()
                .find(filter)
                .sort(doc! { "settlementDate": 1, "_id": 1 })
                .await
                .map_err(StoreError::mongo("read settlement rows"))?,
            "read settlement rows",
        )
        .await
    }

    /// The earliest and latest `TransactionDate` imported (UTC ms).
    pub async fn transaction_span(&self) -> StoreResult<Option<(i64, i64)>> {
        let first = |dir: i32| async move {
            self.settlements()
                .find_one(doc! {})
                .sort(doc! { "transactionDate": dir })
                .projection(doc! { "transactionDate": 1 })
                .await
                .map_err(StoreError::mongo("read the settlement span"))
                .map(|d| d.and_then(|d| d.get_datetime("transactionDate").ok().map(|t| t.timestamp_millis())))
        };
        Ok(first(1).await?.zip(first(-1).await?))
    }

    /// Confirmed orders created between `from` and `to` (UTC ms), with when each was confirmed:
    /// its last history entry to `confirmed`, else its creation.
    pub async fn confirmed_created_between(&self, from: i64, to: i64) -> StoreResult<Vec<Confirmed>> {
        let o = &self.schema.orders;
        let filter = doc! {
            &o.status: o.status_values.word(Status::Confirmed),
            &o.payment_status: o.payment_status_values.word(PaymentStatus::Paid),
            &o.created_at: { "$gte": DateTime::from_millis(from), "$lte": DateTime::from_millis(to) },
        };
        let projection = doc! { "_id": 1, &o.id: 1, &o.amount: 1, &o.created_at: 1, "history.to": 1, "history.at": 1 };
        let docs = collect(
            self.orders
                .find(filter)
                .projection(projection)
                .await
                .map_err(StoreError::mongo("read confirmed orders"))?,
            "read confirmed orders",
        )
        .await?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let order = get_path(d, &o.id)?.as_str()?.to_string();
                let confirmed_at = d
                    .get_array(own::HISTORY)
                    .ok()
                    .and_then(|h| {
                        h.iter().rev().filter_map(Bson::as_document).find_map(|e| {
                            (e.get_str("to").ok() == Some(Status::Confirmed.as_str()))
                                .then(|| e.get_datetime("at").ok().map(|t| t.timestamp_millis()))
                                .flatten()
                        })
                    })
                    .or_else(|| get_path(d, &o.created_at)?.as_datetime().map(|t| t.timestamp_millis()))?;
                let amount = amount_paise(get_path(d, &o.amount), o.amount_unit).ok();
                Some(Confirmed {
                    order,
                    confirmed_at,
                    amount,
                })
            })
            .collect())
    }

    /// Which of `mtids` have a PAYMENT row.
    pub async fn with_payment_rows(&self, mtids: &[String]) -> StoreResult<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in mtids.chunks(10_000) {
            let docs = collect(
                self.settlements()
                    .find(
                        doc! { "paymentType": PaymentType::Payment.as_str(), "merchantReferenceId": { "$in": chunk } },
                    )
                    .projection(doc! { "_id": 0, "merchantReferenceId": 1 })
                    .await
                    .map_err(StoreError::mongo("read payment rows"))?,
                "read payment rows",
            )
            .await?;
            out.extend(
                docs.iter()
                    .filter_map(|d| d.get_str("merchantReferenceId").ok().map(str::to_string)),
            );
        }
        Ok(out)
    }

    /// Open discrepancies recorded on rows, by kind; `conflicting_rows`: rows with conflicts.
    pub async fn count_row_discrepancies(&self) -> StoreResult<HashMap<String, u64>> {
        let pipeline = [
            doc! { "$match": { OPEN: true, "match.discrepancy": { "$exists": true } } },
            doc! { "$group": { "_id": "$match.discrepancy", "n": { "$sum": 1 } } },
        ];
        let groups = collect(
            self.settlements()
                .aggregate(pipeline)
                .await
                .map_err(StoreError::mongo("count settlement discrepancies"))?,
            "count settlement discrepancies",
        )
        .await?;
        let mut out: HashMap<String, u64> = groups
            .iter()
            .filter_map(|g| Some((g.get_str("_id").ok()?.to_string(), int(g.get("n"))?.max(0) as u64)))
            .collect();
        let conflicts = self
            .settlements()
            .count_documents(doc! { "conflicts.0": { "$exists": true } })
            .await
            .map_err(StoreError::mongo("count conflicting settlement rows"))?;
        *out.entry(Discrepancy::ConflictingRows.as_str().to_string())
            .or_default() += conflicts;
        Ok(out)
    }
}
