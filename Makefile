# Top-level entry points. Each component keeps its own targets in <component>/make.mk
# (test-<component>, bench-<component>, ...); this file ties them together.
#
#   make up      start the stack on 127.0.0.1 (installs what is missing)
#   make test    install test dependencies and run every test
#   make bench   run the benchmarks (long; prints figures side by side with the anchors)

SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

# Debian packages the tests and the stack run for real.
# python3 and python3-venv: `python3 -m venv` for .venv and .tools/venv.
APT_PACKAGES := python3 python3-venv prometheus prometheus-alertmanager prometheus-node-exporter victoria-metrics curl shellcheck openssl chromium

# Components register their targets in TEST_TARGETS / BENCH_TARGETS; include them before the
# `test` and `bench` rules, whose prerequisite lists are expanded when make reads them.
TEST_TARGETS :=
BENCH_TARGETS :=
include $(wildcard */make.mk crates/*/make.mk .ci/*/make.mk)

.PHONY: help deps deps-apt deps-py check-rust build release test test-unit test-config bench fmt lint up down status up-compose down-compose

help:
	@echo "make up      start the stack on 127.0.0.1 (state and logs in .run/)"
	@echo "make status  show what is running"
	@echo "make down    stop the stack"
	@echo "make up-compose / down-compose   the same stack plus Tempo and Grafana in Docker"
	@echo "make test    install test dependencies and run every test"
	@echo "make bench   run the benchmarks"
	@echo "make fmt / make lint"

## deps: install everything tests and the stack need (idempotent).
deps: deps-apt deps-py

## Debian's postinst would start prometheus, alertmanager and node_exporter; the tests and the
## stack start their own, so .ci/deps-apt.sh keeps the packages it installs from starting.
deps-apt:
	@.ci/deps-apt.sh $(APT_PACKAGES)

## check-rust: the toolchain is at least the workspace's rust-version (says what to do if not).
check-rust:
	@.ci/check-rust.sh

deps-py: $(VENV)/.installed

$(VENV)/.installed: .ci/requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r .ci/requirements-test.txt
	touch $@

build: check-rust
	$(CARGO) build --workspace --all-targets

release: check-rust
	$(CARGO) build --workspace --release --bins

## test: unit + integration tests of every component, config tests, end-to-end.
test: deps lint build test-unit test-config $(TEST_TARGETS)
	@echo "make test: all suites passed"

## `cargo test --workspace` builds every workspace binary before any test runs, so the tests
## that start another crate's binary need not build it (crates/test-support/src/bins.rs).
test-unit:
	TEST_SUPPORT_PREBUILT_BINS=1 $(CARGO) test --workspace

## test-config: static checks of the Prometheus/Alertmanager configs and the shell scripts.
test-config: deps-apt
	promtool check config prometheus/prometheus.yml
	@if ls prometheus/tests/*.yml >/dev/null 2>&1; then promtool test rules prometheus/tests/*.yml; fi
	amtool check-config prometheus/alertmanager.yml
	python3 -m py_compile .ci/webhook_sink.py
	.ci/test-owns-port.sh

bench: deps release $(BENCH_TARGETS)

## up / status / down: the whole stack on 127.0.0.1 (see .ci/stack.sh for the port variables).
up: deps release
	@.ci/stack.sh up

status:
	@.ci/stack.sh status

down:
	@.ci/stack.sh down

## up-compose / down-compose: docker-compose.yml (needs Docker with the compose plugin).
define NEED_DOCKER
	@command -v docker >/dev/null 2>&1 || { echo "make $@: docker is not installed (no 'docker' on PATH). Install Docker Engine with the compose plugin, or run the stack as processes with 'make up'." >&2; exit 1; }
	@docker compose version >/dev/null 2>&1 || { echo "make $@: the docker compose plugin is not installed ('docker compose version' fails)." >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make $@: docker is installed but its engine does not answer ('docker info' fails): start it." >&2; exit 1; }
endef

up-compose:
	$(NEED_DOCKER)
	docker compose up -d --build
	docker compose ps
	@echo "Grafana http://localhost:3000  Prometheus http://localhost:9090  Alertmanager http://localhost:9093  stop: make down-compose"

down-compose:
	$(NEED_DOCKER)
	docker compose down

fmt:
	$(CARGO) fmt --all

## Every shell script git tracks: *.sh and any file whose first line is a sh/bash shebang.
SHELL_SCRIPTS = $(sort $(shell git ls-files '*.sh') $(shell git ls-files -z | xargs -0 grep -lIE -m1 '^\#!.*(/|env )(ba|da)?sh( |$$)' 2>/dev/null))

## lint (part of `make test`): rustfmt check, clippy with warnings as errors, shellcheck.
lint: deps-apt check-rust
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@test -n "$(SHELL_SCRIPTS)" || { echo "lint: no shell scripts found (not a git checkout?)"; exit 1; }
	shellcheck -x $(SHELL_SCRIPTS)

