# shellcheck shell=bash
# shellcheck disable=SC2154 # work, secrets, root are run.sh's
# The console against the real cluster: `keygate console --store kube` with alice's own
# kubeconfig (a self-service user who may grant view), so every action of the page is a request
# to the AccessKey API through kube-apiserver, and the browser spec of the dir store
# (tests/browser/console.spec.mjs, KEYGATE_CONSOLE_TARGET=cluster) runs against it in headless
# Chromium. Each browser test is reported as one check.
#
# Sourced by tests/e2e/run.sh after tests/e2e/api.sh, while the APIService is registered; uses
# run.sh's counters and helpers (ok, not_ok, skip, check, within) and $work, $secrets, $root.
# The spec appends every secret it sees to $secrets, so run.sh's log check covers them too.

: "${KEYGATE_ALICE_KUBECONFIG:?}" "${KEYGATE_WEBHOOK_URL:?}" "${KEYGATE_WEBHOOK_CERTS_DIR:?}"
: "${KEYGATE_APISERVER_URL:?}"

echo "# --- the console (keygate console --store kube, as alice) in headless Chromium ---"

# The same installer as hack/browser-tests.sh, in a subshell: its helpers end the shell on
# failure, which must not end run.sh.
console_playwright=$(bash -c 'source "$1/hack/lib/common.sh" && source "$1/hack/lib/browser.sh" &&
  kg::browser::install && echo "$KEYGATE_PLAYWRIGHT"' _ "$root" | tail -n 1)

# console_alive PID: the process runs (a zombie waiting for `wait` does not).
console_alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ "$st" != Z* ]]; }
console_gone() { ! console_alive "$console_pid"; }

if [[ ! -f "$console_playwright/package.json" ]]; then
  not_ok "the console's browser tests: Chromium and playwright-core could not be installed"
else
  "$KEYGATE_BIN" console --store kube --kubeconfig "$KEYGATE_ALICE_KUBECONFIG" --no-open \
    --listen 127.0.0.1:0 >"$work/console.out" 2>"$work/console.log" &
  console_pid=$!
  check "keygate console --store kube starts as alice and prints a loopback URL with its secret" \
    within 30 bash -c "head -n 1 '$work/console.out' | grep -qE '^http://127\\.0\\.0\\.1:[0-9]+/\\?s=[A-Za-z0-9_-]{43}\$'"
  url=$(head -n 1 "$work/console.out")
  if [[ -n "$url" ]]; then
    KEYGATE_CONSOLE_TARGET=cluster KEYGATE_CONSOLE_URL="$url" \
      KEYGATE_CONSOLE_KUBECONFIG="$KEYGATE_ALICE_KUBECONFIG" \
      KEYGATE_PLAYWRIGHT="$console_playwright" KEYGATE_MINTED_SECRETS="$secrets" \
      KEYGATE_SCREENSHOTS="${KEYGATE_SCREENSHOTS:-${KEYGATE_CACHE:-$HOME/.cache/keygate}/screenshots}" \
      node --test --test-reporter=tap "$root/tests/browser/console.spec.mjs" >"$work/browser.tap" 2>&1
    # One check per test: node's TAP names the top-level tests "ok N - NAME" / "not ok N - NAME".
    console_tests=0 console_failed=0
    while IFS= read -r line; do
      [[ "$line" =~ ^(not\ )?ok\ [0-9]+\ -\ (.*)$ ]] || continue
      console_tests=$((console_tests + 1))
      name=${BASH_REMATCH[2]}
      if [[ -n "${BASH_REMATCH[1]}" ]]; then
        console_failed=$((console_failed + 1))
        not_ok "console on the cluster: $name"
      elif [[ "$name" == *" # SKIP"* ]]; then
        skip "console on the cluster: ${name%% # SKIP*}"
      else
        ok "console on the cluster: $name"
      fi
    done <"$work/browser.tap"
    if (( console_tests == 0 )); then
      not_ok "console on the cluster: the browser spec ran no test"
    fi
    if (( console_tests == 0 || console_failed > 0 )); then
      # $work goes away with run.sh: what failed, and why, is only here.
      sed 's/^/#   /' "$work/browser.tap" >&2
    fi
  else
    echo "# keygate console said:" >&2
    sed 's/^/#   /' "$work/console.log" >&2
  fi
  kill -TERM "$console_pid" 2>/dev/null
  check "the console stops on SIGTERM" within 10 console_gone
  wait "$console_pid" 2>/dev/null
  # No token may reach the console's own log (the cluster's logs are checked at the end).
  console_leaks=0
  while read -r s; do
    [[ -n "$s" ]] || continue
    if grep -qF -- "${s:0:8}" "$work/console.log"; then console_leaks=$((console_leaks + 1)); fi
  done <"$secrets"
  check "the console logged no secret" [ "$console_leaks" -eq 0 ]
fi
