//! Operators' passwords: argon2id PHC strings (`console hash-password`), each verified with the
//! parameters it carries (argon2id or argon2i). An unknown name is verified against a dummy
//! hash of the same default parameters, so the answer's timing does not tell names apart.
//! Verification is CPU- and memory-heavy (19 MiB per argon2id default hash): it runs on the
//! blocking pool, [`AT_ONCE`] at a time, so a flood of logins can neither stall the runtime's
//! workers (the reconciler's actors share them) nor exhaust memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Verifications running at once, at most (the machine's cores are shared with the service).
pub const AT_ONCE: usize = 2;
/// How long a login waits for a verification slot before it is told to try again.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);

/// One operator: a name (recorded in the history of what they do) and an argon2id/argon2i PHC
/// string, checked when the settings load.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub name: String,
    pub hash: SecretString,
}

/// Why `text` is not a usable operator hash (completes "the hash ..."), without quoting it.
pub fn check_hash(text: &str) -> Result<(), &'static str> {
    let hash =
        PasswordHash::new(text).map_err(|_| "is not a PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)")?;
    match Algorithm::new(hash.algorithm.as_str()) {
        Ok(Algorithm::Argon2id | Algorithm::Argon2i) => {}
        _ => return Err("is not an argon2id or argon2i PHC string"),
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("has no salt or no hash part");
    }
    Params::try_from(&hash).map_err(|_| "has parameters argon2 does not accept")?;
    Ok(())
}

/// An argon2id PHC string of `password` with the default parameters and a random salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let phc = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(phc.to_string())
}

/// Why a login could not be verified now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The configured operators and the dummy hash unknown names are verified against.
pub struct Passwords {
    users: HashMap<String, SecretString>,
    dummy: SecretString,
    slots: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(users: &[ConsoleUser]) -> anyhow::Result<Passwords> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
        let dummy = hash(&hex::encode(random))?;
        Ok(Passwords {
            users: users.iter().map(|u| (u.name.clone(), u.hash.clone())).collect(),
            dummy: dummy.into(),
            slots: Arc::new(Semaphore::new(AT_ONCE)),
        })
    }

    /// Whether `name` is a configured operator (a session of a removed one is not honoured).
    pub fn knows(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Whether `password` is `name`'s. An unknown name costs one verification too, and is false.
    pub async fn verify(&self, name: &str, password: &str) -> Result<bool, Busy> {
        let known = self.users.get(name);
        let phc = known.unwrap_or(&self.dummy).expose_secret().to_string();
        let permit = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let password = password.to_string();
        let matched = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            let ok = PasswordHash::new(&phc)
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false);
            drop(password);
            ok
        })
        .await
        .map_err(|_| Busy)?;
        Ok(matched && known.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str) -> ConsoleUser {
        ConsoleUser {
            name: name.into(),
            hash: hash(password).expect("hash").into(),
        }
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_with_a_fresh_salt() {
        let a = hash("correct horse").expect("hash");
        let b = hash("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a random salt each time");
        assert_eq!(check_hash(&a), Ok(()));
    }

    #[test]
    fn only_argon2id_and_argon2i_phc_strings_are_accepted() {
        // RFC 9106 style strings made with other tools: argon2i is accepted, argon2d is not.
        let i = "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA";
        assert_eq!(check_hash(i), Ok(()));
        let d = "$argon2d$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA";
        assert_eq!(check_hash(d), Err("is not an argon2id or argon2i PHC string"));
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuu").is_err(), "bcrypt");
        assert!(check_hash("hunter2").is_err(), "a password, not a hash");
        assert!(
            check_hash("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ").is_err(),
            "no hash part"
        );
        assert!(
            check_hash("$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA").is_err(),
            "m too small"
        );
    }

    #[tokio::test]
    async fn the_right_password_verifies_and_unknown_names_never_do() {
        let p = Passwords::new(&[user("asha", "s3cret pass")]).expect("passwords");
        assert_eq!(p.verify("asha", "s3cret pass").await, Ok(true));
        assert_eq!(p.verify("asha", "s3cret pas").await, Ok(false));
        assert_eq!(p.verify("ravi", "s3cret pass").await, Ok(false));
        assert!(p.knows("asha") && !p.knows("ravi"));
    }
}
