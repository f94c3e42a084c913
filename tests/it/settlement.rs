//! PhonePe's settlement reports through the real binary: `draft-reconciler settlement import`
//! and `settlement report`, against a fresh database, outcomes asserted in the database (the
//! rows of `reconciler_settlements`, the orders' status, marks and history).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use mongodb::bson::{doc, Bson, DateTime, Document};
use serde_json::Value;

use crate::support::World;

mod effects;
mod files;

/// One row of a generated report. Dates as India time, `yyyy-mm-dd HH:MM:SS`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: &'static str,
    pub mref: String,
    pub pref: String,
    /// Paise.
    pub amount: i64,
    pub fee: i64,
    pub igst: i64,
    pub txn: &'static str,
    pub settled: &'static str,
}

/// A PAYMENT of `amount` paise for `mref`, paid on Monday 2024-01-15, settled on Tuesday.
pub fn payment(mref: &str, amount: i64) -> Spec {
    Spec {
        kind: "PAYMENT",
        mref: mref.into(),
        pref: format!("T{mref}"),
        amount,
        fee: -(amount * 2 / 100),
        igst: -(amount * 2 / 100 * 18 / 100),
        txn: "2024-01-15 10:00:00",
        settled: "2024-01-16 09:00:00",
    }
}

pub fn refund(mref: &str, amount: i64) -> Spec {
    Spec {
        kind: "REFUND",
        fee: 0,
        igst: 0,
        ..payment(mref, amount)
    }
}

/// `draft-reconciler <args>` against `w`, output captured.
pub fn run(w: &World, args: &[&str]) -> Output {
    let mut c = w.reconciler_command(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.output().expect("run draft-reconciler")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// `settlement import` of `files`; asserts the exit code.
pub fn import(w: &World, files: &[&Path], want: i32) -> Output {
    let mut args = vec!["settlement".to_string(), "import".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(w, &args);
    assert_eq!(code(&out), want, "{}", text(&out));
    out
}

/// `settlement report --json [extra]`.
pub fn report(w: &World, extra: &[&str]) -> Value {
    let mut args = vec!["settlement", "report", "--json"];
    args.extend_from_slice(extra);
    let out = run(w, &args);
    assert_eq!(code(&out), 0, "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// The discrepancies of a report as (kind, merchantReferenceId), sorted.
pub fn kinds(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["discrepancies"]
        .as_array()
        .expect("discrepancies")
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or("?").to_string(),
                d["merchantReferenceId"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every stored settlement row, by `_id`.
pub fn rows(w: &World) -> Vec<Document> {
    w.block(async {
        use futures_util::TryStreamExt;
        w.db.collection::<Document>("reconciler_settlements")
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    })
}

/// The stored row of (PAYMENT|REFUND, mref).
pub fn row(w: &World, kind: &str, mref: &str) -> Document {
    rows(w)
        .into_iter()
        .find(|r| r.get_str("paymentType") == Ok(kind) && r.get_str("merchantReferenceId") == Ok(mref))
        .unwrap_or_else(|| panic!("no {kind} row for {mref}"))
}

pub fn outcome(w: &World, kind: &str, mref: &str) -> (String, Option<String>) {
    let m = row(w, kind, mref).get_document("match").cloned().expect("match");
    (
        m.get_str("outcome").unwrap_or("?").to_string(),
        m.get_str("discrepancy").ok().map(str::to_string),
    )
}

/// `reconciliation.settlement` of the order, if any.
pub fn mark(w: &World, mtid: &str) -> Option<Document> {
    w.order(mtid)
        .get_document("reconciliation")
        .ok()?
        .get_document("settlement")
        .ok()
        .cloned()
}

/// India time `yyyy-mm-dd HH:MM:SS` as a UTC date.
pub fn india(s: &str) -> DateTime {
    let ms = draft_reconciler::settlement::dates::parse_text(s).expect("a date");
    DateTime::from_millis(ms)
}

/// A confirmed order of `amount` paise, created and confirmed at `at` (India time).
pub fn confirmed(w: &World, mtid: &str, amount: i64, at: &str) -> Bson {
    let t = india(at);
    w.insert_raw(doc! {
        "merchantTransactionId": mtid, "status": "confirmed", "paymentStatus": "paid", "amount": amount,
        "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": t, "updatedAt": t,
        "history": [{ "at": t, "from": "draft", "to": "confirmed", "by": "reconciler", "reason": "paid", "code": "PAYMENT_SUCCESS" }],
    })
}

/// An order in `status` / `payment` of `amount` paise, created on Monday 2024-01-15.
pub fn order_in(w: &World, mtid: &str, amount: i64, status: &str, payment: &str) -> Bson {
    let t = india("2024-01-15 09:00:00");
    w.insert_raw(doc! {
        "merchantTransactionId": mtid, "status": status, "paymentStatus": payment, "amount": amount,
        "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": t, "updatedAt": t, "history": [],
    })
}

/// A temporary directory for the reports of one test.
pub fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path(d: &tempfile::TempDir, name: &str) -> PathBuf {
    d.path().join(name)
}
