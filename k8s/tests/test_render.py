"""Both ways of deploying render, and what they render is valid Kubernetes.

- `kustomize build` of every overlay and the Helm chart with every values file validate against
  the JSON schemas of Kubernetes KUBERNETES_VERSION (offline, kubernetes-validate, strict: an
  unknown field is an error);
- `helm lint --strict` is clean with every values file; the prod values without the webhook URLs
  are refused (they are required, never committed).
"""

import pytest
import yaml

from conftest import CHART, ENVS, helm_values

# Pinned: a recent release whose schemas kubernetes-validate ships.
KUBERNETES_VERSION = "1.35.0"


def test_schema_valid(rendered):
    import kubernetes_validate

    env, source, objs = rendered
    assert len(objs) > 40, f"{source} {env} rendered only {len(objs)} objects"
    problems = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")
    assert not problems, f"{source} {env}: invalid for Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(problems)


def test_schema_validation_can_fail():
    import kubernetes_validate

    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "three", "selector": {}, "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVS)
def test_helm_lint_strict(env):
    import helm_python

    report = helm_python.lint(str(CHART), helm_values(env), strict=True,
                              kube_version=f"v{KUBERNETES_VERSION}")
    bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not bad, f"helm lint --strict with values-{env}.yaml: {bad}"


def test_prod_values_require_webhook_urls():
    import helm_python

    values = yaml.safe_load((CHART / "values-prod.yaml").read_text())
    with helm_python.Chart.load(str(CHART)) as chart, pytest.raises(helm_python.HelmError) as e:
        chart.render(values=values, name="otel-pipeline", namespace="observability")
    assert "secrets.detectorWebhookUrl is required" in str(e.value)
