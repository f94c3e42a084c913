#!/usr/bin/env bash
# Benchmarks (not part of the test suite or CI): each scenario starts its own SecantusDB and
# phonepe-sim (in-process, the crates/phonepe-sim library) and runs the release binary. Usage:
#   scripts/bench.sh [drain|latency|latency-short|throughput|idle|scan|instances|instances-unthrottled|starve|settlement|events|all] [N]
# BENCH_RECONCILERS sets the pool size for `throughput` (default 32). See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh >/dev/null
cargo bench --quiet --bench reconciler -- "${1:-all}" ${2:+"$2"}
