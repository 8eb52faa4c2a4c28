#!/usr/bin/env bash
# Build kube-apiserver from Debian's `kubernetes` source package (1.20.2) with
# Debian's Go, and print the absolute path of the binary as the last (and only)
# line on stdout. Progress goes to stderr.
#
#   APISERVER="$(hack/build-kube-apiserver.sh)"
#
# The binary is cached outside the clone, at
#   ${KEYGATE_CACHE:-$HOME/.cache/keygate}/kube-apiserver-1.20.2/kube-apiserver
# and a second run returns at once. The build runs in a temporary directory under
# the cache directory, holds a flock so that concurrent runs don't collide, and
# moves the binary into place atomically only on success.
#
# No network is used for Go: the tree is vendored and built in GOPATH mode
# (Kubernetes 1.20's hack/lib/init.sh forces GO111MODULE=off), with GOPROXY=off.
#
# Environment:
#   KEYGATE_CACHE               cache root (default $HOME/.cache/keygate)
#   KEYGATE_KEEP_BUILD_DIR=1    keep the temporary build tree (for debugging)
#   KEYGATE_BUILD_LOCK_TIMEOUT  seconds to wait for another build's lock (default 3600)
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

K8S_VERSION=1.20.2
OUT_DIR="${KEYGATE_CACHE}/kube-apiserver-${K8S_VERSION}"
DEST="${OUT_DIR}/kube-apiserver"
BUILD_LOG="${OUT_DIR}/build.log"

# Fast path: already built.
if [[ -x "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$OUT_DIR"

# One build at a time; whoever waits finds the binary once the lock is released.
exec 9>"${OUT_DIR}/.lock"
if ! flock -n 9; then
  kg::log "another build of kube-apiserver ${K8S_VERSION} is running; waiting for its lock"
  flock -w "${KEYGATE_BUILD_LOCK_TIMEOUT:-3600}" 9 ||
    kg::die "timed out waiting for the build lock ${OUT_DIR}/.lock"
fi
if [[ -x "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi

"${KEYGATE_ROOT}/hack/install-deps.sh" >&2

GO_BIN_DIR=/usr/lib/go/bin # Debian's golang-go, whatever else is on PATH
[[ -x "${GO_BIN_DIR}/go" ]] || kg::die "Debian's Go is missing (${GO_BIN_DIR}/go); run hack/install-deps.sh"

WORK="$(mktemp -d "${OUT_DIR}/build.XXXXXX")"
cleanup() {
  if [[ "${KEYGATE_KEEP_BUILD_DIR:-0}" == 1 ]]; then
    kg::log "keeping build tree ${WORK}"
  else
    # Go's module cache and some generated trees are read-only: make them writable first.
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

start=$SECONDS
kg::log "building kube-apiserver ${K8S_VERSION} from Debian's source package in ${WORK} (log: ${BUILD_LOG})"
: >"$BUILD_LOG"

# --- fetch and unpack the source ----------------------------------------------
kg::log "apt-get source kubernetes"
# apt's _apt sandbox user must be able to write the download directory.
chmod 0755 "$WORK"
if ! (cd "$WORK" && apt-get source kubernetes) >>"$BUILD_LOG" 2>&1; then
  kg::tail_log "$BUILD_LOG"
  kg::die "apt-get source kubernetes failed (is a deb-src entry configured? see hack/install-deps.sh)"
fi
SRC=""
for d in "$WORK"/kubernetes-*/; do
  [[ -f "${d}cmd/kube-apiserver/apiserver.go" ]] && SRC="${d%/}"
done
[[ -n "$SRC" ]] || kg::die "no unpacked kubernetes source tree under ${WORK}"
upstream="$(sed -n 's/^Version: *//p' "$WORK"/kubernetes_*.dsc | head -n1)"
case "$upstream" in
  *"${K8S_VERSION}"-*) ;;
  *) kg::die "Debian's kubernetes source is ${upstream}, expected upstream ${K8S_VERSION}" ;;
esac
kg::log "source: kubernetes ${upstream} ($(( SECONDS - start ))s)"

# --- build -------------------------------------------------------------------------
# Like debian/rules: a GOPATH whose k8s.io/kubernetes is the tree.
GOPATH_DIR="${WORK}/gopath"
mkdir -p "${GOPATH_DIR}/src/k8s.io"
ln -s "$SRC" "${GOPATH_DIR}/src/k8s.io/kubernetes"

kg::log "make WHAT=cmd/kube-apiserver with $("${GO_BIN_DIR}/go" version) (this takes several minutes)"
build_rc=0
(
  cd "${GOPATH_DIR}/src/k8s.io/kubernetes"
  unset GOFLAGS GOROOT GOBIN GOOS GOARCH GOEXPERIMENT KUBE_GIT_VERSION_FILE
  export PATH="${GO_BIN_DIR}:${PATH}"
  export GOPATH="$GOPATH_DIR"
  export GOCACHE="${WORK}/gocache"
  export GOMODCACHE="${WORK}/gomodcache"
  export GO111MODULE=off # what Kubernetes 1.20's hack/lib/init.sh forces anyway
  export GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=
  export CGO_ENABLED=0 # as debian/rules: a static binary
  export HOME="${WORK}/home"
  mkdir -p "$HOME"
  make WHAT=cmd/kube-apiserver
) >>"$BUILD_LOG" 2>&1 || build_rc=$?

BUILT="${SRC}/_output/bin/kube-apiserver"
if ((build_rc != 0)) || [[ ! -x "$BUILT" ]]; then
  kg::tail_log "$BUILD_LOG" 60
  kg::die "building kube-apiserver failed (exit ${build_rc}); full log: ${BUILD_LOG}"
fi
"$BUILT" --version >>"$BUILD_LOG" 2>&1 || kg::die "the built kube-apiserver does not run; see ${BUILD_LOG}"

# Atomic install: copy next to the destination, then rename over it.
cp "$BUILT" "${DEST}.tmp.$$"
chmod 0755 "${DEST}.tmp.$$"
mv -f "${DEST}.tmp.$$" "$DEST"

elapsed=$((SECONDS - start))
kg::log "built $("$DEST" --version) in ${elapsed}s ($((elapsed / 60))m$((elapsed % 60))s): ${DEST}"
echo "cold build: ${elapsed}s" >>"$BUILD_LOG"
echo "$DEST"
