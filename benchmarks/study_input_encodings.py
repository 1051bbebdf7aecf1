"""Numeric input encodings and larger ensembles against ``--preset dev-best`` (issue 17.5).

    python benchmarks/study_input_encodings.py [--seeds 0,1,2,3,4] [--only NAME,...] [--versus NAME]
    python benchmarks/study_input_encodings.py --refit --only NAME,...      # dev only
    python benchmarks/study_input_encodings.py --test NAME,...              # after choosing
    python benchmarks/study_input_encodings.py --check-product [--seeds ...]  # no training

Every candidate is a feature matrix for the bundled table's split of each seed (the split,
the one-hot blocks and the training settings of ``train.py --preset dev-best``: lr 3e-3,
an ensemble of 5 networks with seeds ``nn_core.ensemble.member_seed``, logits averaged,
each stopped early on dev), with the numeric columns' block encoded in another way. Every
statistic of an encoding is fitted on the seed's training rows only:

* ``dev-best``: the standardised value ``z = (u - mean) / std`` (``u = log1p(x)`` where
  ``train.py`` chooses it) and the piecewise-linear encoding on 4 quantile bins
  (``--numeric-encoding standard+ple --ple-bins 4``): the reference;
* ``standard``: ``z`` alone (the default features, with dev-best's training settings);
* ``quantile``: ``z`` replaced by the Gaussian-rank transform ``Phi^-1(F_train(x))``
  (scikit-learn ``QuantileTransformer(output_distribution="normal")``, as Gorishniy et al.
  2022 and most tabular deep-learning baselines preprocess), with or without the PLE bins;
* ``robust-clip``: RealMLP's robust scaling and smooth clipping (Holzmueller et al. 2024)
  of ``u``: ``s = (u - median) / (q_3/4 - q_1/4)`` (``/ (max - min) * 2`` where the
  inter-quartile range is 0), then ``s / sqrt(1 + (s / 3)^2)``, with or without PLE;
* ``periodic s=SIGMA``: ``z`` followed by ``cos(2 pi c_m z)``, ``sin(2 pi c_m z)`` for
  ``m = 1..8`` fixed random frequencies per column, ``c ~ N(0, SIGMA^2)`` drawn with
  ``numpy.random.default_rng(seed)`` (the periodic embedding of Gorishniy et al. 2022 with
  frozen frequencies: an input encoding, the first dense layer playing the role of the
  embedding's linear map), with or without PLE;
* ``dev-best K=10``, ``K=20``: dev-best's features with 10 or 20 networks; ``mixed K=10``:
  5 networks on dev-best's features and 5 on ``standard``'s (``mixed quantile K=10``: on
  ``quantile``'s), logits averaged.

A second round, added after the first round's dev table (test unread): ``standard+quantile``
(``z`` and the Gaussian-rank value both), ``quantile-uniform`` (``F_train(x)`` in place of
``z``), ``quantile+periodic s=0.1`` (the periodic features of the Gaussian-rank value),
``quantile K=10`` and ``mixed quantile K=10``. A third round after that: ``mixed quantile
K=20``, ``mixed quantile+ple K=10`` (odd members on ``quantile+ple``'s features) and ``mixed
3 views K=15`` (members ``k = 0, 1, 2 mod 3`` on dev-best's, ``quantile``'s and
``quantile+periodic s=0.1``'s features).

A fourth round (session 6, dev only), written with its rules before its numbers:

* ``mixed grank K+ple K=10`` for ``K`` in :data:`GRANK_KNOTS`: as ``mixed quantile+ple
  K=10`` with the Gaussian rank of the product (``gaussian_rank``, the definition
  ``preprocess.json`` stores: ``K`` training quantile knots at ``r_j = j / (K - 1)``, runs of
  equal knots merged at their mean ``r``, scores ``Phi^-1(r)`` clipped at ``1e-7``, linear
  interpolation between knots, clamped outside) in place of scikit-learn's;
* ``tree 4``, ``tree 8``: dev-best's features with 4 or 8 target-aware PLE bins
  (``--ple-binning tree``), 5 members; ``mixed tree B + grank K+ple K=10``: 5 members on
  ``tree B``'s features, 5 on ``grank K+ple``'s (``K`` = :data:`CHOSEN_K`);
* ``z+grank K+ple K=10``: one view, z and the Gaussian rank and PLE 4 bins, 10 members;
* diagnostics added after the first part (not candidates of rule (b)): ``mixed grank K
  ends+ple K=10`` for every ``K`` (the product's rank with scikit-learn's rule at the ends:
  values at the training minimum or maximum get the clip bounds) and ``mixed quantile
  CHOSEN_K+ple K=10`` (scikit-learn's rank with ``n_quantiles=CHOSEN_K``).

Rules: (a) the knot count ``CHOSEN_K`` is the smallest ``K`` whose ``mixed grank K+ple K=10``
has mean dev ROC-AUC within 0.0005 and PR-AUC within 0.002 of the best ``K``'s (the best:
the highest mean dev ROC-AUC); (b) the candidate to productise is the round-4 candidate
(``mixed grank CHOSEN_K+ple K=10``, ``tree B``, ``mixed tree B + ...``, ``z+grank ...``) with
the highest mean dev ROC-AUC, provided its mean dev PR-AUC is not below ``mixed
quantile+ple K=10``'s by more than 0.002 (otherwise the next by ROC-AUC that passes).

Printed: dev ROC-AUC and PR-AUC, mean ± std (ddof 1) over the seeds, and the mean and std
over the seeds of the paired per-seed difference to ``dev-best`` (same rows, same member
seeds; ``--versus NAME``: to that candidate as well), seconds of training per seed and the
1-minute load average at the row's end; test is not read.

``--refit`` (dev only, one level down as ``benchmarks/study_cross_fit.py``: train is the
pool, dev is held out): each member is early-stopped on fold 0 of 5 stratified folds of
train and trained on the other four, then the same member is *refit* on all of train for
its early-stopped epoch count without stopping; both ensembles are scored on dev, which
neither saw. It is the dev-only evidence for refitting on train + dev.

``--test NAME,...`` scores those candidates on test, as trained above (on train, stopped on
dev) and refit on train + dev for each member's dev-chosen epoch count (the rows HistGBM is
fitted on), beside scikit-learn HistGBM fitted as ``benchmarks/compare_models.py`` fits it,
with the paired bootstrap 95 % interval (2,000 resamples, ``nn_core/bootstrap.py``) of each
difference to HistGBM and to the first name. Use it only after choosing on dev
(docs/results.md states the rule).

``--check-product`` (no training, train and dev rows only): the product's Gaussian rank
(``TableData(numeric_encoding="quantile", rank_knots=K)``, the features ``train.py`` feeds
the network) against the diagnostic ``gaussian_rank(d, K, ends=True)`` for every ``K`` in
:data:`GRANK_KNOTS`; exit status 1 where they differ by more than float32 rounding on a row
outside the diagnostic's ``1e-7`` band around the outer knots (the product compares
exactly).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("train", "dev", "test")


#: ``train.py`` encodings of the numeric block loaded for every seed: view name ->
#: ``TableData`` keyword arguments ("tree B": dev-best's features with B target-aware bins).
VIEWS = {
    "standard": {},
    "ple": {"numeric_encoding": "standard+ple", "ple_bins": 4},
    "tree 4": {"numeric_encoding": "standard+ple", "ple_bins": 4, "ple_binning": "tree"},
    "tree 8": {"numeric_encoding": "standard+ple", "ple_bins": 8, "ple_binning": "tree"},
}


@dataclass
class SeedData:
    """One seed's split in the encodings of :data:`VIEWS`, with the raw numeric inputs."""

    y: dict[str, np.ndarray]
    views: dict[str, dict[str, np.ndarray]]  # view name -> part -> X (float32)
    x: dict[str, np.ndarray]  # raw numeric values (n, n_numeric), float64
    u: dict[str, np.ndarray]  # log1p(x) where train.py chooses it, else x
    z_at: dict[str, np.ndarray]  # view name -> column of each numeric z
    seed: int
    ids: dict[str, np.ndarray]  # the file's 0-based data rows of each part

    @property
    def standard(self) -> dict[str, np.ndarray]:
        """X of ``--numeric-encoding standard``."""
        return self.views["standard"]

    @property
    def ple(self) -> dict[str, np.ndarray]:
        """X of ``standard+ple`` with 4 quantile bins (dev-best)."""
        return self.views["ple"]


def load(seeds: list[int]) -> dict[int, SeedData]:
    """The splits of ``seeds`` in every encoding of :data:`VIEWS`
    (``features.datasets.TableData``)."""
    from features.datasets import TableData
    from features.tabular import Schema

    path = ROOT / "data" / "online_shoppers_intention.csv"
    schema = Schema.uci()
    tables = {name: TableData(path, schema, **kw) for name, kw in VIEWS.items()}
    raw = tables["standard"].frame[list(schema.numeric)].to_numpy(dtype=np.float64)
    out = {}
    for seed in seeds:
        splits = {name: t.split(seed) for name, t in tables.items()}
        s = splits["standard"]
        assert all(np.array_equal(s.ids[k], p.ids[k]) for p in splits.values() for k in PARTS)
        log = np.array([c["log1p"] for c in s.pre.columns if c["kind"] == "numeric"])
        x = {k: raw[s.ids[k]] for k in PARTS}  # ids are the frame's rows (nothing skipped)
        u = {k: np.where(log, np.log1p(np.maximum(v, 0.0)), v) for k, v in x.items()}
        z_at = {name: np.array([sl.start for n, sl in p.pre.column_slices().items()
                                if n in schema.numeric])
                for name, p in splits.items()}
        out[seed] = SeedData(s.y, {name: p.X for name, p in splits.items()}, x, u, z_at,
                             seed, s.ids)
    return out


def with_numeric(d: SeedData, base: str, value: dict[str, np.ndarray],
                 extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``base``'s matrices (a view of :data:`VIEWS`) with each numeric ``z`` replaced by the
    column of ``value`` and ``extra`` features appended, float32."""
    X = d.views[base]
    out = {}
    for k in PARTS:
        M = X[k].astype(np.float64)
        M[:, d.z_at[base]] = value[k]
        if extra is not None:
            M = np.hstack([M, extra[k]])
        out[k] = M.astype(np.float32)
    return out


def quantile_normal(d: SeedData, output: str = "normal",
                    n_quantiles: int = 1000) -> dict[str, np.ndarray]:
    """``Phi^-1(F_train(x))`` per numeric column, fitted on train (``output="uniform"``:
    ``F_train(x)`` itself)."""
    from sklearn.preprocessing import QuantileTransformer

    qt = QuantileTransformer(output_distribution=output, n_quantiles=n_quantiles,
                             subsample=10**9, random_state=0).fit(d.x["train"])
    return {k: qt.transform(d.x[k]) for k in PARTS}


def gaussian_rank_knots(x: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots and normal scores of one column's Gaussian rank (the product's definition).

    Written here from the definition on purpose, not imported from
    ``features/tabular.py: gaussian_rank_knots``: it is the independent reference that
    ``--check-product`` holds the product's features to.

    ``q_j = quantile(x, r_j)`` for ``r_j = j / (K - 1)``, ``j = 0..K-1``; each run of equal
    knots becomes one knot whose reference ``r`` is the mean of the run's ``r_j``; its score
    is ``s = Phi^-1(r)`` clipped to ``[Phi^-1(1e-7), Phi^-1(1 - 1e-7)]`` (about +-5.2).

    Parameters
    ----------
    x : ndarray, shape (n,), float64
        The column's training values (raw: the rank is invariant to log1p).
    K : int
        Quantile knots before merging, at least 2.

    Returns
    -------
    q, s : ndarray, shape (m,), m <= K
        Strictly increasing knots and their scores.
    """
    from scipy.special import ndtri

    r = np.linspace(0.0, 1.0, K)
    q = np.quantile(x, r)
    assert np.all(np.diff(q) >= 0), "np.quantile knots not monotone"
    start = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    r_run = np.add.reduceat(r, start) / np.diff(np.r_[start, K])
    return q[start], np.clip(ndtri(r_run), ndtri(1e-7), ndtri(1 - 1e-7))


def gaussian_rank(d: SeedData, K: int, ends: bool = False) -> dict[str, np.ndarray]:
    """``g(x)`` per numeric column: linear interpolation of (q_j, s_j) of
    :func:`gaussian_rank_knots` fitted on train, ``s_first`` / ``s_last`` outside the knots.
    It agrees with ``quantile_normal`` (scikit-learn) at the interior knots and on tied
    interior values; between knots it interpolates in score space (scikit-learn: in ``F``),
    and a value at the training minimum or maximum gets its run's score, where scikit-learn
    gives every such value the clip bound ``-+5.2`` (in the bundled data 45-90 % of the
    training rows of 7 of the 10 columns are at the minimum, 0). ``ends=True`` (a diagnostic):
    scikit-learn's rule at the ends, values within 1e-7 of the first or last knot or beyond
    get the clip bounds ``Phi^-1(1e-7)``, ``Phi^-1(1 - 1e-7)``. The product adopted that
    rule after round 4 (commit 64cb304, exact comparisons): ``ends=True`` is what
    ``preprocess.json`` now computes (``--check-product``)."""
    from scipy.special import ndtri

    knots = [gaussian_rank_knots(col, K) for col in d.x["train"].T]
    out = {}
    for k in PARTS:
        G = np.column_stack([np.interp(col, q, s) for col, (q, s) in zip(d.x[k].T, knots,
                                                                         strict=True)])
        if ends:
            lo = np.array([q[0] for q, _ in knots]) + 1e-7
            hi = np.array([q[-1] for q, _ in knots]) - 1e-7
            G = np.where(d.x[k] < lo, ndtri(1e-7), np.where(d.x[k] > hi, ndtri(1 - 1e-7), G))
        out[k] = G
    return out


def check_product(data: dict[int, SeedData]) -> bool:
    """The product's rank features (float32, as ``train.py`` builds them) against the
    diagnostic ``gaussian_rank(d, K, ends=True)`` on train and dev, one line per seed and
    ``K``; True where they agree (within 1e-6, rows in the diagnostic's 1e-7 band around
    the outer knots left out and counted)."""
    from features.datasets import TableData
    from features.tabular import Schema

    path, schema, ok = ROOT / "data" / "online_shoppers_intention.csv", Schema.uci(), True
    for K in GRANK_KNOTS:
        table = TableData(path, schema, numeric_encoding="quantile", rank_knots=K)
        for seed, d in data.items():
            s = table.split(seed)
            at = [sl.start for n, sl in s.pre.column_slices().items() if n in schema.numeric]
            want = gaussian_rank(d, K, ends=True)
            worst, band, at_ends = 0.0, 0, 0
            for k in ("train", "dev"):
                assert np.array_equal(s.ids[k], d.ids[k])
                q = [(c["encoding"]["knots"][0], c["encoding"]["knots"][-1])
                     for c in s.pre.columns if c["kind"] == "numeric"]
                first, last = np.array(q).T
                near = ((d.x[k] > first) & (d.x[k] < first + 1e-7)) | (
                    (d.x[k] < last) & (d.x[k] > last - 1e-7))
                diff = np.abs(s.X[k][:, at].astype(np.float64) - want[k])
                worst = max(worst, float(diff[~near].max()))
                band += int(near.sum())
                at_ends += int(((d.x[k] == first) | (d.x[k] == last)).sum())
            ok &= worst <= 1e-6
            print(f"K={K} seed {seed}: max |product - diagnostic| {worst:.2g} on train+dev "
                  f"({at_ends} values at an outer knot; {band} in the 1e-7 band left out)"
                  + ("" if worst <= 1e-6 else "  DIFFERS"), flush=True)
    return ok


def robust_clip(d: SeedData) -> dict[str, np.ndarray]:
    """RealMLP's robust scaling of ``u`` (median, inter-quartile range; half the range
    where that is 0) followed by the smooth clip ``s / sqrt(1 + (s/3)^2)``."""
    u = d.u["train"]
    q1, med, q3 = np.quantile(u, [0.25, 0.5, 0.75], axis=0)
    spread = np.where(q3 > q1, q3 - q1, (u.max(axis=0) - u.min(axis=0)) / 2)
    spread = np.where(spread > 0, spread, 1.0)
    out = {}
    for k in PARTS:
        s = (d.u[k] - med) / spread
        out[k] = s / np.sqrt(1 + (s / 3) ** 2)
    return out


def z_of(d: SeedData) -> dict[str, np.ndarray]:
    """The standardised numeric values ``z`` as ``train.py`` computes them."""
    return {k: d.standard[k][:, d.z_at["standard"]].astype(np.float64) for k in PARTS}


def periodic(d: SeedData, sigma: float, m: int = 8,
             z: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``[cos(2 pi c z), sin(2 pi c z)]`` for ``m`` frozen frequencies per numeric column,
    ``c ~ N(0, sigma^2)``: shape (n, 2 * n_numeric * m). ``z``: the standardised values
    unless given."""
    z = z_of(d) if z is None else z
    c = np.random.default_rng(d.seed).normal(0.0, sigma, size=(z["train"].shape[1], m))
    out = {}
    for k in PARTS:
        angle = 2 * np.pi * z[k][:, :, None] * c  # (n, n_numeric, m)
        out[k] = np.hstack([np.cos(angle).reshape(len(angle), -1),
                            np.sin(angle).reshape(len(angle), -1)])
    return out


#: Knot counts of the fourth round's Gaussian rank, and the one rule (a) chose from the
#: first part's dev table (10:27 UTC; 1000 until then).
GRANK_KNOTS = (16, 32, 64, 128, 256, 1000)
CHOSEN_K = 16

#: name -> (features of member k of one seed's ensemble, number of members).
Candidate = tuple[Callable[[SeedData, int], dict[str, np.ndarray]], int]


def candidates() -> dict[str, Candidate]:
    """The candidates of the module docstring."""
    def fixed(fn: Callable[[SeedData], dict[str, np.ndarray]]):
        cache: dict[int, dict[str, np.ndarray]] = {}

        def member(d: SeedData, k: int) -> dict[str, np.ndarray]:
            if d.seed not in cache:
                cache.clear()
                cache[d.seed] = fn(d)
            return cache[d.seed]
        return member

    table: dict[str, Candidate] = {
        "dev-best": (fixed(lambda d: d.ple), 5),
        "standard": (fixed(lambda d: d.standard), 5),
        "quantile": (fixed(lambda d: with_numeric(d, "standard", quantile_normal(d))), 5),
        "quantile+ple": (fixed(lambda d: with_numeric(d, "ple", quantile_normal(d))), 5),
        "robust-clip": (fixed(lambda d: with_numeric(d, "standard", robust_clip(d))), 5),
        "robust-clip+ple": (fixed(lambda d: with_numeric(d, "ple", robust_clip(d))), 5),
    }
    for sigma in (0.1, 0.3, 1.0):
        table[f"periodic s={sigma:g}"] = (fixed(
            lambda d, s=sigma: with_numeric(d, "standard", z_of(d), periodic(d, s))), 5)
        table[f"periodic s={sigma:g}+ple"] = (fixed(
            lambda d, s=sigma: with_numeric(d, "ple", z_of(d), periodic(d, s))), 5)
    # Second round (written after the first round's dev table, before any test score).
    table["standard+quantile"] = (fixed(lambda d: with_numeric(d, "standard", z_of(d),
                                                               quantile_normal(d))), 5)
    table["quantile-uniform"] = (fixed(lambda d: with_numeric(
        d, "standard", quantile_normal(d, "uniform"))), 5)
    table["quantile+periodic s=0.1"] = (fixed(lambda d: with_numeric(
        d, "standard", quantile_normal(d), periodic(d, 0.1, z=quantile_normal(d)))), 5)
    table["quantile K=10"] = (table["quantile"][0], 10)
    table["dev-best K=10"] = (fixed(lambda d: d.ple), 10)
    table["dev-best K=20"] = (fixed(lambda d: d.ple), 20)
    table["mixed K=10"] = (lambda d, k: d.ple if k % 2 == 0 else d.standard, 10)
    quantile = table["quantile"][0]
    table["mixed quantile K=10"] = (lambda d, k: d.ple if k % 2 == 0 else quantile(d, k), 10)
    # Third round (after the second round's dev table and the one-level-down refit; test
    # unread): more members and more views in the mixed ensembles.
    table["mixed quantile K=20"] = (table["mixed quantile K=10"][0], 20)
    quantile_ple = table["quantile+ple"][0]
    table["mixed quantile+ple K=10"] = (
        lambda d, k: d.ple if k % 2 == 0 else quantile_ple(d, k), 10)
    views = (lambda d, k: d.ple, quantile, table["quantile+periodic s=0.1"][0])
    table["mixed 3 views K=15"] = (lambda d, k: views[k % 3](d, k), 15)
    # Fourth round (session 6; rules in the module docstring, written before its numbers):
    # the product's Gaussian rank at K knots, target-aware PLE bins, one union view.
    for K in GRANK_KNOTS:
        grank_ple = fixed(lambda d, K=K: with_numeric(d, "ple", gaussian_rank(d, K)))
        table[f"mixed grank {K}+ple K=10"] = (
            lambda d, k, v=grank_ple: d.ple if k % 2 == 0 else v(d, k), 10)
    grank_ple = fixed(lambda d: with_numeric(d, "ple", gaussian_rank(d, CHOSEN_K)))
    for bins in (4, 8):
        tree = fixed(lambda d, b=bins: d.views[f"tree {b}"])
        table[f"tree {bins}"] = (tree, 5)
        table[f"mixed tree {bins} + grank {CHOSEN_K}+ple K=10"] = (
            lambda d, k, t=tree: t(d, k) if k % 2 == 0 else grank_ple(d, k), 10)
    table[f"z+grank {CHOSEN_K}+ple K=10"] = (fixed(lambda d: with_numeric(
        d, "ple", z_of(d), gaussian_rank(d, CHOSEN_K))), 10)
    # Diagnostics of round 4, added after its first part (every product rank behind
    # scikit-learn's), not candidates of rule (b): which difference costs.
    diagnostics = {f"grank {K} ends": lambda d, K=K: gaussian_rank(d, K, ends=True)
                   for K in GRANK_KNOTS}
    diagnostics[f"quantile {CHOSEN_K}"] = lambda d: quantile_normal(d, n_quantiles=CHOSEN_K)
    for name, value in diagnostics.items():
        view = fixed(lambda d, f=value: with_numeric(d, "ple", f(d)))
        table[f"mixed {name}+ple K=10"] = (
            lambda d, k, v=view: d.ple if k % 2 == 0 else v(d, k), 10)
    return table


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` in float64, clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def fit_member(cfg, X: dict[str, np.ndarray], y: dict[str, np.ndarray], fit: np.ndarray,
               stop: np.ndarray | None, seed: int, epochs: int | None = None):
    """One network on the train rows ``fit`` of ``X["train"]``: early-stopped on the train
    rows ``stop`` (``epochs`` None), or run for ``epochs`` epochs without stopping on all
    of train + dev where ``stop`` is None (the refit). Returns the model and its epochs."""
    from dataclasses import replace

    from nn_core.selection import train_network

    c = cfg if epochs is None else replace(cfg, epochs=epochs, patience=10**6,
                                           restore_best=False)
    if stop is None:  # dev is scored after each epoch only because train_network asks
        Xf = np.vstack([X["train"][fit], X["dev"]])
        yf = np.r_[y["train"][fit], y["dev"]]
        return train_network(c, {"train": Xf, "dev": X["dev"]}, {"train": yf, "dev": y["dev"]},
                             seed)[::2]
    return train_network(c, {"train": X["train"][fit], "dev": X["train"][stop]},
                         {"train": y["train"][fit], "dev": y["train"][stop]}, seed)[::2]


def main() -> None:
    from nn_core.ensemble import member_seed
    from nn_core.metrics import pr_auc, roc_auc
    from nn_core.selection import NetConfig, train_network

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from study_cross_fit import folds_of

    table = candidates()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--only", default="", help="comma-separated candidates (dev-best is "
                    f"always first); known: {', '.join(table)}")
    ap.add_argument("--versus", default="", help="a second reference: run right after "
                    "dev-best, with the paired differences to it in two more columns (dev table)")
    ap.add_argument("--refit", action="store_true", help="one level down (dev only): each "
                    "member early-stopped on a fifth of train against the same member refit on "
                    "all of train for its epoch count, scored on dev")
    ap.add_argument("--test", default="", help="candidates also scored on test, trained on "
                    "train (stopped on dev) and refit on train + dev, with the paired bootstrap "
                    "against HistGBM (only after choosing on dev)")
    ap.add_argument("--check-product", action="store_true", help="no training: the "
                    "product's Gaussian rank against the diagnostic 'grank K ends' on train "
                    "and dev (exit status 1 where they differ)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.check_product:
        sys.exit(0 if check_product(load(seeds)) else 1)
    names = ["dev-best", *(n for n in args.only.split(",") if n and n != "dev-best")] \
        if args.only else list(table)
    versus = args.versus if args.versus and not args.refit else None
    if versus:
        names = [names[0], versus, *(n for n in names[1:] if n != versus)]
    on_test = [n for n in args.test.split(",") if n]
    unknown = sorted((set(names) | set(on_test) | {args.versus} - {""}) - set(table))
    if unknown:
        ap.error(f"unknown candidates {unknown}; known: {list(table)}")
    cfg = NetConfig(lr=3e-3)
    data = load(seeds)
    if on_test:
        test_report(cfg, table, on_test, data)
        return
    print(f"seeds {seeds}; lr {cfg.lr:g}, members per seed as named, logits averaged"
          + ("; ONE LEVEL DOWN: pool = train, stop = fold 0 of 5, dev held out" if args.refit
             else ""))
    cols = ("early-stopped ROC | early-stopped PR | refit ROC | refit PR | Δ ROC refit | "
            "Δ PR refit" if args.refit else
            "dev ROC-AUC | dev PR-AUC | Δ ROC vs dev-best | Δ PR vs dev-best"
            + (f" | Δ ROC vs {versus} | Δ PR vs {versus}" if versus else ""))
    print(f"| candidate | {cols} | s/seed | load |")
    print("|---|" + "---:|" * (len(cols.split("|")) + 2), flush=True)
    ref = ref2 = None
    for name in names:
        features, K = table[name]
        dev, refit = [], []
        start = time.perf_counter()
        for seed, d in data.items():
            z, zr = 0.0, 0.0
            if args.refit:
                fold = folds_of(np.arange(len(d.y["train"])), d.y["train"], 5, seed)
            for k in range(K):
                X = features(d, k)
                if args.refit:
                    model, best = fit_member(cfg, X, d.y, fold != 0, fold == 0,
                                             member_seed(seed, k))
                    again, _ = fit_member(cfg, X, d.y, np.ones(len(fold), bool), fold == 0,
                                          member_seed(seed, k), epochs=best)
                    zr = zr + logit(again.predict_proba(X["dev"]))
                else:
                    model, _, _ = train_network(cfg, X, d.y, member_seed(seed, k))
                z = z + logit(model.predict_proba(X["dev"]))
            dev.append((roc_auc(d.y["dev"], z), pr_auc(d.y["dev"], z)))
            if args.refit:
                refit.append((roc_auc(d.y["dev"], zr), pr_auc(d.y["dev"], zr)))
        sec = (time.perf_counter() - start) / len(seeds)
        dev = np.asarray(dev)
        if args.refit:
            refit = np.asarray(refit)
            cells = [ms(dev[:, 0]), ms(dev[:, 1]), ms(refit[:, 0]), ms(refit[:, 1]),
                     ms(refit[:, 0] - dev[:, 0], "+"), ms(refit[:, 1] - dev[:, 1], "+")]
        else:
            ref = dev if ref is None else ref
            ref2 = dev if name == versus else ref2
            cells = [ms(dev[:, 0]), ms(dev[:, 1])]
            for r in (ref, ref2) if versus else (ref,):
                cells += ["", ""] if r is None else [ms(dev[:, 0] - r[:, 0], "+"),
                                                     ms(dev[:, 1] - r[:, 1], "+")]
        print(f"| {name} | " + " | ".join(cells) + f" | {sec:.1f} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)


def ms(a: np.ndarray, sign: str = "") -> str:
    """``mean ± std`` (ddof 1) of per-seed values."""
    return f"{a.mean():{sign}.4f} ± {a.std(ddof=1):.4f}"


def test_report(cfg, table: dict[str, Candidate], names: list[str],
                data: dict[int, SeedData]) -> None:
    """Test ROC-AUC / PR-AUC of ``names`` (trained on train, stopped on dev; and refit on
    train + dev for each member's epoch count) and of HistGBM (``compare_models``' fit on
    train + dev), with the paired bootstrap interval of each difference to HistGBM."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_models import HGB, interval, mean_std, sklearn_scores

    from nn_core.bootstrap import bootstrap_replicates, difference_interval
    from nn_core.ensemble import member_seed
    from nn_core.metrics import pr_auc, roc_auc
    from nn_core.selection import train_network

    seeds = list(data)
    splits_ref = {"path": str(ROOT / "data" / "online_shoppers_intention.csv"),
                  "seeds": {str(s): {k: d.ids[k].tolist() for k in PARTS}
                            for s, d in data.items()}}
    sk, _ = sklearn_scores(splits_ref, with_mlp=False)
    scores = {HGB: [sk[HGB].test[s] for s in seeds]}
    for name in names:
        features, K = table[name]
        for refit in (False, True):
            zs = []
            for seed, d in data.items():
                z = 0.0
                everything = np.ones(len(d.y["train"]), bool)
                for k in range(K):
                    X = features(d, k)
                    model, _, best = train_network(cfg, X, d.y, member_seed(seed, k))
                    if refit:
                        model, _ = fit_member(cfg, X, d.y, everything, None,
                                              member_seed(seed, k), epochs=best)
                    z = z + logit(model.predict_proba(X["test"]))
                zs.append(z)
            scores[f"{name}{', refit on train + dev' if refit else ''}"] = zs
    y = [data[s].y["test"] for s in seeds]
    ref = names[0]
    print(f"seeds {seeds}; test; paired bootstrap 2000 resamples (seed 0) of each seed's test "
          f"rows, statistic = mean over seeds of the per-seed difference; 95 % interval")
    print(f"| model | test ROC-AUC | test PR-AUC | ROC − HistGBM | PR − HistGBM | ROC − {ref} "
          f"| PR − {ref} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    cells: dict[str, list[str]] = {name: [] for name in scores}
    for m, f in (("roc_auc", roc_auc), ("pr_auc", pr_auc)):
        est, rep = bootstrap_replicates(y, scores, m, 2000, 0)
        for name, zs in scores.items():
            cells[name].append(mean_std([f(yi, zi) for yi, zi in zip(y, zs, strict=True)]))
            cells[name] += ["" if name in (other, HGB) else interval(difference_interval(
                est[name] - est[other], rep[name] - rep[other])) for other in (HGB, ref)]
    for name, c in cells.items():
        print(f"| {name} | {c[0]} | {c[3]} | {c[1]} | {c[4]} | {c[2]} | {c[5]} |")


if __name__ == "__main__":
    main()
