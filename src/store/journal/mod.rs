//! Strategy `journal`: exactly-once stock commits without transactions (a standalone MongoDB), a
//! saga of single-document atomic updates: begin (`draft → committing`, the journal in
//! `reconciliation.commit`), apply each item with its marker, confirm; or roll back what is marked.
//! docs/architecture.md, "`journal`", says why several drivers of one commit never deduct twice and
//! how recovery finishes an interrupted one; `tests/it/journal_model.rs` checks the stock invariant
//! over thousands of seeded interleavings of two and three drivers, with crashes and skewed clocks.

mod driver;
mod recovery;

use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};

use super::commit::{stock_inc, CommitOutcome};
use super::StoreResult;
use crate::domain::{Item, Status};
use crate::schema::own;
use crate::schema::Schema;
use crate::store::By;

pub use driver::{Driver, Step};

/// The product field holding this reconciler's per-item commit markers.
pub const MARKERS: &str = "reconcilerCommits";

/// How long a journal's markers are kept beyond `ended + lease_ttl`: the clock skew between
/// hosts and the time a write can spend on the wire that this design tolerates.
pub const MARKER_GRACE: Duration = Duration::from_secs(120);

/// `reconciliation.commit.state`: where a journal commit stands. [`State::as_str`] is the one
/// place that spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Items are being deducted (rolled forward by recovery).
    Applying,
    /// An item was short: deducted items are being restored (rolled back by recovery).
    RollingBack,
    /// Ended: the order is confirmed; markers wait for the sweep.
    Confirmed,
    /// Ended: every deduction was restored; the order is parked.
    RolledBack,
}

impl State {
    const ALL: [State; 4] = [State::Applying, State::RollingBack, State::Confirmed, State::RolledBack];

    /// The stored spelling.
    const fn as_str(self) -> &'static str {
        match self {
            State::Applying => "applying",
            State::RollingBack => "rolling_back",
            State::Confirmed => "confirmed",
            State::RolledBack => "rolled_back",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// How often a journal may be found changed under us before giving up for this attempt.
const MAX_RESUMES: u32 = 4;

/// The journal as stored in `reconciliation.commit`.
#[derive(Debug, Clone)]
struct Journal {
    id: String,
    state: State,
    items: Vec<Item>,
    /// Whether sized items also move the product's total (`job.sized_items_decrement_total` when
    /// the journal began): compensation restores exactly what was deducted, whatever the config
    /// says later.
    sized_total: bool,
    code: Option<String>,
    transaction_id: Option<String>,
    fail_reason: Option<String>,
    fail_product: Option<String>,
    /// Who began the commit (`store::by`): its history entry says so.
    by: By,
    /// The operator's note (`review resolve <id> fulfil --note`), for the history entry.
    note: Option<String>,
    /// The operator's name, for the history entry.
    operator: Option<String>,
    /// The status the commit began from (draft; `needs_review` for an operator's `fulfil`):
    /// the `from` of the history entry that ends it.
    from: Status,
    /// PhonePe's verified paid amount (paise): `reconciliation.paidAmount` if the commit parks.
    paid_amount: Option<i64>,
}

impl Journal {
    fn marker(&self, i: usize) -> String {
        format!("{}:{i}", self.id)
    }

    fn to_doc(&self) -> Document {
        let items: Vec<Document> = self
            .items
            .iter()
            .map(|it| {
                let mut d = doc! { "productId": it.product_id.clone(), "quantity": it.quantity };
                if let Some(s) = &it.size {
                    d.insert("size", s);
                }
                d
            })
            .collect();
        let mut d = doc! {
            own::commit_key(own::COMMIT_ID): &self.id, own::commit_key(own::COMMIT_STATE): self.state.as_str(), "items": items, "sizedTotal": self.sized_total,
            "code": self.code.clone(), "transactionId": self.transaction_id.clone(), "by": self.by,
        };
        if let Some(n) = &self.note {
            d.insert("note", n);
        }
        if let Some(n) = &self.operator {
            d.insert("operator", n);
        }
        d.insert("from", self.from.as_str());
        if let Some(paid) = self.paid_amount {
            d.insert("paidAmount", paid);
        }
        d
    }

    /// Read a journal back; a journal this process cannot read is an error, never a guess.
    fn parse(d: &Document) -> Result<Journal, String> {
        let id = d
            .get_str(own::commit_key(own::COMMIT_ID))
            .map_err(|_| "journal has no id")?
            .to_string();
        let state = d
            .get_str(own::commit_key(own::COMMIT_STATE))
            .map_err(|_| "journal has no state")?;
        let state =
            State::parse(state).ok_or_else(|| format!("journal state `{state}` is not one this process knows"))?;
        let items = d
            .get_array("items")
            .map_err(|_| "journal has no items")?
            .iter()
            .map(|b| {
                let it = b.as_document().ok_or("journal item is not a document")?;
                let quantity = match it.get("quantity") {
                    Some(Bson::Int32(n)) => i64::from(*n),
                    Some(Bson::Int64(n)) => *n,
                    _ => return Err("journal item has no integer quantity"),
                };
                Ok(Item {
                    product_id: it.get("productId").cloned().ok_or("journal item has no productId")?,
                    quantity,
                    size: it.get_str("size").ok().map(str::to_string),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let s = |k: &str| d.get_str(k).ok().map(str::to_string);
        Ok(Journal {
            id,
            state,
            items,
            // Journals written before the switch existed moved the total too.
            sized_total: d.get_bool("sizedTotal").unwrap_or(true),
            code: s("code"),
            transaction_id: s("transactionId"),
            fail_reason: s(own::commit_key(own::COMMIT_FAIL_REASON)),
            fail_product: s(own::commit_key(own::COMMIT_FAIL_PRODUCT)),
            by: By::parse(d.get_str("by").ok()),
            note: s("note"),
            operator: s("operator"),
            // Journals written before `from` was kept began from a draft.
            from: d.get_str("from").ok().and_then(Status::parse).unwrap_or(Status::Draft),
            paid_amount: d.get_i64("paidAmount").ok(),
        })
    }

    fn of_order(order: &Document) -> Option<Result<Journal, String>> {
        order
            .get_document(own::RECONCILIATION_KEY)
            .and_then(|r| r.get_document(own::COMMIT_KEY))
            .ok()
            .map(Journal::parse)
    }

    fn outcome_of_failure(&self) -> CommitOutcome {
        let product = self.fail_product.clone().unwrap_or_default();
        CommitOutcome::from_review_reason(self.fail_reason.as_deref(), product)
    }

    /// The `$inc` of item `i` (`sign` -1 deducts, +1 restores), its size matched by `s`.
    fn inc(&self, item: &Item, sign: i64, s: &Schema) -> Document {
        let mut inc = stock_inc(item, self.sized_total, sign, s);
        if let Some(n) = inc.remove(s.sizes_matched_stock()) {
            inc.insert(s.sizes_filtered_stock(), n);
        }
        inc
    }
}

/// What a recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub rolled_forward: u64,
    pub rolled_back: u64,
    pub markers_cleared: u64,
    pub markers_compensated: u64,
}

impl Recovery {
    pub fn is_empty(&self) -> bool {
        *self == Recovery::default()
    }
}

/// A fault point of the saga (feature `fault-injection`): `panic` crashes the commit there,
/// `delay<ms>` holds it there (so a kill lands mid-commit).
async fn fault(name: &str) {
    if let Some(d) = crate::fault::delay(name) {
        tokio::time::sleep(d).await;
    }
}

/// The time a driver has left: every write is bounded by it on both sides of the wire.
#[derive(Debug, Clone, Copy)]
struct Bounded(Duration);

impl Bounded {
    async fn run<T>(
        self,
        op: &'static str,
        fut: impl std::future::IntoFuture<Output = Result<T, mongodb::error::Error>>,
    ) -> StoreResult<T> {
        crate::store::bounded(op, self.0, fut).await
    }

    fn opts(self) -> FindOneAndUpdateOptions {
        FindOneAndUpdateOptions::builder()
            .max_time(self.0)
            .return_document(ReturnDocument::After)
            .build()
    }

    fn opts_for(self, item: &Item, s: &Schema) -> FindOneAndUpdateOptions {
        let mut o = self.opts();
        o.array_filters = item.size.as_ref().map(|size| vec![doc! { s.size_filter(): size }]);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(state: &str) -> Document {
        doc! { "id": "c1", "state": state, "items": [{ "productId": "p", "quantity": 1 }], "sizedTotal": false }
    }

    #[test]
    fn states_keep_their_stored_spelling_and_round_trip() {
        let spelled: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(spelled, ["applying", "rolling_back", "confirmed", "rolled_back"]);
        for s in State::ALL {
            let j = Journal::parse(&journal(s.as_str())).expect("a known state parses");
            assert_eq!(j.state, s);
            assert_eq!(Journal::parse(&j.to_doc()).expect("round trip").state, s);
        }
    }

    /// Recovery must never guess what an unknown journal means (rolling it forward would deduct).
    #[test]
    fn an_unknown_state_is_an_error_naming_it() {
        let err = Journal::parse(&journal("half_done")).expect_err("unknown state");
        assert!(err.contains("half_done"), "{err}");
        assert!(Journal::parse(&doc! { "id": "c1" }).is_err());
    }
}
