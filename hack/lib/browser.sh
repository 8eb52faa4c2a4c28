#!/usr/bin/env bash
# What the console's browser tests need, installed once: Debian's `chromium` (apt) and
# playwright-core from npm (which downloads no browser of its own), in $KEYGATE_CACHE so a second
# run installs nothing. Source it after hack/lib/common.sh; used by hack/browser-tests.sh (the dir
# store) and tests/e2e/console.sh (the e2e cluster).
# shellcheck shell=bash

# Pinned so a run today and a run next month drive the browser the same way.
KEYGATE_PLAYWRIGHT_VERSION=1.65.1

kg::browser::install_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  kg::log "installing Debian's chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  kg::as_root apt-get update -qq
  kg::as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

kg::browser::install_playwright() {
  local dir="$1"
  [[ -f "$dir/node_modules/playwright-core/package.json" ]] && return
  command -v npm >/dev/null 2>&1 || kg::die "npm not found: install Node.js 18 or later (apt-get install nodejs npm)"
  kg::log "installing playwright-core $KEYGATE_PLAYWRIGHT_VERSION into $dir (no browser download)"
  mkdir -p "$dir"
  # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing anyway; this keeps it so.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund \
    --no-save --loglevel=error "playwright-core@$KEYGATE_PLAYWRIGHT_VERSION" >/dev/null
}

# kg::browser::install: installs what is missing and exports KEYGATE_PLAYWRIGHT (the
# playwright-core module the specs load).
kg::browser::install() {
  local started dir="$KEYGATE_CACHE/playwright-$KEYGATE_PLAYWRIGHT_VERSION"
  started=$(date +%s)
  kg::browser::install_chromium
  kg::browser::install_playwright "$dir"
  kg::log "browser test dependencies ready in $(( $(date +%s) - started ))s ($(chromium --version 2>/dev/null || echo chromium))"
  export KEYGATE_PLAYWRIGHT="$dir/node_modules/playwright-core"
}
