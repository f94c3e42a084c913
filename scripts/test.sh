#!/usr/bin/env bash
# The project's test command: installs the local MongoDB (SecantusDB) if needed, then runs
# formatting, lint and the whole test suite (unit + integration against real SecantusDB and
# phonepe-sim over HTTP). Set MONGODB_URI to run the integration tests against another server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
cargo fmt --check
cargo clippy --all-targets --features fault-injection -- -D warnings
cargo test --features fault-injection "$@"
# The same end-to-end suites with the journal commit strategy forced on a transactional server,
# and under `auto` against a standalone server (which has no transactions): same outcomes.
RECONCILER_TEST_STRATEGY=journal cargo test --features fault-injection --test pipeline --test binary "$@"
RECONCILER_TEST_SERVER=standalone cargo test --features fault-injection --test pipeline --test binary "$@"
