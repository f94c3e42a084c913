//! Who made a change to an order: `history[].by`, a refund's `by`, and the journal's (so a commit
//! a webhook began is recorded as the webhook's even when recovery finishes it); [`Author`] adds
//! the operator's name when a person made it (`history[].operator`). The stored spellings are in
//! docs/operations.md, "MongoDB schema".

use mongodb::bson::Bson;

/// Who made a change; [`By::as_str`] is the one place it is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The scanner → reconciler → committer path, the refund poller, `check --apply` and
    /// `selftest`.
    Reconciler,
    /// PhonePe's callback (`src/webhook.rs`).
    Webhook,
    /// A person, through `review resolve` (`src/review.rs`), and the refunds they started.
    Operator,
    /// PhonePe's settlement report: a payment it shows for an order that left draft unpaid, a
    /// refund it shows paid out.
    Settlement,
}

impl By {
    pub const ALL: [By; 4] = [By::Reconciler, By::Webhook, By::Operator, By::Settlement];

    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            By::Reconciler => "reconciler",
            By::Webhook => "webhook",
            By::Operator => "operator",
            By::Settlement => "settlement",
        }
    }

    /// The value spelled `s`; anything else reads as [`By::Reconciler`] (journals written before
    /// `by` existed were all the reconciler's).
    pub fn parse(s: Option<&str>) -> By {
        By::ALL
            .into_iter()
            .find(|b| Some(b.as_str()) == s)
            .unwrap_or(By::Reconciler)
    }
}

impl From<By> for Bson {
    fn from(by: By) -> Bson {
        Bson::String(by.as_str().to_string())
    }
}

/// Who makes a change, as a history entry records it: [`By`], and for a person the operator's
/// name (`operator`: the OS user of `review resolve`, the console's logged-in operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Author<'a> {
    pub by: By,
    pub operator: Option<&'a str>,
}

impl Author<'_> {
    /// A service's change (`by` alone, no operator name).
    pub const fn service(by: By) -> Author<'static> {
        Author { by, operator: None }
    }
}

impl<'a> Author<'a> {
    /// A person's change, with their name when known.
    pub const fn operator(name: Option<&'a str>) -> Author<'a> {
        Author {
            by: By::Operator,
            operator: name,
        }
    }
}

impl From<By> for Author<'static> {
    fn from(by: By) -> Author<'static> {
        Author::service(by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_has_one_spelling_that_reads_back() {
        let words = By::ALL.map(By::as_str);
        assert_eq!(words, ["reconciler", "webhook", "operator", "settlement"]);
        for by in By::ALL {
            assert_eq!(By::parse(Some(by.as_str())), by);
        }
        assert_eq!(By::parse(None), By::Reconciler);
        assert_eq!(By::parse(Some("Webhook")), By::Reconciler);
    }
}
