"""C emitters of the network ops: linear and conv2d (float, int8 weights, int8 x int8), norms, mean, clip, lstm.

A ``linear`` or ``conv2d`` whose weight the bundle stores as int8 (format 1.1 encodings) keeps it
int8 in the source: with int8 activations (a value scale) the product is int8 x int8 -> int32 with
one float scale per output channel; without, float activations times int8 weights, summed in float
and scaled per output channel. Needs numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from rlport.backends.c.activations import Math
from rlport.backends.c.emit import axis_split, clip_expr, compute_type, ctype_dtype, float_type, loop, prepare_params
from rlport.backends.c.helpers import helper, int8_helper
from rlport.backends.c.program import FLOAT_CTYPES, Program, Ref, literal

__all__ = ["INT32_SAFE_INPUTS", "NETWORK"]


def _quantised_input(p: Program, x: Ref, scale: float, n: int, y: Ref) -> tuple[str, str]:
    """Quantise ``x`` (what the node reads, fake-quantised: docs/FORMAT.md, encodings) to an int8 temporary.

    Returns the temporary and the line that opens the block run when ``x`` holds no NaN (a NaN makes every
    output NaN, as numpy's float form gives).
    """
    q = p.temp("int8_t", x.size)
    fn = int8_helper(p, "quantise")
    p.line(f"if ({fn}({x.size}, {x.expr}, {literal(scale, 'float')}, {q})) {{")
    p.line(f"    for (long i = 0; i < {n}; ++i) ({y.expr})[i] = NAN;")
    return q, "} else {"


def _fake_quantised(p: Program, x: Ref, scale: float) -> Ref:
    """``x`` read as ``float(clip(round(x / s), -128, 127)) * s`` (for a float weight: no int8 product to make)."""
    out = p.temp("float", x.size)
    s = literal(scale, "float")
    clipped = "(r != r ? r : (r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r)))"
    p.line(f"for (long i = 0; i < {x.size}; ++i) {{ const float r = nearbyintf(({x.expr})[i] / {s}); "
           f"({out})[i] = {clipped} * {s}; }}")  # fmt: skip
    return Ref(f"({out})", "float", x.shape)


def _int8_weight(attrs: dict, ctype: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored int8 weight and its per-output scales, when the export can use them (float compute)."""
    return attrs.get("_int8") if ctype == "float" else None


INT32_SAFE_INPUTS = (2**31 - 1) // (128 * 128)
"""The most int8 products an int32 accumulator sums without overflow."""


def _linear(p, ins, outs, params, attrs):
    y = outs[0]
    t = float_type(y.ctype, "linear")
    x = p.converted(ins[0], t)
    prepared = prepare_params("linear", params, attrs)
    weight_t = prepared["weight_t"]
    n_in, n_out = weight_t.shape
    b = "0" if prepared["bias"] is None else p.const(prepared["bias"], t)
    outer = math.prod(x.shape[:-1])
    scale_in = attrs["_scales"][0]
    stored = _int8_weight(attrs, t)
    if stored is not None and outer == 1 and n_in <= INT32_SAFE_INPUTS:
        q, scale = stored
        qt = p.const(np.ascontiguousarray(q.T), "int8_t")
        if scale_in is not None:  # int8 x int8 -> int32 with one scale per output
            combined = p.const(scale.astype(np.float32) * np.float32(scale_in), "float")
            xq, otherwise = _quantised_input(p, x, scale_in, n_out, y)
            acc = p.temp("int32_t", n_out)
            p.line(otherwise)
            p.line(f"    {int8_helper(p, 'linear_q8')}({n_in}, {n_out}, {xq}, {qt}, {combined}, {b}, {acc}, {y.expr});")
            p.line("}")
        else:
            sc = p.const(scale.astype(np.float32), "float")
            p.line(f"{int8_helper(p, 'linear_w8')}({n_in}, {n_out}, {x.expr}, {qt}, {sc}, {b}, {y.expr});")
        return
    if scale_in is not None:
        x = _fake_quantised(p, x, scale_in)
    w = p.const(weight_t, t)
    fn = helper(p, "linear", t)
    if outer == 1:
        p.line(f"{fn}({n_in}, {n_out}, {x.expr}, {w}, {b}, {y.expr});")
    else:
        p.line(
            f"for (long a = 0; a < {outer}; ++a) "
            f"{fn}({n_in}, {n_out}, {x.expr} + a * {n_in}, {w}, {b}, {y.expr} + a * {n_out});"
        )


def _conv2d(p, ins, outs, params, attrs):
    y = outs[0]
    t = float_type(y.ctype, "conv2d")
    x = p.converted(ins[0], t)
    weight, bias = params["weight"], params.get("bias")
    out_c, per_in, kh, kw = weight.shape
    c, h, w = x.shape
    geometry = [*attrs["stride"], *attrs["padding"], *attrs["dilation"], int(attrs["groups"]), *y.shape[1:]]
    g = p.const(np.asarray(geometry, np.int64), "int")
    b = "0" if bias is None else p.const(bias, t)
    scale_in = attrs["_scales"][0]
    stored = _int8_weight(attrs, t)
    if stored is not None and per_in * kh * kw <= INT32_SAFE_INPUTS:
        q, scale = stored
        k = p.const(q, "int8_t")
        if scale_in is not None:
            combined = p.const(scale.astype(np.float32) * np.float32(scale_in), "float")
            xq, otherwise = _quantised_input(p, x, scale_in, y.size, y)
            p.line(otherwise)
            p.line(
                f"    {int8_helper(p, 'conv2d_q8')}({xq}, {c}, {h}, {w}, {k}, {b}, {combined}, "
                f"{out_c}, {kh}, {kw}, {g}, {y.expr});"
            )
            p.line("}")
        else:
            sc = p.const(scale.astype(np.float32), "float")
            p.line(
                f"{int8_helper(p, 'conv2d_w8')}({x.expr}, {c}, {h}, {w}, {k}, {b}, {sc}, "
                f"{out_c}, {kh}, {kw}, {g}, {y.expr});"
            )
        return
    if scale_in is not None:
        x = _fake_quantised(p, x, scale_in)
    fn = helper(p, "conv2d", t)
    p.line(f"{fn}({x.expr}, {c}, {h}, {w}, {p.const(weight, t)}, {b}, {out_c}, {kh}, {kw}, {g}, {y.expr});")


def _batch_norm(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    prepared = prepare_params("batch_norm", params, attrs)
    scale, (mean, shift) = prepared["scale"], prepared["shift"]
    t = compute_type(ctype_dtype(x.ctype), scale.dtype, mean.dtype, shift.dtype)
    inner = math.prod(x.shape[1:])
    at = f"[(i / {inner}) % {x.shape[0]}]"
    m, s, b = (p.const(a, t) for a in (mean, scale, shift))
    loop(p, y.size, f"({y.expr})[i] = ({y.ctype})((({t})({x.expr})[i] - {m}{at}) * {s}{at} + {b}{at});")


def _layer_norm(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    t = float_type(y.ctype, "layer_norm")
    m = Math(t)
    axes = int(attrs["axes"])
    n = math.prod(x.shape[len(x.shape) - axes :])
    outer = x.size // n
    weight, bias = params.get("weight"), params.get("bias")
    p.line(f"for (long a = 0; a < {outer}; ++a) {{")
    p.line(f"    {t} mean = 0, var = 0;")
    p.line(f"    for (long i = 0; i < {n}; ++i) mean += ({t})({x.expr})[a * {n} + i];")
    p.line(f"    mean /= ({t}){n};")
    p.line(f"    for (long i = 0; i < {n}; ++i) {{ const {t} d = ({t})({x.expr})[a * {n} + i] - mean; var += d * d; }}")
    p.line(f"    var /= ({t}){n};")
    expr = f"((({t})({x.expr})[a * {n} + i] - mean) / {m('sqrt')}(var + {m.lit(float(attrs['epsilon']))}))"
    if weight is not None:
        expr = f"({expr} * {p.const(weight, t)}[i])"
    if bias is not None:
        expr = f"({expr} + {p.const(bias, t)}[i])"
    p.line(f"    for (long i = 0; i < {n}; ++i) ({y.expr})[a * {n} + i] = {expr};")
    p.line("}")


def _mean(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    t = float_type(y.ctype, "mean")
    outer, n, inner = axis_split(x, attrs["_shape"], int(attrs["axis"]))
    p.line(f"for (long a = 0; a < {outer}; ++a) for (long b = 0; b < {inner}; ++b) {{")
    p.line(f"    {t} sum = 0;")
    p.line(f"    for (long k = 0; k < {n}; ++k) sum += ({t})({x.expr})[(a * {n} + k) * {inner} + b];")
    p.line(f"    ({y.expr})[a * {inner} + b] = sum / ({t}){n};")
    p.line("}")


def _clip(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    t = x.ctype if x.ctype in FLOAT_CTYPES else "double"  # numpy: an integer array against a float is float64
    body = clip_expr("v", literal(float(attrs["min"]), t), literal(float(attrs["max"]), t))
    loop(p, y.size, f"{{ const {t} v = ({t})({x.expr})[i]; ({y.expr})[i] = ({y.ctype}){body}; }}")


def _lstm(p, ins, outs, params, attrs):
    x = p.converted(ins[0], "float")
    h, c = (p.converted(r, "float") for r in ins[1:3])
    start = ins[3] if len(ins) > 3 else None
    y, h_out, c_out = outs
    prepared = prepare_params("lstm", params, attrs)
    layers, hidden = prepared["layers"], int(attrs["hidden_size"])
    fn = helper(p, "lstm", "float")
    a, b = p.temp("float", 4 * hidden), p.temp("float", 4 * hidden)
    if start is not None:  # keep = 1 - episode_start: the state rows of a new episode start from zeros
        kept = p.temp("float", 2 * layers * hidden)
        p.line(f"{{ const float keep = 1.0f - (float)({start.expr})[0];")
        p.line(f"  for (long i = 0; i < {layers * hidden}; ++i) {{ ({kept})[i] = ({h.expr})[i] * keep; "
               f"({kept})[{layers * hidden} + i] = ({c.expr})[i] * keep; }} }}")  # fmt: skip
        h, c = Ref(f"({kept})", "float", h.shape), Ref(f"({kept} + {layers * hidden})", "float", c.shape)
    epsilon = literal(float(prepared.get("epsilon", 1e-5)), "float")
    for k in range(layers):
        wih, whh = p.const(prepared["wih_t"][k], "float"), p.const(prepared["whh_t"][k], "float")
        bias = p.const(prepared["bias"][k], "float")
        ln = (
            "0"
            if "ln" not in prepared
            else p.const(np.concatenate([v.reshape(-1) for v in prepared["ln"][k]]), "float")
        )
        n_in = prepared["wih_t"][k].shape[0]
        source = x.expr if k == 0 else f"{h_out.expr} + {(k - 1) * hidden}"
        at = k * hidden
        p.line(f"{fn}({n_in}, {hidden}, {source}, {h.expr} + {at}, {c.expr} + {at}, {wih}, {whh}, {bias}, {ln}, "
               f"{epsilon}, {a}, {b}, {h_out.expr} + {at}, {c_out.expr} + {at});")  # fmt: skip
    p.line(f"for (long i = 0; i < {hidden}; ++i) ({y.expr})[i] = ({h_out.expr})[{(layers - 1) * hidden} + i];")


def _pool2d(p, ins, outs, params, attrs, average: bool) -> None:
    """max_pool2d (padding never wins; NaN propagates) or avg_pool2d (padding counted or not), per channel."""
    x, y = ins[0], outs[0]
    t = float_type(y.ctype, "pool2d")
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["padding"]
    dh, dw = (1, 1) if average else attrs["dilation"]
    c, h, w = x.shape
    _, ho, wo = y.shape
    p.line(
        f"for (long ch = 0; ch < {c}; ++ch) for (long oy = 0; oy < {ho}; ++oy) for (long ox = 0; ox < {wo}; ++ox) {{"
    )
    p.line(f"    {t} acc = {literal(0.0, t) if average else f'-(({t})INFINITY)'};")
    p.line("    long count = 0;")
    p.line(f"    for (long ky = 0; ky < {kh}; ++ky) for (long kx = 0; kx < {kw}; ++kx) {{")
    p.line(f"        const long iy = oy * {sh} - {ph} + ky * {dh}, ix = ox * {sw} - {pw} + kx * {dw};")
    p.line(f"        if (iy < 0 || iy >= {h} || ix < 0 || ix >= {w}) continue;")
    p.line(f"        {{ const {t} v = ({x.expr})[(ch * {h} + iy) * {w} + ix];")
    p.line("          " + ("acc += v; ++count; }" if average else "if (acc == acc && (v > acc || v != v)) acc = v; }"))
    p.line("    }")
    divisor = f"({t}){kh * kw}" if not average or attrs["count_include_pad"] or not (ph or pw) else f"({t})count"
    p.line(f"    ({y.expr})[(ch * {ho} + oy) * {wo} + ox] = {f'acc / {divisor}' if average else 'acc'};")
    p.line("    (void)count;")
    p.line("}")


NETWORK = {
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "mean": _mean,
    "clip": _clip,
    "lstm": _lstm,
    "max_pool2d": lambda p, ins, outs, params, attrs: _pool2d(p, ins, outs, params, attrs, average=False),
    "avg_pool2d": lambda p, ins, outs, params, attrs: _pool2d(p, ins, outs, params, attrs, average=True),
}
"""Network op -> its emitter."""
