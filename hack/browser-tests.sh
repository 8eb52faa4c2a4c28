#!/usr/bin/env bash
# Runs the console's browser tests (tests/browser/*.spec.mjs) in real headless Chromium, on the
# embedded dir store (tests/e2e/console.sh runs the same spec against the e2e cluster).
#
#   hack/browser-tests.sh            install what is missing, build keygate, run the tests
#   hack/browser-tests.sh --install  only install (Debian's chromium, playwright-core)
#
# The browser is Debian's `chromium` package (apt); Playwright drives it through
# playwright-core from npm, which downloads no browser of its own (hack/lib/browser.sh installs
# both, once). Node's built-in test runner (node --test) runs the specs: nothing else comes
# from npm.
#
# Environment:
#   KEYGATE_BIN          the keygate binary to test (default: built here with cargo)
#   KEYGATE_SCREENSHOTS  where the specs save screenshots (default: $KEYGATE_CACHE/screenshots,
#                        so a test run leaves the clone unchanged; give docs/screenshots to
#                        refresh the ones the README shows)
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$KEYGATE_ROOT"

# shellcheck source=hack/lib/browser.sh
source "$KEYGATE_ROOT/hack/lib/browser.sh"
kg::browser::install
[[ "${1:-}" == --install ]] && exit 0

if [[ -z "${KEYGATE_BIN:-}" ]]; then
  cargo build --quiet --locked --bin keygate
  KEYGATE_BIN="${CARGO_TARGET_DIR:-target}/debug/keygate"
fi
export KEYGATE_BIN
export KEYGATE_SCREENSHOTS="${KEYGATE_SCREENSHOTS:-$KEYGATE_CACHE/screenshots}"
mkdir -p "$KEYGATE_SCREENSHOTS"
KEYGATE_CONSOLE_TARGET=dir node --test --test-concurrency=1 tests/browser/*.spec.mjs
