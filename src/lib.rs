//! # draft-reconciler
//!
//! Settles PhonePe draft orders whose payment webhook never arrived. The path of one order:
//!
//! 1. the [`actors::Scanner`] finds a draft older than the lookback and claims it with a lease;
//! 2. an [`actors::OrderReconciler`] takes a permit of the [`actors::Budget`] and asks PhonePe
//!    for the payment status ([`phonepe::Gateway`]);
//! 3. [`domain::decide`] turns the order and the answer into one action (the decision table);
//! 4. the [`actors::StockCommitter`] applies it to MongoDB exactly once ([`store`]);
//! 5. the [`actors::Supervisor`] restarts whatever dies and exits non-zero when restarts storm.
//!
//! docs/architecture.md is the map. The modules that the integration tests (`tests/it`) and
//! benchmarks drive directly are public; the commands (`check`, `review`) and the settle path are
//! private, reached through [`execute`] and the actors. Inside the public modules, files that
//! only the crate uses are `pub(crate)`, behind their module's `pub use`.

pub mod actors;
pub mod app;
mod check;
pub mod cli;
mod commands;
pub mod config;
pub mod console;
pub mod domain;
pub mod events;
pub mod fault;
mod listener;
pub mod ops;
pub mod phonepe;
pub mod refund;
mod review;
pub mod schema;
mod settle;
pub mod settlement;
pub mod setup;
pub mod store;
pub mod telemetry;
pub mod webhook;

pub use commands::{execute, exit_code, without_settings};
