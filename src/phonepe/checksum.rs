//! The v1 `X-VERIFY` checksum: `sha256_hex(api_path + salt_key) + "###" + salt_index`.
//!
//! The hashed `api_path` starts at `/pg/v1/...`: the base URL's own prefix (`/apis/hermes`,
//! `/apis/pg-sandbox`) is never part of it. Getting that wrong gives `AUTHORIZATION_FAILED` on
//! every call, so both the client and the simulator build the path with [`status_path`] and hash
//! it with [`x_verify`]. The salt key is a secret: nothing here logs or formats it.

use sha2::{Digest, Sha256};

/// The status API path for one transaction, exactly as it is hashed and appended to the base URL.
pub fn status_path(merchant_id: &str, mtid: &str) -> String {
    format!("/pg/v1/status/{merchant_id}/{mtid}")
}

/// The `X-VERIFY` header value for a GET on `api_path` (lowercase hex).
pub fn x_verify(api_path: &str, salt_key: &str, salt_index: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(api_path.as_bytes());
    hasher.update(salt_key.as_bytes());
    format!("{}###{}", hex::encode(hasher.finalize()), salt_index)
}

/// Whether `header` is the right `X-VERIFY` for `api_path` (used by the simulator, and usable for
/// webhook-style checks). The comparison does not stop at the first differing byte, so its timing
/// does not tell a caller how much of a guessed checksum was right.
pub fn verify(header: &str, api_path: &str, salt_key: &str, salt_index: u32) -> bool {
    let expected = x_verify(api_path, salt_key, salt_index);
    constant_time_eq(header.trim().as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/phonepe.md, computed with
    /// `printf '%s' '/pg/v1/status/MERCHANTUAT/ORD-1001test-salt-key' | sha256sum`.
    const WORKED: &str = "b4522dc5222bf50566be1e091c14590ed56cc25b2ab9709343e904b12436055c###1";

    #[test]
    fn status_path_has_no_prefix() {
        assert_eq!(
            status_path("MERCHANTUAT", "ORD-1001"),
            "/pg/v1/status/MERCHANTUAT/ORD-1001"
        );
    }

    #[test]
    fn x_verify_matches_the_worked_example() {
        let path = status_path("MERCHANTUAT", "ORD-1001");
        assert_eq!(x_verify(&path, "test-salt-key", 1), WORKED);
    }

    #[test]
    fn verify_accepts_only_the_exact_checksum() {
        let path = status_path("MERCHANTUAT", "ORD-1001");
        assert!(verify(WORKED, &path, "test-salt-key", 1));
        assert!(!verify(WORKED, &path, "test-salt-key", 2), "other salt index");
        assert!(!verify(WORKED, &path, "other-salt", 1), "other salt key");
        assert!(!verify(
            WORKED,
            "/apis/hermes/pg/v1/status/MERCHANTUAT/ORD-1001",
            "test-salt-key",
            1
        ));
        assert!(
            !verify(&WORKED.to_uppercase(), &path, "test-salt-key", 1),
            "hex is lowercase"
        );
        assert!(!verify("", &path, "test-salt-key", 1));
        assert!(!verify(&WORKED[..64], &path, "test-salt-key", 1), "missing ###index");
    }

    #[test]
    fn bytes_that_differ_never_compare_equal() {
        // "ab" vs "ba": both positions differ by the same bits, so an accumulator that XORs the
        // differences (instead of ORing them) would cancel them out and call the two equal.
        assert!(!constant_time_eq(b"ab", b"ba"));
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"), "a prefix is not equal");
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
