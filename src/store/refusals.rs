//! Writes the database refuses for one order's document (a field of the wrong type, a validator),
//! so a bad document never stalls the pipeline or is retried forever (docs/operations.md,
//! "Troubleshooting"; the invariant in docs/architecture.md). Each refusal is counted on the order,
//! or in [`HOLDS`] when even that is refused; the `REFUSAL_CAP`-th parks it `unwritable_order` by a
//! minimal write ([`PARK_RUNGS`], each dropping more); when every rung is refused the order is
//! excluded until a person fixes the document.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};

use super::orders::plus;
use super::Store;
use super::{StoreError, StoreResult};
use crate::domain::{PaymentStatus, ReviewReason, Status};
use crate::schema::own;

/// The reconciler's collection of holds: `{_id: <order _id>, refused, lastError, at,
/// nextCheckAt, excluded}`.
pub const HOLDS: &str = "reconciler_holds";

/// The refusal that parks the order (the first two are retried `REFUSAL_RETRY` later, so at the
/// default settings the third comes well within two minutes of the first).
pub const REFUSAL_CAP: i64 = 3;

/// How long a refused order waits before it is tried again.
pub const REFUSAL_RETRY: Duration = Duration::from_secs(20);

/// Server error codes that refuse one document's write for its shape or content: retrying the
/// same write on the same document fails the same way.
const REFUSAL_CODES: [i32; 14] = [
    2,     // BadValue: `$push` to a field that is not an array
    9,     // FailedToParse
    14,    // TypeMismatch: `$inc` of a field that is not a number
    28,    // PathNotViable: a field inside `null` or a string (`reconciliation: null`)
    52,    // DollarPrefixedFieldName
    55,    // InvalidDBRef
    56,    // EmptyFieldName
    57,    // DottedFieldName
    66,    // ImmutableField
    121,   // DocumentValidationFailure: the collection's validator
    10334, // BSONObjectTooLarge
    11000, // DuplicateKey: a unique index of the shop's
    17419, // the document would exceed the maximum size
    17420, // ... as an update result
];

/// Whether `code` is a refusal of the document (see [`REFUSAL_CODES`]).
pub fn is_refusal_code(code: i32) -> bool {
    REFUSAL_CODES.contains(&code)
}

impl StoreError {
    /// Whether the database refused this write for the document's sake (not a transient error).
    pub fn is_refusal(&self) -> bool {
        !self.is_transient_txn() && self.code().is_some_and(is_refusal_code)
    }

    /// What the database said, without the values it quotes (`{...}` parts are dropped: they
    /// can hold a document's content), at most 300 characters.
    pub fn refusal_excerpt(&self, op: &str) -> String {
        let message = match self {
            StoreError::Mongo { source, .. } => match source.kind.as_ref() {
                mongodb::error::ErrorKind::Command(c) => c.message.clone(),
                mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.message.clone(),
                _ => source.to_string(),
            },
            other => other.to_string(),
        };
        excerpt(op, self.code().unwrap_or(0), &message)
    }
}

/// `op: MongoDB error <code>: <message without quoted values>`, at most 300 characters.
pub fn excerpt(op: &str, code: i32, message: &str) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    for c in message.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{…}");
                }
                depth += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let text = format!("{op}: MongoDB error {code}: {}", out.trim());
    text.chars().take(300).collect()
}

/// What the reconciler knows about the order's payment when its write was refused: written by
/// the park when it can be (`review resolve` needs a paid order to say so).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    pub payment: Option<PaymentStatus>,
    /// PhonePe's verified paid amount (paise): `reconciliation.paidAmount`.
    pub paid_amount: Option<i64>,
}

/// What became of an order after one of its writes was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Counted (`n` so far): tried again `REFUSAL_RETRY` later.
    Counted(i64),
    /// Parked `needs_review` (`unwritable_order`).
    Parked,
    /// Every park was refused too: excluded from claims (a record in [`HOLDS`]).
    Excluded,
    /// The order is no longer in the status the write was guarded by: someone else moved it.
    Gone,
}

/// Orders the scanner leaves alone for now: excluded, or waiting out a refusal's retry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holds {
    pub ids: Vec<Bson>,
    pub excluded: u64,
    /// The earliest moment a held order may be tried again.
    pub next: Option<DateTime>,
}

/// The park's rungs, fullest first: with the payment facts and `updatedAt`; without them; with
/// a `reconciliation` that is not a document replaced whole (only when it is not one).
const PARK_RUNGS: usize = 3;

impl Store {
    fn holds(&self) -> mongodb::Collection<Document> {
        self.db.collection(HOLDS)
    }

    /// Record that the database refused `error` (an excerpt from [`StoreError::refusal_excerpt`])
    /// for the order `id` whose status field holds `status`; release `owner`'s lease on it. At
    /// the cap, park it; if that is refused too, exclude it.
    pub async fn refused(
        &self,
        id: &Bson,
        status: &Bson,
        owner: Option<&str>,
        error: &str,
        facts: Facts,
    ) -> StoreResult<Refused> {
        let now = DateTime::now();
        let next = plus(now, REFUSAL_RETRY);
        let guard = doc! { "_id": id, &self.schema.orders.status: status };
        let count = self
            .orders
            .find_one_and_update(
                guard.clone(),
                doc! {
                    "$inc": { own::REFUSED_WRITES: 1 },
                    "$set": { own::LAST_ERROR: error, own::NEXT_CHECK_AT: next, own::LAST_CHECKED_AT: now },
                },
            )
            .with_options(
                FindOneAndUpdateOptions::builder()
                    .return_document(ReturnDocument::After)
                    .projection(doc! { own::REFUSED_WRITES: 1 })
                    .build(),
            )
            .await
            .map_err(StoreError::mongo("count a refused write"));
        let n = match count {
            Ok(None) => return Ok(Refused::Gone),
            Ok(Some(d)) => {
                if let Some(owner) = owner {
                    self.release_if_ours(id, owner).await?;
                }
                d.get_document(own::RECONCILIATION_KEY)
                    .ok()
                    .and_then(|r| r.get(own::key(own::REFUSED_WRITES)))
                    .and_then(as_i64)
                    .unwrap_or(1)
            }
            // The order cannot even hold its count: keep it in the reconciler's collection.
            Err(e) if e.is_refusal() => self.hold(id, error, Some(next)).await?,
            Err(e) => return Err(e),
        };
        if n < REFUSAL_CAP {
            tracing::warn!(order_id = %id, refused = n, error, "the database refused a write to this order; trying again later");
            return Ok(Refused::Counted(n));
        }
        self.park_unwritable(id, status, error, facts).await
    }

    /// `$unset` our lease (a no-op when someone else holds it).
    async fn release_if_ours(&self, id: &Bson, owner: &str) -> StoreResult<()> {
        self.orders
            .update_one(
                doc! { "_id": id, own::LEASE_OWNER: owner },
                doc! { "$unset": { own::LEASE_OWNER: "", own::LEASE_UNTIL: "" } },
            )
            .await
            .map_err(StoreError::mongo("release a refused order"))?;
        Ok(())
    }

    /// Count a refusal in [`HOLDS`], due again at `next`, or (`None`) mark the order excluded;
    /// the count so far.
    async fn hold(&self, id: &Bson, error: &str, next: Option<DateTime>) -> StoreResult<i64> {
        let mut set = doc! { "lastError": error, "at": DateTime::now(), "collection": &self.schema.orders.collection };
        let update = match next {
            Some(next) => {
                set.insert("nextCheckAt", next);
                doc! { "$set": set, "$inc": { "refused": 1 } }
            }
            None => {
                set.insert("excluded", true);
                doc! { "$set": set }
            }
        };
        let d = self
            .holds()
            .find_one_and_update(doc! { "_id": id }, update)
            .with_options(
                FindOneAndUpdateOptions::builder()
                    .upsert(true)
                    .return_document(ReturnDocument::After)
                    .build(),
            )
            .await
            .map_err(StoreError::mongo("hold a refused order"))?;
        Ok(d.as_ref().and_then(|d| d.get("refused")).and_then(as_i64).unwrap_or(1))
    }

    /// The update of park rung `rung` ([`PARK_RUNGS`]) and the filter it adds to the guard.
    fn park_rung(&self, rung: usize, error: &str, facts: Facts, now: DateTime) -> (Document, Document) {
        let o = &self.schema.orders;
        let reason = ReviewReason::UnwritableOrder.as_str();
        let status = self.word(Status::NeedsReview);
        let lease = doc! { own::LEASE_OWNER: "", own::LEASE_UNTIL: "" };
        match rung {
            0 => {
                let mut set = doc! {
                    &o.status: status, &o.updated_at: now,
                    own::REASON: reason, own::LAST_ERROR: error, own::LAST_CHECKED_AT: now,
                };
                if let Some(p) = facts.payment {
                    set.insert(&o.payment_status, o.payment_status_values.word(p));
                }
                if let Some(paid) = facts.paid_amount {
                    set.insert(own::PAID_AMOUNT, paid);
                }
                (doc! {}, doc! { "$set": set, "$unset": lease })
            }
            1 => (
                doc! {},
                doc! { "$set": { &o.status: status, own::REASON: reason, own::LAST_ERROR: error }, "$unset": lease },
            ),
            _ => (
                doc! { own::RECONCILIATION_KEY: { "$exists": true, "$not": { "$type": "object" } } },
                doc! { "$set": { &o.status: status, own::RECONCILIATION_KEY: {
                    own::key(own::REASON): reason, own::key(own::LAST_ERROR): error, own::key(own::LAST_CHECKED_AT): now,
                } } },
            ),
        }
    }

    /// Park the order `unwritable_order`, each rung touching less; exclude it if all are refused.
    async fn park_unwritable(&self, id: &Bson, status: &Bson, error: &str, facts: Facts) -> StoreResult<Refused> {
        let now = DateTime::now();
        let guard = doc! { "_id": id, &self.schema.orders.status: status };
        let mut refused = None;
        for rung in 0..PARK_RUNGS {
            let (extra, update) = self.park_rung(rung, error, facts, now);
            let mut filter = guard.clone();
            filter.extend(extra);
            match self.orders.update_one(filter, update).await {
                Ok(r) if r.matched_count == 1 => {
                    metrics::counter!(crate::telemetry::names::ORDERS_SETTLED, crate::telemetry::labels::OUTCOME => crate::telemetry::labels::outcome::NEEDS_REVIEW).increment(1);
                    tracing::error!(order_id = %id, error, "the database keeps refusing this order's writes; parked as needs_review (unwritable_order)");
                    let _ = self.holds().delete_one(doc! { "_id": id }).await;
                    return Ok(Refused::Parked);
                }
                Ok(_) if rung == 0 => return Ok(Refused::Gone),
                Ok(_) => {}
                Err(e) => {
                    let e = StoreError::mongo("park an unwritable order")(e);
                    if !e.is_refusal() {
                        return Err(e);
                    }
                    refused = Some(e);
                }
            }
        }
        let why = refused.map_or_else(|| error.to_string(), |e| e.refusal_excerpt("park"));
        self.exclude(id, &why).await?;
        Ok(Refused::Excluded)
    }

    /// Keep the scanner and recovery off the order until a person deletes the record.
    pub(crate) async fn exclude(&self, id: &Bson, error: &str) -> StoreResult<()> {
        self.hold(id, error, None).await?;
        tracing::error!(order_id = %id, error, collection = HOLDS, "the database refuses even the park of this order; excluded from reconciliation until its document is fixed and its record in reconciler_holds deleted");
        Ok(())
    }

    /// The orders held now (excluded, or waiting out a refusal), with the earliest retry.
    pub async fn load_holds(&self, now: DateTime) -> StoreResult<Holds> {
        use futures_util::TryStreamExt;
        let docs: Vec<Document> = self
            .holds()
            .find(doc! { "collection": &self.schema.orders.collection, "$or": [{ "excluded": true }, { "nextCheckAt": { "$gt": now } }] })
            .projection(doc! { "_id": 1, "excluded": 1, "nextCheckAt": 1 })
            .limit(10_000)
            .await
            .map_err(StoreError::mongo("read holds"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read holds"))?;
        let mut holds = Holds::default();
        for d in docs {
            if d.get_bool("excluded").unwrap_or(false) {
                holds.excluded += 1;
            } else if let Ok(n) = d.get_datetime("nextCheckAt") {
                holds.next = Some(holds.next.map_or(*n, |m: DateTime| m.min(*n)));
            }
            holds.ids.extend(d.get("_id").cloned());
        }
        Ok(holds)
    }
}

fn as_i64(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(d) => Some(*d as i64),
        _ => None,
    }
}

/// `filter` without the orders in `avoid` (held, or failed to claim this tick).
pub fn avoiding(mut filter: Document, avoid: &[Bson]) -> Document {
    if !avoid.is_empty() {
        filter.insert("_id", doc! { "$nin": avoid });
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_drops_the_values_the_database_quotes() {
        let e = excerpt(
            "claim",
            28,
            "Plan executor error during update :: caused by :: Cannot create field 'leaseOwner' in element {reconciliation: \"Asha Rao {x}\"}",
        );
        assert_eq!(
            e,
            "claim: MongoDB error 28: Plan executor error during update :: caused by :: Cannot create field 'leaseOwner' in element {…}"
        );
        assert!(excerpt("x", 2, &"a".repeat(1000)).chars().count() <= 300);
    }

    #[test]
    fn refusals_are_the_document_s_not_the_server_s() {
        for code in [2, 14, 28, 121, 11000] {
            assert!(is_refusal_code(code), "{code}");
        }
        for code in [6, 91, 112, 189, 262, 50, 11600] {
            assert!(!is_refusal_code(code), "{code} is transient");
        }
    }

    #[test]
    fn avoiding_adds_an_id_exclusion_only_when_there_is_one() {
        assert_eq!(avoiding(doc! { "a": 1 }, &[]), doc! { "a": 1 });
        assert_eq!(
            avoiding(doc! { "a": 1 }, &[Bson::Int32(7)]),
            doc! { "a": 1, "_id": { "$nin": [7] } }
        );
    }
}
