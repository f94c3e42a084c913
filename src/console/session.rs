//! Operators' sessions, server-side in MongoDB (`reconciler_console_sessions`), so every instance
//! honours them and logging out ends them everywhere.
//!
//! The cookie holds a random 256-bit id from the OS; the database holds only its SHA-256 (`_id`),
//! so a dump of the collection yields no usable cookie. Each session has its own CSRF token, the
//! one every form carries, compared in constant time. A session ends after [`IDLE`] without use:
//! a TTL index on `seenAt` removes it, and a read checks the time too (the TTL monitor runs only
//! once a minute). The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` (with the
//! `__Host-` prefix browsers enforce) unless `console.secure_cookies = false`.

use std::time::Duration;

use base64::Engine as _;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{bounded, StoreError, StoreResult};

/// The reconciler's own collection of sessions.
pub const COLLECTION: &str = "reconciler_console_sessions";
/// A session unused this long has ended.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session's `seenAt` is moved on at most this often (one write a minute, not one a page).
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The longest a session read or write may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The cookie's name over HTTPS (`__Host-`: the browser keeps it to this host, `Secure`, `Path=/`).
pub const SECURE_COOKIE: &str = "__Host-reconciler_console";
/// The cookie's name with `console.secure_cookies = false` (plain HTTP on a developer's machine).
pub const PLAIN_COOKIE: &str = "reconciler_console";

/// A logged-in operator's session, as read.
#[derive(Clone)]
pub struct Session {
    pub user: String,
    csrf: String,
    key: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `given` is this session's CSRF token (constant time; a missing one is not).
    pub fn csrf_matches(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

/// 32 bytes from the OS random number generator, URL-safe base64 (43 characters).
fn random_token() -> StoreResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Unsupported(format!("the OS random number generator failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database keeps of a session id.
fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether `text` can be a session id at all (43 URL-safe base64 characters).
fn well_formed(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The sessions collection and the cookie's attributes.
#[derive(Clone)]
pub struct Sessions {
    coll: Collection<Document>,
    secure: bool,
}

impl Sessions {
    pub fn new(db: &Database, secure: bool) -> Sessions {
        Sessions {
            coll: db.collection(COLLECTION),
            secure,
        }
    }

    /// The TTL index that removes idle sessions (on the reconciler's own collection); idempotent.
    pub async fn ensure_index(&self) -> StoreResult<()> {
        let ttl = IndexOptions::builder()
            .name("seenAt_ttl".to_string())
            .expire_after(IDLE)
            .build();
        let model = IndexModel::builder().keys(doc! { "seenAt": 1 }).options(ttl).build();
        bounded(
            "create the console sessions' TTL index",
            TIMEOUT,
            self.coll.create_index(model),
        )
        .await?;
        Ok(())
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE
        } else {
            PLAIN_COOKIE
        }
    }

    /// A new session for `user`: the cookie's value (the session id) and the session.
    pub async fn create(&self, user: &str) -> StoreResult<(String, Session)> {
        let id = random_token()?;
        let session = Session {
            user: user.to_string(),
            csrf: random_token()?,
            key: key(&id),
        };
        let now = DateTime::now();
        let d = doc! { "_id": &session.key, "user": user, "csrf": &session.csrf, "createdAt": now, "seenAt": now };
        bounded("create a console session", TIMEOUT, self.coll.insert_one(d)).await?;
        Ok((id, session))
    }

    /// The live session whose id is `id`, if any; its `seenAt` moves on when it is a minute old.
    pub async fn find(&self, id: &str) -> StoreResult<Option<Session>> {
        if !well_formed(id) {
            return Ok(None);
        }
        let key = key(id);
        let Some(d) = bounded(
            "read a console session",
            TIMEOUT,
            self.coll.find_one(doc! { "_id": &key }),
        )
        .await?
        else {
            return Ok(None);
        };
        let now = DateTime::now().timestamp_millis();
        let seen = d.get_datetime("seenAt").map_or(0, |t| t.timestamp_millis());
        let age = Duration::from_millis(u64::try_from(now.saturating_sub(seen)).unwrap_or(u64::MAX));
        let (Ok(user), Ok(csrf)) = (d.get_str("user"), d.get_str("csrf")) else {
            return Ok(None);
        };
        if age >= IDLE {
            self.end_key(&key).await?;
            return Ok(None);
        }
        if age >= TOUCH_EVERY {
            let touch = self
                .coll
                .update_one(doc! { "_id": &key }, doc! { "$set": { "seenAt": DateTime::now() } });
            bounded("touch a console session", TIMEOUT, touch).await?;
        }
        Ok(Some(Session {
            user: user.to_string(),
            csrf: csrf.to_string(),
            key,
        }))
    }

    /// End `session` (logout): its document is deleted.
    pub async fn end(&self, session: &Session) -> StoreResult<()> {
        self.end_key(&session.key).await
    }

    async fn end_key(&self, key: &str) -> StoreResult<()> {
        bounded(
            "end a console session",
            TIMEOUT,
            self.coll.delete_one(doc! { "_id": key }),
        )
        .await?;
        Ok(())
    }

    /// The `Set-Cookie` value that gives the browser session id `id`.
    pub fn set_cookie(&self, id: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{}={id}; Path=/; HttpOnly; SameSite=Strict{secure}", self.cookie_name())
    }

    /// The `Set-Cookie` value that makes the browser forget the session.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        )
    }

    /// The session id the request's `Cookie` headers carry, if any.
    pub fn cookie<'a>(&self, headers: &'a axum::http::HeaderMap) -> Option<&'a str> {
        let name = self.cookie_name();
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_256_random_bits_and_only_their_hash_is_kept() {
        let a = random_token().expect("token");
        let b = random_token().expect("token");
        assert!(well_formed(&a) && well_formed(&b), "{a}");
        assert_ne!(a, b);
        assert_eq!(key(&a).len(), 64);
        assert_ne!(key(&a), a);
        assert!(!well_formed("short") && !well_formed(&format!("{}=", &a[..42])));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Session {
            user: "asha".into(),
            csrf: "tok-123".into(),
            key: String::new(),
        };
        assert!(s.csrf_matches(Some("tok-123")));
        assert!(!s.csrf_matches(Some("tok-12")) && !s.csrf_matches(Some("tok-1234")));
        assert!(!s.csrf_matches(Some("")) && !s.csrf_matches(None));
        assert!(!format!("{s:?}").contains("tok-123"), "never in a log");
    }

    #[tokio::test]
    async fn the_cookie_is_http_only_strict_and_secure_unless_configured_off() {
        let client = mongodb::Client::with_options(mongodb::options::ClientOptions::default()).expect("client");
        let db = client.database("x");
        let secure = Sessions::new(&db, true);
        assert_eq!(
            secure.set_cookie("ID"),
            "__Host-reconciler_console=ID; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        let plain = Sessions::new(&db, false);
        assert_eq!(
            plain.set_cookie("ID"),
            "reconciler_console=ID; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(plain.clear_cookie().contains("Max-Age=0"));
        let mut h = axum::http::HeaderMap::new();
        h.append(
            axum::http::header::COOKIE,
            "a=1; reconciler_console=XYZ; b=2".parse().expect("value"),
        );
        assert_eq!(plain.cookie(&h), Some("XYZ"));
        assert_eq!(secure.cookie(&h), None, "the other name is not ours");
    }
}
