#!/usr/bin/env bash
# Runs the console's browser tests (tests/browser/*.spec.mjs) in real headless Chromium.
#
#   hack/browser-tests.sh            install what is missing, build keygate, run the tests
#   hack/browser-tests.sh --install  only install (Debian's chromium, playwright-core)
#
# The browser is Debian's `chromium` package (apt); Playwright drives it through
# playwright-core from npm, which downloads no browser of its own. playwright-core lives in
# $KEYGATE_CACHE/playwright, so a second run installs nothing. Node's built-in test runner
# (node --test) runs the specs: nothing else comes from npm.
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

# Pinned so a run today and a run next month drive the browser the same way.
PLAYWRIGHT_VERSION=1.65.1
PW_DIR="$KEYGATE_CACHE/playwright-$PLAYWRIGHT_VERSION"

install_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  kg::log "installing Debian's chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  kg::as_root apt-get update -qq
  kg::as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

install_playwright() {
  [[ -f "$PW_DIR/node_modules/playwright-core/package.json" ]] && return
  command -v npm >/dev/null 2>&1 || kg::die "npm not found: install Node.js 18 or later (apt-get install nodejs npm)"
  kg::log "installing playwright-core $PLAYWRIGHT_VERSION into $PW_DIR (no browser download)"
  mkdir -p "$PW_DIR"
  # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing anyway; this keeps it so.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$PW_DIR" --no-audit --no-fund \
    --no-save --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
}

started=$(date +%s)
install_chromium
install_playwright
kg::log "browser test dependencies ready in $(( $(date +%s) - started ))s ($(chromium --version 2>/dev/null || echo chromium))"
[[ "${1:-}" == --install ]] && exit 0

if [[ -z "${KEYGATE_BIN:-}" ]]; then
  cargo build --quiet --locked --bin keygate
  KEYGATE_BIN="${CARGO_TARGET_DIR:-target}/debug/keygate"
fi
export KEYGATE_BIN
export KEYGATE_PLAYWRIGHT="$PW_DIR/node_modules/playwright-core"
export KEYGATE_SCREENSHOTS="${KEYGATE_SCREENSHOTS:-$KEYGATE_CACHE/screenshots}"
mkdir -p "$KEYGATE_SCREENSHOTS"
node --test --test-concurrency=1 tests/browser/*.spec.mjs
