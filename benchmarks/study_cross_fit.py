"""Does training on the dev rows too close the gap to HistGBM? (issue 17.5, docs/results.md)

    python benchmarks/study_cross_fit.py [--lr 1e-3] [--numeric-encoding standard] [--ensemble 5]

On the bundled table's seeds 0-4 (``train.py``'s splits and features; the network's
settings are ``NetConfig``'s defaults except the flags given), it prints:

1. **HistGBM on train only** (as docs/results.md's script, but fitted on the train rows
   alone): dev and test ROC-AUC / PR-AUC, to see how much of its lead is the dev rows it
   is usually fitted on.
2. **One level down, dev only** (train is the pool, dev the held-out set; test not read):
   a *cross-fitted ensemble* (K networks, network k trained on the pool without fold k and
   stopped early on fold k, logits averaged) against a seed ensemble of K networks on one
   fixed split of the pool (fold 0 held out), and a *refit* (one early-stopped network
   retrained on the whole pool for its best epoch count, no early stopping) against that
   early-stopped network: the dev-only evidence for using the stopping rows for training.
3. **The cross-fitted ensemble on test** (pool = train + dev, as HistGBM's), with its
   out-of-fold dev scores.

Folds are stratified and seeded (``numpy.random.default_rng(1000 + seed)``); network k's
seed is ``nn_core.ensemble.member_seed(seed, k)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def folds_of(rows: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified fold number (0..k-1) of each of ``rows``."""
    rng = np.random.default_rng(1000 + seed)
    fold = np.empty(len(rows), dtype=np.int64)
    for c in (0, 1):
        at = np.flatnonzero(y == c)
        fold[rng.permutation(at)] = np.arange(len(at)) % k
    return fold


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` in float64, clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from features.datasets import TableData
    from features.tabular import Schema
    from nn_core.ensemble import member_seed
    from nn_core.metrics import pr_auc, roc_auc
    from nn_core.selection import NetConfig, train_network

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=NetConfig().lr)
    ap.add_argument("--numeric-encoding", default="standard")
    ap.add_argument("--ensemble", type=int, default=5, help="networks / folds K")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    K = args.ensemble
    cfg = NetConfig(lr=args.lr)
    schema = Schema.uci()
    path = ROOT / "data" / "online_shoppers_intention.csv"
    table = TableData(path, schema, numeric_encoding=args.numeric_encoding)
    codes = table.frame[list(schema.numeric)].copy()
    for c in schema.categorical:
        codes[c] = table.frame[c].astype("category").cat.codes
    cat_idx = [codes.columns.get_loc(c) for c in schema.categorical]
    scores: dict[str, list[tuple[float, float]]] = {}

    def score(name: str, y: np.ndarray, z: np.ndarray) -> None:
        scores.setdefault(name, []).append((roc_auc(y, z), pr_auc(y, z)))

    def fit(X, y, train, stop, seed, epochs=None):
        c = cfg if epochs is None else replace(cfg, epochs=epochs, patience=10**6,
                                               restore_best=False)
        model, _, best = train_network(c, {"train": X[train], "dev": X[stop]},
                                       {"train": y[train], "dev": y[stop]}, seed)
        return model, best

    start = time.perf_counter()
    for seed in seeds:
        s = table.split(seed)
        rows = {k: s.ids[k] for k in ("train", "dev", "test")}
        hgb = HistGradientBoostingClassifier(
            categorical_features=cat_idx, learning_rate=0.05, max_iter=300,
            early_stopping=True, validation_fraction=0.15 / 0.85, random_state=seed,
        ).fit(codes.iloc[rows["train"]], s.y["train"])
        for part in ("dev", "test"):
            score(f"HistGBM on train only, {part}", s.y[part],
                  hgb.predict_proba(codes.iloc[rows[part]])[:, 1])

        # 2. One level down: pool = train, held-out = dev.
        X, y = s.X["train"], s.y["train"]
        fold = folds_of(np.arange(len(y)), y, K, seed)
        z_cross, z_seeds = 0.0, 0.0
        for k in range(K):
            model, best = fit(X, y, fold != k, fold == k, member_seed(seed, k))
            z_cross = z_cross + logit(model.predict_proba(s.X["dev"]))
            model, best = fit(X, y, fold != 0, fold == 0, member_seed(seed, k))
            z = logit(model.predict_proba(s.X["dev"]))
            z_seeds = z_seeds + z
            if k == 0:
                score("one level down: one network, early-stopped", s.y["dev"], z)
                refit, _ = fit(X, y, np.ones(len(y), bool), fold == 0, seed, epochs=best)
                score("one level down: that network refit on the pool", s.y["dev"],
                      logit(refit.predict_proba(s.X["dev"])))
        score(f"one level down: seed ensemble of {K}, one split", s.y["dev"], z_seeds)
        score(f"one level down: cross-fitted ensemble of {K}", s.y["dev"], z_cross)

        # 3. On test: pool = train + dev.
        Xp = np.vstack([s.X["train"], s.X["dev"]])
        yp = np.r_[s.y["train"], s.y["dev"]]
        fold = folds_of(np.arange(len(yp)), yp, K, seed)
        z_test, oof = 0.0, np.zeros(len(yp))
        for k in range(K):
            model, _ = fit(Xp, yp, fold != k, fold == k, member_seed(seed, k))
            z_test = z_test + logit(model.predict_proba(s.X["test"]))
            oof[fold == k] = logit(model.predict_proba(Xp[fold == k]))
        n_train = len(s.y["train"])
        score(f"cross-fitted ensemble of {K} on train + dev, dev out of fold", s.y["dev"],
              oof[n_train:])
        score(f"cross-fitted ensemble of {K} on train + dev, test", s.y["test"], z_test)

    print(f"seeds {seeds}; network lr {cfg.lr:g}, --numeric-encoding {args.numeric_encoding}, "
          f"K = {K}; {(time.perf_counter() - start) / len(seeds):.1f} s per seed")
    print(f"| {'what':66s} | ROC-AUC | PR-AUC |")
    print(f"|{'-' * 68}|---:|---:|")
    for name, v in scores.items():
        a = np.asarray(v)
        print(f"| {name:66s} | {a[:, 0].mean():.4f} ± {a[:, 0].std(ddof=1):.4f} "
              f"| {a[:, 1].mean():.4f} ± {a[:, 1].std(ddof=1):.4f} |")


if __name__ == "__main__":
    main()
