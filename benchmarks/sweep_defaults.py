"""Candidate network settings for issue 17.5, scored on **dev** only (test is never read).

    python benchmarks/sweep_defaults.py [--seeds 0,1,2,3,4] [--only NAME,...] [--ensemble K]

Each candidate is ``train.py``'s default ``NetConfig`` with some fields changed (the
``CANDIDATES`` table below). It is trained on the bundled table's split of every seed with
early stopping on dev, exactly as ``train.py --seeds ...`` does
(``nn_core.selection.train_network``), and its dev ROC-AUC and PR-AUC are printed as
mean ± std over the seeds, with the mean epochs and seconds per seed (seconds depend on
the machine's load: compare rows of one run only). With ``--ensemble K`` each seed also
trains K - 1 more networks on the same split (seeds ``nn_core.ensemble.member_seed``) and
scores the mean of their logits, as ``train.py --ensemble K`` does. The results and the
choice are in docs/results.md.
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

#: name -> NetConfig fields changed from train.py's defaults.
CANDIDATES: dict[str, dict] = {
    "default": {},
    "lr 3e-3": {"lr": 3e-3},
    "lr 3e-4": {"lr": 3e-4},
    "batch 256": {"batch_size": 256},
    "batch 64": {"batch_size": 64},
    "l2 3e-3": {"l2": 3e-3},
    "l2 1e-2": {"l2": 1e-2},
    "hidden 128": {"hidden": (128,)},
    "hidden 256 dropout 0.3": {"hidden": (256,), "dropout": 0.3},
    "hidden 128+64": {"hidden": (128, 64)},
    "silu": {"activation": "silu"},
    "gelu": {"activation": "gelu"},
    "monitor loss": {"monitor": "loss"},
    "patience 20": {"patience": 20},
    "cosine 60 epochs": {"schedule": "cosine", "epochs": 60, "patience": 60},
    "weight decay 1e-2 l2 0": {"l2": 0.0, "weight_decay": 1e-2},
}


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))``, clipped away from 0 and 1."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def main() -> None:
    from features.datasets import TableData
    from features.tabular import Schema
    from nn_core.ensemble import member_seed
    from nn_core.metrics import pr_auc, roc_auc
    from nn_core.selection import NetConfig, train_network

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--only", default="", help="comma-separated candidate names")
    ap.add_argument("--ensemble", type=int, default=1)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidates {unknown}; known: {list(CANDIDATES)}")
    table = TableData(ROOT / "data" / "online_shoppers_intention.csv", Schema.uci())
    splits = {seed: table.split(seed) for seed in seeds}
    print(f"dev only, seeds {seeds}, ensemble {args.ensemble}")
    print(f"{'candidate':28s} {'dev ROC-AUC':>16s} {'dev PR-AUC':>16s} {'epochs':>7s} "
          f"{'s/seed':>7s}")
    for name in names:
        cfg = replace(NetConfig(), **CANDIDATES[name])
        aucs, aps, epochs = [], [], []
        start = time.perf_counter()
        for seed, s in splits.items():
            z = 0.0
            for k in range(args.ensemble):
                model, _, best = train_network(cfg, s.X, s.y, member_seed(seed, k))
                z = z + logit(model.predict_proba(s.X["dev"]).astype(np.float64))
                epochs.append(best)
            aucs.append(roc_auc(s.y["dev"], z))
            aps.append(pr_auc(s.y["dev"], z))
        sec = (time.perf_counter() - start) / len(seeds)
        print(f"{name:28s} {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f} "
              f"{np.mean(aps):.4f} ± {np.std(aps, ddof=1):.4f} {np.mean(epochs):7.1f} {sec:7.2f}",
              flush=True)


if __name__ == "__main__":
    main()
