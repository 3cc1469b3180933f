# The two commands of a fresh machine: `make run` (the main job) and `make test` (every test).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
WASM_PROBE := target/wasm32-unknown-unknown/release/cxone_agent_state_wasm_probe.wasm

.PHONY: run test setup lint doc unit wasm-check bench vectors

## Simulates 200 agents through an 8-hour shift day against the embedded simulated tenant.
run:
	$(CARGO) run --release -q -p cxone-agent-state -- simulate $(ARGS)

## Installs what the tests need (idempotent), then runs formatting, lints, docs, every test and the wasm check.
test: setup lint doc unit wasm-check
	@echo "make test: all passed"

setup:
	./scripts/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps -q

unit:
	$(CARGO) test --workspace -q

## The core builds for wasm32 with no tokio, reqwest, js-sys or web-sys in its tree, its module imports nothing,
## and a simulated day in wasm (Node) gives the same digest as natively.
wasm-check:
	@if $(CARGO) tree -p cxone-agent-state-core --target wasm32-unknown-unknown -e normal --prefix none \
	    | grep -E '^(tokio|reqwest|js-sys|web-sys|wasm-bindgen|getrandom) '; then \
	  echo "FAIL: the core's dependency tree has host crates"; exit 1; fi
	$(CARGO) build -q -p cxone-agent-state-wasm-probe --target wasm32-unknown-unknown --release
	native=$$($(CARGO) test -q -p cxone-agent-state-wasm-probe -- --nocapture 2>/dev/null | sed -n 's/^native-digest=//p'); \
	  test -n "$$native"; \
	  node scripts/wasm-check.mjs $(WASM_PROBE) 20 7 "$$native"

## Criterion benches: engine throughput and a 1,000-agent day, each with a same-run baseline ratio; then a
## 1,000-agent burst against sim-server over loopback, judged against the tenant's rate bound.
bench:
	$(CARGO) bench -p cxone-agent-state-core --bench engine
	$(CARGO) bench -p cxone-agent-state --bench loopback

## Rewrites the generated vectors after an intended change (review the diff).
vectors:
	UPDATE_VECTORS=1 $(CARGO) test -q -p cxone-agent-state-tests --test vectors
