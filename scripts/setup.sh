#!/usr/bin/env bash
# Installs what `make test` needs, idempotently: each step checks first and does nothing when already done.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# Rust components and the wasm32 target (the core must build for it with no host imports).
if ! rustup component list --installed 2>/dev/null | grep -q '^rustfmt'; then
  log "adding rustfmt"; rustup component add rustfmt
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then
  log "adding clippy"; rustup component add clippy
fi
if ! rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
  log "adding the wasm32-unknown-unknown target"; rustup target add wasm32-unknown-unknown
fi

# Node.js runs the wasm module check (and, later, the npm package's tests).
if ! command -v node >/dev/null; then
  log "installing Node.js from Debian"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
log "ready: $(rustc --version), node $(node --version)"
