//! # draft-reconciler
//!
//! Settles PhonePe draft orders whose payment webhook never arrived. The path of one order:
//!
//! 1. the [`actors::scanner`] finds a draft older than the lookback and claims it with a lease;
//! 2. an [`actors::reconciler`] takes a permit from the [`actors::rate_limiter`] (the PhonePe
//!    budget) and asks PhonePe for the payment status ([`phonepe::client`]);
//! 3. [`domain::decide`] turns the order and the answer into one action (the decision table);
//! 4. the [`actors::committer`] applies it to MongoDB exactly once ([`store`]), guarded by status;
//! 5. the [`actors::supervisor`] restarts whatever dies and exits non-zero when restarts storm.

pub mod actors;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod events;
pub mod fault;
pub mod ops;
pub mod phonepe;
pub mod refund;
pub mod review;
pub mod schema;
pub mod settle;
pub mod settlement;
pub mod store;
pub mod telemetry;
pub mod webhook;
