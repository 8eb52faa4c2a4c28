#!/usr/bin/env bash
# Build the Kubernetes 1.20.2 control-plane binaries keygate's test cluster runs
# (kube-apiserver and kube-controller-manager) from Debian's `kubernetes` source
# package with Debian's Go, and print the absolute path of each, one line per
# component in the order asked (by default only kube-apiserver: then its path is
# the last and only line on stdout). Progress goes to stderr.
#
#   APISERVER="$(hack/build-kube-apiserver.sh)"
#   { read -r APISERVER; read -r KCM; } < <(hack/build-kube-apiserver.sh kube-apiserver kube-controller-manager)
#
# Each binary is cached outside the clone, at
#   ${KEYGATE_CACHE:-$HOME/.cache/keygate}/<component>-1.20.2/<component>
# and a second run returns at once. Only the missing components are built, from one
# unpacked source tree with one Go build cache (what they share is compiled once).
# The build runs in a temporary directory under the cache directory, holds a flock
# (kube-apiserver-1.20.2/.lock, whichever components are built) so that concurrent
# runs don't collide, and moves each binary into place atomically only on success.
#
# kube-controller-manager is built with the `providerless` build tag (no in-tree
# cloud providers: the test cluster has no cloud, and their SDKs would double the
# build time); kube-apiserver is built as before, without tags.
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
# The build's own directory: its lock, its log and the temporary build tree. It is
# kube-apiserver's cache directory, so that every version of this script, including
# those that built only kube-apiserver, takes the same lock.
OUT_DIR="${KEYGATE_CACHE}/kube-apiserver-${K8S_VERSION}"
BUILD_LOG="${OUT_DIR}/build.log"

COMPONENTS=("$@")
((${#COMPONENTS[@]} > 0)) || COMPONENTS=(kube-apiserver)
for c in "${COMPONENTS[@]}"; do
  case "$c" in
    kube-apiserver | kube-controller-manager) ;;
    *) kg::die "unknown component '${c}': kube-apiserver or kube-controller-manager" ;;
  esac
done

# dest COMPONENT: where the cached binary lives.
dest() { echo "${KEYGATE_CACHE}/$1-${K8S_VERSION}/$1"; }

# print_all_or_missing: print every path and return 0 if all are built; else set
# MISSING to the components still to build and return 1.
print_all_or_missing() {
  local c
  MISSING=()
  for c in "${COMPONENTS[@]}"; do
    [[ -x "$(dest "$c")" ]] || MISSING+=("$c")
  done
  ((${#MISSING[@]} == 0)) || return 1
  for c in "${COMPONENTS[@]}"; do dest "$c"; done
}

# Fast path: already built.
print_all_or_missing && exit 0

mkdir -p "$OUT_DIR"

# One build at a time; whoever waits finds the binaries once the lock is released.
exec 9>"${OUT_DIR}/.lock"
if ! flock -n 9; then
  kg::log "another build of Kubernetes ${K8S_VERSION} binaries is running; waiting for its lock"
  flock -w "${KEYGATE_BUILD_LOCK_TIMEOUT:-3600}" 9 ||
    kg::die "timed out waiting for the build lock ${OUT_DIR}/.lock"
fi
print_all_or_missing && exit 0

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
kg::log "building ${MISSING[*]} ${K8S_VERSION} from Debian's source package in ${WORK} (log: ${BUILD_LOG})"
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

# make_component COMPONENT: build it in the tree and install it into the cache.
make_component() {
  local c="$1" goflags="" t0=$SECONDS build_rc=0
  [[ "$c" == kube-controller-manager ]] && goflags="-tags=providerless"
  kg::log "make WHAT=cmd/${c}${goflags:+ GOFLAGS=${goflags}} with $("${GO_BIN_DIR}/go" version) (this takes several minutes)"
  (
    cd "${GOPATH_DIR}/src/k8s.io/kubernetes"
    unset GOFLAGS GOROOT GOBIN GOOS GOARCH GOEXPERIMENT KUBE_GIT_VERSION_FILE
    export PATH="${GO_BIN_DIR}:${PATH}"
    export GOPATH="$GOPATH_DIR"
    export GOCACHE="${WORK}/gocache" # shared by the components built in this run
    export GOMODCACHE="${WORK}/gomodcache"
    export GO111MODULE=off # what Kubernetes 1.20's hack/lib/init.sh forces anyway
    export GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local
    export CGO_ENABLED=0 # as debian/rules: a static binary
    export HOME="${WORK}/home"
    mkdir -p "$HOME"
    # GOFLAGS as a make variable: Kubernetes' build passes it on to `go install`.
    make WHAT="cmd/${c}" GOFLAGS="$goflags"
  ) >>"$BUILD_LOG" 2>&1 || build_rc=$?

  local built="${SRC}/_output/bin/${c}" dst
  dst="$(dest "$c")"
  if ((build_rc != 0)) || [[ ! -x "$built" ]]; then
    kg::tail_log "$BUILD_LOG" 60
    kg::die "building ${c} failed (exit ${build_rc}); full log: ${BUILD_LOG}"
  fi
  "$built" --version >>"$BUILD_LOG" 2>&1 || kg::die "the built ${c} does not run; see ${BUILD_LOG}"

  # Atomic install: copy next to the destination, then rename over it.
  mkdir -p "$(dirname "$dst")"
  cp "$built" "${dst}.tmp.$$"
  chmod 0755 "${dst}.tmp.$$"
  mv -f "${dst}.tmp.$$" "$dst"
  local elapsed=$((SECONDS - t0))
  kg::log "built $("$dst" --version) in ${elapsed}s ($((elapsed / 60))m$((elapsed % 60))s): ${dst}"
  echo "${c}: make took ${elapsed}s" >>"$BUILD_LOG"
}

for c in "${MISSING[@]}"; do
  make_component "$c"
done

elapsed=$((SECONDS - start))
kg::log "built ${MISSING[*]} in ${elapsed}s ($((elapsed / 60))m$((elapsed % 60))s) including the source download"
echo "cold build: ${elapsed}s" >>"$BUILD_LOG"
for c in "${COMPONENTS[@]}"; do dest "$c"; done
