#!/usr/bin/env python3
"""Times statsmodels' ExponentialSmoothing on the series the Rust speed bench used and prints
both side by side with ratios.

Run by `make bench-detector-speed`; by hand (from the repo root):
    cargo bench -p anomaly-detector --bench speed -- --dump DIR > DIR/rust.json
    taskset -c 0 .venv/bin/python anomaly-detector/bench/speed_statsmodels.py --dir DIR --rust DIR/rust.json

statsmodels gets the period (288) given; ours detects it. Per series statsmodels does what
baseline_hw.py does: fit (additive trend + season, heuristic initialisation, parameters
estimated) and score residuals against a rolling mean/std. The cycle over 10,000 series is
timed on the dumped sample (default 50 series) and extrapolated; the output says so.
"""
import argparse
import glob
import json
import os
import time
import warnings

import numpy as np
import pandas as pd
from statsmodels.tsa.holtwinters import ExponentialSmoothing


def fit_and_score(y, period):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ExponentialSmoothing(y, trend="add", seasonal="add", seasonal_periods=period,
                                   initialization_method="heuristic").fit()
    r = pd.Series(y - np.asarray(res.fittedvalues))
    past = r.shift(1)
    z = (r - past.rolling(300, min_periods=20).mean()).abs() / (past.rolling(300, min_periods=20).std() + 1e-9)
    z = z.fillna(0.0).to_numpy()
    return z / (1.0 + z)


def load(path):
    return np.loadtxt(path, dtype=float)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="directory the Rust bench dumped its series to")
    ap.add_argument("--rust", required=True, help="JSON line printed by the Rust bench")
    a = ap.parse_args()
    with open(a.rust) as f:
        rust = json.loads(f.read().strip().splitlines()[-1])
    period = int(rust["period"])

    long = load(os.path.join(a.dir, "long.txt"))
    t0 = time.perf_counter()
    fit_and_score(long, period)
    sm_one = time.perf_counter() - t0

    files = sorted(glob.glob(os.path.join(a.dir, "cycle_*.txt")))
    sample = [load(p) for p in files]
    t0 = time.perf_counter()
    for y in sample:
        fit_and_score(y, period)
    sm_sample = time.perf_counter() - t0
    per_series = sm_sample / max(len(sample), 1)
    n = int(rust["cycle_series"])
    sm_cycle = per_series * n

    r_one, r_cycle = float(rust["one_series_s"]), float(rust["cycle_s"])
    print(f"{'case':52s} {'ours':>12s} {'statsmodels':>14s} {'ratio':>8s}")
    print(f"{'fit+score one series of ' + str(len(long)) + ' points':52s} "
          f"{r_one * 1e3:10.1f}ms {sm_one * 1e3:12.1f}ms {sm_one / r_one:7.1f}x")
    label = f"cycle: {n} series x {rust['cycle_points']} points"
    print(f"{label:52s} {r_cycle:11.2f}s {sm_cycle:12.1f}s* {sm_cycle / r_cycle:7.1f}x")
    print(f"  * statsmodels timed on {len(sample)} of the series ({sm_sample:.2f}s, "
          f"{per_series * 1e3:.1f} ms/series) and extrapolated to {n}")
    print(f"series per 60 s on one core: ours {60.0 * n / r_cycle:,.0f} (target 10,000), "
          f"statsmodels {60.0 / per_series:,.0f}")


if __name__ == "__main__":
    main()
