#!/usr/bin/env bash
# A kind cluster with keygate as kube-apiserver's token webhook, for users with Docker.
#
#   NOT RUN IN CI: the CI machine has no Docker engine. CI tests keygate against a real
#   kube-apiserver with hack/local-cluster.sh instead.
#
#   hack/kind-up.sh [sidecar]     keygate as a static pod beside kube-apiserver (default)
#   hack/kind-up.sh in-cluster    keygate as a Deployment behind a Service (10.96.0.250)
#   hack/kind-up.sh down          delete the cluster and its files
#
# What it does: builds the keygate CLI (cargo) and image (docker build), makes the
# certificates and kube-apiserver's webhook kubeconfig with `keygate certs` and
# `keygate webhook-config` in a host directory that hack/kind/kind-config.yaml mounts at
# /etc/kubernetes/keygate in the control-plane node, creates the cluster with the apiserver
# flags, loads the image, applies manifests/base and then either the sidecar static pod or
# the in-cluster Deployment, and finally mints a view key and uses it with kubectl.
#
# Environment (all optional):
#   KIND_CLUSTER_NAME          cluster name (default keygate)
#   KIND_NODE_IMAGE            kindest/node image (default: kind's own default)
#   KEYGATE_IMAGE              image tag to build and load (default keygate:dev)
#   KEYGATE_SKIP_IMAGE_BUILD=1 use KEYGATE_IMAGE as it is (already built or pulled)
#   KEYGATE_BIN                keygate CLI on the host (default: cargo build, target/debug)
#   KEYGATE_KIND_DIR           where certificates and kubeconfigs go
#                              (default ~/.cache/keygate/kind-<name>)
#   KEYGATE_WEBHOOK_CACHE_TTL  --authentication-token-webhook-cache-ttl (default 10s)
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$KEYGATE_ROOT"

NAME="${KIND_CLUSTER_NAME:-keygate}"
IMAGE="${KEYGATE_IMAGE:-keygate:dev}"
DIR="${KEYGATE_KIND_DIR:-${KEYGATE_CACHE}/kind-${NAME}}"
ETC="${DIR}/etc-keygate"
ADMIN_KUBECONFIG="${DIR}/admin.kubeconfig"
SERVICE_IP=10.96.0.250
NODE="${NAME}-control-plane"
MODE="${1:-sidecar}"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

need() {
  command -v "$1" >/dev/null 2>&1 || kg::die "$1 is required ($2)"
}

kubectl_admin() {
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=60s "$@"
}

cmd_down() {
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  kind delete cluster --name "$NAME"
  rm -rf "$DIR"
}

keygate_bin() {
  if [[ -n "${KEYGATE_BIN:-}" ]]; then
    [[ -x "$KEYGATE_BIN" ]] || kg::die "KEYGATE_BIN=${KEYGATE_BIN} is not executable"
    echo "$KEYGATE_BIN"
    return
  fi
  need cargo "to build the keygate CLI; or set KEYGATE_BIN"
  kg::log "building the keygate CLI (cargo build)"
  cargo build --locked --bin keygate >&2
  echo "${CARGO_TARGET_DIR:-${KEYGATE_ROOT}/target}/debug/keygate"
}

# make_files KEYGATE SAN URL: certificates and webhook kubeconfig in $ETC.
make_files() {
  local kg="$1" url="$3"
  local -a sans
  read -r -a sans <<<"$2"
  rm -rf "$ETC"
  mkdir -p "$ETC"
  local san_args=()
  local s
  for s in "${sans[@]}"; do san_args+=(--san "$s"); done
  "$kg" certs --out-dir "${DIR}/certs" --force "${san_args[@]}" >&2
  cp "${DIR}/certs/server.crt" "${DIR}/certs/server.key" "${DIR}/certs/ca.crt" "$ETC/"
  "$kg" webhook-config --server "$url" \
    --certificate-authority "${DIR}/certs/ca.crt" \
    --client-certificate "${DIR}/certs/client.crt" \
    --client-key "${DIR}/certs/client.key" \
    -o "${ETC}/webhook.kubeconfig"
  # The directory is bind-mounted into the node and read there by keygate, which runs as
  # uid 65532: make it readable. Acceptable for a throw-away kind cluster ($DIR itself stays
  # private to you); on a real node the files belong to uid 65532 with mode 0400 instead.
  # webhook.kubeconfig (kube-apiserver's client key) is read by kube-apiserver, as root.
  chmod 0700 "$DIR"
  chmod 0755 "$ETC"
  chmod 0644 "$ETC"/*
  chmod 0600 "${ETC}/webhook.kubeconfig"
}

render_kind_config() {
  sed -e "s#__KEYGATE_DIR__#${ETC}#" \
    -e "s#__WEBHOOK_CACHE_TTL__#${KEYGATE_WEBHOOK_CACHE_TTL:-10s}#" \
    hack/kind/kind-config.yaml >"${DIR}/kind-config.yaml"
}

# sidecar_kubeconfig: keygate's own credentials, a token of the ServiceAccount keygate-webhook
# (bound by manifests/base/rbac-webhook.yaml), talking to kube-apiserver on its own node.
sidecar_kubeconfig() {
  local node_ip ca token kc="${ETC}/keygate.kubeconfig"
  node_ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NODE")"
  [[ -n "$node_ip" ]] || kg::die "cannot find the IP address of node ${NODE}"
  ca="$(kubectl_admin config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  token="$(kubectl_admin -n keygate create token keygate-webhook --duration=8760h)"
  rm -f "$kc"
  kubectl config --kubeconfig "$kc" set-cluster kind --server "https://${node_ip}:6443" >/dev/null
  kubectl config --kubeconfig "$kc" set "clusters.kind.certificate-authority-data" "$ca" >/dev/null
  kubectl config --kubeconfig "$kc" set-credentials keygate --token "$token" >/dev/null
  kubectl config --kubeconfig "$kc" set-context keygate --cluster kind --user keygate >/dev/null
  kubectl config --kubeconfig "$kc" use-context keygate >/dev/null
  chmod 0644 "$kc"
}

deploy_sidecar() {
  sidecar_kubeconfig
  kg::log "installing the static pod in ${NODE}:/etc/kubernetes/manifests/keygate.yaml"
  sed -e "s#image: ghcr.io/keygate/keygate:.*#image: ${IMAGE}#" manifests/sidecar/keygate.yaml \
    >"${DIR}/keygate-static-pod.yaml"
  docker cp "${DIR}/keygate-static-pod.yaml" "${NODE}:/etc/kubernetes/manifests/keygate.yaml"
  kg::log "waiting for the mirror pod kube-system/keygate-${NODE}"
  local deadline=$((SECONDS + 180))
  until kubectl_admin -n kube-system wait --for=condition=Ready "pod/keygate-${NODE}" --timeout=10s >/dev/null 2>&1; do
    ((SECONDS < deadline)) || {
      kubectl_admin -n kube-system describe "pod/keygate-${NODE}" >&2 || true
      kg::die "keygate's static pod did not become ready"
    }
    sleep 2
  done
}

deploy_in_cluster() {
  kubectl_admin -n keygate create secret generic keygate-tls \
    --type kubernetes.io/tls \
    --from-file=tls.crt="${DIR}/certs/server.crt" \
    --from-file=tls.key="${DIR}/certs/server.key" \
    --from-file=ca.crt="${DIR}/certs/ca.crt" \
    --dry-run=client -o yaml | kubectl_admin apply -f - >/dev/null
  # hack/kind/in-cluster uses keygate:dev; another KEYGATE_IMAGE replaces it in the output.
  kubectl kustomize hack/kind/in-cluster |
    sed -e "s#image: keygate:dev\$#image: ${IMAGE}#" |
    kubectl_admin apply -f -
  kubectl_admin -n keygate rollout status deployment/keygate-webhook --timeout=180s
}

smoke_test() {
  local kg="$1" out token id server ca
  kg::log "minting a view key and using it through kube-apiserver"
  out="$("$kg" --store kube --kubeconfig "$ADMIN_KUBECONFIG" keys create --name kind-smoke-test --role view -o json 2>/dev/null)"
  token="$(jq -r .token <<<"$out")"
  id="$(jq -r .id <<<"$out")"
  server="$(kubectl_admin config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="${DIR}/apiserver-ca.crt"
  kubectl_admin config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$ca"
  local k=(kubectl --kubeconfig /dev/null --server "$server" --certificate-authority "$ca" --token "$token")
  # The webhook answers within a second of the key's creation; allow for the store's watch.
  local deadline=$((SECONDS + 30))
  until [[ "$("${k[@]}" auth can-i list pods 2>/dev/null)" == yes ]]; do
    ((SECONDS < deadline)) || kg::die "the new key does not authenticate; see \`kubectl -n kube-system logs\` / \`-n keygate logs\` of keygate-webhook"
    sleep 1
  done
  [[ "$("${k[@]}" auth can-i create pods 2>/dev/null || true)" == no ]] || kg::die "a view key may create pods"
  kg::log "key ${id} (user service-account-${id,,}): can list pods, cannot create them"
  "$kg" --store kube --kubeconfig "$ADMIN_KUBECONFIG" keys delete "$id" >/dev/null 2>&1 || true
}

cmd_up() {
  need docker "https://docs.docker.com/engine/install/"
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  need kubectl "https://kubernetes.io/docs/tasks/tools/"
  need jq "apt-get install jq"
  docker info >/dev/null 2>&1 || kg::die "cannot reach the Docker daemon (docker info failed)"
  if kind get clusters 2>/dev/null | grep -qx "$NAME"; then
    kg::die "a kind cluster named ${NAME} exists; \`$0 down\` first, or set KIND_CLUSTER_NAME"
  fi

  local kg
  kg="$(keygate_bin)"
  mkdir -p "$DIR"
  case "$MODE" in
    sidecar) make_files "$kg" "127.0.0.1" "https://127.0.0.1:8443/authenticate" ;;
    in-cluster)
      make_files "$kg" "${SERVICE_IP} keygate-webhook.keygate.svc" "https://${SERVICE_IP}:443/authenticate"
      ;;
  esac
  render_kind_config

  if [[ "${KEYGATE_SKIP_IMAGE_BUILD:-0}" != 1 ]]; then
    kg::log "building the image ${IMAGE}"
    docker build -t "$IMAGE" .
  fi

  local node_image=()
  [[ -n "${KIND_NODE_IMAGE:-}" ]] && node_image=(--image "$KIND_NODE_IMAGE")
  kind create cluster --name "$NAME" --config "${DIR}/kind-config.yaml" \
    --kubeconfig "$ADMIN_KUBECONFIG" --wait 180s "${node_image[@]}"
  kind load docker-image "$IMAGE" --name "$NAME"

  kubectl_admin apply -k manifests/base
  case "$MODE" in
    sidecar) deploy_sidecar ;;
    in-cluster) deploy_in_cluster ;;
  esac
  smoke_test "$kg"

  cat >&2 <<EOF

keygate runs on kind cluster '${NAME}' (${MODE}).
  export KUBECONFIG=${ADMIN_KUBECONFIG}
  ${kg} --store kube keys create --name me --role view
  $0 down      # delete the cluster
EOF
}

case "$MODE" in
  sidecar | in-cluster) cmd_up ;;
  down) cmd_down ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
