"""This project's networks against scikit-learn models on the same splits and test rows.

    python train.py --seeds 0,1,2,3,4 --output runs/cmp_default          # and other runs
    python benchmarks/compare_models.py --run default=runs/cmp_default \\
        [--run NAME=RUN_DIR ...] [--resamples 2000] [--bootstrap-seed 0]

Issue 17.4. The first ``--run`` is the reference (the default command); every run must be a
``train.py`` run on the bundled UCI table with the same seeds and splits (its
``splits.json`` is read and compared; a run on other rows is refused). For each seed of the
reference run's ``splits.json`` the script fits, on the same rows and the features of
docs/results.md,

* scikit-learn ``HistGradientBoostingClassifier`` (native categoricals, lr 0.05, at most
  300 iterations, its own early stopping on 15/85 of its fit rows),
* scikit-learn ``MLPClassifier((64, 64), early_stopping=True)`` and
  ``LogisticRegression(max_iter=2000)`` on the network's 80 preprocessed inputs,

each on train + dev (they choose their iterations on an internal split; the networks of
``train.py`` train on train and stop early on dev), and scores the test rows. The runs'
networks and the reference run's logistic-regression baseline are read from each run's
``test_predictions.csv``; their dev metrics from ``metrics.json``.

Printed (markdown):

1. per model: test ROC-AUC and PR-AUC, mean ± std (ddof 1) over the seeds, and the paired
   bootstrap 95 % interval of (model - HistGBM): ``nn_core/bootstrap.py`` resamples each
   seed's test rows with replacement, the same rows for every model, and takes the mean
   over the seeds of the per-seed difference (``--resamples`` resamples, seeded);
2. the ablation table: each run against the reference run, dev difference (the selection
   criterion: means over seeds of ``metrics.json``) and test difference with its paired
   interval.

Fit seconds per seed are measured in this process for the scikit-learn models and read
from ``metrics.json`` (``seconds`` / seeds: the whole ``train.py`` command, both models
and the files) for the runs: they depend on the machine's load.

Event-log runs (``train.py --events ...``; issue 17.6) are compared differently: their test
users are the same for every seed (time-based snapshots), so for each run the script prints
the network's and the baseline's test ROC-AUC and PR-AUC (mean ± std over seeds) and the
paired bootstrap interval of (network - baseline), with the test users drawn once per
resample for all seeds (``shared_rows``): the interval covers the sampling of users, the
mean over seeds the training randomness. No scikit-learn model is fitted there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nn_core.bootstrap import bootstrap_replicates, difference_interval  # noqa: E402
from nn_core.metrics import pr_auc, roc_auc  # noqa: E402

METRICS = ("roc_auc", "pr_auc")
HGB = "scikit-learn HistGradientBoostingClassifier"


@dataclass
class Scores:
    """One model's test scores per seed (rows in the order of the reference split)."""

    test: dict[int, np.ndarray]
    dev: dict[str, list[float]] = field(default_factory=dict)  # metric -> per-seed dev value
    seconds_per_seed: float = float("nan")


def read_run(run_dir: Path, kind: str = "table") -> tuple[dict, pd.DataFrame, dict]:
    """A run directory's ``splits.json``, ``test_predictions.csv`` and ``metrics.json``."""
    splits = json.loads((run_dir / "splits.json").read_text())
    if splits.get("kind") != kind:
        raise SystemExit(f"{run_dir / 'splits.json'}: not a "
                         f"{'session-table' if kind == 'table' else 'event-log'} run "
                         f"(kind {splits.get('kind')!r}); give runs of one kind")
    preds = pd.read_csv(run_dir / "test_predictions.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return splits, preds, metrics


def event_comparison(runs: dict[str, Path], resamples: int, seed: int) -> None:
    """Print network vs baseline per event-log run with the paired bootstrap interval."""
    print(f"paired bootstrap: {resamples} resamples of the test users (seed {seed}), the same "
          "users for every seed; statistic = mean over seeds of (network - baseline)\n")
    print("| run | users (buyers) | network ROC-AUC | baseline ROC-AUC | network − baseline "
          "ROC [95 % CI] | network PR-AUC | baseline PR-AUC | network − baseline PR [95 % CI] |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, run_dir in runs.items():
        _, preds, _ = read_run(run_dir, kind="events")
        seeds = sorted(preds["seed"].unique())
        blocks = [preds[preds["seed"] == s] for s in seeds]
        users = blocks[0].iloc[:, 1].to_numpy()
        if any(not np.array_equal(b.iloc[:, 1].to_numpy(), users) for b in blocks):
            raise SystemExit(f"{run_dir}: the seeds' test users differ (not an event-log run?)")
        y = [b["label"].to_numpy() for b in blocks]
        cells = []
        for m, f in (("roc_auc", roc_auc), ("pr_auc", pr_auc)):
            est, rep = bootstrap_replicates(
                y, {"net": [b["probability"].to_numpy() for b in blocks],
                    "base": [b["baseline_probability"].to_numpy() for b in blocks]},
                m, resamples, seed, shared_rows=True)
            res = difference_interval(est["net"] - est["base"], rep["net"] - rep["base"])
            cells += [mean_std([f(b["label"], b["probability"]) for b in blocks]),
                      mean_std([f(b["label"], b["baseline_probability"]) for b in blocks]),
                      interval(res)]
        print(f"| {name} | {len(y[0])} ({int(y[0].sum())}) | " + " | ".join(cells) + " |")


def run_scores(run_dir: Path, splits_ref: dict, column: str = "probability") -> Scores:
    """A run's test scores and dev metrics, checked to be on the reference's rows."""
    splits, preds, metrics = read_run(run_dir)
    if splits["seeds"] != splits_ref["seeds"]:
        raise SystemExit(f"{run_dir}: its splits.json differs from the reference run's "
                         "(other seeds or rows)")
    test = {}
    for seed, part in splits_ref["seeds"].items():
        rows = preds[preds["seed"] == int(seed)]
        if rows["row"].tolist() != part["test"]:
            raise SystemExit(f"{run_dir / 'test_predictions.csv'}: seed {seed}'s rows are not "
                             "its splits.json test rows")
        test[int(seed)] = rows[column].to_numpy(dtype=np.float64)
    which = "baseline" if column == "baseline_probability" else "model"
    dev = {m: [r[which]["dev"][m] for r in metrics["runs"]] for m in METRICS}
    return Scores(test, dev, metrics["seconds"] / len(metrics["runs"]))


def sklearn_scores(splits_ref: dict, with_mlp: bool) -> tuple[dict[str, Scores], np.ndarray]:
    """Fit the scikit-learn models per seed on train + dev; their test scores and labels."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from features.tabular import Preprocessor, Schema, load_table

    schema = Schema.uci()
    df = load_table(splits_ref["path"], schema)
    y = df[schema.target].to_numpy().astype(np.int8)
    codes = df[list(schema.numeric)].copy()
    for c in schema.categorical:
        codes[c] = df[c].astype("category").cat.codes
    cat_idx = [codes.columns.get_loc(c) for c in schema.categorical]
    makers = {
        HGB: lambda seed: HistGradientBoostingClassifier(
            categorical_features=cat_idx, learning_rate=0.05, max_iter=300,
            early_stopping=True, validation_fraction=0.15 / 0.85, random_state=seed),
        "scikit-learn LogisticRegression": lambda seed: LogisticRegression(max_iter=2000),
    }
    if with_mlp:
        makers["scikit-learn MLPClassifier (64, 64)"] = lambda seed: MLPClassifier(
            (64, 64), early_stopping=True, random_state=seed, max_iter=500)
    out = {name: Scores({}) for name in makers}
    seconds = {name: 0.0 for name in makers}
    for seed, part in splits_ref["seeds"].items():
        seed = int(seed)
        tr, dv, te = (np.asarray(part[k]) for k in ("train", "dev", "test"))
        fit_rows = np.r_[tr, dv]
        pre = Preprocessor(schema.numeric, schema.categorical).fit(df.iloc[tr])
        X_fit, X_te = pre.transform(df.iloc[fit_rows]), pre.transform(df.iloc[te])
        for name, make in makers.items():
            trees = name == HGB
            start = time.perf_counter()
            model = make(seed).fit(codes.iloc[fit_rows] if trees else X_fit, y[fit_rows])
            out[name].test[seed] = model.predict_proba(codes.iloc[te] if trees else X_te)[:, 1]
            seconds[name] += time.perf_counter() - start
    for name in makers:
        out[name].seconds_per_seed = seconds[name] / len(splits_ref["seeds"])
    return out, y


def mean_std(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def interval(result) -> str:
    mark = "" if result.excludes_zero else " (0 inside)"
    return f"{result.estimate:+.4f} [{result.low:+.4f}, {result.high:+.4f}]{mark}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="a train.py run directory; the first is the reference (repeatable)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    ap.add_argument("--no-sklearn-mlp", action="store_true",
                    help="leave out MLPClassifier (the slowest scikit-learn model)")
    args = ap.parse_args()
    runs = {}
    for item in args.run:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            ap.error(f"--run takes NAME=RUN_DIR, got {item!r}")
        if name in runs:
            ap.error(f"--run: the name {name!r} is given twice")
        runs[name] = Path(path)
    ref_name, ref_dir = next(iter(runs.items()))
    if json.loads((ref_dir / "splits.json").read_text()).get("kind") == "events":
        event_comparison(runs, args.resamples, args.bootstrap_seed)
        return
    splits_ref, _, ref_metrics = read_run(ref_dir)
    seeds = sorted(int(s) for s in splits_ref["seeds"])

    models: dict[str, Scores] = {name: run_scores(d, splits_ref) for name, d in runs.items()}
    models["this project's logistic regression (baseline of " + ref_name + ")"] = run_scores(
        ref_dir, splits_ref, "baseline_probability")
    sk, y_all = sklearn_scores(splits_ref, with_mlp=not args.no_sklearn_mlp)
    models.update(sk)
    y = [y_all[np.asarray(splits_ref["seeds"][str(s)]["test"])] for s in seeds]

    est, rep = {}, {}
    for m in METRICS:
        est[m], rep[m] = bootstrap_replicates(
            y, {name: [sc.test[s] for s in seeds] for name, sc in models.items()}, m,
            args.resamples, args.bootstrap_seed)
    metric_fn = {"roc_auc": roc_auc, "pr_auc": pr_auc}
    per_seed = {name: {m: [metric_fn[m](y[i], sc.test[s]) for i, s in enumerate(seeds)]
                       for m in METRICS} for name, sc in models.items()}

    print(f"seeds {seeds}; {len(y[0])} test rows per seed; paired bootstrap: {args.resamples} "
          f"resamples of each seed's test rows (seed {args.bootstrap_seed}), statistic = mean "
          "over seeds of the per-seed difference; 95 % percentile interval\n")
    print("| model | test ROC-AUC | test PR-AUC | ROC-AUC − HistGBM [95 % CI] | "
          "PR-AUC − HistGBM [95 % CI] | s/seed |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, sc in models.items():
        diffs = [interval(difference_interval(est[m][name] - est[m][HGB],
                                              rep[m][name] - rep[m][HGB]))
                 if name != HGB else "" for m in METRICS]
        print(f"| {name} | {mean_std(per_seed[name]['roc_auc'])} | "
              f"{mean_std(per_seed[name]['pr_auc'])} | {diffs[0]} | {diffs[1]} | "
              f"{sc.seconds_per_seed:.2f} |")

    print(f"\nAblation: each run against {ref_name!r} (dev: difference of the means over seeds "
          "in metrics.json; test: paired bootstrap as above)\n")
    print("| run | dev ROC-AUC | dev PR-AUC | Δ dev ROC | Δ dev PR | Δ test ROC [95 % CI] | "
          "Δ test PR [95 % CI] |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ref = models[ref_name]
    for name in runs:
        sc = models[name]
        dev_diff = [np.mean(sc.dev[m]) - np.mean(ref.dev[m]) for m in METRICS]
        test_diff = [interval(difference_interval(est[m][name] - est[m][ref_name],
                                                  rep[m][name] - rep[m][ref_name]))
                     if name != ref_name else "" for m in METRICS]
        print(f"| {name} | {mean_std(sc.dev['roc_auc'])} | {mean_std(sc.dev['pr_auc'])} | "
              f"{dev_diff[0]:+.4f} | {dev_diff[1]:+.4f} | {test_diff[0]} | {test_diff[1]} |")
    print(f"\nreference command: {ref_metrics.get('command', '?')}")


if __name__ == "__main__":
    main()
