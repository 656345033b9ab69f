#!/usr/bin/env python3
"""Cross-validated NAB score of one or more model configurations.

The public NAB split has 29 files; the same configuration is later scored on 29 files we do not
have, with the threshold optimised on those. A full-set score alone rewards fitting these files,
so this script backtests each configuration once over all files and then scores:

* full     the 29 files, threshold optimised (what `make bench-detector-nab` prints);
* halves   `--splits` fixed-seed random half-splits (14 + 15 files), each half scored on its own
           with its own optimised threshold (2 x splits numbers): mean, sd, min, max;
* boot     `--boot` bootstrap resamples of 29 files drawn with replacement, threshold optimised
           per resample: mean and 10th percentile (a new 29-file set from the same population);
* loco     leave-one-category-out: for each category the threshold is optimised on the other
           categories and applied to it; the pooled, normalised result (is one threshold right
           for a category the threshold never saw?).

The splits and resamples are the same for every configuration (fixed seeds), so differences are
paired; with several configurations the paired mean difference against the first is printed, and
a nested check of the selection itself: for every split, the configuration best on one half is
scored on the other half (both ways). If that mean is not above the first configuration's mean,
choosing among these configurations on 14-15 files does not carry over to unseen files.

It imports the scorer (`score.py` of the NAB folder) and does not modify it.

    nab_cv.py --bin target/release/anomaly-detector --nab ../shared/nab-public \
        [--config A.yaml] [--set key=value,key=value] ... [--per-file]

Each `--config` or `--set` is one configuration (`--set` writes its keys as a YAML `ModelConfig`;
with none, the defaults are scored). `--results DIR` scores an existing results tree instead.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def load_scorer(nab):
    spec = importlib.util.spec_from_file_location("nab_score", os.path.join(nab, "score.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Corpus:
    """Per-file scoring terms of one results tree."""

    def __init__(self, sc, nab, results, prof):
        data_dir = os.path.join(nab, "data")
        with open(os.path.join(data_dir, "labels", "combined_windows.json")) as f:
            windows = json.load(f)
        rels = sc.load_split("public", os.path.join(nab, "split.json"), windows)
        self.sc = sc
        self.prof = prof
        self.files = [sc.load_file_terms(r, results, data_dir, windows, prof, None) for r in rels]
        self.names = rels

    def norm(self, idx):
        """Normalised score of the files `idx` (indices, repeats allowed), threshold optimised."""
        files = [self.files[i] for i in idx]
        _, raw = self.sc.optimise(files)
        return self.normalise(files, raw)

    def normalise(self, files, raw):
        null = sum(-self.prof["fn"] * len(f.scorable_windows) for f in files)
        perfect = self.prof["tp"] * sum(f.n_windows for f in files)
        return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")

    def loco(self):
        cats = sorted({n.split("/")[0] for n in self.names})
        raw = 0.0
        for c in cats:
            train = [f for f, n in zip(self.files, self.names) if not n.startswith(c + "/")]
            test = [f for f, n in zip(self.files, self.names) if n.startswith(c + "/")]
            thr, _ = self.sc.optimise(train)
            raw += sum(f.score_at(thr)["score"] for f in test)
        return self.normalise(self.files, raw)

    def per_file(self):
        thr, _ = self.sc.optimise(self.files)
        return thr, [f.score_at(thr) for f in self.files]


def splits(n, count, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        p = rng.permutation(n)
        out.append((sorted(p[: n // 2]), sorted(p[n // 2:])))
    return out


def boots(n, count, seed):
    rng = np.random.default_rng(seed + 1)
    return [rng.integers(0, n, n) for _ in range(count)]


def run_backtest(binary, nab, cfg_path, out):
    cmd = [binary, "backtest", "--input", os.path.join(nab, "data"), "--output", out]
    if cfg_path:
        cmd += ["--config", cfg_path]
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"backtest failed ({' '.join(cmd)}):\n{r.stderr}")
    return time.time() - t0


def parse_value(v):
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="anomaly-detector binary")
    ap.add_argument("--nab", required=True, help="NAB folder (data/, split.json, score.py)")
    ap.add_argument("--config", action="append", default=[], help="ModelConfig YAML (repeatable)")
    ap.add_argument("--set", action="append", default=[], dest="sets",
                    help="key=value[,key=value] model settings: one configuration (repeatable)")
    ap.add_argument("--results", help="score this existing results tree (no backtest)")
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--per-file", action="store_true")
    ap.add_argument("--json", help="write the figures of every configuration here")
    ap.add_argument("--keep", action="store_true", help="keep the results trees (path printed)")
    a = ap.parse_args()

    sc = load_scorer(a.nab)
    prof = sc.PROFILES["standard"]
    configs = [(c, c) for c in a.config]
    tmp = tempfile.mkdtemp(prefix="nab_cv_")
    for i, s in enumerate(a.sets):
        d = dict(kv.split("=", 1) for kv in s.split(",") if kv)
        p = os.path.join(tmp, f"set{i}.yaml")
        with open(p, "w") as f:
            for k, v in d.items():
                f.write(f"{k}: {json.dumps(parse_value(v))}\n")
        configs.append((s, p))
    if not configs:
        configs = [("defaults", None)]

    results = []
    all_halves = []
    first = None
    for name, path in configs:
        if a.results:
            out, secs = a.results, 0.0
        else:
            out = os.path.join(tmp, f"out{len(results)}")
            secs = run_backtest(a.bin, a.nab, path, out)
        corpus = Corpus(sc, a.nab, out, prof)
        n = len(corpus.files)
        sp = splits(n, a.splits, a.seed)
        halves = np.array([corpus.norm(h) for pair in sp for h in pair])
        bs = np.array([corpus.norm(b) for b in boots(n, a.boot, a.seed)])
        full = corpus.norm(range(n))
        loco = corpus.loco()
        r = dict(config=name, full=full, halves_mean=float(halves.mean()),
                 halves_sd=float(halves.std(ddof=1)), halves_min=float(halves.min()),
                 halves_max=float(halves.max()), boot_mean=float(bs.mean()),
                 boot_p10=float(np.percentile(bs, 10)), loco=loco, backtest_s=secs)
        print(f"config: {name}")
        print(f"  full {full:6.2f} | halves {r['halves_mean']:6.2f} +- {r['halves_sd']:5.2f} "
              f"[{r['halves_min']:.1f}, {r['halves_max']:.1f}] (n={len(halves)}) | "
              f"boot {r['boot_mean']:6.2f} p10 {r['boot_p10']:6.2f} | loco {loco:6.2f} | "
              f"backtest {secs:.1f}s")
        if first is None:
            first = (halves, bs, corpus)
        else:
            dh = halves - first[0]
            db = bs - first[1]
            r["d_halves"] = float(dh.mean())
            r["d_boot"] = float(db.mean())
            print(f"  vs first: halves {dh.mean():+6.2f} (sd {dh.std(ddof=1):.2f}, "
                  f"better in {(dh > 0).sum()}/{len(dh)}) | boot {db.mean():+6.2f} "
                  f"(better in {(db > 0).sum()}/{len(db)})")
        if a.per_file:
            thr, pf = corpus.per_file()
            print(f"  threshold {thr:.6f}")
            base = first[2].per_file()[1] if first[2] is not corpus else None
            for i, (nm, p) in enumerate(zip(corpus.names, pf)):
                extra = f"  ({p['score'] - base[i]['score']:+.3f})" if base else ""
                print(f"    {nm:55s} {p['score']:8.3f} {p['windows_detected']}/{p['windows']} "
                      f"fp={p['fp_rows']}{extra}")
        results.append(r)
        all_halves.append(halves)
        sys.stdout.flush()
    if len(all_halves) > 1:
        h = np.array(all_halves)  # configs x (2 * splits): A0, B0, A1, B1, ...
        picked, chosen = [], []
        for k in range(h.shape[1] // 2):
            for tr, te in ((2 * k, 2 * k + 1), (2 * k + 1, 2 * k)):
                c = int(np.argmax(h[:, tr]))
                chosen.append(c)
                picked.append(h[c, te])
        picked = np.array(picked)
        counts = np.bincount(chosen, minlength=len(h))
        print(f"nested: configuration chosen on one half, scored on the other: "
              f"{picked.mean():6.2f} (first configuration {h[0].mean():6.2f}, "
              f"paired {np.mean(picked - h[0]):+.2f})")
        print("  chosen: " + ", ".join(f"{configs[i][0]} x{n}" for i, n in enumerate(counts) if n))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if a.keep:
        print(f"results kept under {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
