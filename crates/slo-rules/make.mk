# slo-rules: the SLO rule generator and the rules it generates (included by the root Makefile).
#
#   make slo-rules        regenerate prometheus/rules/slos.yml from prometheus/slos.yaml
#   make test-slo-rules   the checked-in rules are what the spec generates (else: run make slo-rules),
#                         promtool accepts them without lint findings, and the Sloth conformance
#                         cases of ../shared/conformance/sloth match (compare.py; skipped with a loud
#                         message when ../shared is absent — `cargo test -p slo-rules` still compares
#                         the copies in crates/slo-rules/testdata/sloth exactly)
# The promtool unit tests of the rules (prometheus/tests/slo_*.yml) run in test-config.

TEST_TARGETS += test-slo-rules

SLO_SPEC := prometheus/slos.yaml
SLO_RULES := prometheus/rules/slos.yml
SLO_CONFORMANCE := $(ROOT)/../shared/conformance/sloth
SLO_BIN = $${CARGO_TARGET_DIR:-$(ROOT)/target}/debug/slo-rules

.PHONY: slo-rules test-slo-rules

slo-rules:
	$(CARGO) build -q -p slo-rules --bin slo-rules
	$(SLO_BIN) generate --input $(SLO_SPEC) --out $(SLO_RULES)

test-slo-rules: deps
	$(CARGO) build -q -p slo-rules --bin slo-rules
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(SLO_BIN) generate --input $(SLO_SPEC) --out "$$tmp/slos.yml"; \
	diff -u $(SLO_RULES) "$$tmp/slos.yml" >/dev/null || { diff -u $(SLO_RULES) "$$tmp/slos.yml" | head -40; \
	  echo "$(SLO_RULES) is stale: run make slo-rules and commit it"; exit 1; }; \
	echo "$(SLO_RULES) is what $(SLO_SPEC) generates"
	promtool check rules --lint-fatal $(SLO_RULES)
	@set -eo pipefail; if [ ! -f $(SLO_CONFORMANCE)/compare.py ]; then \
	  echo "!!! SKIPPED Sloth conformance: $(SLO_CONFORMANCE) not found (cargo test -p slo-rules compared the testdata copies)"; \
	  exit 0; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; n=0; \
	for case in $(SLO_CONFORMANCE)/*/; do \
	  [ -f "$$case/expected.yaml" ] || continue; name=$$(basename "$$case"); n=$$((n + 1)); \
	  $(SLO_BIN) generate --input "$$case/slo.yaml" --out "$$tmp/$$name.yml" $$(cat "$$case/ARGS" 2>/dev/null); \
	  printf '%-22s ' "$$name"; $(PY) $(SLO_CONFORMANCE)/compare.py "$$tmp/$$name.yml" "$$case" | tail -1; \
	done; \
	[ "$$n" -gt 0 ] || { echo "no conformance case found in $(SLO_CONFORMANCE)"; exit 1; }
