"""Helpers for the Python tests of the observability configs (prometheus/, grafana/, tempo/).

Real servers (Prometheus, Alertmanager, the webhook sink) on free loopback ports, each started
with its log in a temporary directory and stopped (SIGTERM, then SIGKILL) when the test ends.
Standard library only, so any test can import it with `sys.path.insert(0, ROOT / ".ci")`.
"""
import contextlib
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Reference material beside the repository (Grafana schema, Tempo key lists); may be absent.
SHARED = ROOT.parent / "shared"
# Loopback only: never through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method, url, body=None, timeout=10):
    """Sends `body` (JSON-encoded when not None) and returns (status, decoded JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def prom_query(base_url, expr, at=None):
    """Runs `expr` through Prometheus' /api/v1/query (POST form) and returns the decoded answer."""
    form = {"query": expr}
    if at is not None:
        form["time"] = str(at)
    req = urllib.request.Request(base_url + "/api/v1/query",
                                 data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b'{"status": "error", "error": "empty body"}')


class Server:
    """A child process with its output in `log`; `stop()` ends it and only it."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.log = Path(log_dir) / f"{name}.log"
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)

    def tail(self, lines=30):
        """The last lines of the server's log, for failure messages."""
        self._out.flush()
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_http(self, url, timeout=30):
        """Waits until `url` answers 2xx; raises with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with _OPENER.open(url, timeout=2) as resp:
                    if 200 <= resp.status < 300:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout} s:\n{self.tail()}")

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@contextlib.contextmanager
def server(name, argv, log_dir, env=None):
    """Context manager around Server: the process is stopped however the block ends."""
    s = Server(name, argv, log_dir, env)
    try:
        yield s
    finally:
        s.stop()


def wait_until(predicate, timeout, interval=0.2):
    """Polls `predicate()` until it returns a truthy value (returned) or `timeout` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)

