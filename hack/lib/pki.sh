#!/usr/bin/env bash
# openssl helpers for the local test cluster's PKI. Source it; do not execute it.
# shellcheck shell=bash
#
# Keys are ECDSA P-256 (fast to make, accepted by Go's TLS and by rustls/webpki);
# certificates are X.509 v3 with the extensions strict verifiers (webpki) insist on:
# basicConstraints, keyUsage, extendedKeyUsage, SAN, SKI/AKI.

# kg::pki::key FILE: an EC P-256 private key (PKCS#8 PEM), mode 0600.
kg::pki::key() {
  local file="$1"
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$file" 2>/dev/null)
}

# kg::pki::rsa_key FILE [BITS]: an RSA private key (PKCS#8 PEM), mode 0600.
kg::pki::rsa_key() {
  local file="$1" bits="${2:-2048}"
  (umask 077 && openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${bits}" -out "$file" 2>/dev/null)
}

_kg_pki_serial() { echo "0x$(openssl rand -hex 16)"; }

# kg::pki::ca DIR NAME CN: DIR/NAME.key and a self-signed CA DIR/NAME.crt.
kg::pki::ca() {
  local dir="$1" name="$2" cn="$3"
  kg::pki::key "${dir}/${name}.key"
  openssl req -x509 -new -key "${dir}/${name}.key" -sha256 -days 3650 \
    -subj "/CN=${cn}" -set_serial "$(_kg_pki_serial)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -addext "subjectKeyIdentifier=hash" \
    -out "${dir}/${name}.crt" 2>/dev/null
}

# kg::pki::leaf CA_PREFIX OUT_PREFIX SUBJECT EKU [SAN]: OUT_PREFIX.key and
# OUT_PREFIX.crt signed by CA_PREFIX.{crt,key}. EKU is serverAuth, clientAuth or
# both comma-separated; SAN like "IP:127.0.0.1,DNS:localhost" (optional).
kg::pki::leaf() {
  local ca="$1" out="$2" subj="$3" eku="$4" san="${5:-}"
  local ext
  ext="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=${eku}"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    if [[ -n "$san" ]]; then echo "subjectAltName=${san}"; fi
  } >"$ext"
  kg::pki::key "${out}.key"
  local rc=0
  openssl req -new -key "${out}.key" -subj "$subj" 2>/dev/null |
    openssl x509 -req -CA "${ca}.crt" -CAkey "${ca}.key" -set_serial "$(_kg_pki_serial)" \
      -sha256 -days 365 -extfile "$ext" -out "${out}.crt" 2>/dev/null || rc=$?
  rm -f "$ext"
  return "$rc"
}

# kg::pki::b64 FILE: base64 of FILE on one line (for kubeconfig *-data fields).
kg::pki::b64() { base64 -w0 <"$1"; }

# kg::pki::kubeconfig OUT SERVER CA_CRT CLIENT_CRT CLIENT_KEY USER: a kubeconfig
# with embedded credentials, mode 0600.
kg::pki::kubeconfig() {
  local crt key
  crt="$(kg::pki::b64 "$4")" key="$(kg::pki::b64 "$5")"
  _kg_pki_kubeconfig "$1" "$2" "$3" "$6" "client-certificate-data: ${crt}
    client-key-data: ${key}"
}

# kg::pki::token_kubeconfig OUT SERVER CA_CRT TOKEN USER: the same with a bearer token.
kg::pki::token_kubeconfig() {
  _kg_pki_kubeconfig "$1" "$2" "$3" "$5" "token: $4"
}

# _kg_pki_kubeconfig OUT SERVER CA_CRT USER CREDENTIALS: CREDENTIALS are the lines of the
# user's `user:` map, indented by 4 after the first.
_kg_pki_kubeconfig() {
  local out="$1" server="$2" ca="$3" user="$4" creds="$5"
  (
    umask 077
    cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: keygate-local
  cluster:
    server: ${server}
    certificate-authority-data: $(kg::pki::b64 "$ca")
users:
- name: ${user}
  user:
    ${creds}
contexts:
- name: ${user}@keygate-local
  context:
    cluster: keygate-local
    user: ${user}
current-context: ${user}@keygate-local
preferences: {}
EOF
  )
}
