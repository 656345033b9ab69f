"""Static checks of tempo/tempo.yaml.

Tempo cannot run on this machine (no Tempo package, no container runtime), so the file is
checked without it: every key against Tempo 3.0.3's key list (Tempo loads its config strictly,
so an unknown key would stop it at start), the settings the pipeline relies on, the version pin,
and the cross-references with Grafana's Tempo datasource.

Run: `make test-tempo` (or `.venv/bin/python -m pytest tempo/tests`).
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".ci"))
import obs_support as obs  # noqa: E402

CONFIG = obs.ROOT / "tempo" / "tempo.yaml"
CHECKER = obs.SHARED / "conformance" / "tempo" / "check_tempo_config.py"
KEYS = obs.SHARED / "conformance" / "tempo" / "keys-v3.0.3.txt"
VERSION = "3.0.3"
# Blocks Tempo 3.0 removed; a 2.x config that still has them does not start.
REMOVED_IN_3 = ("ingester", "ingester_client", "compactor", "metrics_generator_client")


@pytest.fixture(scope="module")
def cfg():
    return yaml.safe_load(CONFIG.read_text())


def duration_hours(text):
    """Hours in a Go duration made of h/m units (e.g. 336h, 1h30m)."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", str(text))
    assert m and text, f"not an h/m duration: {text!r}"
    return int(m.group(1) or 0) + int(m.group(2) or 0) / 60


def run_checker(path):
    return subprocess.run([sys.executable, str(CHECKER), "--manifest", str(KEYS), str(path)],
                          capture_output=True, text=True)


@pytest.mark.skipif(not KEYS.exists(), reason="../shared/conformance/tempo not beside the repository")
def test_every_key_is_known_to_tempo_3_0_3():
    result = run_checker(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 unknown keys" in result.stdout


@pytest.mark.skipif(not KEYS.exists(), reason="../shared/conformance/tempo not beside the repository")
def test_key_check_rejects_an_unknown_key(tmp_path, cfg):
    # The check must be able to fail: a misspelt key is reported.
    bad = dict(cfg, storage={"trace": dict(cfg["storage"]["trace"], blok_retention="1h")})
    path = tmp_path / "tempo.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run_checker(path)
    assert result.returncode == 1
    assert "storage.trace.blok_retention" in result.stdout


def test_version_is_documented_and_images_pinned_to_it():
    header = CONFIG.read_text().split("\n", 2)[0]
    assert f"Tempo {VERSION}" in header and f"grafana/tempo:{VERSION}" in header, header
    # Any image reference elsewhere in the repository (compose file, manifests, chart) must use
    # the same version.
    refs = []
    for path in obs.ROOT.rglob("*"):
        parts = path.relative_to(obs.ROOT).parts
        if not path.is_file() or parts[0] in (".git", "target", ".venv", ".run") or path.suffix not in (
                ".yaml", ".yml", ".json", ".md", ".sh", ".tpl"):
            continue
        for tag in re.findall(r"grafana/tempo:([\w.\-]+)", path.read_text(errors="replace")):
            refs.append((str(path.relative_to(obs.ROOT)), tag))
    assert refs, "tempo.yaml itself names the image"
    assert {tag for _, tag in refs} == {VERSION}, refs


def test_monolithic_without_removed_blocks(cfg):
    assert cfg["target"] == "all"
    assert not set(REMOVED_IN_3) & set(cfg), "blocks removed in Tempo 3.0 are still present"
    assert "ingest" not in cfg, "monolithic mode uses no Kafka"


def test_otlp_receivers_grpc_and_http(cfg):
    protocols = cfg["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")


def test_local_storage_with_block_retention(cfg):
    trace = cfg["storage"]["trace"]
    assert trace["backend"] == "local"
    assert trace["local"]["path"] and trace["wal"]["path"]
    scheduler = cfg["backend_scheduler"]["provider"]["compaction"]["compaction"]["block_retention"]
    worker = cfg["backend_worker"]["compaction"]["block_retention"]
    assert scheduler == worker, "scheduler and worker must agree on retention"
    assert duration_hours(worker) == 14 * 24


def test_search_streaming_and_no_metrics_generator(cfg):
    assert cfg["stream_over_http_enabled"] is True
    assert cfg["query_frontend"]["search"]["max_result_limit"] >= cfg["query_frontend"]["search"]["default_result_limit"]
    # The collector derives span metrics and the service graph; Tempo's generator stays off.
    assert cfg["overrides"]["defaults"]["metrics_generator"]["processors"] == []
    assert "metrics_generator" not in cfg or "storage" not in cfg["metrics_generator"]


def test_grafana_datasource_points_at_tempo_http_port(cfg):
    ds = yaml.safe_load((obs.ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text())
    tempo = [d for d in ds["datasources"] if d["type"] == "tempo"]
    assert len(tempo) == 1
    assert tempo[0]["url"].rstrip("/").endswith(f":{cfg['server']['http_listen_port']}")
