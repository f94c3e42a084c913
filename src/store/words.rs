//! Status words that miss the mapping only in case (`Draft` where the mapping says `draft`): never
//! reconciled (guessing could settle an order the shop meant otherwise), but counted by the
//! service's scanner at its first scan and every `WORD_CHECK_EVERY` after into
//! `reconciler_status_word_near_misses`, and logged once per word with the key to map it by.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};

use super::Store;
use super::{StoreError, StoreResult};
use crate::domain::{PaymentStatus, Status};

/// How often the scanner looks for near-miss words.
pub const WORD_CHECK_EVERY: Duration = Duration::from_secs(600);

/// One word found stored where a mapped word was expected, differing only in case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMiss {
    /// The `[schema]` key the word should be mapped by (`schema.orders.status_values.draft`).
    pub key: &'static str,
    pub word: String,
    pub orders: u64,
}

/// `^(?:a|b)$` matching exactly these words (escaped).
fn exactly(words: &[&str]) -> String {
    let escaped: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .flat_map(|c| {
                    let special = "\\^$.|?*+()[]{}".contains(c);
                    special.then_some('\\').into_iter().chain(std::iter::once(c))
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", escaped.join("|"))
}

impl Store {
    /// Near-miss status words on drafts and watched cancellations, and near-miss payment words
    /// on drafts, with how many orders carry each (at most 50 words).
    pub async fn near_miss_words(&self) -> StoreResult<Vec<NearMiss>> {
        use futures_util::TryStreamExt;
        let o = &self.schema.orders;
        let (draft, cancelled) = (self.word(Status::Draft), self.word(Status::Cancelled));
        let pending = o.payment_status_values.word(PaymentStatus::Pending);
        let pipeline = [
            doc! { "$match": { "$or": [
                { &o.status: { "$regex": exactly(&[draft, cancelled]), "$options": "i", "$nin": [draft, cancelled] } },
                { &o.status: draft, &o.payment_status: { "$regex": exactly(&[pending]), "$options": "i", "$ne": pending } },
            ] } },
            doc! { "$group": {
                "_id": { "s": format!("${}", o.status), "p": format!("${}", o.payment_status) },
                "n": { "$sum": 1 },
            } },
            doc! { "$limit": 50 },
        ];
        let groups: Vec<Document> = self
            .orders
            .aggregate(pipeline)
            .await
            .map_err(StoreError::mongo("find near-miss words"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("find near-miss words"))?;
        let mut out: Vec<NearMiss> = Vec::new();
        for g in groups {
            let n = match g.get("n") {
                Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            let Ok(id) = g.get_document("_id") else { continue };
            let (s, p) = (id.get_str("s").unwrap_or_default(), id.get_str("p").unwrap_or_default());
            let miss = if s == draft {
                Some(("schema.orders.payment_status_values.pending", p))
            } else if s.eq_ignore_ascii_case(draft) {
                Some(("schema.orders.status_values.draft", s))
            } else if s.eq_ignore_ascii_case(cancelled) {
                Some(("schema.orders.status_values.cancelled", s))
            } else {
                None
            };
            let Some((key, word)) = miss else { continue };
            match out.iter_mut().find(|m| m.key == key && m.word == word) {
                Some(m) => m.orders += n,
                None => out.push(NearMiss {
                    key,
                    word: word.to_string(),
                    orders: n,
                }),
            }
        }
        Ok(out)
    }
}

/// Log each near-miss word once per process (the gauge keeps the count).
pub fn log_new(misses: &[NearMiss]) {
    static LOGGED: Mutex<Option<HashSet<(&'static str, String)>>> = Mutex::new(None);
    let Ok(mut logged) = LOGGED.lock() else { return };
    let logged = logged.get_or_insert_with(HashSet::new);
    for m in misses {
        if logged.insert((m.key, m.word.clone())) {
            tracing::warn!(
                word = %m.word, key = m.key, orders = m.orders,
                "orders carry a status word that differs from the mapped one only in case; they are not reconciled: map the word by this key, or fix the shop's code"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_matched_whole_with_their_metacharacters_escaped() {
        assert_eq!(exactly(&["draft", "cancelled"]), "^(?:draft|cancelled)$");
        assert_eq!(exactly(&["a.b", "c+"]), "^(?:a\\.b|c\\+)$");
    }
}
