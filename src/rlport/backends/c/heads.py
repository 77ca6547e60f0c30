"""C emitters of the action ops: argmax and sampling with masks, Bernoulli, Gaussian, gSDE, epsilon-greedy, bounds.

Acting deterministically they compute the distribution's mode (a Gaussian's mean is an alias, not
code); the sampled run reads the caller's uniform numbers in [0, 1): Gumbel noise for categorical
actions, Box-Muller normals for Gaussian ones (graph/reference.py's distributions, not its draws).
Needs numpy only.
"""

from __future__ import annotations

import numpy as np

from rlport.backends.c.activations import Math, sigmoid
from rlport.backends.c.emit import (
    MASK_ERROR,
    clip_expr,
    compute_type,
    ctype_dtype,
    float_type,
    loop,
    prepare_params,
    row_const,
)
from rlport.backends.c.helpers import helper
from rlport.backends.c.program import Program, Ref, literal
from rlport.graph.reference import HUGE_NEG

__all__ = ["HEADS"]


def _masked_argmax(p: Program, logits: Ref, mask: Ref | None, sizes: list[int], out: Ref, sample: bool) -> None:
    t = float_type(logits.ctype, "categorical")
    huge = literal(HUGE_NEG, t)
    if mask is not None:  # every row of the mask must allow an action (graph/reference.py's check)
        any_fn = helper(p, "any")
        offset = 0
        for size in sizes:
            p.line(f"if ({mask.expr} && !{any_fn}({size}, {mask.expr} + {offset})) return {MASK_ERROR};")
            offset += size
    fn = helper(p, "gumbel_argmax" if sample else "argmax", t)
    offset = 0
    for k, size in enumerate(sizes):
        masked = "0" if mask is None else f"({mask.expr} ? {mask.expr} + {offset} : 0)"
        noise = f", {p.take_uniforms(size)}" if sample else ""
        p.line(f"({out.expr})[{k}] = {fn}({size}, {logits.expr} + {offset}, {masked}, {huge}{noise});")
        offset += size


def _categorical(p, ins, outs, params, attrs):
    mask = ins[1] if len(ins) > 1 else None
    _masked_argmax(p, ins[0], mask, [ins[0].shape[-1]], outs[0], not p.deterministic)


def _multi_categorical(p, ins, outs, params, attrs):
    mask = ins[1] if len(ins) > 1 else None
    _masked_argmax(p, ins[0], mask, [int(s) for s in attrs["sizes"]], outs[0], not p.deterministic)


def _bernoulli(p, ins, outs, params, attrs):
    x, y = ins[0], outs[0]
    m = Math(float_type(x.ctype, "bernoulli"))
    probability = sigmoid("x", m)
    if p.deterministic:
        test = f"{probability} > {m.lit(0.5)}"
    else:
        test = f"(double)({p.take_uniforms(y.size)})[i] < (double){probability}"
    loop(p, y.size, f"{{ const {m.ctype} x = ({x.expr})[i]; ({y.expr})[i] = ({test}) ? 1.0f : 0.0f; }}")


def _gaussian(p, ins, outs, params, attrs):  # sampled only: acting deterministically it is its mean (an alias)
    mean, y = ins[0], outs[0]
    t = float_type(y.ctype, "gaussian")
    m = Math(t)
    log_std = f"({ins[1].expr})[i]" if len(ins) > 1 else row_const(p, params["log_std"], mean.shape, t)
    normal, u = helper(p, "normal"), p.take_uniforms(2 * y.size)
    noise = f"({t}){normal}({u} + 2 * i)"
    loop(p, y.size, f"({y.expr})[i] = ({mean.expr})[i] + {m('exp')}(({t}){log_std}) * {noise};")


def _gsde(p, ins, outs, params, attrs):  # sampled only, as _gaussian
    mean, latent, y = ins[0], ins[1], outs[0]
    t = float_type(y.ctype, "gsde")
    log_std = params["log_std"].astype(np.float64)
    if attrs["use_expln"]:
        below = np.exp(log_std) * (log_std <= 0)
        safe = log_std * (log_std > 0) + float(attrs["epsilon"])
        std = below + (np.log1p(safe) + 1.0) * (log_std > 0)
    else:
        std = np.exp(log_std)
    n_latent, n_actions = latent.shape[-1], mean.shape[-1]
    std = np.broadcast_to(std.astype(params["log_std"].dtype), (n_latent, n_actions))
    normal, u = helper(p, "normal"), p.take_uniforms(2 * n_latent * n_actions)
    s = p.const(std, t)
    p.line(f"for (long a = 0; a < {n_actions}; ++a) {{")
    p.line(f"    {t} sum = 0;")
    p.line(f"    for (long l = 0; l < {n_latent}; ++l) sum += ({t})({latent.expr})[l] * "
           f"(({t}){normal}({u} + 2 * (l * {n_actions} + a)) * {s}[l * {n_actions} + a]);")  # fmt: skip
    p.line(f"    ({y.expr})[a] = ({mean.expr})[a] + sum;")
    p.line("}")


def _greedy(p, ins, outs, params, attrs):
    q, y = ins[0], outs[0]
    t = float_type(q.ctype, "greedy")
    fn = helper(p, "argmax", t)
    p.line(f"({y.expr})[0] = {fn}({q.shape[-1]}, {q.expr}, 0, 0);")
    epsilon, n = float(attrs["epsilon"]), int(attrs["n"])
    if not p.deterministic and epsilon > 0:
        u = p.take_uniforms(2)
        p.line(f"if ((double)({u})[0] < {literal(epsilon, 'double')}) {{")
        p.line(f"    const int64_t pick = (int64_t)((double)({u})[1] * {n}.0);")
        p.line(f"    ({y.expr})[0] = pick < {n} ? pick : {n - 1};")
        p.line("}")


def _rescale_to_bounds(p, ins, outs, params, attrs):
    a, y = ins[0], outs[0]
    prepared = prepare_params("rescale_to_bounds", params, attrs)
    low, span = prepared["low"][0], prepared["span"][0]
    t = compute_type(ctype_dtype(a.ctype), low.dtype, span.dtype)
    lo, sp = row_const(p, low, a.shape, t), row_const(p, span, a.shape, t)
    half, one = literal(0.5, t), literal(1.0, t)
    loop(p, y.size, f"({y.expr})[i] = ({y.ctype})({lo} + ({half} * (({t})({a.expr})[i] + {one}) * {sp}));")


def _clip_to_bounds(p, ins, outs, params, attrs):
    a, y = ins[0], outs[0]
    t = compute_type(ctype_dtype(a.ctype), params["low"].dtype, params["high"].dtype)
    lo, hi = row_const(p, params["low"], a.shape, t), row_const(p, params["high"], a.shape, t)
    loop(p, y.size, f"{{ const {t} v = ({t})({a.expr})[i]; ({y.expr})[i] = ({y.ctype}){clip_expr('v', lo, hi)}; }}")


HEADS = {
    "categorical": _categorical,
    "multi_categorical": _multi_categorical,
    "bernoulli": _bernoulli,
    "gaussian": _gaussian,
    "gsde": _gsde,
    "greedy": _greedy,
    "rescale_to_bounds": _rescale_to_bounds,
    "clip_to_bounds": _clip_to_bounds,
}
"""Action op -> its emitter."""
