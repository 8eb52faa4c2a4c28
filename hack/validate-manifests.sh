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
#    asks kube-apiserver, with impersonation, what the webhook identities, the role groups
#    and a key manager may and may not do.
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
  pass "kustomize build ${dir}"
  dry_run "apply --dry-run=server -k ${dir}" "$built"
done

# --- 2. every file on its own -------------------------------------------------------------

i=0
for f in "${FILES[@]}"; do
  i=$((i + 1))
  one="${WORK}/f${i}.yaml"
  compat <"$f" >"$one"
  if [[ "$f" == manifests/sidecar/* ]]; then
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
deploy=""
if [[ -n "${IN_CLUSTER_BUILT:-}" ]]; then
  deploy="$("${KUBECTL[@]}" create --dry-run=client -o json -f "$IN_CLUSTER_BUILT" 2>/dev/null |
    jq -c 'select(.kind == "Deployment") | .spec.template.spec')" || deploy=""
fi
if [[ -n "$deploy" ]]; then
  check_pod_spec "in-cluster Deployment" "$deploy"
  if jq -e '[.containers[].args[] | select(. == "--admin-listen=0.0.0.0:9090")] | length == 1' <<<"$deploy" >/dev/null; then
    pass "in-cluster Deployment: admin port reachable by the kubelet's probes"
  else
    fail "in-cluster Deployment: admin port reachable by the kubelet's probes"
  fi
else
  fail "in-cluster Deployment: could not read it back"
fi
static="$("${KUBECTL[@]}" create --dry-run=client -o json -f manifests/sidecar/keygate.yaml | jq -c .spec)"
check_pod_spec "sidecar static pod" "$static"
if jq -e '.hostNetwork == true and ([.containers[].args[] | select(startswith("--listen=127.0.0.1:"))] | length == 1)' <<<"$static" >/dev/null; then
  pass "sidecar static pod: host network, webhook on loopback only"
else
  fail "sidecar static pod: host network, webhook on loopback only"
fi

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
for webhook in system:serviceaccount:keygate-system:keygate keygate-webhook; do
  for verb in get list watch patch; do
    can yes "$webhook" "$verb" secrets keygate-system
  done
  for verb in create update delete; do
    can no "$webhook" "$verb" secrets keygate-system
  done
  can no "$webhook" get secrets kube-system
  can no "$webhook" list secrets "*"
  can no "$webhook" create rolebindings keygate-system
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
