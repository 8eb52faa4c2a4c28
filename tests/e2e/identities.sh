# shellcheck shell=bash
# shellcheck disable=SC2154 # work, secrets, root, alice_* ... are run.sh's and api.sh's
# Two processes, two identities, as the manifests ship them (hack/local-cluster.sh): `keygate`,
# the webhook kube-apiserver calls, runs as keygate-webhook, which may read records and keep
# last use in Leases and nothing else; `keygate-api`, the AccessKey API, runs as keygate-api,
# the only identity that writes records. So a key minted through the API is always first used
# at a webhook process that did not serve its create, and must work at once there.
# Sourced by tests/e2e/api.sh while alice's key exists.

: "${KEYGATE_WEBHOOK_KUBECONFIG:?}" "${KEYGATE_API_KUBECONFIG:?}" "${KEYGATE_CLUSTER_DIR:?}"
ns=$KEYGATE_KEY_NAMESPACE
webhook_kc=$KEYGATE_WEBHOOK_KUBECONFIG

echo "# --- the webhook's identity: read-only on records ---"
for verb in get list watch; do
  check "the webhook's identity may $verb secrets in $ns" [ "$(can "$webhook_kc" "$verb" secrets -n "$ns")" = yes ]
done
for verb in create update patch delete; do
  check "...and may not $verb them" [ "$(can "$webhook_kc" "$verb" secrets -n "$ns")" = no ]
done
check "...it may update Leases there (last use)" [ "$(can "$webhook_kc" update leases.coordination.k8s.io -n "$ns")" = yes ]
check "...and ask SubjectAccessReviews (POST /authorize)" \
  [ "$(can "$webhook_kc" create subjectaccessreviews.authorization.k8s.io)" = yes ]
check "...but not read Secrets elsewhere" [ "$(can "$webhook_kc" get secrets -n kube-system)" = no ]
check "...nor make RoleBindings (that is the API's)" \
  [ "$(can "$webhook_kc" create rolebindings.rbac.authorization.k8s.io -n "$apps")" = no ]
check "the API's identity is the one that may create records (the control)" \
  [ "$(can "$KEYGATE_API_KUBECONFIG" create secrets -n "$ns")" = yes ]
as_webhook() { kubectl --kubeconfig "$webhook_kc" --request-timeout=20s -n "$ns" "$@"; }
err=$(as_webhook create secret generic keygate-by-the-webhook --type keygate.dev/access-key \
  --from-literal id=AAAAAAAAAAAAAAAAAAAAAA --from-literal role=admin 2>&1 >/dev/null)
check "kubectl create of a record with the webhook's credentials is forbidden" grep -qi forbidden <<<"$err"
err=$(as_webhook label secret "keygate-$alice_name" e2e=touched 2>&1 >/dev/null)
check "...and so is changing a real record" grep -qi forbidden <<<"$err"

# Last use: the webhook writes the Lease keygate-<name> (here every second,
# --last-used-interval 1s); the API, another process, reads it for status.lastUsed.
check "alice's key is used through kube-apiserver" [ "$(status "$alice_kc")" = ok ]
lease_time() { admin get lease "keygate-$alice_name" -n "$ns" -o jsonpath='{.spec.renewTime}' 2>/dev/null | grep .; }
check "...the webhook records it in the Lease keygate-$alice_name" within 20 lease_time
last_used() { as_user alice get ak "$alice_name" -o jsonpath='{.status.lastUsed}' | grep .; }
check "...and the API shows it as status.lastUsed (get)" within 10 last_used
check "...and in a list" bash -c \
  "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get ak -o json | jq -e --arg n '$alice_name' 'any(.items[]; .metadata.name == \$n and .status.lastUsed)' >/dev/null"
no_annotation() { ! admin get secret "keygate-$alice_name" -n "$ns" -o json | jq -e '.metadata.annotations["keygate.dev/last-used"]' >/dev/null; }
check "...the record itself was not written for it (no last-used annotation)" no_annotation

echo "# --- a key works at once, at a webhook that did not serve its create ---"
# alice_api METHOD PATH [BODY]: alice's own client certificate, straight to kube-apiserver.
alice_api() {
  curl -s --max-time 20 --cacert "$KEYGATE_APISERVER_CA" \
    --cert "$KEYGATE_CLUSTER_DIR/pki/user-alice.crt" --key "$KEYGATE_CLUSTER_DIR/pki/user-alice.key" \
    -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} "$KEYGATE_APISERVER_URL$2"
}
# at_once METHOD PATH [BODY]: mints (or regenerates) through the API, takes the token from the
# answer without another process and uses it through kube-apiserver at once. Sets at_once_ms
# (from the answer to the use's request), at_once_code (the use's HTTP status), at_once_name
# and at_once_id.
at_once() {
  local body answered started
  body=$(alice_api "$@")
  answered=$(date +%s%N)
  at_once_code="" at_once_name="" at_once_id="" at_once_ms=""
  [[ $body =~ \"token\":\"(kg_[A-Za-z0-9]{22}_[A-Za-z0-9]{43})\" ]] || {
    echo "no token in the answer: $body" >&2
    return 1
  }
  local token=${BASH_REMATCH[1]}
  started=$(date +%s%N)
  at_once_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$KEYGATE_APISERVER_CA" \
    -H "Authorization: Bearer $token" "$KEYGATE_APISERVER_URL/version")
  at_once_ms=$(((started - answered) / 1000000))
  echo "${token:26}" >>"$secrets"
  [[ $body =~ \"id\":\"([A-Za-z0-9]{22})\" ]] && at_once_id=${BASH_REMATCH[1]}
  [[ $body =~ \"name\":\"([a-z0-9]{22})\" ]] && at_once_name=${BASH_REMATCH[1]}
  return 0
}
# webhook_metric PATTERN: the sum of the webhook process's metrics lines matching PATTERN.
webhook_metric() { curl -s "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk -v p="$1" '$0 ~ p {s += $NF} END {print s + 0}'; }
read_through() { webhook_metric '^keygate_read_through_hits'; }
authenticated() { webhook_metric '^keygate_decisions_total[{]result="authenticated"'; }
at_once_ok() { [[ "${at_once_code:-}" == 200 && "${at_once_ms:-999}" -le 100 ]]; }
# served_apart ID BEFORE: keygate-api logged the key's create; the webhook process, which
# serves no API at all, authenticated a token since BEFORE (its count of authenticated reviews).
served_apart() {
  grep -F "$1" "$KEYGATE_CLUSTER_DIR/keygate-api.log" | grep -q 'created through the API' &&
    [ "$(authenticated)" -gt "$2" ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KEYGATE_WEBHOOK_CERTS_DIR/ca.crt" \
      --cert "$KEYGATE_FRONT_PROXY_CLIENT_CERT" --key "$KEYGATE_FRONT_PROXY_CLIENT_KEY" \
      -H 'X-Remote-User: kubernetes-admin' "https://127.0.0.1:$KEYGATE_WEBHOOK_PORT$api_path")" != 200 ]
}
hits_before=$(read_through) authenticated_before=$(authenticated)
at_once POST "$api_path" '{"apiVersion": "keygate.dev/v1alpha1", "kind": "AccessKey", "metadata": {"generateName": "e2e-"}, "spec": {"displayName": "alice-at-once", "role": "view"}}'
check "a key used ${at_once_ms:-?} ms after its create answer (<= 100) is accepted by kube-apiserver (${at_once_code:-no answer})" at_once_ok
# (Polled: keygate writes its log through a buffer, so the create's line may land a moment later.)
check "...keygate-api served the create, the webhook process (another) the review" \
  within 10 served_apart "${at_once_id:-none}" "$authenticated_before"
if [[ -n "$at_once_name" ]]; then
  at_once POST "$api_path/$at_once_name/regenerate" '{}'
  check "the regenerated token, used ${at_once_ms:-?} ms after the answer (<= 100), is accepted (${at_once_code:-no answer})" at_once_ok
fi
# Which path served them is not asserted: the watch may have delivered the record first.
echo "# the webhook read records directly (read-through) $(($(read_through) - hits_before)) time(s) for these"
