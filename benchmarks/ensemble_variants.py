"""Seed ensembles, fusion with the logistic regression and calibration (issue 17.2, 17.3) on
the bundled table: every variant scored on dev and test from the same trained networks.

    python benchmarks/ensemble_variants.py [--seeds 0,1,2,3,4] [--ensemble 5] [--epochs 200]

Per split seed it trains what ``train.py --ensemble K`` trains (``nn_core.selection``:
K networks with ``train.py``'s defaults, member k seeded ``seed + k 2**32``, and the
logistic-regression baseline) and, separately, one network with ``--pos-weight auto``;
then each variant is built with ``nn_core.ensemble.combine`` (every choice on dev, exactly
as ``train.py --ensemble K --fuse F --calibrate C`` builds it) and evaluated with
``nn_core.selection.evaluate_model``. Test is only reported. Printed: mean ± std over the
seeds of dev and test ROC-AUC, PR-AUC, log-loss and ECE (and the ECE before calibration).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name -> (pos-weight auto?, members used, fuse, calibrate)
VARIANTS = {
    "single": (False, 1, "none", "none"),
    "single platt": (False, 1, "none", "platt"),
    "single isotonic": (False, 1, "none", "isotonic"),
    "ensemble": (False, None, "none", "none"),
    "ensemble platt": (False, None, "none", "platt"),
    "ensemble isotonic": (False, None, "none", "isotonic"),
    "single + LR blend": (False, 1, "blend", "none"),
    "ensemble + LR blend": (False, None, "blend", "none"),
    "ensemble + LR stack": (False, None, "stack", "none"),
    "ensemble + LR blend isotonic": (False, None, "blend", "isotonic"),
    "pos-weight auto": (True, 1, "none", "none"),
    "pos-weight auto platt": (True, 1, "none", "platt"),
    "pos-weight auto isotonic": (True, 1, "none", "isotonic"),
}
SHOWN = ("roc_auc", "pr_auc", "log_loss", "ece", "ece_uncalibrated")


def main() -> None:
    from features.datasets import TableData, resolve_schema
    from nn_core import selection
    from nn_core.ensemble import combine, member_seed
    from propensity.bundled import bundled_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=200)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    data = TableData(bundled_table(), resolve_schema(None, None, None, None, None, None))
    cfg = replace(selection.NetConfig(), epochs=args.epochs)
    auto = replace(cfg, pos_weight="auto")
    base_cfg = selection.baseline_config(cfg)
    results: dict[str, list] = {name: [] for name in VARIANTS}
    for seed in seeds:
        s = data.split(seed)
        nets = [selection.train_network(cfg, s.X, s.y, member_seed(seed, k))[0]
                for k in range(args.ensemble)]
        lr = selection.train_network(base_cfg, s.X, s.y, seed)[0]
        auto_net = selection.train_network(auto, s.X, s.y, seed)[0]
        for name, (weighted, k, fuse, calibrate) in VARIANTS.items():
            members = [auto_net] if weighted else nets[:k] if k else nets
            model, _ = combine(members, lr, s.X["dev"], s.y["dev"], fuse, calibrate)
            metrics, _ = selection.evaluate_model(model, s.X, s.y)
            results[name].append(metrics)
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    print(f"{len(seeds)} seeds ({args.seeds}), ensemble K = {args.ensemble}, mean ± std")
    header = "".join(f"{part + ' ' + k:>20s}" for part in ("dev", "test") for k in SHOWN[:4])
    print(f"{'variant':30s}{header}  ECE before cal. (dev, test)")
    for name, runs in results.items():
        cells = []
        for part in ("dev", "test"):
            for key in SHOWN[:4]:
                v = np.array([r[part][key] for r in runs])
                cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}")
        before = ", ".join(
            f"{np.mean([r[part]['ece_uncalibrated'] for r in runs]):.4f}"
            for part in ("dev", "test")) if "ece_uncalibrated" in runs[0]["dev"] else ""
        print(f"{name:30s}" + "".join(f"{c:>20s}" for c in cells) + f"  {before}")


if __name__ == "__main__":
    main()
