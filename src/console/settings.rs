//! `[console]`: the operator's console is off unless `listen` is set.

use std::net::{IpAddr, SocketAddr};

use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
use serde_with::serde_as;

use super::password::{check_hash, ConsoleUser};
use crate::config::values::{list, Listen};

#[serde_as]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    #[serde_as(as = "Listen")]
    pub listen: Option<SocketAddr>,
    /// Who may log in. Printed by `config` with the hashes as `***`.
    #[serde(deserialize_with = "users", serialize_with = "redacted_users")]
    pub users: Vec<ConsoleUser>,
    /// `Secure` on the session cookie; false only for plain HTTP on a developer's machine.
    pub secure_cookies: bool,
    /// Peers whose `X-Forwarded-For` names the client (the shop's TLS proxy), for login throttling.
    #[serde(deserialize_with = "addresses")]
    pub trusted_proxies: Vec<IpAddr>,
}

/// A name an operator may have (also the OS user `review resolve` records): 1 to 64 letters,
/// digits, `_`, `.`, `@` and `-`, so it is safe in a history entry, a log line and a page.
pub fn is_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

/// `name:hash` entries (split at the first colon), whitespace-separated in a string (a variable)
/// or one per element of a list. Errors name the entry, never its hash.
fn users<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ConsoleUser>, D::Error> {
    let must = "must be \"name:hash\" entries separated by spaces, or a list of them";
    let entries: Vec<String> = list(d, false, must)?;
    let mut users: Vec<ConsoleUser> = Vec::new();
    for (n, entry) in (1..).zip(&entries) {
        let Some((name, hash)) = entry.split_once(':') else {
            return Err(D::Error::custom(format!("entry {n} is not name:hash (no colon)")));
        };
        let problem = if !is_operator_name(name) {
            format!("entry {n} must start with a name of 1 to 64 letters, digits, '_', '.', '@' or '-'")
        } else if let Err(problem) = check_hash(hash) {
            format!("entry {n} ({name}): the hash {problem}")
        } else if users.iter().any(|u| u.name == name) {
            format!("entry {n}: {name} is listed twice")
        } else {
            users.push(ConsoleUser {
                name: name.into(),
                hash: hash.into(),
            });
            continue;
        };
        return Err(D::Error::custom(problem));
    }
    Ok(users)
}

/// How `console.users` prints: the names, each hash as `***`.
fn redacted_users<S: Serializer>(users: &[ConsoleUser], s: S) -> Result<S::Ok, S::Error> {
    let printed: Vec<String> = users.iter().map(|u| format!("{}:***", u.name)).collect();
    printed.serialize(s)
}

/// IP addresses, separated by commas or spaces in a variable, or a list.
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    let must = "must list IP addresses like \"127.0.0.1\"";
    list(d, true, must)
}
