//! This instance's side of the budget shared through MongoDB (`store::budget`): permits are
//! reserved shortly before they are due (one per round trip when the budget is low, a batch of at
//! most [`BATCH_SPAN`] when it is high) and kept here until used. A permit is used at its time or a
//! little after, never before; one more than [`LATE_AT_MOST`] overdue is thrown away, never spent
//! late. No database, no permit (fail closed).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::budget::{Reservation, SharedBudget};
use crate::store::StoreResult;
use crate::telemetry::names;

/// Permits reserved in one round trip cover at most this much of the schedule.
pub const BATCH_SPAN: Duration = Duration::from_millis(100);
/// At most this many permits per round trip.
const BATCH_MAX: u32 = 32;
/// A reserved permit more overdue than this is dropped, not used.
pub const LATE_AT_MOST: Duration = Duration::from_millis(200);

/// What the shared schedule says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A permit, usable at this instant (wait for it).
    At(Instant),
    /// Every instance holds its calls for this long.
    Paused(Duration),
}

pub struct Shared {
    db: SharedBudget,
    period: Duration,
    batch: u32,
    reserved: Mutex<VecDeque<Instant>>,
}

/// Permits per round trip for a schedule of one permit per `period`.
pub fn batch_for(period: Duration) -> u32 {
    let n = BATCH_SPAN.as_nanos() / period.as_nanos().max(1);
    u32::try_from(n).unwrap_or(BATCH_MAX).clamp(1, BATCH_MAX)
}

impl Shared {
    pub fn new(db: SharedBudget, period: Duration) -> Shared {
        Shared {
            db,
            period,
            batch: batch_for(period),
            reserved: Mutex::new(VecDeque::new()),
        }
    }

    pub fn db(&self) -> &SharedBudget {
        &self.db
    }

    /// The next reserved permit still usable, dropping the overdue ones.
    fn take_reserved(&self) -> Option<Instant> {
        let mut q = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while let Some(t) = q.pop_front() {
            if t + LATE_AT_MOST >= now {
                return Some(t);
            }
        }
        None
    }

    /// The next permit of the shared schedule (reserving more when none is left), or the shared
    /// pause. An `Err` means the database could not be asked: make no call.
    pub async fn next(&self) -> StoreResult<Next> {
        loop {
            if let Some(t) = self.take_reserved() {
                metrics::counter!(names::BUDGET_PERMITS).increment(1);
                return Ok(Next::At(t));
            }
            let answer = self.db.reserve(self.batch, self.period).await;
            // The server's now is before this instant: offsets from it never make a permit early.
            let base = Instant::now();
            match answer {
                Ok(Reservation::Paused(d)) => return Ok(Next::Paused(d)),
                Ok(Reservation::NotYet(d)) => tokio::time::sleep(d).await,
                Ok(Reservation::Permits { first, count }) => {
                    let mut q = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
                    q.extend((0..count).map(|i| base + first + self.period * i));
                }
                Err(e) => {
                    metrics::counter!(names::BUDGET_UNAVAILABLE).increment(1);
                    return Err(e);
                }
            }
        }
    }

    /// Drop the permits reserved here (a pause began: they would be overdue when it ends).
    pub fn forget(&self) {
        self.reserved.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// How often this instance refreshes its heartbeat and counts the others.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Heartbeat forever: publish the instances seen as a gauge (see `store::budget`).
pub async fn heartbeats(db: SharedBudget) {
    loop {
        match db.heartbeat().await {
            Ok(n) => metrics::gauge!(names::BUDGET_INSTANCES).set(n as f64),
            Err(e) => tracing::warn!(error = %e, "could not refresh this instance's heartbeat"),
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_permit_per_round_trip_at_low_budgets_small_batches_at_high_ones() {
        assert_eq!(batch_for(Duration::from_millis(1020)), 1, "60/min");
        assert_eq!(batch_for(Duration::from_millis(11)), 9, "6000/min: 100 ms of schedule");
        assert_eq!(batch_for(Duration::from_micros(10)), BATCH_MAX, "capped");
    }
}
