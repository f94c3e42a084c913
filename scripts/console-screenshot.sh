#!/usr/bin/env bash
# Retakes the README's picture of the operator's console (docs/console.png): the browser test
# `console::browser::screenshots_of_the_queue_and_an_order` seeds four parked orders, signs in in
# headless Chromium and saves the queue. Needs scripts/setup-dev.sh and scripts/browser-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OPS_REQUIRE_TOOLS=1 CONSOLE_SCREENSHOT=docs/console.png \
  cargo test --features fault-injection --test it -- console::browser::screenshots_of_the_queue_and_an_order
echo "console-screenshot: docs/console.png"
