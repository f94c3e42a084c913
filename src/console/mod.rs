//! The operator's console: the review queue as server-rendered pages for a shop's staff
//! (docs/operations.md, "Operator's console"), on its own listener (`console.listen`) inside `run`
//! or alone (`draft-reconciler console serve`), plain HTTP behind the shop's TLS proxy.
//!
//! Its buttons move money, so it is built as a security surface: operators log in
//! (`password.rs`, throttled by `throttle.rs`) to a server-side session in MongoDB
//! (`session.rs`); every state-changing request is a POST carrying the session's CSRF token;
//! GETs never change anything and never call PhonePe; a POST from another site's page (the
//! login form included) is refused before it is read (`origin.rs`). The actions are `review
//! resolve`'s own function ([`crate::review::resolve`]). Every page is escaped by maud
//! (`html.rs`) and served with a strict Content-Security-Policy; only the documented paths
//! answer, anything else is a plain 404.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::actors::Env;
use crate::listener::{Bounded, CONSOLE_CONNECTIONS};
use crate::ops::Health;
use crate::telemetry::{labels, names};

mod action;
mod auth;
mod events;
mod html;
mod order;
mod origin;
pub mod password;
mod queue;
pub mod session;
pub mod settings;
mod status;
pub mod throttle;

/// The largest request body the console reads (a login or an action's note).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Sent with every answer: nothing but our own stylesheet loads, no script runs, no page frames
/// us, forms post only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every handler shares.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

struct Inner {
    env: Arc<Env>,
    /// This process's service health when the console runs inside `run`; `None` when alone.
    service: Option<Health>,
    sessions: session::Sessions,
    passwords: password::Passwords,
    throttle: throttle::Throttle,
    trusted_proxies: Vec<IpAddr>,
}

impl Console {
    /// The console of `env` (its `[console]` settings), creating the sessions' TTL index. Build
    /// it on the runtime that serves it (the MongoDB client belongs to that runtime).
    pub async fn new(env: Arc<Env>, service: Option<Health>) -> anyhow::Result<Console> {
        let c = &env.settings.console;
        let sessions = session::Sessions::new(env.store.database(), c.secure_cookies);
        sessions
            .ensure_index()
            .await
            .with_context(|| format!("creating the {} TTL index", session::COLLECTION))?;
        let passwords = password::Passwords::new(&c.users)?;
        let trusted_proxies = c.trusted_proxies.clone();
        Ok(Console(Arc::new(Inner {
            env,
            service,
            sessions,
            passwords,
            throttle: throttle::Throttle::default(),
            trusted_proxies,
        })))
    }
}

/// Every documented path; anything else answers the plain 404 page.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(queue::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/status", get(status::page))
        .route("/orders/{id}", get(order::page))
        .route("/orders/{id}/{action}", get(action::confirm).post(action::act))
        .route("/console.css", get(html::stylesheet))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Before any form is read: a POST from another site's page (login CSRF) is refused.
        .layer(axum::middleware::from_fn(origin::same_origin))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// Bind `console.listen` (an error names the key).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("console.listen: cannot listen on {addr}"))
}

/// Serve until `shutdown` resolves. Run it on the runtime that built the console.
pub async fn serve(
    listener: TcpListener,
    console: Console,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer's address is the client's unless it is a trusted proxy (`auth::client_address`).
    let app = router(console).into_make_service_with_connect_info::<crate::listener::Peer>();
    // Bounded: idle or half-sent connections cannot eat the process's descriptors.
    axum::serve(Bounded::new(listener, CONSOLE_CONNECTIONS), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `draft-reconciler console serve`: the console alone (no scanner, no refund poller) until
/// SIGTERM/SIGINT.
pub fn serve_alone(settings: crate::config::Settings) -> anyhow::Result<u8> {
    let Some(addr) = settings.console.listen else {
        anyhow::bail!("console.listen is not set (e.g. RECONCILER_CONSOLE__LISTEN=127.0.0.1:9466)");
    };
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let health = Health::new(settings.job.interval);
        let env = crate::setup::build_env(settings, health).await?;
        let console = Console::new(env, None).await?;
        let listener = bind(addr).await?;
        tracing::info!(%addr, "operator's console listening (alone)");
        serve(listener, console, signal())
            .await
            .context("serving the console")?;
        Ok(0)
    })
}

/// The first SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: the console stops");
}

/// `draft-reconciler console hash-password`: one line from stdin, its argon2id PHC string on
/// stdout. Needs no configuration.
pub fn hash_password_cli() -> u8 {
    use std::io::BufRead as _;
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("draft-reconciler: cannot read the password from stdin: {e}");
        return 1;
    }
    // Only the line ending is not the password: spaces are kept.
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("draft-reconciler: no password on stdin (one line, e.g. `read -rs PW; printf '%s\\n' \"$PW\" | draft-reconciler console hash-password`)");
        return 2;
    }
    match password::hash(password) {
        Ok(phc) => {
            println!("{phc}");
            0
        }
        Err(e) => {
            eprintln!("draft-reconciler: cannot hash the password: {e}");
            1
        }
    }
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}

async fn not_found() -> Response {
    html::plain(StatusCode::NOT_FOUND, "Not found", "There is no page here.")
}

async fn method_not_allowed() -> Response {
    html::plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not allowed",
        "This page does not answer that method.",
    )
}

/// A failure the operator cannot fix from the page: logged, answered without detail.
fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: {what} failed");
    html::plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The service could not do this now; the details are in its log. Try again in a moment.",
    )
}

fn count_login(result: &'static str) {
    metrics::counter!(names::CONSOLE_LOGINS, labels::RESULT => result).increment(1);
}

fn count_action(action: &'static str, result: &'static str) {
    metrics::counter!(names::CONSOLE_ACTIONS, labels::ACTION => action, labels::RESULT => result).increment(1);
}

impl IntoResponse for html::Page {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    }
}
