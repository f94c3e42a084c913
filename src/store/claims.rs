//! Claims: an order is taken for one worker with a lease (`reconciliation.leaseOwner` /
//! `leaseUntil`), by one `update` command of single-document statements guarded by "no live
//! lease, due". Each statement's result is read: a document that refuses its claim is counted,
//! held and parked (`store/refusals.rs`); a claimed document that turns out not to be work is
//! released, or parked when its status cannot be read.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::orders::{per_document_update, plus, unset_lease};
use super::{Eligibility, Store};
use super::{StoreError, StoreResult};
use crate::domain::{CancelReason, Order, OrderError, PaymentStatus, Status};
use crate::schema::own;
use crate::schema::{get_path, Schema};

/// A claimed order: parsed, or a document too broken to reconcile (parked for a person).
#[derive(Debug, Clone)]
pub enum Claimed {
    Valid(Order),
    Invalid {
        id: Bson,
        status: Status,
        merchant_transaction_id: Option<String>,
        error: OrderError,
    },
}

impl Claimed {
    /// The order's `_id`.
    pub fn id(&self) -> &Bson {
        match self {
            Claimed::Valid(o) => &o.id,
            Claimed::Invalid { id, .. } => id,
        }
    }

    /// The id to log (never customer data).
    pub fn log_id(&self) -> String {
        match self {
            Claimed::Valid(o) => o.merchant_transaction_id.to_string(),
            Claimed::Invalid {
                merchant_transaction_id: Some(m),
                ..
            } => m.clone(),
            Claimed::Invalid { id, .. } => format!("_id:{id}"),
        }
    }
}

/// The guard and update that claim one order for `owner` until `until`: no live lease, due.
fn claim_statement(id: &Bson, owner: &str, now: DateTime, until: DateTime) -> (Document, Document) {
    (
        doc! {
            "_id": id,
            own::NEXT_CHECK_AT: { "$not": { "$gt": now } },
            own::LEASE_UNTIL: { "$not": { "$gt": now } },
        },
        doc! { "$set": { own::LEASE_OWNER: owner, own::LEASE_UNTIL: until } },
    )
}

impl Store {
    /// Claim up to `max` eligible orders for `owner`, from [`Store::candidates`]: drafts oldest
    /// first, with every fourth place kept for a due late-payment watch.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime,
        lease: Duration,
        e: &Eligibility,
        max: usize,
    ) -> StoreResult<Vec<Claimed>> {
        let ids = self.candidates(now, e, max).await?;
        self.claim_ids(&ids, owner, now, lease).await
    }

    /// Claim the orders among `ids` that are still free and due, for `owner`. Each claim is an
    /// update guarded by "no live lease, check due" — atomic per document, so another instance
    /// wins some, never the same ones. The guard names only `_id` and the lease fields so it is
    /// an `_id` lookup on every server; whether a claimed order is still a draft (or a watched
    /// cancellation) is checked on what was claimed, and one that was settled meanwhile is
    /// released at once, without a PhonePe call. A draft that is not `pending` is parked.
    pub async fn claim_ids(
        &self,
        ids: &[Bson],
        owner: &str,
        now: DateTime,
        lease: Duration,
    ) -> StoreResult<Vec<Claimed>> {
        use futures_util::TryStreamExt;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let until = plus(now, lease);
        let claims = ids.iter().map(|id| claim_statement(id, owner, now, until));
        let batch = self.db.run_command(per_document_update(self.orders.name(), claims));
        match super::bounded("claim orders", super::CLAIM_TIMEOUT, batch).await {
            // Each statement's own result: a document that refused its claim is counted, and
            // held or parked (`store/refusals.rs`), never simply fetched again.
            Ok(reply) => {
                for (i, code, message) in write_errors(&reply) {
                    if let Some(id) = ids.get(i).filter(|_| super::refusals::is_refusal_code(code)) {
                        let error = super::refusals::excerpt("claim", code, &message);
                        self.refused_claim(id, &error).await?;
                    }
                }
            }
            Err(e) => {
                // Something in the batch is stuck (e.g. a document locked by a dead client's
                // transaction): claim one by one, skipping what does not answer.
                tracing::warn!(error = %e, "batch claim failed; claiming one order at a time");
                self.claim_each(ids, owner, now, until).await?;
            }
        }
        // The lease's exact expiry tells our claims apart from anyone else's.
        let mine: Vec<Document> = self
            .orders
            .find(doc! { "_id": { "$in": ids }, own::LEASE_OWNER: owner, own::LEASE_UNTIL: until })
            .sort(doc! { &self.schema.orders.created_at: 1 })
            .await
            .map_err(StoreError::mongo("read claimed orders"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read claimed orders"))?;
        let mut out = Vec::with_capacity(mine.len());
        for d in mine {
            match claimable(&d, &self.schema) {
                Claimable::Yes => out.push(parse_claimed(&d, &self.schema)),
                Claimable::Unreadable(error) => out.push(Claimed::Invalid {
                    id: d.get("_id").cloned().unwrap_or(Bson::Null),
                    // The claim's candidate filters matched the draft word in it.
                    status: Status::Draft,
                    merchant_transaction_id: get_path(&d, &self.schema.orders.id)
                        .and_then(Bson::as_str)
                        .map(str::to_string),
                    error,
                }),
                Claimable::No => self.release_claim(&d, owner, until).await?,
            }
        }
        Ok(out)
    }

    /// A claim the database refused (`error`, an excerpt): counted against the order, which
    /// waits out `REFUSAL_RETRY` or is parked or excluded (`store/refusals.rs`).
    async fn refused_claim(&self, id: &Bson, error: &str) -> StoreResult<()> {
        let status_path = &self.schema.orders.status;
        let d = self
            .orders
            .find_one(doc! { "_id": id })
            .projection(doc! { status_path: 1 })
            .await
            .map_err(StoreError::mongo("read a refused order"))?;
        let Some(status) = d.as_ref().and_then(|d| get_path(d, status_path)).cloned() else {
            return Ok(()); // gone, or no status: no candidate filter matches it any more
        };
        let facts = super::refusals::Facts::default();
        self.refused(id, &status, None, error, facts).await?;
        Ok(())
    }

    /// The slow path of a claim: one guarded update per candidate, each bounded, so one stuck
    /// order never stalls the others.
    async fn claim_each(&self, ids: &[Bson], owner: &str, now: DateTime, until: DateTime) -> StoreResult<()> {
        for id in ids {
            let (guard, set) = claim_statement(id, owner, now, until);
            match super::bounded("claim order", super::CLAIM_TIMEOUT, self.orders.update_one(guard, set)).await {
                Ok(_) => {}
                Err(e) if e.is_refusal() => self.refused_claim(id, &e.refusal_excerpt("claim")).await?,
                Err(e) => tracing::warn!(error = %e, "could not claim an eligible order; skipping it for now"),
            }
        }
        Ok(())
    }

    /// Undo one of our claims (guarded by the exact lease, so nothing else is touched).
    /// A document whose status matched a candidate filter without reading as a status (an array
    /// holding a watched cancellation's word) gets a `nextCheckAt` `UNREADABLE_RETRY` away, so it
    /// is not claimed again every tick.
    async fn release_claim(&self, d: &Document, owner: &str, until: DateTime) -> StoreResult<()> {
        let mut update = doc! { "$unset": unset_lease() };
        if crate::schema::read_status(d, &self.schema).is_none() {
            let later = plus(DateTime::now(), UNREADABLE_RETRY);
            update.insert("$set", doc! { own::NEXT_CHECK_AT: later });
        }
        self.orders
            .update_one(
                doc! { "_id": d.get("_id"), own::LEASE_OWNER: owner, own::LEASE_UNTIL: until },
                update,
            )
            .await
            .map_err(StoreError::mongo("release claim"))?;
        Ok(())
    }
}

/// How long a claimed document whose status cannot be read (and is not a draft's) waits.
const UNREADABLE_RETRY: Duration = Duration::from_secs(3600);

/// Whether a claimed document is still work for the reconciler.
#[derive(Debug, PartialEq)]
enum Claimable {
    /// A draft (one that is not pending is parked by `parse_claimed`), or a cancellation watched
    /// for a late payment.
    Yes,
    /// Its status field matched the draft word without being one: an array holding it. Parked.
    Unreadable(OrderError),
    /// Settled meanwhile, or not watched: released.
    No,
}

fn claimable(d: &Document, schema: &Schema) -> Claimable {
    let pending = crate::schema::read_payment_status(d, schema) == Some(PaymentStatus::Pending);
    let watched = d
        .get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_str(own::key(own::REASON)))
        .is_ok_and(|r| CancelReason::is_watched(Some(r)));
    let o = &schema.orders;
    match crate::schema::read_status(d, schema) {
        Some(Status::Draft) => Claimable::Yes,
        Some(Status::Cancelled) if pending && watched => Claimable::Yes,
        Some(_) => Claimable::No,
        None => match get_path(d, &o.status) {
            Some(Bson::Array(words))
                if words
                    .iter()
                    .any(|w| w.as_str() == Some(o.status_values.word(Status::Draft))) =>
            {
                Claimable::Unreadable(OrderError {
                    field: o.status.clone(),
                    problem: "is an array; one status word is required".into(),
                })
            }
            _ => Claimable::No,
        },
    }
}

/// `(index, code, message)` of each statement an `update` command's reply reports failed.
fn write_errors(reply: &Document) -> Vec<(usize, i32, String)> {
    let Ok(errors) = reply.get_array("writeErrors") else {
        return vec![];
    };
    errors
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(|e| {
            let index = match e.get("index")? {
                Bson::Int32(n) => usize::try_from(*n).ok()?,
                Bson::Int64(n) => usize::try_from(*n).ok()?,
                _ => return None,
            };
            let code = match e.get("code")? {
                Bson::Int32(n) => *n,
                Bson::Int64(n) => i32::try_from(*n).ok()?,
                _ => return None,
            };
            Some((index, code, e.get_str("errmsg").unwrap_or_default().to_string()))
        })
        .collect()
}

fn parse_claimed(d: &Document, schema: &Schema) -> Claimed {
    let words = &schema.orders;
    match Order::parse(d, schema) {
        Ok(o) if o.status == Status::Draft && o.payment_status != PaymentStatus::Pending => Claimed::Invalid {
            id: o.id,
            status: o.status,
            merchant_transaction_id: Some(o.merchant_transaction_id.to_string()),
            error: OrderError {
                field: words.payment_status.clone(),
                problem: format!(
                    "is not `{}` on a draft order; only pending drafts are reconciled",
                    words.payment_status_values.pending
                ),
            },
        },
        Ok(o) => Claimed::Valid(o),
        Err(error) => Claimed::Invalid {
            id: d.get("_id").cloned().unwrap_or(Bson::Null),
            // The claim filter matched on status, so it parses; draft is the safe fallback.
            status: crate::schema::read_status(d, schema).unwrap_or(Status::Draft),
            merchant_transaction_id: get_path(d, &words.id).and_then(Bson::as_str).map(str::to_string),
            error,
        },
    }
}
