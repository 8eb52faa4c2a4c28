#!/usr/bin/env bash
# End-to-end tests: builds keygate, brings up a real etcd + kube-apiserver + kube-controller-manager
# 1.20 with keygate as the apiserver's token webhook (hack/local-cluster.sh, in its own state dir),
# runs tests/e2e/run.sh with kubectl as the client (the Part 1 scenarios first, without the
# APIService; then, when keygate has `serve --api`, the AccessKey API scenarios of
# tests/e2e/api.sh, which register it), and tears the cluster down. Prints "N passed, N failed".
# KEYGATE_E2E_REQUIRE_API=1: a keygate without `serve --api` is a failure, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export KEYGATE_CACHE="${KEYGATE_CACHE:-$HOME/.cache/keygate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KEYGATE_CACHE/target}"
export KEYGATE_CLUSTER_DIR="${KEYGATE_E2E_CLUSTER_DIR:-$KEYGATE_CACHE/cluster-e2e}"
# Low webhook cache TTL so revocation is measurable (kube-apiserver adds its own 10 s success cache).
export KEYGATE_WEBHOOK_CACHE_TTL="${KEYGATE_WEBHOOK_CACHE_TTL:-1s}"
# Short authorization-webhook TTLs too: a creator's lost right, and instant revocation, show at once.
export KEYGATE_AUTHZ_CACHE_TTL="${KEYGATE_AUTHZ_CACHE_TTL:-1s}"
# Last use written to the keys' Leases every second, so tests/e2e/identities.sh sees it soon.
export KEYGATE_KEYGATE_EXTRA_ARGS="${KEYGATE_KEYGATE_EXTRA_ARGS---last-used-interval 1s}"
# A server-wide maximum key lifetime, as GitHub, GitLab and Rancher enforce one (tests/e2e/api.sh).
export KEYGATE_KEYGATE_API_EXTRA_ARGS="${KEYGATE_KEYGATE_API_EXTRA_ARGS---max-key-lifetime 30d}"

cargo build --locked --bin keygate >&2
export KEYGATE_BIN="$CARGO_TARGET_DIR/debug/keygate"

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && -d "$KEYGATE_CLUSTER_DIR" ]]; then
    echo "e2e failed; last lines of each log in $KEYGATE_CLUSTER_DIR:" >&2
    for f in "$KEYGATE_CLUSTER_DIR"/*.log; do
      [[ -f "$f" ]] || continue
      echo "--- $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  [[ "${KEYGATE_E2E_KEEP:-0}" == 1 ]] || "$root/hack/local-cluster.sh" down >&2 || true
  exit "$rc"
}
trap cleanup EXIT

t0=$SECONDS
"$root/hack/local-cluster.sh" down >&2 || true
# The APIService is registered half-way by tests/e2e/run.sh (see there).
KEYGATE_APISERVICE=0 "$root/hack/local-cluster.sh" up >&2
echo "cluster up in $((SECONDS - t0))s" >&2
eval "$("$root/hack/local-cluster.sh" env)"
bash "$root/tests/e2e/run.sh"
