//! `phonepe-sim`: a local PhonePe status API, v1 and v2 (OAuth), for demos and manual tests (see
//! the library, `src/lib.rs`, for the behaviour and the `/__sim/` admin API; `POST /__sim/webhooks`
//! sends v1 or v2 webhooks). Parse flags, bind, print the base URL, serve.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use phonepe_sim::{serve, SimConfig, SimState, SimV2};

/// A local PhonePe status API (v1 and v2) with a scriptable admin API under /__sim/.
#[derive(Parser)]
#[command(name = "phonepe-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// The merchant id the simulator accepts.
    #[arg(long, default_value = "MERCHANTUAT")]
    merchant_id: String,
    /// The salt key X-VERIFY must be computed with (default: the test key of docs/phonepe.md).
    #[arg(
        long,
        env = "PHONEPE_SALT_KEY",
        hide_env_values = true,
        hide_default_value = true,
        default_value = "test-salt-key"
    )]
    salt_key: String,
    /// The salt index X-VERIFY must end with.
    #[arg(long, default_value_t = 1)]
    salt_index: u32,
    /// PhonePe's path prefix before /pg/v1/... ("" for none).
    #[arg(long, default_value = "/apis/pg-sandbox")]
    prefix: String,
    /// Status calls allowed per rolling minute; 0 = unlimited.
    #[arg(long, default_value_t = 30)]
    rate_limit_per_minute: u32,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// API v2: the client id the token endpoint accepts.
    #[arg(long, default_value = "TESTCLIENT")]
    client_id: String,
    /// API v2: the client secret the token endpoint accepts.
    #[arg(
        long,
        env = "PHONEPE_CLIENT_SECRET",
        hide_env_values = true,
        hide_default_value = true,
        default_value = "test-client-secret"
    )]
    client_secret: String,
    /// API v2: the client version the token endpoint accepts.
    #[arg(long, default_value = "1")]
    client_version: String,
    /// API v2: lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    token_lifetime_secs: u64,
    /// API v2: the dashboard username webhooks are signed with.
    #[arg(long, default_value = "webhook-user")]
    webhook_username: String,
    /// API v2: the dashboard password webhooks are signed with.
    #[arg(long, hide_default_value = true, default_value = "webhook-pass")]
    webhook_password: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let v2 = SimV2 {
        client_id: args.client_id,
        client_secret: args.client_secret,
        client_version: args.client_version,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        webhook_username: args.webhook_username,
        webhook_password: args.webhook_password,
    };
    let state = SimState::with_v2(
        SimConfig {
            merchant_id: args.merchant_id,
            salt_key: args.salt_key,
            salt_index: args.salt_index,
            path_prefix: args.prefix,
            rate_limit_per_minute: (args.rate_limit_per_minute > 0).then_some(args.rate_limit_per_minute),
            latency: Duration::from_millis(args.latency_ms),
        },
        v2,
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("phonepe-sim listening on http://{addr}{}", state.config().path_prefix);
    serve(listener, state).await.context("serving")
}
