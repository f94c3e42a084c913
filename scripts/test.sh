#!/usr/bin/env bash
# The project's test command: installs the local MongoDB (SecantusDB), the operations tools
# (pm2 from npm, promtool from Debian's prometheus package, systemd-analyze) and Debian's Chromium
# with its WebDriver (the console's browser tests) if needed, then runs
# formatting, lint, the deploy checks (promtool, Grafana dashboard, systemd-analyze) and the whole
# test suite (unit + integration against real SecantusDB and phonepe-sim over HTTP, PM2 for real,
# PhonePe's Python SDK against phonepe-sim), for the whole workspace: the product and
# crates/phonepe-sim.
# Set MONGODB_URI to run the integration tests against another server. OPS_REQUIRE_TOOLS=1 (set
# by .ci/run) is passed through to scripts/ops-checks.sh: a deploy check whose tool is missing
# then fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
scripts/ops-tools.sh
# Debian's chromium + chromium-driver for the console's browser tests (tests/it/console/browser.rs)
OPS_REQUIRE_TOOLS="${OPS_REQUIRE_TOOLS:-0}" scripts/browser-tools.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --features fault-injection -- -D warnings
OPS_REQUIRE_TOOLS="${OPS_REQUIRE_TOOLS:-0}" scripts/ops-checks.sh
cargo test --workspace --features fault-injection "$@"
# The same end-to-end suites (modules `pipeline`, `binary`, `webhook`, `review` and `console` of
# the one integration-test binary,
# tests/it) with the journal commit strategy forced on a transactional server, and under `auto`
# against a standalone server (which has no transactions): same outcomes. Arguments after a
# `--` in "$@" go to the test binary, after the module filters.
e2e() {
    local cargo_args=() test_args=()
    while (($#)) && [[ $1 != -- ]]; do cargo_args+=("$1"); shift; done
    (($#)) && shift
    test_args=("$@")
    # E2E_MODULES: the module filters (default: the five end-to-end suites).
    # shellcheck disable=SC2086
    cargo test --features fault-injection --test it "${cargo_args[@]}" -- ${E2E_MODULES:-pipeline:: binary:: webhook:: review:: console::} "${test_args[@]}"
}
# `events` (the shop's events, about 2 min on the 2-core machine: its deliveries wait for real
# retries and an endpoint down for 30 s) is rerun once only, on the journal strategy, where its
# events are recorded by the other commit path; so is `settlement` (seconds), whose recorded
# payments and settled refunds go through the same commit paths.
RECONCILER_TEST_STRATEGY=journal E2E_MODULES="pipeline:: binary:: webhook:: review:: console:: events:: settlement::" e2e "$@"
RECONCILER_TEST_SERVER=standalone e2e "$@"
# Again on a shop's own schema (RECONCILER_TEST_SCHEMA=shop, tests/it/support: renamed collections
# and fields, a dotted payment status, upper-case words, rupee amounts, per-size stock under other
# names): the pipeline and review suites on both commit strategies, binary, webhook and console once.
RECONCILER_TEST_SCHEMA=shop e2e "$@"
RECONCILER_TEST_SCHEMA=shop RECONCILER_TEST_STRATEGY=journal E2E_MODULES="pipeline:: review::" e2e "$@"
