"""How every exported predictor describes itself: its input table and its network.

The same facts appear in ``NAME.json`` (:func:`input_table`), in the comment of a C header
or the docstring of a Python predictor (:func:`table_comment`, :func:`network_line`).
"""

from __future__ import annotations

from .model import ExportModel

UNSEEN_RULE = (
    "any other code (another number, a non-integer, NaN or +-inf) selects the unseen-category "
    "bucket, like a text value never seen in training"
)
INVALID_RULE = (
    "NaN, +-inf, or a negative value in a log1p input make the predictor return NaN "
    "(predict.py rejects such rows with an error)"
)


IMPUTE_NOTE = (
    "Missing values (trained with --on-invalid impute), which override the two rules above:",
    "  NaN in an input listed below is missing and is replaced by the value imputed in",
    "  training before anything else (so pass an unseen category as another number, e.g.",
    "  +inf, not NaN); where the column had missing training values, a missing-indicator",
    "  feature is 1. Imputed values:",
)


def input_table(model: ExportModel) -> list[dict]:
    """The ``NAME.json`` description of the raw inputs, in order."""
    rows = []
    for c in model.inputs:
        if c.kind == "numeric":
            rows.append({
                "index": c.index, "name": c.name, "kind": "numeric", "log1p": c.log1p,
                "mean": c.mean, "std": c.std,
                "valid": "finite, >= 0" if c.log1p else "finite",
            })
            if model.encoded or model.ranked:  # only then: the table of a model without
                rows[-1]["value"] = c.value  # stays as it was
                if c.knots is not None:
                    rows[-1].update(knots=list(c.knots), scores=list(c.scores),
                                    ends=list(c.ends))
                if c.edges is not None:
                    rows[-1]["edges"] = list(c.edges)
        else:
            rows.append({
                "index": c.index, "name": c.name, "kind": "categorical",
                "code": ("the category's own integer value" if c.code_scheme == "value"
                         else "the index of the category in 'values' (0-based)"),
                "code_scheme": c.code_scheme,
                "values": c.categories, "codes": c.codes, "unseen": UNSEEN_RULE,
            })
        if c.impute is not None:
            rows[-1]["missing"] = (
                f"NaN = missing: replaced by {c.impute!r} (the training "
                + ("median" if c.kind == "numeric" else "most frequent category's code")
                + ")" + (f"; missing indicator at feature {c.missing_row}"
                         if c.missing_row is not None else ""))
    return rows


def table_comment(model: ExportModel, prefix: str) -> str:
    """The input table as comment lines (C: prefix ``' *   '``, Python: ``'    '``)."""
    lines = ["x[i]  name                          kind         how to pass it"]
    for c in model.inputs:
        if c.kind == "numeric":
            how = ("raw value >= 0 (log1p applied inside)" if c.log1p
                   else "raw value")
            inside = ([f"Gaussian rank, {c.n_knots} knots"] if c.knots is not None else []) \
                + ([f"piecewise-linear encoding, {c.n_bins} bins"] if c.edges is not None
                   else [])
            if inside:
                how += f" ({' and '.join(inside)}, inside)"
            kind = "numeric"
        else:
            kind = "categorical"
            if c.code_scheme == "value":
                how = "code = the value itself: " + " ".join(c.categories)
            else:
                how = "code = index: " + " ".join(f"{k}={cat}" for k, cat in
                                                  zip(c.codes, c.categories, strict=True))
        lines.append(f"x[{c.index:<2d}] {c.name:<29s} {kind:<12s} {how}")
    lines += ["Categorical: any other code (another number, a non-integer, NaN, +-inf) selects",
              "  the unseen-category bucket, like a text value never seen in training.",
              "Numeric: NaN, +-inf, or a negative value in a log1p input -> the result is NaN",
              "  (predict.py rejects such rows with an error; a device cannot raise)."]
    if model.imputed:
        lines += [*IMPUTE_NOTE,
                  *(f"  x[{c.index}] {c.name}: {c.impute!r}"
                   + (" (+ missing indicator)" if c.missing_row is not None else "")
                   for c in model.imputed)]
    return "\n".join((prefix + line).rstrip() for line in lines)


def network_line(model: ExportModel, numeric_type: str) -> str:
    """``Network: 80 features (17 raw inputs) -> 64 relu -> 1 sigmoid, float32.``"""
    widths = model.widths
    parts = [f"{model.params[0][0].shape[0]} features ({len(model.inputs)} raw inputs)"]
    parts += [f"{w} {model.activation}" for w in widths[:-1]]
    parts.append(f"{widths[-1]} {model.output}")
    if not model.combined:
        return "Network: " + " -> ".join(parts) + f", {numeric_type}."
    members = "; ".join(
        f"{m.weight:.6g} x (" + " -> ".join([*(f"{W.shape[1]} {m.activation}"
                                               for W, _ in m.params[:-1]), "logit"]) + ")"
        for m in model.members)
    calibration = model.calibration["kind"] if model.calibration else "no"
    return (f"Networks: {len(model.members)} on {parts[0]}, logits summed as "
            f"{model.logit_bias:.6g} + {members}; sigmoid, {calibration} calibration; "
            f"{numeric_type}.")
