#!/usr/bin/env python3
"""Instrumentation overhead of demo-app (make bench-demo-app).

Starts, in one run, a local OTLP gRPC sink (examples/otlp_sink), one demo-app with
OTEL_SDK_DISABLED=true (baseline: no spans, no metrics export) and one demo-app exporting traces
and metrics over OTLP gRPC to the sink. Drives each alternately with the same loadgen runs:
  * closed loop (N workers back to back): maximum requests/s and its p99, in many short pairs
    of back-to-back slices (off then on, then on then off): the shared machine's speed moves
    within seconds, so short pairs see the same machine and long rounds do not;
  * open loop at a fixed rate: p99 at a normal load.
Simulated work latency is off (DEMO_LATENCY_SCALE=0) so the CPU cost of instrumentation is
what differs; logs are at WARN in both so stdout logging does not dilute the difference. The
sink runs under `nice -n 19` so its decoding is not billed to the app.
Prints both columns side by side with the ratio, the distribution of the per-pair throughput
losses, the verdict on their median, and each app's CPU time per request (from /proc/PID/stat).
Everything listens on 127.0.0.1 port 0, every run is bounded by --duration, and all processes
are stopped at the end.

Usage: overhead.py BIN_DIR   (BIN_DIR holds demo-app, loadgen and examples/otlp_sink)
Env: BENCH_PAIRS (24) closed-loop pairs of BENCH_SLICE (2s) each, BENCH_CONCURRENCY (32);
BENCH_ROUNDS (3) open-loop rounds of BENCH_DURATION (10s) at BENCH_RPS (300);
BENCH_SINK_NICE (19; 0 makes the sink compete with the app for CPU, as a collector on the
same small host would). OTEL_BSP_*, OTEL_TRACES_SAMPLER* and DEMO_OTEL_FILTER are passed to the
exporting app.
"""
import json
import os
import signal
import subprocess
import sys
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
DURATION = os.environ.get("BENCH_DURATION", "10s")
CONCURRENCY = os.environ.get("BENCH_CONCURRENCY", "32")
RPS = os.environ.get("BENCH_RPS", "300")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "24"))
SLICE = os.environ.get("BENCH_SLICE", "2s")
SINK_NICE = os.environ.get("BENCH_SINK_NICE", "19")
# Spans per request of loadgen's mix: per 20 requests, 10 product reads and 6 user reads make
# 2 spans each (server + db.query), 4 orders make 9 each (3 server, 2 client, order.place,
# inventory.reserve, payment.authorize, payment.capture).
SPANS_PER_REQUEST = (16 * 2 + 4 * 9) / 20
TARGET_LOSS = 0.10

procs = []


def start(cmd, env, ready):
    """Start cmd, return (proc, value parsed from the first stdout line ready() accepts)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(p)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"{cmd[0]} exited before it was ready")
        v = ready(line)
        if v:
            return p, v
    raise SystemExit(f"{cmd[0]} not ready within 60s")


def drain(p, keep):
    # Keep reading stdout in the background so the child never blocks on a full pipe; lines
    # about dropped spans (the batch span processor's shutdown count) are kept for the report.
    import threading

    def run():
        for line in p.stdout:
            if "dropped" in line.lower():
                keep.append(line.strip())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def demo_app(extra_env):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DEMO_ADDR": "127.0.0.1:0",
        "DEMO_INVENTORY_ADDR": "127.0.0.1:0",
        "DEMO_PAYMENT_ADDR": "127.0.0.1:0",
        "DEMO_LATENCY_SCALE": "0",
        "LOG_FORMAT": "json",
        "RUST_LOG": "warn,demo_app::server=info",
        **extra_env,
    }

    def ready(line):
        try:
            v = json.loads(line)
        except ValueError:
            return None
        f = v.get("fields", {})
        if f.get("message") == "listening" and f.get("service") == "demo-frontend":
            return "http://" + f["addr"]
        return None

    p, url = start([f"{BIN}/demo-app"], env, ready)
    p.drop_lines = []
    p.drain_thread = drain(p, p.drop_lines)
    return p, url


def loadgen(url, duration, args, timeout=600):
    out = subprocess.run(
        [f"{BIN}/loadgen", "--target", url, "--duration", duration, "--progress", "60s", "--json", *args],
        capture_output=True, text=True, timeout=timeout, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_seconds(p):
    """User + system CPU seconds the process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_run(p, url, duration, args):
    """loadgen against url; the result gains cpu_us_per_request, the app's CPU per request."""
    before = cpu_seconds(p)
    r = loadgen(url, duration, args)
    used = cpu_seconds(p) - before
    r["cpu_us_per_request"] = used * 1e6 / r["sent"] if r["sent"] else float("nan")
    return r


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    # The sink runs at the lowest CPU priority: it stands in for a collector on another host,
    # so its decoding work should not be billed to the app (on a busy box it falls behind,
    # the app's batch queue fills and drops spans, which is what a slow collector causes too).
    sink, sink_addr = start(
        ["nice", "-n", SINK_NICE, f"{BIN}/examples/otlp_sink", "127.0.0.1:0"], {"PATH": os.environ.get("PATH", "")},
        lambda l: l.split()[1] if l.startswith("listening ") else None,
    )
    base, base_url = demo_app({"OTEL_SDK_DISABLED": "true"})
    # Tuning knobs of the exporting app can be passed through (sampler, batch queue, filter).
    passthrough = {k: v for k, v in os.environ.items()
                   if k.startswith(("OTEL_BSP_", "OTEL_TRACES_SAMPLER")) or k == "DEMO_OTEL_FILTER"}
    exp, exp_url = demo_app({
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{sink_addr}",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        **passthrough,
    })
    if passthrough:
        print(f"exporting app extra env: {passthrough}")
    results = {"off": {"closed": [], "open": []}, "on": {"closed": [], "open": []}}
    try:
        # Warm-up (connections, allocator) not counted.
        warm = {}
        for key, url in (("off", base_url), ("on", exp_url)):
            warm[key] = loadgen(url, "3s", ["--concurrency", CONCURRENCY], timeout=120)["sent"]
        apps = {"off": (base, base_url), "on": (exp, exp_url)}
        # off-on, then on-off: a drift of the machine's speed within a pair hits both alike.
        orders = [("off", "on"), ("on", "off")]
        for i in range(PAIRS):
            for key in orders[i % 2]:
                p, url = apps[key]
                results[key]["closed"].append(measured_run(p, url, SLICE, ["--concurrency", CONCURRENCY]))
            if (i + 1) % 6 == 0:
                print(f"closed loop: {i + 1}/{PAIRS} pairs", file=sys.stderr, flush=True)
        for i in range(ROUNDS):
            for key in orders[i % 2]:
                p, url = apps[key]
                results[key]["open"].append(measured_run(p, url, DURATION, ["--rps", RPS]))
    finally:
        for p in (base, exp):
            stop(p)
        stop(sink)
    sink_out = sink.stdout.read()
    exp.drain_thread.join(timeout=5)

    def mean(xs):
        return sum(xs) / len(xs)

    def median(xs):
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    def agg(key, mode, field):
        runs = results[key][mode]
        if field == "rps":
            return mean([r["achieved_rps"] for r in runs])
        if field == "err":
            return sum(r["errors"] for r in runs)
        return mean([r["latency_ms"][field] for r in runs])

    rows = [
        (f"closed loop ({CONCURRENCY} workers) requests/s", "closed", "rps"),
        ("closed loop p50 ms", "closed", "p50"),
        ("closed loop p99 ms", "closed", "p99"),
        (f"open loop ({RPS} rps) p50 ms", "open", "p50"),
        (f"open loop ({RPS} rps) p99 ms", "open", "p99"),
        ("errors (all runs)", "closed", "err"),
    ]
    print()
    print(f"bench-demo-app: instrumentation overhead, same run: closed loop {PAIRS} alternating pairs x {SLICE}, "
          f"open loop {ROUNDS} rounds x {DURATION}")
    print(f"{'metric':<38} {'no export':>14} {'OTLP export':>14} {'ratio':>8}")
    print(f"{'':<38} {'(SDK disabled)':>14} {'(to sink)':>14} {'on/off':>8}")
    for label, mode, field in rows:
        off, on = agg("off", mode, field), agg("on", mode, field)
        if field == "err":
            off += agg("off", "open", "err")
            on += agg("on", "open", "err")
        ratio = f"{on / off:.3f}" if off else "-"
        print(f"{label:<38} {off:>14.2f} {on:>14.2f} {ratio:>8}")
    # The shared machine's noise moves single runs by +-20%. The two slices of a pair are back
    # to back, so the verdict uses the median of the per-pair losses; the loss of the medians
    # and of the means are shown next to it.
    med = {k: median([r["achieved_rps"] for r in results[k]["closed"]]) for k in ("off", "on")}
    paired = sorted(1 - on["achieved_rps"] / off["achieved_rps"]
                    for off, on in zip(results["off"]["closed"], results["on"]["closed"]))
    loss = median(paired)
    quartiles = (paired[len(paired) // 4], paired[(3 * len(paired)) // 4])
    loss_medians = 1 - med["on"] / med["off"]
    loss_mean = 1 - agg("on", "closed", "rps") / agg("off", "closed", "rps")
    verdict = "PASS" if loss < TARGET_LOSS else "FAIL"
    print(f"closed loop requests/s, median of slices: off {med['off']:.0f}, on {med['on']:.0f}")
    print(f"per-pair loss over {len(paired)} pairs: quartiles {quartiles[0] * 100:.1f}% .. "
          f"{quartiles[1] * 100:.1f}%, min {paired[0] * 100:.1f}%, max {paired[-1] * 100:.1f}%")
    print(f"throughput loss with export (median of per-pair losses): {loss * 100:.1f}% "
          f"(of the medians: {loss_medians * 100:.1f}%, of the means: {loss_mean * 100:.1f}%; "
          f"target < {TARGET_LOSS * 100:.0f}%): {verdict}")
    # CPU per request does not depend on how the cores were shared with loadgen, so it moves
    # less with the machine's noise; it includes the export thread of the exporting app.
    cpu = {k: median([r["cpu_us_per_request"] for r in results[k]["closed"]]) for k in ("off", "on")}
    print(f"app CPU per request, closed loop (median of slices): off {cpu['off']:.1f} us, "
          f"on {cpu['on']:.1f} us (+{(cpu['on'] / cpu['off'] - 1) * 100:.1f}%)")
    sink_line = sink_out.strip().splitlines()[-1] if sink_out.strip() else "otlp-sink: no summary"
    print(sink_line)
    sent_on = warm["on"] + sum(r["sent"] for mode in ("closed", "open") for r in results["on"][mode])
    expected = sent_on * SPANS_PER_REQUEST
    try:
        got = int(sink_line.split("spans=")[1].split()[0])
        sampler = passthrough.get("OTEL_TRACES_SAMPLER", "parentbased_ratelimited (the app's default)")
        print(f"spans delivered: {got} of ~{expected:.0f} before sampling ({got / expected * 100:.1f}%; "
              f"sampler {sampler} {passthrough.get('OTEL_TRACES_SAMPLER_ARG', '')}; the rest is not sampled "
              f"or dropped by the batch span processor's full queue, see its drop report; sink nice={SINK_NICE})")
    except (IndexError, ValueError):
        pass
    drops = exp.drop_lines
    print("exporting app's own drop report: " + (" | ".join(drops) if drops else
          "none (no span dropped by the batch span processor)"))
    print("per-slice closed-loop rps: off=" + ", ".join(f"{r['achieved_rps']:.0f}" for r in results["off"]["closed"])
          + " on=" + ", ".join(f"{r['achieved_rps']:.0f}" for r in results["on"]["closed"]))


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
