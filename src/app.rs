//! Wiring: from validated settings to a running actor system, for each CLI mode.
//!
//! `build_env` connects to MongoDB (and checks it answers), creates the indexes the shop does not
//! already have (`store/indexes.rs`), resolves the
//! commit strategy, joins the merchant's PhonePe budget shared by every instance and builds the
//! PhonePe client — all on the runtime of the System that will use them. `run` then starts the
//! Supervisor with a ticking Scanner plus the ops HTTP server (and the PhonePe webhook listener
//! when `webhook.listen` is set, `src/webhook.rs`) and this instance's heartbeat in the shared
//! budget's instance list, and waits for a signal; the listeners live on the System and stop with
//! it. `once` starts the same actors with a Scanner that drains what is eligible now and returns a
//! summary.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::actors::scanner::{Drain, Mode};
use crate::actors::supervisor::Shutdown;
use crate::actors::{Budget, Env, Summary, Supervisor, Wiring};
use crate::config::Settings;
use crate::domain::Policy;
use crate::ops::Health;
use crate::phonepe::{Gateway, PhonePeClient};
use crate::store::orders::Eligibility;
use crate::store::{CommitRules, Store};

/// How long shutdown waits for in-flight orders before leaving them to their leases.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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

/// The exit code of a command that failed with `e`: 2 for a conflict only a person can resolve
/// (an index the reconciler needs against one the shop has), 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.downcast_ref::<crate::store::indexes::IndexConflict>().is_some())
    {
        2
    } else {
        1
    }
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

/// Start the supervised actor system; returns the supervisor and the wiring.
pub fn start(env: Arc<Env>, mode: Mode) -> (Addr<Supervisor>, Arc<Wiring>) {
    let wiring = Arc::new(Wiring::new(env.settings.job.reconcilers as usize));
    let sup = Supervisor::launch(env, wiring.clone(), mode);
    (sup, wiring)
}

/// `draft-reconciler once`: one pass over what is eligible now.
pub fn once(settings: Settings) -> anyhow::Result<Summary> {
    let sys = System::new();
    sys.block_on(async move {
        let health = Health::new(settings.job.interval);
        let env = build_env(settings, health).await?;
        let (sup, wiring) = start(env, Mode::Once);
        let scanner = wiring.scanner().context("scanner did not start")?;
        let summary = scanner
            .send(Drain)
            .await
            .context("the scanner stopped before finishing the pass")?;
        sup.do_send(Shutdown { grace: SHUTDOWN_GRACE });
        Ok(summary)
    })
}

/// `draft-reconciler run`: the supervised service with the ops HTTP server, until a signal.
/// Returns the process exit code (0 after a graceful shutdown, 1 after an escalation).
pub fn run(
    settings: Settings,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> anyhow::Result<i32> {
    let sys = System::new();
    sys.block_on(async move {
        let listen = settings.ops.listen;
        let webhook = settings.webhook.listen;
        let console = settings.console.listen;
        let interval = settings.job.interval;
        let health = Health::new(interval);
        let env = build_env(settings, health.clone()).await?;
        if let Some(addr) = listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("ops.listen: cannot listen on {addr}"))?;
            tracing::info!(%addr, "ops HTTP listening (/metrics, /healthz, /readyz)");
            let ready = crate::ops::mongo_ping(env.store.clone());
            actix_rt::spawn(crate::ops::serve(listener, health.clone(), prometheus.clone(), ready));
        }
        if let Some(addr) = console {
            let listener = crate::console::bind(addr).await?;
            let console = crate::console::Console::new(env.clone(), Some(health.clone())).await?;
            tracing::info!(%addr, "operator's console listening");
            actix_rt::spawn(crate::console::serve(listener, console, std::future::pending()));
        }
        if let Some(addr) = webhook {
            let listener = crate::webhook::bind(addr).await?;
            tracing::info!(%addr, path = crate::webhook::PATH, "PhonePe webhook listening");
            actix_rt::spawn(crate::webhook::serve(listener, env.clone(), std::future::pending()));
        }
        if let Some(handle) = prometheus {
            actix_rt::spawn(crate::telemetry::run_upkeep(handle, Duration::from_secs(5)));
        }
        if let Some(db) = env.budget.shared_db() {
            actix_rt::spawn(crate::actors::rate_limiter::shared::heartbeats(db.clone()));
        }
        actix_rt::spawn(crate::refund::poll_forever(env.clone()));
        actix_rt::spawn(crate::settlement::gauge::gauge_forever(env.clone()));
        let (sup, _) = start(env, Mode::Run);
        actix_rt::spawn(on_signals(sup));
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(sys.run_with_code()?)
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once.
async fn on_signals(sup: Addr<Supervisor>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: graceful shutdown (send it again to exit at once)");
    sup.do_send(Shutdown { grace: SHUTDOWN_GRACE });
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now; leases will expire");
    std::process::exit(130);
}

/// Run a command that needs no configuration (`console hash-password`); `None` for the others.
pub fn without_settings(command: &crate::cli::Command) -> Option<u8> {
    use crate::cli::{Command, ConsoleCommand};
    match command {
        Command::Console(ConsoleCommand::HashPassword) => Some(crate::console::hash_password_cli()),
        _ => None,
    }
}

/// Run one CLI command with validated settings; returns the process exit code.
pub fn execute(command: crate::cli::Command, settings: Settings) -> anyhow::Result<u8> {
    use crate::cli::Command;
    match command {
        Command::Config => {
            print!("{}", settings.redacted_toml());
            Ok(0)
        }
        Command::Run => {
            crate::telemetry::init_tracing(&settings.log);
            let prometheus = crate::telemetry::install_prometheus().context("installing the metrics recorder")?;
            crate::telemetry::record_settings(&settings.job);
            let code = run(settings, Some(prometheus))?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Once => {
            crate::telemetry::init_tracing(&settings.log);
            let summary = once(settings)?;
            println!("{summary}");
            Ok(0)
        }
        Command::Check {
            merchant_transaction_id,
            apply,
        } => {
            crate::telemetry::init_tracing(&settings.log);
            crate::check::check(settings, &merchant_transaction_id, apply)
        }
        Command::Review(cmd) => {
            crate::telemetry::init_tracing_stderr(&settings.log);
            crate::review::execute(cmd, settings)
        }
        Command::Events(cmd) => {
            crate::telemetry::init_tracing_stderr(&settings.log);
            crate::events::cli::execute(cmd, settings)
        }
        Command::Settlement(cmd) => {
            use crate::cli::SettlementCommand;
            use crate::settlement::report_cmd::Format;
            crate::telemetry::init_tracing_stderr(&settings.log);
            match cmd {
                SettlementCommand::Import { files, json } => crate::settlement::import::execute(files, json, settings),
                SettlementCommand::Report { from, to, json, csv } => {
                    let format = match (json, csv) {
                        (true, _) => Format::Json,
                        (_, true) => Format::Csv,
                        _ => Format::Table,
                    };
                    crate::settlement::report_cmd::report(from, to, format, settings)
                }
            }
        }
        Command::Selftest => {
            crate::telemetry::init_tracing(&settings.log);
            crate::check::selftest(settings)
        }
        Command::Console(crate::cli::ConsoleCommand::Serve) => {
            crate::telemetry::init_tracing(&settings.log);
            if settings.console.listen.is_none() {
                eprintln!(
                    "draft-reconciler: console.listen is not set (e.g. RECONCILER_CONSOLE__LISTEN=127.0.0.1:9466)"
                );
                return Ok(2);
            }
            crate::console::serve_alone(settings)
        }
        Command::Console(crate::cli::ConsoleCommand::HashPassword) => Ok(crate::console::hash_password_cli()),
    }
}
