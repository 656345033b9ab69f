"""The config files only the Kubernetes deployment uses (k8s/config/) against the real tools:

- every collector config the manifests ship is checked by our own binary
  (`otel-collector validate`); a config that needs a component that has not landed yet is
  reported as PENDING naming the component, and fails as soon as it validates (then take it off
  the list) or fails for any other reason;
- k8s/config/prometheus.yml has the jobs, intervals and rules of prometheus/prometheus.yml and
  passes promtool; k8s/config/alertmanager.yml routes like prometheus/alertmanager.yml and passes
  amtool. Debian's promtool 2.42 is built without Kubernetes discovery and its amtool 0.25 has no
  `url_file`: those keys are swapped for static equivalents before checking (CI checks the real
  files with the pinned images' tools: .github/workflows/ci.yml);
- the node-agent takes `--host-root` (the DaemonSet's argument) and reads procfs under it.
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

SAMPLE = "otel-collector/config/otel-collector.yaml"
# Collector configs the manifests run: (config files merged in order, components they need that
# may not have landed).
COLLECTOR_CONFIGS = {
    "gateway (dev)": ([SAMPLE], []),
    "gateway (prod)": ([SAMPLE, "k8s/config/collector-gateway-prod.yaml"],
                       []),
    "agent (prod)": (["k8s/config/collector-agent.yaml"], []),
}
# How a missing component shows in `validate`'s output.
MISSING = re.compile(r"unknown (?:\w+ )?type `(\w+)`|sending_queue\.storage: unknown key `storage`")


def binary(name):
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    p = target / "debug" / name
    if not p.exists():
        pytest.fail(f"{p} missing: `cargo build -p {name}` (make test-ship builds it)")
    return str(p)


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_collector_config_validates(name):
    files, pending = COLLECTOR_CONFIGS[name]
    cmd = [binary("otel-collector"), "validate"] + [a for f in files for a in ("--config", str(ROOT / f))]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OTELCOL_BIND": "0.0.0.0"})
    if out.returncode == 0:
        assert not pending, f"{name} validates now: remove {pending} from COLLECTOR_CONFIGS' pending list"
        return
    problems = [l.strip() for l in out.stderr.splitlines() if l.startswith("  ")]
    missing = set()
    for p in problems:
        m = MISSING.search(p)
        assert m, f"{name}: {p}"
        missing.add(m.group(1) or "file_storage")
    assert missing <= set(pending), f"{name} needs unexpected components {missing - set(pending)}:\n{out.stderr}"
    pytest.xfail(f"PENDING: {name} needs {', '.join(sorted(missing))} (not in this collector yet)")


def test_node_agent_takes_host_root(tmp_path):
    (tmp_path / "proc").mkdir()
    out = subprocess.run([binary("node-agent"), "--host-root", str(tmp_path), "--print-config"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["root"]["host"] == str(tmp_path), out.stdout


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


def test_prometheus_config_matches_the_local_one():
    local, k8s = load("prometheus/prometheus.yml"), load("k8s/config/prometheus.yml")
    assert {j["job_name"] for j in local["scrape_configs"]} == {j["job_name"] for j in k8s["scrape_configs"]}
    for key in ("scrape_interval", "evaluation_interval"):
        assert local["global"][key] == k8s["global"][key]
    assert local["rule_files"] == k8s["rule_files"]
    honor = lambda c: {j["job_name"]: j.get("honor_labels", False) for j in c["scrape_configs"]}
    assert honor(local) == honor(k8s)
    assert set(k8s["global"]["external_labels"]) == {"cluster", "replica"}


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool") or pytest.fail("promtool missing: make deps")
    text = (ROOT / "k8s/config/prometheus.yml").read_text()
    config = yaml.safe_load(text)
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            job.pop("kubernetes_sd_configs")
            job["static_configs"] = [{"targets": ["localhost:1"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "rules").symlink_to(ROOT / "prometheus" / "rules")
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rule files found" in out.stdout + out.stderr or "SUCCESS" in out.stdout + out.stderr


def test_alertmanager_config_matches_the_local_one(tmp_path):
    local, k8s = load("prometheus/alertmanager.yml"), load("k8s/config/alertmanager.yml")
    assert local["route"] == k8s["route"]
    assert local["inhibit_rules"] == k8s["inhibit_rules"]
    assert [r["name"] for r in local["receivers"]] == [r["name"] for r in k8s["receivers"]]
    amtool = shutil.which("amtool") or pytest.fail("amtool missing: make deps")
    for r in k8s["receivers"]:
        for w in r["webhook_configs"]:
            assert w["url_file"].startswith("/etc/alertmanager/secrets/")
            w["url"] = "https://hooks.example.invalid/" + pathlib.Path(w.pop("url_file")).name
    (tmp_path / "am.yml").write_text(yaml.safe_dump(k8s))
    out = subprocess.run([amtool, "check-config", str(tmp_path / "am.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
