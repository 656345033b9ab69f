# otel-collector targets (included by the root Makefile).
#   make test-collector   validates the shipped sample config with the built binary and starts it
#                         briefly on free ports (the unit and integration tests, tests/core_*.rs
#                         and friends, run in `cargo test --workspace`).
#   make collector-up     starts the collector with the sample config in the background
#                         (pid and log under .run/); make collector-down stops it.

TEST_TARGETS += test-collector
COLLECTOR_BIN ?= $(ROOT)/target/release/otel-collector
COLLECTOR_CONFIG ?= $(ROOT)/otel-collector/config/otel-collector.yaml
COLLECTOR_RUN := $(ROOT)/.run/collector
.PHONY: test-collector collector-up collector-down

test-collector: build
	$(CARGO) build -p otel-collector --bin otel-collector
	bash $(ROOT)/otel-collector/scripts/check-sample-config.sh "$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/otel-collector" "$(COLLECTOR_CONFIG)"
	@# The overlay `make up` adds when no Tempo runs must merge cleanly with the sample config.
	$(CARGO) run -q -p otel-collector --bin otel-collector -- validate --config $(COLLECTOR_CONFIG) --config $(ROOT)/otel-collector/config/no-tempo.yaml

collector-up:
	@[ -x "$(COLLECTOR_BIN)" ] || $(CARGO) build --release -p otel-collector --bin otel-collector
	@mkdir -p $(COLLECTOR_RUN)
	@if [ -f $(COLLECTOR_RUN)/otel-collector.pid ] && kill -0 $$(cat $(COLLECTOR_RUN)/otel-collector.pid) 2>/dev/null; then \
	  echo "otel-collector already running (pid $$(cat $(COLLECTOR_RUN)/otel-collector.pid))"; \
	else \
	  "$(COLLECTOR_BIN)" validate --config "$(COLLECTOR_CONFIG)" && \
	  TRACES_FILE=$${TRACES_FILE:-$(COLLECTOR_RUN)/traces.jsonl} nohup "$(COLLECTOR_BIN)" --config "$(COLLECTOR_CONFIG)" \
	    >>$(COLLECTOR_RUN)/otel-collector.log 2>&1 & echo $$! > $(COLLECTOR_RUN)/otel-collector.pid; \
	  echo "otel-collector started (pid $$(cat $(COLLECTOR_RUN)/otel-collector.pid), log $(COLLECTOR_RUN)/otel-collector.log)"; \
	fi

collector-down:
	@if [ -f $(COLLECTOR_RUN)/otel-collector.pid ]; then \
	  kill -TERM $$(cat $(COLLECTOR_RUN)/otel-collector.pid) 2>/dev/null || true; rm -f $(COLLECTOR_RUN)/otel-collector.pid; \
	  echo "otel-collector stopped"; \
	fi

# Prometheus exporters' benchmarks (docs/prometheus-translation.md): remote-write throughput on
# one core, and a 100k-series scrape next to a node_exporter scrape.
BENCH_TARGETS += bench-prom-remote-write bench-prom-scrape
.PHONY: bench-prom-remote-write bench-prom-scrape
bench-prom-remote-write: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/prom_remote_write.sh
bench-prom-scrape: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/prom_scrape.sh

# Collector throughput next to rotel (shared yardstick ../shared/bench/otlp/compare.sh) and the
# steady-load footprint (10,000 spans/s: CPU share and RSS); scripts in otel-collector/bench/.
BENCH_TARGETS += bench-collector bench-collector-steady
.PHONY: bench-collector bench-collector-steady
bench-collector: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/compare.sh
bench-collector-steady: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/steady.sh

# Persistent sending queue (file_storage, fsync off and on) next to the memory queue, each mode in
# its own compare.sh run with rotel (docs/durability.md, "Performance"); about 8 minutes.
BENCH_TARGETS += bench-persistent-queue
.PHONY: bench-persistent-queue
bench-persistent-queue: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/persistent.sh

# Fuzzing (docs/collector.md, "Fuzzing"): each cargo-fuzz target of otel-collector/fuzz/ runs
# FUZZ_SECONDS on its corpus; crashes land in otel-collector/testdata/fuzz/<target>/, which
# `make test` replays on stable (tests/fuzz_replay.rs). Needs nightly (installed if missing; falls
# back to the stable compiler with RUSTC_BOOTSTRAP) and cargo-fuzz (installed if missing).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= otlp_proto otlp_json prometheus_translate config wal_segment
.PHONY: fuzz fuzz-deps
fuzz-deps:
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal || \
	  echo "no nightly toolchain could be installed: fuzzing with the stable compiler (RUSTC_BOOTSTRAP=1)"
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
fuzz: fuzz-deps
	bash $(ROOT)/otel-collector/scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# tail_sampling throughput beside the plain pipeline, and memory per in-flight trace
# (docs/sampling.md, "Performance"); bounded under 2 minutes after the build.
BENCH_TARGETS += bench-tail-sampling
.PHONY: bench-tail-sampling
bench-tail-sampling: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/tail_sampling.sh

# Trace -> metrics connectors (docs/collector-connectors.md): spans/s through spanmetrics +
# servicegraph next to the plain traces pipeline in the same run, on one core (< 1 minute).
BENCH_TARGETS += bench-connectors
.PHONY: bench-connectors
bench-connectors: deps
	CARGO=$(CARGO) bash $(ROOT)/otel-collector/bench/connectors.sh
