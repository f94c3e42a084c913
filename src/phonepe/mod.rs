//! PhonePe API v1 status client, split the way the protocol is:
//!
//! - [`checksum`]: the `X-VERIFY` header (sha256 over the API path and the salt key), shared with
//!   the simulator so both sides hash exactly the same string;
//! - [`wire`]: the JSON answer and its classification into a domain
//!   [`StatusReport`](crate::domain::payment::StatusReport) or
//!   [`StatusError`](crate::domain::payment::StatusError) — pure, table-tested;
//! - [`client`]: the HTTP call itself (headers, timeouts, transport errors).

pub mod checksum;
pub mod client;
pub mod wire;

pub use client::PhonePeClient;
