# demo-app: instrumented demo shop and loadgen (see docs/demo-app.md).
#   make test-demo-app    its tests only. Not added to TEST_TARGETS: `make test` already runs
#                         them through `cargo test --workspace` (test-unit), and twice is waste.
#   make bench-demo-app   instrumentation overhead: requests/s and p99 with and without export
BENCH_TARGETS += bench-demo-app

DEMO_APP_BIN := $(or $(CARGO_TARGET_DIR),$(ROOT)/target)/release

.PHONY: test-demo-app bench-demo-app

test-demo-app:
	$(CARGO) test -p demo-app

bench-demo-app:
	$(CARGO) build --release -p demo-app --bins --examples
	python3 $(ROOT)/demo-app/bench/overhead.py $(DEMO_APP_BIN)
