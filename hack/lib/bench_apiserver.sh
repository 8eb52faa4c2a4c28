# Part 4 of hack/bench.sh: end to end through a real kube-apiserver. Sourced by hack/bench.sh
# (after its build and setup: uses log, die, result, median, QUICK, PROFILE, KEYGATE, TARGET,
# OUT, W, ROOT), never run on its own; `hack/bench.sh --only apiserver [--quick]` runs just
# this part.
#
# The same request, GET /api/v1/namespaces/default/pods, authenticated three ways:
#   keygate    a keygate key (token webhook, --authentication-token-webhook-cache-ttl=0s)
#   static     a token from kube-apiserver's --token-auth-file
#   bootstrap  a bootstrap token (Secret bootstrap-token-<id> in kube-system)
# Each identity is in a group bound to ClusterRole view in `default` (RoleBinding), so
# authorization costs the same.
#
# kube-apiserver 1.20 caches every successful token authentication for 10 s in front of all
# token authenticators (tokencache, not configurable): a repeated token never reaches the
# authenticator under test. So every request carries a token never used before in this
# cluster: each run takes a fresh slice of its authenticator's token list and uses each token
# once (examples/apiload.rs). Checked per run on keygate's /metrics: the decisions counter
# grows by exactly the run's request count for keygate runs, and by 0 for the others.
#
# Then part 5 (issue 16), realistic reuse: keygate keys vs static tokens again, but each run's
# requests spread over 1 000 tokens unevenly (Zipf weights 1/rank, `apiload run --keys`), with
# kube-apiserver's caches as shipped: the cluster runs with the webhook cache TTL at
# kube-apiserver's default (2m), which changes nothing for the fresh-token runs (a token never
# seen is in no cache). Each round takes a fresh slice of 1 000 tokens per authenticator, so
# each run includes the first use of its keys. keygate's decision count per run is reported
# and checked to be at most the number of distinct tokens the run used (and 0 for static).
#
# Then part 6 (issue 13), the authorizer: a key that inherits its creator's rights (no RBAC grant
# of its own: kube-apiserver asks keygate's /authorize, which asks kube-apiserver about the
# creator) against the creator's own token, the same request, one token each, with
# kube-apiserver's authorization-webhook cache on (TTLs 5m/30s, its defaults) and off (0s: every
# request of the key goes to keygate), then in the instant-revocation mode (keygate first:
# Node,Webhook,RBAC, --authorize-deny-revoked, TTLs 1s), where every request kube-apiserver has
# not cached goes to keygate first, the creator's own included: what that mode costs everyone.
# keygate's own cache of the creator's answers stays on (--authorize-cache-ttl 5s, the default).
#
# Env: KEYGATE_BENCH_API_N (requests per throughput run), KEYGATE_BENCH_API_LAT_N (per latency
# run), KEYGATE_BENCH_API_CONNS (connections of the throughput runs, 16),
# KEYGATE_BENCH_API_LAST_USED (keygate's --last-used-interval, default 0s: off, see below),
# KEYGATE_BENCH_API_REUSE_KEYS (tokens per reuse run, 1000), KEYGATE_BENCH_KUBE_SCALE (0: off;
# N: at the end, N more keygate Secrets are created and keygate is restarted to measure the
# kube store's time to ready and memory per key through this real kube-apiserver).
# shellcheck shell=bash

# Every request uses a new key, so with last-use recording on, keygate would PATCH one Secret
# per request (at most once per key per interval): a load a real key, reused, does not make.
API_LAST_USED=${KEYGATE_BENCH_API_LAST_USED:-0s}
API_CONNS=${KEYGATE_BENCH_API_CONNS:-16}
if [ "$QUICK" = 1 ]; then
  API_ROUNDS=1; API_WARM=50
  API_N=${KEYGATE_BENCH_API_N:-300}; API_LAT_N=${KEYGATE_BENCH_API_LAT_N:-100}
else
  API_ROUNDS=${ROUNDS:-3}; API_WARM=500
  API_N=${KEYGATE_BENCH_API_N:-6000}; API_LAT_N=${KEYGATE_BENCH_API_LAT_N:-1000}
fi
# Quick mode (CI) only checks that the reuse runs work: 100 tokens.
API_REUSE_KEYS=${KEYGATE_BENCH_API_REUSE_KEYS:-$([ "$QUICK" = 1 ] && echo 100 || echo 1000)}
# Tokens per authenticator: a warm-up slice, then a fresh slice for every run of every round
# (part 4), then a slice of API_REUSE_KEYS per round (part 5).
API_TOKENS=$((API_WARM + API_ROUNDS * (API_N + API_LAT_N + API_REUSE_KEYS)))
APILOAD=$TARGET/$PROFILE/examples/apiload
API_DIR=$OUT/cluster
API_UP=0

api_down() {
  [ "$API_UP" = 1 ] || return 0
  API_UP=0
  # Logs of a failed run are kept (they hold no token); a good run's are dropped with the state.
  if [ "${API_OK:-0}" != 1 ] && [ -d "$API_DIR" ]; then
    mkdir -p "$OUT/raw/cluster-logs"
    cp "$API_DIR"/*.log "$OUT/raw/cluster-logs/" 2>/dev/null || true
  fi
  KEYGATE_CLUSTER_DIR=$API_DIR "$ROOT/hack/local-cluster.sh" down >>"$OUT/raw/apiserver-cluster.txt" 2>&1 || true
}
CLEANUPS+=(api_down)

# decisions [authenticated]: keygate's decisions so far (all, or authenticated only).
api_decisions() {
  curl -fsS --max-time 5 "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk -v only="${1:-}" '
    /^keygate_decisions_total\{/ { if (only == "" || index($0, "result=\"authenticated\"")) s += $NF }
    END { printf "%d\n", s }'
}

# api_cpu: CPU time used so far (user + system, clock ticks) by kube-apiserver, keygate, etcd.
API_TCK=$(getconf CLK_TCK)
api_cpu() {
  local c pid
  for c in kube-apiserver keygate etcd; do
    pid=$(cat "$API_DIR/$c.pid" 2>/dev/null || true)
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then printf '0 '; continue; fi
    # Fields 14 and 15 after the command name (which may hold spaces, in parentheses).
    sed 's/.*) //' "/proc/$pid/stat" | awk '{printf "%d ", $12 + $13}'
  done
  echo
}

declare -A API_FILE=([keygate]="$W/api-keygate.tokens" [static]="$W/api-static.tokens" [bootstrap]="$W/api-bootstrap.tokens")
declare -A API_OFF=([keygate]=0 [static]=0 [bootstrap]=0)
API_CHECKED=0

# api_run LABEL WHO COUNT apiload-args...: one run over the next COUNT unused tokens of WHO;
# keeps the JSON line in $OUT/raw/LABEL.json and in API_LINE (not printed: a command
# substitution would run it in a subshell, losing the token offsets). Dies on any answer that is not 200,
# on any failed request, and when keygate's decision count does not move as it must.
api_run() {
  local label=$1 who=$2 count=$3; shift 3
  local raw=$OUT/raw/$label.json off=${API_OFF[$who]} keys
  # With --keys K (reuse), the run takes K tokens and uses them again and again.
  keys=$(printf '%s\n' "$@" | awk 'p { print; exit } $0 == "--keys" { p = 1 }')
  keys=${keys:-0}
  API_OFF[$who]=$((off + (keys > 0 ? keys : count)))
  local cmd=("$APILOAD" run --server "$KEYGATE_APISERVER_URL" --ca "$KEYGATE_APISERVER_CA"
    --tokens "${API_FILE[$who]}" --offset "$off" --count "$count" --max-seconds 300 --label "$label" "$@")
  local before after all_before all_after rc=0
  before=$(api_decisions authenticated) || die "$label: keygate /metrics unreadable"
  all_before=$(api_decisions) || die "$label: keygate /metrics unreadable"
  local cpu0 cpu1
  cpu0=$(api_cpu)
  timeout 330 "${cmd[@]}" >"$raw" 2>>"$OUT/raw/apiload.log" || rc=$?
  cpu1=$(api_cpu)
  # The webhook's last decision can be counted a moment after kube-apiserver answered.
  sleep 0.2
  after=$(api_decisions authenticated) || die "$label: keygate /metrics unreadable"
  all_after=$(api_decisions) || die "$label: keygate /metrics unreadable"
  [ -s "$raw" ] || die "$label: apiload failed (exit $rc) without a report, see $OUT/raw/apiload.log"
  local bad
  bad=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["non200"], d["errors"], d["unsent"], json.dumps(d["statuses"]).replace(" ", ""), d["first_error"] or "")' "$raw")
  read -r non200 errors unsent statuses first_error <<<"$bad"
  if ! { [ "$rc" = 0 ] && [ "$non200" = 0 ] && [ "$errors" = 0 ] && [ "$unsent" = 0 ]; }; then
    die "$label: $non200 answers not 200 (statuses $statuses), $errors failed requests, $unsent not sent ${first_error:+(first error: $first_error) }(apiload exit $rc), see $raw"
  fi
  local want=0
  [ "$who" = keygate ] && want=$count
  if [ "$keys" -gt 0 ]; then
    # Reuse: each distinct token reaches keygate at most once (then kube-apiserver's caches
    # answer); no static request ever does.
    local distinct
    distinct=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["distinct_tokens"])' "$raw")
    [ "$who" = keygate ] || distinct=0
    if [ $((all_after - all_before)) -gt "$distinct" ] || [ $((after - before)) != $((all_after - all_before)) ]; then
      die "$label: keygate decided $((all_after - all_before)) reviews ($((after - before)) authenticated) for $count $who requests over $distinct distinct tokens"
    fi
    want=$((all_after - all_before))
    API_DECIDED=$want
  elif [ $((after - before)) != "$want" ] || [ $((all_after - all_before)) != "$want" ]; then
    die "$label: keygate decided $((all_after - all_before)) reviews ($((after - before)) authenticated) for $count $who requests, expected $want: a cached authentication?"
  fi
  API_CHECKED=$((API_CHECKED + count))
  echo "\$ ${cmd[*]}" >"$raw.cmd"
  echo "  keygate decisions: $all_before -> $all_after (authenticated $before -> $after); expected +$want" >>"$raw.cmd"
  # CPU per request of each process over the run (includes what runs anyway: informers, etc.).
  API_CPU=$(python3 -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); n, t = int(sys.argv[3]), int(sys.argv[4])
print(" ".join(str(round((int(y) - int(x)) * 1e6 / t / n)) for x, y in zip(a, b)))' "$cpu0" "$cpu1" "$count" "$API_TCK")
  echo "  CPU µs per request (kube-apiserver keygate etcd): $API_CPU" >>"$raw.cmd"
  API_LINE=$(cat "$raw")
}
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# keygate's VmRSS (kB) in the cluster.
api_keygate_rss() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$API_DIR/keygate.pid")/status"; }
# Restarts keygate and echoes the milliseconds from start to /readyz (polled every 0.2 s by
# hack/local-cluster.sh, so ±0.2 s).
api_keygate_restart_ms() {
  KEYGATE_CLUSTER_DIR=$API_DIR "$ROOT/hack/local-cluster.sh" stop keygate >>"$OUT/raw/apiserver-cluster.txt" 2>&1 || die "stopping keygate"
  local t0; t0=$(date +%s%N)
  KEYGATE_CLUSTER_DIR=$API_DIR "$ROOT/hack/local-cluster.sh" start keygate >>"$OUT/raw/apiserver-cluster.txt" 2>&1 || die "starting keygate"
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

# The kube store at scale (KEYGATE_BENCH_KUBE_SCALE more Secrets): time to ready and VmRSS after
# a restart, before and after adding them; memory per key is the difference over their number.
api_kube_scale() {
  local n=${KEYGATE_BENCH_KUBE_SCALE:-0} before_ms before_rss after_ms after_rss t1 total loaded deadline
  [ "$n" -gt 0 ] || return 0
  before_ms=$(api_keygate_restart_ms); sleep 1; before_rss=$(api_keygate_rss)
  log "kube store scale: creating $n more key Secrets"
  t1=$SECONDS
  "$APILOAD" seed --kubeconfig "$KEYGATE_ADMIN_KUBECONFIG" --namespace "$KEYGATE_KEY_NAMESPACE" \
    --keygate "$n" --keygate-out "$W/api-scale.tokens" --concurrency 32 \
    2>>"$OUT/raw/apiload.log" || die "apiload seed (scale) failed, see $OUT/raw/apiload.log"
  total=$((API_TOKENS + n)); deadline=$((SECONDS + 600)); loaded=""
  until [ "$loaded" = "$total" ]; do
    [ $SECONDS -lt $deadline ] || die "keygate loaded ${loaded:-?} of $total keys 600 s after seeding"
    sleep 0.5
    loaded=$(curl -fsS --max-time 5 "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk '/^keygate_keys_loaded / {print $2}')
  done
  result kube_scale_seed_s "$((SECONDS - t1))" s "apiload seed --keygate $n (32 in flight), until keygate_keys_loaded = $total"
  after_ms=$(api_keygate_restart_ms); sleep 1; after_rss=$(api_keygate_rss)
  loaded=$(curl -fsS --max-time 5 "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk '/^keygate_keys_loaded / {print $2}')
  [ "$loaded" = "$total" ] || die "after its restart keygate loaded $loaded of $total keys"
  result kube_ready_ms_base "$before_ms" ms "keygate restart to /readyz with $API_TOKENS key Secrets (kube store, real kube-apiserver; ±200 ms)"
  result "kube_ready_ms_$total" "$after_ms" ms "keygate restart to /readyz with $total key Secrets (±200 ms)"
  result kube_rss_kb_base "$before_rss" kB "VmRSS 1 s after /readyz, $API_TOKENS keys"
  result "kube_rss_kb_$total" "$after_rss" kB "VmRSS 1 s after /readyz, $total keys"
  result kube_bytes_per_key "$(( (after_rss - before_rss) * 1024 / n ))" "bytes/key" "(VmRSS at $total keys − at $API_TOKENS keys) / $n"
}

# authorize_decisions: keygate's /authorize answers so far.
api_authorize_decisions() {
  curl -fsS --max-time 5 "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" |
    awk '/^keygate_authorize_decisions_total\{/ { s += $NF } END { printf "%d\n", s }'
}

# api_inherit_run LABEL TOKENS-FILE: COUNT requests with the one token in the file; dies on any
# answer that is not 200. Sets API_LINE and API_AUTHZ (keygate /authorize answers during it).
api_inherit_run() {
  local label=$1 file=$2 raw=$OUT/raw/$1.json rc=0 a0 a1
  a0=$(api_authorize_decisions) || die "$label: keygate /metrics unreadable"
  timeout 330 "$APILOAD" run --server "$KEYGATE_APISERVER_URL" --ca "$KEYGATE_APISERVER_CA" \
    --tokens "$file" --offset 0 --count "$API_N" --keys 1 --conns "$API_CONNS" --max-seconds 300 \
    --label "$label" >"$raw" 2>>"$OUT/raw/apiload.log" || rc=$?
  a1=$(api_authorize_decisions) || die "$label: keygate /metrics unreadable"
  [ -s "$raw" ] || die "$label: apiload failed (exit $rc) without a report"
  local non200 errors
  read -r non200 errors < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["non200"], d["errors"])' "$raw")
  [ "$rc" = 0 ] && [ "$non200" = 0 ] && [ "$errors" = 0 ] ||
    die "$label: $non200 answers not 200, $errors failed requests (apiload exit $rc), see $raw"
  API_AUTHZ=$((a1 - a0))
  echo "  keygate /authorize answers during the run: $API_AUTHZ" >"$raw.cmd"
  API_LINE=$(cat "$raw")
}

# Part 6: an inheriting key of the static-token user against that user's own token.
api_inherit_bench() {
  local kc=$W/static-user.kubeconfig ak out token
  log "part 6: an inheriting key of $KEYGATE_STATIC_TOKEN_USER vs its own token"
  kubectl config --kubeconfig "$kc" set-cluster c --server "$KEYGATE_APISERVER_URL" \
    --certificate-authority "$KEYGATE_APISERVER_CA" --embed-certs >/dev/null
  kubectl config --kubeconfig "$kc" set-credentials u --token "$KEYGATE_STATIC_TOKEN" >/dev/null
  kubectl config --kubeconfig "$kc" set-context c --cluster c --user u >/dev/null
  kubectl config --kubeconfig "$kc" use-context c >/dev/null
  kubectl --kubeconfig "$KEYGATE_ADMIN_KUBECONFIG" create clusterrolebinding bench:self-service \
    --clusterrole keygate:self-service --user "$KEYGATE_STATIC_TOKEN_USER" >/dev/null ||
    die "part 6: binding keygate:self-service"
  ak=$W/inherit.json
  printf '%s' '{"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKey", "metadata": {"generateName": "bench-"},
    "spec": {"displayName": "bench-inherit", "inheritCreator": true, "scope": {"namespaces": ["default"],
    "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}}}' >"$ak"
  out=$(kubectl --kubeconfig "$kc" create -f "$ak" -o json 2>>"$OUT/raw/apiload.log") ||
    die "part 6: the static user could not create an inheriting key, see $OUT/raw/apiload.log"
  token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"]["token"])' "$out")
  (umask 077; echo "$token" >"$W/inherit.tokens"; echo "$KEYGATE_STATIC_TOKEN" >"$W/own.tokens")
  local mode ttl who line round
  declare -A irate ip99 iauthz
  local -a how
  for mode in on off revoke; do
    case $mode in
      on) how=(Node,RBAC,Webhook --cache-ttl 5m) ;;
      off) how=(Node,RBAC,Webhook --cache-ttl 0s) ;;
      revoke) how=(Node,Webhook,RBAC --deny-revoked --cache-ttl 1s) ;;
    esac
    log "part 6: kube-apiserver restarting with authz-mode ${how[*]}"
    KEYGATE_CLUSTER_DIR=$API_DIR "$ROOT/hack/local-cluster.sh" authz-mode "${how[@]}" \
      >>"$OUT/raw/apiserver-cluster.txt" 2>&1 || die "part 6: restarting kube-apiserver (${how[*]})"
    for round in $(seq 1 "$API_ROUNDS"); do
      for who in inherit own; do
        log "part 6, cache $mode, round $round: $who, $API_N requests, $API_CONNS connections"
        api_inherit_run "api-authz-$mode-$who-$round" "$W/$who.tokens"; line=$API_LINE
        irate[$mode-$who]+="$(jget "$line" rate) "; ip99[$mode-$who]+="$(jget "$line" p99_us) "
        iauthz[$mode-$who]+="$API_AUTHZ "
      done
    done
  done
  for mode in on off revoke; do
    for who in inherit own; do
      # shellcheck disable=SC2086
      {
        result "api_authz_${mode}_rps_$who" "$(median ${irate[$mode-$who]})" "req/s (median of: ${irate[$mode-$who]% }; keygate /authorize answers per run: ${iauthz[$mode-$who]% })" "apiload run --keys 1 --count $API_N --conns $API_CONNS (GET pods in default; authorization: $mode)"
        result "api_authz_${mode}_p99_us_$who" "$(median ${ip99[$mode-$who]})" "µs under full load (median of: ${ip99[$mode-$who]% })" ""
      }
    done
  done
}

api_bench() {
  local t0=$SECONDS
  [ -x "$APILOAD" ] || die "no $APILOAD (cargo build --example apiload)"
  log "part 4: $API_TOKENS tokens per authenticator ($API_ROUNDS round(s) of $API_N + $API_LAT_N requests, $API_WARM warm-up)"
  "$APILOAD" static --count "$API_TOKENS" --csv "$W/api-static.csv" --tokens-out "${API_FILE[static]}" \
    2>>"$OUT/raw/apiload.log" || die "apiload static"

  log "part 4: starting etcd + kube-apiserver + keygate (state in $API_DIR)"
  API_UP=1
  # The webhook cache as kube-apiserver ships it (2m): fresh tokens miss it anyway.
  KEYGATE_CLUSTER_DIR=$API_DIR KEYGATE_BIN=$KEYGATE KEYGATE_WEBHOOK_CACHE_TTL=2m \
    KEYGATE_EXTRA_STATIC_TOKENS=$W/api-static.csv \
    KEYGATE_KEYGATE_EXTRA_ARGS="--last-used-interval $API_LAST_USED" \
    "$ROOT/hack/local-cluster.sh" up >>"$OUT/raw/apiserver-cluster.txt" 2>&1 ||
    die "local cluster did not start, see $OUT/raw/apiserver-cluster.txt"
  eval "$(KEYGATE_CLUSTER_DIR=$API_DIR "$ROOT/hack/local-cluster.sh" env)"
  local up_s=$((SECONDS - t0))

  log "part 4: seeding $API_TOKENS keygate keys and $API_TOKENS bootstrap tokens"
  local t1=$SECONDS
  "$APILOAD" seed --kubeconfig "$KEYGATE_ADMIN_KUBECONFIG" --namespace "$KEYGATE_KEY_NAMESPACE" \
    --keygate "$API_TOKENS" --keygate-out "${API_FILE[keygate]}" \
    --bootstrap "$API_TOKENS" --bootstrap-out "${API_FILE[bootstrap]}" --concurrency 32 \
    2>>"$OUT/raw/apiload.log" || die "apiload seed failed, see $OUT/raw/apiload.log"
  local deadline=$((SECONDS + 120)) loaded=""
  until [ "$loaded" = "$API_TOKENS" ]; do
    [ $SECONDS -lt $deadline ] || die "keygate loaded ${loaded:-?} of $API_TOKENS keys after 120 s"
    sleep 0.2
    loaded=$(curl -fsS --max-time 5 "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk '/^keygate_keys_loaded / {print $2}')
  done
  local seed_s=$((SECONDS - t1))
  result api_seed_s "$seed_s" s "apiload seed: $API_TOKENS keygate Secrets + $API_TOKENS bootstrap-token Secrets, 32 in flight, until keygate_keys_loaded = $API_TOKENS"

  # Warm-up (connections, informers, RBAC caches), also the first proof that all three work.
  local who
  for who in keygate static bootstrap; do
    api_run "api-warm-$who" "$who" "$API_WARM" --conns "$API_CONNS"
  done

  declare -A rates p50s p99s lp50s lp99s lrates cpu_api cpu_kg cpu_etcd
  local round order j line a k e
  local -a whos=(keygate static bootstrap)
  for round in $(seq 1 "$API_ROUNDS"); do
    # A different authenticator goes first in each round.
    order=()
    for j in 0 1 2; do order+=("${whos[$(( (j + round - 1) % 3 ))]}"); done
    for who in "${order[@]}"; do
      log "part 4, round $round: $who, $API_N requests, $API_CONNS HTTP/1.1 connections"
      api_run "api-rate-$who-$round" "$who" "$API_N" --conns "$API_CONNS"; line=$API_LINE
      rates[$who]+="$(jget "$line" rate) "; p50s[$who]+="$(jget "$line" p50_us) "; p99s[$who]+="$(jget "$line" p99_us) "
      read -r a k e <<<"$API_CPU"
      cpu_api[$who]+="$a "; cpu_kg[$who]+="$k "; cpu_etcd[$who]+="$e "
    done
    for who in "${order[@]}"; do
      log "part 4, round $round: $who latency, $API_LAT_N requests one at a time"
      api_run "api-lat-$who-$round" "$who" "$API_LAT_N" --conns 1; line=$API_LINE
      lrates[$who]+="$(jget "$line" rate) "; lp50s[$who]+="$(jget "$line" p50_us) "; lp99s[$who]+="$(jget "$line" p99_us) "
    done
  done

  # Part 5: realistic reuse, keygate vs static, alternating which goes first.
  declare -A rrates rp50s rp99s rdecided rdistinct
  for round in $(seq 1 "$API_ROUNDS"); do
    order=(keygate static)
    [ $((round % 2)) = 0 ] && order=(static keygate)
    for who in "${order[@]}"; do
      log "part 5, round $round: $who, $API_N requests over $API_REUSE_KEYS tokens (Zipf), $API_CONNS connections"
      API_DECIDED=0
      api_run "api-reuse-$who-$round" "$who" "$API_N" --conns "$API_CONNS" --keys "$API_REUSE_KEYS"; line=$API_LINE
      rrates[$who]+="$(jget "$line" rate) "; rp50s[$who]+="$(jget "$line" p50_us) "; rp99s[$who]+="$(jget "$line" p99_us) "
      rdecided[$who]+="$API_DECIDED "; rdistinct[$who]+="$(jget "$line" distinct_tokens) "
    done
  done
  local cmd_reuse
  for who in keygate static; do
    cmd_reuse="apiload run --tokens <$who tokens> --count $API_N --conns $API_CONNS --keys $API_REUSE_KEYS --zipf 1 (webhook cache TTL 2m, kube-apiserver's default)"
    # shellcheck disable=SC2086
    {
      result "api_reuse_rps_$who" "$(median ${rrates[$who]})" "req/s (median of: ${rrates[$who]% }; distinct tokens per run: ${rdistinct[$who]% }; keygate decisions per run: ${rdecided[$who]% })" "$cmd_reuse"
      result "api_reuse_p50_us_$who" "$(median ${rp50s[$who]})" "µs under full load (median of: ${rp50s[$who]% })" "$cmd_reuse"
      result "api_reuse_p99_us_$who" "$(median ${rp99s[$who]})" "µs under full load (median of: ${rp99s[$who]% })" "$cmd_reuse"
    }
  done

  api_inherit_bench
  api_kube_scale

  local cmd_rate cmd_lat
  for who in keygate static bootstrap; do
    cmd_rate="apiload run --tokens <$who tokens> --count $API_N --conns $API_CONNS (HTTP/1.1, keep-alive, closed loop; GET /api/v1/namespaces/default/pods)"
    cmd_lat="apiload run --tokens <$who tokens> --count $API_LAT_N --conns 1"
    # shellcheck disable=SC2086
    {
      result "api_rps_$who" "$(median ${rates[$who]})" "req/s (median of: ${rates[$who]% })" "$cmd_rate"
      result "api_load_p50_us_$who" "$(median ${p50s[$who]})" "µs under full load (median of: ${p50s[$who]% })" "$cmd_rate"
      result "api_load_p99_us_$who" "$(median ${p99s[$who]})" "µs under full load (median of: ${p99s[$who]% })" "$cmd_rate"
      result "api_lat_p50_us_$who" "$(median ${lp50s[$who]})" "µs, 1 connection, one request at a time (median of: ${lp50s[$who]% }; req/s: ${lrates[$who]% })" "$cmd_lat"
      result "api_lat_p99_us_$who" "$(median ${lp99s[$who]})" "µs, 1 connection, one request at a time (median of: ${lp99s[$who]% })" "$cmd_lat"
      result "api_cpu_us_apiserver_$who" "$(median ${cpu_api[$who]})" "µs of kube-apiserver CPU per request in the throughput runs (median of: ${cpu_api[$who]% }; /proc/PID/stat, 1/$API_TCK s ticks)" ""
      result "api_cpu_us_keygate_$who" "$(median ${cpu_kg[$who]})" "µs of keygate CPU per request in the throughput runs (median of: ${cpu_kg[$who]% })" ""
      result "api_cpu_us_etcd_$who" "$(median ${cpu_etcd[$who]})" "µs of etcd CPU per request in the throughput runs (median of: ${cpu_etcd[$who]% })" ""
    }
  done
  local rk
  rk=$(awk -F'\t' '$1=="api_rps_keygate" {print $2}' "$RESULTS")
  for who in static bootstrap; do
    local ro lk lo
    ro=$(awk -F'\t' -v n="api_rps_$who" '$1==n {print $2}' "$RESULTS")
    result "api_ratio_keygate_$who" "$(python3 -c "print(round($rk / $ro, 3))")" "keygate / $who req/s (target ≥ 0.9, reported only)" ""
    for p in p50 p99; do
      lk=$(awk -F'\t' -v n="api_lat_${p}_us_keygate" '$1==n {print $2}' "$RESULTS")
      lo=$(awk -F'\t' -v n="api_lat_${p}_us_$who" '$1==n {print $2}' "$RESULTS")
      result "api_added_${p}_us_vs_$who" "$(python3 -c "print(round($lk - $lo))")" "µs added per request by keygate vs $who ($p, 1 connection)" ""
    done
  done
  result api_keygate_reviews_checked "$API_CHECKED" "requests whose keygate decision count was checked on /metrics (every keygate request reached keygate once, no other request reached it)" ""
  result api_tokens_per_authenticator "$API_TOKENS" "distinct tokens per authenticator, each used once ($API_WARM warm-up + $API_ROUNDS × ($API_N + $API_LAT_N))" ""
  result api_cluster_up_s "$up_s" s "hack/local-cluster.sh up (etcd, kube-apiserver and kube-controller-manager 1.20.2, keygate --last-used-interval $API_LAST_USED; webhook cache TTL 2m)"
  API_OK=1
  api_down
  result api_section_s "$((SECONDS - t0))" s "part 4 in all: cluster up, seeding, warm-up, $API_ROUNDS round(s), cluster down"
}
