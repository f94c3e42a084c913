//! PhonePe's signatures, as PhonePe documents them, written here on purpose rather than taken
//! from the product: a fake that hashed with the client's own function would agree with any
//! mistake the client made. Both sides are held to PhonePe's worked examples instead (the unit
//! tests below, and the product's own), and the product's tests run its client against this.
//!
//! - v1 `X-VERIFY` = `sha256_hex(string + salt_key) + "###" + salt_index`, lowercase hex, where
//!   the string is the API path *without* the base URL's prefix for a GET
//!   (`/pg/v1/status/{merchantId}/{merchantTransactionId}`), or the base64 body followed by the
//!   API path for a POST (`/pg/v1/refund`), or the base64 `response` of a v1 callback.
//! - v2 webhook `Authorization` = `sha256_hex(username + ":" + password)`, lowercase hex.

use sha2::{Digest, Sha256};

/// The v1 refund API path (hashed after the base64 body, appended to the prefix).
pub(crate) const REFUND_V1_PATH: &str = "/pg/v1/refund";

fn sha256_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The v1 `X-VERIFY` of `hashed` (a status path, `base64 + path`, or a callback's base64).
pub(crate) fn x_verify(hashed: &str, salt_key: &str, salt_index: u32) -> String {
    format!("{}###{salt_index}", sha256_hex(&[hashed, salt_key]))
}

/// The hashed string of a v1 status call: PhonePe's path, never the configured prefix.
pub(crate) fn status_path(merchant_id: &str, mtid: &str) -> String {
    format!("/pg/v1/status/{merchant_id}/{mtid}")
}

/// Whether `header` is exactly the `X-VERIFY` of `hashed` (surrounding whitespace allowed). The
/// comparison looks at every byte, so its time does not tell how much of a guess was right.
pub(crate) fn verify(header: &str, hashed: &str, salt_key: &str, salt_index: u32) -> bool {
    let expected = x_verify(hashed, salt_key, salt_index);
    let given = header.trim().as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The v2 webhook's `Authorization` header.
pub(crate) fn webhook_v2_authorization(username: &str, password: &str) -> String {
    sha256_hex(&[username, ":", password])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PhonePe's v1 check-status vectors (made-up credentials), reproducible with
    /// `printf '%s' '<path><salt key>' | sha256sum`.
    #[test]
    fn x_verify_matches_the_documented_vectors() {
        assert_eq!(
            x_verify(&status_path("MERCHANTUAT", "ORD-1001"), "test-salt-key", 1),
            "b4522dc5222bf50566be1e091c14590ed56cc25b2ab9709343e904b12436055c###1"
        );
        assert_eq!(
            x_verify(
                &status_path("TESTMERCHANT01", "DRAFT-1001"),
                "11111111-2222-3333-4444-555555555555",
                1
            ),
            "1b779ee431371e82893f664a9a8fb64ea0c4e435490f29e7ddbb165c49fb8d3f###1"
        );
    }

    #[test]
    fn verify_accepts_only_the_exact_header() {
        let path = status_path("MERCHANTUAT", "ORD-1001");
        let good = "b4522dc5222bf50566be1e091c14590ed56cc25b2ab9709343e904b12436055c###1";
        assert!(verify(good, &path, "test-salt-key", 1));
        assert!(verify(&format!(" {good} "), &path, "test-salt-key", 1));
        assert!(!verify(good, &path, "test-salt-key", 2), "other salt index");
        assert!(!verify(good, &path, "other-salt", 1), "other salt key");
        assert!(
            !verify(good, &format!("/apis/pg-sandbox{path}"), "test-salt-key", 1),
            "the prefix is not hashed"
        );
        assert!(
            !verify(&good.to_uppercase(), &path, "test-salt-key", 1),
            "hex is lowercase"
        );
        assert!(!verify(&good[..64], &path, "test-salt-key", 1), "###index missing");
        assert!(!verify("", &path, "test-salt-key", 1));
        // "b4" -> "4b": both bytes differ by the same bits, which an accumulator that XORs the
        // differences (instead of ORing them) would cancel out.
        assert!(!verify(&format!("4b{}", &good[2..]), &path, "test-salt-key", 1));
    }

    /// `printf '%s' 'eyJhIjoxfQ==/pg/v1/refundtest-salt-key' | sha256sum` and
    /// `printf '%s' 'user:pass' | sha256sum`.
    #[test]
    fn refund_and_webhook_signatures_match_sha256sum() {
        assert_eq!(
            x_verify(&format!("eyJhIjoxfQ=={REFUND_V1_PATH}"), "test-salt-key", 1),
            "9ccf5b3e440f50ec7143c97fd209933b758cb030e8918617cd54bbed5ec8ff95###1"
        );
        assert_eq!(
            webhook_v2_authorization("user", "pass"),
            "ef4c914c591698b268db3c64163eafda7209a630f236ebf0eebf045460df723a"
        );
    }
}
