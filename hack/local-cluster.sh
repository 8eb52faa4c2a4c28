#!/usr/bin/env bash
# A throw-away Kubernetes control plane on loopback for keygate's end-to-end tests:
# etcd + kube-apiserver 1.20.2 + kube-controller-manager 1.20.2 (both built from
# Debian's source by hack/build-kube-apiserver.sh) + keygate as the TokenReview
# webhook sidecar.
#
# kube-controller-manager runs as user system:kube-controller-manager (its own client
# certificate) with --use-service-account-credentials, so namespace deletion, garbage
# collection, service-account tokens and the aggregation of the ClusterRoles view,
# edit and admin work as in a real cluster; `up` waits until those three roles are
# aggregated. kube-apiserver also has the aggregation layer's prerequisites: a
# front-proxy CA (--requestheader-client-ca-file, allowed name front-proxy-client)
# and the proxy client certificate it presents to aggregated API servers
# (--proxy-client-cert-file); no --enable-aggregator-routing (kube-apiserver 1.20 routes
# an APIService whose Service is an ExternalName to https://<externalName>:<port>; with
# aggregator routing on it would look for Endpoints and refuse the ExternalName type).
#
# keygate runs as two processes with two identities, as manifests/sidecar does: `keygate`,
# the webhook kube-apiserver calls (TokenReview, SubjectAccessReview), as the user
# keygate-webhook, which may only read records and keep last use in Leases
# (manifests/base/rbac-webhook.yaml); and `keygate-api`, the AccessKey API (`serve --api`,
# when `keygate serve --help` lists --api), as the user keygate-api, the only identity that
# may write records (manifests/base/rbac-api.yaml). A key the API has just minted is thus
# first used at a webhook process that did not serve the create. keygate-api gets the
# front-proxy CA and allowed name (--requestheader-client-ca, --requestheader-allowed-names),
# the serving certificate (shared) also names keygate.kube-system.svc, and the APIService
# v1alpha1.keygate.dev points at the Service keygate in kube-system, an ExternalName for
# localhost on keygate-api's port. The RBAC of manifests/base (both identities' rights,
# the ClusterRoles keygate:self-service and keygate:key-admin) is applied at `up` either
# way. The APIService is registered at `up` unless KEYGATE_APISERVICE=0, and `apiservice
# on|off` registers or removes it later (tests of the Part 1 CLI, which writes Secrets
# only while no APIService exists, run with it off). While keygate is stopped a
# registered APIService is unavailable, and kube-apiserver 1.20 then cannot finish
# deleting namespaces.
#
# Test users (RBAC applied at `up`; kubeconfigs exported by `env` as
# KEYGATE_<NAME>_KUBECONFIG, NAME upper-cased):
#   alice    client certificate, group e2e:self-service (-> keygate:self-service);
#            may bind ClusterRole view cluster-wide
#   nina     static token, group e2e:self-service; admin in namespace apps, and may
#            bind ClusterRole edit there
#   victor   static token, group e2e:self-service; view cluster-wide
#   kim      client certificate, group e2e:self-service; keygate:key-admin
#   mallory  static token; edit in keygate-system (nothing else)
#
#   hack/local-cluster.sh up        start everything; prints the admin kubeconfig path
#   hack/local-cluster.sh down      stop what `up` started and remove the state dir
#   hack/local-cluster.sh env       `export ...` lines: eval "$(hack/local-cluster.sh env)"
#   hack/local-cluster.sh status    what is running (exit 0 when everything is up)
#   hack/local-cluster.sh restart COMPONENT
#                                   stop, then start again, one of etcd, kube-apiserver,
#                                   kube-controller-manager, keygate, keygate-api (same ports,
#                                   certificates, flags and state as at `up`); returns
#                                   once it is healthy again
#   hack/local-cluster.sh stop COMPONENT   stop one component (for outage tests)
#   hack/local-cluster.sh start COMPONENT  start a stopped component again, wait until healthy
#                                   (what it depends on must be running: etcd for
#                                   kube-apiserver, kube-apiserver for
#                                   kube-controller-manager and keygate*)
#   hack/local-cluster.sh apiservice on|off
#                                   register the APIService v1alpha1.keygate.dev and wait
#                                   until it is Available and accesskeys is discovered
#                                   (needs keygate with --api), or remove it
#   hack/local-cluster.sh seal on  record seals: generate the key pair (keygate seal-key, in
#                                   the state dir), seal the existing records (keygate keys
#                                   seal, as the admin: the one-time migration) and restart
#                                   keygate and keygate-api with --record-verify-key, and
#                                   keygate-api with --record-signing-key; kept for later
#                                   restarts
#   hack/local-cluster.sh guard on  the record guard: restart keygate with --record-writer
#                                   keygate-api and register its ValidatingWebhookConfiguration
#                                   (`keygate webhook-config --admission`), so only keygate-api
#                                   may create, change or delete records; kept for later
#                                   restarts (run `seal on` first: the guard refuses the
#                                   admin's migration too)
#   hack/local-cluster.sh authz-mode MODE [--deny-revoked] [--cache-ttl D]
#                                   restart kube-apiserver with --authorization-mode=MODE
#                                   (e.g. Node,Webhook,RBAC) and both authorization webhook
#                                   cache TTLs at D (default: as before), and keygate with or
#                                   without --authorize-deny-revoked (instant revocation);
#                                   kept for later restarts
#
# Only stdout carries results (a path, export lines, the status table); progress
# and errors go to stderr. Every process logs to a file in the state dir.
#
# `env` exports, besides the kubeconfigs, URLs and ports: KEYGATE_FRONT_PROXY_CA (the
# CA kube-apiserver's --requestheader-client-ca-file names: an aggregated API server
# verifies kube-apiserver's proxy client certificate with it),
# KEYGATE_FRONT_PROXY_CLIENT_CERT and KEYGATE_FRONT_PROXY_CLIENT_KEY (that client
# certificate, CN front-proxy-client, to play kube-apiserver in tests),
# KEYGATE_CONTROLLER_MANAGER_BIN and KEYGATE_CONTROLLER_MANAGER_PORT; KEYGATE_API_SERVED (1 when
# keygate serves the AccessKey API), KEYGATE_APISERVICE_NAME (v1alpha1.keygate.dev),
# KEYGATE_API_SERVICE (kube-system/keygate), KEYGATE_FRONT_PROXY_OTHER_CERT and _KEY (signed
# by the front-proxy CA, CN front-proxy-intruder: not an allowed name), the users'
# kubeconfigs (above), KEYGATE_APPS_NAMESPACE (apps), KEYGATE_WEBHOOK_KUBECONFIG and
# KEYGATE_API_KUBECONFIG (the two keygate identities), KEYGATE_API_PORT and
# KEYGATE_API_ADMIN_URL (keygate-api's listener and admin port).
#
# Environment (all optional):
#   KEYGATE_CLUSTER_DIR          state dir (default ${KEYGATE_CACHE:-$HOME/.cache/keygate}/cluster)
#   KEYGATE_BIN                  keygate binary (default <repo>/target/debug/keygate)
#   KEYGATE_NO_WEBHOOK=1         no keygate, and no webhook flags on kube-apiserver
#   KEYGATE_WEBHOOK_CACHE_TTL    --authentication-token-webhook-cache-ttl (default 2s)
#   KEYGATE_AUTHZ_MODE           kube-apiserver's --authorization-mode (default
#                                Node,RBAC,Webhook: keygate's POST /authorize after RBAC;
#                                RBAC alone when KEYGATE_NO_WEBHOOK=1)
#   KEYGATE_AUTHZ_CACHE_TTL      both --authorization-webhook-cache-*-ttl (default 2s)
#   KEYGATE_ETCD_PORT KEYGATE_ETCD_PEER_PORT KEYGATE_APISERVER_PORT
#   KEYGATE_WEBHOOK_PORT KEYGATE_WEBHOOK_ADMIN_PORT KEYGATE_API_PORT KEYGATE_API_ADMIN_PORT
#   KEYGATE_CONTROLLER_MANAGER_PORT
#                                fixed ports on 127.0.0.1 (default: free ports picked at `up`;
#                                the last is kube-controller-manager's secure port, /healthz)
#   KEYGATE_APISERVER_BIN        use this kube-apiserver instead of building one
#   KEYGATE_APISERVER_EXTRA_ARGS extra kube-apiserver flags (word-split)
#   KEYGATE_APISERVER_V          kube-apiserver log verbosity (default 1)
#   KEYGATE_CONTROLLER_MANAGER_BIN
#                                use this kube-controller-manager instead of building one
#   KEYGATE_CONTROLLER_MANAGER_EXTRA_ARGS
#                                extra kube-controller-manager flags (word-split)
#   KEYGATE_KEYGATE_EXTRA_ARGS   extra `keygate serve` flags of both processes (word-split)
#   KEYGATE_KEYGATE_API_EXTRA_ARGS  extra flags of keygate-api only (word-split)
#   KEYGATE_KEYGATE_LOG          keygate's --log filter (default: keygate's, from KEYGATE_LOG/RUST_LOG)
#   KEYGATE_STATIC_TOKEN_GROUPS  groups of the static-token user (default keygate:view)
#   KEYGATE_EXTRA_STATIC_TOKENS  a file of more --token-auth-file lines (token,user,uid,"groups"),
#                                appended to the static token file at `up` (for benchmarks)
#   KEYGATE_ETCD_FSYNC=1         keep etcd's fsync (default: --unsafe-no-fsync, faster)
#   KEYGATE_START_TIMEOUT        seconds to wait for each component (default 120)
#   KEYGATE_STOP_TIMEOUT         seconds between SIGTERM and SIGKILL when stopping a component
#                                (default 20; 5 for kube-apiserver, which otherwise waits on
#                                open watches)
#   KEYGATE_SKIP_DEPS=1          do not run hack/install-deps.sh
#   KEYGATE_APISERVICE=0         do not register the APIService at `up` (see `apiservice on`)
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=hack/lib/pki.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/pki.sh"

STATE="${KEYGATE_CLUSTER_DIR:-${KEYGATE_CACHE}/cluster}"
[[ "$STATE" == /* ]] || STATE="${PWD}/${STATE}"
STATE="${STATE%/}"
KEY_NAMESPACE=keygate-system
WEBHOOK_USER=keygate-webhook
API_USER=keygate-api
STATIC_TOKEN_USER=keygate-static-bench
START_TIMEOUT="${KEYGATE_START_TIMEOUT:-120}"
COMPONENTS=(etcd kube-apiserver kube-controller-manager keygate keygate-api)
KCM_USER=system:kube-controller-manager
# The AccessKey API (sidecar layout: an ExternalName Service for localhost in kube-system).
APISERVICE=v1alpha1.keygate.dev
API_SERVICE_NAME=keygate
API_SERVICE_NAMESPACE=kube-system
APPS_NAMESPACE=apps
# Test users: the ones with a client certificate, and the ones with a static token.
CERT_USERS=(alice kim)
TOKEN_USERS=(nina victor mallory)
SELF_SERVICE_GROUP=e2e:self-service

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# --- process bookkeeping -------------------------------------------------------------

pidfile() { echo "${STATE}/$1.pid"; }
logfile() { echo "${STATE}/$1.log"; }

# component_pid NAME: the pid of a running component that we started, else nothing.
# The pid is trusted only if the process's command line mentions the state dir, so a
# recycled pid is never killed.
component_pid() {
  local f pid
  f="$(pidfile "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(<"$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kg::pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "$STATE" || return 1
  echo "$pid"
}

# start NAME CMD...: run CMD detached (own session, stdin from /dev/null), logging to
# $STATE/NAME.log, and record its pid in $STATE/NAME.pid.
start() {
  local name="$1"
  shift
  local log pf
  log="$(logfile "$name")"
  pf="$(pidfile "$name")"
  kg::log "starting ${name} (log: ${log})"
  # The inner shell writes its own pid, then execs the command: the pid is the
  # command's, whether or not setsid had to fork.
  # shellcheck disable=SC2016 # expanded by the inner shell
  # fd 8 is our lock on the state dir and fd 7 the stderr of `up`: the daemons must
  # not inherit them.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" "$@" </dev/null >>"$log" 2>&1 7>&- 8>&- &
  local deadline=$((SECONDS + 5))
  until [[ -s "$pf" ]]; do
    ((SECONDS < deadline)) || kg::die "could not start ${name}"
    sleep 0.05
  done
}

# fail NAME MESSAGE: report a component that did not come up, with its log.
fail() {
  local name="$1"
  shift
  kg::tail_log "$(logfile "$name")" 40
  kg::warn "$* -- see $(logfile "$name")"
  kg::die "${name} failed to start; see $(logfile "$name")"
}

# wait_healthy NAME DESCRIPTION CMD...: poll CMD until it succeeds, while the
# component's process is alive, up to START_TIMEOUT seconds.
wait_healthy() {
  local name="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    component_pid "$name" >/dev/null || fail "$name" "${name} exited while waiting for ${what}"
    ((SECONDS < deadline)) || fail "$name" "timed out after ${START_TIMEOUT}s waiting for ${what}"
    sleep 0.2
  done
  kg::log "${name} is ready (${what})"
}

# stop NAME: SIGTERM, wait up to KEYGATE_STOP_TIMEOUT seconds, then SIGKILL.
# kube-apiserver gets 5 s by default: on SIGTERM it stops listening at once, then
# waits (up to its built-in 60 s) for long-running requests such as keygate's
# watch, which only ends when the connection does.
stop() {
  local name="$1" pid grace=20
  [[ "$name" == kube-apiserver ]] && grace=5
  grace="${KEYGATE_STOP_TIMEOUT:-$grace}"
  if pid="$(component_pid "$name")"; then
    kg::log "stopping ${name} (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kg::pid_alive "$pid"; do
      if ((SECONDS >= deadline)); then
        kg::log "${name} (pid ${pid}) still running ${grace}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  fi
  rm -f "$(pidfile "$name")"
}

stop_all() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop "${COMPONENTS[i]}"
  done
}

# lock_state: serialise up/down on this state dir (fd 8, never inherited by daemons).
lock_state() {
  mkdir -p "$(dirname "$STATE")"
  exec 8>"${STATE}.lock"
  if ! flock -n 8; then
    kg::log "waiting for another \`$0\` on ${STATE} (lock ${STATE}.lock)"
    flock -w 300 8 || kg::die "another \`$0\` still holds ${STATE}.lock after 300s"
  fi
}

# --- configuration persisted between commands ---------------------------------------

load_config() {
  [[ -r "${STATE}/cluster.env" ]] || return 1
  # shellcheck disable=SC1091
  source "${STATE}/cluster.env"
}

write_config() {
  local tmp="${STATE}/cluster.env.tmp"
  {
    echo "# written by hack/local-cluster.sh up"
    local v
    for v in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT WEBHOOK_PORT WEBHOOK_ADMIN_PORT API_PORT \
      API_ADMIN_PORT KCM_PORT NO_WEBHOOK KEYGATE_BIN_PATH KEYGATE_BIN_STAMP APISERVER_BIN KCM_BIN STATIC_TOKEN API \
      CFG_WEBHOOK_CACHE_TTL CFG_APISERVER_EXTRA_ARGS CFG_APISERVER_V CFG_KEYGATE_EXTRA_ARGS \
      CFG_KEYGATE_LOG CFG_ETCD_FSYNC CFG_KCM_EXTRA_ARGS CFG_AUTHZ_MODE CFG_AUTHZ_CACHE_TTL \
      CFG_AUTHZ_DENY_REVOKED CFG_SEAL CFG_GUARD CFG_KEYGATE_API_EXTRA_ARGS; do
      printf '%s=%q\n' "$v" "${!v-}"
    done
  } >"$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "${STATE}/cluster.env"
}

pick_port() {
  # pick_port VALUE: VALUE if set, else a free port that is not already taken
  # by another of our components.
  local want="$1" p
  if [[ -n "$want" ]]; then
    [[ "$want" =~ ^[0-9]+$ ]] || kg::die "port '${want}' is not a number"
    kg::port_in_use "$want" && kg::die "port 127.0.0.1:${want} is already in use"
    echo "$want"
    return
  fi
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p="$(kg::free_port)" || kg::die "no free port found"
    if [[ " ${PICKED_PORTS:-} " != *" ${p} "* ]]; then
      echo "$p"
      return
    fi
  done
  kg::die "no free port found"
}

# --- health probes ----------------------------------------------------------------------

etcd_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:${ETCD_PORT}/health" | grep -q '"health":"true"'
}

apiserver_ready() {
  curl -fsS --max-time 5 \
    --cacert "${STATE}/pki/server-ca.crt" \
    --cert "${STATE}/pki/admin.crt" --key "${STATE}/pki/admin.key" \
    "https://127.0.0.1:${APISERVER_PORT}/readyz" | grep -qx ok
}

# kube-controller-manager's /healthz (on its secure port, with a self-signed
# certificate in ${STATE}/kube-controller-manager-certs; /healthz needs no credentials).
kcm_healthy() {
  curl -fsS --max-time 2 -k "https://127.0.0.1:${KCM_PORT}/healthz" | grep -qx ok
}

keygate_ready() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${WEBHOOK_ADMIN_PORT}/readyz"
}

keygate_api_ready() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${API_ADMIN_PORT}/readyz"
}

# --- up -------------------------------------------------------------------------------------

make_pki() {
  local pki="${STATE}/pki"
  mkdir -p "$pki"
  chmod 0700 "$pki"
  kg::log "creating PKI in ${pki}"
  # CA for kube-apiserver's serving certificate.
  kg::pki::ca "$pki" server-ca "keygate-local-apiserver-ca"
  kg::pki::leaf "${pki}/server-ca" "${pki}/apiserver" "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1"
  # CA for client certificates (--client-ca-file).
  kg::pki::ca "$pki" client-ca "keygate-local-client-ca"
  kg::pki::leaf "${pki}/client-ca" "${pki}/admin" "/O=system:masters/CN=kubernetes-admin" clientAuth
  # keygate's two narrowly-bound identities: the webhook's (read-only on records) and the
  # AccessKey API's (the only writer of records); see apply_rbac.
  kg::pki::leaf "${pki}/client-ca" "${pki}/${WEBHOOK_USER}" "/CN=${WEBHOOK_USER}" clientAuth
  kg::pki::leaf "${pki}/client-ca" "${pki}/${API_USER}" "/CN=${API_USER}" clientAuth
  # kube-controller-manager's identity; the bootstrap RBAC policy binds this user.
  kg::pki::leaf "${pki}/client-ca" "${pki}/kube-controller-manager" "/CN=${KCM_USER}" clientAuth
  # The aggregation layer: kube-apiserver proxies to aggregated API servers with the
  # client certificate front-proxy-client, signed by a CA of its own that those servers
  # trust for the X-Remote-User/-Group/-Extra- headers (--requestheader-client-ca-file).
  kg::pki::ca "$pki" front-proxy-ca "keygate-local-front-proxy-ca"
  kg::pki::leaf "${pki}/front-proxy-ca" "${pki}/front-proxy-client" "/CN=front-proxy-client" clientAuth
  # Signed by the same CA, but not an allowed name: an aggregated API server must refuse it.
  kg::pki::leaf "${pki}/front-proxy-ca" "${pki}/front-proxy-intruder" "/CN=front-proxy-intruder" clientAuth
  # Service-account token signing key.
  kg::pki::rsa_key "${pki}/sa.key" 2048
  openssl pkey -in "${pki}/sa.key" -pubout -out "${pki}/sa.pub" 2>/dev/null

  kg::pki::kubeconfig "${STATE}/admin.kubeconfig" "https://127.0.0.1:${APISERVER_PORT}" \
    "${pki}/server-ca.crt" "${pki}/admin.crt" "${pki}/admin.key" kubernetes-admin
  kg::pki::kubeconfig "${STATE}/keygate.kubeconfig" "https://127.0.0.1:${APISERVER_PORT}" \
    "${pki}/server-ca.crt" "${pki}/${WEBHOOK_USER}.crt" "${pki}/${WEBHOOK_USER}.key" "$WEBHOOK_USER"
  kg::pki::kubeconfig "${STATE}/keygate-api.kubeconfig" "https://127.0.0.1:${APISERVER_PORT}" \
    "${pki}/server-ca.crt" "${pki}/${API_USER}.crt" "${pki}/${API_USER}.key" "$API_USER"
  kg::pki::kubeconfig "${STATE}/kube-controller-manager.kubeconfig" "https://127.0.0.1:${APISERVER_PORT}" \
    "${pki}/server-ca.crt" "${pki}/kube-controller-manager.crt" "${pki}/kube-controller-manager.key" "$KCM_USER"

  # One static token user, for benchmarks (token,user,uid,"groups").
  (
    umask 077
    printf '%s,%s,%s,"%s"\n' "$STATIC_TOKEN" "$STATIC_TOKEN_USER" "$STATIC_TOKEN_USER" \
      "${KEYGATE_STATIC_TOKEN_GROUPS-keygate:view}" >"${STATE}/tokens.csv"
    make_users
    if [[ -n "${KEYGATE_EXTRA_STATIC_TOKENS:-}" ]]; then
      [[ -r "$KEYGATE_EXTRA_STATIC_TOKENS" ]] ||
        kg::die "KEYGATE_EXTRA_STATIC_TOKENS: cannot read ${KEYGATE_EXTRA_STATIC_TOKENS}"
      cat -- "$KEYGATE_EXTRA_STATIC_TOKENS" >>"${STATE}/tokens.csv"
    fi
  )
}

# user_groups NAME: the groups of a test user (comma-separated; see the header).
user_groups() {
  case "$1" in
    alice | nina | victor | kim) echo "$SELF_SERVICE_GROUP" ;;
    *) echo "" ;;
  esac
}

# make_users: the test users' credentials (client certificates, or lines of the static
# token file, which the caller is writing with umask 077) and a kubeconfig for each in
# ${STATE}/users/.
make_users() {
  local pki="${STATE}/pki" users="${STATE}/users" u g subj token
  mkdir -p "$users"
  for u in "${CERT_USERS[@]}"; do
    g="$(user_groups "$u")"
    subj="/CN=${u}"
    [[ -z "$g" ]] || subj="/O=${g}${subj}"
    kg::pki::leaf "${pki}/client-ca" "${pki}/user-${u}" "$subj" clientAuth
    kg::pki::kubeconfig "${users}/${u}.kubeconfig" "https://127.0.0.1:${APISERVER_PORT}" \
      "${pki}/server-ca.crt" "${pki}/user-${u}.crt" "${pki}/user-${u}.key" "$u"
  done
  for u in "${TOKEN_USERS[@]}"; do
    token="$(openssl rand -hex 32)"
    printf '%s,%s,%s,"%s"\n' "$token" "$u" "$u" "$(user_groups "$u")" >>"${STATE}/tokens.csv"
    kg::pki::token_kubeconfig "${users}/${u}.kubeconfig" "https://127.0.0.1:${APISERVER_PORT}" \
      "${pki}/server-ca.crt" "$token" "$u"
  done
}

make_webhook_config() {
  local dir="${STATE}/keygate-certs" out
  kg::log "creating keygate's certificates and the webhook kubeconfig"
  # keygate.kube-system.svc: the name kube-aggregator expects in the serving certificate
  # when it proxies to the APIService's Service (<name>.<namespace>.svc), whatever address
  # it connects to.
  out="$("$KEYGATE_BIN_PATH" certs --out-dir "$dir" --san 127.0.0.1 --san localhost \
    --san "${API_SERVICE_NAME}.${API_SERVICE_NAMESPACE}.svc" 2>&1)" ||
    { printf '%s\n' "$out" >&2; kg::die "\`${KEYGATE_BIN_PATH} certs\` failed"; }
  local f
  for f in ca.crt server.crt server.key client.crt client.key; do
    [[ -s "${dir}/${f}" ]] || kg::die "\`keygate certs\` did not write ${dir}/${f}"
  done
  if ! "$KEYGATE_BIN_PATH" webhook-config \
    --server "https://127.0.0.1:${WEBHOOK_PORT}/authenticate" \
    --certificate-authority "${dir}/ca.crt" \
    --client-certificate "${dir}/client.crt" \
    --client-key "${dir}/client.key" >"${STATE}/webhook.kubeconfig.tmp"; then
    kg::die "\`${KEYGATE_BIN_PATH} webhook-config\` failed"
  fi
  [[ -s "${STATE}/webhook.kubeconfig.tmp" ]] || kg::die "\`keygate webhook-config\` printed nothing"
  chmod 0600 "${STATE}/webhook.kubeconfig.tmp"
  mv -f "${STATE}/webhook.kubeconfig.tmp" "${STATE}/webhook.kubeconfig"
  # The authorization webhook: same listener, same client certificate, POST /authorize.
  "$KEYGATE_BIN_PATH" webhook-config --authorizer \
    --server "https://127.0.0.1:${WEBHOOK_PORT}/authorize" \
    --certificate-authority "${dir}/ca.crt" \
    --client-certificate "${dir}/client.crt" \
    --client-key "${dir}/client.key" \
    -o "${STATE}/authz.kubeconfig" ||
    kg::die "\`${KEYGATE_BIN_PATH} webhook-config --authorizer\` failed"
}

# admission_config: kube-apiserver presents its webhook client certificate to admission
# webhooks at keygate's address too (the record guard, `guard on`): keygate's listener takes
# only clients from --client-ca. An AdmissionConfiguration pointing each webhook plugin at a
# kubeconfig whose user is named after the webhook's host:port.
admission_config() {
  local dir="${STATE}/keygate-certs"
  (
    umask 077
    cat >"${STATE}/admission.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: "127.0.0.1:${WEBHOOK_PORT}"
  user:
    client-certificate: ${dir}/client.crt
    client-key: ${dir}/client.key
EOF
    cat >"${STATE}/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ${STATE}/admission.kubeconfig
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ${STATE}/admission.kubeconfig
EOF
  )
}

start_etcd() {
  local fsync=(--unsafe-no-fsync)
  [[ "${CFG_ETCD_FSYNC-${KEYGATE_ETCD_FSYNC:-0}}" == 1 ]] && fsync=()
  mkdir -p "${STATE}/etcd"
  chmod 0700 "${STATE}/etcd"
  start etcd /usr/bin/etcd \
    --name keygate-local \
    --data-dir "${STATE}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "keygate-local=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster-state new \
    --logger zap --log-outputs stderr \
    "${fsync[@]}"
  wait_healthy etcd "http://127.0.0.1:${ETCD_PORT}/health" etcd_healthy
}

start_apiserver() {
  local pki="${STATE}/pki"
  local args=(
    --bind-address=127.0.0.1
    --advertise-address=127.0.0.1
    --secure-port="${APISERVER_PORT}"
    --insecure-port=0
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}"
    --tls-cert-file="${pki}/apiserver.crt"
    --tls-private-key-file="${pki}/apiserver.key"
    --client-ca-file="${pki}/client-ca.crt"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="${pki}/sa.pub"
    --service-account-signing-key-file="${pki}/sa.key"
    --service-cluster-ip-range=10.0.0.0/24
    # The "kubernetes" Service's endpoints cannot be a loopback address.
    --endpoint-reconciler-type=none
    --token-auth-file="${STATE}/tokens.csv"
    --enable-bootstrap-token-auth
    --cert-dir="${STATE}/apiserver-certs"
    # Aggregation layer (no --enable-aggregator-routing: APIServices are reached
    # through their Service, which may be an ExternalName).
    --requestheader-client-ca-file="${pki}/front-proxy-ca.crt"
    --requestheader-allowed-names=front-proxy-client
    --requestheader-username-headers=X-Remote-User
    --requestheader-group-headers=X-Remote-Group
    --requestheader-extra-headers-prefix=X-Remote-Extra-
    --proxy-client-cert-file="${pki}/front-proxy-client.crt"
    --proxy-client-key-file="${pki}/front-proxy-client.key"
    --profiling=false
    # The audit log (metadata of every request, with the user's extra: a key's ID).
    --audit-policy-file="${STATE}/audit-policy.yaml"
    --audit-log-path="${STATE}/audit.log"
    --audit-log-maxsize=100
    --v="${CFG_APISERVER_V-${KEYGATE_APISERVER_V:-1}}"
  )
  cat >"${STATE}/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
EOF
  local mode="${CFG_AUTHZ_MODE-${KEYGATE_AUTHZ_MODE:-Node,RBAC,Webhook}}"
  [[ "$NO_WEBHOOK" != 1 ]] || mode=RBAC
  args+=(--authorization-mode="$mode")
  if [[ ",${mode}," == *,Webhook,* ]]; then
    local ttl="${CFG_AUTHZ_CACHE_TTL-${KEYGATE_AUTHZ_CACHE_TTL:-2s}}"
    args+=(
      --authorization-webhook-config-file="${STATE}/authz.kubeconfig"
      --authorization-webhook-version=v1
      --authorization-webhook-cache-authorized-ttl="$ttl"
      --authorization-webhook-cache-unauthorized-ttl="$ttl"
    )
  fi
  if [[ "$NO_WEBHOOK" != 1 ]]; then
    admission_config
    args+=(
      --admission-control-config-file="${STATE}/admission.yaml"
      --authentication-token-webhook-config-file="${STATE}/webhook.kubeconfig"
      --authentication-token-webhook-version=v1
      --authentication-token-webhook-cache-ttl="${CFG_WEBHOOK_CACHE_TTL-${KEYGATE_WEBHOOK_CACHE_TTL:-2s}}"
    )
  fi
  local extra=()
  local args_extra="${CFG_APISERVER_EXTRA_ARGS-${KEYGATE_APISERVER_EXTRA_ARGS:-}}"
  # shellcheck disable=SC2206 # word splitting is the point
  [[ -n "$args_extra" ]] && extra=(${args_extra})
  start kube-apiserver "$APISERVER_BIN" "${args[@]}" "${extra[@]}"
  wait_healthy kube-apiserver "https://127.0.0.1:${APISERVER_PORT}/readyz" apiserver_ready
}

kubectl_admin() {
  kubectl --kubeconfig "${STATE}/admin.kubeconfig" --request-timeout=30s "$@"
}

# RBAC that does not depend on keygate running: manifests/base as shipped (the key
# namespace, both keygate identities' rights, the role ClusterRoleBindings, the AccessKey
# API's ClusterRoles), checked with each identity's own credentials; then the test users'.
apply_rbac() {
  kg::log "applying manifests/base: namespace ${KEY_NAMESPACE}, users ${WEBHOOK_USER} and ${API_USER}, keygate:{admin,edit,view}"
  local out
  out="$(kubectl_admin apply -k "${KEYGATE_ROOT}/manifests/base" 2>&1)" ||
    { printf '%s\n' "$out" >&2; kg::die "applying manifests/base failed; kube-apiserver log: $(logfile kube-apiserver)"; }
  # can_i KUBECONFIG VERB RESOURCE NS: the first word of `kubectl auth can-i` (a "no" may be
  # followed by " - <reason>": the authorization webhook, perhaps not running yet, is asked).
  can_i() {
    local a
    a="$(kubectl --kubeconfig "$1" --request-timeout=30s auth can-i "$2" "$3" -n "$4" 2>/dev/null || true)"
    echo "${a%% *}"
  }
  local w="${STATE}/keygate.kubeconfig" api="${STATE}/keygate-api.kubeconfig" v
  [[ "$(can_i "$w" watch secrets "$KEY_NAMESPACE")" == yes &&
    "$(can_i "$w" update leases.coordination.k8s.io "$KEY_NAMESPACE")" == yes &&
    "$(can_i "$w" create subjectaccessreviews.authorization.k8s.io default)" == yes ]] ||
    kg::die "user ${WEBHOOK_USER} lacks the webhook's rights of manifests/base/rbac-webhook.yaml"
  for v in create update patch delete; do
    [[ "$(can_i "$w" "$v" secrets "$KEY_NAMESPACE")" == no ]] ||
      kg::die "user ${WEBHOOK_USER} may ${v} secrets in ${KEY_NAMESPACE}: the webhook must be read-only"
  done
  [[ "$(can_i "$w" get secrets kube-system)" == no ]] ||
    kg::die "user ${WEBHOOK_USER} can read secrets outside ${KEY_NAMESPACE}"
  [[ "$(can_i "$api" create secrets "$KEY_NAMESPACE")" == yes &&
    "$(can_i "$api" bind clusterroles/edit "$APPS_NAMESPACE")" == yes &&
    "$(can_i "$api" bind clusterroles/cluster-admin "$APPS_NAMESPACE")" == no ]] ||
    kg::die "user ${API_USER} does not hold the AccessKey API's rights of manifests/base/rbac-api.yaml"
  apply_users
}

# apply_users: the test users' rights (see the header).
apply_users() {
  kg::log "applying the test users' RBAC: alice, nina, victor, kim, mallory; namespace ${APPS_NAMESPACE}"
  # yaml_of ARGS...: `kubectl create ARGS` as YAML, one document.
  yaml_of() { kubectl_admin create "$@" --dry-run=client -o yaml && echo ---; }
  local out
  if ! out="$( {
    yaml_of namespace "$APPS_NAMESPACE"
    yaml_of clusterrolebinding e2e:self-service --clusterrole keygate:self-service --group "$SELF_SERVICE_GROUP"
    yaml_of clusterrole e2e:bind-view --verb bind --resource clusterroles --resource-name view
    yaml_of clusterrolebinding e2e:alice:bind-view --clusterrole e2e:bind-view --user alice
    yaml_of rolebinding e2e:nina:admin -n "$APPS_NAMESPACE" --clusterrole admin --user nina
    yaml_of role e2e:bind-edit -n "$APPS_NAMESPACE" --verb bind --resource clusterroles --resource-name edit
    yaml_of rolebinding e2e:nina:bind-edit -n "$APPS_NAMESPACE" --role e2e:bind-edit --user nina
    yaml_of clusterrolebinding e2e:victor:view --clusterrole view --user victor
    yaml_of clusterrolebinding e2e:kim:key-admin --clusterrole keygate:key-admin --user kim
    yaml_of rolebinding e2e:mallory:edit -n "$KEY_NAMESPACE" --clusterrole edit --user mallory
  } | kubectl_admin apply -f - 2>&1)"; then
    printf '%s\n' "$out" >&2
    kg::die "applying the test users' RBAC failed"
  fi
}

# keygate_has_api: the keygate binary serves the AccessKey API (`serve --api`).
keygate_has_api() {
  "$KEYGATE_BIN_PATH" serve --help 2>/dev/null | grep -qE -- '(^|[[:space:]])--api([[:space:],=]|$)'
}

# apiservice_manifest: manifests/sidecar/api (the ExternalName Service and the APIService),
# with this cluster's keygate port and the CA of keygate's serving certificate.
apiservice_manifest() {
  local ca
  ca="$(kg::pki::b64 "${STATE}/keygate-certs/ca.crt")"
  kubectl kustomize "${KEYGATE_ROOT}/manifests/sidecar/api" |
    kubectl_admin create --dry-run=client -o json -f - |
    jq --argjson port "$API_PORT" --arg ca "$ca" '
      def local: if .kind == "Service" then .spec.ports[0].port = $port
        elif .kind == "APIService" then .spec.service.port = $port | .spec.caBundle = $ca
        else . end;
      if .kind == "List" then .items |= map(local) else local end'
}

# apiservice_ready: the APIService is Available and discovery lists accesskeys.
apiservice_ready() {
  [[ "$(kubectl_admin get apiservice "$APISERVICE" \
    -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" == True ]] &&
    kubectl_admin get --raw "/apis/keygate.dev/v1alpha1" |
    jq -e 'any(.resources[]; .name == "accesskeys")' >/dev/null
}

# apiservice_on: registers the APIService and waits until it is usable.
apiservice_on() {
  [[ "${API:-0}" == 1 ]] ||
    kg::die "keygate ${KEYGATE_BIN_PATH} has no \`serve --api\`: no AccessKey API to register"
  kg::log "registering the APIService ${APISERVICE} (Service ${API_SERVICE_NAMESPACE}/${API_SERVICE_NAME}: ExternalName localhost, port ${API_PORT}: keygate-api)"
  local out
  out="$(apiservice_manifest | kubectl_admin apply -f - 2>&1)" ||
    { printf '%s\n' "$out" >&2; kg::die "registering the APIService failed"; }
  wait_healthy keygate-api "the APIService ${APISERVICE} to be Available" apiservice_ready
}

# apiservice_off: removes the APIService (the Service stays: it routes nothing by itself).
apiservice_off() {
  kg::log "removing the APIService ${APISERVICE}"
  kubectl_admin delete apiservice "$APISERVICE" --ignore-not-found >/dev/null
}

start_controller_manager() {
  local pki="${STATE}/pki" kc="${STATE}/kube-controller-manager.kubeconfig"
  local args=(
    --kubeconfig="$kc"
    # Its secure port serves /healthz (no credentials needed); anything else is
    # authenticated and authorized by kube-apiserver, with its own identity.
    --authentication-kubeconfig="$kc"
    --authorization-kubeconfig="$kc"
    --bind-address=127.0.0.1
    --secure-port="${KCM_PORT}"
    --port=0
    --cert-dir="${STATE}/kube-controller-manager-certs"
    # Else it creates /usr/libexec/kubernetes/kubelet-plugins/volume/exec on the host.
    --flex-volume-plugin-dir="${STATE}/kube-controller-manager-flexvolume"
    # Each controller acts as its own service account (system:controller:* roles).
    --use-service-account-credentials=true
    --service-account-private-key-file="${pki}/sa.key"
    --root-ca-file="${pki}/server-ca.crt"
    --service-cluster-ip-range=10.0.0.0/24
    --leader-elect=false
    --profiling=false
    --v=1
  )
  local extra=()
  local args_extra="${CFG_KCM_EXTRA_ARGS-${KEYGATE_CONTROLLER_MANAGER_EXTRA_ARGS:-}}"
  # shellcheck disable=SC2206 # word splitting is the point
  [[ -n "$args_extra" ]] && extra=(${args_extra})
  start kube-controller-manager "$KCM_BIN" "${args[@]}" "${extra[@]}"
  wait_healthy kube-controller-manager "https://127.0.0.1:${KCM_PORT}/healthz" kcm_healthy
}

# roles_aggregated: true once the ClusterRoles view, edit and admin hold every rule of
# the ClusterRoles their aggregationRule selects (what kube-controller-manager's
# clusterrole-aggregation controller writes; edit selects view and admin selects edit,
# so this holds only once the chain has settled).
roles_aggregated() {
  kubectl_admin get clusterroles -o json | jq -e '
    def matches($ml): . as $labels
      | ($ml | length) > 0 and all($ml | to_entries[]; $labels[.key] == .value);
    .items as $all
    | all("view", "edit", "admin";
        . as $name
        | ($all | map(select(.metadata.name == $name)) | first) as $role
        | ($role.rules // []) as $have
        | [$all[] | select(.metadata.name != $name)
            | select((.metadata.labels // {}) as $l
                | any($role.aggregationRule.clusterRoleSelectors[]?;
                    . as $sel | $l | matches($sel.matchLabels // {})))
            | .rules // [] | .[]] as $want
        | ($want | length) > 0 and ($want - $have | length) == 0)' >/dev/null
}

# wait_roles_aggregated: `keygate:view` and `keygate:edit` grant nothing until
# kube-controller-manager has filled in view, edit and admin: wait for it, so that
# nothing races it.
wait_roles_aggregated() {
  wait_healthy kube-controller-manager "the aggregation of ClusterRoles view, edit, admin" roles_aggregated
}

# keygate_flags NAME: the `keygate serve` flags both processes share, into the array KG_FLAGS.
keygate_flags() {
  KG_FLAGS=()
  local kg_extra="${CFG_KEYGATE_EXTRA_ARGS-${KEYGATE_KEYGATE_EXTRA_ARGS:-}}"
  # shellcheck disable=SC2206 # word splitting is the point
  [[ -n "$kg_extra" ]] && KG_FLAGS=(${kg_extra})
  local kg_log="${CFG_KEYGATE_LOG-${KEYGATE_KEYGATE_LOG:-}}"
  [[ -n "$kg_log" ]] && KG_FLAGS+=(--log "$kg_log")
  [[ "${CFG_SEAL:-0}" != 1 ]] || KG_FLAGS+=(--record-verify-key "${STATE}/seal/seal.pub")
  local dir="${STATE}/keygate-certs"
  KG_FLAGS+=(--store kube --namespace "$KEY_NAMESPACE"
    --tls-cert "${dir}/server.crt" --tls-key "${dir}/server.key" --client-ca "${dir}/ca.crt")
}

# start_keygate: the webhook kube-apiserver calls, as the read-only user keygate-webhook.
start_keygate() {
  keygate_flags
  [[ "${CFG_AUTHZ_DENY_REVOKED:-0}" != 1 ]] || KG_FLAGS+=(--authorize-deny-revoked)
  [[ "${CFG_GUARD:-0}" != 1 ]] || KG_FLAGS+=(--record-writer "$API_USER")
  start keygate "$KEYGATE_BIN_PATH" serve "${KG_FLAGS[@]}" \
    --kubeconfig "${STATE}/keygate.kubeconfig" \
    --listen "127.0.0.1:${WEBHOOK_PORT}" \
    --admin-listen "127.0.0.1:${WEBHOOK_ADMIN_PORT}"
  wait_healthy keygate "http://127.0.0.1:${WEBHOOK_ADMIN_PORT}/readyz" keygate_ready
}

# start_keygate_api: the AccessKey API, as the user keygate-api (the only writer of records).
# Sets API=1 when the binary serves it (it may have been rebuilt since `up`: look again).
start_keygate_api() {
  API=0
  keygate_has_api || { kg::log "keygate has no \`serve --api\`: no keygate-api process"; return 0; }
  API=1
  keygate_flags
  local api_extra="${CFG_KEYGATE_API_EXTRA_ARGS-${KEYGATE_KEYGATE_API_EXTRA_ARGS:-}}"
  # shellcheck disable=SC2206 # word splitting is the point
  [[ -n "$api_extra" ]] && KG_FLAGS+=(${api_extra})
  [[ "${CFG_SEAL:-0}" != 1 ]] || KG_FLAGS+=(--record-signing-key "${STATE}/seal/seal.key")
  start keygate-api "$KEYGATE_BIN_PATH" serve "${KG_FLAGS[@]}" \
    --api \
    --requestheader-client-ca "${STATE}/pki/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --kubeconfig "${STATE}/keygate-api.kubeconfig" \
    --listen "127.0.0.1:${API_PORT}" \
    --admin-listen "127.0.0.1:${API_ADMIN_PORT}"
  wait_healthy keygate-api "http://127.0.0.1:${API_ADMIN_PORT}/readyz" keygate_api_ready
}

all_running() {
  local c
  for c in etcd kube-apiserver kube-controller-manager; do
    component_pid "$c" >/dev/null || return 1
  done
  if [[ "${NO_WEBHOOK:-0}" != 1 ]]; then
    component_pid keygate >/dev/null || return 1
    [[ "${API:-0}" != 1 ]] || component_pid keygate-api >/dev/null || return 1
  fi
}

up_exit() {
  local rc=$?
  # A signal may arrive while a probe runs with stderr sent to /dev/null: talk to
  # the stderr `up` started with (fd 7).
  exec 2>&7
  if [[ "${UP_DONE:-0}" != 1 ]]; then
    stop_all
    kg::warn "\`$0 up\` did not complete (exit ${rc}); logs are in ${STATE} (\`$0 down\` removes them)"
  fi
}

cmd_up() {
  lock_state

  local want_no_webhook="${KEYGATE_NO_WEBHOOK:-0}" want_bin="" want_stamp=""
  [[ "$want_no_webhook" == 1 ]] || want_no_webhook=0
  if [[ "$want_no_webhook" != 1 ]]; then
    want_bin="${KEYGATE_BIN:-${KEYGATE_ROOT}/target/debug/keygate}"
    [[ "$want_bin" == /* ]] || want_bin="${KEYGATE_ROOT}/${want_bin}"
    [[ -x "$want_bin" ]] ||
      kg::die "keygate binary not found at ${want_bin}: run \`cargo build\`, set KEYGATE_BIN, or set KEYGATE_NO_WEBHOOK=1 for a cluster without keygate"
    want_stamp="$(stat -L -c '%Y.%s' "$want_bin")"
  fi

  if [[ -d "$STATE" ]]; then
    # Reuse a running cluster only if it runs the same keygate build in the same mode.
    if load_config && all_running && [[ "$NO_WEBHOOK" == "$want_no_webhook" &&
      "$KEYGATE_BIN_PATH" == "$want_bin" && "$KEYGATE_BIN_STAMP" == "$want_stamp" ]]; then
      kg::log "already up (state: ${STATE})"
      echo "${STATE}/admin.kubeconfig"
      return 0
    fi
    kg::log "removing stale, partial or outdated state in ${STATE}"
    stop_all
    rm -rf "$STATE"
  fi

  NO_WEBHOOK="$want_no_webhook"
  KEYGATE_BIN_PATH="$want_bin"
  KEYGATE_BIN_STAMP="$want_stamp"
  # The environment-derived settings are saved in cluster.env, so that `restart`
  # starts each component exactly as `up` did, whatever its own environment (state
  # written before they were saved falls back to the environment).
  CFG_WEBHOOK_CACHE_TTL="${KEYGATE_WEBHOOK_CACHE_TTL:-2s}"
  CFG_APISERVER_EXTRA_ARGS="${KEYGATE_APISERVER_EXTRA_ARGS:-}"
  CFG_APISERVER_V="${KEYGATE_APISERVER_V:-1}"
  CFG_KEYGATE_EXTRA_ARGS="${KEYGATE_KEYGATE_EXTRA_ARGS:-}"
  CFG_KEYGATE_API_EXTRA_ARGS="${KEYGATE_KEYGATE_API_EXTRA_ARGS:-}"
  CFG_KEYGATE_LOG="${KEYGATE_KEYGATE_LOG:-}"
  CFG_ETCD_FSYNC="${KEYGATE_ETCD_FSYNC:-0}"
  CFG_KCM_EXTRA_ARGS="${KEYGATE_CONTROLLER_MANAGER_EXTRA_ARGS:-}"
  CFG_AUTHZ_MODE="${KEYGATE_AUTHZ_MODE:-Node,RBAC,Webhook}"
  CFG_AUTHZ_CACHE_TTL="${KEYGATE_AUTHZ_CACHE_TTL:-2s}"

  [[ "${KEYGATE_SKIP_DEPS:-0}" == 1 ]] || "${KEYGATE_ROOT}/hack/install-deps.sh"
  # Build (or find in the cache) what is not given, in one go: the components share
  # their source tree and most of their compiled packages.
  APISERVER_BIN="${KEYGATE_APISERVER_BIN:-}"
  KCM_BIN="${KEYGATE_CONTROLLER_MANAGER_BIN:-}"
  local to_build=() built=()
  [[ -n "$APISERVER_BIN" ]] || to_build+=(kube-apiserver)
  [[ -n "$KCM_BIN" ]] || to_build+=(kube-controller-manager)
  if ((${#to_build[@]} > 0)); then
    mapfile -t built < <("${KEYGATE_ROOT}/hack/build-kube-apiserver.sh" "${to_build[@]}")
    ((${#built[@]} == ${#to_build[@]})) || kg::die "hack/build-kube-apiserver.sh ${to_build[*]} failed"
    local i
    for i in "${!to_build[@]}"; do
      case "${to_build[i]}" in
        kube-apiserver) APISERVER_BIN="${built[i]}" ;;
        kube-controller-manager) KCM_BIN="${built[i]}" ;;
      esac
    done
  fi
  [[ -x "$APISERVER_BIN" ]] || kg::die "no kube-apiserver binary at '${APISERVER_BIN}'"
  [[ -x "$KCM_BIN" ]] || kg::die "no kube-controller-manager binary at '${KCM_BIN}'"

  PICKED_PORTS=""
  ETCD_PORT="$(pick_port "${KEYGATE_ETCD_PORT:-}")"
  PICKED_PORTS+=" ${ETCD_PORT}"
  ETCD_PEER_PORT="$(pick_port "${KEYGATE_ETCD_PEER_PORT:-}")"
  PICKED_PORTS+=" ${ETCD_PEER_PORT}"
  APISERVER_PORT="$(pick_port "${KEYGATE_APISERVER_PORT:-}")"
  PICKED_PORTS+=" ${APISERVER_PORT}"
  WEBHOOK_PORT="$(pick_port "${KEYGATE_WEBHOOK_PORT:-}")"
  PICKED_PORTS+=" ${WEBHOOK_PORT}"
  WEBHOOK_ADMIN_PORT="$(pick_port "${KEYGATE_WEBHOOK_ADMIN_PORT:-}")"
  PICKED_PORTS+=" ${WEBHOOK_ADMIN_PORT}"
  API_PORT="$(pick_port "${KEYGATE_API_PORT:-}")"
  PICKED_PORTS+=" ${API_PORT}"
  API_ADMIN_PORT="$(pick_port "${KEYGATE_API_ADMIN_PORT:-}")"
  PICKED_PORTS+=" ${API_ADMIN_PORT}"
  KCM_PORT="$(pick_port "${KEYGATE_CONTROLLER_MANAGER_PORT:-}")"
  STATIC_TOKEN="$(openssl rand -hex 32)"
  API=0

  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  write_config
  local t0=$SECONDS
  # Whatever stops `up` half-way (an error, Ctrl-C) stops what it started; the
  # state dir and its logs stay for inspection until `down` or the next `up`.
  UP_DONE=0
  exec 7>&2
  trap 'up_exit' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  make_pki
  [[ "$NO_WEBHOOK" == 1 ]] || make_webhook_config
  start_etcd
  start_apiserver
  apply_rbac
  start_controller_manager
  wait_roles_aggregated
  if [[ "$NO_WEBHOOK" == 1 ]]; then
    kg::log "KEYGATE_NO_WEBHOOK=1: not starting keygate; kube-apiserver has no token webhook"
  else
    start_keygate
    start_keygate_api
    write_config
    if [[ "$API" == 1 && "${KEYGATE_APISERVICE:-1}" != 0 ]]; then
      apiservice_on
    elif [[ "$API" != 1 ]]; then
      kg::log "keygate has no \`serve --api\`: no APIService registered"
    fi
  fi
  UP_DONE=1
  kg::log "cluster up in $((SECONDS - t0))s; state in ${STATE}; \`eval \"\$($0 env)\"\` for its variables"
  echo "${STATE}/admin.kubeconfig"
}

cmd_down() {
  lock_state
  if [[ ! -d "$STATE" ]]; then
    kg::log "nothing to do: ${STATE} does not exist"
    rm -f "${STATE}.lock"
    return 0
  fi
  stop_all
  rm -rf "$STATE"
  rm -f "${STATE}.lock"
  kg::log "removed ${STATE}"
}

cmd_env() {
  load_config || kg::die "no cluster state in ${STATE}; run \`$0 up\` first"
  local -a vars=(
    "KUBECONFIG=${STATE}/admin.kubeconfig"
    "KEYGATE_CLUSTER_DIR=${STATE}"
    "KEYGATE_ADMIN_KUBECONFIG=${STATE}/admin.kubeconfig"
    "KEYGATE_WEBHOOK_KUBECONFIG=${STATE}/keygate.kubeconfig"
    "KEYGATE_API_KUBECONFIG=${STATE}/keygate-api.kubeconfig"
    "KEYGATE_APISERVER_URL=https://127.0.0.1:${APISERVER_PORT}"
    "KEYGATE_APISERVER_CA=${STATE}/pki/server-ca.crt"
    "KEYGATE_APISERVER_PORT=${APISERVER_PORT}"
    "KEYGATE_ETCD_URL=http://127.0.0.1:${ETCD_PORT}"
    "KEYGATE_ETCD_PORT=${ETCD_PORT}"
    "KEYGATE_ETCD_PEER_PORT=${ETCD_PEER_PORT}"
    "KEYGATE_KEY_NAMESPACE=${KEY_NAMESPACE}"
    "KEYGATE_STATIC_TOKEN=${STATIC_TOKEN}"
    "KEYGATE_STATIC_TOKEN_USER=${STATIC_TOKEN_USER}"
    "KEYGATE_APISERVER_BIN=${APISERVER_BIN}"
    "KEYGATE_CONTROLLER_MANAGER_BIN=${KCM_BIN}"
    "KEYGATE_CONTROLLER_MANAGER_PORT=${KCM_PORT}"
    "KEYGATE_FRONT_PROXY_CA=${STATE}/pki/front-proxy-ca.crt"
    "KEYGATE_FRONT_PROXY_CLIENT_CERT=${STATE}/pki/front-proxy-client.crt"
    "KEYGATE_FRONT_PROXY_CLIENT_KEY=${STATE}/pki/front-proxy-client.key"
    "KEYGATE_FRONT_PROXY_OTHER_CERT=${STATE}/pki/front-proxy-intruder.crt"
    "KEYGATE_FRONT_PROXY_OTHER_KEY=${STATE}/pki/front-proxy-intruder.key"
    "KEYGATE_APPS_NAMESPACE=${APPS_NAMESPACE}"
  )
  local u
  for u in "${CERT_USERS[@]}" "${TOKEN_USERS[@]}"; do
    vars+=("KEYGATE_${u^^}_KUBECONFIG=${STATE}/users/${u}.kubeconfig")
  done
  if [[ "$NO_WEBHOOK" != 1 ]]; then
    vars+=(
      "KEYGATE_BIN=${KEYGATE_BIN_PATH}"
      "KEYGATE_WEBHOOK_URL=https://127.0.0.1:${WEBHOOK_PORT}/authenticate"
      "KEYGATE_WEBHOOK_ADMIN_URL=http://127.0.0.1:${WEBHOOK_ADMIN_PORT}"
      "KEYGATE_WEBHOOK_PORT=${WEBHOOK_PORT}"
      "KEYGATE_WEBHOOK_ADMIN_PORT=${WEBHOOK_ADMIN_PORT}"
      "KEYGATE_WEBHOOK_CERTS_DIR=${STATE}/keygate-certs"
      "KEYGATE_API_SERVED=${API:-0}"
      "KEYGATE_API_PORT=${API_PORT}"
      "KEYGATE_API_ADMIN_URL=http://127.0.0.1:${API_ADMIN_PORT}"
      "KEYGATE_GUARD=${CFG_GUARD:-0}"
      "KEYGATE_AUTHZ_MODE=${CFG_AUTHZ_MODE:-Node,RBAC,Webhook}"
      "KEYGATE_AUTHORIZE_URL=https://127.0.0.1:${WEBHOOK_PORT}/authorize"
      "KEYGATE_APISERVICE_NAME=${APISERVICE}"
      "KEYGATE_API_SERVICE=${API_SERVICE_NAMESPACE}/${API_SERVICE_NAME}"
    )
  fi
  local kv
  for kv in "${vars[@]}"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

cmd_status() {
  if ! load_config; then
    echo "no cluster (no state in ${STATE})"
    return 3
  fi
  local ok=0 c pid health
  for c in "${COMPONENTS[@]}"; do
    if [[ "$c" == keygate* && "$NO_WEBHOOK" == 1 ]]; then
      printf '%-23s %-9s %s\n' "$c" disabled "(KEYGATE_NO_WEBHOOK=1)"
      continue
    fi
    if [[ "$c" == keygate-api && "${API:-0}" != 1 ]]; then
      printf '%-23s %-9s %s\n' "$c" disabled "(keygate has no --api)"
      continue
    fi
    if ! pid="$(component_pid "$c")"; then
      printf '%-23s %-9s %-11s %-10s log %s\n' "$c" stopped "" "" "$(logfile "$c")"
      ok=1
      continue
    fi
    case "$c" in
      etcd) health=healthy; etcd_healthy 2>/dev/null || health=unhealthy ;;
      kube-apiserver) health=ready; apiserver_ready 2>/dev/null || health=not-ready ;;
      kube-controller-manager) health=healthy; kcm_healthy 2>/dev/null || health=unhealthy ;;
      keygate) health=ready; keygate_ready 2>/dev/null || health=not-ready ;;
      keygate-api) health=ready; keygate_api_ready 2>/dev/null || health=not-ready ;;
    esac
    [[ "$health" == healthy || "$health" == ready ]] || ok=1
    printf '%-23s %-9s pid %-7s %-10s log %s\n' "$c" running "$pid" "$health" "$(logfile "$c")"
  done
  printf 'etcd                    http://127.0.0.1:%s\n' "$ETCD_PORT"
  printf 'kube-apiserver          https://127.0.0.1:%s\n' "$APISERVER_PORT"
  printf 'kube-controller-manager https://127.0.0.1:%s/healthz\n' "$KCM_PORT"
  if [[ "$NO_WEBHOOK" != 1 ]]; then
    printf 'keygate                 https://127.0.0.1:%s/authenticate  admin http://127.0.0.1:%s\n' \
      "$WEBHOOK_PORT" "$WEBHOOK_ADMIN_PORT"
    [[ "${API:-0}" != 1 ]] ||
      printf 'keygate-api             https://127.0.0.1:%s/apis/keygate.dev  admin http://127.0.0.1:%s\n' \
        "$API_PORT" "$API_ADMIN_PORT"
    local avail=""
    if [[ "${API:-0}" != 1 ]]; then
      avail="(keygate has no --api)"
    elif component_pid kube-apiserver >/dev/null; then
      avail="$(kubectl_admin get apiservice "$APISERVICE" \
        -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null || echo absent)"
      avail="Available=${avail:-unknown}"
    fi
    printf 'apiservice              %s %s\n' "$APISERVICE" "$avail"
  fi
  echo "state: ${STATE}"
  return "$ok"
}

# --- stop / start / restart one component ----------------------------------------------

# check_component NAME: NAME is one of ours and is part of this cluster.
check_component() {
  local name="${1:-}"
  case "$name" in
    etcd | kube-apiserver | kube-controller-manager) ;;
    keygate | keygate-api)
      [[ "$NO_WEBHOOK" != 1 ]] || kg::die "this cluster runs without keygate (KEYGATE_NO_WEBHOOK=1 at \`up\`)"
      ;;
    "") kg::die "which component? one of: ${COMPONENTS[*]}" ;;
    *) kg::die "unknown component '${name}'; one of: ${COMPONENTS[*]}" ;;
  esac
}

start_exit() {
  local rc=$?
  exec 2>&7
  if [[ "${STARTED_OK:-0}" != 1 ]]; then
    stop "$STARTING"
    kg::warn "${STARTING} did not come up (exit ${rc}); its log: $(logfile "$STARTING")"
  fi
}

# start_component NAME: start NAME as `up` did and wait until it is healthy. If it
# does not come up, it is stopped again (the rest of the cluster is left alone).
start_component() {
  local name="$1"
  if component_pid "$name" >/dev/null; then
    kg::log "${name} is already running"
    return 0
  fi
  # What it needs must run, or it could never become healthy.
  case "$name" in
    kube-apiserver)
      component_pid etcd >/dev/null || kg::die "etcd is not running: \`$0 start etcd\` first"
      ;;
    kube-controller-manager)
      component_pid kube-apiserver >/dev/null ||
        kg::die "kube-apiserver is not running: \`$0 start kube-apiserver\` first"
      [[ -x "$KCM_BIN" ]] || kg::die "kube-controller-manager binary ${KCM_BIN} is gone"
      ;;
    keygate | keygate-api)
      component_pid kube-apiserver >/dev/null ||
        kg::die "kube-apiserver is not running: \`$0 start kube-apiserver\` first"
      [[ -x "$KEYGATE_BIN_PATH" ]] || kg::die "keygate binary ${KEYGATE_BIN_PATH} is gone"
      ;;
  esac
  # The wait loops die on failure: stop the half-started component, keep its log.
  STARTING="$name"
  STARTED_OK=0
  exec 7>&2
  trap 'start_exit' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local t0=$SECONDS
  case "$name" in
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver ;;
    kube-controller-manager) start_controller_manager ;;
    keygate | keygate-api)
      if [[ "$name" == keygate ]]; then start_keygate; else start_keygate_api; fi
      # A rebuilt binary is now what runs: record it, so `up` keeps reusing this cluster.
      KEYGATE_BIN_STAMP="$(stat -L -c '%Y.%s' "$KEYGATE_BIN_PATH")"
      write_config
      ;;
  esac
  STARTED_OK=1
  kg::log "${name} started in $((SECONDS - t0))s"
}

cmd_component() {
  local action="$1" name="${2:-}"
  lock_state
  load_config || kg::die "no cluster state in ${STATE}; run \`$0 up\` first"
  check_component "$name"
  case "$action" in
    stop)
      component_pid "$name" >/dev/null || kg::log "${name} is not running"
      stop "$name"
      ;;
    start) start_component "$name" ;;
    restart)
      stop "$name"
      start_component "$name"
      ;;
  esac
}

cmd_seal() {
  [[ "${1:-}" == on ]] || kg::die "seal on"
  lock_state
  load_config || kg::die "no cluster state in ${STATE}; run \`$0 up\` first"
  [[ "$NO_WEBHOOK" != 1 ]] || kg::die "this cluster runs without keygate (KEYGATE_NO_WEBHOOK=1 at \`up\`)"
  local dir="${STATE}/seal"
  mkdir -p "$dir"
  chmod 0700 "$dir"
  if [[ ! -s "${dir}/seal.key" ]]; then
    "$KEYGATE_BIN_PATH" seal-key --private-key "${dir}/seal.key" --public-key "${dir}/seal.pub" >&2 ||
      kg::die "\`keygate seal-key\` failed"
  fi
  kg::log "sealing the existing records (keygate keys seal, as the admin)"
  "$KEYGATE_BIN_PATH" keys seal --store kube --namespace "$KEY_NAMESPACE" \
    --kubeconfig "${STATE}/admin.kubeconfig" --signing-key "${dir}/seal.key" >&2 ||
    kg::die "\`keygate keys seal\` failed"
  CFG_SEAL=1
  write_config
  restart_keygates
}

# restart_keygates: both keygate processes, with what cluster.env says now.
restart_keygates() {
  stop keygate
  start_component keygate
  if [[ "${API:-0}" == 1 ]]; then
    stop keygate-api
    start_keygate_api
  fi
}

# guard_config: the record guard's ValidatingWebhookConfiguration, as `keygate webhook-config
# --admission` prints it for keygate's port.
guard_config() {
  local dir="${STATE}/keygate-certs"
  "$KEYGATE_BIN_PATH" webhook-config --admission --namespace "$KEY_NAMESPACE" \
    --server "https://127.0.0.1:${WEBHOOK_PORT}/authenticate" \
    --certificate-authority "${dir}/ca.crt"
}

cmd_guard() {
  [[ "${1:-}" == on ]] || kg::die "guard on"
  lock_state
  load_config || kg::die "no cluster state in ${STATE}; run \`$0 up\` first"
  [[ "$NO_WEBHOOK" != 1 ]] || kg::die "this cluster runs without keygate (KEYGATE_NO_WEBHOOK=1 at \`up\`)"
  [[ "${API:-0}" == 1 ]] || kg::die "the guard lets only keygate-api write records, and this keygate has no \`serve --api\`"
  CFG_GUARD=1
  write_config
  stop keygate
  start_component keygate
  # kube-apiserver 1.20 does not label namespaces with their name (1.21+ does); the
  # configuration selects the key namespace by that label.
  kubectl_admin label namespace "$KEY_NAMESPACE" "kubernetes.io/metadata.name=${KEY_NAMESPACE}" --overwrite >/dev/null ||
    kg::die "labelling namespace ${KEY_NAMESPACE} failed"
  local out
  out="$(guard_config | kubectl_admin apply -f - 2>&1)" ||
    { printf '%s\n' "$out" >&2; kg::die "registering the record guard failed"; }
  kg::log "record guard registered: only ${API_USER} may write records in ${KEY_NAMESPACE}"
}

cmd_authz_mode() {
  local usage="authz-mode MODE [--deny-revoked] [--cache-ttl D], e.g. Node,Webhook,RBAC"
  local mode="${1:-}" deny=0 ttl=""
  [[ "$mode" =~ ^[A-Za-z,]+$ ]] || kg::die "$usage"
  shift
  while (($# > 0)); do
    case "$1" in
      --deny-revoked) deny=1 ;;
      --cache-ttl)
        [[ "${2:-}" =~ ^[0-9]+(ms|s|m|h)$ ]] || kg::die "--cache-ttl takes a duration such as 0s or 5m"
        ttl="$2"
        shift
        ;;
      *) kg::die "${usage}: unknown $1" ;;
    esac
    shift
  done
  lock_state
  load_config || kg::die "no cluster state in ${STATE}; run \`$0 up\` first"
  [[ "$NO_WEBHOOK" != 1 ]] || kg::die "this cluster runs without keygate (KEYGATE_NO_WEBHOOK=1 at \`up\`)"
  CFG_AUTHZ_MODE="$mode"
  CFG_AUTHZ_DENY_REVOKED="$deny"
  [[ -z "$ttl" ]] || CFG_AUTHZ_CACHE_TTL="$ttl"
  write_config
  # Only the webhook answers /authorize: keygate-api's flags do not depend on this.
  stop keygate
  start_component keygate
  stop kube-apiserver
  start_component kube-apiserver
}

cmd_apiservice() {
  lock_state
  load_config || kg::die "no cluster state in ${STATE}; run \`$0 up\` first"
  [[ "$NO_WEBHOOK" != 1 ]] || kg::die "this cluster runs without keygate (KEYGATE_NO_WEBHOOK=1 at \`up\`)"
  component_pid kube-apiserver >/dev/null || kg::die "kube-apiserver is not running"
  case "$1" in
    on)
      component_pid keygate >/dev/null || kg::die "keygate is not running: \`$0 start keygate\` first"
      apiservice_on
      ;;
    off) apiservice_off ;;
    *) kg::die "apiservice on|off" ;;
  esac
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop | start | restart) cmd_component "$1" "${2:-}" ;;
  apiservice) cmd_apiservice "${2:-}" ;;
  authz-mode) shift; cmd_authz_mode "$@" ;;
  seal) cmd_seal "${2:-}" ;;
  guard) cmd_guard "${2:-}" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
