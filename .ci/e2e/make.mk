# End-to-end test of the whole stack and the offline check of docker-compose.yml (issue #16).
#
#   make test-e2e       .ci/e2e/e2e.py: the real stack (.ci/stack.sh up, the code path of
#                       `make up`) on free ports with compressed time, every assertion of the
#                       issue, a timeline at the end; under 10 minutes; stops the stack on failure
#   make test-compose   .ci/e2e/test_compose.py: `docker compose config` (schema), mounts,
#                       ports and environment variables against the configs; no Docker needed
#
# The e2e test runs the debug binaries that `make build` (a prerequisite of `make test`) made.

TEST_TARGETS += test-compose test-e2e
.PHONY: test-e2e test-compose

test-e2e: deps
	$(CARGO) build --bins -p otel-collector -p demo-app -p node-agent -p anomaly-detector
	$(PY) .ci/e2e/e2e.py

test-compose: deps-py
	$(PY) -m pytest -q -p no:cacheprovider .ci/e2e/test_compose.py
