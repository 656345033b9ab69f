"""Helm and kustomize render the same objects for the same environment: the same kinds and names
(kustomize's ConfigMap/Secret hash suffixes removed; the Namespace, which Helm leaves to
`--create-namespace`, aside), and per workload the same images, args, container ports and
environment, the same replicas, and the same data in every ConfigMap.
"""

import pytest

from conftest import ENVS, docs, helm_text, kustomize_text
from test_policy import base_name, workloads


def index(objs):
    return {(o["kind"], base_name(o["metadata"]["name"])): o for o in objs if o["kind"] != "Namespace"}


def container_view(w):
    out = {}
    for c in w["spec"]["template"]["spec"]["containers"]:
        env = []
        for e in c.get("env", []):
            ref = e.get("valueFrom", {})
            for key in ("configMapKeyRef", "secretKeyRef"):
                if key in ref:
                    ref = {key: {"name": base_name(ref[key]["name"]), "key": ref[key]["key"]}}
            env.append((e["name"], e.get("value"), repr(ref)))
        out[c["name"]] = {
            "image": c["image"],
            "args": c.get("args", []),
            "ports": sorted((p["name"], p["containerPort"]) for p in c.get("ports", [])),
            "env": env,
            "resources": c.get("resources"),
        }
    return out


@pytest.mark.parametrize("env", ENVS)
def test_same_objects(env):
    k, h = index(docs(kustomize_text(env))), index(docs(helm_text(env)))
    assert sorted(k) == sorted(h), (
        f"{env}: only kustomize: {sorted(set(k) - set(h))}; only helm: {sorted(set(h) - set(k))}")


@pytest.mark.parametrize("env", ENVS)
def test_same_workloads(env):
    k, h = index(docs(kustomize_text(env))), index(docs(helm_text(env)))
    for key in (key for key in k if key[0] in ("Deployment", "StatefulSet", "DaemonSet")):
        assert container_view(k[key]) == container_view(h[key]), f"{env}: {key} differs"
        assert k[key]["spec"].get("replicas") == h[key]["spec"].get("replicas"), f"{env}: {key} replicas"
    for key in (key for key in k if key[0] == "Service"):
        assert k[key]["spec"]["ports"] == h[key]["spec"]["ports"], f"{env}: {key} ports"
        assert k[key]["spec"].get("type") == h[key]["spec"].get("type"), f"{env}: {key} type"


@pytest.mark.parametrize("env", ENVS)
def test_same_config_data(env):
    k, h = index(docs(kustomize_text(env))), index(docs(helm_text(env)))
    for key in (key for key in k if key[0] == "ConfigMap"):
        assert k[key].get("data") == h[key].get("data"), f"{env}: ConfigMap {key[1]} differs"
    ks, hs = k[("Secret", "otel-pipeline-secrets")], h[("Secret", "otel-pipeline-secrets")]
    assert sorted(ks["data"]) == sorted(hs["data"]), f"{env}: Secret keys differ"


def test_comparison_can_fail():
    a = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "i:1", "env": [{"name": "A", "value": "1"}]}]}}}}
    b = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "i:1", "env": [{"name": "A", "value": "2"}]}]}}}}
    assert container_view(a) != container_view(b)
