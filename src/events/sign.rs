//! Standard Webhooks signing (standardwebhooks.com, "Signature scheme"): the secret is written
//! `whsec_<base64 key>`; an attempt is signed `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`
//! where the timestamp is the attempt's, in Unix seconds. The shop verifies with the
//! `standardwebhooks` package of npm or PyPI, which recomputes exactly this.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix that marks a Standard Webhooks symmetric secret.
pub const PREFIX: &str = "whsec_";

/// The key of a secret written `whsec_<base64>`: 24 to 64 bytes, as the specification asks.
/// Errors describe the secret, never quote it.
pub fn key(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.trim().strip_prefix(PREFIX) else {
        return Err(format!("must start with {PREFIX} (a Standard Webhooks secret)"));
    };
    // The libraries accept the base64 with or without its padding.
    let key = STANDARD
        .decode(encoded.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')))
        .map_err(|_| format!("must be {PREFIX} followed by base64"))?;
    match key.len() {
        24..=64 => Ok(key),
        n => Err(format!(
            "must hold 24 to 64 bytes of key after {PREFIX} (its base64 decodes to {n}); make one with \
             `echo \"{PREFIX}$(openssl rand -base64 32)\"`"
        )),
    }
}

/// The `webhook-signature` header of one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts a key of any length; `key` checked its size already.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own example: this secret, id, timestamp and body sign to this value
    /// (the libraries' shared test vector).
    #[test]
    fn signs_the_libraries_test_vector() {
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a valid secret");
        let body = r#"{"test": 2432232314}"#;
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let k = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = signature(&k, "evt_1", 100, "{}");
        assert_ne!(base, signature(&k, "evt_2", 100, "{}"));
        assert_ne!(base, signature(&k, "evt_1", 101, "{}"));
        assert_ne!(base, signature(&k, "evt_1", 100, "{ }"));
    }

    #[test]
    fn a_bad_secret_is_refused_without_being_quoted() {
        let secret_like = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let e = key(secret_like).expect_err("no prefix");
        assert!(e.contains("whsec_") && !e.contains(secret_like), "{e}");
        let e = key("whsec_not*base64!").expect_err("not base64");
        assert!(e.contains("base64") && !e.contains("not*base64"), "{e}");
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        assert!(key(&short).expect_err("16 bytes").contains("decodes to 16"));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert!(key(&long).is_err(), "65 bytes");
        assert_eq!(key(&format!("whsec_{}", STANDARD.encode([7u8; 24]))).unwrap().len(), 24);
        let unpadded = format!("whsec_{}", STANDARD.encode([7u8; 32]).trim_end_matches('='));
        assert_eq!(key(&unpadded).unwrap().len(), 32, "padding is optional");
    }
}
