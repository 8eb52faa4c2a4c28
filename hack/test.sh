#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, unit and integration tests, and (once they exist)
# the end-to-end suite against a real kube-apiserver. Installs what it needs; caches slow builds
# under ~/.cache/keygate so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export KEYGATE_CACHE="${KEYGATE_CACHE:-$HOME/.cache/keygate}"
# Build outputs live outside the clone so a fresh clone in CI reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KEYGATE_CACHE/target}"
mkdir -p "$KEYGATE_CACHE"

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

step "toolchain"
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "unit and integration tests (nextest)"
cargo nextest run --locked --all-targets --no-fail-fast

step "console in real headless Chromium (hack/browser-tests.sh)"
hack/browser-tests.sh

step "bench smoke test (hack/bench.sh --quick: breakage fails, ratios are only reported)"
hack/bench.sh --quick >/dev/null

step "soak, short form (30 s of valid, wrong and foreign tokens while keys change)"
SOAK_SECONDS=30 hack/soak.sh

if [ "${KEYGATE_SKIP_E2E:-}" != 1 ]; then
  step "end-to-end tests against a real kube-apiserver (kubectl through keygate)"
  hack/e2e.sh

  step "manifests: server-side dry run and RBAC checks against kube-apiserver"
  hack/validate-manifests.sh
fi

printf '\nhack/test.sh: all checks passed in %ss\n' "$(( $(date +%s) - start ))"
