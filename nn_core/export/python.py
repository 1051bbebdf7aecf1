"""One-file Python predictors: ``python`` (NumPy) and ``python-pure`` (no dependency).

The module text is ``templates/predictor_numpy.py`` or ``templates/predictor_pure.py``,
with the shared ``encode`` section of ``templates/encode.py``. This module generates the
data (constants, the input table, the weights as exact decimal literals) and the branches
of ``_activate``, one per entry of ``nn_core.activations.ACTIVATIONS``.
"""

from __future__ import annotations

import pprint
from collections.abc import Iterable

import numpy as np

from ..activations import ACTIVATIONS
from ..preprocessing import MISSING_TOKENS
from .describe import input_table, network_line, table_comment
from .model import ExportModel
from .templating import fill, section

TEMPLATES = {"python": "predictor_numpy.py", "python-pure": "predictor_pure.py"}


def py_float(v: float) -> str:
    """Python float literal equal to the exact value of ``v`` (float32 values are doubles)."""
    return repr(float(v))


def _py_list(values: Iterable, per_line: int = 6, indent: str = "    ") -> str:
    items = [py_float(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n" + "".join(f"{indent}    {line},\n" for line in lines) + f"{indent}]"


def _activate_branches(fmt: str) -> str:
    """The ``if name == ...: return ...`` lines of ``_activate``, in the table's order.

    Entries spelled like the identity compute nothing: the template's final ``return``
    (the input unchanged) covers them.
    """
    lines = []
    for name, act in ACTIVATIONS.items():
        if fmt == "python":
            if act.numpy != ACTIVATIONS["identity"].numpy:
                lines.append(f'    if name == "{name}":\n        return {act.numpy}\n')
        elif act.py != ACTIVATIONS["identity"].py:
            lines.append(f'    if name == "{name}":\n        return [{act.py} for v in h]\n')
    return "".join(lines)


def _impute_lines(model: ExportModel, fmt: str) -> tuple[str, str]:
    """The IMPUTE and INDICATORS lines of a model trained with imputation (none otherwise):
    a NaN input takes its imputed value (NaN stays NaN in an input without one), and each
    missing indicator adds its weight row where its input was NaN."""
    if not model.imputed:
        return "", ""
    nan = "np.nan" if fmt == "python" else 'float("nan")'
    fill = ", ".join(nan if c.impute is None else py_float(c.impute) for c in model.inputs)
    note = "  # a missing input (NaN) takes the value imputed in training"
    pairs = [(c.index, c.missing_row) for c in model.inputs if c.missing_row is not None]
    if fmt == "python":
        impute = f"    missing = np.isnan(X){note}\n    X = np.where(missing, [{fill}], X)\n"
        indicators = (f"    F[:, {[r for _, r in pairs]}] = missing[:, {[i for i, _ in pairs]}]"
                      "  # missing indicators\n" if pairs else "")
    else:
        impute = (f"    missing = [v != v for v in x]{note}\n"
                  f"    x = [f if m else v for v, m, f in zip(x, missing, [{fill}])]\n")
        indicators = (f"    for i, row in {tuple(pairs)!r}:  # missing indicators: (input, row)\n"
                      "        if missing[i]:\n"
                      "            h = [hj + wj for hj, wj in zip(h, W0[row])]\n"
                      if pairs else "")
    return impute, indicators


#: The NUMERIC lines of the two templates: the standardised value of a numeric input (the
#: only lines of a model without an encoding); with an encoding (:func:`_numeric_lines`)
#: that value where it is kept (``value``, at ``row``), then the Gaussian rank on the
#: input's ``knots``, ``scores`` and ``ends`` (``nn_core.preprocessing.gaussian_rank``) at
#: feature ``rank_row`` and the piecewise-linear encoding of ``x`` on its ``edges``
#: (``nn_core.preprocessing.piecewise_linear``) at ``ple_row`` on, where the input has
#: them. The rows are data of INPUTS (:func:`_inputs_data`): the code never works out the
#: block's layout.
_NUMERIC = {
    "python": (
        '                u = np.log1p(np.where(x < 0, 0.0, x)) if c["log1p"] else x\n'
        '                F[:, row] = (u - c["mean"]) / c["std"]\n'),
    "python-pure": (
        '            z = ((math.log1p(v) if c["log1p"] else v) - c["mean"]) / c["std"]\n'
        '            h = [hj + z * wj for hj, wj in zip(h, W0[row])]\n'),
}
_NUMERIC_VALUE = {
    "python": (
        '                if c["value"]:\n'
        '                    u = np.log1p(np.where(x < 0, 0.0, x)) if c["log1p"] else x\n'
        '                    F[:, row] = (u - c["mean"]) / c["std"]\n'),
    "python-pure": (
        '            if c["value"]:\n'
        '                z = ((math.log1p(v) if c["log1p"] else v) - c["mean"]) / c["std"]\n'
        '                h = [hj + z * wj for hj, wj in zip(h, W0[row])]\n'),
}
_NUMERIC_RANK = {
    "python": (
        '                if "knots" in c:  # Gaussian rank of x, at feature rank_row\n'
        '                    q, (lo, hi) = c["knots"], c["ends"]  # lo, hi at and beyond q\n'
        '                    F[:, c["rank_row"]] = np.where(x <= q[0], lo, np.where(\n'
        '                        x >= q[-1], hi, np.interp(x, q, c["scores"])))\n'),
    "python-pure": (
        '            if "knots" in c:  # Gaussian rank of v, at feature rank_row\n'
        '                q, s = c["knots"], c["scores"]\n'
        '                if v <= q[0] or v >= q[-1]:  # lo at or below the knots, hi above\n'
        '                    g = c["ends"][0] if v <= q[0] else c["ends"][1]\n'
        '                else:  # binary search: q[lo] <= v < q[hi], hi = lo + 1\n'
        '                    lo, hi = 0, len(q) - 1\n'
        '                    while hi - lo > 1:\n'
        '                        mid = (lo + hi) // 2\n'
        '                        lo, hi = (mid, hi) if q[mid] <= v else (lo, mid)\n'
        '                    g = s[lo] + (v - q[lo]) * (s[hi] - s[lo]) / (q[hi] - q[lo])\n'
        '                h = [hj + g * wj for hj, wj in zip(h, W0[c["rank_row"]])]\n'),
}
_NUMERIC_PLE = {
    "python": (
        '                if "edges" in c:  # piecewise-linear encoding of x, from ple_row on\n'
        '                    b = np.asarray(c["edges"])\n'
        '                    E = (x[:, None] - b[:-1]) / np.diff(b)\n'
        '                    E[:, :-1] = np.minimum(E[:, :-1], 1.0)  # first: not clipped below\n'
        '                    E[:, 1:] = np.maximum(E[:, 1:], 0.0)  # last: not clipped above\n'
        '                    first = c["ple_row"]\n'
        '                    F[:, first:first + len(b) - 1] = E\n'),
    "python-pure": (
        '            if "edges" in c:  # piecewise-linear encoding of v, from ple_row on\n'
        '                b = c["edges"]\n'
        '                for t in range(len(b) - 1):\n'
        '                    e = (v - b[t]) / (b[t + 1] - b[t])\n'
        '                    e = e if t == 0 else max(e, 0.0)  # first: not clipped below\n'
        '                    e = e if t == len(b) - 2 else min(e, 1.0)  # last: not above\n'
        '                    h = [hj + e * wj for hj, wj in zip(h, W0[c["ple_row"] + t])]\n'),
}


def _numeric_lines(model: ExportModel, fmt: str) -> str:
    """The NUMERIC lines of a model: the value alone without an encoding; else the value
    where kept, the Gaussian rank where the model has one and the piecewise-linear
    encoding where the model has one."""
    if not (model.encoded or model.ranked):
        return _NUMERIC[fmt]
    return (_NUMERIC_VALUE[fmt] + (_NUMERIC_RANK[fmt] if model.ranked else "")
            + (_NUMERIC_PLE[fmt] if model.encoded else ""))


def _inputs_data(model: ExportModel) -> list[dict]:
    """INPUTS of the predictors: the input table of ``NAME.json``
    (:func:`~nn_core.export.describe.input_table`) with, in a model with an encoding, each
    numeric input's ``rank_row`` and ``ple_row`` after its ``value`` where it has that
    encoding: the features of its Gaussian rank and of its first bin, from
    :class:`~nn_core.export.model.Input` (the block's layout,
    ``nn_core.preprocessing.part_slices``). The predictor places the features there."""
    table = input_table(model)
    for k, (entry, c) in enumerate(zip(table, model.inputs, strict=True)):
        if "value" in entry:  # a numeric input of a model with an encoding
            rows = {key: r for key, r in (("rank_row", c.rank_row), ("ple_row", c.ple_row))
                    if r is not None}
            items = list(entry.items())
            at = list(entry).index("value") + 1
            table[k] = dict(items[:at] + list(rows.items()) + items[at:])
    return table


def _encode_missing(model: ExportModel) -> str:
    """The lines of ``encode`` for a model trained with imputation (none otherwise): a
    missing record value (None, NaN or a ``MISSING_TOKENS`` text) becomes NaN, which the
    predictor imputes, and an unseen category +inf (NaN would mean missing)."""
    if not model.imputed:
        return ""
    tokens = tuple(sorted(MISSING_TOKENS))
    return (f"        if value is None or str(value).strip().lower() in {tokens!r}:\n"
            "            x.append(float(\"nan\"))  # missing: the predictor imputes it\n"
            "            continue\n"
            "        if c[\"kind\"] == \"categorical\":  # unseen: +inf (NaN means missing)\n"
            "            code = dict(zip(c[\"values\"], c[\"codes\"])).get(_canonical(value))\n"
            "            x.append(float(\"inf\") if code is None else float(code))\n"
            "            continue\n")


#: FORWARD of the NumPy predictor: one network's layers to its output.
_FORWARD = (
    "    for layer, (W, b) in enumerate(LAYERS):\n"
    "        H = _activate(OUTPUT if layer == len(LAYERS) - 1 else ACTIVATION, H @ W + b)\n"
    "    p = H[:, 0].astype(np.float64)\n")
#: FORWARD of a combined model: ``z = c + sum_k w_k z_k`` over MEMBERS, then CALIBRATE.
_FORWARD_COMBINED = (
    "    z = LOGIT_BIAS  # the combined logit c + sum_k w_k z_k\n"
    "    for weight, activation, layers in MEMBERS:\n"
    "        Hk = H\n"
    "        for layer, (W, b) in enumerate(layers):\n"
    "            Z = Hk @ W + b\n"
    "            Hk = Z if layer == len(layers) - 1 else _activate(activation, Z)\n"
    "        z = z + weight * Z[:, 0].astype(np.float64)\n"
    "    p = @CALIBRATE@\n")
#: The probability of the combined logit ``z``: sigma(z), or the calibration of
#: ``nn_core/calibration.py`` (Platt: sigma(a z + b); isotonic: linear interpolation of
#: sigma(z) between the breakpoints, clipped outside them).
_CALIBRATE = {
    None: '_activate("sigmoid", z)',
    "platt": '_activate("sigmoid", CAL_A * z + CAL_B)',
    "isotonic": 'np.interp(_activate("sigmoid", z), CAL_X, CAL_Y)',
}


#: FORWARD of the pure predictor: one network's layers after layer 0.
_FORWARD_PURE = (
    "    for layer in range(1, len(LAYERS)):\n"
    "        h = _activate(ACTIVATION, h)\n"
    "        W, b = LAYERS[layer]  # W stored by output unit: W[j] = column j\n"
    "        h = [bj + sum(a * w for a, w in zip(h, col)) for bj, col in zip(b, W)]\n"
    "    return _activate(OUTPUT, h)[0]\n")
#: FORWARD of a combined model in the pure predictor: LAYERS[0] holds every member's layer 0
#: side by side, so ``h`` is their first layers; each member goes on from its slice.
_FORWARD_PURE_COMBINED = (
    "    z = LOGIT_BIAS  # the combined logit c + sum_k w_k z_k\n"
    "    start = 0\n"
    "    for weight, activation, width, layers in MEMBERS:\n"
    "        hk = h[start:start + width]\n"
    "        start += width\n"
    "        for W, b in layers:  # W stored by output unit: W[j] = column j\n"
    "            hk = _activate(activation, hk)\n"
    "            hk = [bj + sum(a * w for a, w in zip(hk, col)) for bj, col in zip(b, W)]\n"
    "        z += weight * hk[0]\n"
    "    return @CALIBRATE@\n")
_CALIBRATE_PURE = {
    None: "_sigmoid(z)",
    "platt": "_sigmoid(CAL_A * z + CAL_B)",
    "isotonic": ("CAL_Y0 + sum(s * min(max(_sigmoid(z) - x, 0.0), d)"
                 " for x, d, s in CAL_SEGMENTS)"),
}


def _members_numpy(model: ExportModel) -> str:
    """The MEMBERS lines of a combined model (none for one network): members 1..K-1's
    layers, the list of (weight, activation, layers), the bias and the calibration."""
    if not model.combined:
        return ""
    lines = []
    for k, m in enumerate(model.others, 1):
        lines.append(f"LAYERS_{k} = []\n" + _layers_numpy(m.params, f"LAYERS_{k}"))
    entries = [f"({py_float(model.weight)}, ACTIVATION, LAYERS)"] + [
        f"({py_float(m.weight)}, {m.activation!r}, LAYERS_{k})"
        for k, m in enumerate(model.others, 1)]
    lines.append("MEMBERS = [  # (weight w_k, hidden activation, layers) of each network\n"
                 + "".join(f"    {e},\n" for e in entries) + "]\n")
    lines.append(f"LOGIT_BIAS = {py_float(model.logit_bias)}\n")
    lines.append(_calibration_lines(model, "python"))
    return "".join(lines)


def _calibration_lines(model: ExportModel, fmt: str) -> str:
    """CAL_* constants of the calibration (none without one): Platt's ``a, b``; the isotonic
    breakpoints (NumPy: ``CAL_X, CAL_Y`` for ``np.interp``; pure: ``CAL_Y0`` and per segment
    ``(x_j, x_{j+1} - x_j, slope)``, summed clamped, which is the same interpolation)."""
    cal = model.calibration
    if cal is None:
        return ""
    if cal["kind"] == "platt":
        return f"CAL_A, CAL_B = {py_float(cal['a'])}, {py_float(cal['b'])}  # Platt\n"
    if fmt == "python":
        return (f"CAL_X = np.array({_py_list(cal['x'], indent='')})  # isotonic\n"
                f"CAL_Y = np.array({_py_list(cal['y'], indent='')})\n")
    x, y = np.asarray(cal["x"]), np.asarray(cal["y"])
    segments = ",\n".join(f"    ({py_float(a)}, {py_float(d)}, {py_float(s)})"
                           for a, d, s in zip(x[:-1], np.diff(x), np.diff(y) / np.diff(x),
                                              strict=True))
    return (f"CAL_Y0 = {py_float(y[0])}  # isotonic: y_0, then (x_j, width, slope)\n"
            f"CAL_SEGMENTS = [\n{segments + ',' if segments else ''}\n]\n")


def _members_pure(model: ExportModel) -> str:
    """The MEMBERS lines of a combined model in the pure predictor (none for one network):
    per member its weight, hidden activation, width of its slice of layer 0 and its later
    layers (stored by output unit), then the bias and the calibration."""
    if not model.combined:
        return ""
    entries = []
    for m in model.members:
        layers = "".join(
            "        (\n            [\n"
            + "".join(f"                {_py_list(col, indent='                ')},\n"
                      for col in W.T)
            + f"            ],\n            {_py_list(b, indent='            ')},\n        ),\n"
            for W, b in m.params[1:])
        entries.append(f"    ({py_float(m.weight)}, {m.activation!r}, {m.params[0][0].shape[1]},"
                       f" [\n{layers}    ]),\n")
    return ("MEMBERS = [  # (weight w_k, hidden activation, width in layer 0, later layers)\n"
            + "".join(entries) + "]\n"
            + f"LOGIT_BIAS = {py_float(model.logit_bias)}\n"
            + _calibration_lines(model, "python-pure"))


def _layers_numpy(params, name: str = "LAYERS") -> str:
    """``NAME.append((W, b))`` per layer, the weights as exact literals of DTYPE."""
    return "".join(
        f"{name}.append((\n    np.array({_py_list(W.ravel(), indent='    ')},"
        f" dtype=DTYPE).reshape({W.shape[0]}, {W.shape[1]}),\n"
        f"    np.array({_py_list(b, indent='    ')}, dtype=DTYPE),\n))\n"
        for W, b in params)


def _py_module(model: ExportModel, name: str, fmt: str, layers: str) -> str:
    values = {
        "NAME": name,
        "TARGET": model.target,
        "INPUT_TABLE": table_comment(model, "    "),
        "NETWORK": network_line(model, "float64" if fmt == "python-pure" else model.dtype),
        "N_INPUTS": str(len(model.inputs)),
        "ACTIVATION": repr(model.activation),
        "OUTPUT": repr(model.output),
        "LEAKY_SLOPE": py_float(model.leaky_slope),
        "N_FEATURES": str(model.params[0][0].shape[0]),
        "INPUTS": pprint.pformat(_inputs_data(model), width=96, sort_dicts=False),
        "_ROWS": repr([c.row for c in model.inputs]),
        "LAYERS": layers,
        "ENCODE": fill(section("encode.py", "encode"),
                       {"ENCODE_MISSING": _encode_missing(model)}),
        "ACTIVATIONS": _activate_branches(fmt),
    }
    values["IMPUTE"], values["INDICATORS"] = _impute_lines(model, fmt)
    values["NUMERIC"] = _numeric_lines(model, fmt)
    if fmt == "python":
        values["DTYPE"] = f"np.{np.dtype(model.dtype).name}"
        values["MEMBERS"] = _members_numpy(model)
        values["FORWARD"] = _FORWARD if not model.combined else _FORWARD_COMBINED.replace(
            "@CALIBRATE@", _CALIBRATE[model.calibration and model.calibration["kind"]])
    else:
        values["MEMBERS"] = _members_pure(model)
        values["FORWARD"] = (_FORWARD_PURE if not model.combined else _FORWARD_PURE_COMBINED
                             .replace("@CALIBRATE@",
                                      _CALIBRATE_PURE[model.calibration
                                                      and model.calibration["kind"]]))
    return fill(section(TEMPLATES[fmt], "module"), values)


def generate_python(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """One-file NumPy predictor ``NAME.py`` (model dtype, unfolded, like predict.py).

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes`` and ``ram_bytes`` (two rows of the widest layer)
    """
    width = max(model.widths)
    return {f"{name}.py": _py_module(model, name, "python", _layers_numpy(model.params))}, {
        "weight_bytes": sum(W.nbytes + b.nbytes for m in model.members for W, b in m.params),
        "ram_bytes": 2 * width * np.dtype(model.dtype).itemsize,
    }


def generate_python_pure(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """One-file dependency-free predictor ``NAME.py`` (double precision lists).

    Layer 0 is stored by input row (a one-hot input adds one row), later layers by output
    unit (each output is a dot product with one stored row).

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes`` and ``ram_bytes``
    """
    parts = []
    # a combined model: every member's layer 0 side by side (MEMBERS holds the rest)
    params = model.params if not model.combined else [model.first_layers]
    for layer, (W, b) in enumerate(params):
        M = W if layer == 0 else W.T
        rows = ",\n".join(f"        {_py_list(r, indent='        ')}" for r in M)
        parts.append(f"LAYERS.append((\n    [\n{rows},\n    ],\n"
                     f"    {_py_list(b, indent='    ')},\n))\n")
    width = max(W.shape[1] for W, _ in params)
    return {f"{name}.py": _py_module(model, name, "python-pure", "".join(parts))}, {
        "weight_bytes": 8 * model.n_parameters,
        "ram_bytes": 2 * width * 8,
    }
