//! Pure types and rules, no I/O.
//!
//! `order` holds what an order *is* (parsed from a MongoDB document, never trusted raw),
//! `payment` holds what PhonePe *said* about it, and `decision` is the decision table that
//! turns the two into exactly one action. Actors only move data into `decide` and act on its
//! answer, so every money rule lives here and is unit-tested row by row.

pub(crate) mod decision;
pub(crate) mod order;
pub(crate) mod outcome;
pub(crate) mod payment;

pub use decision::{decide, CancelReason, Decision, Policy, Reason, ReviewReason, Tally};
pub use order::{Item, MerchantTransactionId, Order, OrderError, Paise, PaymentStatus, Status};
pub use outcome::Outcome;
pub use payment::{PaymentState, StatusError, StatusReport, TransientKind};
