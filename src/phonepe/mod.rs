//! PhonePe status client, API v1 (salt key) and API v2 (OAuth), split the way the protocol is:
//!
//! - [`checksum`]: the v1 `X-VERIFY` header (sha256 over the API path and the salt key) and the
//!   webhook signatures of both versions;
//! - [`wire`] (v1) and [`wire_v2`] (v2): the JSON answer and its classification into the same
//!   domain [`StatusReport`](crate::domain::payment::StatusReport) or
//!   [`StatusError`](crate::domain::payment::StatusError) — pure, table-tested;
//! - [`oauth`]: v2 access tokens, cached and refreshed at half-life, one refresh for all clones;
//! - [`client`]: the HTTP call itself (headers, token, timeouts, transport errors); its calls are
//!   visible inside this module only;
//! - [`gateway`]: the one way every caller reaches PhonePe (a permit of the budget, the breaker,
//!   the metrics, the log).

pub mod checksum;
pub mod client;
pub mod gateway;
pub mod oauth;
pub mod wire;
pub mod wire_v2;

pub use client::PhonePeClient;
pub use gateway::{CallError, Gateway};
pub use oauth::{ApiVersion, V2Credentials};
