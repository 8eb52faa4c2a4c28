#!/usr/bin/env bash
# Shared helpers for keygate's hack/ scripts. Source it; do not execute it.
# shellcheck shell=bash

# Repository root (the directory that holds hack/).
KEYGATE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export KEYGATE_ROOT

# Cache directory shared by the hack scripts (outside the clone, survives `git clean`).
KEYGATE_CACHE="${KEYGATE_CACHE:-${HOME:-/root}/.cache/keygate}"
export KEYGATE_CACHE

# All messages go to stderr so that stdout stays machine-readable.
kg::log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kg::warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kg::die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# kg::as_root CMD...: run CMD as root (directly, or through sudo when available).
kg::as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    kg::die "need root to run: $* (no sudo available)"
  fi
}

# kg::tail_log FILE [LINES]: print the end of a log file to stderr, framed.
kg::tail_log() {
  local file="$1" lines="${2:-40}"
  if [[ -s "$file" ]]; then
    printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2 || true
    printf -- '----- end of %s -----\n' "$file" >&2
  else
    printf -- '(log %s is empty or missing)\n' "$file" >&2
  fi
}

# kg::wait_for DESCRIPTION TIMEOUT_SECONDS CMD...: poll CMD until it succeeds
# or the deadline passes. Returns 1 on timeout. Polls every 0.2 s.
kg::wait_for() {
  local what="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  while ! "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      kg::warn "timed out after ${timeout}s waiting for ${what}"
      return 1
    fi
    sleep 0.2
  done
  return 0
}

# kg::pid_alive PID: true if the process exists (and is not a zombie).
kg::pid_alive() {
  local pid="$1" state
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(ps -o stat= -p "$pid" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z* ]]
}

# kg::free_port: print a TCP port on 127.0.0.1 that is free right now.
kg::free_port() {
  python3 - <<'PY' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
  # Fallback without python: pick random ports and check them with bash's /dev/tcp.
  local port i
  for i in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      echo "$port"
      return 0
    fi
    : "$i"
  done
  return 1
}

# kg::port_in_use PORT: true if something listens on 127.0.0.1:PORT.
kg::port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
