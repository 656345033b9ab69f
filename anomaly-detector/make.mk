# anomaly-detector: model and backtest targets (the service's targets live beside these).
#
#   make bench-detector-nab     backtest over ../shared/nab-public and score it next to the
#                               statsmodels Holt-Winters baseline run in the same target
#   make bench-detector-nab-cv  nested cross-validation of the configuration selection
#                               (bench/nab_cv.py, candidates bench/nab_grid_defaults.json, everything
#                               tuned on training folds only): outer mean, sd, worst fold and
#                               the public score side by side, for the onset scores and then for
#                               the live alert rule as paged (--score alert --as-paged: every
#                               alert counts); NAB_CV_ARGS="--compare G.json" applies the frozen
#                               decision rule to a second candidate list (onset scores)
#   make bench-detector-synth   the seeded synthetic suite (bench/synth_suite.py: spikes, level
#                               shifts, variance/trend/season changes, flat-lines, dropouts,
#                               counter resets, ...) backtested and scored per anomaly kind
#   make bench-detector-demo    the committed recording of the demo stack's own metrics with
#                               injected incidents (testdata/demo, bench/demo_record.py)
#                               backtested and scored per detection and incident kind;
#                               DEMO_RECORD=1 re-records it first (about 21 minutes, loopback)
#   make bench-detector-speed   one core: fit+score a 10,000-point series and a cycle over
#                               10,000 series of 1,000 points, vs statsmodels on the same series
#   make test-detector-model    regenerate the statsmodels parity fixture and compare it with the
#                               committed one (the Rust side runs in `cargo test`)

BENCH_TARGETS += bench-detector-nab bench-detector-nab-cv bench-detector-synth bench-detector-demo bench-detector-speed
TEST_TARGETS += test-detector-model

DETECTOR_NAB := $(ROOT)/../shared/nab-public
DETECTOR_TARGET = $${CARGO_TARGET_DIR:-$(ROOT)/target}

DETECTOR_DEMO := anomaly-detector/testdata/demo

.PHONY: bench-detector-nab bench-detector-nab-cv bench-detector-synth bench-detector-demo bench-detector-speed test-detector-model

bench-detector-nab: deps
	@test -f $(DETECTOR_NAB)/score.py || { echo "NAB data not found: expected ../shared/nab-public next to the repo"; exit 1; }
	$(CARGO) build --release -p anomaly-detector --bin anomaly-detector
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(DETECTOR_TARGET)/release/anomaly-detector backtest --input $(DETECTOR_NAB)/data --output "$$tmp/ours"; \
	$(PY) $(DETECTOR_NAB)/score.py --results "$$tmp/ours" --files public --per-file > "$$tmp/ours.txt"; \
	echo "--- baseline_hw.py (statsmodels Holt-Winters), same files, same run ---"; \
	$(PY) $(DETECTOR_NAB)/baseline_hw.py --out "$$tmp/hw" --files public | tail -1; \
	$(PY) $(DETECTOR_NAB)/score.py --results "$$tmp/hw" --files public > "$$tmp/hw.txt"; \
	cat "$$tmp/ours.txt"; \
	ours=$$(tail -1 "$$tmp/ours.txt"); hw=$$(tail -1 "$$tmp/hw.txt"); \
	echo "NAB standard profile, public split (threshold optimised by score.py):"; \
	printf '  anomaly-detector      %s\n  baseline_hw.py        %s   (README documents 46.2)\n' "$$ours" "$$hw"; \
	awk -v a="$$ours" -v b="$$hw" 'BEGIN { printf "  difference            %+.1f points (target: >= 60 absolute)\n", a - b }'

bench-detector-nab-cv: deps
	@test -f $(DETECTOR_NAB)/score.py || { echo "NAB data not found: expected ../shared/nab-public next to the repo"; exit 1; }
	$(CARGO) build --release -p anomaly-detector --bin anomaly-detector
	nice $(PY) anomaly-detector/bench/nab_cv.py --bin $(DETECTOR_TARGET)/release/anomaly-detector \
		--nab $(DETECTOR_NAB) --jobs 2 $(NAB_CV_ARGS)
	@echo "--- the live alert rule, every alert the service would send counted ---"
	nice $(PY) anomaly-detector/bench/nab_cv.py --bin $(DETECTOR_TARGET)/release/anomaly-detector \
		--nab $(DETECTOR_NAB) --jobs 2 --score alert --as-paged

bench-detector-synth: deps
	@test -f $(DETECTOR_NAB)/score.py || { echo "NAB scorer not found: expected ../shared/nab-public next to the repo"; exit 1; }
	$(CARGO) build --release -p anomaly-detector --bin anomaly-detector
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) anomaly-detector/bench/synth_suite.py generate --out "$$tmp/suite" $(SYNTH_ARGS); \
	$(DETECTOR_TARGET)/release/anomaly-detector backtest --input "$$tmp/suite/data" --output "$$tmp/ours" $(SYNTH_BACKTEST_ARGS); \
	$(PY) anomaly-detector/bench/synth_suite.py report --nab $(DETECTOR_NAB) --data "$$tmp/suite" --results "$$tmp/ours"

bench-detector-demo: deps
	@test -f $(DETECTOR_NAB)/score.py || { echo "NAB scorer not found: expected ../shared/nab-public next to the repo"; exit 1; }
	@if [ -n "$(DEMO_RECORD)" ]; then \
		$(CARGO) build --release -p demo-app -p otel-collector -p node-agent -p anomaly-detector --bins && \
		STACK_BIN=$(DETECTOR_TARGET)/release $(PY) anomaly-detector/bench/demo_record.py record --out $(DETECTOR_DEMO) $(DEMO_RECORD_ARGS); \
	fi
	$(CARGO) build --release -p anomaly-detector --bin anomaly-detector
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(DETECTOR_TARGET)/release/anomaly-detector backtest --input $(DETECTOR_DEMO)/data --output "$$tmp/ours" $(DEMO_BACKTEST_ARGS); \
	$(PY) anomaly-detector/bench/demo_record.py report --nab $(DETECTOR_NAB) --data $(DETECTOR_DEMO) --results "$$tmp/ours"

bench-detector-speed: deps
	$(CARGO) bench -p anomaly-detector --bench speed --no-run
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	taskset -c 0 $(CARGO) bench -q -p anomaly-detector --bench speed -- --dump "$$tmp" > "$$tmp/rust.json"; \
	taskset -c 0 $(PY) anomaly-detector/bench/speed_statsmodels.py --dir "$$tmp" --rust "$$tmp/rust.json"

test-detector-model: deps
	$(PY) anomaly-detector/bench/statsmodels_parity.py --check

# Live-service cycle cost for 10,000 series (decode, feed, snapshot, /metrics render).
BENCH_TARGETS += bench-detector-cycle
.PHONY: bench-detector-cycle
bench-detector-cycle: deps
	taskset -c 0 $(CARGO) bench -q -p anomaly-detector --bench service_cycle

# Insights API and live view, from outside the process (needs `make build` first, which `make
# test` runs): the OpenAPI document validated, a bounded schemathesis run against the live API
# (no 5xx, every answer matching its schema), auth and rate limit over TCP, and the live page in
# headless Debian chromium driven by Playwright (screenshot in target/test-artifacts/).
TEST_TARGETS += test-detector-api
.PHONY: test-detector-api
test-detector-api: deps
	$(CARGO) build -p anomaly-detector -p otel-collector -p node-agent --bins
	$(VENV)/bin/pytest -q -p no:cacheprovider anomaly-detector/tests/py

# Insights API overhead: p50/p99 of summary and breakdown over 24 h for 10 services at 15 s
# against the same PromQL sent straight to Prometheus, and the anomaly store's memory with
# 100,000 episodes.
BENCH_TARGETS += bench-detector-api
.PHONY: bench-detector-api
bench-detector-api: deps
	nice -n 10 $(CARGO) bench -q -p anomaly-detector --bench insights_api
