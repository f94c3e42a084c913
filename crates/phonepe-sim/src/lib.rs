//! `phonepe-sim`: a local PhonePe (status, OAuth, refunds and callbacks, v1 and v2) for
//! draft-reconciler's tests, benchmarks and demo, with a scripted answer per transaction
//! ([`Answer`]) and PhonePe's failure modes (401, 429 beyond a rolling-minute budget, 5xx, slow and
//! malformed answers). A crate of its own that never uses the product's code: its signatures and
//! JSON are its own reading of PhonePe's documentation, so a test against it checks the client,
//! not the client's reading of itself. Routes and the `/__sim/` admin API: docs/phonepe.md,
//! "phonepe-sim". [`SimHandle::spawn`] runs it on its own thread and runtime, so it outlives the
//! actix `System`s tests create; dropping the handle stops it.

mod answer;
mod answer_v2;
mod checksum;
mod ledger;
mod refund;
mod reply;
mod server;
mod state;
mod v2;
mod wire;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

pub use answer::{Answer, ScriptedState};
pub use ledger::RefundAnswer;
pub use server::{router, serve};
pub use state::{Call, SimState, TokenStats};
pub use v2::{deliver, Webhook, WebhookVersion};

/// How the simulator identifies the merchant and behaves.
#[derive(Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub merchant_id: String,
    /// Never shown by the simulator (not in `Debug`, not in the admin API).
    pub salt_key: String,
    pub salt_index: u32,
    /// PhonePe's own prefix before `/pg/v1/...`, e.g. `/apis/hermes`, or "" for none.
    pub path_prefix: String,
    /// `None` = unlimited.
    pub rate_limit_per_minute: Option<u32>,
    /// Default delay before every answer (an answer's `delayMs` overrides it).
    pub latency: Duration,
}

impl Default for SimConfig {
    /// The test merchant of docs/phonepe.md on the UAT sandbox prefix, unlimited and instant (tests set
    /// a limit when they test it; the binary defaults to 30 per minute).
    fn default() -> Self {
        SimConfig {
            merchant_id: "MERCHANTUAT".into(),
            salt_key: "test-salt-key".into(),
            salt_index: 1,
            path_prefix: "/apis/pg-sandbox".into(),
            rate_limit_per_minute: None,
            latency: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("merchant_id", &self.merchant_id)
            .field("salt_key", &"***")
            .field("salt_index", &self.salt_index)
            .field("path_prefix", &self.path_prefix)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("latency", &self.latency)
            .finish()
    }
}

/// API v2 identity of the simulated merchant. Secrets are never shown (`Debug`, admin API).
#[derive(Clone, PartialEq, Eq)]
pub struct SimV2 {
    pub client_id: String,
    pub client_secret: String,
    pub client_version: String,
    /// How long an issued token is valid (whole seconds, at least 1).
    pub token_lifetime: Duration,
    /// The dashboard credentials v2 webhooks are signed with.
    pub webhook_username: String,
    pub webhook_password: String,
}

impl Default for SimV2 {
    fn default() -> Self {
        SimV2 {
            client_id: "TESTCLIENT".into(),
            client_secret: "test-client-secret".into(),
            client_version: "1".into(),
            token_lifetime: Duration::from_secs(3600),
            webhook_username: "webhook-user".into(),
            webhook_password: "webhook-pass".into(),
        }
    }
}

impl std::fmt::Debug for SimV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimV2")
            .field("client_id", &self.client_id)
            .field("client_version", &self.client_version)
            .field("token_lifetime", &self.token_lifetime)
            .field("webhook_username", &self.webhook_username)
            .finish_non_exhaustive()
    }
}

/// A simulator running on 127.0.0.1 on its own thread; stopped when dropped.
pub struct SimHandle {
    addr: SocketAddr,
    state: SimState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// Bind `127.0.0.1:0` and serve on a new OS thread with its own current-thread runtime.
    pub fn spawn(cfg: SimConfig) -> std::io::Result<SimHandle> {
        Self::spawn_with(cfg, SimV2::default())
    }

    /// [`SimHandle::spawn`] with these API v2 credentials.
    pub fn spawn_with(cfg: SimConfig, v2: SimV2) -> std::io::Result<SimHandle> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let state = SimState::with_v2(cfg, v2);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("phonepe-sim-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("phonepe-sim could not adopt its listener: {e}"),
                    };
                    // Not a graceful shutdown on purpose: a scripted 60 s delay must not hold up a
                    // test's teardown. Dropping the server future closes the listener; dropping the
                    // runtime below cancels the connections still being answered.
                    tokio::select! {
                        result = serve(listener, served) => {
                            if let Err(e) = result {
                                eprintln!("phonepe-sim stopped serving: {e}");
                            }
                        }
                        _ = stop => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(SimHandle {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to configure as the client's `base_url`: `http://127.0.0.1:PORT{prefix}`.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.state.config().path_prefix)
    }

    /// What to configure as the v2 `oauth_base_url` (the sandbox serves both from one root).
    pub fn oauth_base_url(&self) -> String {
        self.base_url()
    }

    /// The simulator's state, for everything the shorthands below do not cover.
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Script `mtid`'s answers (in order, the last repeats).
    ///
    /// # Panics
    /// On an invalid script (empty, or an answer [`Answer::validate`] refuses): this is test
    /// support, and a test with a broken script should fail loudly. Use
    /// [`SimState::script`] for a `Result`.
    pub fn script(&self, mtid: &str, answers: Vec<Answer>) {
        if let Err(e) = self.state.script(mtid, answers) {
            panic!("invalid phonepe-sim script for {mtid}: {e}");
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls()
    }

    pub fn clear_calls(&self) {
        self.state.clear_calls();
    }

    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        self.state.set_rate_limit(per_minute);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.set_latency(latency);
    }

    /// An outage: every call answers `status` until `set_down(None)`.
    pub fn set_down(&self, status: Option<u16>) {
        self.state.set_down(status);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
