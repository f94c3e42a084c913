//! The ops HTTP server (docs/operations.md, "Monitoring"): `GET /metrics` renders the Prometheus
//! handle (the exporter's own listener is not used: it would run on whichever arbiter installed
//! it), `/healthz` is liveness (the supervisor alive, the scanner ticked within three intervals),
//! `/readyz` readiness (MongoDB answers a `ping` within two seconds). [`Health`]'s checks take the
//! time as a parameter, and the readiness probe is a closure, so tests need no clock and no
//! database.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// How long `/readyz` waits for the readiness probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The scanner may miss this many intervals before `/healthz` fails.
const MISSED_TICKS_ALLOWED: u32 = 3;

/// Answers "is the dependency reachable?"; called once per `/readyz` request, bounded by
/// [`READY_TIMEOUT`].
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// Liveness state shared by the supervisor, the scanner and `/healthz`.
///
/// Starts with the supervisor alive and no tick yet; before the first tick it is healthy for
/// three intervals after [`Health::new`]. The supervisor calls `set_supervisor_alive(false)`
/// when it stops or escalates; the scanner calls [`Health::scanner_ticked`] on every tick.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    interval: Duration,
    started: Instant,
    last_tick: Mutex<Option<Instant>>,
    /// When the last scan completed without error (the console's status page; the same moment
    /// as `reconciler_last_successful_scan_timestamp_seconds`).
    last_scan: Mutex<Option<std::time::SystemTime>>,
    supervisor_alive: AtomicBool,
}

/// Why the process is not healthy; `Display` is the `/healthz` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("supervisor is not running")]
    SupervisorDown,
    #[error("scanner has not ticked for {}s (interval {}s)", .since.as_secs(), .interval.as_secs())]
    ScannerStalled { since: Duration, interval: Duration },
}

impl Health {
    /// `interval` is the scanner's tick interval (`job.interval_secs`).
    pub fn new(interval: Duration) -> Health {
        Health {
            inner: Arc::new(HealthInner {
                interval,
                started: Instant::now(),
                last_tick: Mutex::new(None),
                last_scan: Mutex::new(None),
                supervisor_alive: AtomicBool::new(true),
            }),
        }
    }

    /// Record a scanner tick now.
    pub fn scanner_ticked(&self) {
        self.scanner_ticked_at(Instant::now());
    }

    /// Record a scanner tick at `at` (tests construct times instead of sleeping).
    pub fn scanner_ticked_at(&self, at: Instant) {
        *self
            .inner
            .last_tick
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(at);
    }

    /// Record a scan that completed without error, now.
    pub fn scan_succeeded(&self) {
        *self.inner.last_scan.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::SystemTime::now());
    }

    /// When the last scan completed without error in this process, if one did.
    pub fn last_scan(&self) -> Option<std::time::SystemTime> {
        *self.inner.last_scan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scanner's tick interval (`job.interval_secs`).
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    pub fn set_supervisor_alive(&self, alive: bool) {
        self.inner.supervisor_alive.store(alive, Ordering::SeqCst);
    }

    pub fn is_healthy(&self) -> bool {
        self.check_at(Instant::now()).is_ok()
    }

    /// Healthy at `now`: supervisor alive, and the last tick (or the start, before the first
    /// tick) no more than three intervals before `now`.
    pub fn check_at(&self, now: Instant) -> Result<(), Unhealthy> {
        if !self.inner.supervisor_alive.load(Ordering::SeqCst) {
            return Err(Unhealthy::SupervisorDown);
        }
        let last = self
            .inner
            .last_tick
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .unwrap_or(self.inner.started);
        let since = now.saturating_duration_since(last);
        let interval = self.inner.interval;
        if since > interval.saturating_mul(MISSED_TICKS_ALLOWED) {
            return Err(Unhealthy::ScannerStalled { since, interval });
        }
        Ok(())
    }
}

/// A readiness probe that runs `{ping: 1}` against the store's database.
pub fn mongo_ping(store: crate::store::Store) -> ReadinessCheck {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.ping().await.is_ok() })
    })
}

#[derive(Clone)]
struct OpsState {
    health: Health,
    prometheus: Option<PrometheusHandle>,
    ready: ReadinessCheck,
    ready_timeout: Duration,
}

/// The three routes, for embedding or for [`serve`].
pub fn router(health: Health, prometheus: Option<PrometheusHandle>, ready: ReadinessCheck) -> Router {
    router_with_timeout(health, prometheus, ready, READY_TIMEOUT)
}

fn router_with_timeout(
    health: Health,
    prometheus: Option<PrometheusHandle>,
    ready: ReadinessCheck,
    ready_timeout: Duration,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(OpsState {
            health,
            prometheus,
            ready,
            ready_timeout,
        })
}

/// Serve the ops routes on `listener` until the future is dropped (or the task aborted).
pub async fn serve(
    listener: TcpListener,
    health: Health,
    prometheus: Option<PrometheusHandle>,
    ready: ReadinessCheck,
) -> std::io::Result<()> {
    serve_with_shutdown(listener, health, prometheus, ready, std::future::pending()).await
}

/// [`serve`], returning once `shutdown` completes and in-flight requests are answered.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    health: Health,
    prometheus: Option<PrometheusHandle>,
    ready: ReadinessCheck,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(health, prometheus, ready);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(state): State<OpsState>) -> Response {
    match &state.prometheus {
        Some(handle) => {
            let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
            (StatusCode::OK, content_type, handle.render()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled in this process\n").into_response(),
    }
}

async fn healthz(State(state): State<OpsState>) -> Response {
    match state.health.check_at(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn readyz(State(state): State<OpsState>) -> Response {
    match tokio::time::timeout(state.ready_timeout, (state.ready)()).await {
        Ok(true) => (StatusCode::OK, "ok\n").into_response(),
        Ok(false) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "mongodb unreachable\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[test]
    fn healthy_for_three_intervals_after_start_then_stalled_without_ticks() {
        let health = Health::new(INTERVAL);
        let start = Instant::now();
        assert!(health.is_healthy());
        assert_eq!(health.check_at(start + INTERVAL * 2), Ok(()));
        assert!(matches!(
            health.check_at(start + INTERVAL * 4),
            Err(Unhealthy::ScannerStalled { .. })
        ));
    }

    #[test]
    fn healthz_flips_when_ticks_stop_and_recovers_when_they_resume() {
        let health = Health::new(INTERVAL);
        let t0 = Instant::now() + INTERVAL * 10;
        health.scanner_ticked_at(t0);
        assert_eq!(
            health.check_at(t0 + INTERVAL * 3),
            Ok(()),
            "exactly three intervals is still fine"
        );
        let stalled = health.check_at(t0 + INTERVAL * 3 + Duration::from_millis(1));
        assert!(matches!(stalled, Err(Unhealthy::ScannerStalled { .. })), "{stalled:?}");
        health.scanner_ticked_at(t0 + INTERVAL * 5);
        assert_eq!(health.check_at(t0 + INTERVAL * 6), Ok(()));
    }

    #[test]
    fn healthz_fails_while_the_supervisor_is_down() {
        let health = Health::new(INTERVAL);
        health.scanner_ticked();
        health.clone().set_supervisor_alive(false);
        assert_eq!(health.check_at(Instant::now()), Err(Unhealthy::SupervisorDown));
        assert!(!health.is_healthy());
        health.set_supervisor_alive(true);
        assert!(health.is_healthy());
    }

    fn ready_when(flag: Arc<AtomicBool>) -> ReadinessCheck {
        Arc::new(move || {
            let ok = flag.load(Ordering::SeqCst);
            Box::pin(async move { ok })
        })
    }

    async fn spawn(app: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn get(url: String) -> (u16, Option<String>, String) {
        let response = reqwest::get(url).await.expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, content_type, response.text().await.expect("body"))
    }

    #[tokio::test]
    async fn serves_metrics_healthz_and_readyz() {
        let recorder = crate::telemetry::prometheus_builder()
            .expect("buckets")
            .build_recorder();
        metrics::with_local_recorder(&recorder, || {
            crate::telemetry::describe_metrics();
            metrics::counter!(crate::telemetry::names::SCAN_RUNS, crate::telemetry::labels::RESULT => crate::telemetry::labels::scan::OK).increment(2);
        });
        let health = Health::new(Duration::from_millis(10));
        let db_up = Arc::new(AtomicBool::new(true));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(serve(
            listener,
            health.clone(),
            Some(recorder.handle()),
            ready_when(db_up.clone()),
        ));

        let (status, content_type, body) = get(format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(body.contains("reconciler_scan_runs_total{result=\"ok\"} 2"), "{body}");
        assert!(body.contains("# HELP reconciler_scan_runs_total"), "{body}");

        // A tick "in the future" keeps it healthy however slow this machine is.
        health.scanner_ticked_at(Instant::now() + Duration::from_secs(3600));
        assert_eq!(get(format!("{base}/healthz")).await, (200, ct_plain(), "ok\n".into()));
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("up for a second");
        health.scanner_ticked_at(long_ago);
        let (status, _, body) = get(format!("{base}/healthz")).await;
        assert_eq!(status, 503);
        assert!(body.starts_with("scanner has not ticked for 1s"), "{body}");
        health.set_supervisor_alive(false);
        assert_eq!(
            get(format!("{base}/healthz")).await,
            (503, ct_plain(), "supervisor is not running\n".into())
        );

        assert_eq!(get(format!("{base}/readyz")).await.0, 200);
        db_up.store(false, Ordering::SeqCst);
        assert_eq!(
            get(format!("{base}/readyz")).await,
            (503, ct_plain(), "mongodb unreachable\n".into())
        );
        assert_eq!(get(format!("{base}/nope")).await.0, 404);
        server.abort();
    }

    fn ct_plain() -> Option<String> {
        Some("text/plain; charset=utf-8".into())
    }

    #[tokio::test]
    async fn readyz_fails_when_the_probe_hangs_and_metrics_404_when_disabled() {
        let hang: ReadinessCheck = Arc::new(|| Box::pin(std::future::pending::<bool>()));
        let app = router_with_timeout(Health::new(INTERVAL), None, hang, Duration::from_millis(50));
        let base = spawn(app).await;
        assert_eq!(get(format!("{base}/readyz")).await.0, 503);
        assert_eq!(get(format!("{base}/metrics")).await.0, 404);
    }

    #[tokio::test]
    async fn serve_with_shutdown_returns_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ready: ReadinessCheck = Arc::new(|| Box::pin(async { true }));
        let server = tokio::spawn(serve_with_shutdown(
            listener,
            Health::new(INTERVAL),
            None,
            ready,
            async {
                let _ = rx.await;
            },
        ));
        tx.send(()).expect("server is waiting");
        let result = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("stops promptly");
        assert!(matches!(result, Ok(Ok(()))));
    }
}
