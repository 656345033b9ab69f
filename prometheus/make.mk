# prometheus: rules, promtool unit tests and the Alertmanager routing test.
#
#   make test-prometheus   promtool check rules on every rule file, then the Python tests:
#                          rule annotations/runbook links (tests/test_rules.py) and a real
#                          Alertmanager routing alerts to the webhook sink (tests/test_alertmanager.py)
#
# `make test-config` (root Makefile) runs promtool check config, promtool test rules
# prometheus/tests/*.yml and amtool check-config.

TEST_TARGETS += test-prometheus
.PHONY: test-prometheus

test-prometheus: deps
	promtool check rules prometheus/rules/*.yml
	$(PY) -m pytest -q -p no:cacheprovider prometheus/tests
