//! Operators' passwords: argon2id PHC strings (`console hash-password`), each verified with the
//! parameters it carries (argon2id or argon2i). An unknown name is verified against a dummy
//! hash made with the configured hashes' algorithm and parameters (the first operator's; a
//! warning at start when operators' differ), so the answer's timing does not tell names apart
//! whatever tool made the hashes.
//! Verification is CPU- and memory-heavy (19 MiB per argon2id default hash): it runs on the
//! blocking pool, [`AT_ONCE`] at a time, so a flood of logins can neither stall the runtime's
//! workers (the reconciler's actors share them) nor exhaust memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
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

/// A hash of a random password with the algorithm and parameters of the first configured
/// hash (the default ones without users), so an unknown name costs what a known one does.
fn dummy_like(users: &[ConsoleUser]) -> anyhow::Result<String> {
    let mut random = [0u8; 48];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    let (password, salt) = random.split_at(32);
    let shape = |u: &ConsoleUser| {
        let h = PasswordHash::new(u.hash.expose_secret()).ok()?;
        let algorithm = Algorithm::new(h.algorithm.as_str()).ok()?;
        let version = h.version.map_or(Ok(Version::default()), Version::try_from).ok()?;
        Some((algorithm, version, Params::try_from(&h).ok()?))
    };
    let shapes: Vec<_> = users.iter().filter_map(shape).collect();
    if shapes.windows(2).any(|w| w[0] != w[1]) {
        tracing::warn!(
            "console.users: the operators' hashes use different argon2 parameters, so how long a \
             sign-in takes can tell which names exist; hash every password with `console hash-password`"
        );
    }
    let Some((algorithm, version, params)) = shapes.first().cloned() else {
        return hash(&hex::encode(password));
    };
    let phc = Argon2::new(algorithm, version, params)
        .hash_password_with_salt(hex::encode(password).as_bytes(), salt)
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
        let dummy = dummy_like(users)?;
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

    /// Which of `name`'s passwords a session was opened with: a short digest of the configured
    /// hash (not of the password; the hash's own salt makes it useless for guessing), kept in
    /// the session so that a changed hash (a password reset) ends the sessions opened before.
    pub fn credential(&self, name: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        let phc = self.users.get(name)?;
        Some(hex::encode(&Sha256::digest(phc.expose_secret().as_bytes())[..8]))
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

    #[test]
    fn unknown_names_are_verified_against_a_hash_shaped_like_the_operators() {
        // A hash made by another tool (argon2i, 64 MiB): the dummy costs the same.
        let other = ConsoleUser {
            name: "meera".into(),
            hash: "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA"
                .to_string()
                .into(),
        };
        let p = Passwords::new(&[other]).expect("passwords");
        let dummy = PasswordHash::new(p.dummy.expose_secret()).expect("phc");
        assert_eq!(dummy.algorithm.as_str(), "argon2i");
        assert_eq!(Params::try_from(&dummy).expect("params").m_cost(), 65536);
        assert_ne!(
            dummy.salt.map(|s| s.to_string()),
            Some("c29tZXNhbHQ".into()),
            "a salt of its own"
        );
        let p = Passwords::new(&[user("asha", "pw")]).expect("passwords");
        assert!(p.dummy.expose_secret().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn the_right_password_verifies_and_unknown_names_never_do() {
        let p = Passwords::new(&[user("asha", "s3cret pass")]).expect("passwords");
        assert_eq!(p.verify("asha", "s3cret pass").await, Ok(true));
        assert_eq!(p.verify("asha", "s3cret pas").await, Ok(false));
        assert_eq!(p.verify("ravi", "s3cret pass").await, Ok(false));
        assert!(p.knows("asha") && !p.knows("ravi"));
        let again = Passwords::new(&[user("asha", "s3cret pass")]).expect("passwords");
        assert_eq!(p.credential("asha"), p.credential("asha"));
        assert_ne!(
            p.credential("asha"),
            again.credential("asha"),
            "a new hash, a new credential"
        );
        assert_eq!(p.credential("ravi"), None);
    }
}
