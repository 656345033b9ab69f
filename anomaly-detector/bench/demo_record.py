#!/usr/bin/env python3
"""Labelled recordings of the demo stack's own metrics with injected incidents (issue 20).

`record --out DIR [--seed S] [--day 240] [--days 5]` starts the real pipeline on free loopback
ports with `.ci/stack.sh up` (demo-app, otel-collector, Debian's Prometheus, ...; its own state
directory; metrics exported and scraped every 2 s as in the end-to-end test), drives `loadgen`
with a diurnal pattern compressed to `--day` seconds and, after two clean days, three incidents
of each kind loadgen injects (`error-spike`, `latency-spike`, `traffic-drop`) at seeded times,
strengths and lengths. Then it reads the detector's series from Prometheus with
`/api/v1/query_range`: the PromQL of the shipped `anomaly-detector/config/detector.yaml`
(request rate, error ratio, latency p95, per job and route) with its range windows compressed
to `--window` (20 s, as the end-to-end test does), at a `--step` of 2 s. Bounded: the whole run
has a deadline; every process it starts (the stack by its pid files, its own loadgen by PID) is
stopped at exit, on Ctrl-C and on SIGTERM.

It writes a NAB-layout folder:

* `DIR/data/<detection>/<service>__<route>.csv` (`timestamp,value`, one row per step over the
  same range for every file; an empty value where the query returned nothing at that step, except
  that an error ratio is 0 where its request rate has a value: no 5xx counter yet is no error).
  Left out (listed in recording.json): the harness's routes `/health` and `/admin/faults`, and
  series with values at under half the steps;
* `DIR/data/labels/combined_windows.json` (NAB windows: 10 % of the file's rows shared between
  its incidents, each centred on the incident's onset, as NAB and synth_suite.py size them);
* `DIR/split.json` (every file under `"public"`) and `DIR/recording.json` (seed, day, step,
  queries, the incidents with their onsets and which files each labels).

Which files an incident labels, from how the demo injects it: a `traffic-drop` (loadgen sends
less) the request rate of every service and route; an `error-spike` (the frontend answers 5xx
before calling anything) the frontend's error ratios and the request rates of inventory and
payment (the calls it skips); a `latency-spike` (the frontend sleeps before answering) the
frontend's p95 latencies. Other files have no window for it (a detection there is a false
positive).

`report --nab NAB --data DIR --results RESULTS` scores a backtest of DIR/data with the unchanged
`score.py` (standard profile, one threshold optimised over the recording) and prints, at that
threshold, the score and windows found per detection and per incident kind.

Run: `make bench-detector-demo` (scores the committed recording; `DEMO_RECORD=1` re-records it
first). Standard library plus PyYAML for `record`; numpy/pandas (the scorer's) for `report`.
"""
import argparse
import importlib.util
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DETECTIONS = ["request_rate", "error_ratio", "latency_p95"]
KINDS = ["error-spike", "latency-spike", "traffic-drop"]
PER_KIND = 3
WARMUP_DAYS = 2
FRONTEND = "demo-frontend"
BACKENDS = ("demo-inventory", "demo-payment")
# Seeded ranges: strength (error rate, added ms, remaining traffic fraction) and length in s.
STRENGTH = {"error-spike": (0.2, 0.5), "latency-spike": (200, 600), "traffic-drop": (0.3, 0.6)}
LENGTH_S = (20, 35)
PORT_VARS = ["PROMETHEUS_PORT", "ALERTMANAGER_PORT", "WEBHOOK_PORT", "OTLP_GRPC_PORT",
             "OTLP_HTTP_PORT", "COLLECTOR_METRICS_PORT", "PROM_EXPORTER_PORT", "HEALTH_PORT",
             "DEMO_PORT", "DEMO_INVENTORY_PORT", "DEMO_PAYMENT_PORT", "DETECTOR_PORT"]
# Routes of the harness, not of the demo's workload: left out of the recording.
HARNESS_ROUTES = {"/health": "harness route: start-up health probes",
                  "/admin/faults": "harness route: loadgen's fault injection requests"}
SETTLE_S = 30  # rows start this long after loadgen: the rate windows are full by then
TAIL_S = 8  # wait after loadgen ends for the last export and scrape


def labels_files(kind, detection, service):
    """Whether an incident of `kind` labels the file of `detection` for `service`."""
    if kind == "traffic-drop":
        return detection == "request_rate"
    if kind == "error-spike":
        return (detection == "error_ratio" and service == FRONTEND) or \
            (detection == "request_rate" and service in BACKENDS)
    if kind == "latency-spike":
        return detection == "latency_p95" and service == FRONTEND
    raise ValueError(kind)


def schedule(seed, day_s, days):
    """Incidents: three of each kind in a seeded order, one per slot after the warm-up days."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS for _ in range(PER_KIND)]
    rng.shuffle(kinds)
    first, total = WARMUP_DAYS * day_s, days * day_s
    slot = (total - first) / len(kinds)
    if slot < 60:
        raise SystemExit(f"{len(kinds)} incidents need slots of at least 60 s: lengthen --days or --day")
    out = []
    for i, kind in enumerate(kinds):
        start = first + i * slot + rng.uniform(5, 20)
        length = rng.randint(*LENGTH_S)
        lo, hi = STRENGTH[kind]
        value = round(rng.uniform(lo, hi)) if kind == "latency-spike" else round(rng.uniform(lo, hi), 2)
        out.append({"kind": kind, "value": value, "start_s": round(start, 1), "len_s": length})
    return out


def inject_arg(inc):
    """loadgen's `--inject KIND=VALUE@START+LEN` text of one incident."""
    return f"{inc['kind']}={inc['value']}@{inc['start_s']}s+{inc['len_s']}s"


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bound, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def compressed_queries(window):
    """{detection: PromQL} of the shipped detector.yaml with every range window set to `window`."""
    import yaml  # only `record` needs it

    cfg = yaml.safe_load((ROOT / "anomaly-detector" / "config" / "detector.yaml").read_text())
    by_name = {d["name"]: d["query"] for d in cfg["detections"]}
    rng = re.compile(r"\[(?:\d+(?:ms|s|m|h|d|w|y))+\]")
    return {name: " ".join(rng.sub(f"[{window}]", by_name[name]).split()) for name in DETECTIONS}


def query_range(prom, expr, start, end, step):
    """The matrix of one range query (raises on any failure)."""
    params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    url = f"{prom}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=60) as r:
        body = json.loads(r.read())
    if body.get("status") != "success":
        raise RuntimeError(f"query_range {expr!r}: {body}")
    return body["data"]["result"]


def slug(text):
    """File-name part of a label value: `/api/users/{id}` -> `api_users_id`."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_") or "none"


def stamp(t):
    """NAB timestamp text of unix seconds (UTC)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def series_key(metric):
    """(service, route) of a result's labels; `job` is `namespace/service`."""
    return metric.get("job", "").split("/")[-1], metric.get("http_route", "")


def windows_for(onset_rows, n, grid):
    """NAB windows: 10 % of the rows shared by the onsets, each centred on its onset."""
    if not onset_rows:
        return []
    w = int(0.1 * n / len(onset_rows))
    return [[stamp(grid[max(0, o - w // 2)]), stamp(grid[min(n - 1, o + w // 2)])] for o in onset_rows]


def write_recording(out, series, grid, incidents, t0, meta):
    """Writes data/, labels, split.json and recording.json under `out` (replacing it)."""
    out = Path(out)
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    (out / "data" / "labels").mkdir(parents=True)
    n = len(grid)
    labels, files = {}, []
    for inc in incidents:
        onset = t0 + inc["start_s"]
        inc["onset"] = stamp(grid[next(i for i, g in enumerate(grid) if g >= onset)])
        inc["files"] = []
    for (detection, service, route), values in sorted(series.items()):
        rel = f"{detection}/{service}__{slug(route)}.csv"
        (out / "data" / detection).mkdir(exist_ok=True)
        with open(out / "data" / rel, "w") as f:
            f.write("timestamp,value\n")
            for t, v in zip(grid, values):
                f.write(f"{stamp(t)},{'' if v is None else f'{v:.6g}'}\n")
        mine = [inc for inc in incidents if labels_files(inc["kind"], detection, service)]
        onset_rows = [next(i for i, g in enumerate(grid) if g >= t0 + inc["start_s"]) for inc in mine]
        labels[rel] = windows_for(onset_rows, n, grid)
        for inc in mine:
            inc["files"].append(rel)
        files.append(rel)
    with open(out / "data" / "labels" / "combined_windows.json", "w") as f:
        json.dump(labels, f, indent=1)
        f.write("\n")
    with open(out / "split.json", "w") as f:
        json.dump({"public": files}, f, indent=1)
        f.write("\n")
    meta = dict(meta, rows=n, first=stamp(grid[0]), last=stamp(grid[-1]), incidents=incidents)
    with open(out / "recording.json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{len(files)} files of {n} rows, {sum(len(w) for w in labels.values())} windows under {out}")


def collect(prom, queries, start, end, step):
    """{(detection, service, route): [value or None per grid step]}, the grid and what was left
    out (harness routes, series with values at under half the steps)."""
    grid = list(range(start, end + 1, step))
    index = {t: i for i, t in enumerate(grid)}
    series, dropped = {}, []
    for detection, expr in queries.items():
        for s in query_range(prom, expr, start, end, step):
            service, route = series_key(s["metric"])
            if route in HARNESS_ROUTES:
                dropped.append(f"{detection}/{service}__{slug(route)} ({HARNESS_ROUTES[route]})")
                continue
            vals = [None] * len(grid)
            for t, v in s["values"]:
                x = float(v)
                if math.isfinite(x) and int(round(float(t))) in index:
                    vals[index[int(round(float(t)))]] = x
            series[(detection, service, route)] = vals
    # An error ratio has no series until its route's first 5xx: where the request rate has a
    # value, no 5xx counter means no errors (0).
    for (detection, service, route), vals in series.items():
        if detection != "error_ratio":
            continue
        rate = series.get(("request_rate", service, route))
        if rate:
            for i, (v, r) in enumerate(zip(vals, rate)):
                if v is None and r is not None:
                    vals[i] = 0.0
    # A series with values at fewer than half the steps (the p95 of `/health`, which only the
    # start-up probes request: a histogram quantile of no requests is NaN) is left out.
    sparse = sorted(k for k, v in series.items() if sum(x is not None for x in v) < 0.5 * len(grid))
    for k in sparse:
        del series[k]
    dropped = sorted(dropped) + [f"{d}/{svc}__{slug(route)} (values at under half the steps)"
                                 for d, svc, route in sparse]
    return series, grid, dropped


class Stack:
    """The pipeline started by `.ci/stack.sh up` in its own state directory, plus our loadgen."""

    def __init__(self, bin_dir):
        self.run_dir = Path(tempfile.mkdtemp(prefix="demo-record-"))
        self.bin = Path(bin_dir)
        self.ports = dict(zip(PORT_VARS, free_ports(len(PORT_VARS))))
        rules = self.run_dir / "rules"  # no rule files: the recording needs none
        rules.mkdir()
        self.env = dict(os.environ, **{k: str(v) for k, v in self.ports.items()})
        self.env.update({
            "STACK_RUN": str(self.run_dir), "STACK_BIN": str(self.bin),
            "PROMETHEUS_RULES": str(rules / "*.yml"),
            "PROMETHEUS_SCRAPE_INTERVAL": "2s", "PROMETHEUS_EVAL_INTERVAL": "2s",
            "METRIC_EXPORT_INTERVAL_MS": "2000", "PROMETHEUS_RETENTION": "1d",
            # stack.sh's own loadgen (1 req/s) is stopped right after `up`: ours, with the
            # incidents, replaces it
            "LOADGEN_RPS": "1", "LOADGEN_DURATION": "10m",
            "TAIL_SAMPLING_PERCENT": "1",
        })
        self.env.pop("TEMPO_ENDPOINT", None)
        self.prom = f"http://127.0.0.1:{self.ports['PROMETHEUS_PORT']}"
        self.demo = f"http://127.0.0.1:{self.ports['DEMO_PORT']}"
        self.loadgen = None
        self.started = False

    def up(self):
        print(f"demo_record: state in {self.run_dir}, ports {self.ports}", flush=True)
        self.started = True
        r = subprocess.run([str(ROOT / ".ci" / "stack.sh"), "up"], cwd=ROOT, env=self.env,
                           timeout=180, text=True, capture_output=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr, sep="", flush=True)
            raise RuntimeError(f".ci/stack.sh up exited {r.returncode}")
        pid_file = self.run_dir / "loadgen.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"stack.sh's loadgen (pid {pid}) did not stop")
        pid_file.unlink()

    def start_loadgen(self, rps, duration_s, day_s, incidents):
        cmd = [str(self.bin / "loadgen"), "--target", self.demo, "--rps", str(rps),
               "--duration", f"{duration_s}s", "--pattern", "diurnal", "--day", f"{day_s}s",
               "--progress", "60s"]
        for inc in incidents:
            cmd += ["--inject", inject_arg(inc)]
        log = open(self.run_dir / "loadgen-record.log", "w")
        t0 = time.time()
        self.loadgen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        print(f"loadgen pid {self.loadgen.pid}: {' '.join(cmd[1:])}", flush=True)
        return t0

    def down(self):
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.terminate()
            try:
                self.loadgen.wait(10)
            except subprocess.TimeoutExpired:
                self.loadgen.kill()
                self.loadgen.wait()
        if self.started:
            subprocess.run([str(ROOT / ".ci" / "stack.sh"), "down"], cwd=ROOT, env=self.env,
                           timeout=240, text=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def record(a):
    incidents = schedule(a.seed, a.day, a.days)
    total = a.day * a.days
    queries = compressed_queries(a.window)
    deadline = time.time() + total + 600  # start-up, queries and shutdown fit in 10 minutes
    stack = Stack(a.bin)

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}: stopping the stack")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.up()
        t0 = stack.start_loadgen(a.rps, total, a.day, incidents)
        end_wait = t0 + total + TAIL_S
        while time.time() < end_wait:
            if time.time() > deadline:
                raise RuntimeError("deadline passed while loadgen ran")
            if stack.loadgen.poll() is not None and time.time() < t0 + total - 1:
                raise RuntimeError(f"loadgen exited early ({stack.loadgen.returncode}); "
                                   f"see {stack.run_dir}/loadgen-record.log")
            time.sleep(min(60.0, max(0.1, end_wait - time.time())))
            print(f"[{time.time() - t0:6.0f}s of {total}s]", flush=True)
        start = int(math.ceil((t0 + SETTLE_S) / a.step) * a.step)
        end = int(math.floor((t0 + total) / a.step) * a.step)
        series, grid, dropped = collect(stack.prom, queries, start, end, a.step)
        if not series:
            raise RuntimeError("Prometheus returned no series")
        with open(stack.run_dir / "loadgen-record.log") as f:
            print("loadgen:", *f.read().splitlines()[-3:], sep="\n  ")
        meta = {
            "seed": a.seed, "day_s": a.day, "days": a.days, "rps": a.rps, "step_s": a.step,
            "window": a.window, "loadgen_start": stamp(t0), "queries": queries,
            "injects": [inject_arg(i) for i in incidents],
            "dropped": dropped,
        }
        write_recording(a.out, series, grid, incidents, t0, meta)
    finally:
        stack.down()
    return 0


def report(a):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from synth_suite import group_figures  # the suite's per-group NAB figures, same scorer

    spec = importlib.util.spec_from_file_location("nab_score", os.path.join(a.nab, "score.py"))
    sc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sc)
    prof = sc.PROFILES["standard"]
    data = Path(a.data)
    windows = json.loads((data / "data" / "labels" / "combined_windows.json").read_text())
    meta = json.loads((data / "recording.json").read_text())
    rels = sc.load_split("public", str(data / "split.json"), windows)
    files = {r: sc.load_file_terms(r, a.results, str(data / "data"), windows, prof, None) for r in rels}
    thr, raw = sc.optimise(list(files.values()))
    null = sum(-prof["fn"] * len(f.scorable_windows) for f in files.values())
    perfect = prof["tp"] * sum(f.n_windows for f in files.values())
    print(f"demo-stack recording {meta['loadgen_start']} (seed {meta['seed']}, {meta['rows']} rows "
          f"at {meta['step_s']} s, day {meta['day_s']} s): {len(files)} files, "
          f"threshold {thr:.6f} (optimised over the recording)")
    print(f"{'detection':14s} {'files':>5s} {'score':>7s} {'windows':>9s} {'fp_rows':>8s} {'fp_cost':>8s}")
    for det in DETECTIONS:
        fs = [f for r, f in files.items() if r.startswith(det + "/")]
        if not fs:
            continue
        norm, found, n_w, fp, fp_cost = group_figures(fs, thr, prof)
        print(f"{det:14s} {len(fs):5d} {norm} {found:4d}/{n_w:<4d} {fp:8d} {fp_cost:8.2f}")
    # windows found per incident kind: a file's windows are its incidents in time order
    print(f"{'incident':14s} {'windows':>9s}   (per detection)")
    for kind in KINDS:
        found = {}
        for inc in meta["incidents"]:
            if inc["kind"] != kind:
                continue
            for rel in inc["files"]:
                f = files[rel]
                mine = [i for i in meta["incidents"] if rel in i["files"]]
                k = mine.index(inc)
                if k not in f.scorable_windows:
                    continue
                hit = bool(((f.scores >= thr) & (f.win_id == k)).any())
                d = found.setdefault(rel.split("/")[0], [0, 0])
                d[0] += hit
                d[1] += 1
        tot = [sum(v[0] for v in found.values()), sum(v[1] for v in found.values())]
        parts = ", ".join(f"{d} {v[0]}/{v[1]}" for d, v in sorted(found.items()))
        print(f"{kind:14s} {tot[0]:4d}/{tot[1]:<4d}   ({parts})")
    total = 100.0 * (raw - null) / (perfect - null)
    print(f"recording total (normalised): {total:.2f}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="run the stack with injected incidents and write the recording")
    r.add_argument("--out", default=str(ROOT / "anomaly-detector" / "testdata" / "demo"))
    r.add_argument("--seed", type=int, default=20261204)
    r.add_argument("--day", type=int, default=240, help="seconds of one compressed day")
    r.add_argument("--days", type=int, default=5, help="days recorded (the first two without incidents)")
    r.add_argument("--rps", type=float, default=20.0, help="mean request rate of loadgen")
    r.add_argument("--step", type=int, default=2, help="query_range step in seconds")
    r.add_argument("--window", default="20s", help="range window replacing the shipped ones")
    r.add_argument("--bin", default=os.environ.get("STACK_BIN", str(ROOT / "target" / "release")),
                   help="directory of the release binaries")
    p = sub.add_parser("report", help="score a backtest of a recording per detection and incident kind")
    p.add_argument("--nab", required=True, help="NAB folder (for score.py)")
    p.add_argument("--data", required=True, help="recording folder (with data/, split.json, recording.json)")
    p.add_argument("--results", required=True, help="backtest output of DATA/data")
    a = ap.parse_args()
    return record(a) if a.cmd == "record" else report(a)


if __name__ == "__main__":
    sys.exit(main())
