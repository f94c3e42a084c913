#!/usr/bin/env bash
# The project's test command: installs the local MongoDB (SecantusDB) and the operations tools
# (pm2 from npm, promtool from Debian's prometheus package, systemd-analyze) if needed, then runs
# formatting, lint, the deploy checks (promtool, Grafana dashboard, systemd-analyze) and the whole
# test suite (unit + integration against real SecantusDB and phonepe-sim over HTTP, PM2 for real).
# Set MONGODB_URI to run the integration tests against another server. OPS_REQUIRE_TOOLS=1 (set
# by .ci/run) is passed through to scripts/ops-checks.sh: a deploy check whose tool is missing
# then fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
scripts/ops-tools.sh
cargo fmt --check
cargo clippy --all-targets --features fault-injection -- -D warnings
OPS_REQUIRE_TOOLS="${OPS_REQUIRE_TOOLS:-0}" scripts/ops-checks.sh
cargo test --features fault-injection "$@"
# The same end-to-end suites with the journal commit strategy forced on a transactional server,
# and under `auto` against a standalone server (which has no transactions): same outcomes.
RECONCILER_TEST_STRATEGY=journal cargo test --features fault-injection --test pipeline --test binary "$@"
RECONCILER_TEST_SERVER=standalone cargo test --features fault-injection --test pipeline --test binary "$@"
