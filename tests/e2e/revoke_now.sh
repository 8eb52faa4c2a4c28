# shellcheck shell=bash
# shellcheck disable=SC2154 # work, root, apps, ... are run.sh's and api.sh's
# Instant revocation: kube-apiserver asks keygate's /authorize before RBAC
# (--authorization-mode=Node,Webhook,RBAC, 1 s authorization cache TTLs) and keygate runs with
# --authorize-deny-revoked. A key deleted a moment after it was used is refused at
# authorization while kube-apiserver still holds its authentication (10 s + the webhook TTL).
# Sourced last by tests/e2e/api.sh: it restarts kube-apiserver in that mode and leaves it so.

echo "# --- instant revocation: keygate before RBAC, --authorize-deny-revoked ---"
check "kube-apiserver restarts with Node,Webhook,RBAC; keygate with --authorize-deny-revoked" \
  "$root/hack/local-cluster.sh" authz-mode Node,Webhook,RBAC --deny-revoked
check "...the APIService is Available again" "$root/hack/local-cluster.sh" apiservice on
ak_create alice '{"displayName": "alice-revoke", "role": "view"}'
check "alice mints a view key" [ -n "$ak_json" ]
revoke_kc=$ak_kc revoke_name=$ak_name
# pods_as KC: "ok", "forbidden", "unauthorized" or the error, for one list of pods in $apps.
pods_as() {
  local err
  if err=$(kubectl --kubeconfig "$1" --request-timeout=20s get pods -n "$apps" 2>&1 >/dev/null); then
    echo ok
  elif grep -q Forbidden <<<"$err"; then echo forbidden
  elif grep -q Unauthorized <<<"$err"; then echo unauthorized
  else echo "$err"; fi
}
check "the key lists pods (its authentication now cached by kube-apiserver)" \
  within 10 bash -c "[ \"\$(kubectl --kubeconfig '$revoke_kc' --request-timeout=20s get pods -n '$apps' -o name >/dev/null 2>&1 && echo ok)\" = ok ]"
check "...again, a moment before it is deleted" [ "$(pods_as "$revoke_kc")" = ok ]
check "alice deletes the key" as_user alice delete ak "$revoke_name"
t0=$(now_ms) got="" elapsed=""
while (( $(now_ms) - t0 < 15000 )); do
  got=$(pods_as "$revoke_kc")
  [[ "$got" == ok ]] || { elapsed=$(( $(now_ms) - t0 )); break; }
  sleep 0.1
done
# The bound: kube-apiserver's authorization cache (1 s) and keygate's watch (well under 1 s).
check "...kube-apiserver refuses it at authorization, not authentication (403, after ${elapsed:-?} ms; got: ${got})" \
  [ "$got" = forbidden ]
check "...within a few seconds, well inside the 10 s authentication cache (${elapsed:-?} ms <= 3000)" [ "${elapsed:-99999}" -le 3000 ]
check "everyone else is unaffected: the admin lists pods" [ "$(pods_as "$KEYGATE_ADMIN_KUBECONFIG")" = ok ]
check "...victor (view, static token) lists pods" [ "$(pods_as "$KEYGATE_VICTOR_KUBECONFIG")" = ok ]
check "...and nina's inheriting key still creates a ConfigMap in $apps" \
  kubectl --kubeconfig "$ninai_kc" --request-timeout=20s create configmap nina-after-mode -n "$apps"
