//! From validated settings to what every command shares (docs/architecture.md, "State outside
//! the actors"): [`build_env`] connects to MongoDB, prepares the indexes, resolves the commit
//! strategy, joins the merchant's shared PhonePe budget and builds the PhonePe client, all on the
//! runtime of the System that uses them; [`connect_store`] is the store alone. The service
//! (`app.rs`), the operator commands and the console all start here.

use std::sync::Arc;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::actors::{Budget, Env};
use crate::config::Settings;
use crate::domain::Policy;
use crate::ops::Health;
use crate::phonepe::{Gateway, PhonePeClient};
use crate::store::Eligibility;
use crate::store::{CommitRules, Store};

/// A lease owner id unique to this process: host, pid, random suffix.
fn lease_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// Connect and prepare everything the actors share, creating the indexes. Must run inside the
/// System that uses it.
pub async fn build_env(settings: Settings, health: Health) -> anyhow::Result<Arc<Env>> {
    Ok(prepare_env(settings, health, Indexes::Ensure).await?.0)
}

/// What [`prepare_env`] does about the indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexes {
    /// Create what is missing (the service, `once`, `selftest`).
    Ensure,
    /// Only plan: `check` reports what start-up would create and changes nothing.
    Plan,
}

/// [`build_env`], with the index plan (carried out or not, by `indexes`).
pub async fn prepare_env(
    settings: Settings,
    health: Health,
    indexes: Indexes,
) -> anyhow::Result<(Arc<Env>, Vec<crate::store::indexes::Step>)> {
    let store = open_store(&settings).await?;
    let steps = match indexes {
        Indexes::Ensure => {
            let steps = store.ensure_indexes().await.context("preparing the indexes")?;
            store
                .ensure_event_indexes()
                .await
                .context("creating the reconciler_events indexes")?;
            steps
        }
        Indexes::Plan => store.plan_indexes().await??,
    };
    let strategy = store
        .resolve_strategy(settings.job.commit_strategy)
        .await
        .context("choosing the commit strategy")?;
    tracing::info!(strategy = ?strategy, "commit strategy chosen");
    let client = PhonePeClient::new(&settings.phonepe).context("building the PhonePe client")?;
    let policy = Policy {
        merchant_id: settings.phonepe.merchant_id.clone(),
        pending_timeout: settings.job.pending_timeout,
        late_payment_watch: settings.job.late_payment_watch,
        unreadable_max_attempts: settings.job.unreadable_max_attempts,
    };
    let eligibility = Eligibility {
        lookback: settings.job.lookback,
        watch_horizon: Some(settings.job.pending_timeout + settings.job.late_payment_watch),
    };
    let owner = lease_owner();
    // One budget for every instance of this merchant on this database (see `store::budget`).
    let shared = store.shared_budget(&settings.phonepe.merchant_id, &owner);
    shared
        .ensure_indexes()
        .await
        .context("creating the reconciler_instances index")?;
    let budget = Arc::new(Budget::shared(settings.job.rate_limit_per_minute, shared));
    let phonepe = Gateway::new(client, budget.clone());
    let env = Arc::new(Env {
        settings,
        store,
        phonepe,
        strategy,
        policy,
        owner,
        eligibility,
        health,
        budget,
    });
    Ok((env, steps))
}

/// Connect to MongoDB on the shop's schema and commit rules, check it answers, and create the
/// orders indexes. Must run inside the runtime that uses the store.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = open_store(settings).await?;
    store.ensure_indexes().await.context("preparing the indexes")?;
    Ok(store)
}

/// The store of `settings`, connected and answering; no index is touched.
async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings.mongodb.uri.expose_secret(), &settings.mongodb.database)
        .await
        .context("mongodb.uri is not a usable MongoDB connection string")?
        .with_rules(CommitRules {
            sized_items_decrement_total: settings.job.sized_items_decrement_total,
            lease_ttl: settings.job.lease_ttl,
        })
        .with_schema(Arc::new(settings.schema.clone()));
    store.ping().await.context("MongoDB (mongodb.uri) does not answer")?;
    Ok(store)
}
