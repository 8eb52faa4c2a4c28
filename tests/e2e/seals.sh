# shellcheck shell=bash
# shellcheck disable=SC2154 # work, secrets, root, ... are run.sh's and api.sh's
# Records only keygate writes: record seals end to end. mallory holds `edit` in the key
# namespace and no keygate rights, so she may read and write Secrets there. Before seals she
# can write a record by hand and get any key; after `hack/local-cluster.sh seal on` (key pair,
# the one-time `keygate keys seal` migration, keygate restarted with --record-verify-key and
# --record-signing-key) nothing she writes, copies, edits or brings back authenticates.
# Sourced by tests/e2e/api.sh.

: "${KEYGATE_MALLORY_KUBECONFIG:?}"
ns=$KEYGATE_KEY_NAMESPACE
as_mallory() { kubectl --kubeconfig "$KEYGATE_MALLORY_KUBECONFIG" --request-timeout=20s -n "$ns" "$@"; }
rand62() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"; }
# forge ROLE: mallory writes a record by hand, with a secret she chose; sets forged_token and
# forged_name.
forge() {
  local id secret hash
  id=$(rand62 22) secret=$(rand62 43)
  hash=$(printf '%s' "$secret" | sha256sum | cut -d' ' -f1)
  forged_name="keygate-$(lower "$id")" forged_token="kg_${id}_${secret}"
  echo "$secret" >>"$secrets"
  as_mallory create secret generic "$forged_name" --type keygate.dev/access-key \
    --from-literal "id=$id" --from-literal "secret-hash=sha256:$hash" --from-literal "role=$1" >/dev/null
}
# secret_json NAME: the stored record Secret, as mallory reads it.
secret_json() { as_mallory get secret "$1" -o json; }
# copy_record ID: the record Secret on stdin, copied under the key ID ID (name and id field),
# seal and hash kept.
copy_record() {
  jq --arg n "keygate-$(lower "$1")" --arg id "$(printf '%s' "$1" | base64 -w0)" \
    '{apiVersion, kind, type, data: (.data | .id = $id), metadata: {name: $n, namespace: .metadata.namespace}}'
}

echo "# --- record seals: records only keygate writes ---"
check "mallory (edit in $ns, no keygate rights) writes a record by hand (role admin, her own secret)" forge admin
check "...without seals, keygate accepts it: the hole seals close (the control)" [ "$(review "$forged_token")" = true ]
check "...she deletes it again" as_mallory delete secret "$forged_name"

check "seals on: key pair, existing records sealed (keygate keys seal), keygate restarted" \
  "$root/hack/local-cluster.sh" seal on
check "...the APIService is Available again" "$root/hack/local-cluster.sh" apiservice on
check "a key minted before seals, sealed by the migration, still works" [ "$(review "$ninai_token")" = true ]

check "mallory writes another admin record by hand" forge admin
check "...keygate refuses it" [ "$(review "$forged_token")" = false ]
kubeconfig_for "$forged_token" "$work/forged.kubeconfig"
check "...and so does kube-apiserver (401)" [ "$(status "$work/forged.kubeconfig")" = unauthorized ]

ak_create alice '{"displayName": "alice-sealed", "role": "view"}'
sealed_name=$ak_name sealed_token=$ak_token sealed_id=$ak_id
check "a key minted through the API works (its record is sealed)" [ "$(review "$sealed_token")" = true ]
has_seal() { secret_json "keygate-$1" | jq -e '.data.seal and .data["seal-seq"]' >/dev/null; }
check "...its record carries seal and seal-seq" has_seal "$sealed_name"

# A copy of that record under a new ID, keeping its seal and hash: the token with the new ID
# and the real secret would work if the seal did not bind the record to its name.
copy_id=$(rand62 22)
secret_json "keygate-$sealed_name" | copy_record "$copy_id" >"$work/copy.json"
check "mallory copies the sealed record under a new ID (seal and hash kept)" as_mallory create -f "$work/copy.json"
check "...keygate refuses the copy" [ "$(review "kg_${copy_id}_${sealed_token:26}")" = false ]
check "...while the original still works" [ "$(review "$sealed_token")" = true ]

# A record from before a disable, brought back after it (same object, older content).
secret_json "keygate-$sealed_name" | jq 'del(.metadata.resourceVersion, .metadata.managedFields)' >"$work/before-disable.json"
check "alice disables her sealed key through the API" as_user alice patch ak "$sealed_name" --type merge -p '{"spec":{"disabled":true}}'
check "...keygate refuses it" [ "$(review "$sealed_token")" = false ]
check "mallory brings back the record from before the disable (kubectl replace)" \
  as_mallory replace -f "$work/before-disable.json"
check "...keygate still refuses the key (its seal-seq is older than one already seen)" \
  [ "$(review "$sealed_token")" = false ]
# restore NAME FILE: delete the record, create it again from FILE (a new object: a new uid).
restore() { as_mallory delete secret "keygate-$1" >/dev/null && as_mallory create -f "$2" >/dev/null; }
uid_before=$(secret_json "keygate-$sealed_name" | jq -r .metadata.uid)
check "mallory deletes the record and restores it from her copy (a restore from backup)" \
  restore "$sealed_name" "$work/before-disable.json"
check "...a new object (uid changed)" \
  [ "$(secret_json "keygate-$sealed_name" | jq -r .metadata.uid)" != "$uid_before" ]
check "...keygate refuses it (the seal names the old object's uid)" [ "$(review "$sealed_token")" = false ]

ak_create alice '{"displayName": "alice-sealed-2", "role": "view"}'
edit_name=$ak_name edit_token=$ak_token
check "mallory edits a live sealed record's role to admin" \
  as_mallory patch secret "keygate-$edit_name" --type merge -p '{"stringData":{"role":"admin"}}'
check "...keygate refuses the edited record: the key does not become admin" [ "$(review "$edit_token")" = false ]
check "mallory edits its groups instead (role back to view, group e2e-ops)" \
  as_mallory patch secret "keygate-$edit_name" --type merge -p '{"stringData":{"role":"view","groups":"e2e-ops"}}'
check "...still refused" [ "$(review "$edit_token")" = false ]
