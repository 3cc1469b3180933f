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
# wasm-bindgen-cli at exactly the version the crate pins (the CLI and the crate must match).
want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  log "installing wasm-bindgen-cli $want (found: ${have:-none})"
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# npm tooling of the package (esbuild, binaryen's wasm-opt, typescript). The pages' packages (www/) depend
# on the built package, so `make www-deps` installs them after `make package`.
for dir in bindings-wasm; do
  if [ -f "$dir/package-lock.json" ] && ! (cd "$dir" && npm ls --depth=0 >/dev/null 2>&1); then
    log "installing npm packages in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done

# Debian's Chromium and its driver, for the browser tests (wasm-bindgen-test and Playwright).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver from Debian"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
log "ready: $(rustc --version), node $(node --version), $(wasm-bindgen --version), $(chromium --version 2>/dev/null | head -1)"
