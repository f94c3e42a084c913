//! TODO(helper): replaced by the real telemetry module.
pub mod names {
    pub const ORDERS_SETTLED: &str = "reconciler_orders_settled_total";
    pub const PHONEPE_REQUESTS: &str = "reconciler_phonepe_requests_total";
    pub const PHONEPE_REQUEST_DURATION: &str = "reconciler_phonepe_request_duration_seconds";
    pub const PHONEPE_API_ERRORS: &str = "reconciler_phonepe_api_errors_total";
    pub const PHONEPE_RATE_LIMITED: &str = "reconciler_phonepe_rate_limited_total";
    pub const RATE_LIMIT_WAIT: &str = "reconciler_rate_limit_wait_seconds";
    pub const STOCK_COMMIT_FAILURES: &str = "reconciler_stock_commit_failures_total";
    pub const ACTOR_RESTARTS: &str = "reconciler_actor_restarts_total";
    pub const SCAN_RUNS: &str = "reconciler_scan_runs_total";
    pub const LAST_SUCCESSFUL_SCAN: &str = "reconciler_last_successful_scan_timestamp_seconds";
    pub const ELIGIBLE_BACKLOG: &str = "reconciler_eligible_backlog";
    pub const NEEDS_REVIEW_ORDERS: &str = "reconciler_needs_review_orders";
    pub const CIRCUIT_OPEN: &str = "reconciler_circuit_open";
}
