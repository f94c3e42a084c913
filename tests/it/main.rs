//! Every integration test of the crate, in one test binary (linking the crate once instead of
//! once per suite): a module per suite, the two large ones split by subject. Shared helpers are
//! in `support`.
//!
//! All suites run in this one process, in parallel. Process-wide state the tests touch is made
//! safe: in-process faults (`draft_reconciler::fault::arm`) fire only on the thread that armed
//! them (see `src/fault.rs`); metrics are recorded with a local recorder; no test changes the
//! environment or the current directory (the real binary gets its environment per command).

mod binary;
mod console;
mod crash;
mod events;
mod journal_model;
#[cfg(feature = "fault-injection")]
mod journal_recovery;
mod monitoring;
mod phonepe_v1;
mod phonepe_v2;
mod phonepe_v2_binary;
mod pipeline;
mod pm2;
mod poison;
mod review;
mod settlement;
mod shared_budget;
mod supervision;
mod support;
mod wake;
mod webhook;
mod world_faults;
