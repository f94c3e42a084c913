//! Logs and metrics, set up once at start (docs/operations.md, "Logs" and "Metrics"). Logs are
//! pretty on a terminal and one JSON object per line under PM2/systemd, carrying their spans'
//! fields. Every metric family's name is a constant in [`names`] and every label value a small
//! fixed set ([`labels`]): never an order id.

use std::io::IsTerminal;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use serde::{de::Error, Deserialize, Deserializer, Serialize};

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(deserialize_with = "filter_directive")]
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

fn filter_directive<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let level = String::deserialize(d)?;
    let parsed = EnvFilter::builder().parse(&level);
    let problem = |e| D::Error::custom(format!("is not a valid filter directive ({e}): {level:?}"));
    parsed.map_err(problem).map(|_| level.clone())
}

/// Install the global tracing subscriber writing to stdout. A second call is a no-op.
pub fn init_tracing(log: &LogSettings) {
    let pretty = match log.format {
        LogFormat::Pretty => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stdout().is_terminal(),
    };
    // Err only means a subscriber is already installed (tests, a second call): keep that one.
    let _ = subscriber(log, pretty, std::io::stdout).try_init();
}

/// [`init_tracing`] to stderr, for commands whose stdout is their answer (`review list --json`).
pub fn init_tracing_stderr(log: &LogSettings) {
    let pretty = match log.format {
        LogFormat::Pretty => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stderr().is_terminal(),
    };
    let _ = subscriber(log, pretty, std::io::stderr).try_init();
}

/// The subscriber [`init_tracing`] installs, writing to `writer` (tests capture into a buffer).
fn subscriber<W>(log: &LogSettings, pretty: bool, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // `log.level` was validated when the settings were loaded; fall back rather than fail.
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if pretty {
        Box::new(builder.compact().with_ansi(true).finish())
    } else {
        // `span` holds the innermost span's fields, `spans` every enclosing span's: an order
        // span's merchantTransactionId shows up even on events inside a nested request span.
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .with_ansi(false)
                .finish(),
        )
    }
}

/// Metric family names (all prefixed `reconciler_`), the contract dashboards and alerts use.
pub mod names {
    /// Counter, label `result`: completed, failed — refunds PhonePe finished (`src/refund.rs`).
    pub const REFUNDS: &str = "reconciler_refunds_total";
    /// Gauge: orders whose refund is still pending at PhonePe (`paymentStatus: refund_pending`).
    pub const REFUNDS_PENDING: &str = "reconciler_refunds_pending";
    /// Gauge (seconds): how long the oldest pending refund has waited (0 when none).
    pub const REFUND_OLDEST_PENDING: &str = "reconciler_refund_oldest_pending_seconds";
    /// Gauge: pending refunds flagged for a person: asked about `refund::TRIES_TO_FLAG` times
    /// without a final answer (`reconciliation.refund.flagged`); still polled, hourly.
    pub const REFUNDS_FLAGGED: &str = "reconciler_refunds_flagged";
    /// Counter, label `outcome`: confirmed, cancelled, needs_review, already_processed.
    pub const ORDERS_SETTLED: &str = "reconciler_orders_settled_total";
    /// Counter, labels `api` ([`super::labels::phonepe_api`]) and `code`: every PhonePe call, by
    /// PhonePe's `code` (the refund's state for refund calls, `ERROR_<KIND>` for no usable answer).
    pub const PHONEPE_REQUESTS: &str = "reconciler_phonepe_requests_total";
    /// Histogram (seconds), label `api`: one PhonePe call, send to last body byte.
    pub const PHONEPE_REQUEST_DURATION: &str = "reconciler_phonepe_request_duration_seconds";
    /// Counter, label `kind`: see [`super::labels::api_error`].
    pub const PHONEPE_API_ERRORS: &str = "reconciler_phonepe_api_errors_total";
    /// Counter: HTTP 429 / TOO_MANY_REQUESTS answers.
    pub const PHONEPE_RATE_LIMITED: &str = "reconciler_phonepe_rate_limited_total";
    /// Histogram (seconds): time a reconciler waited for a rate-limit permit.
    pub const RATE_LIMIT_WAIT: &str = "reconciler_rate_limit_wait_seconds";
    /// Counter, label `reason`: see [`super::labels::commit_failure`].
    pub const STOCK_COMMIT_FAILURES: &str = "reconciler_stock_commit_failures_total";
    /// Counter, label `actor`: the restarted actor's name.
    pub const ACTOR_RESTARTS: &str = "reconciler_actor_restarts_total";
    /// Counter, label `result`: ok, error.
    pub const SCAN_RUNS: &str = "reconciler_scan_runs_total";
    /// Gauge (Unix seconds): when the last scan completed without error.
    pub const LAST_SUCCESSFUL_SCAN: &str = "reconciler_last_successful_scan_timestamp_seconds";
    /// Gauge: drafts eligible for reconciliation at the last scan.
    pub const ELIGIBLE_BACKLOG: &str = "reconciler_eligible_backlog";
    /// Gauge: orders currently parked in needs_review.
    pub const NEEDS_REVIEW_ORDERS: &str = "reconciler_needs_review_orders";
    /// Gauge: 1 while PhonePe calls are paused by the circuit breaker, else 0.
    pub const CIRCUIT_OPEN: &str = "reconciler_circuit_open";
    /// Gauge = 1, label `version`.
    pub const BUILD_INFO: &str = "reconciler_build_info";
    /// Gauge (seconds): `job.interval_secs`, so alerts can say "three intervals".
    pub const SCAN_INTERVAL: &str = "reconciler_scan_interval_seconds";
    /// Gauge: `job.rate_limit_per_minute`, the budget the PhonePe request rate is held under.
    pub const RATE_LIMIT_PER_MINUTE: &str = "reconciler_rate_limit_per_minute";
    /// Counter: payments PhonePe reported for orders that had left `draft` unpaid (cancelled, or
    /// parked without a payment), recorded and parked for a person.
    pub const LATE_PAYMENTS: &str = "reconciler_late_payments_total";
    /// Gauge: drafts older than the lookback, due, that the indexed eligible query cannot match
    /// (`createdAt` not a date, `paymentStatus` not pending); the sweep reconciles or parks them.
    pub const IRREGULAR_DRAFTS: &str = "reconciler_irregular_drafts";
    /// Gauge: orders excluded from reconciliation because the database refuses even their park
    /// (records in `reconciler_holds`, `store/refusals.rs`); each needs a person.
    pub const EXCLUDED_ORDERS: &str = "reconciler_excluded_orders";
    /// Gauge: orders whose status (or a draft's payment status) word differs from the mapped
    /// one only in case (`Draft` for `draft`): not reconciled; counted every 10 minutes.
    pub const STATUS_WORD_NEAR_MISSES: &str = "reconciler_status_word_near_misses";
    /// Gauge: late-payment watches due more than 10 minutes ago and still inside their window.
    pub const OVERDUE_WATCHES: &str = "reconciler_overdue_watches";
    /// Counter, labels `event` ([`super::labels::webhook_event`]) and `result`
    /// ([`super::labels::webhook_result`]): PhonePe callbacks received (`src/webhook.rs`).
    pub const WEBHOOKS: &str = "reconciler_webhooks_total";

    /// Gauge: instances of this merchant heard from in the last 30 s (sharing the budget).
    pub const BUDGET_INSTANCES: &str = "reconciler_budget_instances";
    /// Counter: PhonePe call permits this instance took from the shared budget.
    pub const BUDGET_PERMITS: &str = "reconciler_budget_permits_total";
    /// Counter: permits refused because the shared budget in MongoDB could not be read.
    pub const BUDGET_UNAVAILABLE: &str = "reconciler_budget_unavailable_total";

    /// Counter, labels `type` (the event type, e.g. `order.confirmed`) and `result`
    /// ([`super::labels::event_result`]): attempts to tell the shop (`events.url`).
    pub const EVENTS: &str = "reconciler_events_total";
    /// Gauge: events not delivered to the shop yet (state `pending`; 0 without `events.url`).
    pub const EVENTS_UNDELIVERED: &str = "reconciler_events_undelivered";
    /// Gauge: events given up on (state `failed`): the shop never answered 2xx within
    /// `events.retry_for_hours`; `events replay` sends them again.
    pub const EVENTS_FAILED: &str = "reconciler_events_failed";
    /// Gauge (seconds): age of the oldest event not delivered yet (0 when none).
    pub const EVENTS_OLDEST_UNDELIVERED: &str = "reconciler_events_oldest_undelivered_seconds";
    /// Counter, label `result` ([`super::labels::event_result`]): Slack copies
    /// (`notify.slack_url`).
    pub const NOTIFICATIONS: &str = "reconciler_notifications_total";

    /// Gauge, label `kind` (`settlement::matcher::Discrepancy`): open discrepancies between
    /// PhonePe's settlement reports and the orders, read from the database by the service.
    pub const SETTLEMENT_DISCREPANCIES: &str = "reconciler_settlement_discrepancies";

    /// Counter, label `result` ([`super::labels::console_login`]): sign-ins on the operator's
    /// console (`src/console`).
    pub const CONSOLE_LOGINS: &str = "reconciler_console_logins_total";
    /// Counter, labels `action` and `result` ([`super::labels::console_action`]): actions
    /// confirmed on the operator's console.
    pub const CONSOLE_ACTIONS: &str = "reconciler_console_actions_total";

    /// Every family, for tests, the dashboard check and the README.
    pub const ALL: [&str; 37] = [
        ORDERS_SETTLED,
        PHONEPE_REQUESTS,
        PHONEPE_REQUEST_DURATION,
        PHONEPE_API_ERRORS,
        PHONEPE_RATE_LIMITED,
        RATE_LIMIT_WAIT,
        STOCK_COMMIT_FAILURES,
        ACTOR_RESTARTS,
        SCAN_RUNS,
        LAST_SUCCESSFUL_SCAN,
        ELIGIBLE_BACKLOG,
        NEEDS_REVIEW_ORDERS,
        CIRCUIT_OPEN,
        BUILD_INFO,
        SCAN_INTERVAL,
        RATE_LIMIT_PER_MINUTE,
        LATE_PAYMENTS,
        IRREGULAR_DRAFTS,
        OVERDUE_WATCHES,
        EXCLUDED_ORDERS,
        STATUS_WORD_NEAR_MISSES,
        WEBHOOKS,
        BUDGET_INSTANCES,
        BUDGET_PERMITS,
        BUDGET_UNAVAILABLE,
        REFUNDS,
        REFUNDS_PENDING,
        REFUND_OLDEST_PENDING,
        REFUNDS_FLAGGED,
        EVENTS,
        EVENTS_UNDELIVERED,
        EVENTS_FAILED,
        EVENTS_OLDEST_UNDELIVERED,
        NOTIFICATIONS,
        CONSOLE_LOGINS,
        CONSOLE_ACTIONS,
        SETTLEMENT_DISCREPANCIES,
    ];
}

pub mod labels;

/// Buckets for PhonePe request latency, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets for rate-limit permit waits, in seconds (up to two minutes at 30 calls/min).
pub const RATE_LIMIT_WAIT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The exporter configuration: histograms with real buckets.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(names::PHONEPE_REQUEST_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(names::RATE_LIMIT_WAIT.into()), RATE_LIMIT_WAIT_BUCKETS)
}

/// Install the process-wide Prometheus recorder, describe every family, set build info and
/// zero the fixed label sets (so `rate()` works from the first scrape). Spawns nothing: run
/// [`run_upkeep`] and serve `handle.render()`. Fails if a global recorder is already installed.
pub fn install_prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = prometheus_builder()?.install_recorder()?;
    describe_metrics();
    initialize_metrics();
    Ok(handle)
}

/// Drive the recorder's upkeep forever (drains histogram buffers); spawn it next to the server.
pub async fn run_upkeep(handle: PrometheusHandle, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// HELP text and unit for every family, sent to the current recorder.
pub fn describe_metrics() {
    use names::*;
    describe_counter!(
        ORDERS_SETTLED,
        Unit::Count,
        "Orders settled by the reconciler, by outcome."
    );
    describe_counter!(
        PHONEPE_REQUESTS,
        Unit::Count,
        "PhonePe calls (status, refund, refund_status), by API and response code."
    );
    describe_histogram!(
        PHONEPE_REQUEST_DURATION,
        Unit::Seconds,
        "Latency of PhonePe calls, by API."
    );
    describe_counter!(
        PHONEPE_API_ERRORS,
        Unit::Count,
        "PhonePe calls that gave no usable answer, by kind."
    );
    describe_counter!(
        LATE_PAYMENTS,
        Unit::Count,
        "Payments PhonePe reported for orders that had left draft unpaid (cancelled, or parked without a payment): recorded and parked as needs_review."
    );
    describe_counter!(
        PHONEPE_RATE_LIMITED,
        Unit::Count,
        "PhonePe answers of 429 / TOO_MANY_REQUESTS."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        Unit::Seconds,
        "Time spent waiting for a PhonePe rate-limit permit."
    );
    describe_counter!(
        STOCK_COMMIT_FAILURES,
        Unit::Count,
        "Stock commits that did not apply, by reason."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        Unit::Count,
        "Actor restarts by the supervisor, by actor."
    );
    describe_counter!(SCAN_RUNS, Unit::Count, "Scanner passes, by result (ok or error).");
    describe_counter!(
        REFUNDS,
        Unit::Count,
        "Refunds PhonePe finished, by result (completed or failed)."
    );
    describe_gauge!(
        REFUNDS_PENDING,
        Unit::Count,
        "Orders whose refund is still pending at PhonePe."
    );
    describe_gauge!(
        REFUND_OLDEST_PENDING,
        Unit::Seconds,
        "How long the oldest pending refund has waited (0 when none)."
    );
    describe_gauge!(
        REFUNDS_FLAGGED,
        Unit::Count,
        "Pending refunds asked about too often without a final answer from PhonePe: a person should look."
    );
    describe_gauge!(
        LAST_SUCCESSFUL_SCAN,
        Unit::Seconds,
        "Unix time of the last scan that completed without error."
    );
    describe_gauge!(
        ELIGIBLE_BACKLOG,
        Unit::Count,
        "Draft orders eligible for reconciliation at the last scan."
    );
    describe_gauge!(
        IRREGULAR_DRAFTS,
        Unit::Count,
        "Drafts past the lookback whose createdAt or paymentStatus the indexed query cannot match (found by the sweep)."
    );
    describe_gauge!(
        OVERDUE_WATCHES,
        Unit::Count,
        "Late-payment watches due more than 10 minutes ago and still inside their window."
    );
    describe_gauge!(
        EXCLUDED_ORDERS,
        Unit::Count,
        "Orders excluded from reconciliation because the database refuses even their park (records in reconciler_holds)."
    );
    describe_gauge!(
        STATUS_WORD_NEAR_MISSES,
        Unit::Count,
        "Orders whose status word differs from the mapped one only in case (not reconciled)."
    );
    describe_gauge!(
        NEEDS_REVIEW_ORDERS,
        Unit::Count,
        "Orders parked in needs_review awaiting a person."
    );
    describe_gauge!(
        CIRCUIT_OPEN,
        "1 while PhonePe calls are paused after a configuration error, else 0."
    );
    describe_counter!(
        WEBHOOKS,
        Unit::Count,
        "PhonePe callbacks received on webhook.listen, by event and result."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label carries the running build.");
    describe_gauge!(
        SCAN_INTERVAL,
        Unit::Seconds,
        "Configured scan interval (job.interval_secs)."
    );
    describe_gauge!(
        RATE_LIMIT_PER_MINUTE,
        "Configured PhonePe status-call budget per rolling minute (job.rate_limit_per_minute)."
    );
    describe_gauge!(
        BUDGET_INSTANCES,
        Unit::Count,
        "Instances sharing this merchant's PhonePe budget heard from in the last 30 s."
    );
    describe_counter!(
        BUDGET_PERMITS,
        Unit::Count,
        "PhonePe call permits this instance took from the shared budget."
    );
    describe_counter!(
        EVENTS,
        Unit::Count,
        "Attempts to tell the shop about an order (events.url), by event type and result (delivered, retried, failed, expired)."
    );
    describe_gauge!(
        EVENTS_UNDELIVERED,
        Unit::Count,
        "Events not delivered to the shop yet (pending; 0 without events.url)."
    );
    describe_gauge!(
        EVENTS_FAILED,
        Unit::Count,
        "Events the shop never accepted within events.retry_for_hours (failed): replay them once the endpoint is fixed."
    );
    describe_gauge!(
        EVENTS_OLDEST_UNDELIVERED,
        Unit::Seconds,
        "Age of the oldest event not delivered to the shop yet (0 when none)."
    );
    describe_counter!(
        NOTIFICATIONS,
        Unit::Count,
        "Slack copies of the events a person acts on (notify.slack_url), by result."
    );
    describe_counter!(
        BUDGET_UNAVAILABLE,
        Unit::Count,
        "Permits refused because the shared budget in MongoDB could not be read (no call made)."
    );
    describe_counter!(
        CONSOLE_LOGINS,
        Unit::Count,
        "Sign-ins on the operator's console, by result."
    );
    describe_counter!(
        CONSOLE_ACTIONS,
        Unit::Count,
        "Console actions, by action and result (done, refused, error)."
    );
    describe_gauge!(
        SETTLEMENT_DISCREPANCIES,
        Unit::Count,
        "Open discrepancies between PhonePe's settlement reports and the orders, by kind."
    );
}

/// Publish the settings alerts and dashboards compare against (scan interval, PhonePe budget).
pub fn record_settings(job: &crate::config::JobSettings) {
    metrics::gauge!(names::SCAN_INTERVAL).set(job.interval.as_secs_f64());
    metrics::gauge!(names::RATE_LIMIT_PER_MINUTE).set(f64::from(job.rate_limit_per_minute));
}

/// Build info = 1, circuit closed, and the fixed label sets at zero.
fn initialize_metrics() {
    metrics::gauge!(names::BUILD_INFO, labels::VERSION => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(names::CIRCUIT_OPEN).set(0.0);
    metrics::counter!(names::PHONEPE_RATE_LIMITED).absolute(0);
    metrics::counter!(names::LATE_PAYMENTS).absolute(0);
    // The signature-failure alert's series exists from the first scrape (bad signatures are
    // always `event="unknown"`).
    metrics::counter!(names::WEBHOOKS, labels::EVENT => labels::webhook_event::UNKNOWN, labels::RESULT => labels::webhook_result::BAD_SIGNATURE).absolute(0);
    metrics::counter!(names::BUDGET_PERMITS).absolute(0);
    metrics::counter!(names::BUDGET_UNAVAILABLE).absolute(0);
    metrics::gauge!(names::IRREGULAR_DRAFTS).set(0.0);
    metrics::gauge!(names::REFUNDS_FLAGGED).set(0.0);
    for result in [labels::refund_result::COMPLETED, labels::refund_result::FAILED] {
        metrics::counter!(names::REFUNDS, labels::RESULT => result).absolute(0);
    }
    metrics::gauge!(names::OVERDUE_WATCHES).set(0.0);
    metrics::gauge!(names::EXCLUDED_ORDERS).set(0.0);
    metrics::gauge!(names::STATUS_WORD_NEAR_MISSES).set(0.0);
    metrics::gauge!(names::EVENTS_UNDELIVERED).set(0.0);
    metrics::gauge!(names::EVENTS_FAILED).set(0.0);
    metrics::gauge!(names::EVENTS_OLDEST_UNDELIVERED).set(0.0);
    // The failed-event alert's series exist from the first scrape, one per type.
    for ty in crate::domain::EventType::ALL {
        let ty = ty.as_str();
        metrics::counter!(names::EVENTS, labels::TYPE => ty, labels::RESULT => labels::event_result::FAILED)
            .absolute(0);
    }
    // Slack copies: the failed series exists from the first scrape, as for the shop's events.
    metrics::counter!(names::NOTIFICATIONS, labels::RESULT => labels::event_result::FAILED).absolute(0);
    for kind in crate::settlement::matcher::Discrepancy::ALL {
        metrics::gauge!(names::SETTLEMENT_DISCREPANCIES, labels::KIND => kind.as_str()).set(0.0);
    }
    for outcome in labels::outcome::ALL {
        metrics::counter!(names::ORDERS_SETTLED, labels::OUTCOME => outcome).absolute(0);
    }
    for result in [labels::scan::OK, labels::scan::ERROR] {
        metrics::counter!(names::SCAN_RUNS, labels::RESULT => result).absolute(0);
    }
    // Zeroed so the first error, 429 or restart is an increase Prometheus can see (a series
    // born at 1 has no previous sample, and `increase()` would miss it).
    for kind in labels::api_error::ALL {
        metrics::counter!(names::PHONEPE_API_ERRORS, labels::KIND => kind).absolute(0);
    }
    for reason in labels::commit_failure::ALL {
        metrics::counter!(names::STOCK_COMMIT_FAILURES, labels::REASON => reason).absolute(0);
    }
    for actor in labels::actor::ALL {
        metrics::counter!(names::ACTOR_RESTARTS, labels::ACTOR => actor).absolute(0);
    }
    for result in labels::console_login::ALL {
        metrics::counter!(names::CONSOLE_LOGINS, labels::RESULT => result).absolute(0);
    }
    for action in labels::console_action::ACTIONS {
        for result in labels::console_action::RESULTS {
            metrics::counter!(names::CONSOLE_ACTIONS, labels::ACTION => action, labels::RESULT => result).absolute(0);
        }
    }
}

#[cfg(test)]
mod tests;
