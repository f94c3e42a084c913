//! `draft-reconciler settlement report [--from DATE] [--to DATE] [--json | --csv]`: the rows
//! settled in the range (India days of `SettlementDate`, inclusive), their totals per day, and
//! every open discrepancy with its order: those recorded on the rows in the range, and the
//! `not_settled` orders (worked out now) confirmed in the range.

use anyhow::Context as _;
use mongodb::bson::Document;

use super::dates::Day;
use super::gauge::not_settled_now;
use super::matcher::Discrepancy;
use super::report::{daily_totals, Open, Report};
use super::rupees;
use crate::store::settlements::row_of;
use crate::store::{Store, StoreResult};

/// The open discrepancies stored on one row document (its own, and its conflicts).
fn open_of(d: &Document) -> Vec<Open> {
    let Some(row) = row_of(d) else { return vec![] };
    let m = d.get_document("match").ok();
    let order = m.and_then(|m| m.get_str("order").ok()).map(str::to_string);
    let base = |kind, detail: String| Open {
        kind,
        payment_type: Some(row.payment_type),
        merchant_reference_id: row.merchant_reference_id.clone(),
        phonepe_reference_id: Some(row.phonepe_reference_id.clone()),
        order: order.clone(),
        amount: Some(row.amount),
        settlement_day: Some(Day::india(row.settlement_date)),
        detail,
    };
    let mut out = Vec::new();
    let open = m.and_then(|m| m.get_bool("open").ok()).unwrap_or(false);
    if let (true, Some(kind)) = (
        open,
        m.and_then(|m| m.get_str("discrepancy").ok())
            .and_then(Discrepancy::parse),
    ) {
        let detail = m.and_then(|m| m.get_str("detail").ok()).unwrap_or_default();
        out.push(base(kind, detail.to_string()));
    }
    if let Ok(conflicts) = d.get_array("conflicts") {
        for c in conflicts.iter().filter_map(|c| c.as_document()) {
            let at = format!(
                "{}:{}",
                c.get_str("file").unwrap_or("?"),
                c.get("line").map(|l| l.to_string()).unwrap_or_default()
            );
            let amount = c.get_i64("amount").map(rupees).unwrap_or_default();
            out.push(base(
                Discrepancy::ConflictingRows,
                format!("imported again with other values ({at}, amount {amount}); the first is kept"),
            ));
        }
    }
    out
}

/// Build the report for India days `from..=to` (either open-ended).
pub async fn build(store: &Store, from: Option<Day>, to: Option<Day>, within: u32) -> StoreResult<Report> {
    let docs = store
        .settled_between(
            from.map(Day::india_start_ms),
            to.map(|d| Day(d.0 + 1).india_start_ms() - 1),
        )
        .await?;
    let rows: Vec<_> = docs.iter().filter_map(row_of).collect();
    let mut open: Vec<Open> = docs.iter().flat_map(open_of).collect();
    for c in not_settled_now(store, within).await? {
        let day = Day::india(c.confirmed_at);
        if from.is_some_and(|f| day < f) || to.is_some_and(|t| day > t) {
            continue;
        }
        open.push(Open {
            kind: Discrepancy::NotSettled,
            payment_type: None,
            merchant_reference_id: c.order.clone(),
            phonepe_reference_id: None,
            order: Some(c.order.clone()),
            amount: c.amount,
            settlement_day: None,
            detail: format!(
                "confirmed {day}, no PAYMENT row by {} ({within} business days)",
                day.plus_business_days(within)
            ),
        });
    }
    open.sort_by(|a, b| (a.kind, &a.merchant_reference_id).cmp(&(b.kind, &b.merchant_reference_id)));
    Ok(Report {
        from,
        to,
        days: daily_totals(&rows),
        open,
    })
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Run `settlement report`; returns the exit code.
pub fn report(
    from: Option<Day>,
    to: Option<Day>,
    format: Format,
    settings: crate::config::Settings,
) -> anyhow::Result<u8> {
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            eprintln!("settlement report: --from {f} is after --to {t}");
            return Ok(2);
        }
    }
    let within = settings.settlement.expected_within_days;
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let store = crate::setup::connect_store(&settings).await?;
        let report = build(&store, from, to, within)
            .await
            .context("reading the settlement rows")?;
        match format {
            Format::Table => print!("{}", report.table()),
            Format::Json => println!("{}", serde_json::to_string_pretty(&report.json())?),
            Format::Csv => print!("{}", report.csv()),
        }
        Ok(0)
    })
}
