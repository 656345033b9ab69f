"""The live page in a real headless browser (Debian's chromium driven by Playwright): it loads
without console errors, the CPU chart and the process table fill from /api/v1/stream within a
few seconds, and an anomaly we cause (the gauge jumps) appears as firing. The screenshot is kept
in target/test-artifacts/live-view.png."""

import shutil
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from conftest import ROOT

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "target" / "test-artifacts"


def chromium():
    for name in ["chromium", "chromium-browser"]:
        p = shutil.which(name)
        if p:
            return p
    raise AssertionError("chromium not installed: run `make deps`")


def test_live_page(stack):
    errors = []
    profile = tempfile.mkdtemp(prefix="live-view-profile-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium(), headless=True, args=FLAGS,
                viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack.detector + "/")
            # Process table and per-core bars filled from the stream.
            page.wait_for_function(
                "document.querySelectorAll('#procs tbody tr td.num').length > 0", timeout=20000)
            page.wait_for_function("document.querySelectorAll('#cores .bar').length > 0", timeout=20000)
            # The CPU chart drew a line: some non-background pixels beyond the axis labels.
            page.wait_for_function("""() => {
                const c = document.getElementById('cpu'); const d = c.getContext('2d').getImageData(60, 0, c.width - 60, c.height).data;
                for (let i = 0; i < d.length; i += 4) if (d[i] === 0x58 && d[i+1] === 0xa6 && d[i+2] === 0xff) return true;
                return false; }""", timeout=20000)
            rows = page.locator("#procs tbody tr").count()
            assert rows >= 1
            # Cause an anomaly: the gauge triples.
            stack.gauge.spike = 0.3
            page.wait_for_function(
                "[...document.querySelectorAll('#firing tbody td')].some(td => td.textContent === 'latency')",
                timeout=60000)
            badge = page.locator("#status .badge").first.text_content()
            assert "prometheus" in badge or "anomaly_store" in badge
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "live-view.png"), full_page=True)
            ctx.close()
    finally:
        stack.gauge.spike = None
        shutil.rmtree(profile, ignore_errors=True)
    assert not errors, errors


def test_live_page_says_when_prometheus_is_unavailable(stack):
    """A second detector whose Prometheus is down: the page names the source."""
    from conftest import free_port, start_detector
    dead = f"http://127.0.0.1:{free_port()}"
    base = start_detector(stack, "no-prometheus", f"""prometheus: {{url: '{dead}', timeout: 1s, retry: {{max_attempts: 1}}}}
insights: {{live_interval: 1s}}
detections: [{{name: d, query: up}}]
""")
    profile = tempfile.mkdtemp(prefix="live-view-profile-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium(), headless=True, args=FLAGS)
            page = ctx.new_page()
            page.goto(base + "/")
            page.wait_for_function(
                "document.getElementById('banner').textContent.includes('prometheus is unavailable')", timeout=20000)
            assert "connect" in page.locator("#banner").text_content()
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
