//! Recovery of interrupted journal commits and the sweeps of their markers.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};

use super::{Bounded, Driver, Journal, Recovery, State, MARKERS};
use crate::domain::Status;
use crate::schema::own;
use crate::store::commit::CommitOutcome;
use crate::store::orders::plus;
use crate::store::Store;
use crate::store::{StoreError, StoreResult};

impl Store {
    /// Claim one `committing` order whose lease expired (at `now`) for `owner`, with a driver
    /// whose deadline is the new lease's expiry. `Some(Err(..))`: its journal cannot be read
    /// (it stays `committing` and leased, for a person).
    pub async fn claim_for_recovery(
        &self,
        owner: &str,
        now: DateTime,
        lease: Duration,
    ) -> StoreResult<Option<(String, Result<Driver, String>)>> {
        self.claim_for_recovery_avoiding(owner, now, lease, &[]).await
    }

    /// [`Store::claim_for_recovery`], leaving the orders in `avoid` (excluded ones) alone.
    async fn claim_for_recovery_avoiding(
        &self,
        owner: &str,
        now: DateTime,
        lease: Duration,
        avoid: &[Bson],
    ) -> StoreResult<Option<(String, Result<Driver, String>)>> {
        let until = plus(now, lease);
        let opts = FindOneAndUpdateOptions::builder()
            .return_document(ReturnDocument::After)
            .build();
        let claim = self
            .orders
            .find_one_and_update(
                crate::store::refusals::avoiding(
                    doc! { &self.schema.orders.status: self.word(Status::Committing), own::LEASE_UNTIL: { "$not": { "$gt": now } } },
                    avoid,
                ),
                doc! { "$set": { own::LEASE_OWNER: owner, own::LEASE_UNTIL: until } },
            )
            .with_options(opts);
        let claimed =
            crate::store::bounded("recovery: claim committing order", crate::store::CLAIM_TIMEOUT, claim).await?;
        let Some(order) = claimed else { return Ok(None) };
        let id = order.get("_id").cloned().unwrap_or(Bson::Null);
        let mtid = crate::schema::get_path(&order, &self.schema.orders.id)
            .and_then(Bson::as_str)
            .unwrap_or("?")
            .to_string();
        let driver = match Journal::of_order(&order) {
            Some(Ok(j)) => Ok(Driver::new(id, j, until)),
            Some(Err(e)) => Err(e),
            None => Err("no journal".into()),
        };
        Ok(Some((mtid, driver)))
    }

    /// The recovery pass: finish every `committing` order whose lease expired, from its journal,
    /// then the sweeps. Idempotent; safe in several processes at once.
    pub async fn recover_journals(&self, owner: &str, lease: Duration) -> StoreResult<Recovery> {
        self.recover_journals_avoiding(owner, lease, &[]).await
    }

    /// [`Store::recover_journals`], leaving the orders in `avoid` (excluded ones) alone.
    pub async fn recover_journals_avoiding(
        &self,
        owner: &str,
        lease: Duration,
        avoid: &[Bson],
    ) -> StoreResult<Recovery> {
        let mut report = Recovery::default();
        while let Some((mtid, driver)) = self
            .claim_for_recovery_avoiding(owner, DateTime::now(), lease, avoid)
            .await?
        {
            let driver = match driver {
                Ok(d) => d,
                Err(why) => {
                    // Never guess: leave it committing (leased, so we do not spin on it) and shout.
                    tracing::error!(merchantTransactionId = %mtid, problem = %why, "committing order without a readable journal; needs a person");
                    continue;
                }
            };
            let forward = driver.j.state == State::Applying;
            let order_id = driver.order_id().clone();
            match driver.run(self).await {
                Ok(outcome) => {
                    // The transition that ended the journal carried its event: move it.
                    self.relayed_if(&order_id, outcome != CommitOutcome::AlreadyProcessed)
                        .await;
                    tracing::warn!(merchantTransactionId = %mtid, outcome = ?outcome, "recovered an interrupted commit from its journal");
                    match (forward, outcome) {
                        (true, CommitOutcome::Committed) => report.rolled_forward += 1,
                        _ => report.rolled_back += 1,
                    }
                }
                // Its lease holds it; the next pass (or another process) goes on from here.
                Err(e) => {
                    tracing::warn!(merchantTransactionId = %mtid, error = %e, "could not finish an interrupted commit yet")
                }
            }
        }
        self.sweep_ended_journals(DateTime::now(), &mut report).await?;
        self.sweep_orphan_markers(&mut report).await?;
        Ok(report)
    }

    /// Journals whose `sweepAt` has come: no driver can act on them any more, so their markers
    /// go — removed for a confirmed journal, compensated for a rolled-back one (a late driver's
    /// deduction after the roll-back). Then the journal is stamped `sweptAt`.
    pub async fn sweep_ended_journals(&self, now: DateTime, report: &mut Recovery) -> StoreResult<()> {
        use futures_util::TryStreamExt;
        let due: Vec<Document> = self
            .orders
            .find(doc! { own::COMMIT_SWEEP_AT: { "$lte": now } })
            .projection(doc! { own::COMMIT: 1 })
            .limit(1000)
            .await
            .map_err(StoreError::mongo("sweep: find ended journals"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("sweep: find ended journals"))?;
        let forever = Bounded(crate::store::CLAIM_TIMEOUT);
        for order in due {
            let Some(Ok(j)) = Journal::of_order(&order) else {
                continue;
            };
            for (i, item) in j.items.iter().enumerate() {
                match j.state {
                    State::Confirmed => {
                        let r = self
                            .products
                            .update_one(
                                doc! { "_id": self.schema.product_ref(&item.product_id), MARKERS: j.marker(i) },
                                doc! { "$pull": { MARKERS: j.marker(i) } },
                            )
                            .await
                            .map_err(StoreError::mongo("sweep: clear marker"))?;
                        report.markers_cleared += r.modified_count;
                    }
                    State::RolledBack => {
                        report.markers_compensated += u64::from(self.compensate(&j, i, forever).await?)
                    }
                    _ => {}
                }
            }
            self.orders
                .update_one(
                    doc! { "_id": order.get("_id"), own::COMMIT_ID: &j.id },
                    doc! { "$unset": { own::COMMIT_SWEEP_AT: "" }, "$set": { own::COMMIT_SWEPT_AT: now } },
                )
                .await
                .map_err(StoreError::mongo("sweep: mark journal swept"))?;
        }
        Ok(())
    }

    /// Markers whose journal has ended with no sweep pending: written by an older version that
    /// removed markers itself (a crash left them), or — should a driver ever outlive the grace —
    /// a deduction made after the journal was swept. Remove the first kind (the deduction
    /// happened once), compensate the second and shout.
    async fn sweep_orphan_markers(&self, report: &mut Recovery) -> StoreResult<()> {
        use futures_util::TryStreamExt;
        let products: Vec<Document> = self
            .products
            .find(doc! { MARKERS: { "$exists": true, "$ne": [] } })
            .projection(doc! { MARKERS: 1 })
            .await
            .map_err(StoreError::mongo("recovery: find markers"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("recovery: find markers"))?;
        let markers: Vec<(Bson, String, String, usize)> = products
            .iter()
            .flat_map(|p| {
                let pid = p.get("_id").cloned().unwrap_or(Bson::Null);
                p.get_array(MARKERS)
                    .map(|a| a.to_vec())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |m| {
                        let m = m.as_str()?.to_string();
                        let (id, idx) = m.rsplit_once(':')?;
                        Some((pid.clone(), m.clone(), id.to_string(), idx.parse().ok()?))
                    })
            })
            .collect();
        if markers.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = markers.iter().map(|m| m.2.as_str()).collect();
        let journals: Vec<Document> = self
            .orders
            .find(doc! { own::COMMIT_ID: { "$in": ids } })
            .projection(doc! { own::COMMIT: 1 })
            .await
            .map_err(StoreError::mongo("recovery: find journals of markers"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("recovery: find journals of markers"))?;
        let by_id: std::collections::HashMap<String, (Journal, bool, bool)> = journals
            .iter()
            .filter_map(|o| {
                let c = o
                    .get_document(own::RECONCILIATION_KEY)
                    .ok()?
                    .get_document(own::COMMIT_KEY)
                    .ok()?;
                let j = Journal::parse(c).ok()?;
                let (pending, swept) = (
                    c.contains_key(own::commit_key(own::COMMIT_SWEEP_AT)),
                    c.contains_key(own::commit_key(own::COMMIT_SWEPT_AT)),
                );
                Some((j.id.clone(), (j, pending, swept)))
            })
            .collect();
        for (pid, marker, commit_id, idx) in markers {
            let Some((j, pending, swept)) = by_id.get(&commit_id) else {
                tracing::error!(marker = %marker, "stock marker without a journal; left for a person");
                continue;
            };
            if idx >= j.items.len() {
                continue;
            }
            match (j.state, pending, swept) {
                (_, true, _) => {} // its own sweep comes
                (State::Confirmed, false, false) => {
                    self.products
                        .update_one(doc! { "_id": &pid }, doc! { "$pull": { MARKERS: &marker } })
                        .await
                        .map_err(StoreError::mongo("recovery: clear marker"))?;
                    report.markers_cleared += 1;
                }
                (State::Confirmed | State::RolledBack, false, _) => {
                    if *swept && j.state == State::Confirmed {
                        tracing::error!(marker = %marker, "a commit driver deducted after its journal was swept; restoring it");
                    }
                    if self.compensate(j, idx, Bounded(crate::store::CLAIM_TIMEOUT)).await? {
                        report.markers_compensated += 1;
                    }
                }
                _ => {} // still in progress: its own recovery handles it
            }
        }
        Ok(())
    }
}
