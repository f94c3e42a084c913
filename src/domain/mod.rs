//! Pure types and rules, no I/O.
//!
//! `order` holds what an order *is* (parsed from a MongoDB document, never trusted raw),
//! `payment` holds what PhonePe *said* about it, and `decision` is the decision table that
//! turns the two into exactly one action. Actors only move data into `decide` and act on its
//! answer, so every money rule lives here and is unit-tested row by row.

pub mod created_at;
pub mod decision;
pub mod event;
pub mod order;
pub mod payment;

pub use decision::{decide, CancelReason, Decision, Policy, Reason, ReviewReason};
pub use event::EventType;
pub use order::{Item, MerchantTransactionId, Order, OrderError, Paise, PaymentStatus, Status};
pub use payment::{PaymentState, StatusError, StatusReport, TransientKind};
