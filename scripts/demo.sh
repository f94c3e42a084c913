#!/usr/bin/env bash
# The main job on the embedded default: a local SecantusDB, phonepe-sim, and a few seeded draft
# orders of every kind; runs one reconciliation pass and shows how each order settled.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
# The product, the phonepe-sim binary (crates/phonepe-sim) and the demo helper, in one build.
cargo build --quiet --workspace --bins --example demo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DB_PORT=$(free_port); SIM_PORT=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

.venv/bin/secantusd-py --host 127.0.0.1 --port "$DB_PORT" --storage-path :memory: --log-level WARNING >/dev/null 2>&1 &
pids+=($!)
export PHONEPE_SALT_KEY=demo-salt-key
target/debug/phonepe-sim --listen "127.0.0.1:$SIM_PORT" --merchant-id DEMOMERCHANT --salt-index 1 \
  --prefix /apis/pg-sandbox --rate-limit-per-minute 30 >/dev/null &
pids+=($!)
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$SIM_PORT") 2>/dev/null && break
  sleep 0.2
done

export MONGODB_URI="mongodb://127.0.0.1:$DB_PORT/demo_shop?directConnection=true"
export PHONEPE_BASE_URL="http://127.0.0.1:$SIM_PORT/apis/pg-sandbox"
export PHONEPE_MERCHANT_ID=DEMOMERCHANT PHONEPE_SALT_INDEX=1
export LOG_FORMAT=pretty LOG_LEVEL=info RECONCILER_OPS__LISTEN=""

# DEMO_CONFIG=<file.toml>: the demo and the service on that file's [schema] mapping (docs/schema.md).
config=(); [ -n "${DEMO_CONFIG:-}" ] && config=(--config "$DEMO_CONFIG")
export DEMO_CONFIG=${DEMO_CONFIG:-}
target/debug/examples/demo seed "$MONGODB_URI" "$PHONEPE_BASE_URL"
echo "--- draft-reconciler once (PhonePe budget: 30 calls/min) ---"
target/debug/draft-reconciler "${config[@]}" once
echo "--- result ---"
target/debug/examples/demo report "$MONGODB_URI"

echo
echo "--- API v2 (OAuth client credentials) and PhonePe's webhook, on the same commit path ---"
target/debug/examples/demo seed-v2 "$MONGODB_URI" "$PHONEPE_BASE_URL"
HOOK_PORT=$(free_port)
export PHONEPE_API_VERSION=v2 PHONEPE_CLIENT_ID=TESTCLIENT PHONEPE_CLIENT_SECRET=test-client-secret \
  PHONEPE_CLIENT_VERSION=1 PHONEPE_OAUTH_BASE_URL="$PHONEPE_BASE_URL" \
  PHONEPE_WEBHOOK_USERNAME=webhook-user PHONEPE_WEBHOOK_PASSWORD=webhook-pass \
  RECONCILER_WEBHOOK__LISTEN="127.0.0.1:$HOOK_PORT"
target/debug/draft-reconciler "${config[@]}" run &
service=$!
pids+=("$service")
for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$HOOK_PORT") 2>/dev/null && break; sleep 0.2; done
target/debug/examples/demo webhook "$PHONEPE_BASE_URL" DEMO-HOOK "http://127.0.0.1:$HOOK_PORT/webhooks/phonepe"
for _ in $(seq 1 150); do
  target/debug/examples/demo settled "$MONGODB_URI" DEMO-V2 DEMO-HOOK 2>/dev/null && break
  sleep 0.2
done
kill -TERM "$service"; wait "$service" || true
echo "--- result ---"
target/debug/examples/demo report "$MONGODB_URI"
