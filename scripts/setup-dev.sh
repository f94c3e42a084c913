#!/usr/bin/env bash
# Installs what the tests and the demo need, into the project folder: SecantusDB (a MongoDB
# wire-compatible server, PyPI `secantusdb`), PhonePe's official Python SDK (PyPI
# `phonepe-pg-sdk-python`, pinned: tests/it/phonepe_v2.rs runs it against phonepe-sim) and the
# official Standard Webhooks package (PyPI `standardwebhooks`, pinned: tests/events_receiver.py
# verifies every event the tests receive with it) in ./.venv.
# Idempotent; safe to run every time. An SDK that cannot be installed is reported loudly and the
# conformance test skips (OPS_REQUIRE_TOOLS=1, set by .ci/run, makes both fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/secantusd-py ]]; then
  echo "setup: creating .venv with SecantusDB (PyPI secantusdb)"
  "$PY" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "secantusdb>=0.7.0b3,<0.8" || \
    .venv/bin/pip install --quiet --disable-pip-version-check --pre secantusdb
fi
.venv/bin/secantusd-py --help >/dev/null
echo "setup: SecantusDB ready at .venv/bin/secantusd-py"

PHONEPE_SDK_VERSION="3.0.1"
sdk_ready() {
  .venv/bin/python -c 'import phonepe, sys; sys.exit(phonepe.__version__ != sys.argv[1])' "$PHONEPE_SDK_VERSION" 2>/dev/null
}
if ! sdk_ready; then
  echo "setup: installing phonepe-pg-sdk-python==$PHONEPE_SDK_VERSION (PyPI) into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "phonepe-pg-sdk-python==$PHONEPE_SDK_VERSION" || true
fi
if sdk_ready; then
  echo "setup: PhonePe Python SDK $PHONEPE_SDK_VERSION ready in .venv"
elif [[ ${OPS_REQUIRE_TOOLS:-0} == 1 ]]; then
  echo "setup: phonepe-pg-sdk-python==$PHONEPE_SDK_VERSION could not be installed into .venv" >&2
  exit 1
else
  printf '\n!!!!!!!! setup: phonepe-pg-sdk-python could not be installed: the SDK conformance test will skip\n\n' >&2
fi

STANDARDWEBHOOKS_VERSION="1.3.0"
webhooks_ready() {
  .venv/bin/python -c 'import sys; from importlib.metadata import version; import standardwebhooks; sys.exit(version("standardwebhooks") != sys.argv[1])' "$STANDARDWEBHOOKS_VERSION" 2>/dev/null
}
if ! webhooks_ready; then
  echo "setup: installing standardwebhooks==$STANDARDWEBHOOKS_VERSION (PyPI) into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION" || true
fi
if webhooks_ready; then
  echo "setup: standardwebhooks $STANDARDWEBHOOKS_VERSION ready in .venv"
elif [[ ${OPS_REQUIRE_TOOLS:-0} == 1 ]]; then
  echo "setup: standardwebhooks==$STANDARDWEBHOOKS_VERSION could not be installed into .venv" >&2
  exit 1
else
  printf '\n!!!!!!!! setup: standardwebhooks could not be installed: the events suite (tests/it/events) will fail\n\n' >&2
fi
