#!/usr/bin/env python3
"""Nested cross-validated NAB score of the detector's *selection procedure*.

The public NAB split has 29 files; the shipped configuration is later scored on 29 files we do
not have. Any constant chosen while looking at all 29 files leaks into a plain cross-validation,
so here every tuned choice is made inside the training folds only:

* the **candidates** are a fixed list of `ModelConfig` settings (`--grid FILE.json`, default
  `nab_grid_defaults.json` beside this script: the shipped defaults alone; `--set` adds
  candidates). The NAB threshold is a tuned constant too and is always chosen on the training
  files.
* **inner selection** (training files only): each candidate's inner leave-one-category-out
  score (threshold optimised on the other training categories, applied to the held-out one,
  pooled); the best candidate wins, then its threshold is optimised on all training files.
* **outer folds**: `--repeats` repeated stratified halves (the files of each category shuffled
  and dealt alternately to two halves; each half scored once as the test fold, trained on the
  other) and leave-one-category-out (the two artificial categories form one group: the
  no-anomaly files alone have no window to score). Each test fold is normalised on its own.

Printed: outer mean, sd, worst fold, and the public score (the candidate the same procedure
selects on all 29 files, scored on them with its optimised threshold: what ships and what
`make bench-detector-nab` measures) side by side. With `--compare GRID.json` a second candidate
list is run on the same outer folds and the frozen decision rule is applied (docs/anomaly-model.md,
*Decision rule*): the change lands only if the mean paired improvement of the per-repeat nested
scores exceeds the standard deviation of that improvement over the repeats.

`--score alert` scores where the live service starts an alert (`backtest --score alert`)
instead of the onset scores; with `--as-paged` no threshold is optimised anywhere (every
detection counts: every alert the service would send), so only the candidate is chosen inside.

Every candidate is backtested once over all files (the backtest is causal and per file, so a
file's scores do not depend on which fold it is in). It imports the unchanged `score.py`.

    nab_cv.py --bin target/release/anomaly-detector --nab ../shared/nab-public \
        [--grid G.json] [--compare G2.json] [--set key=value,...] [--jobs 2] [--json OUT]
        [--score onset|alert] [--as-paged]
"""
import argparse
import concurrent.futures
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GRID = os.path.join(HERE, "nab_grid_defaults.json")
# the no-anomaly files have no window: alone they cannot be a test fold
MERGE = {"artificialNoAnomaly": "artificial", "artificialWithAnomaly": "artificial"}


def load_scorer(nab):
    """Imports `score.py` of the NAB folder as a module."""
    spec = importlib.util.spec_from_file_location("nab_score", os.path.join(nab, "score.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def group_of(rel):
    """Category group of a file for the folds."""
    cat = rel.split("/")[0]
    return MERGE.get(cat, cat)


class Dataset:
    """Labels and file list of a NAB-layout folder; builds per-candidate scoring terms."""

    def __init__(self, sc, nab, data_dir=None, windows=None, split=None):
        self.sc = sc
        self.prof = sc.PROFILES["standard"]
        self.data_dir = data_dir or os.path.join(nab, "data")
        wpath = windows or os.path.join(self.data_dir, "labels", "combined_windows.json")
        with open(wpath) as f:
            self.windows = json.load(f)
        self.names = sc.load_split("public", split or os.path.join(nab, "split.json"),
                                   self.windows)
        self.groups = [group_of(n) for n in self.names]

    def terms(self, results):
        """Per-file scoring terms of one results tree, with the sweep events cached."""
        files = []
        for rel in self.names:
            f = self.sc.load_file_terms(rel, results, self.data_dir, self.windows, self.prof, None)
            ev = f.sweep_events()
            f.sweep_events = (lambda ev=ev: ev)
            files.append(f)
        return files


def normalise(prof, files, raw):
    """NAB normalisation of a raw score over `files` (NaN when they hold no window)."""
    null = sum(-prof["fn"] * len(f.scorable_windows) for f in files)
    perfect = prof["tp"] * sum(f.n_windows for f in files)
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


class Nested:
    """The selection procedure and its nested evaluation over a list of candidates."""

    def __init__(self, sc, prof, groups, cand_terms, fixed_threshold=None):
        self.sc = sc
        self.prof = prof
        self.groups = np.array(groups)
        self.terms = cand_terms  # candidates x files
        # with a fixed threshold nothing is optimised: every detection counts (alerts as paged)
        self.fixed = fixed_threshold

    def threshold(self, files):
        """The threshold chosen on `files` (or the fixed one)."""
        if self.fixed is not None:
            return self.fixed
        return self.sc.optimise(files)[0]

    def inner_score(self, c, train):
        """Leave-one-group-out score of candidate `c` within the files `train` (pooled)."""
        files = self.terms[c]
        raw = 0.0
        gs = sorted(set(self.groups[train]))
        if len(gs) < 2:
            fs = [files[i] for i in train]
            raw = sum(f.score_at(self.threshold(fs))["score"] for f in fs)
            return normalise(self.prof, fs, raw)
        for g in gs:
            tr = [files[i] for i in train if self.groups[i] != g]
            te = [files[i] for i in train if self.groups[i] == g]
            thr = self.threshold(tr)
            raw += sum(f.score_at(thr)["score"] for f in te)
        return normalise(self.prof, [files[i] for i in train], raw)

    def select(self, train):
        """(candidate, threshold) chosen on the files `train` only."""
        scores = [self.inner_score(c, train) for c in range(len(self.terms))]
        c = int(np.argmax(scores))  # first best: the list order breaks ties
        return c, self.threshold([self.terms[c][i] for i in train])

    def test(self, c, thr, test):
        """Normalised score of candidate `c` at `thr` on the files `test`."""
        files = [self.terms[c][i] for i in test]
        raw = sum(f.score_at(thr)["score"] for f in files)
        return normalise(self.prof, files, raw)

    def fold(self, train, test):
        """One outer fold: select on `train`, score on `test`."""
        c, thr = self.select(train)
        return self.test(c, thr, test), c

    def public(self):
        """What ships: the candidate selected on all files, scored on them (threshold optimised)."""
        all_ = list(range(len(self.groups)))
        c, thr = self.select(all_)
        files = [self.terms[c][i] for i in all_]
        return normalise(self.prof, files, sum(f.score_at(thr)["score"] for f in files)), c


def stratified_halves(groups, repeats, seed):
    """`repeats` pairs of halves, each category's files dealt alternately after a shuffle."""
    rng = np.random.default_rng(seed)
    out = []
    gs = sorted(set(groups))
    for _ in range(repeats):
        a, b = [], []
        flip = 0
        for g in gs:
            idx = [i for i, x in enumerate(groups) if x == g]
            idx = list(rng.permutation(idx))
            for k, i in enumerate(idx):
                (a if (k + flip) % 2 == 0 else b).append(int(i))
            flip ^= len(idx) % 2  # balance the odd files between the halves
        out.append((sorted(a), sorted(b)))
    return out


def evaluate(nested, groups, repeats, seed):
    """Outer folds of one candidate list: per-repeat, per-half and per-category figures."""
    n = len(groups)
    halves, reps, chosen = [], [], []
    for a, b in stratified_halves(groups, repeats, seed):
        sa, ca = nested.fold(b, a)
        sb, cb = nested.fold(a, b)
        halves += [sa, sb]
        reps.append((sa + sb) / 2.0)
        chosen += [ca, cb]
    loco = {}
    for g in sorted(set(groups)):
        test = [i for i in range(n) if groups[i] == g]
        train = [i for i in range(n) if groups[i] != g]
        s, c = nested.fold(train, test)
        loco[g] = s
        chosen.append(c)
    pub, pub_c = nested.public()
    return dict(halves=halves, repeats=reps, loco=loco, public=pub, public_choice=pub_c,
                chosen=chosen)


def parse_value(v):
    """YAML-ish scalar from a `--set` value."""
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def load_grid(path):
    """Candidate list: [{"name": .., "set": {key: value}}]."""
    with open(path) as f:
        grid = json.load(f)
    return [(c["name"], c.get("set", {})) for c in grid["candidates"]]


def run_backtest(binary, data_dir, settings, tmp, key, score="onset"):
    """Backtests one candidate over every file (`score`: the column the backtest writes, see
    `anomaly-detector backtest --score`); returns its results directory."""
    out = os.path.join(tmp, f"out_{key}")
    if os.path.isdir(out):
        return out
    cfg = os.path.join(tmp, f"cfg_{key}.yaml")
    with open(cfg, "w") as f:
        for k, v in settings.items():
            f.write(f"{k}: {json.dumps(v)}\n")
    cmd = [binary, "backtest", "--input", data_dir, "--output", out, "--config", cfg,
           "--score", score]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"backtest failed ({' '.join(cmd)}):\n{r.stderr}")
    return out


def summary(label, names, res):
    """Prints the figures of one candidate list."""
    h = np.array(res["halves"])
    reps = np.array(res["repeats"])
    lo = res["loco"]
    lv = np.array(list(lo.values()))
    print(f"{label}:")
    print(f"  nested halves ({len(reps)} repeats x 2): mean {h.mean():6.2f}  sd {h.std(ddof=1):5.2f}"
          f"  worst {h.min():6.2f}  best {h.max():6.2f}  (sd of repeat means "
          f"{reps.std(ddof=1):.2f})")
    print(f"  nested leave-one-category-out: mean {lv.mean():6.2f}  sd {lv.std(ddof=1):5.2f}"
          f"  worst {lv.min():6.2f} ({min(lo, key=lo.get)})")
    print("    " + "  ".join(f"{g} {s:.1f}" for g, s in lo.items()))
    print(f"  public (selected on all 29, scored on them): {res['public']:6.2f}  "
          f"[{names[res['public_choice']]}]")
    counts = np.bincount(res["chosen"], minlength=len(names))
    print("  chosen in outer folds: " +
          ", ".join(f"{names[i]} x{k}" for i, k in enumerate(counts) if k))


def decision(base, new):
    """The frozen decision rule on the per-repeat nested scores (paired)."""
    d = np.array(new["repeats"]) - np.array(base["repeats"])
    spread = float(d.std(ddof=1)) if len(d) > 1 else float("inf")
    lands = bool(d.mean() > spread)
    lo = np.array(list(new["loco"].values())) - np.array(list(base["loco"].values()))
    print(f"decision: nested halves {np.mean(new['halves']):.2f} vs {np.mean(base['halves']):.2f}"
          f": paired improvement {d.mean():+.2f}, spread (sd over repeats) {spread:.2f}, "
          f"better in {(d > 0).sum()}/{len(d)} repeats; loco {lo.mean():+.2f} -> "
          f"{'LANDS' if lands else 'does not land'}")
    return dict(delta=float(d.mean()), spread=spread, lands=lands)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="anomaly-detector binary")
    ap.add_argument("--nab", required=True, help="NAB folder (data/, split.json, score.py)")
    ap.add_argument("--grid", default=DEFAULT_GRID, help="candidate list (JSON)")
    ap.add_argument("--compare", help="second candidate list, judged by the decision rule")
    ap.add_argument("--set", action="append", default=[], dest="sets",
                    help="key=value[,key=value]: one more candidate for --grid (repeatable)")
    ap.add_argument("--data-dir", help="data folder (default NAB/data; e.g. the synthetic suite)")
    ap.add_argument("--windows", help="label windows JSON (default DATA/labels/...)")
    ap.add_argument("--split", help="split.json listing the files under 'public'")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--jobs", type=int, default=2, help="backtests run at once")
    ap.add_argument("--each", action="store_true",
                    help="also evaluate every candidate alone (only the threshold selected)")
    ap.add_argument("--score", choices=["onset", "alert"], default="onset",
                    help="what is scored: onset scores (default) or the live alert rule's alert "
                         "starts (`backtest --score alert`)")
    ap.add_argument("--as-paged", action="store_true",
                    help="no threshold is optimised: every detection counts (with --score alert: "
                         "every alert the service would send)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the results trees (path printed)")
    a = ap.parse_args()

    sc = load_scorer(a.nab)
    ds = Dataset(sc, a.nab, a.data_dir, a.windows, a.split)
    grids = {"grid": load_grid(a.grid)}
    for s in a.sets:
        grids["grid"].append((s, {k: parse_value(v) for k, v in
                                  (kv.split("=", 1) for kv in s.split(",") if kv)}))
    if a.compare:
        grids["compare"] = load_grid(a.compare)
    tmp = tempfile.mkdtemp(prefix="nab_cv_")
    keys = {}
    for cands in grids.values():
        for _, st in cands:
            keys.setdefault(json.dumps(st, sort_keys=True), st)
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        futs = {k: ex.submit(run_backtest, a.bin, ds.data_dir, st, tmp, i, a.score)
                for i, (k, st) in enumerate(keys.items())}
        outs = {k: f.result() for k, f in futs.items()}
    t_bt = time.time() - t0
    terms = {k: ds.terms(o) for k, o in outs.items()}
    t1 = time.time()
    results = {}
    # every detection of a written score is > 0; counting them all = a threshold just above 0
    fixed = 1e-9 if a.as_paged else None
    print(f"scored: {a.score} scores" + (", every detection counted (no threshold optimised)"
                                         if fixed else ", threshold optimised on training files"))
    for label, cands in grids.items():
        nested = Nested(sc, ds.prof, ds.groups,
                        [terms[json.dumps(st, sort_keys=True)] for _, st in cands], fixed)
        res = evaluate(nested, ds.groups, a.repeats, a.seed)
        names = [n for n, _ in cands]
        summary(f"{label} ({a.grid if label == 'grid' else a.compare}, {len(cands)} candidates)",
                names, res)
        res["candidates"] = names
        results[label] = res
    if a.each:
        print("each candidate alone (threshold chosen on the training folds), paired against the "
              "first of --grid:")
        first = None
        for name, st in grids["grid"] + grids.get("compare", []):
            k = json.dumps(st, sort_keys=True)
            res = evaluate(Nested(sc, ds.prof, ds.groups, [terms[k]], fixed), ds.groups,
                           a.repeats, a.seed)
            h, lv = np.array(res["halves"]), np.array(list(res["loco"].values()))
            reps = np.array(res["repeats"])
            first = reps if first is None else first
            d = reps - first
            print(f"  {name:45s} halves {h.mean():6.2f} sd {h.std(ddof=1):5.2f} worst "
                  f"{h.min():6.2f} | loco {lv.mean():6.2f} worst {lv.min():6.2f} | public "
                  f"{res['public']:6.2f} | paired {d.mean():+6.2f} sd {d.std(ddof=1):5.2f}")
    if "compare" in results:
        results["decision"] = decision(results["grid"], results["compare"])
    print(f"({len(keys)} backtests {t_bt:.1f}s with {a.jobs} jobs, scoring "
          f"{time.time() - t1:.1f}s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if a.keep:
        print(f"results kept under {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
