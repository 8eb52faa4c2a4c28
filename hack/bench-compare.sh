#!/usr/bin/env bash
# Two keygate builds and the bare hyper + tokio-rustls floor, alternating, over loopback TLS.
#
#   hack/bench-compare.sh BASE_KEYGATE NEW_KEYGATE [rounds] [modes]
#
# modes (default "h1authn h2authn h1authz"): HTTP/1.1 /authenticate (64 connections),
# HTTP/2 /authenticate (1 connection, 250 streams), HTTP/1.1 /authorize (a user who is no key).
# Every round runs the three servers one after the other, in an order that rotates from round
# to round; per run it prints req/s and the server's CPU per request (utime + stime from
# /proc/PID/stat around the run), then medians of keygate / bare per build. Not run by CI; a
# measurement, never a test. Needs the floor and genkeys examples (built here) and h2load.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:?base keygate binary}; NEW=${2:?new keygate binary}
ROUNDS=${3:-10}; MODES=${4:-h1authn h2authn h1authz}
N1=${N1:-40000}; N2=${N2:-60000}
command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
cargo build --release --quiet --example floor --example genkeys --manifest-path "$ROOT/Cargo.toml"
TARGET=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FLOOR=$TARGET/release/examples/floor
W=$(mktemp -d); PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$W"' EXIT
"$BASE" certs --out-dir "$W/certs" >/dev/null 2>&1
"$TARGET/release/examples/genkeys" --dir "$W/keys" --count 10 --tokens-out "$W/tokens" >/dev/null
sed "s/\"good.token\"/\"$(head -1 "$W/tokens")\"/" "$ROOT/tests/fixtures/tokenreview/request-v1.json" >"$W/tr.json"
cp "$ROOT/tests/fixtures/subjectaccessreview/request-v1.json" "$W/sar.json"
TLS=(--tls-cert "$W/certs/server.crt" --tls-key "$W/certs/server.key")
start() { # port log cmd... -> pid on stdout
  local port=$1 log=$2; shift 2
  "$@" --listen "127.0.0.1:$port" "${TLS[@]}" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do curl -sk -o /dev/null "https://127.0.0.1:$port/" && { echo $pid; return; }; sleep 0.05; done
  echo "server on port $port did not start (see $log)" >&2; exit 1
}
# Decision logs go to files, as in hack/bench.sh.
A=$(start 29441 "$W/base.log" "$BASE" serve --store "dir:$W/keys" --admin-listen 127.0.0.1:29451 --max-concurrent-streams 250); PIDS+=("$A")
B=$(start 29442 "$W/new.log" "$NEW" serve --store "dir:$W/keys" --admin-listen 127.0.0.1:29452 --max-concurrent-streams 250); PIDS+=("$B")
R=$(start 29443 "$W/bare.log" "$FLOOR" --bare); PIDS+=("$R")
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # pid port mode -> "req/s cpu-us-per-request"
  local pid=$1 port=$2 mode=$3 path body args n c0 out
  case $mode in
    h1authn) path=/authenticate; body=$W/tr.json; args=(--h1 -c 64); n=$N1 ;;
    h2authn) path=/authenticate; body=$W/tr.json; args=(-c 1 -m 250); n=$N2 ;;
    h1authz) path=/authorize; body=$W/sar.json; args=(--h1 -c 64); n=$N1 ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  c0=$(cpu "$pid")
  out=$(timeout 120 h2load "${args[@]}" -t 1 -n "$n" -d "$body" -H 'Content-Type: application/json' "https://127.0.0.1:$port$path?timeout=30s")
  grep -q "$n succeeded" <<<"$out" || { echo "$mode on port $port: not every request succeeded" >&2; exit 1; }
  awk -v c="$(( $(cpu "$pid") - c0 ))" -v n="$n" '/^finished in/ { gsub(",", "", $4); printf "%s %.2f\n", $4, c * 1e4 / n }' <<<"$out"
}
median() { sort -g | awk '{a[NR] = $1} END {printf "%.3f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
for mode in $MODES; do
  echo "== $mode, $ROUNDS rounds, load $(cut -d' ' -f1-3 /proc/loadavg)"
  : >"$W/ratios"
  for r in $(seq 1 "$ROUNDS"); do
    declare -A rps=() us=()
    order=(a b r); case $((r % 3)) in 1) order=(b r a) ;; 2) order=(r a b) ;; esac
    for who in "${order[@]}"; do
      case $who in a) p=$A; port=29441 ;; b) p=$B; port=29442 ;; r) p=$R; port=29443 ;; esac
      read -r rps[$who] us[$who] < <(run "$p" "$port" "$mode")
    done
    a=$(echo "${rps[a]} / ${rps[r]}" | bc -l); b=$(echo "${rps[b]} / ${rps[r]}" | bc -l)
    printf 'round %2d: base %8.0f req/s %5.2f us | new %8.0f req/s %5.2f us | bare %8.0f req/s %5.2f us | base/bare %.3f new/bare %.3f\n' \
      "$r" "${rps[a]}" "${us[a]}" "${rps[b]}" "${us[b]}" "${rps[r]}" "${us[r]}" "$a" "$b"
    echo "$a $b ${us[a]} ${us[b]} ${us[r]}" >>"$W/ratios"
  done
  printf 'median %s: base/bare %s, new/bare %s; CPU us/request base %s, new %s, bare %s\n' "$mode" \
    "$(cut -d' ' -f1 "$W/ratios" | median)" "$(cut -d' ' -f2 "$W/ratios" | median)" \
    "$(cut -d' ' -f3 "$W/ratios" | median)" "$(cut -d' ' -f4 "$W/ratios" | median)" "$(cut -d' ' -f5 "$W/ratios" | median)"
done
