//! The outbox: an order's event is born in the same single-document update that makes its
//! transition, as an entry of the order's own `reconciliation.outbox`
//! (`{_id: "evt_<ObjectId hex>", type, createdAt, data}`), so on either commit strategy a crash
//! never leaves a transition without its event nor an event without its transition, and a
//! guarded write that matched nothing wrote neither. A transition's entry is made beside its
//! update (`Store::transition_update`, `store/orders.rs`); other writes take theirs from here.
//!
//! The relay moves entries to `reconciler_events` ([`EVENTS`]): insert by `_id` (a duplicate key
//! means moved already), then `$pull` the moved entries from the order by id. The process that
//! made the transition relays right after it (best effort); `run` sweeps what is left (a crash
//! in between). Entries of one order are moved in the order they were written, and each gets a
//! per-order `seq` greater than every earlier one's, so events keep their order per order even
//! between hosts whose clocks disagree. What the transition does not decide (the order's id and
//! amount, and a payment status it leaves as the shop wrote it) is read from the order document
//! as the event leaves it; the body is frozen from then on (`payload`).

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::events::{field as f, EVENTS};
use super::{Store, StoreError, StoreResult};
use crate::domain::EventType;
use crate::schema::{amount_paise, get_path, own, read_payment_status};

/// Events moved per sweep of leftovers, at most.
const SWEEP_BATCH: i64 = 100;

/// Add `entry` to the outbox in `update` (beside the history entry it goes with).
pub(crate) fn push(update: &mut Document, entry: Document) {
    match update.get_document_mut("$push") {
        Ok(push) => {
            push.insert(own::OUTBOX, entry);
        }
        Err(_) => {
            update.insert("$push", doc! { own::OUTBOX: entry });
        }
    }
}

/// A new outbox entry of type `ty` made at `now`, carrying what the writer decided (`data`).
pub(crate) fn entry(now: DateTime, ty: EventType, data: Document) -> Document {
    doc! {
        "_id": format!("evt_{}", ObjectId::new().to_hex()),
        "type": ty.as_str(), "createdAt": now, "data": data,
    }
}

/// The RFC 3339 spelling of `t` (milliseconds, UTC), as the body carries times.
pub(crate) fn rfc3339(t: DateTime) -> String {
    t.try_to_rfc3339_string().unwrap_or_default()
}

/// An `i64` from an Int32 or Int64.
fn int(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

impl Store {
    /// The same store, recording no events: `selftest`'s throwaway order emits nothing.
    pub fn without_events(mut self) -> Store {
        self.events = false;
        self
    }

    /// An outbox entry for a write that is not a transition (a payment recorded, a refund
    /// requested), or `None` when this store records no events.
    pub(crate) fn event_entry(&self, now: DateTime, ty: EventType, data: Document) -> Option<Document> {
        self.events.then(|| entry(now, ty, data))
    }

    /// `matched`, after moving the order's events when the write matched (best effort: a failed
    /// move is left to `run`'s sweep).
    pub(crate) async fn relayed_if(&self, id: &Bson, matched: bool) -> bool {
        if matched && self.events {
            self.relay_best_effort(id).await;
        }
        matched
    }

    /// Move the order's events, logging (not returning) a failure: `run` sweeps what is left.
    pub(crate) async fn relay_best_effort(&self, id: &Bson) {
        if let Err(e) = self.relay(id).await {
            tracing::warn!(error = %e, "events could not be moved out of the order yet; the service moves them later");
        }
    }

    /// Move every event waiting in order `id`'s outbox to `reconciler_events`, oldest first;
    /// the number moved. Stops at the first that cannot be inserted (later ones wait behind it).
    pub async fn relay(&self, id: &Bson) -> StoreResult<usize> {
        let o = &self.schema.orders;
        let projection = doc! { own::OUTBOX: 1, &o.id: 1, &o.amount: 1, &o.payment_status: 1 };
        let order = self
            .orders
            .find_one(doc! { "_id": id, own::OUTBOX_ID: { "$exists": true } })
            .projection(projection)
            .await
            .map_err(StoreError::mongo("read the order's outbox"))?;
        let Some(order) = order else { return Ok(0) };
        let entries: Vec<Bson> = get_path(&order, own::OUTBOX)
            .and_then(Bson::as_array)
            .cloned()
            .unwrap_or_default();
        let events = self.db.collection::<Document>(EVENTS);
        let mut seq = self.last_seq(id).await?;
        let mut moved = Vec::new();
        let mut unreadable = Vec::new();
        for raw in &entries {
            let event = raw.as_document().and_then(|e| self.event_of(&order, e, &mut seq));
            let Some(event) = event else {
                // Not an event this version knows (no id, no known type: another version's, or
                // edited by hand): set aside for a person below; the order's other events go on.
                unreadable.push(raw.clone());
                continue;
            };
            let event_id = event.get("_id").cloned().unwrap_or(Bson::Null);
            match events
                .insert_one(event)
                .await
                .map_err(StoreError::mongo("move an event"))
            {
                Ok(_) => {}
                Err(e) if e.is_duplicate_key() => {} // moved already (another relay, or before a crash)
                Err(e) => {
                    if moved.is_empty() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "an event could not be moved; it and later ones wait for the next sweep");
                    break;
                }
            }
            moved.push(event_id);
        }
        if !unreadable.is_empty() {
            let mtid = get_path(&order, &o.id)
                .and_then(Bson::as_str)
                .unwrap_or("?")
                .to_string();
            tracing::error!(
                order = %mtid,
                entries = unreadable.len(),
                "outbox entries this version cannot read (no id or an unknown type): moved to {}; nothing sent for them",
                own::OUTBOX_UNREADABLE
            );
            self.orders
                .update_one(
                    doc! { "_id": id },
                    doc! {
                        "$pull": { own::OUTBOX: { "$in": &unreadable } },
                        "$push": { own::OUTBOX_UNREADABLE: { "$each": &unreadable } },
                    },
                )
                .await
                .map_err(StoreError::mongo("set aside unreadable outbox entries"))?;
        }
        if moved.is_empty() {
            return Ok(0);
        }
        self.orders
            .update_one(
                doc! { "_id": id },
                doc! { "$pull": { own::OUTBOX: { "_id": { "$in": &moved } } } },
            )
            .await
            .map_err(StoreError::mongo("clear moved events from the order"))?;
        self.relayed.notify_one();
        Ok(moved.len())
    }

    /// The highest `seq` of the order's events moved so far (0 for none).
    async fn last_seq(&self, id: &Bson) -> StoreResult<i64> {
        let last = self
            .db
            .collection::<Document>(EVENTS)
            .find_one(doc! { f::ORDER_ID: id })
            .sort(doc! { f::ORDER_ID: 1, f::SEQ: -1 })
            .projection(doc! { f::SEQ: 1 })
            .await
            .map_err(StoreError::mongo("read the order's last event"))?;
        Ok(last.and_then(|d| int(d.get(f::SEQ))).unwrap_or(0))
    }

    /// The `reconciler_events` document of outbox entry `e` of `order`, its `seq` after `*seq`
    /// (which it advances). `None` for an entry without an id or a known type.
    fn event_of(&self, order: &Document, e: &Document, seq: &mut i64) -> Option<Document> {
        let o = &self.schema.orders;
        let id = e.get_str("_id").ok()?;
        let ty = EventType::parse(e.get_str("type").ok()?)?;
        let created = e.get_datetime("createdAt").ok().copied().unwrap_or_else(DateTime::now);
        *seq = created.timestamp_millis().max(*seq + 1);
        let written = e.get_document("data").cloned().unwrap_or_default();
        let mtid = get_path(order, &o.id).and_then(Bson::as_str).map(str::to_string);
        let amount = amount_paise(get_path(order, &o.amount), o.amount_unit).ok();
        let payment = match written.get("paymentStatus") {
            Some(p) => p.clone(),
            None => read_payment_status(order, &self.schema).map_or(Bson::Null, |p| Bson::String(p.as_str().into())),
        };
        let field = |k: &str| written.get(k).cloned().unwrap_or(Bson::Null);
        let mut data = doc! {
            "merchantTransactionId": mtid.clone(), "status": field("status"), "paymentStatus": payment,
            "amount": amount, "paidAmount": field("paidAmount"), "reason": field("reason"),
            "by": field("by"), "at": rfc3339(created),
        };
        if let Some(refund) = written.get("refund") {
            data.insert("refund", refund.clone());
        }
        let payload = doc! { "type": ty.as_str(), "timestamp": rfc3339(created), "data": data };
        let mut event = doc! {
            f::ID: id, f::TYPE: ty.as_str(), f::MTID: mtid,
            f::ORDER_ID: order.get("_id").cloned().unwrap_or(Bson::Null), f::SEQ: *seq,
            f::CREATED_AT: created, f::PAYLOAD: payload,
            f::STATE: super::events::PENDING,
            f::DELIVERIES: super::events::fresh_delivery(created),
        };
        if ty.notifies_people() {
            let mut slack = super::events::fresh_delivery(created);
            slack.insert(f::STATE, super::events::PENDING);
            event.insert(f::SLACK, slack);
        }
        Some(event)
    }

    /// `run`'s sweep: move the events of orders whose outbox still holds some (a process
    /// crashed between its transition and the move). The number moved.
    pub async fn relay_leftovers(&self) -> StoreResult<usize> {
        use futures_util::TryStreamExt;
        let ids: Vec<Document> = self
            .orders
            .find(doc! { own::OUTBOX_ID: { "$exists": true } })
            .projection(doc! { "_id": 1 })
            .limit(SWEEP_BATCH)
            .await
            .map_err(StoreError::mongo("find orders with events to move"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find orders with events to move"))?;
        let mut moved = 0;
        for d in ids {
            let Some(id) = d.get("_id") else { continue };
            // One order's refusal (a write the database refuses) does not hold the others'.
            match self.relay(id).await {
                Ok(n) => moved += n,
                Err(e) => {
                    tracing::warn!(error = %e, "an order's events could not be moved; the next sweep tries again")
                }
            }
        }
        Ok(moved)
    }
}
