# shellcheck shell=bash
# shellcheck disable=SC2154 # work, secrets, root, cache_s, ... are run.sh's
# The AccessKey API end to end (keygate.dev/v1alpha1, accesskeys), through kube-apiserver's
# aggregation layer, kubectl as the client, as several real users (hack/local-cluster.sh:
# alice, nina, victor, kim). Sourced by tests/e2e/run.sh after the Part 1 scenarios: it uses
# run.sh's counters and helpers (ok, not_ok, check, status, wait_status, kubeconfig_for,
# review, admin, kg, $work, $secrets, $cache_s, $ttl_s, $revocation_budget_ms) and registers
# the APIService itself, so everything before it ran with the CLI writing Secrets directly.
#
# While keygate-api is stopped below, the APIService is unavailable and kube-apiserver 1.20
# cannot finish deleting namespaces: nothing here deletes a namespace.

: "${KEYGATE_ALICE_KUBECONFIG:?}" "${KEYGATE_NINA_KUBECONFIG:?}" "${KEYGATE_VICTOR_KUBECONFIG:?}"
: "${KEYGATE_KIM_KUBECONFIG:?}" "${KEYGATE_API_PORT:?}" "${KEYGATE_APISERVICE_NAME:?}"
: "${KEYGATE_FRONT_PROXY_CLIENT_CERT:?}" "${KEYGATE_FRONT_PROXY_OTHER_CERT:?}"
apps=${KEYGATE_APPS_NAMESPACE:-apps}
api_path=/apis/keygate.dev/v1alpha1/accesskeys

# as_user USER KUBECTL-ARGS...: kubectl as one of the test users.
as_user() {
  local kc="KEYGATE_${1^^}_KUBECONFIG"
  kubectl --kubeconfig "${!kc}" --request-timeout=20s "${@:2}"
}
lower() { tr 'A-Z' 'a-z' <<<"$1"; }
# token_kc TOKEN FILE: a kubeconfig for TOKEN; none for an empty token (kubectl then fails,
# where a kubeconfig without a token would reach /version anonymously and look like success).
token_kc() {
  rm -f "$2"
  [[ -z "$1" ]] || kubeconfig_for "$1" "$2"
}

# ak_create WHO SPEC-JSON: `kubectl create -f` of an AccessKey (generateName) as WHO: a test
# user's name, or the path of a kubeconfig (a key's). On success sets ak_json, ak_name, ak_id,
# ak_token and ak_kc (a kubeconfig with the token) and records the secret; on failure sets
# ak_err to kubectl's message and returns 1.
ak_n=0
ak_create() {
  local who=$1 spec=$2 f kc
  if [[ -f "$who" ]]; then kc=$who; else kc="KEYGATE_${who^^}_KUBECONFIG"; kc=${!kc}; fi
  ak_n=$((ak_n + 1))
  f="$work/ak-$ak_n.json"
  jq -n --argjson spec "$spec" \
    '{apiVersion: "keygate.dev/v1alpha1", kind: "AccessKey", metadata: {generateName: "e2e-"}, spec: $spec}' >"$f"
  # A kubeconfig that does not exist (kubectl fails), never "": an empty --kubeconfig would
  # fall back to $KUBECONFIG, the admin's.
  ak_json="" ak_name="" ak_id="" ak_token="" ak_kc="$work/no-key.kubeconfig" ak_err=""
  if ! ak_json=$(kubectl --kubeconfig "$kc" --request-timeout=20s create -f "$f" -o json 2>"$work/ak-err"); then
    ak_err=$(<"$work/ak-err")
    return 1
  fi
  ak_name=$(jq -r .metadata.name <<<"$ak_json")
  ak_id=$(jq -r .status.id <<<"$ak_json")
  ak_token=$(jq -r '.status.token // empty' <<<"$ak_json")
  [[ -n "$ak_token" ]] && echo "${ak_token:26}" >>"$secrets"
  ak_kc="$work/ak-$ak_n.kubeconfig"
  token_kc "$ak_token" "$ak_kc"
}

# refused WANT-REASON WORDS... : the last ak_create failed with kubectl's "(WANT-REASON)"
# (Forbidden = 403, Invalid = 422) and a message naming every one of WORDS.
refused() {
  local reason=$1 w
  shift
  [[ -z "$ak_json" ]] || { echo "created: $ak_name" >&2; return 1; }
  # kubectl prints a 422 with field causes as `The AccessKey "..." is invalid: <field>: ...`,
  # other refusals as `Error from server (<Reason>): ...`.
  if [[ "$reason" == Invalid ]] && grep -q ' is invalid: ' <<<"$ak_err"; then :; else
    grep -q "($reason)" <<<"$ak_err" || { echo "$ak_err" >&2; return 1; }
  fi
  for w in "$@"; do grep -qF -- "$w" <<<"$ak_err" || { echo "no '$w' in: $ak_err" >&2; return 1; }; done
}

# regenerate USER NAME BODY-FILE: POST .../accesskeys/NAME/regenerate as USER; prints the
# answer, records the new secret.
regenerate() {
  local out
  out=$(as_user "$1" create --raw "$api_path/$2/regenerate" -f "$3") || return 1
  jq -r .status.token <<<"$out" | cut -c27- >>"$secrets"
  printf '%s' "$out"
}

state_of() { admin get accesskey "$1" -o jsonpath='{.status.state}'; }

# has_binding NS USER ROLE: a RoleBinding in NS gives USER the ClusterRole ROLE.
has_binding() {
  admin get rolebindings -n "$1" -o json | jq -e --arg u "$2" --arg r "$3" \
    'any(.items[]; .roleRef.kind == "ClusterRole" and .roleRef.name == $r and any(.subjects[]?; .name == $u))' >/dev/null
}

echo "# --- the AccessKey API (${KEYGATE_APISERVICE_NAME}) ---"
check "the APIService registers and becomes Available" "$root/hack/local-cluster.sh" apiservice on

# --- discovery ---------------------------------------------------------------------------------
check "kubectl api-resources lists accesskeys (ak, cluster-scoped, kind AccessKey)" bash -c \
  "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' api-resources --api-group keygate.dev --no-headers |
    grep -qE '^accesskeys +ak +keygate.dev/v1alpha1 +false +AccessKey\$'"
verbs=$(admin get --raw /apis/keygate.dev/v1alpha1 | jq -c '.resources[] | select(.name == "accesskeys") | .verbs | sort')
check "discovery: accesskeys verbs include create, delete, get, list, patch (${verbs})" \
  jq -e 'index("create") and index("delete") and index("get") and index("list") and index("patch")' <<<"${verbs:-null}"
check "discovery: the regenerate subresource is listed" bash -c \
  "kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get --raw /apis/keygate.dev/v1alpha1 |
    jq -e 'any(.resources[]; .name == \"accesskeys/regenerate\" and (.verbs | index(\"create\")))'"
if admin get --raw /openapi/v2 2>/dev/null | jq -e '.definitions | keys | any(test("keygate"))' >/dev/null; then
  check "kubectl explain accesskeys (keygate's OpenAPI is aggregated)" bash -c \
    "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' explain accesskeys.spec | grep -q displayName"
else
  echo "# keygate serves no OpenAPI: kubectl explain accesskeys is not available"
fi

# --- alice: a view key, the token once ---------------------------------------------------------
if ak_create alice '{"displayName": "alice-ci", "role": "view"}'; then
  ok "alice (self-service, may bind view) mints a view key with kubectl create -f"
else
  not_ok "alice (self-service, may bind view) mints a view key with kubectl create -f: $ak_err"
fi
alice_name=$ak_name alice_id=$ak_id alice_token=$ak_token alice_kc=$ak_kc
check "create answers with the token kg_<ID>_..." bash -c "[[ '$alice_token' == kg_${alice_id}_* ]]"
check "metadata.name is the key ID lowercased" [ "$alice_name" = "$(lower "$alice_id")" ]
check "status: owner and creator alice, state Active, username service-account-<name>" jq -e \
  --arg n "$alice_name" '.status.owner == "alice" and .status.creator.username == "alice"
    and .status.state == "Active" and .status.username == "service-account-\($n)"' <<<"$ak_json"
check "the new key works at once (no cached denial)" [ "$(status "$alice_kc")" = ok ]
check "alice's view key lists pods everywhere" kubectl --kubeconfig "$alice_kc" get pods -A
check "alice's view key cannot create" bash -c "[ \"\$(kubectl --kubeconfig '$alice_kc' auth can-i create configmaps -n '$apps' 2>/dev/null)\" = no ]"
check "a second get shows no token" bash -c \
  "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get accesskey '$alice_name' -o json | jq -e '.status.token == null and .status.id == \"$alice_id\"'"
check "a list shows no token" bash -c \
  "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get accesskeys -o json | jq -e '(.items | length) > 0 and all(.items[]; .status.token == null)'"
count_keys() { as_user alice get accesskeys -o name | wc -l; }
keys_before=$(count_keys)
jq -n '{apiVersion: "keygate.dev/v1alpha1", kind: "AccessKey", metadata: {generateName: "e2e-"},
  spec: {displayName: "dry-run", role: "view"}}' >"$work/dry.json"
check "kubectl create --dry-run=server is accepted" as_user alice create -f "$work/dry.json" --dry-run=server
check "...and creates nothing" [ "$(count_keys)" = "$keys_before" ]
if jq -e 'index("watch")' <<<"${verbs:-null}" >/dev/null; then
  timeout 6 kubectl --kubeconfig "$KEYGATE_ALICE_KUBECONFIG" get accesskeys --watch -o name >"$work/watch.out" 2>&1
  check "watch is in discovery, so it is served: kubectl get ak --watch streams alice's key" \
    grep -q "$alice_name" "$work/watch.out"
fi
f="$work/named.json"
echo '{"apiVersion":"keygate.dev/v1alpha1","kind":"AccessKey","metadata":{"name":"my-own-name"},"spec":{"displayName":"named"}}' >"$f"
ak_json="" ak_err=$(as_user alice create -f "$f" 2>&1 >/dev/null)
check "a client-chosen metadata.name is refused (422)" refused Invalid

# --- nina: an edit key in her namespace only ---------------------------------------------------
if ak_create nina "{\"displayName\": \"nina-apps\", \"role\": \"edit\", \"scope\": {\"namespaces\": [\"$apps\"]}}"; then
  ok "nina (admin in $apps, may bind edit there) mints an edit key scoped to $apps"
else
  not_ok "nina (admin in $apps, may bind edit there) mints an edit key scoped to $apps: $ak_err"
fi
nina_name=$ak_name nina_id=$ak_id nina_kc=$ak_kc
check "keygate made the RoleBinding to edit in $apps for the key" has_binding "$apps" "service-account-$nina_name" edit
check "nina's key writes in $apps" within 10 kubectl --kubeconfig "$nina_kc" create configmap nina-key -n "$apps"
check "nina's key cannot write in default" bash -c "! kubectl --kubeconfig '$nina_kc' create configmap nina-key -n default 2>/dev/null"
check "nina's key has no cluster-wide rights" bash -c "[ \"\$(kubectl --kubeconfig '$nina_kc' auth can-i list pods -A 2>/dev/null)\" = no ]"
ak_create nina '{"displayName": "nina-default", "role": "edit", "scope": {"namespaces": ["default"]}}'
check "nina is refused an edit key in default, where she may not bind edit (403 naming bind, edit, default)" \
  refused Forbidden bind edit default
ak_create nina "{\"displayName\": \"nina-admin\", \"role\": \"admin\", \"scope\": {\"namespaces\": [\"$apps\"]}}"
check "nina is refused an admin key in $apps: admin there, but no bind on admin (403 naming bind, admin)" \
  refused Forbidden bind admin
ak_create admin '{"displayName": "key-namespace", "role": "view", "scope": {"namespaces": ["keygate-system"]}}'
check "the key namespace is never a scope, not even for cluster-admin (422 naming keygate-system)" \
  refused Invalid keygate-system

# --- victor: view-only, refused anything above it ---------------------------------------------
ak_create victor '{"displayName": "victor-admin", "role": "admin"}'
check "victor (view only) is refused an admin key (403 naming bind, cluster-admin)" refused Forbidden bind cluster-admin
ak_create victor '{"displayName": "victor-masters", "groups": ["system:masters"]}'
check "victor is refused the group system:masters (422 naming it)" refused Invalid system:masters
ak_create victor '{"displayName": "victor-keygate-admin", "groups": ["keygate:admin"]}'
check "victor is refused the group keygate:admin (422 naming it)" refused Invalid keygate:admin
ak_create victor '{"displayName": "victor-ops", "groups": ["e2e-ops"]}'
check "victor is refused a group he may not impersonate (403 naming impersonate, e2e-ops)" \
  refused Forbidden impersonate e2e-ops
ak_create victor '{"displayName": "victor-both", "inheritCreator": true, "role": "view"}'
check "inheritCreator with role is refused (422)" refused Invalid inheritCreator

# --- who sees what -----------------------------------------------------------------------------
check "alice sees her key and not nina's" bash -c "names=\$(kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get ak -o json | jq -r '.items[] | .metadata.name + \" \" + .status.owner');
  grep -qx '$alice_name alice' <<<\"\$names\" && ! grep -q '$nina_name' <<<\"\$names\" && ! grep -qv ' alice\$' <<<\"\$names\""
check "nina sees her key and not alice's" bash -c "names=\$(kubectl --kubeconfig '$KEYGATE_NINA_KUBECONFIG' get ak -o json | jq -r '.items[] | .metadata.name + \" \" + .status.owner');
  grep -qx '$nina_name nina' <<<\"\$names\" && ! grep -q '$alice_name' <<<\"\$names\""
check "another user's key is 404 to alice" bash -c "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get ak '$nina_name' 2>&1 | grep -q NotFound"
check "kim (key admin) sees every key" bash -c "names=\$(kubectl --kubeconfig '$KEYGATE_KIM_KUBECONFIG' get ak -o name);
  grep -q '$alice_name' <<<\"\$names\" && grep -q '$nina_name' <<<\"\$names\""
header=$(as_user alice get accesskeys 2>/dev/null | head -1 | tr -s ' ' | sed 's/ $//')
check "kubectl get ak prints ID NAME OWNER ROLE SCOPE STATE EXPIRES LAST USED AGE (got: $header)" \
  [ "$header" = "ID NAME OWNER ROLE SCOPE STATE EXPIRES LAST USED AGE" ]
row=$(as_user alice get accesskeys 2>/dev/null | awk -v id="$alice_id" '$1 == id {print $1, $2, $3, $4, $5, $6}')
check "alice's row: ID (case kept) alice-ci alice view cluster Active (got: $row)" \
  [ "$row" = "$alice_id alice-ci alice view cluster Active" ]
row=$(as_user nina get accesskeys 2>/dev/null | awk -v id="$nina_id" '$1 == id {print $4, $5}')
check "nina's row: role edit, scope $apps (got: $row)" [ "$row" = "edit $apps" ]
check "kubectl describe ak" bash -c "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' describe ak '$alice_name' | grep -q alice-ci"

# --- patch: fixed fields, disable, enable ------------------------------------------------------
check "a strategic-merge patch (kubectl's default) of the description works" \
  as_user alice patch ak "$alice_name" -p '{"spec":{"description":"nightly builds"}}'
check "a JSON patch of the display name works" \
  as_user alice patch ak "$alice_name" --type json -p '[{"op":"replace","path":"/spec/displayName","value":"alice-ci"}]'
check "a patch that leaves role as it is works" \
  as_user alice patch ak "$alice_name" --type merge -p '{"spec":{"role":"view","description":"same role"}}'
err=$(as_user alice patch ak "$alice_name" --type merge -p '{"spec":{"role":"edit"}}' 2>&1 >/dev/null)
check "a patch changing role is 422 naming role" bash -c "grep -qE '\\(Invalid\\)| is invalid: ' <<<'$err' && grep -q role <<<'$err'"
err=$(as_user alice patch ak "$alice_name" --type merge -p '{"spec":{"scope":{"namespaces":["default"]}}}' 2>&1 >/dev/null)
check "a patch changing scope is 422 naming scope" bash -c "grep -qE '\\(Invalid\\)| is invalid: ' <<<'$err' && grep -q scope <<<'$err'"
check "kubectl patch --dry-run=server changes nothing" bash -c \
  "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' patch ak '$alice_name' --type merge -p '{\"spec\":{\"disabled\":true}}' --dry-run=server >/dev/null &&
   [ \"\$(kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get ak '$alice_name' -o jsonpath='{.status.state}')\" = Active ]"

check "alice disables her key" as_user alice patch ak "$alice_name" --type merge -p '{"spec":{"disabled":true}}'
start=$(now_ms)
check "...state Disabled" [ "$(state_of "$alice_name")" = Disabled ]
check "...keygate refuses it at once" [ "$(review "$alice_token")" = false ]
if wait_status "$alice_kc" unauthorized $((cache_s + 5)) >/dev/null; then
  total=$(($(now_ms) - start))
  echo "# API disable: key refused through kube-apiserver after ${total} ms (budget ${revocation_budget_ms} ms)"
  check "a disabled key is refused within the revocation budget" [ "$total" -le "$revocation_budget_ms" ]
else
  not_ok "a disabled key is refused within the revocation budget (never refused)"
fi
check "alice enables her key" as_user alice patch ak "$alice_name" --type merge -p '{"spec":{"disabled":false}}'
check "...and it works again" wait_status "$alice_kc" ok $((ttl_s + 5))

# --- kim, the key admin ------------------------------------------------------------------------
# kim also holds keygate:self-service, so RBAC lets her regenerate keys: keygate alone
# refuses her another's.
check "kim disables alice's key" as_user kim patch ak "$alice_name" --type merge -p '{"spec":{"disabled":true}}'
check "...state Disabled" [ "$(state_of "$alice_name")" = Disabled ]
err=$(as_user alice patch ak "$alice_name" --type merge -p '{"spec":{"disabled":false}}' 2>&1 >/dev/null)
check "alice cannot enable a key a key admin disabled (403)" bash -c "grep -q '(Forbidden)' <<<'$err'"
check "...it stays Disabled" [ "$(state_of "$alice_name")" = Disabled ]
echo '{"apiVersion":"keygate.dev/v1alpha1","kind":"AccessKeyRegenerate"}' >"$work/regen-plain.json"
if err=$(as_user kim create --raw "$api_path/$alice_name/regenerate" -f "$work/regen-plain.json" 2>&1 >/dev/null); then
  not_ok "kim (key admin + self-service) cannot regenerate alice's key (it was regenerated)"
else
  check "kim (key admin + self-service) cannot regenerate alice's key (403)" grep -q '(Forbidden)' <<<"$err"
fi
check "kim enables alice's key again" as_user kim patch ak "$alice_name" --type merge -p '{"spec":{"disabled":false}}'
check "...and it works again" wait_status "$alice_kc" ok $((ttl_s + 5))

# --- regenerate --------------------------------------------------------------------------------
: >"$work/regen-empty.json"
if out=$(regenerate alice "$alice_name" "$work/regen-empty.json"); then
  ok "regenerate (empty body) answers with a new token"
else
  not_ok "regenerate (empty body) answers with a new token"
fi
new_token=$(jq -r '.status.token // empty' <<<"$out")
check "...a different token of the same key" bash -c "[[ -n '$new_token' && '$new_token' != '$alice_token' && '$new_token' == kg_${alice_id}_* ]]"
token_kc "$new_token" "$work/alice-regen.kubeconfig"
check "...the new token works at once" [ "$(status "$work/alice-regen.kubeconfig")" = ok ]
check "...keygate refuses the old token at once (no grace)" [ "$(review "$alice_token")" = false ]
check "...and kube-apiserver within the revocation budget" wait_status "$alice_kc" unauthorized $((cache_s + 3))
alice_token=$new_token alice_kc="$work/alice-regen.kubeconfig"

echo '{"apiVersion":"keygate.dev/v1alpha1","kind":"AccessKeyRegenerate","gracePeriodSeconds":8}' >"$work/regen-grace.json"
out=$(regenerate alice "$alice_name" "$work/regen-grace.json")
grace_started=$SECONDS
grace_token=$(jq -r '.status.token // empty' <<<"$out")
token_kc "$grace_token" "$work/alice-grace.kubeconfig"
check "regenerate with a grace period: the new token works" [ "$(status "$work/alice-grace.kubeconfig")" = ok ]
check "...the old token still works" [ "$(review "$alice_token")" = true ]
check "...status.previousSecretExpiration is set" jq -e '.status.previousSecretExpiration != null' <<<"$out"
sleep $((9 - (SECONDS - grace_started) > 0 ? 9 - (SECONDS - grace_started) : 0))
check "...and is refused once the grace period is over" [ "$(review "$alice_token")" = false ]
alice_token=$grace_token alice_kc="$work/alice-grace.kubeconfig"
err=$(as_user nina create --raw "$api_path/$alice_name/regenerate" -f "$work/regen-plain.json" 2>&1 >/dev/null)
check "nina cannot regenerate alice's key (404)" bash -c "grep -q NotFound <<<'$err'"

# --- policy: the server's maximum key lifetime (keygate serve --max-key-lifetime 30d) ----------
if [[ "${KEYGATE_KEYGATE_API_EXTRA_ARGS:-}" == *"--max-key-lifetime 30d"* ]]; then
  ak_create alice '{"displayName": "alice-no-expiry", "role": "view"}'
  check "a key created without expiration under --max-key-lifetime 30d expires in 30 days" \
    python3 -c 'import json, sys, datetime as d
e = d.datetime.fromisoformat(json.loads(sys.argv[1])["spec"]["expiration"].replace("Z", "+00:00"))
left = e - d.datetime.now(d.timezone.utc)
sys.exit(0 if d.timedelta(days=29, hours=23) < left <= d.timedelta(days=30) else 1)' "${ak_json:-null}"
  later=$(date -u -d '+40 days' +%Y-%m-%dT%H:%M:%SZ)
  ak_create alice "{\"displayName\": \"alice-40d\", \"role\": \"view\", \"expiration\": \"$later\"}"
  check "...one asking for 40 days is refused (422 naming the 30-day maximum)" refused Invalid 30d
else
  skip "maximum key lifetime: keygate runs without --max-key-lifetime 30d"
fi

# --- the audit trail: kube-apiserver's audit log names the key ---------------------------------
audit_names_key() {
  jq -e -s --arg u "service-account-$1" --arg id "$2" \
    'any(.[]; .user.username == $u and (.user.extra["keygate.dev/key-id"] // []) == [$id])' \
    "$KEYGATE_CLUSTER_DIR/audit.log" >/dev/null
}
check "kube-apiserver's audit log names the key on its requests (user.extra keygate.dev/key-id)" \
  within 10 audit_names_key "$nina_name" "$nina_id"

# --- a key minted by a key ---------------------------------------------------------------------
ak_create alice '{"displayName": "alice-parent", "role": "view"}'
parent_name=$ak_name parent_id=$ak_id parent_kc=$ak_kc
admin create clusterrolebinding "e2e:parent:self-service" --clusterrole keygate:self-service \
  --user "service-account-$parent_name" >/dev/null
admin create clusterrolebinding "e2e:parent:bind-view" --clusterrole e2e:bind-view \
  --user "service-account-$parent_name" >/dev/null
# The bindings just made may take a moment to reach kube-apiserver's RBAC cache.
within 10 ak_create "$parent_kc" '{"displayName": "alice-child", "role": "view"}'
child_json=$ak_json child_token=$ak_token child_kc=$ak_kc
check "a key (with self-service and bind on view) mints a key" [ -n "$child_json" ]
check "...owned by alice, parent the minting key" jq -e --arg p "$parent_id" \
  '.status.owner == "alice" and (.status.parent | ascii_downcase) == ($p | ascii_downcase)' <<<"${child_json:-null}"
check "...alice sees it" bash -c "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get ak -o name | grep -q '$(jq -r .metadata.name <<<"${child_json:-null}")'"
check "...the child key works" wait_status "$child_kc" ok 5
check "alice disables the parent key" as_user alice patch ak "$parent_name" --type merge -p '{"spec":{"disabled":true}}'
check "...keygate refuses the child at once (a key above it is disabled)" [ "$(review "$child_token")" = false ]
check "...and kube-apiserver within the revocation budget" wait_status "$child_kc" unauthorized $((cache_s + 3))
check "alice enables the parent key" as_user alice patch ak "$parent_name" --type merge -p '{"spec":{"disabled":false}}'
check "...and the child works again" wait_status "$child_kc" ok $((cache_s + 5))
check "alice deletes the parent key" as_user alice delete ak "$parent_name"
check "...keygate refuses the child at once (a key above it is gone)" [ "$(review "$child_token")" = false ]

if [[ ",${KEYGATE_AUTHZ_MODE:-}," == *,Webhook,* ]]; then
  # shellcheck source=tests/e2e/authorize.sh
  source "$here/authorize.sh"
else
  skip "keygate as authorizer (tests/e2e/authorize.sh): kube-apiserver's --authorization-mode is ${KEYGATE_AUTHZ_MODE:-unknown}, without Webhook"
fi

# shellcheck source=tests/e2e/identities.sh
source "$here/identities.sh"

# --- keygate-api's port without kube-apiserver's front proxy -----------------------------------
# direct CERT KEY: the HTTP status of a list at keygate-api's own port, claiming to be the admin.
direct() {
  local tls=()
  [[ -n "$1" ]] && tls=(--cert "$1" --key "$2")
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$KEYGATE_WEBHOOK_CERTS_DIR/ca.crt" "${tls[@]}" \
    -H 'X-Remote-User: kubernetes-admin' -H 'X-Remote-Group: system:masters' \
    -H 'X-Remote-Group: system:authenticated' -H 'X-Remote-Extra-Scopes: all' \
    "https://127.0.0.1:$KEYGATE_API_PORT$api_path"
}
certs=$KEYGATE_WEBHOOK_CERTS_DIR
check "straight to keygate, no client certificate, forged X-Remote-* headers: 401" [ "$(direct "" "")" = 401 ]
check "...with kube-apiserver's webhook client certificate (--client-ca, not the front proxy): 401" \
  [ "$(direct "$certs/client.crt" "$certs/client.key")" = 401 ]
check "...with a front-proxy-CA certificate whose name is not allowed: 401" \
  [ "$(direct "$KEYGATE_FRONT_PROXY_OTHER_CERT" "$KEYGATE_FRONT_PROXY_OTHER_KEY")" = 401 ]
check "...with the front proxy's own certificate: 200 (the control)" \
  [ "$(direct "$KEYGATE_FRONT_PROXY_CLIENT_CERT" "$KEYGATE_FRONT_PROXY_CLIENT_KEY")" = 200 ]
check "the webhook (its own process and port) answers kube-apiserver's client certificate" [ "$(review "$alice_token")" = true ]

# --- the CLI goes through the API once the APIService exists -----------------------------------
if out=$(KEYGATE_KUBECONFIG="$KEYGATE_ALICE_KUBECONFIG" kg keys create --name alice-cli --role view -o json 2>&1); then
  ok "keygate keys create works with alice's own kubeconfig (client certificate)"
  jq -r .token <<<"$out" | cut -c27- >>"$secrets"
  cli_name=$(lower "$(jq -r .id <<<"$out")")
  check "...through the API: the record's creator is alice" bash -c \
    "[ \"\$(kubectl --kubeconfig '$KEYGATE_ADMIN_KUBECONFIG' get ak '$cli_name' -o jsonpath='{.status.creator.username}')\" = alice ]"
else
  not_ok "keygate keys create works with alice's own kubeconfig (client certificate): $out"
fi
check "keygate keys list as nina shows her key and not alice's" bash -c \
  "out=\$(KEYGATE_KUBECONFIG='$KEYGATE_NINA_KUBECONFIG' '$KEYGATE_BIN' keys list 2>&1); grep -q '$nina_id' <<<\"\$out\" && ! grep -q '$alice_id' <<<\"\$out\""
count_records() { admin get secrets -n "$KEYGATE_NAMESPACE" -o name | wc -l; }
# refused_at_authorization TEXT: kubectl's message shows a refusal by authorization: 403, or
# kube-apiserver's 500 for an authorization webhook it could not reach.
refused_at_authorization() {
  grep -qi forbidden <<<"$1" && return 0
  grep -q 'Internal Server Error' <<<"$1" && grep -q '/authorize' <<<"$1" && return 0
  echo "not refused at authorization: $1" >&2
  return 1
}
# An inheriting key used a moment before keygate stops: kube-apiserver holds its authentication
# for 10 s (plus the webhook cache TTL), but its rights come only from keygate.
[[ -n "${ninai_kc:-}" ]] && status "$ninai_kc" >/dev/null
check "the webhook stops" "$root/hack/local-cluster.sh" stop keygate
if [[ -n "${ninai_kc:-}" ]]; then
  err=$(kubectl --kubeconfig "$ninai_kc" --request-timeout=20s create configmap while-down -n "$apps" 2>&1 >/dev/null)
  # kube-apiserver 1.20 answers a failed authorization-webhook call that no other authorizer
  # made moot with 500 (naming the call), not 403: refused either way, and not 401.
  check "...the inheriting key, still authenticated from kube-apiserver's cache, is refused at authorization (fails closed)" \
    refused_at_authorization "$err"
  check "...then 401 once that cache has expired" wait_status "$ninai_kc" unauthorized $((cache_s + 5))
  check "...while the admin's client certificate works as before" [ "$(status "$KEYGATE_ADMIN_KUBECONFIG")" = ok ]
  [[ -n "${sa_token:-}" ]] &&
    check "...and so does a ServiceAccount token" [ "$(status "$work/sa.kubeconfig")" = ok ]
  [[ -f "$work/static.kubeconfig" ]] &&
    check "...and the static token" [ "$(status "$work/static.kubeconfig")" = ok ]
fi
check "the API stops too (the APIService becomes unavailable)" "$root/hack/local-cluster.sh" stop keygate-api
records_before=$(count_records)
err=$(kg keys create --name while-down --role view 2>&1 >/dev/null)
check "with the APIService unavailable keygate keys create fails naming it" bash -c \
  "grep -q '$KEYGATE_APISERVICE_NAME' <<<'$err'"
check "...and writes no Secret" [ "$(count_records)" = "$records_before" ]
check "the webhook starts again" "$root/hack/local-cluster.sh" start keygate
check "...and the API" "$root/hack/local-cluster.sh" start keygate-api
check "the APIService is Available again" "$root/hack/local-cluster.sh" apiservice on

# --- delete ------------------------------------------------------------------------------------
check "kubectl delete ak returns (alice's key)" as_user alice delete ak "$alice_name"
check "...then get is 404" bash -c "kubectl --kubeconfig '$KEYGATE_ALICE_KUBECONFIG' get ak '$alice_name' 2>&1 | grep -q NotFound"
check "...keygate refuses its token" [ "$(review "$alice_token")" = false ]
check "...and kube-apiserver within the revocation budget" wait_status "$alice_kc" unauthorized $((cache_s + 3))
err=$(as_user alice delete ak "$nina_name" 2>&1 >/dev/null)
check "alice cannot delete nina's key (404)" bash -c "grep -q NotFound <<<'$err'"
check "nina deletes her scoped key" as_user nina delete ak "$nina_name"
no_binding() { ! has_binding "$@"; }
check "...and its RoleBinding is gone when delete returns" no_binding "$apps" "service-account-$nina_name" edit

if [[ -n "${ninai_token:-}" ]]; then
  # shellcheck source=tests/e2e/seals.sh
  source "$here/seals.sh"
  # shellcheck source=tests/e2e/guard.sh
  source "$here/guard.sh"
else
  skip "record seals (tests/e2e/seals.sh): no key from the authorizer scenarios to carry over"
fi

if [[ ",${KEYGATE_AUTHZ_MODE:-}," == *,Webhook,* && -n "${ninai_kc:-}" ]]; then
  # shellcheck source=tests/e2e/revoke_now.sh
  source "$here/revoke_now.sh"
else
  skip "instant revocation (tests/e2e/revoke_now.sh): kube-apiserver runs without keygate as authorizer"
fi
