//! StockCommitter: makes a decision true in MongoDB exactly once, through the settle path
//! (`settle.rs`, shared with `check --apply` and the webhook). Each `Settle` runs as its own future
//! bounded by the order's lease, so commits of different orders overlap; the guarded writes, not a
//! lock here, keep them correct (docs/architecture.md, "The actors").
//!
//! Fault points (feature `fault-injection`): `committer.started`; `committer.settle` on receipt
//! (`panic`, `stop`, `error` = the write fails, `delay<ms>` = a slow or hung database);
//! `committer.settled` after the write and before the answer (`panic` = the committer dies
//! between writing and answering, `delay<ms>` = a slow answer).

use std::sync::Arc;

use actix::prelude::*;
use mongodb::bson::Bson;
use tracing::Instrument;

use super::child::ChildGuard;
use super::Env;
use crate::domain::Outcome;
use crate::domain::{Decision, Order, OrderError, Status};
use crate::fault::Injected;
use crate::store::StoreError;

/// Make `decision` true for `order`.
#[derive(Message)]
#[rtype(result = "Result<Outcome, StoreError>")]
pub struct Settle {
    pub order: Order,
    pub decision: Decision,
}

/// Park an order whose document cannot be reconciled (a field is missing or wrong). Its
/// `paymentStatus` is left as the shop wrote it.
#[derive(Message)]
#[rtype(result = "Result<Outcome, StoreError>")]
pub struct ParkInvalid {
    pub id: Bson,
    pub status: Status,
    pub error: OrderError,
}

pub struct StockCommitter {
    env: Arc<Env>,
    _guard: ChildGuard,
}

impl StockCommitter {
    pub fn new(env: Arc<Env>, guard: ChildGuard) -> StockCommitter {
        StockCommitter { env, _guard: guard }
    }
}

impl Actor for StockCommitter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if crate::fault::point("committer.started") == Some(Injected::Stop) {
            ctx.stop();
        }
    }
}

/// Die now (fault injection: the committer crashed while a settle was being answered).
#[derive(Message)]
#[rtype(result = "()")]
struct Crash(String);

impl Handler<Crash> for StockCommitter {
    type Result = ();

    fn handle(&mut self, msg: Crash, _: &mut Self::Context) {
        panic!("{}", msg.0);
    }
}

impl Handler<Settle> for StockCommitter {
    type Result = ResponseFuture<Result<Outcome, StoreError>>;

    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) -> Self::Result {
        let injected = crate::fault::point("committer.settle");
        if injected == Some(Injected::Stop) {
            ctx.stop();
        }
        let env = self.env.clone();
        let me = ctx.address();
        let span = tracing::info_span!("order", merchantTransactionId = %msg.order.merchant_transaction_id);
        Box::pin(
            async move {
                match injected {
                    Some(Injected::Error | Injected::Stop) => {
                        return Err(StoreError::Unsupported("fault injected at committer.settle".into()))
                    }
                    Some(Injected::Delay(d)) => tokio::time::sleep(d).await,
                    None => {}
                }
                // Work on an order must end within its lease; past that, give it back.
                let limit = env.settings.job.lease_ttl;
                let result =
                    match tokio::time::timeout(limit, crate::settle::settle(&env.settler(), &msg.order, msg.decision))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(StoreError::Timeout {
                            op: "settle order",
                            secs: limit.as_secs(),
                        }),
                    };
                after_settle(&me).await;
                result
            }
            .instrument(span),
        )
    }
}

/// The `committer.settled` fault point. This future runs detached from the actor, so a panic here
/// alone would only lose the answer; take the actor down with it, as a real crash would.
async fn after_settle(me: &Addr<StockCommitter>) {
    match std::panic::catch_unwind(|| crate::fault::point("committer.settled")) {
        Ok(Some(Injected::Delay(d))) => tokio::time::sleep(d).await,
        Ok(_) => {}
        Err(panic) => {
            me.do_send(Crash("fault injected at committer.settled".into()));
            std::panic::resume_unwind(panic);
        }
    }
}

impl Handler<ParkInvalid> for StockCommitter {
    type Result = ResponseFuture<Result<Outcome, StoreError>>;

    fn handle(&mut self, msg: ParkInvalid, _: &mut Self::Context) -> Self::Result {
        let env = self.env.clone();
        Box::pin(async move { crate::settle::park_invalid(&env.settler(), &msg.id, msg.status, &msg.error).await })
    }
}
