#!/usr/bin/env python3
"""Where the NAB score is lost: missed windows, false positives and threshold transfer.

Backtests one configuration twice (onset scores, what the scorer sees, and raw scores) over the
public NAB files and prints, at the threshold `score.py` optimises on all of them:

* every missed window: the largest raw score inside it (was the event seen at all?) and the
  significant onsets (score >= 0.5) in the `suppress_points` before it (was it suppressed?);
* the public score with one threshold, with one threshold per category and per file (in-sample
  upper bounds: what a perfectly transferred threshold could give);
* the nested half folds of `nab_cv.py` (same seed) scored three ways: at the threshold chosen on
  the training half (the nested estimate), at the all-files threshold (leaky) and at each test
  half's own best threshold (an oracle), and the files of the worst folds.

    nab_misses.py --bin target/release/anomaly-detector --nab ../shared/nab-public \
        [--config model.yaml] [--repeats 10] [--seed 20261203]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_cv  # noqa: E402  (beside this script)

SIGNIFICANT = 0.5  # the band edge; the onset rules start there (SIGNIFICANT_SCORE)


def backtest(binary, data_dir, out, config, raw):
    """Backtests every file into `out`."""
    cmd = [binary, "backtest", "--input", data_dir, "--output", out]
    if config:
        cmd += ["--config", config]
    if raw:
        cmd.append("--raw-score")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"backtest failed ({' '.join(cmd)}):\n{r.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="anomaly-detector binary")
    ap.add_argument("--nab", required=True, help="NAB folder (data/, split.json, score.py)")
    ap.add_argument("--config", help="ModelConfig YAML (default: the defaults)")
    ap.add_argument("--suppress-points", type=int, default=400,
                    help="look-back for earlier onsets (the configuration's suppress_points)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261203)
    a = ap.parse_args()

    sc = nab_cv.load_scorer(a.nab)
    ds = nab_cv.Dataset(sc, a.nab)
    tmp = tempfile.mkdtemp(prefix="nab_misses_")
    try:
        backtest(a.bin, ds.data_dir, os.path.join(tmp, "onset"), a.config, False)
        backtest(a.bin, ds.data_dir, os.path.join(tmp, "raw"), a.config, True)
        onset = ds.terms(os.path.join(tmp, "onset"))
        raw = ds.terms(os.path.join(tmp, "raw"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prof = ds.prof
    thr, total = sc.optimise(onset)
    print(f"threshold {thr:.4f} (optimised on all {len(onset)} files), public score "
          f"{nab_cv.normalise(prof, onset, total):.2f}")

    print("missed windows:")
    seen = suppressed = 0
    for f, r in zip(onset, raw):
        for k in f.scorable_windows:
            rows = np.flatnonzero(f.win_id == k)
            if f.scores[rows].max() >= thr:
                continue
            start = rows[0]
            lo = max(0, start - a.suppress_points)
            before = [(int(start - i), float(f.scores[i])) for i in range(lo, start)
                      if f.scores[i] >= SIGNIFICANT]
            peak = float(r.scores[rows].max())
            kind = "weak"
            if peak >= thr:
                seen += 1
                kind = "suppressed" if before else "seen, no onset"
                suppressed += bool(before)
            prev = ", ".join(f"{s:.3f} {d} points before" for d, s in before[-3:]) or "none"
            print(f"  {f.name} window {k}: raw max {peak:.3f} ({kind}); significant onsets "
                  f"before: {prev}")
    print(f"  {seen} of the missed windows have a raw score above the threshold, "
          f"{suppressed} of them after an earlier significant onset")

    per_file = sum(sc.optimise([f])[1] for f in onset)
    cats = {}
    for f, g in zip(onset, ds.groups):
        cats.setdefault(g, []).append(f)
    per_cat = 0.0
    print("best threshold per category: " + ", ".join(
        f"{g} {sc.optimise(fs)[0]:.3f}" for g, fs in sorted(cats.items())))
    for fs in cats.values():
        per_cat += sc.optimise(fs)[1]
    print(f"in-sample bounds: one threshold per category "
          f"{nab_cv.normalise(prof, onset, per_cat):.2f}, per file "
          f"{nab_cv.normalise(prof, onset, per_file):.2f}")

    nested = nab_cv.Nested(sc, prof, ds.groups, [onset])
    rows = []
    for a_half, b_half in nab_cv.stratified_halves(ds.groups, a.repeats, a.seed):
        for train, test in ((b_half, a_half), (a_half, b_half)):
            c, t = nested.select(train)
            files = [onset[i] for i in test]
            _, own = sc.optimise(files)
            rows.append((nested.test(c, t, test), t, nested.test(c, thr, test),
                         nab_cv.normalise(prof, files, own), test))
    h = np.array([x[:4] for x in rows], dtype=float)
    print(f"half folds ({len(rows)}): nested {h[:, 0].mean():.2f} (worst {h[:, 0].min():.2f}); "
          f"at the all-files threshold {h[:, 2].mean():.2f} (worst {h[:, 2].min():.2f}); at "
          f"each test half's own best threshold {h[:, 3].mean():.2f} (worst {h[:, 3].min():.2f})")
    for s, t, s_all, s_own, test in sorted(rows, key=lambda x: x[0])[:3]:
        print(f"  fold {s:.2f} (trained threshold {t:.3f}; all-files threshold {s_all:.2f}; own "
              f"best {s_own:.2f}):")
        for i in test:
            x = onset[i].score_at(t)
            if x["windows"] or x["fp_rows"]:
                print(f"    {onset[i].name:55s} {x['windows_detected']}/{x['windows']} windows,"
                      f" {x['fp_rows']} false-positive rows")


if __name__ == "__main__":
    main()
