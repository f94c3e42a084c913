//! Wiring: from validated settings to a running actor system (docs/architecture.md, "The
//! actors"). The shared environment is `setup.rs`'s; [`run`] starts the Supervisor, the ops, webhook
//! and console listeners and the background passes and waits for a signal; [`once`] drains what is
//! eligible now.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;

use crate::actors::scanner::{Drain, Mode};
use crate::actors::supervisor::Shutdown;
use crate::actors::{Env, Summary, Supervisor, Wiring};
use crate::config::Settings;
use crate::ops::Health;
use crate::setup::build_env;

/// How long shutdown waits for in-flight orders before leaving them to their leases.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
