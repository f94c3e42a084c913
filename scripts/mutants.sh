#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the pure, fast modules against the unit tests only. Not in
# CI: it rebuilds the crate once per mutant (see docs/mutants.md for what it finds and how long
# it takes). Usage:
#   scripts/mutants.sh                 # src/domain/, the PhonePe wire format and checksum, the
#                                      # rate limiter's budget arithmetic (not its actor)
#   scripts/mutants.sh FILE...         # only these files, e.g. src/phonepe/wire.rs
# Results: target/mutants/mutants.out/ (caught.txt, missed.txt, unviable.txt, timeout.txt).
# Installs cargo-mutants into ~/.cargo/bin when it is missing (several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-mutants >/dev/null 2>&1; then
    echo "installing cargo-mutants (compiles for several minutes)"
    nice -n 15 cargo install --locked cargo-mutants
fi

if [ "$#" -gt 0 ]; then
    files=("$@")
else
    files=(src/domain/*.rs src/phonepe/wire.rs src/phonepe/checksum.rs src/actors/rate_limiter.rs)
fi
args=()
for f in "${files[@]}"; do
    args+=(--file "$f")
done

start=$(date +%s)
status=0
# -j 1 and nice: one build at a time on a shared machine. --copy-target reuses the compiled
# dependencies in target/. The RateLimiter actor (its handlers) is excluded: only the Budget
# arithmetic is pure. `-- --lib`: unit tests only (no database, no binary).
nice -n 15 cargo mutants -j 1 --copy-target=true --output target/mutants \
    --exclude-re 'RateLimiter' "${args[@]}" -- --lib || status=$?
echo "scripts/mutants.sh: ${files[*]}: $(( $(date +%s) - start )) s wall time (exit $status:" \
    "0 all caught, 2 some missed, 3 some timed out)"
exit "$status"
