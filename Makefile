# The two commands of a fresh machine: `make run` (the main job) and `make test` (every test).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
WASM_PROBE := target/wasm32-unknown-unknown/release/cxone_agent_state_wasm_probe.wasm

.PHONY: run test setup lint doc unit wasm-check bench vectors package types wasm-test js-test www www-deps test-www cli

## Simulates 200 agents through an 8-hour shift day against the embedded simulated tenant.
run:
	$(CARGO) run --release -q -p cxone-agent-state-cli -- simulate $(ARGS)

## Installs what the tests need (idempotent), then runs formatting, lints, docs, every test and the wasm check.
test: setup lint doc unit wasm-check package types wasm-test js-test test-www
	@echo "make test: all passed"

setup:
	./scripts/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p cxone-agent-state-wasm --all-targets --all-features -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps -q

unit:
	$(CARGO) test --workspace -q

## The core builds for wasm32 with no tokio, reqwest, js-sys or web-sys in its tree, its module imports nothing,
## and a simulated day in wasm (Node) gives the same digest as natively. The host library that Rust services
## depend on has no command-line or server dependencies (those live in the CLI and sim-server crates).
wasm-check:
	@if $(CARGO) tree -p cxone-agent-state -e normal --prefix none \
	    | grep -E '^(clap|indicatif|comfy-table|csv|anyhow|tracing-subscriber|cxone-agent-state-sim-server) '; then \
	  echo "FAIL: the host library's dependency tree has CLI or server crates"; exit 1; fi
	@if $(CARGO) tree -p cxone-agent-state-core --target wasm32-unknown-unknown -e normal --prefix none \
	    | grep -E '^(tokio|reqwest|js-sys|web-sys|wasm-bindgen|getrandom) '; then \
	  echo "FAIL: the core's dependency tree has host crates"; exit 1; fi
	$(CARGO) build -q -p cxone-agent-state-wasm-probe --target wasm32-unknown-unknown --release
	native=$$($(CARGO) test -p cxone-agent-state-wasm-probe -- --nocapture 2>/dev/null | sed -n 's/^native-digest=//p'); \
	  test -n "$$native"; \
	  node scripts/wasm-check.mjs $(WASM_PROBE) 20 7 "$$native"

## The npm package `cxone-agent-state` into bindings-wasm/pkg/ (`npm pack` there makes the tarball).
package:
	./scripts/build-package.sh

## The package's TypeScript types match the Rust types: real samples of every wire type (every output, event,
## record and input kind, the report, a simulated day, the configuration) typed against the built .d.ts and
## compiled with `tsc --strict`; the samples must show every variant serde knows.
types: package
	$(CARGO) run -q -p cxone-agent-state-wasm --features sim --example wire_samples > bindings-wasm/build/wire-samples.json
	node bindings-wasm/test/types/drift.mjs bindings-wasm/build/wire-samples.json

## The JSON vectors replayed by the wasm build, in Node and in headless Chromium.
wasm-test:
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  $(CARGO) test -p cxone-agent-state-wasm --target wasm32-unknown-unknown --test node
	CHROMEDRIVER=$${CHROMEDRIVER:-/usr/bin/chromedriver} CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  $(CARGO) test -p cxone-agent-state-wasm --target wasm32-unknown-unknown --test browser

## The package's JS suite (require/import, real HTTP against sim-server, fake fetch, vectors, npm pack) and
## a TypeScript consumer compiled against the shipped .d.ts.
js-test: package cli
	node --test --test-timeout=120000 bindings-wasm/test/*.test.mjs
	bindings-wasm/node_modules/.bin/tsc -p bindings-wasm/test/types/tsconfig.json

## The pages' npm packages (the built package as a `file:` dependency, and playwright-core for the tests).
www-deps: package
	cd www && if ! npm ls --depth=0 >/dev/null 2>&1; then npm ci --no-audit --no-fund; fi

## Serves the agent console and the compliance simulation on http://127.0.0.1:8080/ (PORT=… to change), with a
## local sim-server and a token endpoint next to the pages.
www: www-deps cli
	node www/server.mjs --port $${PORT:-8080}

## The pages in headless Chromium (Debian's, through playwright-core); screenshots go to test-output/.
test-www: www-deps cli
	node --test --test-timeout=180000 www/tests/www.test.mjs

## Criterion benches: engine throughput and a 1,000-agent day, each with a same-run baseline ratio; then a
## 1,000-agent burst against sim-server over loopback, judged against the tenant's rate bound; then `serve`
## under load against direct library calls in the same run; then the npm
## package (size, wasm ÷ native throughput, simulateDay in Node) and the simulation page in Chromium.
bench: www-deps cli
	$(CARGO) bench -p cxone-agent-state-core --bench engine
	$(CARGO) bench -p cxone-agent-state-core --bench adherence
	$(CARGO) bench -p cxone-agent-state --bench loopback
	$(CARGO) bench -p cxone-agent-state-tests --bench serve_load
	node bindings-wasm/bench/bench.mjs
	node www/bench/sim-chromium.mjs

## The command-line program (the JS and page tests start its sim-server).
cli:
	$(CARGO) build -q -p cxone-agent-state-cli

## Rewrites the generated vectors after an intended change (review the diff).
vectors:
	UPDATE_VECTORS=1 $(CARGO) test -q -p cxone-agent-state-tests --test vectors
