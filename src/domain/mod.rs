//! Pure types and rules; no I/O, and nothing of the crate imported (docs/architecture.md, "Decision
//! table"). `order` is what an order is, `payment` what PhonePe said about it, `decision` the table
//! that turns the two into one action, `outcome` how a reconciliation ended. Every money rule lives
//! here and is unit-tested row by row.

pub(crate) mod decision;
pub(crate) mod event;
pub(crate) mod order;
pub(crate) mod outcome;
pub(crate) mod payment;

pub use decision::{decide, CancelReason, Decision, Policy, Reason, ReviewReason, Tally};
pub use event::EventType;
pub use order::{Item, MerchantTransactionId, Order, OrderError, Paise, PaymentStatus, Status};
pub use outcome::Outcome;
pub use payment::{PaymentState, StatusError, StatusReport, TransientKind};
