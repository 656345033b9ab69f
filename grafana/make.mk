# grafana: provisioning and dashboards (grafana/dashboards/*.json, written by generate_dashboards.py).
#
#   make grafana-dashboards   regenerate the dashboard JSON after editing generate_dashboards.py
#   make test-grafana         static checks plus every PromQL query against a real Prometheus

TEST_TARGETS += test-grafana
.PHONY: test-grafana grafana-dashboards

grafana-dashboards:
	python3 grafana/generate_dashboards.py

test-grafana: deps
	@echo "Grafana cannot run here: its dashboards and provisioning are checked statically; their PromQL runs against a real Prometheus"
	$(PY) -m pytest -q -p no:cacheprovider grafana/tests
