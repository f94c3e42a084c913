#!/usr/bin/env bash
# Installs what the operator's console browser tests (tests/it/console/browser.rs) drive: Debian's
# `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver), with apt-get as
# root. Idempotent: a machine that has both only prints where they are.
#
# A browser that cannot be installed is reported LOUDLY and the script exits 0; the browser tests
# then skip loudly, unless OPS_REQUIRE_TOOLS=1 (set by .ci/run), which makes this script and those
# tests fail instead. CHROMIUM / CHROMEDRIVER point the tests at other binaries.
set -euo pipefail

loud() { printf '\n!!!!!!!! browser-tools: %s\n\n' "$*" >&2; }

have() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }

if ! have && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "browser-tools: installing Debian's chromium and chromium-driver"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null || true
fi
if have; then
  echo "browser-tools: chromium ready at $(command -v chromium) ($(chromium --version 2>/dev/null || echo '?'))"
  echo "browser-tools: chromedriver ready at $(command -v chromedriver)"
elif [[ ${OPS_REQUIRE_TOOLS:-0} == 1 ]]; then
  loud "chromium / chromedriver are missing and could not be installed (need root + apt-get): the console's browser tests cannot run"
  exit 1
else
  loud "chromium / chromedriver are missing (need root + apt-get): the console's browser tests will be SKIPPED"
fi
