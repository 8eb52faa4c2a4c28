#!/usr/bin/env bash
# Install what keygate's end-to-end tests need, from Debian's archive only.
#
#   hack/install-deps.sh
#
# Idempotent and fast when everything is already there: it runs `apt-get update`
# only when a package is missing or the deb-src index has never been fetched.
#
# Installs: etcd-server (/usr/bin/etcd), golang-go, rsync, dpkg-dev, openssl, curl,
# jq, and kubernetes-client only when no kubectl is on PATH. It also adds a
# `deb-src` entry for <codename> main (same mirror as the configured `deb` entry),
# which hack/build-kube-apiserver.sh needs for `apt-get source kubernetes`.
#
# Environment:
#   KEYGATE_SKIP_DEB_SRC=1   do not configure or fetch the deb-src index.
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

export DEBIAN_FRONTEND=noninteractive

codename() {
  local c=""
  if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    c="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  fi
  echo "${c:-bookworm}"
}

# --- which packages are missing ---------------------------------------------
CODENAME="$(codename)"
wanted=(etcd-server golang-go rsync dpkg-dev openssl curl jq)
if ! command -v kubectl >/dev/null 2>&1; then
  wanted+=(kubernetes-client)
fi
missing=()
while read -r p status; do
  [[ "$status" == installed ]] || missing+=("$p")
done < <(
  for p in "${wanted[@]}"; do
    printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || echo absent)"
  done
)

# --- deb-src ------------------------------------------------------------------
# The mirror URI of the configured `deb` entry for "$CODENAME" (deb822 .sources or
# one-line .list), so that the deb-src entry uses the same mirror.
mirror_uri() {
  local f uri=""
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 stanzas: keep the URIs of a stanza whose Types has "deb" and whose Suites
    # has exactly "$CODENAME".
    uri="$(awk -v suite="$CODENAME" '
      function flush() { if (isdeb && hassuite && uris != "" && out == "") out = uris
                         isdeb = 0; hassuite = 0; uris = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:"  { for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hassuite = 1 }
      tolower($1) == "uris:"   { uris = $2 }
      END { flush(); print out }' "$f")"
    [[ -n "$uri" ]] && break
  done
  if [[ -z "$uri" ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r "$f" ]] || continue
      # deb [options] URI SUITE COMPONENTS...
      uri="$(awk -v suite="$CODENAME" '
        $1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                      if ($(i + 1) == suite) { print $i; exit } }' "$f")"
      [[ -n "$uri" ]] && break
    done
  fi
  shopt -u nullglob
  echo "${uri:-http://deb.debian.org/debian}"
}

# Is a deb-src entry for "$CODENAME" main configured (in any file)?
deb_src_configured() {
  # shellcheck disable=SC2016 # apt's own $(FIELD) syntax, not the shell's
  apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(COMPONENT) $(IDENTIFIER)' 2>/dev/null |
    grep -qx "deb-src ${CODENAME} main Sources"
}

# Has its index been downloaded?
deb_src_fetched() {
  compgen -G "/var/lib/apt/lists/*_dists_${CODENAME}_main_source_Sources*" >/dev/null
}

need_update=0
if ((${#missing[@]} > 0)); then
  need_update=1
fi

# A fetched Sources index means the entry is configured (apt drops the lists of
# entries that are gone), so the slower `apt-get indextargets` is only asked otherwise.
if [[ "${KEYGATE_SKIP_DEB_SRC:-0}" != 1 ]] && ! deb_src_fetched; then
  if ! deb_src_configured; then
    uri="$(mirror_uri)"
    file=/etc/apt/sources.list.d/keygate-deb-src.sources
    kg::log "adding deb-src for ${CODENAME} main (${uri}) in ${file}"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    {
      echo "# Added by keygate hack/install-deps.sh for 'apt-get source kubernetes'."
      echo "Types: deb-src"
      echo "URIs: ${uri}"
      echo "Suites: ${CODENAME}"
      echo "Components: main"
      if [[ -r "$keyring" ]]; then
        echo "Signed-By: ${keyring}"
      fi
    } | kg::as_root tee "$file" >/dev/null
  fi
  need_update=1
fi

LOG="${KEYGATE_CACHE}/install-deps.log"
mkdir -p "$KEYGATE_CACHE"
if ((need_update)); then
  kg::log "apt-get update (log: ${LOG})"
  if ! kg::as_root apt-get update >"$LOG" 2>&1; then
    kg::tail_log "$LOG"
    kg::die "apt-get update failed; see ${LOG}"
  fi
fi

if ((${#missing[@]} > 0)); then
  kg::log "installing: ${missing[*]}"
  # Keep the etcd package from starting its own daemon (we run our own on loopback):
  # policy-rc.d exit 101 forbids service starts during this install only.
  prc=/usr/sbin/policy-rc.d
  created_prc=0
  if [[ ! -e "$prc" ]]; then
    printf '#!/bin/sh\nexit 101\n' | kg::as_root tee "$prc" >/dev/null
    kg::as_root chmod 0755 "$prc"
    created_prc=1
  fi
  rc=0
  kg::as_root apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 || rc=$?
  if ((created_prc)); then
    kg::as_root rm -f "$prc"
  fi
  if ((rc != 0)); then
    kg::tail_log "$LOG"
    kg::die "apt-get install ${missing[*]} failed (exit ${rc}); see ${LOG}"
  fi
fi

# --- sanity -------------------------------------------------------------------
for f in /usr/bin/etcd /usr/lib/go/bin/go /usr/bin/rsync /usr/bin/dpkg-source; do
  [[ -x "$f" ]] || kg::die "expected ${f} after installing dependencies"
done
for c in openssl curl jq kubectl; do
  command -v "$c" >/dev/null 2>&1 || kg::die "expected ${c} on PATH after installing dependencies"
done
kg::log "dependencies OK"
