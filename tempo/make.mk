# tempo: tempo.yaml for Tempo 3.0.3.
#
#   make test-tempo   static checks (keys against Tempo 3.0.3's list in ../shared, settings, version pin)

TEST_TARGETS += test-tempo
.PHONY: test-tempo

test-tempo: deps
	@echo "Tempo cannot run here: tempo/tempo.yaml is checked statically"
	$(PY) -m pytest -q -p no:cacheprovider tempo/tests
