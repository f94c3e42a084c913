//! The matching table: one pure function, [`match_rows`], from settlement rows and what is known
//! of the orders and refunds to one [`Outcome`] per row. No I/O: `settlement import` reads the
//! facts, calls it, and carries out the outcomes through the store's guarded writes.
//!
//! | row | order / refund as known | outcome |
//! |---|---|---|
//! | any | the same key imported before (or earlier in the file), same values | [`Outcome::AlreadyImported`] |
//! | any | the same key imported before, other values | [`Outcome::Conflicting`] (`conflicting_rows`, the first kept) |
//! | PAYMENT | no order has the id (or its status cannot be read) | `unknown_order` |
//! | PAYMENT | the order is settled by another PAYMENT row | `conflicting_rows` |
//! | PAYMENT | `confirmed`, same amount | [`Outcome::Matched`]: `reconciliation.settlement` |
//! | PAYMENT | `confirmed`, another amount | `amount_differs`, the order unchanged |
//! | PAYMENT | `draft` | [`Outcome::WakeDraft`]: asked about at once, the reconciler settles it |
//! | PAYMENT | `committing` | [`Outcome::Deferred`]: looked at again by the next import |
//! | PAYMENT | `cancelled` or `needs_review`, payment not recorded | [`Outcome::RecordPayment`] (any amount) |
//! | PAYMENT | payment recorded (`needs_review`, `refunded`, ...), same amount as recorded | [`Outcome::PaymentKnown`] |
//! | PAYMENT | payment recorded, another amount | `amount_differs` |
//! | REFUND | no order records a refund with this id | `unknown_refund` |
//! | REFUND | the refund is settled by another REFUND row | `conflicting_rows` |
//! | REFUND | recorded, another amount | `refund_amount_differs` |
//! | REFUND | `refund_pending` | [`Outcome::RefundSettled`] `finish`: the order ends `refunded` |
//! | REFUND | `refunded` | [`Outcome::RefundSettled`]: only the settlement recorded |
//! | REFUND | the refund ended failed (`paid` again) | `unknown_refund`: money went out that we think did not |
//!
//! A REFUND row's amount is compared by its size (PhonePe's sign is not relied on). Rows are
//! taken in order and each outcome is seen by the rows after it (a second PAYMENT row for an
//! order the first one settled is `conflicting_rows`). Rows [`Incoming::rematch`]ed — stored rows
//! whose outcome was open — skip the duplicate check: they are the stored row.

use std::collections::HashMap;

use super::{Key, PaymentType, Row};
use crate::domain::{PaymentStatus, Status};

/// What is known of one order (by its merchantTransactionId).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// `None`: the status is missing or not one of the shop's words.
    pub status: Option<Status>,
    pub payment: Option<PaymentStatus>,
    /// The order's amount in paise; `None` when it cannot be read.
    pub amount: Option<i64>,
    /// `reconciliation.paidAmount`: what PhonePe reported paid, when recorded.
    pub paid_amount: Option<i64>,
    /// The PhonePeReferenceId of the PAYMENT row recorded on the order, if any.
    pub settled_by: Option<String>,
}

/// What is known of a refund recorded on an order (`reconciliation.refund`, by its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFacts {
    /// The order's merchantTransactionId.
    pub order: String,
    /// Paise, as recorded.
    pub amount: i64,
    pub payment: Option<PaymentStatus>,
    /// The PhonePeReferenceId of the REFUND row recorded on the refund, if any.
    pub settled_by: Option<String>,
}

/// Everything the matcher is told.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub orders: HashMap<String, OrderFacts>,
    pub refunds: HashMap<String, RefundFacts>,
    /// Rows already imported, by key.
    pub stored: HashMap<Key, Row>,
}

/// A row to match: new from a file, or a stored row matched again (`rematch`).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub row: &'a Row,
    pub rematch: bool,
}

/// The discrepancies a person looks at (`settlement report`, the gauge's `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Discrepancy {
    AmountDiffers,
    UnknownOrder,
    UnknownRefund,
    RefundAmountDiffers,
    ConflictingRows,
    NotSettled,
}

impl Discrepancy {
    pub const ALL: [Discrepancy; 6] = [
        Discrepancy::AmountDiffers,
        Discrepancy::UnknownOrder,
        Discrepancy::UnknownRefund,
        Discrepancy::RefundAmountDiffers,
        Discrepancy::ConflictingRows,
        Discrepancy::NotSettled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Discrepancy::AmountDiffers => "amount_differs",
            Discrepancy::UnknownOrder => "unknown_order",
            Discrepancy::UnknownRefund => "unknown_refund",
            Discrepancy::RefundAmountDiffers => "refund_amount_differs",
            Discrepancy::ConflictingRows => "conflicting_rows",
            Discrepancy::NotSettled => "not_settled",
        }
    }

    pub fn parse(s: &str) -> Option<Discrepancy> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// What one row comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The same row was imported before (or earlier in this file): nothing.
    AlreadyImported,
    /// The same key was imported before with other values: the first is kept, and this one is
    /// recorded beside it (`conflicting_rows`).
    Conflicting,
    /// A PAYMENT for a confirmed order of the same amount: record `reconciliation.settlement`.
    Matched,
    /// The order already records this payment (parked, refunding or refunded): nothing to change.
    PaymentKnown,
    /// A PAYMENT for an order that left `draft` unpaid: recorded as a late payment, parked.
    RecordPayment,
    /// A PAYMENT for a draft: it is asked about at once; the reconciler settles it.
    WakeDraft,
    /// The order is being committed right now: the next import looks again.
    Deferred,
    /// A REFUND for a refund we recorded: its settlement recorded; `finish`: the pending refund
    /// is completed (`refunded`).
    RefundSettled { finish: bool },
    /// Nothing changes; a person looks (`detail` says why, in a few words).
    Discrepancy { kind: Discrepancy, detail: &'static str },
}

impl Outcome {
    /// The stored word (`reconciler_settlements.match.outcome`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::AlreadyImported => "already_imported",
            Outcome::Conflicting => "conflicting",
            Outcome::Matched => "matched",
            Outcome::PaymentKnown => "payment_known",
            Outcome::RecordPayment => "payment_recorded",
            Outcome::WakeDraft => "draft_woken",
            Outcome::Deferred => "deferred",
            Outcome::RefundSettled { .. } => "refund_settled",
            Outcome::Discrepancy { .. } => "discrepancy",
        }
    }

    /// Matched again by the next import: the order may settle, or be corrected, meanwhile.
    /// (A [`Outcome::Conflicting`] row is not stored: its conflict is kept on the first row.)
    pub fn open(&self) -> bool {
        matches!(
            self,
            Outcome::WakeDraft | Outcome::Deferred | Outcome::Discrepancy { .. }
        )
    }

    pub fn discrepancy(&self) -> Option<Discrepancy> {
        match self {
            Outcome::Discrepancy { kind, .. } => Some(*kind),
            Outcome::Conflicting => Some(Discrepancy::ConflictingRows),
            _ => None,
        }
    }
}

fn differs(kind: Discrepancy, detail: &'static str) -> Outcome {
    Outcome::Discrepancy { kind, detail }
}

/// Match `rows` in order against `known` (see the module's table).
pub fn match_rows(rows: &[Incoming<'_>], known: &Known) -> Vec<Outcome> {
    let mut orders = known.orders.clone();
    let mut refunds = known.refunds.clone();
    let mut seen: HashMap<Key, &Row> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for incoming in rows {
        let row = incoming.row;
        let key = row.key();
        if !incoming.rematch {
            let first = known.stored.get(&key).or_else(|| seen.get(&key).copied());
            if let Some(first) = first {
                out.push(if first.same_values(row) {
                    Outcome::AlreadyImported
                } else {
                    Outcome::Conflicting
                });
                continue;
            }
        }
        seen.insert(key, row);
        let outcome = match row.payment_type {
            PaymentType::Payment => payment(row, orders.get_mut(&row.merchant_reference_id)),
            PaymentType::Refund => refund(row, refunds.get_mut(&row.merchant_reference_id)),
        };
        out.push(outcome);
    }
    out
}

/// A PAYMENT row against its order (updated in place with what the outcome changes).
fn payment(row: &Row, order: Option<&mut OrderFacts>) -> Outcome {
    use Discrepancy::*;
    let Some(o) = order else {
        return differs(UnknownOrder, "no order has this merchantTransactionId");
    };
    let Some(status) = o.status else {
        return differs(UnknownOrder, "the order's status cannot be read");
    };
    if o.settled_by.as_ref().is_some_and(|by| *by != row.phonepe_reference_id) {
        return differs(ConflictingRows, "another PAYMENT row settled this order");
    }
    let recorded = matches!(
        o.payment,
        Some(PaymentStatus::Paid | PaymentStatus::RefundPending | PaymentStatus::Refunded)
    );
    match status {
        Status::Draft => Outcome::WakeDraft,
        Status::Committing => Outcome::Deferred,
        Status::Confirmed => match o.amount {
            Some(a) if a == row.amount => {
                o.settled_by = Some(row.phonepe_reference_id.clone());
                Outcome::Matched
            }
            Some(_) => differs(AmountDiffers, "PhonePe settled another amount than the order's"),
            None => differs(UnknownOrder, "the order's amount cannot be read"),
        },
        Status::Cancelled | Status::NeedsReview if !recorded => {
            o.status = Some(Status::NeedsReview);
            o.payment = Some(PaymentStatus::Paid);
            o.paid_amount = Some(row.amount);
            Outcome::RecordPayment
        }
        Status::Cancelled | Status::NeedsReview | Status::Refunded => match o.paid_amount.or(o.amount) {
            Some(a) if a == row.amount => Outcome::PaymentKnown,
            _ => differs(
                AmountDiffers,
                "PhonePe settled another amount than the order records paid",
            ),
        },
    }
}

/// A REFUND row against the refund recorded under its id.
fn refund(row: &Row, refund: Option<&mut RefundFacts>) -> Outcome {
    use Discrepancy::*;
    let Some(r) = refund else {
        return differs(UnknownRefund, "no order records a refund with this id");
    };
    if r.settled_by.as_ref().is_some_and(|by| *by != row.phonepe_reference_id) {
        return differs(ConflictingRows, "another REFUND row settled this refund");
    }
    if r.amount != row.amount.abs() {
        return differs(RefundAmountDiffers, "PhonePe settled another amount than the refund's");
    }
    let finish = match r.payment {
        Some(PaymentStatus::RefundPending) => true,
        Some(PaymentStatus::Refunded) => false,
        _ => return differs(UnknownRefund, "PhonePe paid out a refund the order records as not made"),
    };
    r.payment = Some(PaymentStatus::Refunded);
    r.settled_by = Some(row.phonepe_reference_id.clone());
    Outcome::RefundSettled { finish }
}

#[cfg(test)]
mod tests;
