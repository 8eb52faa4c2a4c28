# shellcheck shell=bash
# shellcheck disable=SC2154 # work, secrets, root, ... are run.sh's, api.sh's and seals.sh's
# The record guard end to end: a ValidatingAdmissionWebhook served by the webhook process
# (`serve --record-writer keygate-api`, configuration from `keygate webhook-config
# --admission`), registered by `hack/local-cluster.sh guard on` after seals. Seals make a
# hand-written record useless; the guard stops it being written at all, even by a cluster
# admin, so an older copy cannot be put back in place while no webhook is running to remember
# what it saw. Sourced by tests/e2e/api.sh after tests/e2e/seals.sh (as_mallory, secret_json, copy_record, ...).

echo "# --- the record guard: only keygate-api writes records ---"
check "the record guard registers (keygate --record-writer keygate-api)" "$root/hack/local-cluster.sh" guard on
# guarded: mallory's server-side dry run of a hand-written record is refused by the guard
# (kube-apiserver calls webhooks with sideEffects None on dry runs too).
guarded() {
  ! as_mallory create secret generic keygate-guard-probe --type keygate.dev/access-key \
    --from-literal role=admin --dry-run=server >/dev/null 2>&1
}
check "...and is in force" within 20 guarded

ak_create alice '{"displayName": "alice-guarded", "role": "view"}'
guarded_name=$ak_name guarded_token=$ak_token
check "alice mints a key through the API (keygate-api may write)" [ "$(review "$guarded_token")" = true ]
secret_json "keygate-$guarded_name" | jq 'del(.metadata.resourceVersion, .metadata.managedFields)' >"$work/guarded-before.json"
check "...disables it through the API" as_user alice patch ak "$guarded_name" --type merge -p '{"spec":{"disabled":true}}'

# refused_by_guard WHAT CMD...: CMD fails, and the message is the guard's (it names keygate-api).
refused_by_guard() {
  local err
  if err=$("${@:2}" 2>&1 >/dev/null); then
    echo "$1 was allowed" >&2
    return 1
  fi
  grep -q 'keygate-api' <<<"$err" || { echo "$1 refused, but not by the guard: $err" >&2; return 1; }
}
check "mallory's hand-written record is refused at admission, naming who may write" \
  refused_by_guard create as_mallory create secret generic keygate-by-mallory --type keygate.dev/access-key \
  --from-literal role=admin
copy_id=$(rand62 22)
copy_record "$copy_id" <"$work/guarded-before.json" >"$work/guarded-copy.json"
check "...a copy of a real record under a new ID too" refused_by_guard copy as_mallory create -f "$work/guarded-copy.json"
check "...putting back the record from before the disable too (kubectl replace)" \
  refused_by_guard replace as_mallory replace -f "$work/guarded-before.json"
check "...and deleting a record" refused_by_guard delete as_mallory delete secret "keygate-$guarded_name"
check "...even for the cluster admin (system:masters)" \
  refused_by_guard "admin edit" admin -n "$ns" label secret "keygate-$guarded_name" e2e=touched
check "other Secrets in $ns are not the guard's business (mallory creates one)" \
  as_mallory create secret generic e2e-not-a-record --from-literal a=b
check "the key stays disabled" [ "$(review "$guarded_token")" = false ]
check "alice enables it again through the API" as_user alice patch ak "$guarded_name" --type merge -p '{"spec":{"disabled":false}}'
check "...it works" [ "$(review "$guarded_token")" = true ]
check "...and she deletes it through the API" as_user alice delete ak "$guarded_name"
