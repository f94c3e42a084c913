//! EventSender: `run`'s delivery of the shop's events (`src/events/send.rs`), apart from
//! settling: its own actor, its own HTTP client, at most `send::IN_FLIGHT` attempts in flight
//! per channel, and nothing on the settle path waits for it. It loops over passes: after a pass
//! that did something it goes again at once, otherwise it sleeps `events.poll_secs`, or less when
//! this process moves an event (`Store::relay` wakes it) or an attempt lands, so its own events
//! leave within milliseconds and other processes' within a poll. A panic unwinds the loop with the actor and
//! the supervisor restarts it; a pass that fails on MongoDB is logged and tried again.

use std::sync::Arc;

use actix::prelude::*;

use super::child::ChildGuard;
use super::Env;
use crate::events::send::Sender;

pub struct EventSender {
    env: Arc<Env>,
    _guard: ChildGuard,
}

impl EventSender {
    pub fn new(env: Arc<Env>, guard: ChildGuard) -> EventSender {
        EventSender { env, _guard: guard }
    }
}

impl Actor for EventSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.spawn(deliver_forever(self.env.clone()).into_actor(self));
    }
}

async fn deliver_forever(env: Arc<Env>) {
    let mut sender = match Sender::new(env.store.clone(), &env.settings, &env.owner) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the event sender cannot start; events are recorded but not sent");
            return;
        }
    };
    let e = &env.settings.events;
    tracing::info!(
        shop = e.url.is_some(),
        slack = env.settings.notify.slack_url.is_some(),
        "event sender started"
    );
    loop {
        let worked = match sender.pass().await {
            Ok(worked) => worked,
            Err(err) => {
                tracing::warn!(error = %err, "event pass failed; trying again after a poll");
                false
            }
        };
        if !worked {
            tokio::select! {
                _ = tokio::time::sleep(e.poll) => {}
                _ = env.store.relayed.notified() => {}
                _ = sender.landed() => {}
            }
        }
    }
}
