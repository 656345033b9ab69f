#!/usr/bin/env python3
"""Seeded synthetic suite of labelled series of the kinds production metrics show.

`generate --out DIR [--seed S] [--per-kind N]` writes a NAB-layout folder:

* `DIR/data/<kind>/<kind>_<i>.csv` (`timestamp,value`, 5-minute steps, 14 days = 4032 rows);
* `DIR/data/labels/combined_windows.json` (NAB label windows: 10 % of the file's rows shared
  between its anomalies, each window centred on the anomaly's onset, as NAB sizes them);
* `DIR/split.json` (every file under `"public"`, so `score.py --files public --data-dir ...
  --windows ... --split ...` scores the suite with the unchanged NAB scorer).

Each kind has `--per-kind` files (default 4), one on each base series, in turn:

| base | series |
| --- | --- |
| `daily` | daily season (two harmonics) + Gaussian noise |
| `weekly_t` | daily + weekly season (weekend dip) + Student-t noise with 3 degrees of freedom |
| `counts` | integer Poisson counts at a low daily-varying rate (mean about 3) |
| `walk` | no season: slowly wandering level (integrated AR(1) drift) + Gaussian noise |

Anomalous kinds (one or two anomalies a file, onsets in the last 70 % of the file, magnitudes
drawn relative to the base's noise scale): `spike`, `dip`, `level_shift`, `variance_change`,
`trend_change` (a ramp of 300-700 rows), `season_amplitude`, `phase_shift` (these two on
seasonal bases only: their `walk` file is `daily`), `flatline` (value stuck), `dropout` (value 0
for a while). Benign kinds (no window; every detection is a false positive): `clean` (base
only) and `counter_reset` (a cumulative counter of the base that restarts from 0 once, the
normal behaviour of a restarted process).

`report --nab NAB --data DIR --results RESULTS` scores a backtest of the suite with `score.py`
(standard profile, one threshold optimised over the whole suite) and prints the score per kind
at that threshold: normalised score and windows found for anomalous kinds, false-positive rows
and their cost for the benign ones.
"""
import argparse
import importlib.util
import json
import os
import sys

import numpy as np

ROWS = 4032  # 14 days at 5 minutes
STEP_S = 300
DAY = 288
START = np.datetime64("2026-01-05T00:00:00")
BASES = ["daily", "weekly_t", "counts", "walk"]
ANOMALOUS = ["spike", "dip", "level_shift", "variance_change", "trend_change",
             "season_amplitude", "phase_shift", "flatline", "dropout"]
BENIGN = ["clean", "counter_reset"]
SEASONAL_KINDS = ("season_amplitude", "phase_shift")


def base_series(kind, rng, n=ROWS):
    """(mean, noise, scale, integer) of a base: the expected path, the noise, its sd."""
    t = np.arange(n)
    ph = rng.uniform(0, 2 * np.pi)
    if kind == "daily":
        level = rng.uniform(20, 200)
        amp = level * rng.uniform(0.2, 0.5)
        mean = level + amp * np.sin(2 * np.pi * t / DAY + ph) \
            + 0.3 * amp * np.sin(4 * np.pi * t / DAY + 2 * ph)
        sd = amp * rng.uniform(0.05, 0.15)
        return mean, rng.normal(0, sd, n), sd, False
    if kind == "weekly_t":
        level = rng.uniform(50, 500)
        amp = level * rng.uniform(0.2, 0.4)
        dow = (t // DAY) % 7
        weekend = np.where(dow >= 5, 1.0 - rng.uniform(0.3, 0.5), 1.0)
        mean = (level + amp * np.sin(2 * np.pi * t / DAY + ph)) * weekend
        sd = amp * rng.uniform(0.05, 0.12)
        return mean, sd * rng.standard_t(3, n) / np.sqrt(3.0), sd, False
    if kind == "counts":
        rate = rng.uniform(2, 4) * (1 + 0.6 * np.sin(2 * np.pi * t / DAY + ph))
        return rate, None, float(np.sqrt(rate.mean())), True
    if kind == "walk":
        drift = np.cumsum(rng.normal(0, 0.02, n))
        drift -= np.convolve(drift, np.ones(200) / 200, mode="same") * 0.5
        sd = rng.uniform(1, 5)
        mean = rng.uniform(20, 100) + sd * np.cumsum(0.05 * drift) / 10
        return mean, rng.normal(0, sd, n), sd, False
    raise ValueError(kind)


def onsets(rng, count, n=ROWS):
    """`count` anomaly onsets in the last 70 % of the file, at least n/5 rows apart."""
    lo, hi = int(0.3 * n), int(0.92 * n)
    while True:
        o = sorted(int(x) for x in rng.integers(lo, hi, count))
        if all(b - a >= n // 5 for a, b in zip(o, o[1:])):
            return o


def inject(kind, mean, noise, sd, rng, at, t_len):
    """Applies one anomaly of `kind` at row `at` to (mean, noise) in place."""
    n = len(mean)
    end = min(n, at + t_len)
    if kind == "spike":
        w = int(rng.integers(1, 4))
        mean[at:at + w] += sd * rng.uniform(6, 12)
    elif kind == "dip":
        w = int(rng.integers(1, 4))
        mean[at:at + w] -= sd * rng.uniform(6, 12)
    elif kind == "level_shift":
        mean[at:] += sd * rng.uniform(3, 6) * rng.choice([-1, 1])
    elif kind == "variance_change":
        noise[at:end] *= rng.uniform(3, 5)
    elif kind == "trend_change":
        slope = sd * rng.uniform(4, 8) / 200.0 * rng.choice([-1, 1])
        ramp = np.minimum(np.arange(n - at), int(rng.integers(300, 700)))
        mean[at:] += slope * ramp
    elif kind == "season_amplitude":
        k = np.ones(DAY)
        centre = np.convolve(mean, k, mode="same") / np.convolve(np.ones(n), k, mode="same")
        f = rng.choice([rng.uniform(0.1, 0.3), rng.uniform(2.0, 3.0)])
        mean[at:] = centre[at:] + f * (mean[at:] - centre[at:])
    elif kind == "phase_shift":
        shift = int(DAY * rng.uniform(0.2, 0.4))
        mean[at:] = np.roll(mean, shift)[at:]
    elif kind == "flatline":
        mean[at:end] = mean[at] + noise[at]
        noise[at:end] = 0.0
    elif kind == "dropout":
        mean[at:end] = 0.0
        noise[at:end] = 0.0
    else:
        raise ValueError(kind)


def make_file(kind, base, rng):
    """(values, onsets) of one file."""
    mean, noise, sd, integer = base_series(base, rng)
    if integer:
        # counts: anomalies act on the rate, the noise is Poisson of the result
        noise = np.zeros_like(mean)
    ons = []
    if kind in ANOMALOUS:
        count = 1 if kind in ("level_shift", "trend_change", "season_amplitude",
                              "phase_shift") else int(rng.integers(1, 3))
        ons = onsets(rng, count)
        for at in ons:
            inject(kind, mean, noise, sd, rng, at, int(rng.integers(60, 300)))
    if integer:
        lam = np.clip(mean, 0, None)
        v = rng.poisson(lam).astype(float)
        if kind == "variance_change":
            for at in ons:
                end = min(len(v), at + 200)
                v[at:end] = rng.poisson(lam[at:end] * rng.gamma(0.5, 2.0, end - at))
        if kind == "flatline":
            for at in ons:
                v[at:at + 150] = v[at]
    else:
        v = mean + noise
    if kind == "counter_reset":
        inc = np.clip(v - v.min(), 0, None) if not integer else v
        c = np.cumsum(inc)
        at = onsets(rng, 1)[0]
        c[at:] -= c[at - 1]
        v = c
    return v, ons


def windows_for(ons, n=ROWS):
    """NAB windows: 10 % of the rows shared by the anomalies, centred on each onset."""
    if not ons:
        return []
    w = int(0.1 * n / len(ons))
    ts = START + np.arange(n) * np.timedelta64(STEP_S, "s")
    out = []
    for o in ons:
        s, e = max(0, o - w // 2), min(n - 1, o + w // 2)
        out.append([fmt(ts[s]), fmt(ts[e])])
    return out


def fmt(t):
    """NAB timestamp text."""
    return str(t).replace("T", " ")


def generate(out, seed, per_kind):
    """Writes the suite under `out`."""
    rng = np.random.default_rng(seed)
    labels, files = {}, []
    ts = START + np.arange(ROWS) * np.timedelta64(STEP_S, "s")
    stamps = [fmt(t) for t in ts]
    for kind in ANOMALOUS + BENIGN:
        os.makedirs(os.path.join(out, "data", kind), exist_ok=True)
        for i in range(per_kind):
            base = BASES[i % len(BASES)]
            if kind in SEASONAL_KINDS and base == "walk":
                base = "daily"  # a season change needs a season
            v, ons = make_file(kind, base, rng)
            rel = f"{kind}/{kind}_{i}_{base}.csv"
            with open(os.path.join(out, "data", rel), "w") as f:
                f.write("timestamp,value\n")
                for s, x in zip(stamps, v):
                    f.write(f"{s},{x:.6g}\n")
            labels[rel] = windows_for(ons)
            files.append(rel)
    os.makedirs(os.path.join(out, "data", "labels"), exist_ok=True)
    with open(os.path.join(out, "data", "labels", "combined_windows.json"), "w") as f:
        json.dump(labels, f, indent=1)
    with open(os.path.join(out, "split.json"), "w") as f:
        json.dump({"seed": seed, "public": files}, f, indent=1)
    print(f"{len(files)} files, {sum(len(w) for w in labels.values())} windows under {out}")


def group_figures(fs, thr, prof):
    """NAB figures of a group of scored files (`score.py`'s file terms) at threshold `thr`:
    (normalised score as a 7-wide text, "-" without windows; windows found; windows;
    false-positive rows; their cost)."""
    per = [f.score_at(thr) for f in fs]
    raw = sum(p["score"] for p in per)
    n_w = sum(p["windows"] for p in per)
    found = sum(p["windows_detected"] for p in per)
    fp = sum(p["fp_rows"] for p in per)
    fp_cost = sum(float(f.weight[(f.scores >= thr) & (f.win_id < 0)].sum()) for f in fs)
    null = sum(-prof["fn"] * len(f.scorable_windows) for f in fs)
    perfect = prof["tp"] * sum(f.n_windows for f in fs)
    norm = f"{100.0 * (raw - null) / (perfect - null):7.1f}" if perfect != null else "      -"
    return norm, found, n_w, fp, fp_cost


def report(nab, data, results):
    """Per-kind NAB figures of a backtest of the suite at one suite-wide threshold."""
    spec = importlib.util.spec_from_file_location("nab_score", os.path.join(nab, "score.py"))
    sc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sc)
    prof = sc.PROFILES["standard"]
    with open(os.path.join(data, "data", "labels", "combined_windows.json")) as f:
        windows = json.load(f)
    rels = sc.load_split("public", os.path.join(data, "split.json"), windows)
    files = [sc.load_file_terms(r, results, os.path.join(data, "data"), windows, prof, None)
             for r in rels]
    thr, raw = sc.optimise(files)
    null = sum(-prof["fn"] * len(f.scorable_windows) for f in files)
    perfect = prof["tp"] * sum(f.n_windows for f in files)
    print(f"synthetic suite: {len(files)} files, threshold {thr:.6f} (optimised over the suite)")
    print(f"{'kind':18s} {'score':>7s} {'windows':>9s} {'fp_rows':>8s} {'fp_cost':>8s}")
    for kind in ANOMALOUS + BENIGN:
        fs = [f for f, r in zip(files, rels) if r.startswith(kind + "/")]
        if not fs:
            continue
        norm, det, n_w, fp, fp_cost = group_figures(fs, thr, prof)
        print(f"{kind:18s} {norm} {det:4d}/{n_w:<4d} {fp:8d} {fp_cost:8.2f}")
    total = 100.0 * (raw - null) / (perfect - null)
    print(f"suite total (normalised): {total:.2f}")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write the suite")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=20261203)
    g.add_argument("--per-kind", type=int, default=4)
    r = sub.add_parser("report", help="score a backtest of the suite per kind")
    r.add_argument("--nab", required=True, help="NAB folder (for score.py)")
    r.add_argument("--data", required=True, help="folder written by generate")
    r.add_argument("--results", required=True, help="backtest output of DATA/data")
    a = ap.parse_args()
    if a.cmd == "generate":
        generate(a.out, a.seed, a.per_kind)
    else:
        report(a.nab, a.data, a.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
