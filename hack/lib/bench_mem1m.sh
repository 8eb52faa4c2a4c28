#!/usr/bin/env bash
set -e
# Ad-hoc check used once for BENCHMARKS.md ("After these runs"): RSS and time to ready of the
# empty server and of the 1M-key set kept by hack/bench.sh (~/.cache/keygate/bench/keys-1000000).
cd "$(dirname "$0")/../.."
cargo build -q --release --bin keygate
K=$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)['target_directory'])")/release/keygate
C=/tmp/mem1m-certs; rm -rf $C; $K certs --out-dir $C >/dev/null 2>&1
mkdir -p /tmp/mem1m-empty
for d in /tmp/mem1m-empty ${KEYGATE_BENCH_CACHE:-$HOME/.cache/keygate/bench}/keys-${KEYS:-1000000}; do
  t0=$(date +%s%N)
  $K serve --store dir:$d --tls-cert $C/server.crt --tls-key $C/server.key --listen 127.0.0.1:28843 --admin-listen 127.0.0.1:28845 >/tmp/mem1m.log 2>&1 & P=$!
  until curl -sf -o /dev/null http://127.0.0.1:28845/readyz; do sleep 0.1; done
  t1=$(date +%s%N); sleep 1
  echo "$d: ready $(( (t1-t0)/1000000 )) ms, VmRSS $(awk '/^VmRSS/ {print $2}' /proc/$P/status) kB, commit $(git rev-parse --short HEAD)"
  kill $P; wait $P || true
done
