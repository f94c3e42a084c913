#!/usr/bin/env bash
# Checks the deploy/ files with the real tools (installed by scripts/ops-tools.sh):
#
#   Prometheus  promtool check config + check rules + test rules (alerts.test.yml: every alert
#               fires and stays quiet when it should)
#   Grafana     scripts/check-dashboard.py: valid JSON, every panel's query names a metric from
#               src/telemetry.rs; then promtool checks every query is valid PromQL
#   systemd     systemd-analyze verify on the unit, with ExecStart pointing at the built binary
#               and a dummy EnvironmentFile (verify wants both to exist); any warning fails; the
#               settlement import's timer and service the same way, and the timer's calendar
#   PM2         the settlement import's cron file: node loads it, one one-shot app (autorestart
#               off) with a five-field cron_restart that runs the binary's `settlement import`
#
# The service's PM2 file is tested by tests/it/pm2.rs (cargo test). A missing tool is skipped with a LOUD message;
# OPS_REQUIRE_TOOLS=1 (set by .ci/run) makes that a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
skipped=()
loud() { printf '\n!!!!!!!! ops-checks: %s\n\n' "$*" >&2; }
missing() {
  skipped+=("$1")
  loud "SKIPPED $1: $2"
}
step() { echo "ops-checks: $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Prometheus + Grafana ----------------------------------------------------------------
promtool=$(command -v promtool || true)
[[ -z $promtool && -x .tools/prometheus/usr/bin/promtool ]] && promtool=.tools/prometheus/usr/bin/promtool

step "dashboard: JSON and metric names"
python3 scripts/check-dashboard.py --rules-out "$tmp/dashboard-rules.json" || failed=1

# A rule test fed label values the service never emits proves nothing about the real series.
step "alert tests: every label value in alerts.test.yml is one the service emits"
python3 - <<'PY' || failed=1
import re, sys
tests = open("deploy/prometheus/alerts.test.yml").read()
# Where label values are spelled: the telemetry module and the enums whose `as_str` / label
# constants it records (child actors, PhonePe error kinds, settle outcomes, decision reasons).
telemetry = "".join(open(f).read() for f in [
    "src/telemetry.rs", "src/telemetry/labels.rs", "src/actors/child.rs", "src/domain/payment.rs",
    "src/settle.rs", "src/domain/decision.rs", "src/settlement/matcher.rs",
])
wire = open("src/phonepe/wire.rs").read()
# kind/reason/actor/outcome/result values are string constants in those files;
# `code` is PhonePe's code (src/phonepe/wire.rs `codes`) or ERROR_<KIND> for a failed call
# (StatusError::code in src/domain/payment.rs).
kinds = re.findall(r'"([a-z_]+)"', telemetry)
bad = []
for label, value in re.findall(r'\b(kind|reason|actor|outcome|result|code)="([^"]*)"', tests):
    if label == "code":
        ok = f'"{value}"' in wire or (value.startswith("ERROR_") and value[6:].lower() in kinds)
    else:
        ok = f'"{value}"' in telemetry
    if not ok:
        bad.append(f'{label}="{value}"')
if bad:
    print("ops-checks: alerts.test.yml uses label values the service never emits: " + ", ".join(sorted(set(bad))), file=sys.stderr)
    sys.exit(1)
PY

if [[ -n $promtool ]]; then
  step "promtool ($promtool)"
  "$promtool" check config deploy/prometheus/prometheus.yml || failed=1
  "$promtool" check rules deploy/prometheus/alerts.yml || failed=1
  "$promtool" test rules deploy/prometheus/alerts.test.yml || failed=1
  "$promtool" check rules "$tmp/dashboard-rules.json" >/dev/null || {
    echo "ops-checks: a dashboard query is not valid PromQL:" >&2
    "$promtool" check rules "$tmp/dashboard-rules.json" >&2 || true
    failed=1
  }
else
  missing promtool "promtool not found (Debian package 'prometheus' unavailable?): alert rules and their unit tests were NOT run"
fi

# --- systemd -------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify deploy/systemd/draft-reconciler.service"
  cargo build --quiet --features fault-injection --bin draft-reconciler
  bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/draft-reconciler"
  touch "$tmp/env"
  sed -e "s#^ExecStart=/usr/local/bin/draft-reconciler #ExecStart=$bin #" \
      -e "s#^EnvironmentFile=.*#EnvironmentFile=$tmp/env#" \
      deploy/systemd/draft-reconciler.service > "$tmp/draft-reconciler.service"
  grep -q "^ExecStart=$bin run$" "$tmp/draft-reconciler.service" || {
    echo "ops-checks: the unit's ExecStart is not '/usr/local/bin/draft-reconciler run'" >&2
    failed=1
  }
  if out=$(systemd-analyze verify "$tmp/draft-reconciler.service" 2>&1) && [[ -z $out ]]; then
    echo "  SUCCESS: systemd-analyze verify accepts the unit"
  else
    echo "$out" >&2
    echo "ops-checks: systemd-analyze verify rejected the unit (or warned)" >&2
    failed=1
  fi
  step "systemd-analyze verify deploy/systemd/draft-reconciler-settlement.{timer,service}"
  sed -e "s#/usr/local/bin/draft-reconciler settlement import#$bin settlement import#" \
      -e "s#^EnvironmentFile=.*#EnvironmentFile=$tmp/env#" \
      deploy/systemd/draft-reconciler-settlement.service > "$tmp/draft-reconciler-settlement.service"
  cp deploy/systemd/draft-reconciler-settlement.timer "$tmp/"
  grep -q "xargs -0 -r $bin settlement import'$" "$tmp/draft-reconciler-settlement.service" || {
    echo "ops-checks: the settlement service does not run '/usr/local/bin/draft-reconciler settlement import'" >&2
    failed=1
  }
  if out=$(cd "$tmp" && systemd-analyze verify draft-reconciler-settlement.timer draft-reconciler-settlement.service 2>&1) && [[ -z $out ]]; then
    echo "  SUCCESS: systemd-analyze verify accepts the settlement timer and service"
  else
    echo "$out" >&2
    echo "ops-checks: systemd-analyze verify rejected the settlement timer or service (or warned)" >&2
    failed=1
  fi
  calendar=$(sed -n 's/^OnCalendar=//p' deploy/systemd/draft-reconciler-settlement.timer)
  systemd-analyze calendar "$calendar" >/dev/null || {
    echo "ops-checks: the settlement timer's OnCalendar=$calendar is not a calendar systemd reads" >&2
    failed=1
  }
else
  missing systemd-analyze "systemd-analyze not found: the systemd unit was NOT verified"
fi

# --- PM2 cron ----------------------------------------------------------------------------
if command -v node >/dev/null; then
  step "node: deploy/pm2/settlement-import.config.js"
  node - <<'JS' || failed=1
const cfg = require(process.cwd() + "/deploy/pm2/settlement-import.config.js");
const fail = (why) => { console.error("ops-checks: settlement-import.config.js: " + why); process.exit(1); };
if (!Array.isArray(cfg.apps) || cfg.apps.length !== 1) fail("expected one app");
const app = cfg.apps[0];
if (app.autorestart !== false) fail("autorestart must be false (a one-shot job)");
if (app.interpreter !== "none") fail("interpreter must be none");
const fields = String(app.cron_restart || "").trim().split(/\s+/);
const field = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$/;
if (fields.length !== 5 || !fields.every((f) => field.test(f))) fail("cron_restart is not a five-field cron expression: " + app.cron_restart);
const command = (app.args || []).join(" ");
if (!command.includes("settlement import") || !command.includes("$DRAFT_RECONCILER_BIN")) fail("it does not run the binary's settlement import");
if (!app.env || !app.env.DRAFT_RECONCILER_BIN || !app.env.SETTLEMENT_DIR) fail("env must set DRAFT_RECONCILER_BIN and SETTLEMENT_DIR");
console.log("  SUCCESS: one one-shot app, cron " + app.cron_restart + ", runs settlement import");
JS
else
  missing node "node not found: the PM2 settlement cron file was NOT checked"
fi

if ((${#skipped[@]})); then
  loud "NOT CHECKED: ${skipped[*]} (run scripts/ops-tools.sh as root on Debian to install them)"
  [[ ${OPS_REQUIRE_TOOLS:-0} == 1 ]] && failed=1
fi
if ((failed)); then
  echo "ops-checks: FAILED" >&2
  exit 1
fi
echo "ops-checks: OK"
