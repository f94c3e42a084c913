//! Unit tests of `src/telemetry.rs`: every family renders, described, with real buckets.

use super::*;

#[test]
fn every_family_renders_with_help_and_histograms_with_buckets() {
    let recorder = prometheus_builder().expect("buckets are non-empty").build_recorder();
    metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        initialize_metrics();
        metrics::counter!(names::ORDERS_SETTLED, labels::OUTCOME => labels::outcome::CONFIRMED).increment(1);
        metrics::counter!(names::PHONEPE_REQUESTS, labels::API => labels::phonepe_api::STATUS, labels::CODE => "PAYMENT_SUCCESS").increment(1);
        metrics::histogram!(names::PHONEPE_REQUEST_DURATION, labels::API => labels::phonepe_api::STATUS).record(0.042);
        metrics::counter!(names::PHONEPE_API_ERRORS, labels::KIND => labels::api_error::TIMEOUT).increment(1);
        metrics::counter!(names::PHONEPE_RATE_LIMITED).increment(1);
        metrics::histogram!(names::RATE_LIMIT_WAIT).record(2.0);
        metrics::counter!(names::STOCK_COMMIT_FAILURES, labels::REASON => "insufficient_stock").increment(1);
        metrics::counter!(names::ACTOR_RESTARTS, labels::ACTOR => "scanner").increment(1);
        metrics::counter!(names::SCAN_RUNS, labels::RESULT => labels::scan::OK).increment(1);
        metrics::gauge!(names::LAST_SUCCESSFUL_SCAN).set(1.7e9);
        metrics::gauge!(names::ELIGIBLE_BACKLOG).set(3.0);
        metrics::gauge!(names::NEEDS_REVIEW_ORDERS).set(1.0);
        metrics::gauge!(names::CIRCUIT_OPEN).set(1.0);
        // Set by the heartbeat of a running service (`actors/rate_limiter/shared.rs`).
        metrics::gauge!(names::BUDGET_INSTANCES).set(2.0);
        // Set by each pass of the refund poller (`src/refund.rs`).
        metrics::gauge!(names::REFUNDS_PENDING).set(1.0);
        metrics::gauge!(names::REFUND_OLDEST_PENDING).set(60.0);
        // Set and counted by the EventSender (`src/events/send.rs`).
        metrics::counter!(names::NOTIFICATIONS, labels::RESULT => labels::event_result::DELIVERED).increment(1);
        // Set by the settlement gauge pass of a running service (`settlement/gauge.rs`).
        metrics::gauge!(names::SETTLEMENT_DISCREPANCIES, labels::KIND => "not_settled").set(1.0);
        record_settings(&crate::config::Settings::for_tests("mongodb://h:1/db", "http://h").job);
    });
    let text = recorder.handle().render();

    for name in names::ALL {
        assert!(name.starts_with("reconciler_"), "{name}");
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}:\n{text}");
    }
    assert!(
        text.contains("# TYPE reconciler_phonepe_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_phonepe_request_duration_seconds_bucket{api=\"status\",le=\"0.05\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_phonepe_request_duration_seconds_bucket{api=\"status\",le=\"0.025\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_rate_limit_wait_seconds_bucket{le=\"120\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_rate_limit_wait_seconds_bucket{le=\"+Inf\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_orders_settled_total{outcome=\"confirmed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_orders_settled_total{outcome=\"cancelled\"} 0"),
        "zeroed: {text}"
    );
    assert!(
        text.contains("reconciler_scan_runs_total{result=\"error\"} 0"),
        "zeroed: {text}"
    );
    let build = format!("reconciler_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&build), "{text}");
    assert!(text.contains("reconciler_circuit_open 1"), "{text}");
}

#[test]
fn api_error_kinds_are_the_labels_the_reconciler_records() {
    use crate::domain::{StatusError, TransientKind};
    let recorded: Vec<&str> = [
        TransientKind::Server,
        TransientKind::Timeout,
        TransientKind::Connection,
        TransientKind::Malformed,
        TransientKind::UnknownCode,
    ]
    .into_iter()
    .map(|kind| {
        StatusError::Transient {
            kind,
            detail: String::new(),
        }
        .kind_label()
    })
    .chain([
        StatusError::Rejected {
            code: "AUTHORIZATION_FAILED".into(),
            http_status: 401,
        }
        .kind_label(),
        StatusError::Refused {
            code: "BAD_REQUEST".into(),
            http_status: 400,
        }
        .kind_label(),
    ])
    .collect();
    assert_eq!(recorded, labels::api_error::ALL);
}

/// A `MakeWriter` collecting everything written into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'w self) -> Buffer {
        self.clone()
    }
}

#[test]
fn json_lines_carry_the_order_span_fields_and_respect_the_level() {
    let buffer = Buffer::default();
    let log = LogSettings {
        level: "info".into(),
        format: LogFormat::Json,
    };
    tracing::subscriber::with_default(subscriber(&log, false, buffer.clone()), || {
        let order = tracing::info_span!("order", merchantTransactionId = "MT123");
        let _order = order.enter();
        let request = tracing::info_span!("phonepe_status", attempt = 2);
        let _request = request.enter();
        tracing::info!(code = "PAYMENT_PENDING", "payment still pending; rescheduling");
        tracing::debug!("filtered out at info");
    });
    let text = String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert_eq!(line["message"], "payment still pending; rescheduling");
    assert_eq!(line["code"], "PAYMENT_PENDING", "event fields are flattened: {line}");
    assert_eq!(line["spans"][0]["merchantTransactionId"], "MT123", "{line}");
    assert_eq!(line["span"]["attempt"], 2, "{line}");
}

#[test]
fn init_tracing_twice_does_not_panic() {
    let log = LogSettings {
        level: "info".into(),
        format: LogFormat::Json,
    };
    init_tracing(&log);
    init_tracing(&LogSettings {
        format: LogFormat::Pretty,
        ..log
    });
}
