# node-agent targets (included by the root Makefile).
#   make bench-node-agent   CPU seconds and peak RSS of node-agent (1 s interval, top-N on,
#                           exporting to a local OTLP sink) next to node_exporter scraped
#                           every 1 s, 120 s each in the same run; BENCH_SECONDS overrides.
# The agent's tests (unit + integration against node_exporter and an OTLP server) run in
# `cargo test --workspace` (make test-unit), so there is no separate test-node-agent.

BENCH_TARGETS += bench-node-agent
.PHONY: bench-node-agent

bench-node-agent: deps
	$(CARGO) build --release -p node-agent --bins --examples
	bash $(ROOT)/node-agent/bench/overhead.sh
