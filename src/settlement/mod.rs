//! PhonePe's settlement reports: what was actually paid out to the merchant, per transaction,
//! matched against the orders (`draft-reconciler settlement import|report`).
//!
//! The parts, pure first: [`parse`] reads a CSV or XLSX report into [`Row`]s (amounts in exact
//! paise, dates as UTC instants read as India time, errors naming file, line and column);
//! [`matcher`] is the one function that turns rows and what is known of the orders and refunds
//! into one [`matcher::Outcome`] per row; [`report`] works out the daily totals and the
//! `not_settled` orders. [`import`] and [`report`]'s command run them against MongoDB
//! (`store/settlements.rs` holds the writes), and [`gauge`] keeps
//! `reconciler_settlement_discrepancies{kind}` current in the running service.

pub mod dates;
pub(crate) mod effects;
pub(crate) mod gauge;
pub(crate) mod import;
pub(crate) mod matcher;
pub(crate) mod parse;
pub(crate) mod report;
pub(crate) mod report_cmd;
pub mod settings;

use sha2::{Digest, Sha256};

/// `PaymentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PaymentType {
    Payment,
    Refund,
}

impl PaymentType {
    /// As PhonePe writes it, and as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentType::Payment => "PAYMENT",
            PaymentType::Refund => "REFUND",
        }
    }

    /// Case-insensitive: `PAYMENT` / `REFUND`.
    pub fn parse(s: &str) -> Option<PaymentType> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PAYMENT" => Some(PaymentType::Payment),
            "REFUND" => Some(PaymentType::Refund),
            _ => None,
        }
    }
}

/// One transaction of a settlement report. Money in paise as PhonePe writes it (`fee` and the
/// taxes negative; `amount` as written, see [`Row::signed_amount`]); instants in UTC epoch
/// milliseconds. `From` (the payer, customer data) is read past and never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub payment_type: PaymentType,
    /// Our merchantTransactionId, or the refund's id for a refund.
    pub merchant_reference_id: String,
    pub phonepe_reference_id: String,
    pub instrument: Option<String>,
    pub creation_date: Option<i64>,
    pub transaction_date: i64,
    pub settlement_date: i64,
    pub amount: i64,
    pub fee: i64,
    pub igst: i64,
    pub cgst: i64,
    pub sgst: i64,
    /// `BankReferenceNo`: the UTR of the payout.
    pub utr: Option<String>,
    /// Where it was read: the report's file name and line (CSV) or row (XLSX), 1-based.
    pub file: String,
    pub line: u64,
}

/// The three columns that identify a row: (PaymentType, MerchantReferenceId, PhonePeReferenceId).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub payment_type: PaymentType,
    pub merchant_reference_id: String,
    pub phonepe_reference_id: String,
}

impl Key {
    /// The stored `_id`: the first 32 hex digits of sha256 over the three, separated by a
    /// character no id contains. Deterministic, so the same row imported twice is one document.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.payment_type.as_str(),
            &self.merchant_reference_id,
            &self.phonepe_reference_id,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

impl Row {
    pub fn key(&self) -> Key {
        Key {
            payment_type: self.payment_type,
            merchant_reference_id: self.merchant_reference_id.clone(),
            phonepe_reference_id: self.phonepe_reference_id.clone(),
        }
    }

    /// IGST + CGST + SGST, as written (negative).
    pub fn tax(&self) -> i64 {
        self.igst + self.cgst + self.sgst
    }

    /// The amount as money in (a PAYMENT) or out (a REFUND, whatever the sign PhonePe writes).
    pub fn signed_amount(&self) -> i64 {
        match self.payment_type {
            PaymentType::Payment => self.amount,
            PaymentType::Refund => -self.amount.abs(),
        }
    }

    /// What this row adds to the payout: the signed amount + fee + taxes.
    pub fn net(&self) -> i64 {
        self.signed_amount() + self.fee + self.tax()
    }

    /// The same transaction with the same values (where it was read aside).
    pub fn same_values(&self, other: &Row) -> bool {
        let strip = |r: &Row| Row {
            file: String::new(),
            line: 0,
            ..r.clone()
        };
        strip(self) == strip(other)
    }
}

/// Paise as rupees with two decimals: `-1234` → `-12.34`.
pub fn rupees(paise: i64) -> String {
    let sign = if paise < 0 { "-" } else { "" };
    let p = paise.unsigned_abs();
    format!("{sign}{}.{:02}", p / 100, p % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(t: PaymentType, mref: &str, amount: i64) -> Row {
        Row {
            payment_type: t,
            merchant_reference_id: mref.into(),
            phonepe_reference_id: format!("T{mref}"),
            instrument: Some("UPI".into()),
            creation_date: None,
            transaction_date: 1_705_300_000_000,
            settlement_date: 1_705_400_000_000,
            amount,
            fee: -236,
            igst: -42,
            cgst: 0,
            sgst: 0,
            utr: Some("UTR1".into()),
            file: "a.csv".into(),
            line: 2,
        }
    }

    #[test]
    fn net_is_the_signed_amount_plus_fee_and_taxes_and_a_refund_is_money_out() {
        let p = row(PaymentType::Payment, "MT1", 49_900);
        assert_eq!((p.tax(), p.net()), (-42, 49_900 - 236 - 42));
        let mut r = row(PaymentType::Refund, "RF1", 49_900);
        assert_eq!(r.net(), -49_900 - 278);
        r.amount = -49_900;
        assert_eq!(r.signed_amount(), -49_900, "whatever the sign PhonePe writes");
    }

    #[test]
    fn ids_are_deterministic_and_tell_the_three_columns_apart() {
        let a = row(PaymentType::Payment, "MT1", 1).key();
        assert_eq!(a.id(), a.clone().id());
        assert_eq!(a.id().len(), 32);
        let mut b = a.clone();
        b.payment_type = PaymentType::Refund;
        let mut c = a.clone();
        c.merchant_reference_id = "MT1T".into();
        c.phonepe_reference_id = "MT1".into();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), c.id(), "the separator keeps MT1|TMT1 and MT1T|MT1 apart");
        let mut moved = row(PaymentType::Payment, "MT1", 1);
        moved.line = 9;
        moved.file = "b.xlsx".into();
        assert!(moved.same_values(&row(PaymentType::Payment, "MT1", 1)));
        moved.fee -= 1;
        assert!(!moved.same_values(&row(PaymentType::Payment, "MT1", 1)));
    }

    #[test]
    fn rupees_have_two_decimals() {
        assert_eq!(rupees(0), "0.00");
        assert_eq!(rupees(5), "0.05");
        assert_eq!(rupees(-1234), "-12.34");
        assert_eq!(rupees(4_990_000), "49900.00");
        assert_eq!(PaymentType::parse(" refund "), Some(PaymentType::Refund));
        assert_eq!(PaymentType::parse("CHARGEBACK"), None);
    }
}
