"""The OpenAPI document is valid OpenAPI 3, and the live API answers a bounded schemathesis run
(property-based requests generated from the document) without a 5xx and with every answer
matching its documented schema, status code and content type.

The stream (`/api/v1/stream`, endless by design) and the HTML page are left out of the fuzzing;
`test_live_view.py` covers them.
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from openapi_spec_validator import validate

MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25")


def test_document_is_valid_openapi(stack):
    with urllib.request.urlopen(f"{stack.detector}/api/v1/openapi.json") as r:
        doc = json.load(r)
    validate(doc)
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/services/{service}/breakdown" in doc["paths"]


def test_schemathesis_finds_no_5xx_and_no_schema_violation(stack):
    st = Path(sys.executable).with_name("schemathesis")
    out = subprocess.run(
        [str(st), "run", f"{stack.detector}/api/v1/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
         "--max-examples", MAX_EXAMPLES,
         "--exclude-path", "/api/v1/stream",
         "--exclude-path", "/",
         "--request-timeout", "20",
         "--max-response-time", "30",
         "--seed", "18",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=stack.tmp)
    print(out.stdout[-6000:], out.stderr[-2000:])
    assert out.returncode == 0, "schemathesis found problems (see output above)"
