#!/usr/bin/env bash
# Installs what the tests and the demo need, into the project folder: SecantusDB (a MongoDB
# wire-compatible server, PyPI `secantusdb`) in ./.venv. Idempotent; safe to run every time.
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
