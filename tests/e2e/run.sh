#!/usr/bin/env bash
# End-to-end scenarios against a running local cluster (see hack/e2e.sh, which starts it and
# exports its variables). kubectl is the client. Prints "N passed, N failed" and exits non-zero
# on any failure.
#
# Two phases, in this order:
# 1. Part 1 (this file): keys are minted with the keygate CLI against the kube store, with the
#    admin's credentials, while NO APIService is registered (the CLI then writes the Secrets
#    itself; once the APIService exists it must go through the API and never write them). This
#    phase also stops and restarts keygate and kube-apiserver, and deletes a namespace, which
#    kube-apiserver 1.20 cannot finish while a registered APIService is unavailable.
# 2. The AccessKey API (tests/e2e/api.sh, sourced here, sharing the counters): registers the
#    APIService, then kubectl as several users, the CLI through the API, and the CLI refusing
#    to fall back to Secrets while the APIService is unavailable. Skipped, with a note, when the
#    keygate binary has no `serve --api` (KEYGATE_E2E_REQUIRE_API=1 makes that a failure).
set -uo pipefail

: "${KEYGATE_BIN:?}" "${KEYGATE_ADMIN_KUBECONFIG:?}" "${KEYGATE_APISERVER_URL:?}" "${KEYGATE_APISERVER_CA:?}"
: "${KEYGATE_CLUSTER_DIR:?}" "${KEYGATE_WEBHOOK_CACHE_TTL:?}"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
secrets="$work/secrets" # every secret minted in this run, for the log check at the end
: >"$secrets"

export KEYGATE_STORE=kube KEYGATE_NAMESPACE="${KEYGATE_KEY_NAMESPACE:-keygate-system}"
export KEYGATE_KUBECONFIG="$KEYGATE_ADMIN_KUBECONFIG" KEYGATE_LOG=warn
unset KEYGATE_DATA_DIR

passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
skip() { skipped=$((skipped + 1)); echo "skip - $*"; }
check() { local name=$1; shift; if "$@" >/dev/null; then ok "$name"; else not_ok "$name"; fi; }

admin() { kubectl --kubeconfig "$KEYGATE_ADMIN_KUBECONFIG" --request-timeout=20s "$@"; }
kg() { "$KEYGATE_BIN" "$@"; }
now_ms() { date +%s%3N; }

# The apiserver's caches: the webhook's own (KEYGATE_WEBHOOK_CACHE_TTL) and kube-apiserver's
# built-in 10 s cache of successful token authentications, which wraps every token
# authenticator, the webhook cache included: refilled from a webhook-cache entry just before it
# expires, it serves that answer 10 s longer. Worst case: TTL + 10 s (+ 1 s for keygate).
ttl_s=${KEYGATE_WEBHOOK_CACHE_TTL%s}
cache_s=$(( ttl_s + 10 ))
revocation_budget_ms=$(( (cache_s + 1) * 1000 ))

# mint NAME ARGS...: creates a key, records its secret, sets $id $token $kc (a kubeconfig for it).
mint() {
  local name=$1; shift
  local out
  out=$(kg keys create --name "$name" "$@" -o json 2>/dev/null) || { echo "keys create $name failed" >&2; return 1; }
  id=$(jq -r .id <<<"$out")
  token=$(jq -r .token <<<"$out")
  echo "${token:26}" >>"$secrets"
  kc="$work/$name.kubeconfig"
  printf '%s' "$token" | kg kubeconfig --server "$KEYGATE_APISERVER_URL" \
    --certificate-authority "$KEYGATE_APISERVER_CA" --token-stdin -o "$kc" >/dev/null 2>&1
}

# kubeconfig_for TOKEN FILE: a kubeconfig with any bearer token inline, written by kubectl
# (keygate kubeconfig only takes keygate tokens).
kubeconfig_for() {
  kubectl config --kubeconfig "$2" set-cluster e2e --server "$KEYGATE_APISERVER_URL" \
    --certificate-authority "$KEYGATE_APISERVER_CA" --embed-certs >/dev/null
  kubectl config --kubeconfig "$2" set-credentials e2e --token "$1" >/dev/null
  kubectl config --kubeconfig "$2" set-context e2e --cluster e2e --user e2e >/dev/null
  kubectl config --kubeconfig "$2" use-context e2e >/dev/null
}

# status KUBECONFIG: ok | unauthorized | error:<message>, from one authenticated request.
status() {
  local err
  if err=$(kubectl --kubeconfig "$1" --request-timeout=10s get --raw /version 2>&1 >/dev/null); then
    echo ok
  elif grep -q Unauthorized <<<"$err"; then
    echo unauthorized
  else
    echo "error:$err"
  fi
}

# wait_status KUBECONFIG WANT SECONDS: polls until the status is WANT; prints the time it took (ms).
wait_status() {
  local start deadline s
  start=$(now_ms)
  deadline=$(( start + $3 * 1000 ))
  while :; do
    s=$(status "$1")
    if [[ "$s" == "$2" ]]; then echo $(( $(now_ms) - start )); return 0; fi
    if (( $(now_ms) > deadline )); then echo "last status: $s" >&2; return 1; fi
    sleep 0.2
  done
}

# can KC VERB RESOURCE [ARGS...]: kubectl auth can-i as KC, the answer's first word ("yes" or
# "no": kubectl appends " - <reason>" to a "no" when an authorizer gave one).
can() {
  local a
  a=$(kubectl --kubeconfig "$1" --request-timeout=20s auth can-i "${@:2}" 2>/dev/null || true)
  echo "${a%% *}"
}

echo "# keygate e2e against $KEYGATE_APISERVER_URL (webhook cache ttl ${ttl_s}s, apiserver success cache 10s)"
# Phase 1 runs without the APIService, whatever an earlier run left registered.
if [[ "${KEYGATE_API_SERVED:-0}" == 1 ]]; then
  "$root/hack/local-cluster.sh" apiservice off 2>/dev/null ||
    { echo "could not remove the APIService before the Part 1 scenarios" >&2; exit 1; }
fi

# --- roles and RBAC ---------------------------------------------------------------------------
mint e2e-admin --role admin; admin_kc=$kc
check "admin key authenticates" [ "$(status "$admin_kc")" = ok ]
check "admin key can create a namespace" kubectl --kubeconfig "$admin_kc" create namespace e2e-a
admin create namespace e2e-b >/dev/null
admin create namespace e2e-c >/dev/null

mint e2e-view --role view; view_kc=$kc; view_id=$id
check "view key can list pods" kubectl --kubeconfig "$view_kc" get pods -n e2e-a
check "view key cannot create pods" bash -c "[ \"\$(kubectl --kubeconfig '$view_kc' auth can-i create pods -n e2e-a 2>/dev/null)\" = no ]"
lower=$(tr 'A-Z' 'a-z' <<<"$view_id")
err=$(kubectl --kubeconfig "$view_kc" create configmap x -n e2e-a 2>&1 || true)
check "RBAC sees the user service-account-<id lowercased>" grep -q "User \"service-account-$lower\" cannot create" <<<"$err"

mint e2e-scoped --role edit --namespace-scope e2e-a; scoped_kc=$kc
check "scoped key acts in its namespace" kubectl --kubeconfig "$scoped_kc" create configmap scoped -n e2e-a
check "scoped key is forbidden in another namespace" bash -c "! kubectl --kubeconfig '$scoped_kc' create configmap scoped -n e2e-b 2>/dev/null"
check "scoped key has no cluster-wide role" bash -c "[ \"\$(kubectl --kubeconfig '$scoped_kc' auth can-i list namespaces 2>/dev/null)\" = no ]"

mint e2e-group --group e2e-team; group_kc=$kc
admin create rolebinding team-view -n e2e-c --clusterrole view --group e2e-team >/dev/null
check "a custom group bound by a RoleBinding works" kubectl --kubeconfig "$group_kc" get configmaps -n e2e-c
check "the custom group grants nothing elsewhere" bash -c "[ \"\$(kubectl --kubeconfig '$group_kc' auth can-i list configmaps -n e2e-b 2>/dev/null)\" = no ]"

# A key manager (itself a keygate key with cluster-wide view) can mint keys up to what it holds.
mint e2e-manager --role view --group e2e-managers; manager_kc=$kc
admin create role e2e-key-manager -n "$KEYGATE_NAMESPACE" \
  --verb=get,list,create,update,patch,delete --resource=secrets >/dev/null
admin create rolebinding e2e-key-manager -n "$KEYGATE_NAMESPACE" --role e2e-key-manager --group e2e-managers >/dev/null
admin create clusterrole e2e-key-manager-grant --verb=create --resource=clusterrolebindings >/dev/null
admin create clusterrolebinding e2e-key-manager-grant --clusterrole e2e-key-manager-grant --group e2e-managers >/dev/null
check "a key manager can mint a key with a role it holds" \
  env KEYGATE_KUBECONFIG="$manager_kc" "$KEYGATE_BIN" keys create --name by-manager --role view -o json
err=$(KEYGATE_KUBECONFIG="$manager_kc" "$KEYGATE_BIN" keys create --name escalation --role admin 2>&1 >/dev/null)
check "a key manager cannot mint a key above its own rights (admin)" grep -q "never exceed its creator" <<<"$err"
check "...and nothing was created" bash -c "! kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get secrets -n '$KEYGATE_NAMESPACE' -o json | jq -e '.items[] | select(.data.name | @base64d == \"escalation\")' >/dev/null"

# --- denials ----------------------------------------------------------------------------------
kubeconfig_for "${token:0:26}$(printf 'x%.0s' {1..43})" "$work/wrong.kubeconfig"
check "wrong secret is Unauthorized" [ "$(status "$work/wrong.kubeconfig")" = unauthorized ]
kubeconfig_for "kg_AAAAAAAAAAAAAAAAAAAAAA_$(printf 'y%.0s' {1..43})" "$work/unknown.kubeconfig"
check "unknown ID is Unauthorized" [ "$(status "$work/unknown.kubeconfig")" = unauthorized ]

mint e2e-expiring --role view --expires "$(date -u -d '+4 seconds' +%Y-%m-%dT%H:%M:%SZ)"; exp_kc=$kc
check "a key works until it expires" [ "$(status "$exp_kc")" = ok ]
check "an expired key is Unauthorized" wait_status "$exp_kc" unauthorized $(( cache_s + 8 ))

mint e2e-toggle --role view; toggle_kc=$kc; toggle_id=$id
check "key works before disable" [ "$(status "$toggle_kc")" = ok ]
kg keys disable "$toggle_id" >/dev/null
check "a disabled key is Unauthorized" wait_status "$toggle_kc" unauthorized $(( cache_s + 3 ))
kg keys enable "$(tr 'A-Z' 'a-z' <<<"$toggle_id")" >/dev/null
check "a re-enabled key works again (ID in any case)" wait_status "$toggle_kc" ok $(( ttl_s + 5 ))

# --- rotation ---------------------------------------------------------------------------------
mint e2e-rotate --role view; rot_id=$id; old_kc=$kc
check "key works before regenerate" [ "$(status "$old_kc")" = ok ]
out=$(kg keys regenerate "$rot_id" -o json 2>/dev/null); new_token=$(jq -r .token <<<"$out")
echo "${new_token:26}" >>"$secrets"
kubeconfig_for "$new_token" "$work/rot-new.kubeconfig"
check "regenerate: the new secret works at once" wait_status "$work/rot-new.kubeconfig" ok 5
check "regenerate without grace: the old secret is refused" wait_status "$old_kc" unauthorized $(( cache_s + 3 ))

mint e2e-grace --role view; grace_id=$id; grace_old_kc=$kc
out=$(kg keys regenerate "$grace_id" --grace 15s -o json 2>/dev/null); grace_new=$(jq -r .token <<<"$out")
echo "${grace_new:26}" >>"$secrets"
kubeconfig_for "$grace_new" "$work/grace-new.kubeconfig"
grace_started=$SECONDS
check "grace: the new secret works" wait_status "$work/grace-new.kubeconfig" ok 5
check "grace: the old secret still works" [ "$(status "$grace_old_kc")" = ok ]
check "after the grace window only the new secret works" wait_status "$grace_old_kc" unauthorized $(( 15 + cache_s + 5 ))
check "grace: the old secret was accepted for at least the grace window" [ $(( SECONDS - grace_started )) -ge 14 ]
check "after grace the new secret still works" [ "$(status "$work/grace-new.kubeconfig")" = ok ]

# --- revocation latency -----------------------------------------------------------------------
mint e2e-revoke --role view; rev_kc=$kc; rev_id=$id
check "key works before delete" [ "$(status "$rev_kc")" = ok ]
start=$(now_ms)
kg keys delete "$rev_id" >/dev/null
if elapsed=$(wait_status "$rev_kc" unauthorized $(( cache_s + 5 ))); then
  total=$(( $(now_ms) - start ))
  echo "# revocation: deleted key refused after ${total} ms (apiserver caches: webhook ${ttl_s}s, built-in success 10s; budget ${revocation_budget_ms} ms)"
  check "a deleted key is refused within the webhook cache TTL + 10 s + 1 s" [ "$total" -le "$revocation_budget_ms" ]
else
  not_ok "a deleted key is refused within the webhook cache TTL + 10 s + 1 s (never refused)"
fi

# keygate's own share of revocation, asking the webhook directly (as kube-apiserver does, with
# its client certificate), without the apiserver's caches in front.
review() {
  curl -s --max-time 5 --cacert "$KEYGATE_WEBHOOK_CERTS_DIR/ca.crt" \
    --cert "$KEYGATE_WEBHOOK_CERTS_DIR/client.crt" --key "$KEYGATE_WEBHOOK_CERTS_DIR/client.key" \
    -H 'content-type: application/json' "$KEYGATE_WEBHOOK_URL" \
    -d "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{\"token\":\"$1\"}}" |
    jq -r .status.authenticated
}
mint e2e-direct --role view; direct_id=$id; direct_token=$token
check "the webhook accepts a live key directly" [ "$(review "$direct_token")" = true ]
start=$(now_ms)
kg keys delete "$direct_id" >/dev/null 2>&1
while [[ "$(review "$direct_token")" != false ]] && (( $(now_ms) - start < 5000 )); do sleep 0.01; done
direct_ms=$(( $(now_ms) - start ))
echo "# revocation at the webhook itself: ${direct_ms} ms from \`keys delete\` returning to a denial"
check "keygate itself refuses a deleted key within 1 s" [ "$direct_ms" -le 1000 ]

# --- other authenticators still work ----------------------------------------------------------
admin create serviceaccount e2e-sa -n e2e-a >/dev/null
sa_token=$(admin create token e2e-sa -n e2e-a 2>/dev/null || true)
if [[ -n "$sa_token" ]]; then
  kubeconfig_for "$sa_token" "$work/sa.kubeconfig"
  check "a ServiceAccount token still authenticates" [ "$(status "$work/sa.kubeconfig")" = ok ]
else
  not_ok "a ServiceAccount token still authenticates (could not mint one with kubectl create token)"
fi
if [[ -n "${KEYGATE_STATIC_TOKEN:-}" ]]; then
  kubeconfig_for "$KEYGATE_STATIC_TOKEN" "$work/static.kubeconfig"
  check "a static token-file token still authenticates" [ "$(status "$work/static.kubeconfig")" = ok ]
fi
check "the admin's client certificate still works" admin get ns kube-system

# --- the control plane: kube-controller-manager ----------------------------------------------
# gone KIND NAME [-n NS]: true once the object is NotFound.
gone() {
  local out
  if out=$(admin get "$@" -o name 2>&1); then return 1; fi
  grep -q NotFound <<<"$out"
}
# within SECONDS CMD...: polls CMD until it succeeds, for at most SECONDS.
within() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do (( SECONDS < deadline )) || return 1; sleep 0.5; done
}
check "the view ClusterRole has rules (aggregated by kube-controller-manager), pods among them" \
  bash -c "kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get clusterrole view -o json |
    jq -e '(.rules | length > 0) and any(.rules[]; (.resources // [] | index(\"pods\")) and (.verbs | index(\"list\")))'"
check "admin aggregates edit's rules" bash -c "kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get clusterroles edit admin -o json |
  jq -e '(.items[0].rules - .items[1].rules) | length == 0'"
admin create namespace e2e-kcm >/dev/null
check "a new namespace gets its default ServiceAccount" within 30 admin get serviceaccount default -n e2e-kcm
admin create configmap owner -n e2e-kcm >/dev/null
owner_uid=$(admin get configmap owner -n e2e-kcm -o jsonpath='{.metadata.uid}')
admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  namespace: e2e-kcm
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: "$owner_uid"}
EOF
admin delete configmap owner -n e2e-kcm >/dev/null
check "garbage collection deletes a dependent within 30 s" within 30 gone configmap dependent -n e2e-kcm
check "kube-controller-manager restarts" "$root/hack/local-cluster.sh" restart kube-controller-manager
admin create configmap content -n e2e-kcm >/dev/null
admin delete namespace e2e-kcm --wait=false >/dev/null
t_ns=$SECONDS
if within 60 gone namespace e2e-kcm; then
  echo "# namespace with a ConfigMap deleted completely in $((SECONDS - t_ns)) s"
  ok "a namespace with a ConfigMap is deleted completely within 60 s"
else
  not_ok "a namespace with a ConfigMap is deleted completely within 60 s (phase: $(admin get ns e2e-kcm -o jsonpath='{.status.phase}' 2>&1))"
fi
check "...and none of its ConfigMaps is left in storage" \
  bash -c "[ -z \"\$(kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get configmaps -A --field-selector metadata.namespace=e2e-kcm -o name)\" ]"

# --- restarts ---------------------------------------------------------------------------------
mint e2e-survivor --role view; surv_kc=$kc; surv_token=$token
mint e2e-doomed --role view; doomed_kc=$kc; doomed_id=$id; doomed_token=$token
check "keys work before the restarts" [ "$(status "$surv_kc")" = ok ]
check "the webhook stops" "$root/hack/local-cluster.sh" stop keygate
check "a key is deleted while the webhook is down" kg keys delete "$doomed_id"
check "the webhook starts again" "$root/hack/local-cluster.sh" start keygate
check "after a webhook restart keys keep working" wait_status "$surv_kc" ok 20
check "a key deleted during the webhook outage does not come back" wait_status "$doomed_kc" unauthorized $(( cache_s + 3 ))
metric() { curl -s "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
errors_before=$(metric keygate_store_errors_total)
check "kube-apiserver stops" "$root/hack/local-cluster.sh" stop kube-apiserver
check "with the apiserver down, keygate answers live keys from its cache" [ "$(review "$surv_token")" = true ]
check "with the apiserver down, deleted keys stay refused" [ "$(review "$doomed_token")" = false ]
store_failing() {
  local deadline=$((SECONDS + 30))
  while (( SECONDS < deadline )); do
    (( $(metric keygate_store_errors_total) > errors_before )) && return 0
    sleep 0.5
  done
  return 1
}
check "with the apiserver down, keygate counts store errors (keygate_store_errors_total)" store_failing
check "keygate exposes store staleness (keygate_store_stale_seconds)" bash -c "[ -n \"\$(curl -s '$KEYGATE_WEBHOOK_ADMIN_URL/metrics' | grep '^keygate_store_stale_seconds ')\" ]"
check "kube-apiserver starts again" "$root/hack/local-cluster.sh" start kube-apiserver
check "after an apiserver restart keys keep working" wait_status "$surv_kc" ok 60
check "after an apiserver restart deleted keys stay deleted" [ "$(status "$doomed_kc")" = unauthorized ]
mint e2e-after --role view; after_kc=$kc
check "keys minted after the apiserver restart work (watch resumed)" wait_status "$after_kc" ok 10

# --- phase 2: the AccessKey API -----------------------------------------------------------------
if [[ "${KEYGATE_API_SERVED:-0}" == 1 ]]; then
  # shellcheck source=tests/e2e/api.sh
  source "$here/api.sh"
  # shellcheck source=tests/e2e/console.sh
  source "$here/console.sh"
elif [[ "${KEYGATE_E2E_REQUIRE_API:-0}" == 1 ]]; then
  not_ok "the AccessKey API scenarios (keygate serve has no --api)"
else
  echo "# skipped: the AccessKey API scenarios (tests/e2e/api.sh): $KEYGATE_BIN has no \`serve --api\`"
fi

# --- secret hygiene ---------------------------------------------------------------------------
leaks=0
while read -r s; do
  [[ -n "$s" ]] || continue
  if grep -rqF -- "$s" "$KEYGATE_CLUSTER_DIR"/*.log; then leaks=$((leaks + 1)); fi
  # Not even a prefix of the secret.
  if grep -rqF -- "${s:0:8}" "$KEYGATE_CLUSTER_DIR"/*.log; then leaks=$((leaks + 1)); fi
done <"$secrets"
check "no secret minted in this run ($(wc -l <"$secrets") secrets) appears in any log" [ "$leaks" -eq 0 ]
check "keygate logged decisions" grep -q tokenreview "$KEYGATE_CLUSTER_DIR/keygate.log"

echo "e2e: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
