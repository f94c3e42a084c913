//! `draft-reconciler settlement import FILE... [--json]`: read each report whole, then store its
//! rows and carry out what the matcher decides, a batch of [`BATCH`] rows at a time.
//!
//! Each file is all-or-nothing as far as its content goes: it is parsed and validated entirely
//! before anything of it is written, and a bad row rejects the file (exit 2, the error names
//! file, line and column; the other files are still imported). A batch reads the stored rows of
//! its keys, its orders and its refunds (three finds), asks [`match_rows`], carries out the
//! order effects through the store's guarded writes, then inserts the new rows with their
//! outcome — effects first, so a crash in between leaves rows to import again, never a row
//! recorded without its effect. An effect whose guard no longer holds (the order changed since
//! it was read) stores its row `deferred`, matched again by the next import. After the files,
//! the rows stored open by earlier imports (drafts woken, deferred, discrepancies) are matched
//! again against the orders as they are now: a settled draft, a corrected amount, clears them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::Context as _;
use mongodb::bson::{doc, Bson, DateTime, Document};
use serde_json::json;

use super::matcher::{match_rows, Discrepancy, Incoming, Known, Outcome};
use super::{parse, rupees, PaymentType, Row};
use crate::schema::get_path;
use crate::store::settlements::{conflict_doc, mark, match_doc, row_doc, MarkWrite, OrderRead, RefundRead};
use crate::store::{Store, StoreResult};

/// Rows matched and written together: a few database requests per batch.
pub const BATCH: usize = 1000;
/// Open rows of earlier imports matched again per import, at most.
const REMATCH_MAX: i64 = 100_000;

/// One discrepancy found by an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Discrepancy,
    pub payment_type: PaymentType,
    pub merchant_reference_id: String,
    pub phonepe_reference_id: String,
    pub order: Option<String>,
    pub amount: i64,
    pub detail: &'static str,
}

/// What an import of rows came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: u64,
    /// Rows stored by this import.
    pub new: u64,
    /// Rows per outcome word (`settlement::matcher::Outcome::as_str`).
    pub outcomes: BTreeMap<&'static str, u64>,
    pub found: Vec<Found>,
}

impl Tally {
    fn json(&self) -> serde_json::Value {
        json!({
            "rows": self.rows, "new": self.new, "outcomes": self.outcomes,
            "discrepancies": self.found.iter().map(|f| json!({
                "kind": f.kind.as_str(), "paymentType": f.payment_type.as_str(),
                "merchantReferenceId": f.merchant_reference_id, "phonePeReferenceId": f.phonepe_reference_id,
                "order": f.order, "amount": f.amount, "detail": f.detail,
            })).collect::<Vec<_>>(),
        })
    }

    fn summary(&self) -> String {
        let outcomes: Vec<String> = self.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{} row(s), {} new: {}", self.rows, self.new, outcomes.join(", "))
    }
}

/// The order a row concerns, by its merchantTransactionId.
fn order_of(row: &Row, orders: &HashMap<String, OrderRead>, refunds: &HashMap<String, RefundRead>) -> Option<String> {
    match row.payment_type {
        PaymentType::Payment => orders
            .contains_key(&row.merchant_reference_id)
            .then(|| row.merchant_reference_id.clone()),
        PaymentType::Refund => refunds.get(&row.merchant_reference_id).map(|r| r.facts.order.clone()),
    }
}

/// Match `rows` against the database and carry the outcomes out (see the module docs).
/// `stored` holds the rows already imported under their keys (empty for a re-match).
async fn run_batch(
    store: &Store,
    rows: &[Incoming<'_>],
    stored: HashMap<super::Key, Row>,
    now: DateTime,
) -> StoreResult<(Vec<Outcome>, Vec<Option<String>>)> {
    let wanted = |t: PaymentType| -> Vec<String> {
        let mut ids: Vec<String> = rows
            .iter()
            .filter(|i| i.row.payment_type == t && (i.rematch || !stored.contains_key(&i.row.key())))
            .map(|i| i.row.merchant_reference_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let orders = store.order_facts(&wanted(PaymentType::Payment)).await?;
    let refunds = store.refund_facts(&wanted(PaymentType::Refund)).await?;
    let known = Known {
        orders: orders.iter().map(|(k, v)| (k.clone(), v.facts.clone())).collect(),
        refunds: refunds.iter().map(|(k, v)| (k.clone(), v.facts.clone())).collect(),
        stored,
    };
    let mut outcomes = match_rows(rows, &known);
    carry_out(store, rows, &mut outcomes, &orders, &refunds, now).await?;
    let order_ids = rows.iter().map(|i| order_of(i.row, &orders, &refunds)).collect();
    Ok((outcomes, order_ids))
}

/// Carry out the order effects of `outcomes`; an effect whose guard failed turns its outcome
/// into [`Outcome::Deferred`].
async fn carry_out(
    store: &Store,
    rows: &[Incoming<'_>],
    outcomes: &mut [Outcome],
    orders: &HashMap<String, OrderRead>,
    refunds: &HashMap<String, RefundRead>,
    now: DateTime,
) -> StoreResult<()> {
    let amount_path = &store.schema().orders.amount;
    let mut marks = Vec::new();
    let mut wakes = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let row = rows[i].row;
        let order = orders.get(&row.merchant_reference_id);
        match (o, order) {
            (Outcome::Matched, Some(read)) => marks.push(MarkWrite {
                order_id: read.doc.get("_id").cloned().unwrap_or(Bson::Null),
                amount_as_read: get_path(&read.doc, amount_path).cloned(),
                mark: mark(row),
            }),
            (Outcome::WakeDraft, Some(read)) => wakes.extend(read.doc.get("_id").cloned()),
            _ => {}
        }
    }
    let in_place = store.mark_settled(&marks).await?;
    store.wake_drafts(&wakes, now).await?;
    for (i, o) in outcomes.iter_mut().enumerate() {
        let row = rows[i].row;
        let done = match o {
            Outcome::Matched => in_place.contains(&row.phonepe_reference_id),
            Outcome::RecordPayment => match orders.get(&row.merchant_reference_id) {
                Some(read) => super::effects::record_payment(store, &read.doc, row, now).await?,
                None => false,
            },
            Outcome::RefundSettled { finish } => match refunds.get(&row.merchant_reference_id) {
                Some(read) => super::effects::settle_refund(store, &read.doc, row, *finish, now).await?,
                None => false,
            },
            _ => true,
        };
        if !done {
            tracing::warn!(
                merchant_reference_id = %row.merchant_reference_id,
                outcome = o.as_str(),
                "the order changed since it was read; the next import matches this row again"
            );
            *o = Outcome::Deferred;
        }
    }
    Ok(())
}

fn count(tally: &mut Tally, row: &Row, outcome: &Outcome, order: &Option<String>) {
    *tally.outcomes.entry(outcome.as_str()).or_default() += 1;
    let kind = match outcome {
        Outcome::Discrepancy { kind, detail } => Some((*kind, *detail)),
        Outcome::Conflicting => Some((
            Discrepancy::ConflictingRows,
            "the same key was imported before with other values; the first is kept",
        )),
        _ => None,
    };
    if let Some((kind, detail)) = kind {
        tally.found.push(Found {
            kind,
            payment_type: row.payment_type,
            merchant_reference_id: row.merchant_reference_id.clone(),
            phonepe_reference_id: row.phonepe_reference_id.clone(),
            order: order.clone(),
            amount: row.amount,
            detail,
        });
    }
}

/// Import the rows of one file (already parsed whole). The ids of the rows it stored are added
/// to `touched`.
pub async fn import_rows(store: &Store, rows: &[Row], touched: &mut HashSet<String>) -> StoreResult<Tally> {
    let now = DateTime::now();
    let mut tally = Tally {
        rows: rows.len() as u64,
        ..Tally::default()
    };
    for chunk in rows.chunks(BATCH) {
        let ids: Vec<String> = chunk.iter().map(|r| r.key().id()).collect();
        let stored = store.stored_rows(&ids).await?;
        let incoming: Vec<Incoming> = chunk.iter().map(|row| Incoming { row, rematch: false }).collect();
        let (outcomes, orders) = run_batch(store, &incoming, stored, now).await?;
        let mut new = Vec::new();
        let mut conflicts = Vec::new();
        for ((row, outcome), order) in chunk.iter().zip(&outcomes).zip(&orders) {
            count(&mut tally, row, outcome, order);
            match outcome {
                Outcome::AlreadyImported => {}
                Outcome::Conflicting => conflicts.push((
                    doc! { "_id": row.key().id() },
                    doc! { "$addToSet": { "conflicts": conflict_doc(row) } },
                )),
                _ => {
                    touched.insert(row.key().id());
                    new.push(row_doc(row, outcome, order.as_deref(), now));
                }
            }
        }
        tally.new += store.insert_rows(new).await?;
        store.update_rows(conflicts).await?;
    }
    Ok(tally)
}

/// Match again the rows earlier imports left open (not those in `touched`), and store the
/// outcomes that changed. Returns what they came to (`new`: how many changed).
pub async fn rematch_open(store: &Store, touched: &HashSet<String>) -> StoreResult<Tally> {
    let now = DateTime::now();
    let open: Vec<(Row, Document)> = store
        .open_rows(REMATCH_MAX)
        .await?
        .into_iter()
        .filter(|(r, _)| !touched.contains(&r.key().id()))
        .collect();
    let mut tally = Tally {
        rows: open.len() as u64,
        ..Tally::default()
    };
    for chunk in open.chunks(BATCH) {
        let incoming: Vec<Incoming> = chunk.iter().map(|(row, _)| Incoming { row, rematch: true }).collect();
        let (outcomes, orders) = run_batch(store, &incoming, HashMap::new(), now).await?;
        let mut changed = Vec::new();
        for (((row, before), outcome), order) in chunk.iter().zip(&outcomes).zip(&orders) {
            count(&mut tally, row, outcome, order);
            let after = match_doc(outcome, order.as_deref(), now);
            let same = ["outcome", "discrepancy", "order"]
                .iter()
                .all(|k| before.get(*k).unwrap_or(&Bson::Null) == after.get(*k).unwrap_or(&Bson::Null));
            if !same {
                changed.push((doc! { "_id": row.key().id() }, doc! { "$set": { "match": after } }));
            }
        }
        tally.new += changed.len() as u64;
        store.update_rows(changed).await?;
    }
    Ok(tally)
}

/// Run `settlement import`; returns the exit code (0 every file read, 2 one was rejected).
pub fn execute(files: Vec<PathBuf>, as_json: bool, settings: crate::config::Settings) -> anyhow::Result<u8> {
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let store = crate::setup::connect_store(&settings).await?;
        store
            .ensure_settlement_indexes()
            .await
            .context("creating the settlement indexes")?;
        let mut rejected = false;
        let mut touched = HashSet::new();
        for path in &files {
            let name = path.display().to_string();
            let rows = match parse::read_file(path) {
                Ok(rows) => rows,
                Err(e) => {
                    rejected = true;
                    eprintln!("settlement import: {e}; nothing of this file was imported");
                    if as_json {
                        println!("{}", json!({ "file": name, "rejected": true, "error": e.to_string() }));
                    }
                    continue;
                }
            };
            let tally = import_rows(&store, &rows, &mut touched)
                .await
                .with_context(|| format!("importing {name}"))?;
            print(&name, &tally, as_json);
        }
        let again = rematch_open(&store, &touched)
            .await
            .context("matching open rows again")?;
        if as_json {
            println!("{}", json!({ "rematched": again.json() }));
        } else if again.rows > 0 {
            println!(
                "open rows of earlier imports matched again: {}; {} changed",
                again.summary(),
                again.new
            );
        }
        Ok(if rejected { 2 } else { 0 })
    })
}

fn print(name: &str, tally: &Tally, as_json: bool) {
    if as_json {
        let mut v = tally.json();
        v["file"] = json!(name);
        v["rejected"] = json!(false);
        println!("{v}");
        return;
    }
    println!("{name}: {}", tally.summary());
    for f in &tally.found {
        println!(
            "  {:<22} {:<8} {:<28} order {:<28} {:>12}  {}",
            f.kind.as_str(),
            f.payment_type.as_str(),
            f.merchant_reference_id,
            f.order.as_deref().unwrap_or("-"),
            rupees(f.amount),
            f.detail
        );
    }
}
