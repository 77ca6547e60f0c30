"""One C emitter per graph op: it writes the op's code for one batch row into a :class:`Program`.

An emitter is ``emit(p, ins, outs, params, attrs)``: the input and output values as
:class:`~rlport.backends.c.program.Ref` (pointers to one row, static shapes), the node's
parameter tensors (prepared as graph/reference.py's ``PREPARE`` hooks prepare them, so the
constants are the numpy backend's own) and its attributes. ``EMITTERS`` is the C backend's op
table (backends/registry.py reads it). Values with the same storage (``identity``, ``flatten``,
``reshape``, a cast to the same dtype, a Gaussian's mean when acting deterministically) are
aliases made by the generator, not code. Needs numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from rlport.backends.c.activations import ACTIVATIONS, ERF_HELPER, Math
from rlport.backends.c.emit import (
    MASK_ERROR,
    OBSERVATION_ERROR,
    Emitter,
    axis_split,
    clip_expr,
    compute_type,
    ctype_dtype,
    float_type,
    loop,
    prepare_params,
    row_const,
)
from rlport.backends.c.heads import HEADS
from rlport.backends.c.network import NETWORK
from rlport.backends.c.program import FLOAT_CTYPES, Program, Ref, literal

__all__ = ["ALIASES", "EMITTERS", "MASK_ERROR", "OBSERVATION_ERROR"]

ALIASES = frozenset({"identity", "flatten", "reshape"})
"""Ops whose output is their input's row, unchanged in memory (row-major): no code, one storage."""


# ---- element-wise ----------------------------------------------------------------------------


def _activation(op: str) -> Emitter:
    expression = ACTIVATIONS[op]

    def emit(p, ins, outs, params, attrs):
        x, y = ins[0], outs[0]
        m = Math(float_type(y.ctype, op))
        if op == "gelu" and attrs["approximate"] == "none":
            p.helper("rl_erf", ERF_HELPER)
        loop(
            p,
            y.size,
            f"{{ const {m.ctype} x = ({m.ctype})({x.expr})[i]; ({y.expr})[i] = {expression('x', m, attrs)}; }}",
        )

    return emit


def _prelu(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    m = Math(float_type(y.ctype, "prelu"))
    weight = params["weight"].reshape(-1)
    inner = math.prod(x.shape[1:])
    w = (
        literal(weight[0].item(), m.ctype)
        if weight.size == 1
        else f"{p.const(weight, m.ctype)}[(i / {inner}) % {weight.size}]"
    )
    loop(p, y.size, f"{{ const {m.ctype} x = ({m.ctype})({x.expr})[i]; ({y.expr})[i] = x >= 0 ? x : x * {w}; }}")


def _softmax(log: bool) -> Emitter:
    def emit(p, ins, outs, params, attrs):
        x, y = ins[0], outs[0]
        m = Math(float_type(y.ctype, "softmax"))
        outer, n, inner = axis_split(x, attrs["_shape"], int(attrs["axis"]))
        t = m.ctype
        at = f"(a * {n} + k) * {inner} + b"
        p.line(f"for (long a = 0; a < {outer}; ++a) for (long b = 0; b < {inner}; ++b) {{")
        p.line(f"    {t} top = ({t})({x.expr})[a * {n * inner} + b], sum = 0;")
        p.line(
            f"    for (long k = 1; k < {n}; ++k) {{ const {t} v = ({t})({x.expr})[{at}]; "
            "if (v > top || v != v) top = v; }"
        )
        if log:
            p.line(f"    for (long k = 0; k < {n}; ++k) sum += {m('exp')}(({t})({x.expr})[{at}] - top);")
            p.line(
                f"    for (long k = 0; k < {n}; ++k) "
                f"({y.expr})[{at}] = (({t})({x.expr})[{at}] - top) - {m('log')}(sum);"
            )
        else:
            p.line(
                f"    for (long k = 0; k < {n}; ++k) {{ ({y.expr})[{at}] = {m('exp')}(({t})({x.expr})[{at}] - top); "
                f"sum += ({y.expr})[{at}]; }}"
            )
            p.line(f"    for (long k = 0; k < {n}; ++k) ({y.expr})[{at}] /= sum;")
        p.line("}")

    return emit


def _cast(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    if y.ctype == "unsigned char":
        loop(p, y.size, f"({y.expr})[i] = ({x.expr})[i] != 0;")
    else:
        loop(p, y.size, f"({y.expr})[i] = ({y.ctype})({x.expr})[i];")


# ---- pre-processing -------------------------------------------------------------------------------


def _normalize(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    prepared = prepare_params("normalize", params, attrs)
    t = compute_type(ctype_dtype(x.ctype), prepared["mean"].dtype, prepared["std"].dtype)
    mean, std = (row_const(p, prepared[k], x.shape, t) for k in ("mean", "std"))
    clip = float(prepared["clip"])
    body = clip_expr("v", literal(-clip, t), literal(clip, t))
    loop(p, y.size, f"{{ const {t} v = (({t})({x.expr})[i] - {mean}) / {std}; ({y.expr})[i] = ({y.ctype}){body}; }}")


def _divide(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    loop(p, y.size, f"({y.expr})[i] = (float)({x.expr})[i] / {literal(float(attrs['divisor']), 'float')};")


def _index(p: Program, x: Ref, position: str, n: int) -> str:
    """Declare ``idx``: element ``position`` of ``x`` as an index in 0..n-1, or return the observation error."""
    if x.ctype in FLOAT_CTYPES:  # numpy truncates a float index (astype(int64)), then checks its range
        p.line(f"    {{ const double d = (double)({x.expr})[{position}];")
        p.line(f"      if (!(d > -1.0 && d < {n}.0)) return {OBSERVATION_ERROR}; idx = (int64_t)d; }}")
    else:
        p.line(f"    idx = (int64_t)({x.expr})[{position}];")
        p.line(f"    if (idx < 0 || idx >= {n}) return {OBSERVATION_ERROR};")
    return "idx"


def _one_hot(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    p.line("{ int64_t idx;")
    _index(p, x, "0", int(attrs["n"]))
    p.line(f"    for (long i = 0; i < {y.size}; ++i) ({y.expr})[i] = 0.0f;")
    p.line(f"    ({y.expr})[idx] = 1.0f; }}")


def _multi_one_hot(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    p.line(f"{{ int64_t idx; for (long i = 0; i < {y.size}; ++i) ({y.expr})[i] = 0.0f;")
    offset = 0
    for k, size in enumerate(int(s) for s in attrs["sizes"]):
        _index(p, x, str(k), size)
        p.line(f"    ({y.expr})[{offset} + idx] = 1.0f;")
        offset += size
    p.line("}")


def _concat(p, ins, outs, params, attrs):
    y = outs[0]
    outer, width = math.prod(y.shape[:-1]), y.shape[-1]
    p.line(f"for (long a = 0; a < {outer}; ++a) {{")
    start = 0
    for x in ins:
        n = x.shape[-1]
        p.line(
            f"    for (long k = 0; k < {n}; ++k) "
            f"({y.expr})[a * {width} + {start} + k] = ({y.ctype})({x.expr})[a * {n} + k];"
        )
        start += n
    p.line("}")


def _broadcast_index(p: Program, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
    """The index into a row of ``shape`` of element ``i`` of a row of ``out_shape`` (numpy broadcasting)."""
    if tuple(shape) == tuple(out_shape):
        return "i"
    index = np.broadcast_to(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), out_shape)
    return f"{p.const(index, 'int')}[i]"


def _binary(symbol: str) -> Emitter:
    """``x OP other`` element-wise, ``other`` the second input or the ``other`` parameter, broadcast as numpy does."""

    def emit(p, ins, outs, params, attrs):
        x, y = ins[0], outs[0]
        t = float_type(y.ctype, "add/sub/mul/div")
        if len(ins) > 1:
            other = f"({t})({ins[1].expr})[{_broadcast_index(p, ins[1].shape, y.shape)}]"
        else:
            other = row_const(p, params["other"], y.shape, t)
        loop(p, y.size, f"({y.expr})[i] = ({t})({x.expr})[{_broadcast_index(p, x.shape, y.shape)}] {symbol} {other};")

    return emit


def _slice(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    outer, n, inner = axis_split(x, attrs["_shape"], int(attrs["axis"]))
    picked = range(n)[int(attrs["start"]) : int(attrs["end"]) : int(attrs["step"])]
    p.line(f"for (long a = 0; a < {outer}; ++a) for (long k = 0; k < {len(picked)}; ++k) "
           f"for (long b = 0; b < {inner}; ++b)")  # fmt: skip
    p.line(f"    ({y.expr})[(a * {len(picked)} + k) * {inner} + b] = "
           f"({x.expr})[(a * {n} + {picked.start} + k * {picked.step}) * {inner} + b];")  # fmt: skip


def _alias(p, ins, outs, params, attrs):  # never called: the generator aliases these
    raise AssertionError("aliases are not emitted")


EMITTERS: dict[str, Emitter] = {
    **{op: _activation(op) for op in ACTIVATIONS},
    **dict.fromkeys(sorted(ALIASES), _alias),
    "prelu": _prelu,
    "softmax": _softmax(log=False),
    "log_softmax": _softmax(log=True),
    "cast": _cast,
    "normalize": _normalize,
    "divide": _divide,
    "one_hot": _one_hot,
    "multi_one_hot": _multi_one_hot,
    "concat": _concat,
    "add": _binary("+"),
    "sub": _binary("-"),
    "mul": _binary("*"),
    "div": _binary("/"),
    "slice": _slice,
    **NETWORK,
    **HEADS,
}
"""The C backend's op table: op name -> emitter (every op of graph/schema.py)."""
