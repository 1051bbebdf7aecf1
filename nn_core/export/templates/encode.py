# Template section shared by both one-file Python predictors (predictor_numpy.py and
# predictor_pure.py insert the "encode" section at their "# @ENCODE@" line). The lines
# outside the section only make this file valid Python for linters and are not emitted.
# The emitted text is pinned by tests/nn_core/export/test_export_golden.py:
# zip() stays without strict=. The "# @ENCODE_MISSING@" line is replaced by the handling
# of missing values for a model trained with imputation, and removed otherwise.
# ruff: noqa: B905
import math

INPUTS = ...


# @begin encode
def _canonical(value):
    """Canonical text of a categorical value, as features.tabular.canonical_text."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    text = str(value).strip()
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return text


def encode(record):
    """Raw input row from a record {column name: value} (text or number, as in the CSV).

    Categorical values are looked up by their canonical text; an unseen one becomes NaN,
    which the predictor treats as an unseen code.
    """
    x = []
    for c in INPUTS:
        value = record[c["name"]]
        # @ENCODE_MISSING@
        if c["kind"] == "numeric":
            x.append(float(value))
        else:
            code = dict(zip(c["values"], c["codes"])).get(_canonical(value))
            x.append(float("nan") if code is None else float(code))
    return x
# @end encode
