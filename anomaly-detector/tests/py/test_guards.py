"""Bearer-token auth and the per-client rate limit over real TCP (peer address as the key):
no token and a wrong token get 401 with WWW-Authenticate, the right one 200; a burst past the
limit gets 429 with Retry-After; /health and /metrics stay open and unlimited."""

import urllib.error
import urllib.request

from conftest import start_detector


def status(url, token=None):
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


def test_token_and_rate_limit(stack):
    token_file = stack.tmp / "token"
    token_file.write_text("correct-horse-battery\n")
    base = start_detector(stack, "guarded", f"""prometheus: {{url: '{stack.prometheus}'}}
server:
  auth: {{token_file: '{token_file}'}}
  rate_limit: {{per_second: 0.2, burst: 4}}
detections: [{{name: d, query: up}}]
""")
    url = f"{base}/api/v1/anomalies"
    st, h = status(url)
    assert st == 401 and h.get("www-authenticate", "").startswith("Bearer"), (st, h)
    assert status(url, "wrong")[0] == 401
    assert status(url, "correct-horse-battery")[0] == 200
    # The three requests above used 3 of the burst of 4: one more passes, then 429.
    assert status(url, "correct-horse-battery")[0] == 200
    st, h = status(url, "correct-horse-battery")
    assert st == 429, (st, h)
    assert int(h["retry-after"]) >= 1
    for open_path in ["/health", "/metrics", "/api/v1/openapi.json", "/"]:
        for _ in range(6):
            assert status(f"{base}{open_path}")[0] == 200, open_path
