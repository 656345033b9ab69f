#!/usr/bin/env python3
"""Writes testdata/statsmodels_parity.json: fitted values of statsmodels' ExponentialSmoothing
for fixed smoothing parameters and initial states, which tests/model_statsmodels_parity.rs
asserts our Holt-Winters recursion reproduces within 1e-6.

Regenerate (from the repo root, after `make deps`):
    .venv/bin/python anomaly-detector/bench/statsmodels_parity.py
`--check` compares instead of writing (exit 1 when the committed fixture differs).
"""
import argparse
import json
import math
import os
import sys
import warnings

import numpy as np
import statsmodels
from statsmodels.tsa.holtwinters import ExponentialSmoothing

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "testdata", "statsmodels_parity.json")


def series(n, period, seed, trend=0.05, amp=4.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    season = amp * np.sin(2 * math.pi * t / period) if period else 0.0
    return 20.0 + trend * t + season + rng.normal(0.0, 0.5, n)


CASES = [
    # name, n, period, trend, damped, alpha, beta, gamma, phi
    ("seasonal_trend", 200, 12, "add", False, 0.3, 0.05, 0.2, 1.0),
    ("seasonal_no_trend", 150, 7, None, False, 0.5, None, 0.1, 1.0),
    ("seasonal_damped", 240, 24, "add", True, 0.2, 0.1, 0.3, 0.9),
    ("holt_linear", 120, 0, "add", False, 0.6, 0.2, None, 1.0),
    ("simple", 100, 0, None, False, 0.35, None, None, 1.0),
]


def make_cases():
    out = []
    for i, (name, n, m, trend, damped, a, b, g, phi) in enumerate(CASES):
        y = series(n, m, seed=i + 1)
        level = float(np.mean(y[:m])) if m else float(y[0])
        slope = 0.04 if trend else 0.0
        seasons = [float(v) for v in (y[:m] - level)] if m else []
        kw = dict(trend=trend, damped_trend=damped,
                  seasonal="add" if m else None,
                  seasonal_periods=m if m else None,
                  initialization_method="known", initial_level=level)
        if trend:
            kw["initial_trend"] = slope
        if m:
            kw["initial_seasonal"] = np.asarray(seasons)
        fit_kw = dict(smoothing_level=a, optimized=False)
        if trend:
            fit_kw["smoothing_trend"] = b
        if m:
            fit_kw["smoothing_seasonal"] = g
        if damped:
            fit_kw["damping_trend"] = phi
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ExponentialSmoothing(y, **kw).fit(**fit_kw)
        out.append({
            "name": name, "period": m, "alpha": a, "beta": b, "gamma": g,
            "phi": phi if damped else 1.0,
            "initial_level": level, "initial_trend": slope,
            "initial_seasons": seasons,
            "y": [float(v) for v in y],
            "fitted": [float(v) for v in np.asarray(res.fittedvalues)],
        })
    return {"generator": "anomaly-detector/bench/statsmodels_parity.py",
            "statsmodels": statsmodels.__version__, "cases": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    data = make_cases()
    if a.check:
        with open(OUT) as f:
            old = json.load(f)
        worst = 0.0
        for c_new, c_old in zip(data["cases"], old["cases"]):
            worst = max(worst, float(np.max(np.abs(np.subtract(c_new["fitted"], c_old["fitted"])))))
        ok = len(data["cases"]) == len(old["cases"]) and worst <= 1e-9
        print(f"statsmodels {data['statsmodels']} vs fixture: max diff {worst:.3g} -> {'ok' if ok else 'DIFFERS'}")
        sys.exit(0 if ok else 1)
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)
    print(f"wrote {os.path.relpath(OUT)} ({len(data['cases'])} cases, statsmodels {data['statsmodels']})")


if __name__ == "__main__":
    main()
