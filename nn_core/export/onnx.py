"""ONNX predictor (``onnx``): ``NAME.onnx``, one graph from the raw inputs to the probability.

The graph takes the raw input vector of the C target, one row per sample: input ``x``,
float32, shape ``(n, n_inputs)``, in the order of ``preprocess.json`` (categorical inputs as
their codes, see ``nn_core/export/model.py: categorical_codes``); output ``p``, float32,
shape ``(n,)``. It is built with ``onnx.helper`` (opset :data:`OPSET`) and passes
``onnx.checker``; the ``onnx`` package is an optional extra, imported only when this
format is asked for.

What the graph computes, in the C target's order (``nn_core/export/c.py``):

0. **Imputation** (a model trained with ``--on-invalid impute``): ``Where(IsNaN(x), fill,
   x)`` gives a missing (NaN) input the value imputed in training; the missing indicators
   (step 2) read the original ``x``.
1. **Validity.** A row with a numeric input that is NaN or +-inf, or negative in a
   ``log1p`` input, gets ``p = NaN`` (``IsNaN``, ``IsInf``, ``Less``; the rows
   ``predict.py`` refuses).
2. **Features.** Per input, in input order (so the columns are the network's feature
   order): a numeric input gives one column, ``log1p(x_i)`` where the column has it, else
   ``x_i`` (none where an encoding replaces it), then its Gaussian rank, if any (the
   segment ``j`` as the count of inner knots at or below ``x``, ``GreaterOrEqual`` and
   ``ReduceSum``; ``s_j + (x - q_j) d_j`` from ``Gather``ed knots, scores and slopes
   ``d_j``; ``Where`` gives the end value ``lo`` at or below ``q_1`` and ``hi`` at or
   above ``q_m``), then its piecewise-linear encoding, if any
   (``Sub``, ``Mul``, ``Min``, ``Max`` against the edges); a categorical
   input gives its one-hot block, ``Equal(x_i, codes)`` over the ``K`` training codes
   and one more column ``1 - sum`` for the unseen bucket, so any other code (another
   number, a non-integer, NaN, +-inf) selects the unseen bucket.
3. **Layer 0** with the standardisation folded in: ``W'_i = W_i / s_i`` and
   ``b' = b - sum_i (m_i / s_i) W_i`` (``nn_core/export/model.py: fold_first_layer``, the
   same float32 numbers as the C target); one-hot rows are the model's rows.
4. **Layers**: ``MatMul``, ``Add``, then the activation, spelled by its entry's ``onnx``
   field in ``nn_core/activations.py: ACTIVATIONS`` (the output function too, as the C
   target spells it from the same table).
5. **A combined model** (``nn_core/ensemble.py``): steps 3-4 per member up to its logit
   ``z_k`` (member ``k >= 1``'s constants named ``m<k>_W<l>``), then
   ``z = c + sum_k w_k z_k`` and the probability: ``sigmoid(z)``, Platt's
   ``sigmoid(a z + b)``, or the isotonic breakpoints ``(x_j, y_j)`` interpolated as
   ``y_0 + sum_j s_j min(max(sigmoid(z) - x_j, 0), x_{j+1} - x_j)`` with slopes
   ``s_j = (y_{j+1} - y_j) / (x_{j+1} - x_j)`` (``numpy.interp``, clipped at both ends).

ONNX has no ``log1p``: the graph computes ``log(1 + x)``. For a small ``x`` that loses
the low bits of ``x`` in float32 (``log1pf(1e-7) = 1e-7``, ``logf(1 + 1e-7) = 1.19e-7``),
an absolute error below 1.2e-7 in ``u``, which the standardisation divides by the
column's standard deviation (a log1p column's is about 1-3 on the UCI data); the test
against ``predict.py`` includes values from 1e-7 up.
"""

from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS
from .describe import network_line, table_comment
from .model import ExportError, ExportModel, fold_first_layer

#: The ONNX operator set the graph is written for (every operator used exists there).
OPSET = 17


class _Graph:
    """Nodes and constants of a graph under construction; ``graph(op_type, *inputs)`` adds a
    node and returns its output's name (the ``op`` of ``Activation.onnx``)."""

    def __init__(self, helper, numpy_helper, float_type: int, int64_type: int) -> None:
        self.helper, self.numpy_helper = helper, numpy_helper
        #: The ``TensorProto`` codes of float32 and int64 (``Cast``'s ``to``).
        self.FLOAT, self.INT64 = float_type, int64_type
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value, name: str | None = None, dtype=np.float32) -> str:
        """A constant tensor (a scalar for a plain number); returns its name."""
        name = name or self._name("c")
        self.initializers.append(
            self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def __call__(self, op_type: str, *inputs, **attributes) -> str:
        names = [self.const(v) if isinstance(v, int | float) else v for v in inputs]
        out = self._name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, names, [out], **attributes))
        return out


def _column(g: _Graph, i: int, x: str = "x") -> str:
    """Column ``i`` of ``x`` as an ``(n, 1)`` tensor."""
    return g("Gather", x, g.const([i], dtype=np.int64), axis=1)


def _imputed(g: _Graph, model: ExportModel) -> str:
    """``x`` with each NaN (missing) input of an input with imputation replaced by its
    imputed value (``Where(IsNaN(x), fill, x)``, ``fill`` NaN elsewhere), or ``x`` itself
    for a model without imputation."""
    if not model.imputed:
        return "x"
    fill = [np.nan if c.impute is None else c.impute for c in model.inputs]
    return g("Where", g("IsNaN", "x"), g.const([fill]), "x")


def _invalid(g: _Graph, model: ExportModel, x: str = "x") -> str | None:
    """``(n,)`` bool: a numeric input NaN or +-inf, or negative under log1p (None: none)."""
    if not model.numeric:
        return None
    xn = g("Gather", x, g.const([c.index for c in model.numeric], dtype=np.int64), axis=1)
    bad = g("Or", g("IsNaN", xn), g("IsInf", xn))
    logs = [c.index for c in model.numeric if c.log1p]
    if logs:
        xl = g("Gather", x, g.const(logs, dtype=np.int64), axis=1)
        bad = g("Concat", bad, g("Less", xl, 0.0), axis=1)
    any_bad = g("ReduceMax", g("Cast", bad, to=g.FLOAT), axes=[1], keepdims=0)
    return g("Greater", any_bad, 0.0)


def _piecewise_linear(g: _Graph, x: str, edges: list[float]) -> str:
    """The ``(n, T)`` piecewise-linear encoding of the column ``x`` (n, 1):
    ``(x - b_{t-1}) / (b_t - b_{t-1})`` (times the reciprocal width, as the C target), at
    most 1 but in the last component, at least 0 but in the first."""
    b = np.asarray(edges, dtype=np.float64)
    T = len(b) - 1
    E = g("Mul", g("Sub", x, g.const([b[:-1]])), g.const([1.0 / np.diff(b)]))
    if T == 1:
        return E
    upper = np.r_[np.ones(T - 1), np.inf]
    lower = np.r_[-np.inf, np.zeros(T - 1)]
    return g("Max", g("Min", E, g.const([upper])), g.const([lower]))


def _gaussian_rank(g: _Graph, x: str, knots: list[float], scores: list[float],
                   ends: list[float]) -> str:
    """The ``(n, 1)`` Gaussian rank of the column ``x`` (n, 1): ``lo`` where ``x <= q_1``,
    ``hi`` where ``x >= q_m`` (compared in float32, as the C target), between them, with
    ``j`` the number of inner knots ``q_2..q_{m-1}`` at or below ``x``,
    ``s_j + (x - q_j) d_j`` (``d_j`` the segment's slope, computed in float64 and rounded
    once); NaN stays NaN."""
    q, s = np.asarray(knots, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    lo, hi = (float(e) for e in ends)
    if len(q) == 1:  # a constant column: x * 0 + s_1 (lo = hi = s_1; NaN stays NaN)
        return g("Add", g("Mul", x, 0.0), float(s[0]))
    d = np.diff(s) / np.diff(q)
    if len(q) == 2:
        qj, sj, dj = (g.const([[v[0]]]) for v in (q, s, d))
    else:
        inner = g("Cast", g("GreaterOrEqual", x, g.const([q[1:-1]])), to=g.INT64)
        j = g("ReduceSum", inner, g.const([1], dtype=np.int64), keepdims=1)  # (n, 1)
        qj, sj, dj = (g("Gather", g.const(v[:len(q) - 1]), j, axis=0) for v in (q, s, d))
    G = g("Add", sj, g("Mul", g("Sub", x, qj), dj))
    return g("Where", g("LessOrEqual", x, float(q[0])), lo,
             g("Where", g("GreaterOrEqual", x, float(q[-1])), hi, G))


def _features(g: _Graph, model: ExportModel, source: str = "x") -> str:
    """The ``(n, n_features)`` matrix of raw-scale features of the (imputed) inputs
    ``source``: ``u_i`` per numeric input (the standardisation is in layer 0), the one-hot
    block per categorical input, and the missing indicator ``IsNaN(x_i)`` where the input
    has one."""
    pieces = []
    for c in model.inputs:
        x = _column(g, c.index, source)
        if c.kind == "numeric":
            if c.value:
                pieces.append(g("Log", g("Add", x, 1.0)) if c.log1p else x)
            if c.knots is not None:
                pieces.append(_gaussian_rank(g, x, c.knots, c.scores, c.ends))
            if c.edges is not None:
                pieces.append(_piecewise_linear(g, x, c.edges))
        else:
            hits = g("Cast", g("Equal", x, g.const(c.codes)), to=g.FLOAT)  # (n, K)
            unseen = g("Sub", 1.0, g("ReduceSum", hits, g.const([1], dtype=np.int64),
                                     keepdims=1))
            pieces.append(g("Concat", hits, unseen, axis=1))
        if c.missing_row is not None:
            pieces.append(g("Cast", g("IsNaN", _column(g, c.index)), to=g.FLOAT))
    return pieces[0] if len(pieces) == 1 else g("Concat", *pieces, axis=1)


def _combined(g: _Graph, model: ExportModel, F: str) -> str:
    """The ``(n, 1)`` probability of a combined model from the features ``F`` (step 5 of the
    module docstring)."""
    z = g.const(model.logit_bias)
    for k, m in enumerate(model.members):
        W0, b0 = fold_first_layer(model, m.params)
        layers = [(W0, b0)] + [(W.astype(np.float32), b.astype(np.float32))
                               for W, b in m.params[1:]]
        prefix = f"m{k}_" if k else ""
        H = F
        for layer, (W, b) in enumerate(layers):
            Z = g("Add", g("MatMul", H, g.const(W, f"{prefix}W{layer}")),
                  g.const(b, f"{prefix}b{layer}"))
            H = Z if layer == len(layers) - 1 else ACTIVATIONS[m.activation].onnx(g, Z)
        z = g("Add", z, g("Mul", H, float(m.weight)))
    sigmoid = ACTIVATIONS["sigmoid"].onnx
    cal = model.calibration
    if cal is None:
        return sigmoid(g, z)
    if cal["kind"] == "platt":
        return sigmoid(g, g("Add", g("Mul", z, float(cal["a"])), float(cal["b"])))
    x, y = np.asarray(cal["x"]), np.asarray(cal["y"])
    if len(x) == 1:
        return g("Add", g("Mul", z, 0.0), float(y[0]))
    steps = g("Max", g("Min", g("Sub", sigmoid(g, z), g.const([x[:-1]])),
                       g.const([np.diff(x)])), 0.0)
    return g("Add", g("MatMul", steps, g.const((np.diff(y) / np.diff(x))[:, None])),
             float(y[0]))


def generate_onnx(model: ExportModel, name: str) -> tuple[dict[str, bytes], dict]:
    """ONNX predictor: ``NAME.onnx`` (float32 graph of the raw inputs, see the module docstring).

    Parameters
    ----------
    model : ExportModel
    name : str
        Base name of the file (and the graph's name).

    Returns
    -------
    files : dict file name -> bytes
    sizes : dict with ``weight_bytes`` (constants), ``ram_bytes`` (two float32 rows of the
        widest layer) and ``opset``

    Raises
    ------
    ExportError
        The ``onnx`` package is not installed, or the graph fails ``onnx.checker``.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ExportError("--format onnx needs the onnx package (pip install "
                          "'purchase-propensity[onnx]')") from None
    g = _Graph(helper, numpy_helper, TensorProto.FLOAT, TensorProto.INT64)
    x = _imputed(g, model)
    invalid = _invalid(g, model, x)
    H = _features(g, model, x)
    if model.combined:
        H = _combined(g, model, H)
    else:
        W0, b0 = fold_first_layer(model)
        layers = [(W0, b0)] + [(W.astype(np.float32), b.astype(np.float32))
                               for W, b in model.params[1:]]
        for layer, (W, b) in enumerate(layers):
            Z = g("Add", g("MatMul", H, g.const(W, f"W{layer}")), g.const(b, f"b{layer}"))
            last = layer == len(layers) - 1
            H = ACTIVATIONS[model.output if last else model.activation].onnx(g, Z)
    p = g("Squeeze", H, g.const([1], dtype=np.int64))
    if invalid is not None:
        p = g("Where", invalid, g.const(np.nan), p)
    g.nodes.append(helper.make_node("Identity", [p], ["p"]))
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", len(model.inputs)])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n"])],
        g.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="purchase-propensity")
    what = "probability" if model.output == "sigmoid" else "predicted value"
    onnx_model.doc_string = (
        f"{name}: {what} of {model.target} from the raw inputs x (float32, one row per "
        f"sample) to p (float32).\n{network_line(model, 'float32')}\n"
        + table_comment(model, ""))
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the ONNX graph fails onnx.checker: {e}") from None
    weight_bytes = sum(numpy_helper.to_array(t).nbytes for t in g.initializers)
    widest = max([model.params[0][0].shape[0],
                  *(W.shape[1] for m in model.members for W, _ in m.params)])
    return ({f"{name}.onnx": onnx_model.SerializeToString()},
            {"weight_bytes": weight_bytes, "ram_bytes": 2 * widest * 4, "opset": OPSET})
