#!/usr/bin/env bash
# keygate against two floors (issues 5 and 16): the same load generator over loopback TLS
# against `keygate serve`, examples/floor.rs (minimal hyper + tokio-rustls with keygate's TLS
# setup and hyper settings, fixed answer) and `floor --bare` (default builders, nothing of
# keygate's), alternating runs, medians, ratios measured in the same run; then scale (10 / 100 000 / 1 000 000 keys
# in the dir store) and a flood of unknown IDs; then part 4, end to end through a local
# kube-apiserver 1.20.2 (keygate key vs static token vs bootstrap token, one fresh token per
# request: hack/lib/bench_apiserver.sh). Results go to $OUT (results.tsv, summary.md,
# chart.svg, every command and its raw output).
#
#   hack/bench.sh            full run, release build, 3 rounds (about 12 minutes)
#   hack/bench.sh --quick    a few seconds after the build (plus starting a local cluster for
#                            part 4): dev profile (the one hack/test.sh builds), small counts,
#                            one round, no 100k/1M scale. Exits non-zero when something breaks
#                            (a server does not start, a load generator errors, a request
#                            fails), never because of a ratio.
#   hack/bench.sh [--quick] --only apiserver
#                            part 4 alone (about 2.5 minutes in full mode)
#
# Env: KEYGATE_BENCH_OUT (default <target>/bench), KEYGATE_BENCH_PORT (base port, default 28443;
# uses base to base+5), KEYGATE_BENCH_STREAMS (HTTP/2 streams per connection, and keygate's
# --max-concurrent-streams, default 250: its default), KEYGATE_BENCH_ROUNDS, KEYGATE_BENCH_SCALE ("10 100000 1000000"),
# KEYGATE_BENCH_FLOOD (unknown-ID requests, 1000000), KEYGATE_BENCH_VALID (valid-key requests, 200000),
# KEYGATE_BENCH_CACHE (where generated key sets of 1000+ keys are kept between runs,
# default ~/.cache/keygate/bench; delete it to regenerate); part 4's in hack/lib/bench_apiserver.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0; ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) [ "${2:-}" = apiserver ] || { echo "usage: hack/bench.sh [--quick] [--only apiserver]" >&2; exit 2; }; ONLY=$2; shift ;;
    *) echo "usage: hack/bench.sh [--quick] [--only apiserver]" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }

# --- load generators (Debian packages), installed idempotently ---------------------------------
need=()
if [ -z "$ONLY" ]; then
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
fi
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; } \
    || die "cannot install ${need[*]} (apt-get)"
fi

# --- build --------------------------------------------------------------------------------------
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if [ $QUICK = 1 ]; then PROFILE=debug; BUILD=(); else PROFILE=release; BUILD=(--release); fi
log "cargo build ${BUILD[*]} --bin keygate --example floor --example genkeys --example apiload"
cargo build --locked -q "${BUILD[@]}" --bin keygate --example floor --example genkeys --example apiload
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
KEYGATE=$TARGET/$PROFILE/keygate
FLOOR=$TARGET/$PROFILE/examples/floor
GENKEYS=$TARGET/$PROFILE/examples/genkeys

OUT=${KEYGATE_BENCH_OUT:-$TARGET/bench}
rm -rf "$OUT"
mkdir -p "$OUT/raw"
W=$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")
CACHE=${KEYGATE_BENCH_CACHE:-${KEYGATE_CACHE:-$HOME/.cache/keygate}/bench}
mkdir -p "$CACHE"
BASE=${KEYGATE_BENCH_PORT:-28443}
KG_PORT=$BASE; FLOOR_PORT=$((BASE + 1)); ADMIN_PORT=$((BASE + 2)); BARE_PORT=$((BASE + 3))
REF_PORT=$((BASE + 4)); REF_ADMIN_PORT=$((BASE + 5)) # part 3's 10-key reference server
# HTTP/2 runs use as many streams as keygate advertises (kube-apiserver's client opens up to
# the advertised limit on one connection). The bare floor advertises hyper's default (200).
H2_STREAMS=${KEYGATE_BENCH_STREAMS:-250}
RESULTS=$OUT/results.tsv
printf 'name\tvalue\tunit\tcommand\n' >"$RESULTS"
result() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$RESULTS"; }

PIDS=()
CLEANUPS=() # functions run at exit (part 4 stops its cluster)
cleanup() {
  local p f
  for f in "${CLEANUPS[@]}"; do "$f" || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

if [ $QUICK = 1 ]; then
  ROUNDS=${KEYGATE_BENCH_ROUNDS:-1}
  H1_N=2000; H2_N=4000; DUR=1; LAT_DUR=1; FLOOD_N=2000; VALID_N=2000; SCALE=${KEYGATE_BENCH_SCALE:-10 1000}
else
  ROUNDS=${KEYGATE_BENCH_ROUNDS:-3}
  H1_N=60000; H2_N=100000; DUR=4; LAT_DUR=5
  FLOOD_N=${KEYGATE_BENCH_FLOOD:-1000000}; VALID_N=${KEYGATE_BENCH_VALID:-200000}
  SCALE=${KEYGATE_BENCH_SCALE:-10 100000 1000000}
fi

# --- machine --------------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "mem: $(grep MemTotal /proc/meminfo | awk '{print $2 " kB"}')"
  echo "kernel: $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "profile: $PROFILE; rounds: $ROUNDS; mode: $([ $QUICK = 1 ] && echo quick || echo full)${ONLY:+; only: $ONLY}"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted src changes)')"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "h2load: $(h2load --version 2>&1 | head -1)"
} >"$OUT/machine.txt"

# --- certificates and bodies ------------------------------------------------------------------
"$KEYGATE" certs --out-dir "$W/certs" >/dev/null 2>&1 || die "keygate certs"
CERT=$W/certs/server.crt; KEY=$W/certs/server.key
FIXTURE=tests/fixtures/tokenreview/request-v1.json
body_for() { # token -> body file on stdout path
  sed "s/\"good.token\"/\"$1\"/" "$FIXTURE" >"$2"
}
URL_PATH="/authenticate?timeout=30s"

cat >"$W/close.lua" <<'EOF'
-- One new TLS connection per request (Connection: close), fixed body.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Connection"] = "close"
EOF
cat >"$W/tokens.lua" <<'EOF'
-- Rotates over the tokens in $BENCH_TOKENS (or random well-formed tokens with unknown IDs
-- when it is "random"); each thread stops after $BENCH_LIMIT responses (0: no limit); counts
-- answers that are not 200 with "authenticated":$BENCH_WANT and writes "responses wrong" to
-- $BENCH_COUNT at the end.
local pre = '{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"token":"'
local post = '","audiences":["https://kubernetes.default.svc"]},"status":{"user":{}}}'
local src = os.getenv("BENCH_TOKENS")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local want = '"authenticated":' .. (os.getenv("BENCH_WANT") or "true")
local alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
local toks = {}
if src ~= "random" then for l in io.lines(src) do toks[#toks + 1] = l end end
local headers = { ["Content-Type"] = "application/json" }
local i = 0
n, wrong = 0, 0
local threads = {}
local function rnd(k)
  local t = {}
  for j = 1, k do local c = math.random(62); t[j] = alphabet:sub(c, c) end
  return table.concat(t)
end
function setup(thread) table.insert(threads, thread) end
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
function request()
  local tok
  if src == "random" then tok = "kg_" .. rnd(22) .. "_" .. rnd(43)
  else i = i % #toks + 1; tok = toks[i] end
  return wrk.format("POST", "/authenticate?timeout=30s", headers, pre .. tok .. post)
end
-- Wall clock (wrk's main thread sleeps for the whole -d even after a thread stops, so the
-- rate of a count-bounded run is timed here: first to last response).
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_usec; } bench_timeval;
           int gettimeofday(bench_timeval *tv, void *tz); ]]
local tv = ffi.new("bench_timeval")
local function now() ffi.C.gettimeofday(tv, nil); return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) * 1e-6 end
t_first, t_last = 0, 0
function response(status, hdrs, body)
  n = n + 1
  t_last = now()
  if n == 1 then t_first = t_last end
  if status ~= 200 or not body:find(want, 1, true) then wrong = wrong + 1 end
  if limit > 0 and n == limit then
    -- Tells hack/bench.sh to interrupt wrk (which then calls done()).
    local f = assert(io.open(os.getenv("BENCH_COUNT") .. ".reached", "w")); f:close()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local tn, tw, tf, tl = 0, 0, math.huge, 0
  for _, t in ipairs(threads) do
    tn = tn + t:get("n"); tw = tw + t:get("wrong")
    tf = math.min(tf, t:get("t_first")); tl = math.max(tl, t:get("t_last"))
  end
  local f = assert(io.open(os.getenv("BENCH_COUNT"), "w"))
  f:write(string.format("%d %d %.6f\n", tn, tw, tl - tf))
  f:close()
end
EOF

# --- servers ----------------------------------------------------------------------------------
KG_PID=""; FLOOR_PID=""; BARE_PID=""
start_keygate() { # keys-dir [port admin-port] -> sets KG_PID, KG_READY_MS
  local dir=$1 port=${2:-$KG_PORT} admin=${3:-$ADMIN_PORT} t0 t1
  t0=$(date +%s%N)
  "$KEYGATE" serve --store "dir:$dir" --tls-cert "$CERT" --tls-key "$KEY" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --max-concurrent-streams "$H2_STREAMS" \
    >>"$OUT/raw/keygate.log" 2>&1 &
  KG_PID=$!
  PIDS+=("$KG_PID")
  local deadline=$(( $(date +%s) + 600 ))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)" = 200 ]; do
    kill -0 "$KG_PID" 2>/dev/null || die "keygate exited before ready (see $OUT/raw/keygate.log)"
    [ "$(date +%s)" -lt $deadline ] || die "keygate not ready after 600 s"
    sleep 0.02
  done
  t1=$(date +%s%N)
  KG_READY_MS=$(( (t1 - t0) / 1000000 ))
}
stop_pid() {
  local p=$1
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
start_floor() { # floor|bare [--authorize] -> sets FLOOR_PID or BARE_PID
  local who=$1 port pid
  port=$(port_of "$who")
  # shellcheck disable=SC2046
  "$FLOOR" $([ "$who" = bare ] && echo --bare) ${2:-} --listen "127.0.0.1:$port" --tls-cert "$CERT" --tls-key "$KEY" >>"$OUT/raw/$who.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if [ "$who" = bare ]; then BARE_PID=$pid; else FLOOR_PID=$pid; fi
  local i
  for i in $(seq 1 500); do
    curl -sk -o /dev/null "https://127.0.0.1:$port/" && return 0
    kill -0 "$pid" 2>/dev/null || die "$who exited at start (see $OUT/raw/$who.log)"
    sleep 0.02
  done
  die "$who not listening after 10 s"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
port_of() { case $1 in keygate) echo $KG_PORT ;; bare) echo $BARE_PORT ;; *) echo $FLOOR_PORT ;; esac; }

# Checks that a server answers the valid body with authenticated:true over h1 and h2.
sanity() {
  local who=$1 port; port=$(port_of "$1")
  local a
  a=$(curl -sk --http1.1 -X POST -H 'Content-Type: application/json' --data-binary "@$W/valid.json" "https://127.0.0.1:$port$URL_PATH") || die "$who: curl over HTTP/1.1 failed"
  [[ $a == *'"authenticated":true'* ]] || die "$who: valid key not authenticated over HTTP/1.1: $a"
  if curl -V | grep -q HTTP2; then
    a=$(curl -sk --http2 -X POST -H 'Content-Type: application/json' --data-binary "@$W/valid.json" "https://127.0.0.1:$port$URL_PATH") || die "$who: curl over HTTP/2 failed"
    [[ $a == *'"authenticated":true'* ]] || die "$who: valid key not authenticated over HTTP/2: $a"
  fi
}

# --- load runs: each prints req/s on stdout and keeps the raw output -----------------------------
# Labels are unique per run; the raw output is $OUT/raw/<label>.txt, its first line the command.
h2load_run() { # label port args... ; echoes req/s
  local label=$1 port=$2; shift 2
  local raw=$OUT/raw/$label.txt
  # RUN_BODY / RUN_PATH: another request than the valid TokenReview (the /authorize part).
  local cmd=(h2load "$@" -d "${RUN_BODY:-$W/valid.json}" -H 'Content-Type: application/json' "https://127.0.0.1:$port${RUN_PATH:-$URL_PATH}")
  echo "\$ ${cmd[*]}" >"$raw"
  timeout 120 "${cmd[@]}" >>"$raw" 2>&1 || die "$label: h2load failed (exit $?), see $raw"
  python3 "$ROOT/hack/lib/bench_report.py" parse-h2load "$raw" || die "$label: h2load reported errors, see $raw"
}
wrk_run() { # label port duration lua [env...]; echoes req/s
  local label=$1 port=$2 dur=$3 lua=$4; shift 4
  local raw=$OUT/raw/$label.txt
  local conns=${WRK_CONNS:-16}
  local cmd=(wrk -t 1 -c "$conns" -d "${dur}s" --timeout 5s --latency -s "$lua" "https://127.0.0.1:$port$URL_PATH")
  echo "\$ ${*:+env $* }${cmd[*]}" >"$raw"
  local count=""
  local e
  for e in "$@"; do case $e in BENCH_COUNT=*) count=${e#BENCH_COUNT=} ;; esac; done
  if [ -n "$count" ]; then rm -f "$count" "$count.reached"; fi
  env "$@" "${cmd[@]}" >>"$raw" 2>&1 &
  local pid=$! t=0 rc=0
  # Bounded in time (-d, and a hard stop 60 s later) and, with BENCH_LIMIT, in count: wrk's
  # main thread would sleep out -d after the limit, so it is interrupted (SIGINT: it reports).
  while kill -0 $pid 2>/dev/null; do
    if [ -n "$count" ] && [ -e "$count.reached" ]; then kill -INT $pid 2>/dev/null || true; break; fi
    [ $t -lt $(( (dur + 60) * 20 )) ] || { kill -INT $pid 2>/dev/null || true; break; }
    sleep 0.05; t=$((t + 1))
  done
  wait $pid || rc=$?
  [ $rc = 0 ] || die "$label: wrk failed (exit $rc), see $raw"
  if [ -n "$count" ]; then
    [ -s "$count" ] || die "$label: wrk wrote no response count, see $raw"
    cat "$count" >>"$raw"
    python3 "$ROOT/hack/lib/bench_report.py" parse-wrk "$raw" >/dev/null || die "$label: wrk reported errors, see $raw"
    # req/s from the script's own first-to-last-response clock.
    awk '{ if ($3 > 0) printf "%.2f\n", ($1 - 1) / $3; else print 0 }' "$count"
  else
    python3 "$ROOT/hack/lib/bench_report.py" parse-wrk "$raw" || die "$label: wrk reported errors, see $raw"
  fi
}
cmd_of() { head -1 "$OUT/raw/$1.txt" | sed 's/^\$ //'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
finish() {
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
  python3 "$ROOT/hack/lib/bench_report.py" report "$OUT" || die "report"
  cat "$OUT/summary.md"
  log "results in $OUT (summary.md, chart.svg, results.tsv, raw/)"
}

# --- part 4: through kube-apiserver (hack/lib/bench_apiserver.sh) --------------------------------
# shellcheck source=hack/lib/bench_apiserver.sh
source "$ROOT/hack/lib/bench_apiserver.sh"
if [ "$ONLY" = apiserver ]; then
  api_bench
  finish
  exit 0
fi

# --- part 2: keygate vs floor ------------------------------------------------------------------
log "generating 10 keys"
"$GENKEYS" --dir "$W/keys-10" --count 10 --tokens-out "$W/tokens-10.txt" >"$OUT/raw/genkeys-10.txt" || die genkeys
TOKEN=$(head -1 "$W/tokens-10.txt")
body_for "$TOKEN" "$W/valid.json"

start_keygate "$W/keys-10"
start_floor floor
start_floor bare
sanity keygate
sanity floor
sanity bare
result ready_ms_10_keys "$KG_READY_MS" ms "keygate serve --store dir:<10 keys> (time from exec to /readyz 200)"

declare -A RATES CMDS
for round in $(seq 1 "$ROUNDS"); do
  for who in keygate floor bare; do
    port=$(port_of $who)
    log "round $round: $who"
    r=$(h2load_run "h1-$who-$round" "$port" --h1 -c 64 -t 1 -n "$H1_N")
    RATES[h1_$who]+="$r "; CMDS[h1_$who]=$(cmd_of "h1-$who-$round")
    r=$(h2load_run "h2-$who-$round" "$port" -c 1 -m "$H2_STREAMS" -t 1 -n "$H2_N")
    RATES[h2_$who]+="$r "; CMDS[h2_$who]=$(cmd_of "h2-$who-$round")
    r=$(BENCH_BODY=$W/valid.json wrk_run "newconn-$who-$round" "$port" "$DUR" "$W/close.lua" BENCH_BODY="$W/valid.json")
    RATES[newconn_$who]+="$r "; CMDS[newconn_$who]=$(cmd_of "newconn-$who-$round")
  done
done
for s in h1 h2 newconn; do
  for who in keygate floor bare; do
    # shellcheck disable=SC2086
    result "${s}_rps_$who" "$(median ${RATES[${s}_$who]})" "req/s (median of: ${RATES[${s}_$who]% })" "${CMDS[${s}_$who]}"
  done
done

# p99 at half of keygate's measured maximum (HTTP/2 rate), 16 connections x 1 stream, each
# paced at 1/16 of it (with fewer, one connection's request can outlast its pacing interval and
# h2load then offers less than asked).
MAX=$(awk -F'\t' '$1=="h2_rps_keygate" {print $2}' "$RESULTS")
LAT_CONNS=16
HALF=$(python3 -c "print(max($LAT_CONNS, int(float('$MAX') / 2)))")
PER=$(( HALF / LAT_CONNS ))
for who in keygate floor; do
  port=$(port_of $who)
  raw=$OUT/raw/latency-$who.txt
  cmd=(h2load -c "$LAT_CONNS" -m 1 -t 1 --rps="$PER" -D "$LAT_DUR" --log-file="$W/lat-$who.log" -d "$W/valid.json" -H 'Content-Type: application/json' "https://127.0.0.1:$port$URL_PATH")
  echo "\$ ${cmd[*]}" >"$raw"
  timeout $((LAT_DUR + 60)) "${cmd[@]}" >>"$raw" 2>&1 || die "latency-$who: h2load failed, see $raw"
  python3 "$ROOT/hack/lib/bench_report.py" parse-h2load "$raw" >/dev/null || die "latency-$who: errors, see $raw"
  read -r p50 p99 n < <(python3 "$ROOT/hack/lib/bench_report.py" latency "$W/lat-$who.log") || die "latency-$who: no log"
  got=$(python3 -c "print(round($n / $LAT_DUR))")
  result "lat_p50_us_$who" "$p50" "µs at $HALF req/s offered, $got req/s done ($n requests)" "${cmd[*]}"
  result "lat_p99_us_$who" "$p99" "µs at $HALF req/s offered, $got req/s done ($n requests)" "${cmd[*]}"
done
stop_pid "$FLOOR_PID"; FLOOR_PID=""
stop_pid "$BARE_PID"; BARE_PID=""

# --- part 2b: POST /authorize for a user who is not a key -------------------------------------------
# What every request RBAC does not allow costs once keygate is kube-apiserver's authorization
# webhook (and every request, in the instant-revocation mode): keygate's no-opinion answer against
# both floors answering a fixed SubjectAccessReview of the same size.
SAR_BODY=$W/sar.json
cp tests/fixtures/subjectaccessreview/request-v1.json "$SAR_BODY"
start_floor floor --authorize
start_floor bare --authorize
for who in keygate floor bare; do
  a=$(curl -sk -X POST -H 'Content-Type: application/json' --data-binary "@$SAR_BODY" "https://127.0.0.1:$(port_of $who)/authorize") || die "$who: /authorize failed"
  [[ $a == *'"allowed":false'* && $a != *denied* ]] || die "$who: /authorize did not answer no opinion: $a"
done
declare -A ARATES ACMDS
for round in $(seq 1 "$ROUNDS"); do
  for who in keygate floor bare; do
    port=$(port_of $who)
    log "round $round: /authorize, $who"
    r=$(RUN_BODY=$SAR_BODY RUN_PATH=/authorize?timeout=30s h2load_run "authz-h1-$who-$round" "$port" --h1 -c 64 -t 1 -n "$H1_N")
    ARATES[h1_$who]+="$r "; ACMDS[h1_$who]=$(cmd_of "authz-h1-$who-$round")
    r=$(RUN_BODY=$SAR_BODY RUN_PATH=/authorize?timeout=30s h2load_run "authz-h2-$who-$round" "$port" -c 1 -m "$H2_STREAMS" -t 1 -n "$H2_N")
    ARATES[h2_$who]+="$r "; ACMDS[h2_$who]=$(cmd_of "authz-h2-$who-$round")
  done
done
for s in h1 h2; do
  for who in keygate floor bare; do
    # shellcheck disable=SC2086
    result "authz_${s}_rps_$who" "$(median ${ARATES[${s}_$who]})" "req/s (median of: ${ARATES[${s}_$who]% })" "${ACMDS[${s}_$who]}"
  done
done
stop_pid "$FLOOR_PID"; FLOOR_PID=""
stop_pid "$BARE_PID"; BARE_PID=""
stop_pid "$KG_PID"; KG_PID=""

# --- part 3: scale ----------------------------------------------------------------------------
log "empty server"
mkdir -p "$W/keys-0"
start_keygate "$W/keys-0"
sleep 1
RSS0=$(rss_kb "$KG_PID")
result rss_kb_0_keys "$RSS0" kB "VmRSS of keygate serve --store dir:<empty>, 1 s after /readyz"
stop_pid "$KG_PID"; KG_PID=""

# A 10-key server runs beside each bigger one, and their rounds alternate: the ratio of a key
# count to 10 keys is taken per round, one run right after the other, not across minutes.
start_keygate "$W/keys-10" "$REF_PORT" "$REF_ADMIN_PORT"
REF_PID=$KG_PID; KG_PID=""
# label port seconds tokens-file|random limit(0: none) want(true|false) -> "req/s count"; dies
# unless every answer is "authenticated":want.
counted_run() {
  local r cnt wrong
  r=$(WRK_CONNS=64 wrk_run "$1" "$2" "$3" "$W/tokens.lua" BENCH_TOKENS="$4" BENCH_LIMIT="$5" BENCH_WANT="$6" BENCH_COUNT="$W/count") || exit 1
  read -r cnt wrong _ <"$W/count" || die "$1: no response count"
  [ "$wrong" = 0 ] || die "$1: $wrong of $cnt answers were not authenticated:$6"
  echo "$r $cnt"
}

SCALE_COUNT=${VALID_N}
for n in $SCALE; do
  KEYS_DIR=$W/keys-$n
  if [ "$n" != 10 ]; then
    # Big key sets are kept between runs (writing, and deleting, a million files takes minutes):
    # $KEYGATE_BENCH_CACHE/keys-N with its tokens and genkeys' own timing from when it was made.
    KEYS_DIR=$CACHE/keys-$n
    if [ ! -s "$CACHE/genkeys-$n.txt" ] || [ ! -s "$CACHE/tokens-$n.txt" ]; then
      log "generating $n keys into $KEYS_DIR"
      rm -rf "$KEYS_DIR" "$CACHE/genkeys-$n.txt"
      "$GENKEYS" --dir "$KEYS_DIR" --count "$n" --tokens-out "$CACHE/tokens-$n.txt" --tokens 10000 >"$CACHE/genkeys-$n.tmp" || die "genkeys $n"
      mv "$CACHE/genkeys-$n.tmp" "$CACHE/genkeys-$n.txt"
    else
      log "reusing $n keys in $KEYS_DIR (made $(date -r "$CACHE/genkeys-$n.txt" -u +%FT%TZ))"
    fi
    cp "$CACHE/genkeys-$n.txt" "$OUT/raw/genkeys-$n.txt"
    cp "$CACHE/tokens-$n.txt" "$W/tokens-$n.txt"
    gk=$(sed -n 's/.* in \([0-9.]*\) s .*/\1/p' "$OUT/raw/genkeys-$n.txt")
    result "genkeys_s_$n" "$gk" s "$(basename "$GENKEYS") --dir D --count $n --tokens-out F --tokens 10000 (when $KEYS_DIR was made)"
  fi
  log "keygate with $n keys"
  start_keygate "$KEYS_DIR"
  result "ready_ms_$n" "$KG_READY_MS" ms "keygate serve --store dir:<$n keys> (exec to /readyz 200)"
  sleep 1
  rss=$(rss_kb "$KG_PID")
  result "rss_kb_$n" "$rss" kB "VmRSS 1 s after /readyz"
  result "bytes_per_key_$n" "$(( (rss - RSS0) * 1024 / n ))" "bytes/key above the empty server" ""
  TOKS=$W/tokens-$n.txt
  # Several rounds, median: one run of a few seconds moves by ±30 % on this shared machine, and
  # the key counts are compared with each other.
  rates=(); refs=(); ratios=()
  for i in $(seq 1 "$ROUNDS"); do
    own() { read -r r _ < <(counted_run "scale-$n-$i" $KG_PORT "$DUR" "$TOKS" 0 true) || die "scale-$n-$i"; }
    ref() { read -r rr _ < <(counted_run "scale-ref-$n-$i" $REF_PORT "$DUR" "$W/tokens-10.txt" 0 true) || die "scale-ref-$n-$i"; }
    if [ "$n" = 10 ]; then
      own; rates+=("$r")
      continue
    fi
    # The order alternates too, so neither server always runs first.
    if [ $((i % 2)) = 1 ]; then own; ref; else ref; own; fi
    rates+=("$r"); refs+=("$rr"); ratios+=("$(python3 -c "print(round($r / $rr, 3))")")
  done
  result "scale_rps_$n" "$(median "${rates[@]}")" "req/s (HTTP/1.1, 64 conns, tokens rotating over $(wc -l <"$TOKS") keys; median of: ${rates[*]})" "$(cmd_of "scale-$n-1")"
  if [ "$n" != 10 ]; then
    result "scale_ref_rps_$n" "$(median "${refs[@]}")" "req/s (the 10-key server in the same rounds; median of: ${refs[*]})" "$(cmd_of "scale-ref-$n-1")"
    result "scale_ratio_$n" "$(median "${ratios[@]}")" "$n keys / 10 keys, per round (median of: ${ratios[*]})" ""
  fi
  if [ "$n" = "$(echo $SCALE | awk '{print $NF}')" ]; then
    # The flood: well-formed tokens with random unknown IDs, against the biggest store.
    log "flood of $FLOOD_N unknown IDs ($n keys loaded)"
    # Valid-key and unknown-ID runs alternate (valid, flood, valid, flood), and the flood's rate
    # is compared with the valid run just before it, pair by pair. VmRSS is read before the
    # flood and after each of its halves: growth that stops after the first half is buffers and
    # allocator arenas warming up; growth that goes on would be per-request.
    vhalf=$((VALID_N / 2)); half=$((FLOOD_N / 2))
    read -r v1 vc1 < <(counted_run "valid-$n-1" $KG_PORT 600 "$TOKS" "$vhalf" true) || die "valid-$n-1"
    before=$(rss_kb "$KG_PID")
    entries_before=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^keygate_cache_entries/ {print $2}')
    read -r r1 cnt1 < <(counted_run "flood-$n-1" $KG_PORT 900 random "$half" false) || die "flood-$n-1"
    mid=$(rss_kb "$KG_PID")
    read -r v2 vc2 < <(counted_run "valid-$n" $KG_PORT 600 "$TOKS" "$vhalf" true) || die "valid-$n"
    read -r r2 cnt2 < <(counted_run "flood-$n" $KG_PORT 900 random "$half" false) || die "flood-$n"
    after=$(rss_kb "$KG_PID")
    entries_after=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^keygate_cache_entries/ {print $2}')
    result "valid_rps_$n" "$(python3 -c "print(round(2 / (1 / $v1 + 1 / $v2), 2))")" "req/s ($((vc1 + vc2)) valid-key reviews in two halves: $v1 and $v2 req/s, 64 conns)" "$(cmd_of "valid-$n")"
    result "flood_rps_$n" "$(python3 -c "print(round(2 / (1 / $r1 + 1 / $r2), 2))")" "req/s ($((cnt1 + cnt2)) unknown-ID reviews in two halves: $r1 and $r2 req/s, 64 conns)" "$(cmd_of "flood-$n")"
    result "flood_ratio_$n" "$(python3 -c "print(round(($r1 / $v1 + $r2 / $v2) / 2, 3))")" "unknown-ID / valid-key rate, each flood half against the valid half just before it (mean of: $(python3 -c "print(round($r1 / $v1, 3), round($r2 / $v2, 3))"))" ""
    result "flood_rss_kb_mid" "$mid" kB "after the first $cnt1 unknown-ID reviews"
    result "flood_rss_kb_before" "$before" kB ""
    result "flood_rss_kb_after" "$after" kB ""
    result "flood_cache_entries_before" "${entries_before:-?}" entries "keygate_cache_entries on /metrics"
    result "flood_cache_entries_after" "${entries_after:-?}" entries "keygate_cache_entries on /metrics"
  fi
  stop_pid "$KG_PID"; KG_PID=""
done
stop_pid "$REF_PID"; REF_PID=""

# --- part 4 ---------------------------------------------------------------------------------------
api_bench
finish
