# shellcheck shell=bash
# shellcheck disable=SC2154 # work, secrets, root, apps, ... are run.sh's and api.sh's
# keygate as kube-apiserver's authorization webhook (POST /authorize, after RBAC:
# --authorization-mode=Node,RBAC,Webhook, hack/local-cluster.sh's default), end to end: keys that
# inherit their creator's live rights, reduced by a scope. Sourced by tests/e2e/api.sh once the
# APIService is up; uses its helpers (ak_create, as_user, refused) and run.sh's counters.
#
# Users (hack/local-cluster.sh): nina is admin in $apps only; victor has view everywhere.

# is_forbidden TEXT: kubectl's message says the request was forbidden (403).
is_forbidden() { grep -qi forbidden <<<"$1" || { echo "not forbidden: $1" >&2; return 1; }; }
# can_be WANT KC VERB RESOURCE NS: run.sh's `can` answers WANT (kube-apiserver caches answers
# briefly).
can_be() { [ "$(can "$2" "$3" "$4" -n "$5")" = "$1" ]; }
# forbidden_saying KC WORDS -- KUBECTL-ARGS...: kubectl as KC is refused (Forbidden) with a
# message naming every one of WORDS.
forbidden_saying() {
  local kc=$1 words=() w err
  shift
  while [[ $1 != -- ]]; do words+=("$1"); shift; done
  shift
  if err=$(kubectl --kubeconfig "$kc" --request-timeout=20s "$@" 2>&1 >/dev/null); then
    echo "allowed: $*" >&2
    return 1
  fi
  # "Error from server (Forbidden): ..." or, from kubectl create, "... is forbidden: ...".
  grep -qi forbidden <<<"$err" || { echo "$err" >&2; return 1; }
  for w in "${words[@]}"; do grep -qF -- "$w" <<<"$err" || { echo "no '$w' in: $err" >&2; return 1; }; done
}

echo "# --- keygate as authorizer: keys that inherit their creator's rights (${KEYGATE_AUTHZ_MODE}) ---"

# --- nina: a key with her rights in $apps, without any right to bind a role ---------------------
if ak_create nina "{\"displayName\": \"nina-inherit\", \"inheritCreator\": true, \"scope\": {\"namespaces\": [\"$apps\"]}}"; then
  ok "nina (admin in $apps, no bind on admin) mints an inheritCreator key scoped to $apps"
else
  not_ok "nina (admin in $apps, no bind on admin) mints an inheritCreator key scoped to $apps: $ak_err"
fi
ninai_name=$ak_name ninai_kc=$ak_kc ninai_token=$ak_token
check "...kubectl get ak shows its role as inherited" bash -c \
  "kubectl --kubeconfig '$KEYGATE_NINA_KUBECONFIG' get ak '$ninai_name' | grep -qw inherited"
# bound_anywhere USER: some RoleBinding or ClusterRoleBinding names USER.
bound_anywhere() {
  { admin get rolebindings -A -o json; admin get clusterrolebindings -o json; } |
    jq -e --arg u "$1" 'any(.items[]; any(.subjects[]?; .name == $u))' >/dev/null
}
not_bound() { ! bound_anywhere "$1"; }
check "...no RoleBinding or ClusterRoleBinding names it" not_bound "service-account-$ninai_name"
check "the key creates a ConfigMap in $apps (nina's right, through keygate)" \
  within 10 kubectl --kubeconfig "$ninai_kc" --request-timeout=20s create configmap nina-inherit -n "$apps"
check "...kubectl auth can-i delete pods -n $apps: yes" can_be yes "$ninai_kc" delete pods "$apps"
check "...but not in default, where nina has no rights either" can_be no "$ninai_kc" list pods default
check "...nor, inside its scope, what nina may not do (create resourcequotas in $apps)" \
  can_be no "$ninai_kc" create resourcequotas "$apps"
check "...nor anything cluster-scoped (list namespaces)" can_be no "$ninai_kc" list namespaces default
check "...it cannot create a RoleBinding to view, which RBAC does not give the key itself (escalation check)" \
  bash -c "! kubectl --kubeconfig '$ninai_kc' --request-timeout=20s create rolebinding nina-inherit -n '$apps' --clusterrole view --user nobody 2>/dev/null"
check "...but it can to edit, which nina may bind (kube-apiserver asks the authorizers about bind)" \
  kubectl --kubeconfig "$ninai_kc" --request-timeout=20s create rolebinding nina-inherit-edit -n "$apps" --clusterrole edit --user nobody

# --- the same with the CLI, as docs/install.md shows it: a CI job's key ---------------------------
if out=$(KEYGATE_KUBECONFIG="$KEYGATE_NINA_KUBECONFIG" kg --store kube keys create --name nina-ci --inherit \
  --namespace-scope "$apps" --rule 'get,list,watch::pods' --rule 'get,list::configmaps' -o json 2>&1); then
  ok "nina mints the CI job's key with keygate keys create --inherit --namespace-scope --rule"
  ci_token=$(jq -r .token <<<"$out")
  echo "${ci_token:26}" >>"$secrets"
  kubeconfig_for "$ci_token" "$work/nina-ci.kubeconfig"
  check "...keys list shows ROLE inherited and its scope" bash -c \
    "KEYGATE_KUBECONFIG='$KEYGATE_NINA_KUBECONFIG' '$KEYGATE_BIN' --store kube keys list | grep nina-ci | grep -qw inherited"
  check "...the key lists pods in $apps" \
    within 10 kubectl --kubeconfig "$work/nina-ci.kubeconfig" --request-timeout=20s get pods -n "$apps"
  check "...and cannot delete a ConfigMap there, which nina may (outside its rules)" \
    forbidden_saying "$work/nina-ci.kubeconfig" rule -- delete configmap nina-inherit -n "$apps"
else
  not_ok "nina mints the CI job's key with keygate keys create --inherit --namespace-scope --rule: $out"
fi

# --- the creator loses a right: the key loses it -----------------------------------------------
check "nina loses admin in $apps" admin delete rolebinding e2e:nina:admin -n "$apps"
# keygate's answer cache (--authorize-cache-ttl 5s) plus kube-apiserver's (2s), with slack.
check "...her key loses it too, within the caches' TTLs" within 15 can_be no "$ninai_kc" create configmaps "$apps"
check "nina gets admin in $apps back" admin create rolebinding e2e:nina:admin -n "$apps" --clusterrole admin --user nina
check "...and so does her key" within 15 can_be yes "$ninai_kc" create configmaps "$apps"

# --- victor: a scope that reduces his rights ---------------------------------------------------
rules='[{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]'
if ak_create victor "{\"displayName\": \"victor-pods\", \"inheritCreator\": true, \"scope\": {\"namespaces\": [\"$apps\"], \"rules\": $rules}}"; then
  ok "victor (view everywhere) mints an inheritCreator key: pods in $apps only"
else
  not_ok "victor (view everywhere) mints an inheritCreator key: pods in $apps only: $ak_err"
fi
victori_kc=$ak_kc
check "the key lists pods in $apps" within 10 kubectl --kubeconfig "$victori_kc" --request-timeout=20s get pods -n "$apps"
check "...not in default, which victor may list (403 naming the scope's namespaces)" \
  forbidden_saying "$victori_kc" scope namespace -- get pods -n default
check "...nor ConfigMaps in $apps, which victor may read (403 naming the scope's rules)" \
  forbidden_saying "$victori_kc" scope rule -- get configmaps -n "$apps"
check "...nor create a ConfigMap there" can_be no "$victori_kc" create configmaps "$apps"
check "...and it cannot mint keys: its scope does not reach AccessKeys" \
  forbidden_saying "$victori_kc" -- get ak

# --- a key minting an inheriting key: bounded by every key above it -----------------------------
parent_rules='[{"verbs": ["create", "get", "list"], "apiGroups": ["keygate.dev"], "resources": ["accesskeys"]},
  {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}]'
ak_create nina "{\"displayName\": \"nina-minter\", \"inheritCreator\": true, \"scope\": {\"rules\": $parent_rules}}"
minter_kc=$ak_kc minter_json=$ak_json
check "nina mints an inheriting key whose scope allows creating AccessKeys" [ -n "$ak_json" ]
child_rules='[{"verbs": ["get", "list", "create"], "apiGroups": [""], "resources": ["configmaps"]}]'
within 10 ak_create "$minter_kc" "{\"displayName\": \"nina-grandchild\", \"inheritCreator\": true, \"scope\": {\"namespaces\": [\"$apps\"], \"rules\": $child_rules}}"
gc_json=$ak_json gc_token=$ak_token gc_kc=$ak_kc
check "...that key mints an inheriting key in turn (kubectl create -f with the key's token)" [ -n "$gc_json" ]
check "...owned by nina" jq -e '.status.owner == "nina"' <<<"${gc_json:-null}"
check "the grandchild reads ConfigMaps in $apps (inside both scopes, nina may)" \
  within 10 can_be yes "$gc_kc" list configmaps "$apps"
check "...but cannot create one: the key above it has no create on ConfigMaps (403 naming the key above)" \
  forbidden_saying "$gc_kc" "above" -- create configmap gc -n "$apps"
check "nina disables the key above it" as_user nina patch ak "$(jq -r .metadata.name <<<"${minter_json:-null}")" --type merge -p '{"spec":{"disabled":true}}'
check "...the grandchild is refused at once by keygate" [ "$(review "$gc_token")" = false ]
check "...and by kube-apiserver within the revocation budget" wait_status "$gc_kc" unauthorized $((cache_s + 3))

# --- who may not mint an inheriting key, by default ----------------------------------------------
ak_create admin '{"displayName": "masters-inherit", "inheritCreator": true}'
check "the cluster admin (system:masters) is refused an inheriting key (403 naming system:masters)" \
  refused Forbidden system:masters
sa_token=""
if admin create serviceaccount e2e-ci -n "$apps" >/dev/null &&
  admin create clusterrolebinding e2e:ci:self-service --clusterrole keygate:self-service \
    --serviceaccount "$apps:e2e-ci" >/dev/null; then
  # kube-controller-manager's token controller writes the ServiceAccount's token Secret.
  sa_has_secret() { admin get serviceaccount e2e-ci -n "$apps" -o jsonpath='{.secrets[0].name}' | grep -q .; }
  within 30 sa_has_secret || true
  sa_secret=$(admin get serviceaccount e2e-ci -n "$apps" -o jsonpath='{.secrets[0].name}' 2>/dev/null || true)
  [[ -n "$sa_secret" ]] &&
    sa_token=$(admin get secret "$sa_secret" -n "$apps" -o jsonpath='{.data.token}' | base64 -d)
fi
check "a ServiceAccount token (from kube-controller-manager) for $apps/e2e-ci" [ -n "$sa_token" ]
kubeconfig_for "$sa_token" "$work/sa.kubeconfig"
KEYGATE_SA_KUBECONFIG="$work/sa.kubeconfig"
export KEYGATE_SA_KUBECONFIG
ak_create sa '{"displayName": "sa-inherit", "inheritCreator": true}'
check "...the ServiceAccount (with self-service) is refused an inheriting key (403 naming ServiceAccount)" \
  refused Forbidden ServiceAccount
ak_create sa '{"displayName": "sa-view", "role": "view"}' || true
check "...while the same ServiceAccount, refused bind on view, gets a 403 for a role key (the API answers it)" \
  refused Forbidden bind

# --- everyone else costs keygate nothing -------------------------------------------------------
# sar_count: SubjectAccessReviews keygate has sent for key creators; not_a_key: /authorize
# answers for users who are not keys.
sar_count() { curl -s "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk '/^keygate_authorize_creator_reviews_total/ {s += $2} END {print s + 0}'; }
not_a_key() { curl -s "$KEYGATE_WEBHOOK_ADMIN_URL/metrics" | awk '/^keygate_authorize_decisions_total/ && /not_a_key/ {s += $2} END {print s + 0}'; }
sars_before=$(sar_count) plain_before=$(not_a_key)
for i in 1 2 3 4 5; do
  # Denied by RBAC, so kube-apiserver asks keygate (a different name each time: no cache hit).
  as_user victor delete configmap "victor-$i" -n "$apps" >/dev/null 2>&1 || true
done
plain_after=$(not_a_key) sars_after=$(sar_count)
check "a plain user's requests reach /authorize and get no opinion ($plain_before -> $plain_after)" \
  [ "$plain_after" -ge $((plain_before + 5)) ]
check "...and never cause a SubjectAccessReview from keygate ($sars_before -> $sars_after)" \
  [ "$sars_after" = "$sars_before" ]
