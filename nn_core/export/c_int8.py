"""The integer-only int8 C predictor (format ``c-int8-full``): ``NAME.h`` and ``NAME.c``.

The scheme and its NumPy model are in :mod:`nn_core.export.int8`; the runtime functions
(input quantisation, int32 dot products, the fixed-point requantisation, the activation
clamp and table, the fixed-point sigmoid) are the template ``templates/int8.c``. This module
emits only data and the calls: the int8 weight tables (each output's weights contiguous),
the int32 biases, the multipliers and shifts, the activation and sigmoid tables, the
layer-0 input quantisation of each raw input, and one loop per layer. A combined model has
each member's tables (``NAME_M<k>Q<l>``, ...) and loops in turn, ``sum += `` its requantised
logit, then ``saturate`` and the output table.
"""

from __future__ import annotations

import numpy as np

from .c import (
    _c_array,
    _c_category_lookup,
    _c_header,
    _c_helpers,
    _c_impute,
    _c_loop,
    _c_ple_tables,
    _c_rank,
    _c_rank_tables,
    _c_validity,
    _lookup_bytes,
    _xv,
    c_float,
)
from .int8 import (
    LOGIT_BITS,
    PROB_BITS,
    SIGMOID_RANGE,
    SIGMOID_STEP_BITS,
    calibrate,
)
from .model import ExportError, ExportModel
from .templating import fill, section, with_prefix

#: What the export needs besides the model: raw rows that fix the activation ranges.
CALIBRATION_HELP = ("--format c-int8-full needs --calibration-csv: raw rows with the input "
                    "columns (e.g. the training split), which fix the int8 activation ranges")


def generate_c_int8_full(model: ExportModel, name: str,
                         calibration: np.ndarray | None = None) -> tuple[dict[str, str], dict]:
    """Integer-only int8 C predictor (scheme in :mod:`nn_core.export.int8`).

    Parameters
    ----------
    model : ExportModel
    name : str
        Base name of the files and prefix of the C symbols.
    calibration : ndarray, shape (n, n_inputs)
        Raw rows (categorical inputs as codes) that fix the activation ranges.

    Returns
    -------
    files : dict file name -> text
    sizes : dict with ``weight_bytes``, ``float32_weight_bytes``, ``ram_bytes``, ``arrays``
        and ``network`` (the :class:`IntegerNetwork`, for the test vectors)

    Raises
    ------
    ExportError
        No calibration rows, or ranges that cannot be quantised.
    """
    if calibration is None:
        raise ExportError(CALIBRATION_HELP)
    if any(mem.params[-1][0].shape[1] != 1 for mem in model.members):
        raise ExportError("c-int8-full: the output layer must have one unit")
    net = calibrate(model, calibration)
    up = name.upper()
    indicators = [c for c in model.inputs if c.missing_row is not None]
    n_ple = sum(c.n_bins for c in model.encoded)  # every bin is a term (most are 0 or k)
    n_dense = len(model.valued) + len(model.ranked)  # the z and g(x) codes
    m = n_dense + n_ple + len(model.categorical) + len(indicators)  # layer 0's terms
    arrays: dict[str, np.ndarray] = {}
    decls = [
        f"/* int holds the int32 accumulators (C only promises 16 bits). */\n"
        f"typedef char {name}_int_has_32_bits[sizeof(int) >= 4 ? 1 : -1];\n",
        f"#define {up}_LOGIT_BITS {LOGIT_BITS} /* fractional bits of the fixed-point logit */\n"
        f"#define {up}_SIGMOID_STEP_BITS {SIGMOID_STEP_BITS} /* sigmoid table step 2^-3 */\n"
        f"#define {up}_SIGMOID_RANGE {SIGMOID_RANGE} /* the table covers logits 0..16 */\n"
        f"#define {up}_PROB_ONE {1 << PROB_BITS} /* probability 1 in fixed point */\n",
        f"/* layer-0 input scale 1/{net.k}: a one-hot feature is {net.k} */\n",
    ]
    bytes_ = 0

    def table(ctype: str, arr_name: str, values, fmt=str, per_line: int = 16) -> None:
        nonlocal bytes_
        values = np.asarray(values)
        decls.append(_c_array(ctype, arr_name, values, fmt, per_line))
        arrays[arr_name] = values
        bytes_ += values.size * {"float": 4, "int": 4, "unsigned short": 2}.get(ctype, 1)

    # a combined model: member k's tables are NAME_M<k>Q<l>, ... (one network: NAME_Q<l>)
    tags = [f"M{j}" if model.combined else "" for j in range(len(net.members))]
    for j, (tag, layers) in enumerate(zip(tags, net.members, strict=True)):
        for layer, L in enumerate(layers):
            n_out, n_in = L.Qt.shape
            decls.append(f"/* {f'member {j} ' if tag else ''}layer {layer}: int8 weights"
                         f" ({n_out}, {n_in}), each output's row contiguous; int32 bias (zero"
                         " point folded in); multipliers m 2^-r */\n")
            table("signed char", f"{name}_{tag}Q{layer}", L.Qt)
            table("int", f"{name}_{tag}B{layer}", L.bias, per_line=8)
            table("int", f"{name}_{tag}M{layer}", L.mult, per_line=8)
            table("unsigned char", f"{name}_{tag}N{layer}", L.shift)
            if L.table is not None:
                decls.append(f"/* layer {layer}: {model.members[j].activation} of each"
                             " pre-activation code -128..127, as an output code */\n")
                table("signed char", f"{name}_{tag}T{layer}", L.table)
    if net.calibrated is not None:
        decls.append("/* round(2^15 q(sigmoid(t / 8))), t = -128..128, q the isotonic"
                     " calibration */\n")
        table("unsigned short", f"{name}_CALIBRATED", net.calibrated, per_line=12)
    elif model.output == "sigmoid":
        decls.append("/* round(2^15 sigmoid(t / 8)), t = 0..128 */\n")
        table("unsigned short", f"{name}_SIGMOID", net.sigmoid, per_line=12)
    if model.valued:
        decls.append("/* layer-0 input codes: round(u * A + B), A = k / std, B = -k mean / std"
                     " (u = log1p(x) where marked) */\n")
        table("float", f"{name}_A", net.input_a, c_float, 8)
        table("float", f"{name}_BIAS_IN", net.input_b, c_float, 8)
    ple_decls = _c_rank_tables(model, name, arrays) + _c_ple_tables(model, name, arrays)
    bytes_ += model.encoding_bytes
    lookup_decls, exprs = _c_category_lookup(model, name)
    body = [_c_impute(model), _c_validity(model)]
    body.append("    /* layer 0's input: numeric codes, and one feature of value k per"
                " categorical input */\n")
    for t, c in enumerate(model.valued):
        u = f"log1pf({_xv(c)})" if c.log1p else _xv(c)
        body.append(f"    in_q[{t}] = {name}_quantise_input({u} * {name}_A[{t}]"
                    f" + {name}_BIAS_IN[{t}]); in_row[{t}] = {c.row}; /* {c.name} */\n")
    for t, c in enumerate(model.ranked, start=len(model.valued)):
        body.append(f"    in_q[{t}] = {name}_quantise_input({_c_rank(c, name)}"
                    f" * {c_float(net.k)}); in_row[{t}] = {c.rank_row};"
                    f" /* {c.name}: Gaussian rank */\n")
    start = n_dense
    for c in model.encoded:  # e = (x - b_i) / (b_i+1 - b_i), clipped but at the ends, as k e
        T = c.n_bins
        body.append(f"    for (j = 0; j < {T}; ++j) {{ /* {c.name}: piecewise-linear encoding */\n"
                    f"        e = ({_xv(c)} - {name}_E{c.index}[j]) * {name}_R{c.index}[j];\n"
                    f"        e = j > 0 && e < 0.0f ? 0.0f : e;\n"
                    f"        e = j < {T - 1} && e > 1.0f ? 1.0f : e;\n"
                    f"        in_q[{start} + j] = {name}_quantise_input(e * {c_float(net.k)});"
                    f" in_row[{start} + j] = {c.ple_row} + j;\n    }}\n")
        start += T
    for t, c in enumerate(model.categorical, start=start):
        body.append(f"    in_q[{t}] = {net.k}; in_row[{t}] = {c.row} + {exprs[c.index]};"
                    f" /* {c.name} */\n")
    for t, c in enumerate(indicators, start=n_dense + n_ple + len(model.categorical)):
        body.append(f"    in_q[{t}] = (signed char)(isnan(x[{c.index}]) ? {net.k} : 0);"
                    f" in_row[{t}] = {c.missing_row}; /* {c.name}: missing indicator */\n")
    if model.combined:
        body.append(f"    sum = {net.logit_bias}; /* L = C + sum_k L_k, C = round(c 2^12) */\n")
    for j, (tag, layers) in enumerate(zip(tags, net.members, strict=True)):
        if model.combined:
            body.append(f"    /* member {j}: L_{j}, its logit times w_{j}"
                        f" ({model.members[j].weight:.6g}"
                        + (", Platt's a folded in" if (model.calibration or {}).get("kind")
                           == "platt" else "") + ") in units of 2^-12 */\n")
        src = "in_q"
        for layer, L in enumerate(layers):
            n_out, n_in = L.Qt.shape
            last = layer == len(layers) - 1
            w = f"{name}_{tag}Q{layer}" + ("" if last else f" + j * {n_in}")  # output j's row
            dot = (f"{name}_dot_rows(in_q, in_row, {m}, {w})" if layer == 0
                   else f"{name}_dot({src}, {w}, {n_in})")
            acc = (f"{name}_{tag}B{layer}[0] + {dot}, {name}_{tag}M{layer}[0],"
                   f" {name}_{tag}N{layer}[0]")
            if not last:
                dst = f"a{layer % 2}"
                tab = f"{name}_{tag}T{layer}" if L.table is not None else "0"
                body.append(f"    /* layer {layer} */\n" + _c_loop(
                    n_out, f"{dst}[j] = {name}_activate({name}_{tag}B{layer}[j] + {dot},"
                           f" {name}_{tag}M{layer}[j], {name}_{tag}N{layer}[j], {L.zero_out},"
                           f" {tab});"))
                src = dst
            elif model.combined:
                body.append(f"    sum += {name}_requantise({acc});\n")
            else:
                body.append(f"    /* layer {layer}: the fixed-point logit */\n"
                            f"    logit = {name}_requantise({acc});\n")
    if model.combined:
        body.append(f"    logit = {name}_saturate(sum);\n")
    if net.calibrated is not None:
        body.append(f"    return {name}_calibrated(logit, {name}_CALIBRATED);\n")
    elif model.output == "sigmoid":
        body.append(f"    return {name}_probability(logit, {name}_SIGMOID);\n")
    else:
        body.append(f"    return (float)logit * {c_float(net.output_scale)};"
                    " /* the predicted value */\n")
    # the hidden layers' buffers a0, a1 serve every member in turn
    hidden = [W.shape[1] for mem in model.members for W, _ in mem.params[:-1]]
    depth = max(len(mem.params) - 1 for mem in model.members)
    locals_ = [f"signed char in_q[{max(m, 1)}];", f"int in_row[{max(m, 1)}];"]
    if model.imputed:  # the inputs with a NaN replaced by the imputed value
        locals_.append("float " + ", ".join(f"v{c.index}" for c in model.imputed) + ";")
    if hidden:
        n_buf = min(depth, 2)
        locals_.append("signed char " + ", ".join(f"a{i}[{max(hidden)}]" for i in range(n_buf))
                       + ";")
    locals_ += ["int logit;"] + (["int j;"] if hidden or model.encoded else [])
    if model.combined:
        locals_.append("long long sum;")
    if model.encoded:
        locals_.append("float e;")
    ram = (5 * max(m, 1) + (min(depth, 2) * max(hidden) if hidden else 0)
           + 4 * len(model.imputed) + 4 * bool(model.encoded) + 8 * model.combined)
    header = _c_header(model, name, "c-int8-full", ram,
                       "integer only: int8 weights and activations, int32 accumulators")
    code = "".join(body)
    source = fill(with_prefix(section("predictor.c", "source"), name), {
        "FORMAT": "c-int8-full",
        "TABLES": "".join(decls) + ple_decls + lookup_decls,
        "HELPERS": _c_helpers(code, name, ("runtime.c", "int8.c")),
        "LOCALS": "".join(f"    {v}\n" for v in locals_),
        "BODY": code,
    })
    files = {f"{name}.h": header, f"{name}.c": source}
    weight_bytes = bytes_ + _lookup_bytes(model)
    float_bytes = 4 * model.n_parameters + _lookup_bytes(model) + model.encoding_bytes
    return files, {"weight_bytes": weight_bytes, "float32_weight_bytes": float_bytes,
                   "ram_bytes": ram, "arrays": arrays, "network": net,
                   "encoding_bytes": model.encoding_bytes}
