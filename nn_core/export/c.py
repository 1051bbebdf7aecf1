"""C predictors: float32 (``c``) and int8 (``c-int8``), each a ``NAME.h`` and a ``NAME.c``.

The fixed text comes from ``templates/``: the header (``header.h``), the frame of the
source (``predictor.c``) and the helper functions (``runtime.c``: code lookups, sigmoid,
int8 rounding and quantisation). This module generates only what depends on the model:
the weight and code tables, the per-input and per-layer loops, and the locals they use.

Folding (float32). One-hot features are 0/1, so ``f W`` for a one-hot block is a single row
of ``W``: the C code adds that row instead of multiplying a mostly-zero vector. For a numeric
feature ``z = (u - m) / s`` the standardisation is folded into the first layer::

    z W_i = u (W_i / s) - (m / s) W_i   =>   W'_i = W_i / s,   b' = b - sum_i (m_i / s_i) W_i

(computed in float64 from the model's weights and rounded once to float32), so the C
predictor does one multiply-add per numeric input and hidden unit, and no division.

Piecewise-linear encoding (a model trained with ``--numeric-encoding ple``). The encoding
of ``x`` on bins ``[b_{t-1}, b_t)`` is 1 in the bins below ``x``'s bin ``k``, a fraction
``(x - b_k) / (b_{k+1} - b_k)`` in bin ``k`` and 0 above (docs/math.md), so its product with
the weight rows is the sum of the rows of the bins below ``k`` plus the fraction times
row ``k``: the device finds ``k`` by a linear search over the edges (``ple_bin``), adds
``k`` rows and does one multiply-add per hidden unit, with the edges and the reciprocal
bin widths as ``static const`` tables (``2 T`` floats per input). In ``c-int8`` the added
rows are exact (like one-hot rows) and only the fraction joins the quantised features.

Gaussian-rank encoding (``--numeric-encoding quantile`` and the encodings with it). The
feature ``g(x)`` is ``lo`` at or below the first knot, ``hi`` at or above the last, and
interpolates the scores ``s`` between the knots ``q`` (docs/math.md): the device finds the
last knot at or below ``x`` by a binary search of fixed length (``rank_score``) and
interpolates, with the knots, scores and ends as ``static const`` tables (``2 m + 2``
floats per input); the feature then adds ``g W_row`` like a standardised value
(one multiply-add per hidden unit). In ``c-int8`` ``g`` joins the quantised features
beside ``z``.

int8 scheme (``c-int8``). Weights: symmetric per output channel,
``q_ij = round(W_ij / s_j)`` with ``s_j = max_i |W_ij| / 127``. Activations: symmetric
*dynamic per row* scaling before every layer, ``a_q = round(a / t)`` with
``t = max_i |a_i| / 127`` (no calibration data needed, and no value ever clips). Products
are accumulated in int32 and rescaled once: ``h_j = t s_j sum_i a_q,i q_ij + b_j`` (biases and
scales stay float32). In the first layer the standardised numeric features ``z`` are the
quantised activations, while the one-hot inputs are exactly 1 and need no activation scale:
``h_j = s_j (t sum_i z_q,i q_ij + sum_c q_{row(c),j}) + b_j``. Standardisation is therefore
*not* folded in int8 (raw inputs span 1e-5..6e4; folding ``1/s`` into the weights would let
the widest column dictate each channel's scale). Rounding is half away from zero.

A combined model (``nn_core/ensemble.py``, format ``c`` only): layer 0 of every member side by
side in one table, so the per-input code above is unchanged; then each member goes on from
its slice of layer 0 with its own later layers (``NAME_M<k>W<l>``), ``z = c + sum_k w_k z_k``
and the probability: ``sigmoid(z)``, Platt's ``sigmoid(a z + b)``, or the isotonic
breakpoints as ``y_0 + sum_j s_j min(max(p - x_j, 0), x_{j+1} - x_j)`` (no branch on the
data).

Layers are written out inline with literal sizes (`_c_loop`): with constant trip counts the
compiler keeps the accumulators in vector registers (2.7x faster than a generic dense() on
x86-64, see docs/benchmarks.md), and there is no data-dependent branch (constant time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np

from ..activations import ACTIVATIONS
from .describe import network_line, table_comment
from .model import ExportModel, Input, fold_first_layer, quantise_int8
from .templating import fill, section, sections, with_prefix

#: How the table (``Activation.c``) spells "nothing to compute".
IDENTITY_C = "{v}"


def c_float(v: float) -> str:
    """C float literal that parses back to exactly the float32 ``v``.

    The shortest decimal that round-trips float32 (NumPy's repr) plus ``f``; if a decimal
    double-rounding trap would change the value, the exact double repr is used instead.
    """
    f = np.float32(v)
    text = str(f)
    if np.float32(float(text)) != f:
        text = repr(float(f))
    if not any(ch in text for ch in ".e"):
        text += ".0"
    return text + "f"


def _c_array(ctype: str, name: str, values: Iterable, fmt: Callable[[object], str],
             per_line: int = 8) -> str:
    values = list(np.asarray(values).ravel())
    items = [fmt(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(values)}] = {{\n    {body}\n}};\n"


def _c_loop(n: int, statement: str, var: str = "j", indent: str = "    ") -> str:
    """``for (var = 0; var < n; ++var) { statement }`` with a literal bound."""
    return (f"{indent}for ({var} = 0; {var} < {n}; ++{var}) {{\n"
            f"{indent}    {statement}\n{indent}}}\n")


def _c_int8_layer(name: str, prefix: str, layer: int, source: str, out: str, n_in: int,
                  n_out: int) -> str:
    """The C of one int8 dense layer after the first: ``source`` (n_in floats) quantised to
    ``q`` with its scale ``t``, the int32 products with ``{prefix}Q{layer}`` summed in
    ``acc``, then ``out[j] = acc[j] (t S_j) + B_j`` (``{prefix}S{layer}``, ``{prefix}B{layer}``)."""
    Q, S, B = (f"{prefix}{t}{layer}" for t in "QSB")
    return (f"    t = {name}_quantise(q, {source}, {n_in});\n    a = q[0];\n"
            + _c_loop(n_out, f"acc[j] = a * {Q}[j];")
            + f"    for (i = 1; i < {n_in}; ++i) {{\n        a = q[i];\n"
            + _c_loop(n_out, f"acc[j] += a * {Q}[i * {n_out} + j];", indent="        ")
            + "    }\n"
            + _c_loop(n_out, f"{out}[j] = (float)acc[j] * (t * {S}[j]) + {B}[j];"))


def _spell(function: str, value: str, name: str) -> str:
    """The C expression of an activation or output function applied to ``value``."""
    return ACTIVATIONS[function].c.replace("{v}", value).replace("{name}", name)


def _c_activation(model: ExportModel, buf: str, n: int, name: str) -> str:
    """The loop applying the hidden activation to ``buf[0..n-1]`` (none for the identity)."""
    if ACTIVATIONS[model.activation].c == IDENTITY_C:
        return ""
    return _c_loop(n, f"{buf}[j] = {_spell(model.activation, f'{buf}[j]', name)};")


def _xv(c: Input) -> str:
    """The C expression of input ``c``'s value: ``x[i]``, or ``vI``, its copy with a NaN
    (missing) replaced by the imputed value (a model trained with imputation)."""
    return f"v{c.index}" if c.impute is not None else f"x[{c.index}]"


def _c_impute(model: ExportModel) -> str:
    """``vI = isnan(x[I]) ? value : x[I];`` for every input with imputation (before the
    validity test, which then sees the imputed value)."""
    if not model.imputed:
        return ""
    return "    /* a missing input (NaN) takes the value imputed in training */\n" + "".join(
        f"    v{c.index} = isnan(x[{c.index}]) ? {c_float(c.impute)} : x[{c.index}];"
        f" /* {c.name} */\n" for c in model.imputed)


def _c_indicators(model: ExportModel, acc: str, weights: str, h0: int, one: str,
                  first: bool = False) -> str:
    """The missing-indicator rows of layer 0: ``acc[j] += m * weights[row * h0 + j]`` with
    ``m`` = 1 (``one``) where the input is NaN, else 0 (a product, not a branch).
    ``first``: the first update of ``acc`` assigns."""
    body = []
    for c in model.inputs:
        if c.missing_row is not None:
            zero = "0.0f" if one.endswith("f") else "0"
            op = "=" if first else "+="
            body.append(f"    m = isnan(x[{c.index}]) ? {one} : {zero};"
                        f" /* {c.name}: missing indicator, row {c.missing_row} */\n"
                        + _c_loop(h0, f"{acc}[j] {op} m * {weights}[{c.missing_row * h0} + j];"))
            first = False
    return "".join(body)


def _c_impute_locals(model: ExportModel, m_type: str) -> list[str]:
    """Declarations of the imputed copies and of the indicator value ``m``."""
    locals_ = []
    if model.imputed:
        locals_.append("float " + ", ".join(f"v{c.index}" for c in model.imputed) + ";")
    if any(c.missing_row is not None for c in model.inputs):
        locals_.append(f"{m_type} m;")
    return locals_


def _c_validity(model: ExportModel) -> str:
    """``if (...) return NAN;`` for the invalid-numeric rule (NaN fails every comparison)."""
    tests = []
    for c in model.numeric:
        v = _xv(c)
        tests.append(f"!({v} >= 0.0f && {v} < INFINITY)" if c.log1p
                     else f"!({v} > -INFINITY && {v} < INFINITY)")
    if not tests:
        return ""
    cond = "\n        || ".join(tests)
    return f"    /* invalid numeric input (NaN, +-inf, negative under log1p) -> NaN */\n" \
           f"    if ({cond}) {{\n        return NAN;\n    }}\n"


def _lookup_kind(codes: list[int]) -> str:
    """How a code becomes a block index: ``offset``, ``lut`` (byte table) or ``search``."""
    K, lo, hi = len(codes), min(codes), max(codes)
    if codes == list(range(lo, lo + K)):
        return "offset"
    return "lut" if hi - lo < 256 and K < 255 else "search"


def _c_category_lookup(model: ExportModel, name: str) -> tuple[str, dict[int, str]]:
    """Tables and an expression per categorical input that maps its code to the block index.

    Returns
    -------
    decls : str
        ``static const`` tables needed by the lookups.
    exprs : dict input index -> C expression of type int in [0, K] (K = unseen bucket)
    """
    decls, exprs = [], {}
    for c in model.categorical:
        K, lo, hi = len(c.codes), min(c.codes), max(c.codes)
        v = _xv(c)
        kind = _lookup_kind(c.codes)
        if kind == "offset":
            exprs[c.index] = f"{name}_code_offset({v}, {lo}, {K})"
        elif kind == "lut":
            lut = [K] * (hi - lo + 1)
            for k, code in enumerate(c.codes):
                lut[code - lo] = k
            table = f"{name}_LUT{c.index}"
            decls.append(f"/* {c.name}: block index of code lo + i ({K} = unseen) */\n"
                         + _c_array("unsigned char", table, lut, str, 16))
            exprs[c.index] = f"{name}_code_lut({v}, {lo}, {hi - lo + 1}, {table}, {K})"
        else:
            table = f"{name}_CODES{c.index}"
            decls.append(f"/* {c.name}: code of each category, in block order */\n"
                         + _c_array("float", table, c.codes, c_float))
            exprs[c.index] = f"{name}_code_search({v}, {table}, {K})"
    return "".join(decls), exprs


def _lookup_bytes(model: ExportModel) -> int:
    """Bytes of the code tables `_c_category_lookup` emits."""
    total = 0
    for c in model.categorical:
        lo, hi, K = min(c.codes), max(c.codes), len(c.codes)
        kind = _lookup_kind(c.codes)
        total += 0 if kind == "offset" else (hi - lo + 1) if kind == "lut" else 4 * K
    return total


def _c_ple_tables(model: ExportModel, name: str, arrays: dict) -> str:
    """The edge and reciprocal-width tables of every piecewise-linear encoding (float32
    ``b_0..b_{T-1}`` and ``1 / (b_{t+1} - b_t)``, the latter computed in float64)."""
    decls = []
    for c in model.encoded:
        b = np.asarray(c.edges, dtype=np.float64)
        decls.append(f"/* {c.name}: piecewise-linear encoding, {c.n_bins} bins: edges b_0.."
                     f"b_{c.n_bins - 1} and 1 / (b_t+1 - b_t) */\n")
        for arr_name, arr in ((f"{name}_E{c.index}", b[:-1].astype(np.float32)),
                              (f"{name}_R{c.index}", (1.0 / np.diff(b)).astype(np.float32))):
            decls.append(_c_array("float", arr_name, arr, c_float))
            arrays[arr_name] = arr
    return "".join(decls)


def _c_rank_tables(model: ExportModel, name: str, arrays: dict) -> str:
    """The knot, score and end tables of every Gaussian-rank encoding (float32
    ``q_1..q_m``, ``s_1..s_m`` and ``lo, hi``)."""
    decls = []
    for c in model.ranked:
        decls.append(f"/* {c.name}: Gaussian rank, {c.n_knots} knots q, their scores s, and "
                     "the values at or beyond the first and last knot */\n")
        for arr_name, arr in ((f"{name}_RK{c.index}", np.asarray(c.knots, dtype=np.float32)),
                              (f"{name}_RS{c.index}", np.asarray(c.scores, dtype=np.float32)),
                              (f"{name}_RE{c.index}", np.asarray(c.ends, dtype=np.float32))):
            decls.append(_c_array("float", arr_name, arr, c_float))
            arrays[arr_name] = arr
    return "".join(decls)


def _c_rank(c: Input, name: str) -> str:
    """The C expression of input ``c``'s Gaussian rank ``g(x)``."""
    return (f"{name}_rank_score({_xv(c)}, {name}_RK{c.index}, {name}_RS{c.index}, "
            f"{c.n_knots}, {name}_RE{c.index})")


def _c_ple_bin(c: Input, name: str) -> str:
    """``k = bin; u = fraction;`` of input ``c``'s piecewise-linear encoding."""
    return (f"    k = {name}_ple_bin({_xv(c)}, {name}_E{c.index}, {c.n_bins});"
            f" /* {c.name}: piecewise-linear encoding, rows {c.ple_row}.."
            f"{c.ple_row + c.n_bins - 1} */\n"
            f"    u = ({_xv(c)} - {name}_E{c.index}[k]) * {name}_R{c.index}[k];\n")


def _c_ple_rows(c: Input, weights: str, acc: str, h0: int, first: bool = False) -> str:
    """``acc += weights`` rows ``ple_row .. ple_row + k - 1`` (the saturated bins, value 1).
    ``first``: the first update of ``acc`` assigns (times ``k > 0``, not a zeroing loop,
    which GCC would turn into a call to memset)."""
    if first:
        return (f"    w = {weights} + {c.ple_row * h0};\n    a = k > 0;\n"
                + _c_loop(h0, f"{acc}[j] = a * w[j];")
                + "    for (i = 1; i < k; ++i) {\n"
                + f"        w = {weights} + ({c.ple_row} + i) * {h0};\n"
                + _c_loop(h0, f"{acc}[j] += w[j];", indent="        ") + "    }\n")
    return ("    for (i = 0; i < k; ++i) {\n"
            + f"        w = {weights} + ({c.ple_row} + i) * {h0};\n"
            + _c_loop(h0, f"{acc}[j] += w[j];", indent="        ") + "    }\n")


def _c_helpers(code: str, name: str, templates: tuple[str, ...] = ("runtime.c",)) -> str:
    """The sections of ``templates/runtime.c`` (and any other ``templates``) that ``code``
    calls, directly or through another helper, in the templates' order. Unused static
    functions would break ``-Werror``, so no other helper is copied."""
    runtime = {h: text for t in templates for h, text in sections(t).items()}
    calls = re.sub(r"/\*.*?\*/", "", code, flags=re.S)  # a column name in a comment is no call
    needed = {h for h in runtime if f"{name}_{h}(" in calls}
    # Helpers call each other (code_lut -> code_offset, quantise -> round8): close the set.
    pending = list(needed)
    while pending:
        text = runtime[pending.pop()]
        for other in runtime:
            if other not in needed and f"NAME_{other}(" in text:
                needed.add(other)
                pending.append(other)
    return "\n".join(with_prefix(text, name) for h, text in runtime.items() if h in needed)


def _c_header(model: ExportModel, name: str, fmt: str, ram: int, numeric_type: str) -> str:
    return fill(with_prefix(section("header.h", "header"), name), {
        "FORMAT": fmt,
        "WHAT": "probability" if model.output == "sigmoid" else "predicted value",
        "TARGET": model.target,
        "INPUT_TABLE": table_comment(model, " *   "),
        "NETWORK": network_line(model, numeric_type),
        "RAM": str(ram),
        "N_INPUTS": str(len(model.inputs)),
    })


def _c_source(name: str, fmt: str, tables: str, locals_: list[str], body: str) -> str:
    return fill(with_prefix(section("predictor.c", "source"), name), {
        "FORMAT": fmt,
        "TABLES": tables,
        "HELPERS": _c_helpers(body, name),
        "LOCALS": "".join(f"    {v}\n" for v in locals_),
        "BODY": body,
    })


def generate_c(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """Float32 C predictor: ``NAME.h`` and ``NAME.c``.

    Parameters
    ----------
    model : ExportModel
    name : str
        Base name of the files and prefix of the C symbols.

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes``, ``ram_bytes`` (stack buffers) and ``arrays``
        (C array name -> float32 values, for tests that parse the numbers back)
    """
    # A combined model: every member's layer 0 side by side, the rest in _c_combined.
    W0, b0 = fold_first_layer(model, [model.first_layers] if model.combined else None)
    layers = [(W0, b0)] + ([] if model.combined else [
        (W.astype(np.float32), b.astype(np.float32)) for W, b in model.params[1:]])
    widths = [W0.shape[1]] if model.combined else model.widths
    later = [W.shape[1] for m in model.members for W, _ in m.params[1:]]
    maxw = max([*widths, *later]) if model.combined else max(widths)
    arrays: dict[str, np.ndarray] = {}
    decls = [f"#define {name.upper()}_MAXW {maxw} /* widest layer */\n"]
    for layer, (W, b) in enumerate(layers):
        note = (" numeric rows divided by std, bias with the means folded in;"
                " one-hot rows unchanged" if layer == 0 else "")
        decls.append(f"/* layer {layer}: weights row-major ({W.shape[0]}, {W.shape[1]}),"
                     f" bias ({b.shape[0]});{note} */\n")
        for arr_name, arr in ((f"{name}_W{layer}", W), (f"{name}_B{layer}", b)):
            decls.append(_c_array("float", arr_name, arr, c_float))
            arrays[arr_name] = arr
    decls.append(_c_rank_tables(model, name, arrays))
    decls.append(_c_ple_tables(model, name, arrays))
    lookup_decls, exprs = _c_category_lookup(model, name)
    h0 = widths[0]
    # Each layer starts from its bias. "b[j] + 0.0f" is not a plain copy (it turns -0 into
    # +0), so GCC does not replace the loop by a call to memcpy, which would be the only
    # non-math.h symbol of the object file.
    body = [_c_impute(model), _c_validity(model), "    /* layer 0 from the raw inputs */\n",
            _c_loop(h0, f"buf0[j] = {name}_B0[j] + 0.0f;")]
    for c in model.inputs:
        acc = "buf0[j] +="
        if c.kind == "numeric":
            u = f"log1pf({_xv(c)})" if c.log1p else _xv(c)
            if c.value:
                body.append(f"    u = {u}; /* {c.name}: standardisation folded into row "
                            f"{c.row} */\n"
                            + _c_loop(h0, f"{acc} u * {name}_W0[{c.row * h0} + j];"))
            if c.knots is not None:
                body.append(f"    u = {_c_rank(c, name)}; /* {c.name}: Gaussian rank, row "
                            f"{c.rank_row} */\n"
                            + _c_loop(h0, f"{acc} u * {name}_W0[{c.rank_row * h0} + j];"))
            if c.edges is not None:
                body.append(_c_ple_bin(c, name) + _c_ple_rows(c, f"{name}_W0", "buf0", h0)
                            + f"    w = {name}_W0 + ({c.ple_row} + k) * {h0};\n"
                            + _c_loop(h0, f"{acc} u * w[j];"))
        else:
            body.append(f"    w = {name}_W0 + ({c.row} + {exprs[c.index]}) * {h0};"
                        f" /* {c.name}: one-hot row */\n" + _c_loop(h0, f"{acc} w[j];"))
    body.append(_c_indicators(model, "buf0", f"{name}_W0", h0, "1.0f"))
    cur = 0
    for layer in range(len(layers)):
        n_out = widths[layer]
        if layer > 0:
            n_in, out, inp = layers[layer][0].shape[0], f"buf{1 - cur}", f"buf{cur}"
            body.append(f"    /* layer {layer} */\n"
                        + _c_loop(n_out, f"{out}[j] = {name}_B{layer}[j] + 0.0f;")
                        + f"    for (i = 0; i < {n_in}; ++i) {{\n"
                        + f"        u = {inp}[i];\n"
                        + _c_loop(n_out, f"{out}[j] += u * {name}_W{layer}[i * {n_out} + j];",
                                  indent="        ")
                        + "    }\n")
            cur = 1 - cur
        if layer < len(layers) - 1:
            body.append(_c_activation(model, f"buf{cur}", n_out, name))
    if model.combined:
        body.append(_c_combined(model, name, decls, arrays))
    else:
        body.append(f"    return {_spell(model.output, f'buf{cur}[0]', name)};\n")
    depth = max(len(m.params) - 1 for m in model.members)
    n_buf = 2 if len(layers) > 1 else 1 + min(depth, 2) if model.combined else 1
    buffers = ", ".join(f"buf{i}[{name.upper()}_MAXW]" for i in range(n_buf))
    locals_ = [f"float {buffers};"]
    if model.numeric or len(layers) > 1 or (model.combined and depth):
        locals_.append("float u;")
    if model.categorical or model.encoded:
        locals_.append("const float *w;")
    locals_ += _c_impute_locals(model, "float")
    if model.encoded:
        locals_.append("int k;")
    if model.combined:
        locals_.append("float zc;" if not model.calibration or model.calibration["kind"] ==
                       "platt" else "float zc, p, d;")
    looped = model.combined and (depth or (model.calibration or {}).get("kind") == "isotonic")
    locals_.append("int i, j;" if len(layers) > 1 or model.encoded or looped else "int j;")
    ram = 4 * maxw * n_buf + 4 * len(model.imputed)  # + the imputed copies
    files = {f"{name}.h": _c_header(model, name, "c", ram, "float32"),
             f"{name}.c": _c_source(name, "c", "".join(decls) + lookup_decls, locals_,
                                    "".join(body))}
    weight_bytes = sum(a.nbytes for a in arrays.values()) + _lookup_bytes(model)
    return files, {"weight_bytes": weight_bytes, "ram_bytes": ram, "arrays": arrays,
                   "encoding_bytes": model.encoding_bytes}


def _c_combined(model: ExportModel, name: str, decls: list, arrays: dict) -> str:
    """The code of a combined model after layer 0 (in ``buf0``, every member's side by side):
    per member its later layers (tables ``NAME_M<k>W<l>``, ``NAME_M<k>B<l>`` added to
    ``decls``, buffers ``buf1``, ``buf2``) and ``zc += w_k z_k``; then the calibration and the
    ``return``."""
    body = [f"    zc = {c_float(model.logit_bias)}; /* c + sum_k w_k z_k */\n"]
    start = 0
    for k, m in enumerate(model.members):
        width = m.params[0][0].shape[1]
        body.append(f"    /* member {k} (weight {m.weight:.6g}): layer 0 is buf0[{start}.."
                    f"{start + width - 1}] */\n")
        inp, offset, first = "buf0", f"{start} + ", start
        for layer, (W, b) in enumerate(m.params[1:], start=1):
            W32, b32 = W.astype(np.float32), b.astype(np.float32)
            for arr_name, arr in ((f"{name}_M{k}W{layer}", W32), (f"{name}_M{k}B{layer}", b32)):
                decls.append(_c_array("float", arr_name, arr, c_float))
                arrays[arr_name] = arr
            n_in, n_out = W.shape
            if ACTIVATIONS[m.activation].c != IDENTITY_C:
                body.append(_c_loop(n_in, f"{inp}[{offset}j] = "
                                          f"{_spell(m.activation, f'{inp}[{offset}j]', name)};"))
            out = "buf1" if inp != "buf1" else "buf2"
            body.append(_c_loop(n_out, f"{out}[j] = {name}_M{k}B{layer}[j] + 0.0f;")
                        + f"    for (i = 0; i < {n_in}; ++i) {{\n"
                        + f"        u = {inp}[{offset}i];\n"
                        + _c_loop(n_out, f"{out}[j] += u * {name}_M{k}W{layer}[i * {n_out} + j];",
                                  indent="        ")
                        + "    }\n")
            inp, offset, first = out, "", 0
        body.append(f"    zc += {c_float(m.weight)} * {inp}[{first}];\n")
        start += width
    return "".join(body) + _c_calibrated(model, name, decls, arrays)


def _c_calibrated(model: ExportModel, name: str, decls: list, arrays: dict) -> str:
    """``return`` of the probability of the combined logit ``zc``: ``sigmoid(zc)``, Platt's
    ``sigmoid(a z + b)`` or the isotonic interpolation of ``p = sigmoid(z)`` (tables
    ``NAME_CX``, ``NAME_CD``, ``NAME_CS`` added to ``decls``)."""
    body = []
    cal = model.calibration
    if cal is None:
        body.append(f"    return {_spell('sigmoid', 'zc', name)};\n")
    elif cal["kind"] == "platt":
        affine = f"{c_float(cal['a'])} * zc + {c_float(cal['b'])}"
        body.append(f"    return {_spell('sigmoid', affine, name)}; /* Platt */\n")
    else:
        x, y = np.asarray(cal["x"]), np.asarray(cal["y"])
        tables = (("CX", x[:-1]), ("CD", np.diff(x)), ("CS", np.diff(y) / np.diff(x)))
        decls.append("/* isotonic calibration: breakpoints x_j, widths x_j+1 - x_j, slopes */\n")
        for suffix, arr in tables:
            if len(arr):
                decls.append(_c_array("float", f"{name}_{suffix}", arr.astype(np.float32),
                                      c_float))
                arrays[f"{name}_{suffix}"] = arr.astype(np.float32)
        body.append(f"    p = {_spell('sigmoid', 'zc', name)}; /* isotonic: interpolate p */\n"
                    f"    zc = {c_float(y[0])};\n")
        if len(x) > 1:
            body.append(f"    for (i = 0; i < {len(x) - 1}; ++i) {{\n"
                        f"        d = p - {name}_CX[i];\n"
                        "        d = d > 0.0f ? d : 0.0f;\n"
                        f"        d = d < {name}_CD[i] ? d : {name}_CD[i];\n"
                        f"        zc += {name}_CS[i] * d;\n    }}\n")
        else:
            body.append("    d = p; /* one breakpoint: a constant */\n    (void)d;\n")
        body.append("    return zc;\n")
    return "".join(body)


def _c_int8_combined(model: ExportModel, name: str, decls: list, arrays: dict) -> str:
    """The int8 code of a combined model after layer 0 (in ``h``, every member's side by
    side): per member its later layers, each input quantised with its own per-row scale
    as in one network (tables ``NAME_M<k>Q<l>``, ``_S``, ``_B``; buffer ``g``), then
    ``zc += w_k z_k``, the calibration and the ``return``."""
    body = [f"    zc = {c_float(model.logit_bias)}; /* c + sum_k w_k z_k */\n"]
    start = 0
    for k, m in enumerate(model.members):
        width = m.params[0][0].shape[1]
        body.append(f"    /* member {k} (weight {m.weight:.6g}): layer 0 is h[{start}.."
                    f"{start + width - 1}] */\n")
        inp, first = "h", start
        for layer, (W, b) in enumerate(m.params[1:], start=1):
            Q, s = quantise_int8(W)
            pre = f"{name}_M{k}"
            for arr_name, arr, ctype, fmt in (
                (f"{pre}Q{layer}", Q, "signed char", str),
                (f"{pre}S{layer}", s, "float", c_float),
                (f"{pre}B{layer}", b.astype(np.float32), "float", c_float),
            ):
                decls.append(_c_array(ctype, arr_name, arr, fmt,
                                      16 if ctype == "signed char" else 8))
                arrays[arr_name] = arr
            n_in, n_out = W.shape
            at = f"{first} + j" if first else "j"
            if ACTIVATIONS[m.activation].c != IDENTITY_C:
                body.append(_c_loop(n_in, f"{inp}[{at}] = "
                                          f"{_spell(m.activation, f'{inp}[{at}]', name)};"))
            source = f"{inp} + {first}" if first else inp
            body.append(_c_int8_layer(name, pre, layer, source, "g", n_in, n_out))
            inp, first = "g", 0
        body.append(f"    zc += {c_float(m.weight)} * {inp}[{first}];\n")
        start += width
    return "".join(body) + _c_calibrated(model, name, decls, arrays)


def generate_c_int8(model: ExportModel, name: str) -> tuple[dict[str, str], dict]:
    """Int8 C predictor (scheme in the module docstring): ``NAME.h`` and ``NAME.c``.

    Parameters
    ----------
    model : ExportModel
    name : str
        Base name of the files and prefix of the C symbols.

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes``, ``float32_weight_bytes``, ``ram_bytes``, ``arrays``
    """
    # A combined model: every member's layer 0 side by side, the rest in _c_int8_combined.
    params = model.params if not model.combined else [model.first_layers]
    widths = [W.shape[1] for W, _ in params]
    # the standardised values, the Gaussian ranks, then one fraction per piecewise-linear
    # encoding
    numeric, ranked, encoded = model.valued, model.ranked, model.encoded
    n_num = len(numeric) + len(ranked) + len(encoded)
    later = [W.shape for m in model.members for W, _ in m.params[1:]] if model.combined else []
    maxw = max([*widths, *(n for _, n in later)])
    maxq = max([n_num, *widths[:-1], *(n for n, _ in later)])
    quantise = maxq > 0
    up = name.upper()
    arrays: dict[str, np.ndarray] = {}
    decls = [f"#define {up}_MAXW {maxw} /* widest layer */\n"]
    if quantise:
        decls.append(f"#define {up}_MAXQ {maxq} /* widest quantised layer input */\n")
    decls.append(f"/* int holds the int32 accumulators (C only promises 16 bits). */\n"
                 f"typedef char {name}_int_has_32_bits[sizeof(int) >= 4 ? 1 : -1];\n")
    for layer, (W, b) in enumerate(params):
        Q, s = quantise_int8(W)
        decls.append(f"/* layer {layer}: int8 weights row-major ({W.shape[0]}, {W.shape[1]}),"
                     f" per-output scales, float bias */\n")
        for arr_name, arr, ctype, fmt in (
            (f"{name}_Q{layer}", Q, "signed char", str),
            (f"{name}_S{layer}", s, "float", c_float),
            (f"{name}_B{layer}", b.astype(np.float32), "float", c_float),
        ):
            decls.append(_c_array(ctype, arr_name, arr, fmt, 16 if ctype == "signed char" else 8))
            arrays[arr_name] = arr
    decls.append(_c_rank_tables(model, name, arrays))
    decls.append(_c_ple_tables(model, name, arrays))
    lookup_decls, exprs = _c_category_lookup(model, name)
    h0 = widths[0]
    body = [_c_impute(model), _c_validity(model)]
    if n_num:
        body.append("    /* standardised numeric features, quantised with one per-row scale */\n")
        for k, c in enumerate(numeric):
            u = f"log1pf({_xv(c)})" if c.log1p else _xv(c)
            body.append(f"    z[{k}] = ({u} - {c_float(c.mean)}) * {c_float(1.0 / c.std)};"
                        f" /* {c.name} */\n")
        for e, c in enumerate(ranked, start=len(numeric)):
            body.append(f"    z[{e}] = {_c_rank(c, name)}; /* {c.name}: Gaussian rank */\n")
        first_ple = len(numeric) + len(ranked)
        for e, c in enumerate(encoded, start=first_ple):
            body.append(_c_ple_bin(c, name) + f"    kb[{e - first_ple}] = k;"
                        f" z[{e}] = u; /* the fractional component */\n")
        body.append(f"    t = {name}_quantise(q, z, {n_num});\n")
    # The first update of acc / cat assigns (no zeroing loop: GCC would call memset).
    body.append("    /* layer 0: numeric rows times q in acc, one-hot rows (value 1) in cat */\n")
    for k, (c, row) in enumerate([(c, c.row) for c in numeric]
                                 + [(c, c.rank_row) for c in ranked]):
        op = "=" if k == 0 else "+="
        body.append(f"    a = q[{k}]; /* {c.name}{'' if row == c.row else ': Gaussian rank'} */\n"
                    + _c_loop(h0, f"acc[j] {op} a * {name}_Q0[{row * h0} + j];"))
    for e, c in enumerate(encoded):
        op = "=" if e == 0 and not numeric and not ranked else "+="
        body.append(f"    a = q[{first_ple + e}]; w = {name}_Q0 + ({c.ple_row} + kb[{e}])"
                    f" * {h0}; /* {c.name}: fraction times the row of its bin */\n"
                    + _c_loop(h0, f"acc[j] {op} a * w[j];"))
    for k, c in enumerate(model.categorical):
        op = "=" if k == 0 else "+="
        body.append(f"    w = {name}_Q0 + ({c.row} + {exprs[c.index]}) * {h0};"
                    f" /* {c.name}: one-hot row */\n" + _c_loop(h0, f"cat[j] {op} w[j];"))
    indicators = any(c.missing_row is not None for c in model.inputs)
    body.append(_c_indicators(model, "cat", f"{name}_Q0", h0, "1",
                              first=not model.categorical))
    for e, c in enumerate(encoded):
        body.append(f"    k = kb[{e}]; /* {c.name}: the saturated bins' rows (value 1) */\n"
                    + _c_ple_rows(c, f"{name}_Q0", "cat", h0,
                                  first=e == 0 and not model.categorical and not indicators))
    has_cat = bool(model.categorical) or indicators or bool(encoded)
    combine = " + ".join((["(float)acc[j] * t"] if n_num else [])
                         + (["(float)cat[j]"] if has_cat else []))
    body.append(_c_loop(h0, f"h[j] = ({combine}) * {name}_S0[j] + {name}_B0[j];"))
    for layer in range(len(params)):
        n_out = widths[layer]
        if layer > 0:
            n_in = params[layer][0].shape[0]
            body.append(f"    /* layer {layer} */\n"
                        + _c_int8_layer(name, f"{name}_", layer, "h", "h", n_in, n_out))
        if layer < len(params) - 1:
            body.append(_c_activation(model, "h", n_out, name))
    if model.combined:
        body.append(_c_int8_combined(model, name, decls, arrays))
    else:
        body.append(f"    return {_spell(model.output, 'h[0]', name)};\n")
    locals_ = [f"float h[{up}_MAXW];"]
    if later:
        locals_.append(f"float g[{up}_MAXW];")
    if n_num or len(params) > 1 or later:
        locals_.append(f"int acc[{up}_MAXW];")
    if has_cat:
        locals_.append(f"int cat[{up}_MAXW];")
    if quantise:
        locals_ += [f"signed char q[{up}_MAXQ];", "float t;", "int a;"]
    if n_num:
        locals_.append(f"float z[{n_num}];")
    if model.categorical or encoded:
        locals_.append("const signed char *w;")
    if encoded:
        locals_ += [f"int k, kb[{len(encoded)}];", "float u;"]
    locals_ += _c_impute_locals(model, "int")
    if model.combined:
        locals_.append("float zc;" if not model.calibration or model.calibration["kind"] ==
                       "platt" else "float zc, p, d;")
    looped = model.combined and (later or (model.calibration or {}).get("kind") == "isotonic")
    locals_.append("int i, j;" if len(params) > 1 or encoded or looped else "int j;")
    # stack: h (float) + acc, cat (int32) + q (int8) + z (float) (+ g: a member's layers)
    ram = (4 * maxw * (1 + (n_num > 0 or len(params) > 1 or bool(later)) + has_cat
                       + bool(later))
           + (maxq if quantise else 0) + 4 * n_num + 4 * len(model.imputed)
           + 4 * len(encoded))
    files = {f"{name}.h": _c_header(model, name, "c-int8", ram,
                                    "int8 weights and activations, int32 accumulation"),
             f"{name}.c": _c_source(name, "c-int8", "".join(decls) + lookup_decls, locals_,
                                    "".join(body))}
    weight_bytes = (sum(a.nbytes for a in arrays.values()) + 8 * len(numeric)
                    + _lookup_bytes(model))
    float_bytes = 4 * model.n_parameters + _lookup_bytes(model) + model.encoding_bytes
    return files, {"weight_bytes": weight_bytes, "float32_weight_bytes": float_bytes,
                   "ram_bytes": ram, "arrays": arrays, "encoding_bytes": model.encoding_bytes}
