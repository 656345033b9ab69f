"""The committed demo-stack recording (anomaly-detector/testdata/demo, written by
anomaly-detector/bench/demo_record.py) is consistent, so `make bench-detector-demo` scores what it
says: every file of the split has labels and rows at one regular step over the recorded range,
every label window lies in its file's range on row timestamps (as NAB's scorer requires), is
sized as NAB sizes windows, and holds the onset of the incident it labels.

Run: `.venv/bin/pytest anomaly-detector/tests/py/test_demo_recording.py` (part of `make test`
through test-detector-api). Needs no stack and no binaries.
"""

import csv
import json
import math
from datetime import datetime
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "testdata" / "demo"
FMT = "%Y-%m-%d %H:%M:%S"


def ts(text):
    return datetime.strptime(text, FMT).timestamp()


@pytest.fixture(scope="module")
def recording():
    meta = json.loads((DEMO / "recording.json").read_text())
    windows = json.loads((DEMO / "data" / "labels" / "combined_windows.json").read_text())
    split = json.loads((DEMO / "split.json").read_text())
    rows = {}
    for rel in split["public"]:
        with open(DEMO / "data" / rel, newline="") as f:
            r = list(csv.reader(f))
        assert r[0] == ["timestamp", "value"], rel
        rows[rel] = r[1:]
    return meta, windows, split, rows


def test_every_file_is_labelled_and_listed(recording):
    meta, windows, split, rows = recording
    on_disk = sorted(str(p.relative_to(DEMO / "data")) for p in (DEMO / "data").glob("*/*.csv"))
    assert on_disk == sorted(split["public"]) == sorted(windows)
    for det in ("request_rate", "error_ratio", "latency_p95"):
        assert any(rel.startswith(det + "/") for rel in on_disk), det
    assert sorted({i["kind"] for i in meta["incidents"]}) == ["error-spike", "latency-spike", "traffic-drop"]


def test_rows_at_a_regular_step_over_the_recorded_range(recording):
    meta, _, _, rows = recording
    step = meta["step_s"]
    for rel, r in rows.items():
        assert len(r) == meta["rows"] >= 100, rel
        assert (r[0][0], r[-1][0]) == (meta["first"], meta["last"]), rel
        t = [ts(row[0]) for row in r]
        assert all(b - a == step for a, b in zip(t, t[1:])), f"{rel}: irregular step"
        vals = [float(row[1]) for row in r if row[1] != ""]
        assert len(vals) >= 0.9 * len(r), f"{rel}: {len(r) - len(vals)} empty values"
        assert all(math.isfinite(v) for v in vals), rel


def test_windows_lie_in_range_sized_as_nab_and_hold_their_onsets(recording):
    meta, windows, _, rows = recording
    for rel, wins in windows.items():
        stamps = [row[0] for row in rows[rel]]
        index = {s: i for i, s in enumerate(stamps)}
        n = len(stamps)
        mine = [inc for inc in meta["incidents"] if rel in inc["files"]]
        assert len(wins) == len(mine), rel
        spans = []
        for (start, end), inc in zip(wins, mine):
            assert start in index and end in index, f"{rel}: window {start}..{end} not on row timestamps"
            s, e = index[start], index[end]
            assert 0 <= s < e < n, rel
            assert e - s == 2 * (int(0.1 * n / len(wins)) // 2), f"{rel}: window of {e - s + 1} rows"
            assert s <= index[inc["onset"]] <= e, f"{rel}: {inc['kind']} onset {inc['onset']} outside {start}..{end}"
            # past NAB's probationary period (15 % of the rows), where a window would not count
            assert s >= math.floor(0.15 * n), rel
            spans.append((s, e))
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), f"{rel}: windows overlap or are unsorted"
