#!/usr/bin/env bash
# Validates every manifest under manifests/ against a real kube-apiserver, and checks that
# the RBAC they ship grants what it should and nothing more.
#
#   hack/validate-manifests.sh
#
# 1. Brings up (or reuses) a local cluster with hack/local-cluster.sh in its own state dir
#    (KEYGATE_MANIFESTS_CLUSTER_DIR, default ~/.cache/keygate/cluster-manifests), without
#    the keygate webhook (not needed, so no keygate build either). A cluster this script
#    started is stopped again at the end (KEYGATE_KEEP_CLUSTER=1 keeps it).
# 2. Every directory with a kustomization.yaml: `kubectl kustomize` must build, and
#    `kubectl apply --dry-run=server --validate=strict` of the result must succeed.
# 3. Every other *.yaml file under manifests/ (each file of each base on its own, and the
#    static pod, as the mirror pod the kubelet would create): the same, with -f.
# 4. RBAC semantics: applies manifests/base for real (the cluster is a throw-away one) and
#    asks kube-apiserver, with impersonation, what the webhook identities (read-only on
#    records), the AccessKey API's identities (the only writers), the role groups, a key
#    manager, a self-service user and a key admin may and may not do.
# 5. The layouts' wiring: no workload in the key namespace; the webhook runs without --api and
#    the API with it, each as its own identity; with the API, the webhook verifies seals and
#    serves the record guard for the API's identity, and the API signs; each APIService names
#    its layout's Service and port (sidecar: the ExternalName for localhost and
#    keygate-api.yaml's --listen port; in-cluster: the API Deployment's Service), and the
#    record guard's configuration the webhook's Service.
#
# Prints PASS/FAIL per check and `N passed, N failed`; exits 1 if anything failed.
#
# About PodDisruptionBudget: the manifests use policy/v1, which every supported Kubernetes
# serves (1.21+) and the only one from 1.25 on (policy/v1beta1 was removed). The test
# apiserver is 1.20, which serves only policy/v1beta1. Rather than ship an API version real
# clusters reject, or skip the object, a policy/v1 PDB is validated here as policy/v1beta1
# when (and only when) the server lacks policy/v1: the spec fields the manifests use
# (minAvailable, selector) are the same in both versions. On a newer server (kind) nothing
# is rewritten.
#
# Environment: KEYGATE_MANIFESTS_CLUSTER_DIR, KEYGATE_KEEP_CLUSTER=1, and what
# hack/local-cluster.sh reads (KEYGATE_APISERVER_BIN, KEYGATE_SKIP_DEPS, ...).
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$KEYGATE_ROOT"

export KEYGATE_CLUSTER_DIR="${KEYGATE_MANIFESTS_CLUSTER_DIR:-${KEYGATE_CACHE}/cluster-manifests}"
CLUSTER=hack/local-cluster.sh
PASSED=0
FAILED=0
FAILURES=()
WORK="$(mktemp -d)"
STARTED_CLUSTER=0

cleanup() {
  local rc=$?
  rm -rf "$WORK"
  if [[ "$STARTED_CLUSTER" == 1 && "${KEYGATE_KEEP_CLUSTER:-0}" != 1 ]]; then
    "$CLUSTER" down >/dev/null 2>&1 || kg::warn "\`${CLUSTER} down\` failed (state: ${KEYGATE_CLUSTER_DIR})"
  fi
  exit "$rc"
}
trap cleanup EXIT

pass() {
  PASSED=$((PASSED + 1))
  printf 'PASS  %s\n' "$1"
}

fail() {
  FAILED=$((FAILED + 1))
  FAILURES+=("$1")
  printf 'FAIL  %s\n' "$1"
  if [[ -n "${2:-}" ]]; then
    printf '%s\n' "$2" | sed 's/^/      /'
  fi
}

# --- the cluster ------------------------------------------------------------------------

if "$CLUSTER" status >/dev/null 2>&1; then
  kg::log "reusing the cluster in ${KEYGATE_CLUSTER_DIR}"
else
  kg::log "starting a cluster for manifest validation in ${KEYGATE_CLUSTER_DIR}"
  STARTED_CLUSTER=1
  KEYGATE_NO_WEBHOOK=1 "$CLUSTER" up >/dev/null || kg::die "\`${CLUSTER} up\` failed"
fi
eval "$("$CLUSTER" env)"
KUBECTL=(kubectl --kubeconfig "$KEYGATE_ADMIN_KUBECONFIG" --request-timeout=30s)
server_version="$("${KUBECTL[@]}" version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion // "?"')"
kg::log "kube-apiserver ${server_version} at ${KEYGATE_APISERVER_URL}"

HAS_POLICY_V1=0
if "${KUBECTL[@]}" api-versions | grep -qx 'policy/v1'; then
  HAS_POLICY_V1=1
fi

# compat: stdin -> stdout; rewrites policy/v1 PodDisruptionBudgets to policy/v1beta1 when
# the server lacks policy/v1 (see the header). Works on whole YAML documents; the
# top-level apiVersion/kind lines are recognised wherever they are in the document.
compat() {
  if [[ "$HAS_POLICY_V1" == 1 ]]; then
    cat
    return
  fi
  awk '
    function flush(   i) {
      if (n == 0) return
      for (i = 1; i <= n; i++) {
        if (pdb && doc[i] == "apiVersion: policy/v1") doc[i] = "apiVersion: policy/v1beta1"
        print doc[i]
      }
      n = 0; pdb = 0
    }
    /^---/ { flush(); print; next }
    { doc[++n] = $0; if ($0 == "kind: PodDisruptionBudget") pdb = 1 }
    END { flush() }
  '
}

# dry_run NAME FILE: server-side dry-run apply of FILE (already built), strict validation.
dry_run() {
  local name="$1" file="$2" out
  if out="$("${KUBECTL[@]}" apply --dry-run=server --validate=strict -f "$file" 2>&1)"; then
    pass "${name} ($(grep -c 'created\|configured\|unchanged' <<<"$out") objects)"
  else
    fail "$name" "$out"
  fi
}

# Namespaced objects need their namespace to exist, even for a dry run: create (for real,
# in this throw-away cluster) every Namespace the manifests declare.
ensure_namespaces() {
  local ns
  for ns in "$@"; do
    "${KUBECTL[@]}" get namespace "$ns" >/dev/null 2>&1 ||
      "${KUBECTL[@]}" create namespace "$ns" >/dev/null
  done
}

# as_mirror_pod FILE OUT: a static pod reaches kube-apiserver as a mirror pod, which the
# kubelet marks with the kubernetes.io/config.mirror annotation and binds to its own node
# (admission then treats it as such: no ServiceAccount, no token). Validate it that way.
as_mirror_pod() {
  "${KUBECTL[@]}" create --dry-run=client -o json -f "$1" |
    jq 'if .kind == "Pod" then
          .metadata.annotations["kubernetes.io/config.mirror"] = "validate-manifests"
          | .spec.nodeName = "validate-manifests-node"
        else . end' >"$2"
}

# --- 1. kustomizations ------------------------------------------------------------------

mapfile -t KDIRS < <(find manifests -name kustomization.yaml -printf '%h\n' | sort)
mapfile -t FILES < <(find manifests -name '*.yaml' ! -name kustomization.yaml | sort)
((${#KDIRS[@]} > 0)) || kg::die "no kustomization.yaml under manifests/"

namespaces=()
for f in "${FILES[@]}"; do
  while IFS= read -r ns; do namespaces+=("$ns"); done < <(
    awk '/^---/{k=0} /^kind: Namespace$/{k=1} k && /^  name: /{print $2; k=0}' "$f"
  )
done
((${#namespaces[@]} == 0)) || ensure_namespaces "${namespaces[@]}"

i=0
for dir in "${KDIRS[@]}"; do
  i=$((i + 1))
  built="${WORK}/k${i}.yaml"
  if ! out="$(kubectl kustomize "$dir" 2>&1)"; then
    fail "kustomize build ${dir}" "$out"
    continue
  fi
  compat <<<"$out" >"$built"
  [[ "$dir" == manifests/in-cluster ]] && IN_CLUSTER_BUILT="$built"
  [[ "$dir" == manifests/in-cluster-api ]] && IN_CLUSTER_API_BUILT="$built"
  pass "kustomize build ${dir}"
  dry_run "apply --dry-run=server -k ${dir}" "$built"
done

# --- 2. every file on its own -------------------------------------------------------------

i=0
for f in "${FILES[@]}"; do
  i=$((i + 1))
  one="${WORK}/f${i}.yaml"
  if [[ "$f" == manifests/authorization/* ]]; then
    # Files for kube-apiserver's command line (--authorization-config), not API objects: no
    # server takes them. tests/it/authorize.rs checks them against the v1 types instead.
    printf 'SKIP  apply --dry-run=server -f %s (a kube-apiserver configuration file)\n' "$f"
    continue
  fi
  compat <"$f" >"$one"
  if [[ "$f" == manifests/sidecar/keygate*.yaml ]]; then
    as_mirror_pod "$one" "${one%.yaml}.json"
    one="${one%.yaml}.json"
  fi
  dry_run "apply --dry-run=server -f ${f}" "$one"
done

# Every file in a kustomization directory is one of its resources (nothing left out).
for dir in "${KDIRS[@]}"; do
  for f in "$dir"/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] && continue
    if grep -qE "^- +$(basename "$f")\$" "${dir}/kustomization.yaml"; then
      :
    else
      fail "${f} is not listed in ${dir}/kustomization.yaml"
    fi
  done
done

# The in-cluster Deployment and the static pod run the hardened way.
check_pod_spec() {
  local name="$1" json="$2" q
  local -a checks=(
    '.securityContext.runAsNonRoot == true'
    '.securityContext.seccompProfile.type == "RuntimeDefault"'
    '[.containers[].securityContext.readOnlyRootFilesystem] | all'
    '[.containers[].securityContext.allowPrivilegeEscalation == false] | all'
    '[.containers[].securityContext.capabilities.drop | index("ALL") != null] | all'
    '[.containers[] | .readinessProbe.httpGet.path == "/readyz" and .livenessProbe.httpGet.path == "/healthz"] | all'
    '[.containers[] | .resources.requests.cpu and .resources.requests.memory and .resources.limits.memory] | all'
  )
  for q in "${checks[@]}"; do
    if jq -e "$q" <<<"$json" >/dev/null; then
      pass "${name}: ${q}"
    else
      fail "${name}: ${q}"
    fi
  done
}
# objects FILE: a built kustomization as a stream of JSON objects.
objects() {
  "${KUBECTL[@]}" create --dry-run=client -o json -f "$1" 2>/dev/null | jq -c 'if .kind == "List" then .items[] else . end'
}
# holds NAME JQ-EXPR JSON: pass if the expression holds for the JSON document.
holds() {
  if jq -e "$2" <<<"$3" >/dev/null; then pass "$1"; else fail "$1"; fi
}
# deployment_spec NAME JSON-STREAM: the pod spec of the Deployment NAME.
deployment_spec() { jq -c --arg n "$1" 'select(.kind == "Deployment" and .metadata.name == $n) | .spec.template.spec' <<<"$2"; }
in_cluster="" in_cluster_api=""
[[ -z "${IN_CLUSTER_BUILT:-}" ]] || in_cluster="$(objects "$IN_CLUSTER_BUILT")"
[[ -z "${IN_CLUSTER_API_BUILT:-}" ]] || in_cluster_api="$(objects "$IN_CLUSTER_API_BUILT")"
webhook_deploy="$(deployment_spec keygate-webhook "$in_cluster")"
api_deploy="$(deployment_spec keygate-api "$in_cluster_api")"
webhook_with_api="$(deployment_spec keygate-webhook "$in_cluster_api")"
for d in "in-cluster webhook Deployment:${webhook_deploy}" "in-cluster API Deployment:${api_deploy}"; do
  name="${d%%:*}" spec="${d#*:}"
  if [[ -z "$spec" ]]; then
    fail "${name}: could not read it back"
    continue
  fi
  check_pod_spec "$name" "$spec"
  holds "${name}: admin port reachable by the kubelet's probes" \
    '[.containers[].args[] | select(. == "--admin-listen=0.0.0.0:9090")] | length == 1' "$spec"
done
static="$("${KUBECTL[@]}" create --dry-run=client -o json -f manifests/sidecar/keygate.yaml | jq -c .spec)"
static_api="$("${KUBECTL[@]}" create --dry-run=client -o json -f manifests/sidecar/keygate-api.yaml | jq -c .spec)"
for p in "sidecar static pod:${static}" "sidecar API static pod:${static_api}"; do
  check_pod_spec "${p%%:*}" "${p#*:}"
  holds "${p%%:*}: host network, listens on loopback only" \
    '.hostNetwork == true and ([.containers[].args[] | select(startswith("--listen=127.0.0.1:"))] | length == 1)' "${p#*:}"
done

# --- the layouts' wiring ---------------------------------------------------------------------

# built_json DIR: the kustomization in DIR as a stream of JSON objects.
built_json() {
  kubectl kustomize "$1" | "${KUBECTL[@]}" create --dry-run=client -o json -f - |
    jq -c 'if .kind == "List" then .items[] else . end'
}
# wired NAME JQ-EXPR JSON: pass if the expression holds.
wired() {
  if jq -e -s "$2" <<<"$3" >/dev/null; then pass "$1"; else fail "$1"; fi
}
# arg NAME POD-SPEC ARG: the pod's container runs with ARG exactly; with !ARG, without it (in
# any form, ARG=...).
args_of() { jq -r '.containers[0].args[]' <<<"$1" 2>/dev/null; }
arg() {
  local name="$1" spec="$2" want="$3" a
  a="$(args_of "$spec")"
  if [[ "$want" == !* ]]; then
    if grep -qxF -- "${want#!}" <<<"$a" || grep -q -- "^${want#!}=" <<<"$a"; then fail "${name}: runs without ${want#!}"; else pass "${name}: runs without ${want#!}"; fi
  elif grep -qxF -- "$want" <<<"$a"; then
    pass "${name}: runs with ${want}"
  else
    fail "${name}: runs with ${want}"
  fi
}
# The two sidecar pods read different host directories: the webhook never sees the API's
# credentials or its signing key.
wired "sidecar: the webhook and the API mount different host directories" \
  '(.[0].volumes | map(.hostPath.path)) as $w | (.[1].volumes | map(.hostPath.path)) as $a
   | ($w - $a) == $w and all($a[]; startswith("/etc/kubernetes/keygate-api"))' "$(printf '%s\n%s' "$static" "$static_api")"
arg "in-cluster webhook" "$webhook_deploy" '!--api'
arg "in-cluster webhook" "$webhook_deploy" '!--record-signing-key'
arg "in-cluster API" "$api_deploy" --api
arg "in-cluster API" "$api_deploy" --record-signing-key=/etc/keygate/seal/seal.key
arg "in-cluster API" "$api_deploy" --record-verify-key=/etc/keygate/seal-public/seal.pub
arg "in-cluster webhook with the API" "$webhook_with_api" --record-verify-key=/etc/keygate/seal-public/seal.pub
arg "in-cluster webhook with the API" "$webhook_with_api" --record-writer=system:serviceaccount:keygate:keygate-api
arg "in-cluster webhook with the API" "$webhook_with_api" '!--api'
arg "sidecar webhook" "$static" '!--api'
arg "sidecar API" "$static_api" --api
arg "sidecar API" "$static_api" --record-signing-key=/etc/kubernetes/keygate-api/seal.key
wired "in-cluster: each Deployment runs as its own ServiceAccount (webhook keygate-webhook, API keygate-api)" \
  '.[0].serviceAccountName == "keygate-webhook" and .[1].serviceAccountName == "keygate-api"' \
  "$(printf '%s\n%s' "$webhook_deploy" "$api_deploy")"
wired "in-cluster: no workload, ServiceAccount or seal key in the key namespace keygate-system" \
  'all(.[]; .metadata.namespace != "keygate-system"
     or (.kind | IN("Role", "RoleBinding", "Namespace")))' "${in_cluster_api:-null}"
sidecar_api="$(built_json manifests/sidecar/api)"
listen_port="$(jq -r '[.containers[].args[] | select(startswith("--listen=127.0.0.1:"))][0] | split(":")[1]' <<<"$static_api")"
wired "sidecar api: APIService v1alpha1.keygate.dev -> Service keygate in kube-system, port ${listen_port} (keygate-api.yaml's --listen)" \
  "any(.[]; .kind == \"APIService\" and .metadata.name == \"v1alpha1.keygate.dev\" and .spec.group == \"keygate.dev\"
     and .spec.version == \"v1alpha1\" and .spec.service == {name: \"keygate\", namespace: \"kube-system\", port: ${listen_port:-0}})" \
  "$sidecar_api"
wired "sidecar api: Service kube-system/keygate is an ExternalName for localhost" \
  'any(.[]; .kind == "Service" and .metadata.namespace == "kube-system" and .metadata.name == "keygate"
     and .spec.type == "ExternalName" and .spec.externalName == "localhost")' "$sidecar_api"
wired "sidecar api: no caBundle shipped (set per cluster), no insecureSkipTLSVerify" \
  'all(.[] | select(.kind == "APIService"); .spec.caBundle == null and (.spec.insecureSkipTLSVerify // false) == false)' \
  "$sidecar_api"
registration="$(built_json manifests/in-cluster-api/registration)
${in_cluster_api}"
wired "in-cluster api: APIService v1alpha1.keygate.dev -> the API Deployment's Service keygate-api in keygate, port 443" \
  'any(.[]; .kind == "APIService" and .spec.service == {name: "keygate-api", namespace: "keygate", port: 443})
   and any(.[]; .kind == "Service" and .metadata.name == "keygate-api" and .metadata.namespace == "keygate"
     and .spec.type == "ClusterIP" and .spec.selector["app.kubernetes.io/component"] == "api" and any(.spec.ports[]; .port == 443))' \
  "$registration"
wired "in-cluster record guard: Service keygate-webhook in keygate, /validate-records, key namespace only, fails closed" \
  'any(.[]; .kind == "ValidatingWebhookConfiguration" and (.webhooks[0] | .failurePolicy == "Fail"
     and .clientConfig.service == {name: "keygate-webhook", namespace: "keygate", path: "/validate-records", port: 443}
     and .namespaceSelector.matchLabels["kubernetes.io/metadata.name"] == "keygate-system"))
   and any(.[]; .kind == "Service" and .metadata.name == "keygate-webhook" and .spec.selector["app.kubernetes.io/component"] == "webhook")' \
  "$registration"
wired "in-cluster registration: no caBundle shipped, no insecureSkipTLSVerify" \
  'all(.[] | select(.kind == "APIService"); .spec.caBundle == null and (.spec.insecureSkipTLSVerify // false) == false)
   and all(.[] | select(.kind == "ValidatingWebhookConfiguration") | .webhooks[]; .clientConfig.caBundle == null)' \
  "$registration"

# --- 3. RBAC semantics ----------------------------------------------------------------------

if out="$("${KUBECTL[@]}" apply -k manifests/base 2>&1)"; then
  pass "apply -k manifests/base"
else
  fail "apply -k manifests/base" "$out"
fi
# A key manager for the checks below, bound the way rbac-key-manager.yaml says.
"${KUBECTL[@]}" create namespace keygate-validate-team >/dev/null 2>&1 || true
"${KUBECTL[@]}" -n keygate-system create rolebinding keygate-validate-km \
  --clusterrole keygate:key-manager --user keygate-validate-km \
  --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null
"${KUBECTL[@]}" -n keygate-validate-team create rolebinding keygate-validate-km-scope \
  --clusterrole keygate:key-manager:scope --user keygate-validate-km \
  --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null

# can WANT AS VERB RESOURCE NAMESPACE: `kubectl auth can-i` as AS ("user" or
# "group:NAME") must answer WANT (yes/no).
can() {
  local want="$1" as="$2" verb="$3" res="$4" ns="$5" got
  local -a imp
  case "$as" in
    group:*) imp=(--as keygate-validate-someone --as-group "${as#group:}") ;;
    *) imp=(--as "$as") ;;
  esac
  local -a where=(-n "$ns")
  [[ "$ns" == "*" ]] && where=(--all-namespaces)
  got="$("${KUBECTL[@]}" auth can-i "$verb" "$res" "${where[@]}" "${imp[@]}" 2>/dev/null || true)"
  if [[ "$got" == "$want" ]]; then
    pass "rbac: ${as} ${verb} ${res} in ${ns}: ${want}"
  else
    fail "rbac: ${as} ${verb} ${res} in ${ns}: want ${want}, got ${got:-error}"
  fi
}
# can_ak WANT AS VERB [SUBRESOURCE]: the same for keygate.dev accesskeys, with a
# SubjectAccessReview (no APIService is registered here, and kubectl's `auth can-i` answers
# "no" without asking for a resource that discovery does not list).
can_ak() {
  local want="$1" as="$2" verb="$3" sub="${4:-}" user groups got
  user="$as" groups='[]'
  if [[ "$as" == group:* ]]; then
    user=keygate-validate-someone groups="[\"${as#group:}\"]"
  fi
  got="$(jq -n --arg u "$user" --argjson g "$groups" --arg v "$verb" --arg s "$sub" \
    '{apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview",
      spec: {user: $u, groups: $g, resourceAttributes:
        {verb: $v, group: "keygate.dev", resource: "accesskeys", subresource: $s}}}' |
    "${KUBECTL[@]}" create -f - -o json 2>/dev/null | jq -r 'if .status.allowed then "yes" else "no" end' || true)"
  local what="accesskeys${sub:+/${sub}}"
  if [[ "$got" == "$want" ]]; then
    pass "rbac: ${as} ${verb} ${what}: ${want}"
  else
    fail "rbac: ${as} ${verb} ${what}: want ${want}, got ${got:-error}"
  fi
}
# The webhook's identities: read records, keep last use in Leases, ask SubjectAccessReviews;
# never write a record.
for webhook in system:serviceaccount:keygate:keygate-webhook keygate-webhook; do
  for verb in get list watch; do
    can yes "$webhook" "$verb" secrets keygate-system
  done
  for verb in create update patch delete; do
    can no "$webhook" "$verb" secrets keygate-system
  done
  for verb in get create update; do
    can yes "$webhook" "$verb" leases.coordination.k8s.io keygate-system
  done
  can no "$webhook" get secrets kube-system
  can no "$webhook" get secrets keygate
  can no "$webhook" list secrets "*"
  can yes "$webhook" create subjectaccessreviews.authorization.k8s.io "*"
  can no "$webhook" create rolebindings.rbac.authorization.k8s.io default
  can no "$webhook" bind clusterroles.rbac.authorization.k8s.io/view default
  can no "$webhook" impersonate groups "*"
  can_ak no "$webhook" get
done
# The AccessKey API's identities: the only writers of records. Nothing patches them (last
# use is in Leases), so `patch` is not granted; Leases are only read.
for api in system:serviceaccount:keygate:keygate-api keygate-api; do
  for verb in get list watch create update delete; do
    can yes "$api" "$verb" secrets keygate-system
  done
  can no "$api" patch secrets keygate-system
  for verb in get list; do
    can yes "$api" "$verb" leases.coordination.k8s.io keygate-system
  done
  can no "$api" update leases.coordination.k8s.io keygate-system
  can no "$api" get secrets kube-system
  can no "$api" create secrets default
  can no "$api" list secrets "*"
  can yes "$api" create subjectaccessreviews.authorization.k8s.io "*"
  can yes "$api" get configmaps/extension-apiserver-authentication kube-system
  can no "$api" get configmaps/kube-proxy kube-system
  can no "$api" list configmaps kube-system
  # RoleBindings for namespace-scoped role keys: to admin, edit and view only.
  can yes "$api" create rolebindings.rbac.authorization.k8s.io default
  can yes "$api" delete rolebindings.rbac.authorization.k8s.io default
  for role in admin edit view; do
    can yes "$api" bind "clusterroles.rbac.authorization.k8s.io/${role}" default
  done
  can no "$api" bind clusterroles.rbac.authorization.k8s.io/cluster-admin default
  can no "$api" escalate clusterroles.rbac.authorization.k8s.io default
  can no "$api" create clusterrolebindings.rbac.authorization.k8s.io "*"
  can no "$api" impersonate groups "*"
  can_ak no "$api" get
done
can yes group:keygate:view list pods default
can no group:keygate:view create pods default
can no group:keygate:view get secrets default
can yes group:keygate:edit create deployments.apps default
can no group:keygate:edit create rolebindings default
can yes group:keygate:admin '*' '*' kube-system
can no group:keygate:keys list pods default
for verb in create get list update patch delete; do
  can yes keygate-validate-km "$verb" secrets keygate-system
done
can no keygate-validate-km get secrets kube-system
can no keygate-validate-km list secrets keygate-validate-team
can yes keygate-validate-km create rolebindings keygate-validate-team
can yes keygate-validate-km delete rolebindings keygate-validate-team
can yes keygate-validate-km create secrets keygate-validate-team
can no keygate-validate-km bind clusterroles.rbac.authorization.k8s.io keygate-validate-team
can no keygate-validate-km create rolebindings default

# The AccessKey API's ClusterRoles, bound the way docs/install.md says.
"${KUBECTL[@]}" create clusterrolebinding keygate-validate-ss --clusterrole keygate:self-service \
  --user keygate-validate-ss --user keygate-validate-both \
  --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null
"${KUBECTL[@]}" create clusterrolebinding keygate-validate-ka --clusterrole keygate:key-admin \
  --user keygate-validate-ka --user keygate-validate-both \
  --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null
for verb in create get list patch delete; do
  can_ak yes keygate-validate-ss "$verb"
done
can_ak yes keygate-validate-ss create regenerate
can_ak no keygate-validate-ss administer
can_ak no keygate-validate-ss update
can_ak no keygate-validate-ss watch
can no keygate-validate-ss get secrets keygate-system
for verb in get list patch delete administer; do
  can_ak yes keygate-validate-ka "$verb"
done
# A key admin does not mint keys, nor regenerate (another's key would hand over its rights).
can_ak no keygate-validate-ka create
can_ak no keygate-validate-ka create regenerate
can no keygate-validate-ka get secrets keygate-system
# Both roles: RBAC lets regenerate through; keygate refuses it for another's key.
can_ak yes keygate-validate-both create regenerate
can_ak yes keygate-validate-both administer
# Shipped unbound: nobody self-serves until a binding says so.
can_ak no group:system:authenticated create
can_ak no group:keygate:keys create

"${KUBECTL[@]}" delete clusterrolebinding keygate-validate-ss keygate-validate-ka >/dev/null 2>&1 || true
"${KUBECTL[@]}" -n keygate-system delete rolebinding keygate-validate-km >/dev/null 2>&1 || true
"${KUBECTL[@]}" -n keygate-validate-team delete rolebinding keygate-validate-km-scope >/dev/null 2>&1 || true

# --- summary ---------------------------------------------------------------------------------

echo
if ((FAILED > 0)); then
  echo "failed:"
  printf '  %s\n' "${FAILURES[@]}"
fi
echo "hack/validate-manifests.sh: ${PASSED} passed, ${FAILED} failed (kube-apiserver ${server_version})"
((FAILED == 0))
