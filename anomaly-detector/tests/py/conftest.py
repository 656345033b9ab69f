"""Fixtures of the anomaly-detector API tests that need a browser or Python tools.

`stack` starts, on free loopback ports: a real Prometheus (Debian package) scraping a real
otel-collector that receives the real node-agent's host metrics over OTLP, plus a small test
server exposing a gauge we control (one hour of its normal history is backfilled with promtool),
and the anomaly-detector binary watching that gauge. Everything is killed at the end.

Binaries come from `target/debug` (built by `make test`'s `build` step) unless
DETECTOR_TEST_BIN_DIR points elsewhere.

Run: `make test-detector-api` (or `.venv/bin/pytest anomaly-detector/tests/py`).
"""

import http.server
import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("DETECTOR_TEST_BIN_DIR", ROOT / "target" / "debug"))
START_TIMEOUT = 90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc=None, timeout=START_TIMEOUT, ok=lambda body: True):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = r.read()
                if ok(body):
                    return body
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def normal(t):
    """Deterministic normal signal: a 10-minute wave plus small pseudo-random noise."""
    noise = ((t * 2654435761) >> 7) % 1000 / 1000.0 - 0.5
    return 0.1 + 0.01 * math.sin(2 * math.pi * t / 600) + 0.01 * noise


class Gauge:
    """Serves `demo_latency_seconds` (normal until `spike` is set)."""

    def __init__(self):
        self.spike = None
        gauge = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                v = gauge.spike if gauge.spike is not None else normal(int(time.time()))
                body = f'# TYPE demo_latency_seconds gauge\ndemo_latency_seconds{{route="/api/orders"}} {v}\n'.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs = []

    def spawn(self, name, args, env=None):
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
        self.procs.append((name, p))
        return p

    def log(self, name):
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def require(path):
    p = shutil.which(path) if "/" not in str(path) else (str(path) if Path(path).exists() else None)
    if not p:
        pytest.fail(f"{path} not found: run `make deps` and `make build`")
    return p


def start_detector(stack, name, config_text, env=None):
    port = free_port()
    cfg = stack.tmp / f"{name}.yaml"
    cfg.write_text(config_text)
    p = stack.spawn(name, [require(BIN / "anomaly-detector"), "--config", str(cfg)],
                    env={"DETECTOR_ADDR": f"127.0.0.1:{port}", "RUST_LOG": "info", **(env or {})})
    wait_http(f"http://127.0.0.1:{port}/health", p)
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def stack():
    tmp = Path(tempfile.mkdtemp(prefix="detector-api-"))
    s = Stack(tmp)
    gauge = Gauge()
    try:
        p_prom, p_grpc, p_exp, p_own = free_port(), free_port(), free_port(), free_port()
        # One hour of the gauge's normal history, with the labels the scrape will give it.
        now = int(time.time())
        lines = ["# TYPE demo_latency_seconds gauge"]
        for t in range(now - 3600, now - 3, 2):
            lines.append(f'demo_latency_seconds{{instance="127.0.0.1:{gauge.port}",job="app",route="/api/orders"}} {normal(t)} {t}')
        (tmp / "history.om").write_text("\n".join(lines) + "\n# EOF\n")
        (tmp / "prom-data").mkdir()
        subprocess.run([require("promtool"), "tsdb", "create-blocks-from", "openmetrics", "-q",
                        str(tmp / "history.om"), str(tmp / "prom-data")], check=True)
        (tmp / "prometheus.yml").write_text(f"""global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: app
    static_configs: [{{targets: ['127.0.0.1:{gauge.port}']}}]
  - job_name: collector
    honor_labels: true
    static_configs: [{{targets: ['127.0.0.1:{p_exp}']}}]
""")
        prom = s.spawn("prometheus", [require("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={tmp / 'prom-data'}",
                                      f"--web.listen-address=127.0.0.1:{p_prom}"])
        wait_http(f"http://127.0.0.1:{p_prom}/-/ready", prom)
        (tmp / "collector.yaml").write_text(f"""receivers:
  otlp:
    protocols:
      grpc: {{endpoint: '127.0.0.1:{p_grpc}'}}
exporters:
  prometheus: {{endpoint: '127.0.0.1:{p_exp}'}}
service:
  telemetry:
    metrics: {{address: '127.0.0.1:{p_own}'}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
""")
        col = s.spawn("otel-collector", [require(BIN / "otel-collector"), "--config", str(tmp / "collector.yaml")])
        s.spawn("node-agent", [require(BIN / "node-agent")],
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p_grpc}",
                     "OTEL_METRIC_EXPORT_INTERVAL": "1000"})
        # Host data has reached Prometheus when the CPU utilization series exists.
        q = urllib.request.quote('count(system_cpu_utilization_ratio)')
        wait_http(f"http://127.0.0.1:{p_prom}/api/v1/query?query={q}", col,
                  ok=lambda b: bool(json.loads(b)["data"]["result"]))
        s.prometheus = f"http://127.0.0.1:{p_prom}"
        s.gauge = gauge
        s.detector = start_detector(s, "anomaly-detector", f"""prometheus: {{url: '{s.prometheus}', timeout: 5s}}
evaluation_interval: 2s
server:
  rate_limit: {{enabled: false}}
insights: {{live_interval: 1s}}
history: {{path: '{tmp / "anomalies.db"}'}}
detections:
  - name: latency
    query: demo_latency_seconds
    step: 2s
    history: 1h
    model: {{consecutive: 2}}
""")
        yield s
    finally:
        s.stop()
        gauge.close()
        if os.environ.get("KEEP_TEST_DIR"):
            print(f"test directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
