//! PhonePe's signatures (docs/phonepe.md, "The status call" and "Callbacks and refunds"): the v1
//! `X-VERIFY` (`sha256_hex(api_path + salt_key) + "###" + salt_index`, the path from `/pg/v1/...`,
//! never the base URL's prefix: [`status_path`] builds it once, [`x_verify`] hashes it once, held to
//! PhonePe's worked example below), and the webhook signatures of both versions, compared in
//! constant time. The salt key is a secret: nothing here logs or formats it.

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

/// Whether `header` is the right `X-VERIFY` for `api_path` (the v1 webhook's check). The
/// comparison does not stop at the first differing byte, so its timing does not tell a caller how
/// much of a guessed checksum was right.
pub fn verify(header: &str, api_path: &str, salt_key: &str, salt_index: u32) -> bool {
    let expected = x_verify(api_path, salt_key, salt_index);
    constant_time_eq(header.trim().as_bytes(), expected.as_bytes())
}

/// The v1 webhook's `X-VERIFY` for its base64 `response` field.
pub fn webhook_v1_x_verify(base64_response: &str, salt_key: &str, salt_index: u32) -> String {
    x_verify(base64_response, salt_key, salt_index)
}

/// The v2 webhook's `Authorization` header: lowercase `sha256_hex(username:password)`.
pub fn webhook_v2_authorization(username: &str, password: &str) -> String {
    hex::encode(Sha256::digest(format!("{username}:{password}").as_bytes()))
}

/// Whether a v2 webhook's `Authorization` header is the one for these dashboard credentials.
pub fn verify_webhook_v2(header: &str, username: &str, password: &str) -> bool {
    constant_time_eq(
        header.trim().as_bytes(),
        webhook_v2_authorization(username, password).as_bytes(),
    )
}

/// Equal, in time that does not depend on where they differ (signature checks).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

    /// `printf '%s' 'user:pass' | sha256sum`.
    #[test]
    fn v2_webhook_authorization_is_sha256_of_username_colon_password() {
        let expected = "ef4c914c591698b268db3c64163eafda7209a630f236ebf0eebf045460df723a";
        assert_eq!(webhook_v2_authorization("user", "pass"), expected);
        assert!(verify_webhook_v2(expected, "user", "pass"));
        assert!(!verify_webhook_v2(expected, "user", "other"));
        assert!(!verify_webhook_v2(&expected.to_uppercase(), "user", "pass"));
    }

    #[test]
    fn v1_webhook_x_verify_hashes_the_base64_body() {
        // printf '%s' 'eyJhIjoxfQ==test-salt-key' | sha256sum
        let xv = webhook_v1_x_verify("eyJhIjoxfQ==", "test-salt-key", 1);
        assert_eq!(
            xv,
            "511f3b160ee2ab93b7183682cac25713e027033d2b9db3a527b9fa7b3ee1ace6###1"
        );
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
