#!/usr/bin/env bash
# Builds the npm package `cxone-agent-state` into bindings-wasm/pkg/ (run through `make package`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bindings-wasm/node_modules/.bin
build=bindings-wasm/build
pkg=bindings-wasm/pkg

rm -rf "$build" "$pkg"
mkdir -p "$build" "$pkg"
# Two modules from one crate: the console module (the engine), built for size, and the simulation
# module, built for speed (whole simulated days run in it).
module() { # features profile wasm-opt-level glue-name wasm-name
  cargo build -q -p cxone-agent-state-wasm --target wasm32-unknown-unknown --profile "$2" \
    --no-default-features --features "$1"
  wasm-bindgen --target web --out-dir "$build" --out-name "$4" \
    "target/wasm32-unknown-unknown/$2/cxone_agent_state_wasm.wasm"
  # The features match what rustc emits for wasm32 by default.
  "$bin/wasm-opt" "$3" --strip-debug --strip-producers \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-multivalue --enable-reference-types \
    "$build/$4_bg.wasm" -o "$pkg/$5"
}
module console wasm-release -Oz glue cxone_agent_state_bg.wasm
module sim wasm-sim -O3 sim_glue cxone_agent_state_sim_bg.wasm
cp bindings-wasm/js/*.js bindings-wasm/js/*.mjs "$build/"
common=(--bundle --minify --legal-comments=none --log-level=error)
"$bin/esbuild" "$build/browser.js" "${common[@]}" --format=esm --platform=neutral --outfile="$pkg/index.js"
"$bin/esbuild" "$build/node.mjs" "${common[@]}" --format=esm --platform=node --outfile="$pkg/node.mjs"
# The CommonJS bundle never takes the glue's `import.meta.url` default path (Node reads the file itself).
"$bin/esbuild" "$build/node-cjs.js" "${common[@]}" --format=cjs --platform=node \
  --define:import.meta.url=undefined --outfile="$pkg/node.cjs"
# `[Symbol.dispose]` needs TypeScript's esnext lib; drop it so consumers on ES2022 libs compile cleanly.
sed '/\[Symbol.dispose\]/d' "$build/glue.d.ts" > "$pkg/wasm.d.ts"
sed '/\[Symbol.dispose\]/d' "$build/sim_glue.d.ts" > "$pkg/sim.d.ts"
cp bindings-wasm/js/index.d.ts "$pkg/index.d.ts"
cp bindings-wasm/js/README.md "$pkg/README.md"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > "$pkg/package.json" <<JSON
{
  "name": "cxone-agent-state",
  "version": "$version",
  "description": "Change NICE CXone agent states with shift and break compliance enforced, retries under rate limits, and a hash-chained audit trail — a Rust core in WebAssembly.",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./node.cjs",
  "module": "./index.js",
  "browser": "./index.js",
  "types": "./index.d.ts",
  "exports": {
    ".": {
      "types": "./index.d.ts",
      "node": {
        "import": "./node.mjs",
        "require": "./node.cjs"
      },
      "browser": "./index.js",
      "default": "./index.js"
    },
    "./cxone_agent_state_bg.wasm": "./cxone_agent_state_bg.wasm",
    "./cxone_agent_state_sim_bg.wasm": "./cxone_agent_state_sim_bg.wasm",
    "./package.json": "./package.json"
  },
  "files": [
    "index.js",
    "node.mjs",
    "node.cjs",
    "index.d.ts",
    "wasm.d.ts",
    "sim.d.ts",
    "cxone_agent_state_bg.wasm",
    "cxone_agent_state_sim_bg.wasm",
    "README.md"
  ],
  "engines": {
    "node": ">=18"
  },
  "keywords": ["nice", "cxone", "contact-center", "agent-state", "workforce-management", "webassembly"],
  "sideEffects": true
}
JSON
echo "built $pkg: $(cd "$pkg" && ls | tr '\n' ' ')"
