"""How the logistic-regression baseline's fixed settings were chosen.

They are ``nn_core.selection.BASELINE``.

    python benchmarks/sweep_baseline.py [--seed 0]

A grid of Adam learning rates and L2 penalties (batch 128, at most 200 epochs, early
stopping on dev ROC-AUC with patience 10, the best epoch's weights kept: ``BASELINE``'s other
settings), each trained on the bundled table's seed-0 split and scored on its **dev** rows
only (test is never read). Prints one row per setting, best dev ROC-AUC first; the first
row (the highest dev ROC-AUC) was taken. The table and the choice are in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
L2S = (0.0, 1e-4, 1e-3, 1e-2)


def main() -> None:
    from features.datasets import TableData
    from features.tabular import Schema
    from nn_core.metrics import log_loss, pr_auc
    from nn_core.selection import BASELINE, train_network

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    table = TableData(ROOT / "data" / "online_shoppers_intention.csv", Schema.uci())
    split = table.split(args.seed)
    rows = []
    for lr in LRS:
        for l2 in L2S:
            cfg = replace(BASELINE, lr=lr, l2=l2)
            start = time.perf_counter()
            model, history, best = train_network(cfg, split.baseline_X, split.y, args.seed)
            p = model.predict_proba(split.baseline_X["dev"])
            rows.append((history[best - 1]["dev_roc_auc"], pr_auc(split.y["dev"], p),
                         log_loss(split.y["dev"], p), lr, l2, best, len(history),
                         time.perf_counter() - start))
    print(f"seed {args.seed} dev set ({len(split.y['dev'])} rows); BASELINE: lr {BASELINE.lr:g}, "
          f"l2 {BASELINE.l2:g}")
    print(f"{'lr':>7s} {'l2':>7s} {'dev ROC-AUC':>12s} {'dev PR-AUC':>11s} {'dev log-loss':>13s} "
          f"{'best epoch':>11s} {'epochs':>7s} {'s':>6s}")
    for auc, ap_, ll, lr, l2, best, n, sec in sorted(rows, key=lambda r: -r[0]):
        print(f"{lr:7g} {l2:7g} {auc:12.4f} {ap_:11.4f} {ll:13.4f} {best:11d} {n:7d} {sec:6.2f}")


if __name__ == "__main__":
    main()
