//! PhonePe API v1 status client.
//! TODO(helper): checksum.rs, wire.rs, client.rs
