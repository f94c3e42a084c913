//! What `settlement report` works out, pure: the totals per settlement day and the `not_settled`
//! orders, and the report's three renderings (a table, `--json` in paise, `--csv` in rupees).
//!
//! A day's totals (by the India day of `SettlementDate`) count every row of that day, matched or
//! not, so `net` is the payout: `gross` (PAYMENT amounts) + `refunds` (REFUND amounts, negative
//! whatever the sign PhonePe writes) + `fees` + `taxes` (IGST + CGST + SGST, negative). An order
//! confirmed on India day D is `not_settled` when it has no PAYMENT row, D lies inside the
//! imported rows' span of `TransactionDate`s, and they reach D + `expected_within_days` business
//! days (Saturdays and Sundays skipped).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::dates::Day;
use super::matcher::Discrepancy;
use super::{rupees, PaymentType, Row};

/// One settlement day's totals, in paise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub rows: u64,
    pub gross: i64,
    pub fees: i64,
    pub taxes: i64,
    pub refunds: i64,
    pub net: i64,
}

impl Totals {
    pub fn add(&mut self, r: &Row) {
        self.rows += 1;
        match r.payment_type {
            PaymentType::Payment => self.gross += r.signed_amount(),
            PaymentType::Refund => self.refunds += r.signed_amount(),
        }
        self.fees += r.fee;
        self.taxes += r.tax();
        self.net += r.net();
    }

    fn plus(mut self, o: &Totals) -> Totals {
        self.rows += o.rows;
        self.gross += o.gross;
        self.fees += o.fees;
        self.taxes += o.taxes;
        self.refunds += o.refunds;
        self.net += o.net;
        self
    }

    fn json(&self) -> Value {
        json!({
            "rows": self.rows, "gross": self.gross, "fees": self.fees, "taxes": self.taxes,
            "refunds": self.refunds, "net": self.net,
        })
    }
}

/// Totals per India day of `SettlementDate`, oldest first.
pub fn daily_totals<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<(Day, Totals)> {
    let mut days: BTreeMap<Day, Totals> = BTreeMap::new();
    for r in rows {
        days.entry(Day::india(r.settlement_date)).or_default().add(r);
    }
    days.into_iter().collect()
}

/// A confirmed order, as `not_settled` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub order: String,
    /// When it was confirmed (its history's confirmation, else its creation), UTC ms.
    pub confirmed_at: i64,
    pub amount: Option<i64>,
}

/// The India days of the earliest and latest `TransactionDate` imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub first: Day,
    pub last: Day,
}

impl Coverage {
    /// The last confirmation day that can be `not_settled`: `last` minus `within` business days
    /// (the latest D with D + `within` business days on or before `last`).
    pub fn latest_due(&self, within: u32) -> Day {
        let mut d = self.last;
        while d.plus_business_days(within) > self.last {
            d = Day(d.0 - 1);
        }
        d
    }
}

/// The confirmed orders with no PAYMENT row (`paid` holds the merchantReferenceIds of the
/// PAYMENT rows) that the imported rows cover and are overdue in (see the module docs).
pub fn not_settled<'a>(
    confirmed: &'a [Confirmed],
    paid: &HashSet<String>,
    coverage: Option<Coverage>,
    within: u32,
) -> Vec<&'a Confirmed> {
    let Some(c) = coverage else { return vec![] };
    confirmed
        .iter()
        .filter(|o| {
            let d = Day::india(o.confirmed_at);
            d >= c.first && d.plus_business_days(within) <= c.last && !paid.contains(&o.order)
        })
        .collect()
}

/// One open discrepancy, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub kind: Discrepancy,
    /// The row's (none for `not_settled`: there is no row).
    pub payment_type: Option<PaymentType>,
    pub merchant_reference_id: String,
    pub phonepe_reference_id: Option<String>,
    /// The order's merchantTransactionId, when there is one.
    pub order: Option<String>,
    /// The row's amount (`not_settled`: the order's), paise.
    pub amount: Option<i64>,
    pub settlement_day: Option<Day>,
    pub detail: String,
}

impl Open {
    fn json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "paymentType": self.payment_type.map(PaymentType::as_str),
            "merchantReferenceId": self.merchant_reference_id,
            "phonePeReferenceId": self.phonepe_reference_id,
            "order": self.order,
            "amount": self.amount,
            "settlementDate": self.settlement_day.map(|d| d.to_string()),
            "detail": self.detail,
        })
    }
}

/// Everything `settlement report` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub from: Option<Day>,
    pub to: Option<Day>,
    pub days: Vec<(Day, Totals)>,
    pub open: Vec<Open>,
}

impl Report {
    pub fn totals(&self) -> Totals {
        self.days.iter().fold(Totals::default(), |t, (_, d)| t.plus(d))
    }

    /// `--json`: one document, amounts in paise.
    pub fn json(&self) -> Value {
        json!({
            "from": self.from.map(|d| d.to_string()),
            "to": self.to.map(|d| d.to_string()),
            "days": self.days.iter().map(|(day, t)| {
                let mut v = t.json();
                v["date"] = json!(day.to_string());
                v
            }).collect::<Vec<_>>(),
            "totals": self.totals().json(),
            "discrepancies": self.open.iter().map(Open::json).collect::<Vec<_>>(),
        })
    }

    /// `--csv`: the days (and a `total` line) in rupees with two decimals, a blank line, then
    /// the discrepancies.
    pub fn csv(&self) -> String {
        let mut out = String::from("date,rows,gross,fees,taxes,refunds,net\n");
        let line = |out: &mut String, label: &str, t: &Totals| {
            let _ = writeln!(
                out,
                "{label},{},{},{},{},{},{}",
                t.rows,
                rupees(t.gross),
                rupees(t.fees),
                rupees(t.taxes),
                rupees(t.refunds),
                rupees(t.net)
            );
        };
        for (day, t) in &self.days {
            line(&mut out, &day.to_string(), t);
        }
        line(&mut out, "total", &self.totals());
        out.push_str(
            "\nkind,payment_type,merchant_reference_id,phonepe_reference_id,order,amount,settlement_date,detail\n",
        );
        for o in &self.open {
            let cells = [
                o.kind.as_str().to_string(),
                o.payment_type.map_or("", PaymentType::as_str).to_string(),
                o.merchant_reference_id.clone(),
                o.phonepe_reference_id.clone().unwrap_or_default(),
                o.order.clone().unwrap_or_default(),
                o.amount.map(rupees).unwrap_or_default(),
                o.settlement_day.map(|d| d.to_string()).unwrap_or_default(),
                o.detail.clone(),
            ];
            let _ = writeln!(out, "{}", cells.map(|c| csv_cell(&c)).join(","));
        }
        out
    }

    /// The table a person reads, amounts in rupees.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<12} {:>7} {:>15} {:>13} {:>13} {:>13} {:>15}\n",
            "SETTLED", "ROWS", "GROSS", "FEES", "TAXES", "REFUNDS", "NET"
        );
        let line = |out: &mut String, label: &str, t: &Totals| {
            let _ = writeln!(
                out,
                "{label:<12} {:>7} {:>15} {:>13} {:>13} {:>13} {:>15}",
                t.rows,
                rupees(t.gross),
                rupees(t.fees),
                rupees(t.taxes),
                rupees(t.refunds),
                rupees(t.net)
            );
        };
        for (day, t) in &self.days {
            line(&mut out, &day.to_string(), t);
        }
        line(&mut out, "total", &self.totals());
        if self.open.is_empty() {
            out.push_str("\nno open discrepancies\n");
        } else {
            let _ = writeln!(out, "\n{} open discrepancies:", self.open.len());
            for o in &self.open {
                let _ = writeln!(
                    out,
                    "  {:<22} {:<8} {:<28} order {:<28} {:>12}  {}",
                    o.kind.as_str(),
                    o.payment_type.map_or("-", PaymentType::as_str),
                    o.merchant_reference_id,
                    o.order.as_deref().unwrap_or("-"),
                    o.amount.map_or("-".into(), rupees),
                    o.detail
                );
            }
        }
        out
    }
}

/// A CSV cell, quoted when it must be.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests;
