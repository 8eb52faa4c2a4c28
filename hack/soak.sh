#!/usr/bin/env bash
# Soak test, bounded and on loopback only: a release `keygate serve` on a dir store, driven at
# about half its measured maximum rate with valid, wrong, revoked, malformed and foreign tokens
# for ${SOAK_SECONDS:-600} seconds while keys are created, rotated and deleted every second
# through the CLI against the same store. Every answer is checked against a model of which
# tokens must be accepted (examples/soak.rs). Exits non-zero on any wrong answer, any error, or
# resident memory that grew (end > start x 1.5 + 16 MiB).
#
#   hack/soak.sh                     # 10 minutes
#   SOAK_SECONDS=30 hack/soak.sh     # the short form hack/test.sh runs
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SOAK_SECONDS:-600}"
case "$seconds" in
  '' | *[!0-9]*) echo "SOAK_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac
target="${CARGO_TARGET_DIR:-target}"

cargo build --release --locked --bin keygate --example soak
# Hard bound: the soak itself, plus calibration, start-up and shutdown.
exec timeout --kill-after=30 "$(( seconds + 180 ))" \
  "$target/release/examples/soak" --keygate "$target/release/keygate" --seconds "$seconds"
