#!/usr/bin/env bash
# Installs the operations tools the deploy checks need, into ./.tools (nothing global except
# Debian's `npm` / `systemd` packages when npm / systemd-analyze are missing and we are root). Idempotent: re-running
# it only checks what is already there.
#
#   pm2        npm package `pm2` into .tools/pm2            (tests/it/pm2.rs runs it); needs npm,
#              which comes from Debian's `npm` package when missing and we are root
#   promtool   from Debian's `prometheus` package: the .deb is downloaded and unpacked into
#   prometheus .tools/prometheus (not installed, so no Prometheus service is set up or started);
#              ones already on PATH are used instead. tests/it/monitoring.rs runs the server.
#   systemd-analyze   Debian's `systemd` package (apt-get install) when missing
#
# Prints one line per tool. A tool that cannot be installed is reported LOUDLY and the script
# exits 0; scripts/ops-checks.sh then skips that check loudly (OPS_REQUIRE_TOOLS=1: fails).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools

PM2_VERSION="${PM2_VERSION:-6}"

loud() { printf '\n!!!!!!!! ops-tools: %s\n\n' "$*" >&2; }

# --- pm2 -------------------------------------------------------------------------------------
if ! command -v npm >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "ops-tools: installing Debian's npm package (Node.js + npm) for pm2"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null || true
fi
if [[ -x .tools/pm2/node_modules/.bin/pm2 ]]; then
  echo "ops-tools: pm2 ready at .tools/pm2/node_modules/.bin/pm2"
elif command -v npm >/dev/null; then
  echo "ops-tools: installing pm2@$PM2_VERSION from npm into .tools/pm2"
  npm install --prefix .tools/pm2 --no-audit --no-fund --loglevel=error "pm2@$PM2_VERSION" >/dev/null
  # No `pm2 --version` here: every pm2 command starts a daemon under ~/.pm2.
  [[ -x .tools/pm2/node_modules/.bin/pm2 ]]
  echo "ops-tools: pm2 ready at .tools/pm2/node_modules/.bin/pm2"
else
  loud "npm is not installed: cannot install pm2 (install Node.js + npm, e.g. apt-get install npm)"
fi

# --- promtool --------------------------------------------------------------------------------
promtool_local=.tools/prometheus/usr/bin/promtool
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  echo "ops-tools: promtool ready at $(command -v promtool)"
elif [[ -x $promtool_local && -x .tools/prometheus/usr/bin/prometheus ]]; then
  echo "ops-tools: promtool ready at $promtool_local"
elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  echo "ops-tools: fetching promtool from Debian's prometheus package into .tools/prometheus"
  rm -rf .tools/debs && mkdir -p .tools/debs
  fetch() { (cd .tools/debs && apt-get download -qq prometheus) >/dev/null 2>&1; }
  if ! fetch; then
    # The package lists may be missing on a fresh machine; refreshing them needs root.
    if [[ $(id -u) == 0 ]]; then apt-get update -qq >/dev/null 2>&1 || true; fi
    fetch || true
  fi
  deb=$(ls .tools/debs/prometheus_*.deb 2>/dev/null | head -1 || true)
  if [[ -n $deb ]]; then
    dpkg-deb -x "$deb" .tools/prometheus
    rm -rf .tools/debs
    "$promtool_local" --version >/dev/null
    echo "ops-tools: promtool ready at $promtool_local"
  else
    loud "Debian package 'prometheus' is unavailable (apt-get download failed): promtool NOT installed"
  fi
else
  loud "no apt-get/dpkg-deb on this machine: promtool NOT installed (put promtool on PATH)"
fi

# --- systemd-analyze -------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  echo "ops-tools: systemd-analyze ready at $(command -v systemd-analyze)"
elif [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "ops-tools: installing Debian's systemd package for systemd-analyze"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  echo "ops-tools: systemd-analyze ready at $(command -v systemd-analyze)"
else
  loud "systemd-analyze is missing and cannot be installed here (need root + apt-get): unit NOT verifiable"
fi
