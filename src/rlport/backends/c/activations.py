"""Element-wise activations as C expressions, term for term as graph/reference.py computes them.

Each entry maps ``(x, m, attrs)`` to a C expression of one element ``x`` in the compute type of
``m`` (:class:`Math`: math functions and literals of ``float`` or ``double``). ``max``/``min`` are
written ``(x < a ? a : x)``, which keeps a NaN ``x`` as numpy's ``maximum`` does. Needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rlport.backends.c.program import literal

__all__ = ["ACTIVATIONS", "Math", "SELU_ALPHA", "SELU_SCALE"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class Math:
    """Math functions (``tanhf`` or ``tanh``) and literals of one C float type."""

    def __init__(self, ctype: str) -> None:
        self.ctype = ctype
        self._suffix = "f" if ctype == "float" else ""

    def __call__(self, name: str) -> str:
        return name + self._suffix

    def lit(self, value: float) -> str:
        return literal(value, self.ctype)


def _max(x: str, a: str) -> str:
    return f"({x} < {a} ? {a} : {x})"


def _min(x: str, b: str) -> str:
    return f"({x} > {b} ? {b} : {x})"


def sigmoid(x: str, m: Math) -> str:
    """graph/reference.py's sigmoid: ``0.5 * (1 + tanh(0.5 * x))``."""
    return f"({m.lit(0.5)} * ({m.lit(1.0)} + {m('tanh')}({m.lit(0.5)} * {x})))"


def softplus_expr(x: str, m: Math, beta: float = 1.0, threshold: float = 20.0) -> str:
    """``x if x * beta > threshold else logaddexp(0, x * beta) / beta`` (numpy's logaddexp, branch for branch)."""
    s = f"({x} * {m.lit(beta)})"
    logaddexp = f"({s} < 0 ? {m('log1p')}({m('exp')}({s})) : {s} + {m('log1p')}({m('exp')}(-{s})))"
    return f"({s} > {m.lit(threshold)} ? {x} : {logaddexp} / {m.lit(beta)})"


def _leaky(x: str, m: Math, slope: float) -> str:
    return f"({x} >= 0 ? {x} : {x} * {m.lit(slope)})"


def _gelu(x: str, m: Math, approximate: str) -> str:
    if approximate == "tanh":
        inner = f"{m.lit(math.sqrt(2.0 / math.pi))} * ({x} + {m.lit(0.044715)} * ({x} * {x} * {x}))"
        return f"({m.lit(0.5)} * {x} * ({m.lit(1.0)} + {m('tanh')}({inner})))"
    # graph/reference.py: x / sqrt(2) in the value's type, erf (Abramowitz & Stegun 7.1.26) in double
    return f"({m.ctype})(0.5 * (double){x} * (1.0 + rl_erf((double)({x} / {m.lit(math.sqrt(2.0))}))))"


ERF_HELPER = """static double rl_erf(double x)
{
    /* Abramowitz & Stegun 7.1.26, as graph/reference.py computes it (|error| < 1.5e-7) */
    const double sign = x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
    const double a = fabs(x);
    const double t = 1.0 / (1.0 + 0.3275911 * a);
    const double poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                        + t * (-1.453152027 + t * 1.061405429))));
    return sign * (1.0 - poly * exp(-a * a));
}"""


Expression = Callable[[str, Math, dict[str, Any]], str]

ACTIVATIONS: dict[str, Expression] = {
    "relu": lambda x, m, a: _max(x, m.lit(0.0)),
    "relu6": lambda x, m, a: _min(_max(x, m.lit(0.0)), m.lit(6.0)),
    "leaky_relu": lambda x, m, a: _leaky(x, m, a["negative_slope"]),
    "rrelu": lambda x, m, a: _leaky(x, m, (a["lower"] + a["upper"]) / 2.0),
    "elu": lambda x, m, a: f"({x} > 0 ? {x} : {m.lit(a['alpha'])} * {m('expm1')}({_min(x, m.lit(0.0))}))",
    "celu": lambda x, m, a: (
        f"({x} > 0 ? {x} : {m.lit(a['alpha'])} * {m('expm1')}({_min(x, m.lit(0.0))} / {m.lit(a['alpha'])}))"
    ),
    "selu": lambda x, m, a: (
        f"({m.lit(SELU_SCALE)} * ({x} > 0 ? {x} : {m.lit(SELU_ALPHA)} * {m('expm1')}({_min(x, m.lit(0.0))})))"
    ),
    "gelu": lambda x, m, a: _gelu(x, m, a["approximate"]),
    "silu": lambda x, m, a: f"({x} * {sigmoid(x, m)})",
    "mish": lambda x, m, a: f"({x} * {m('tanh')}({softplus_expr(x, m)}))",
    "sigmoid": lambda x, m, a: sigmoid(x, m),
    "logsigmoid": lambda x, m, a: f"(-{softplus_expr(f'(-{x})', m)})",
    "hardsigmoid": lambda x, m, a: _min(_max(f"({x} / {m.lit(6.0)} + {m.lit(0.5)})", m.lit(0.0)), m.lit(1.0)),
    "hardswish": lambda x, m, a: (
        f"({x} * ({_min(_max(f'({x} + {m.lit(3.0)})', m.lit(0.0)), m.lit(6.0))} / {m.lit(6.0)}))"
    ),
    "hardtanh": lambda x, m, a: _min(_max(x, m.lit(a["min_val"])), m.lit(a["max_val"])),
    "tanh": lambda x, m, a: f"{m('tanh')}({x})",
    "tanhshrink": lambda x, m, a: f"({x} - {m('tanh')}({x}))",
    "softplus": lambda x, m, a: softplus_expr(x, m, a["beta"], a["threshold"]),
    "softsign": lambda x, m, a: f"({x} / ({m.lit(1.0)} + {m('fabs')}({x})))",
    "hardshrink": lambda x, m, a: f"({m('fabs')}({x}) > {m.lit(a['lambd'])} ? {x} : {m.lit(0.0)})",
    "softshrink": lambda x, m, a: (
        f"({x} > {m.lit(a['lambd'])} ? {x} - {m.lit(a['lambd'])} : "
        f"({x} < -({m.lit(a['lambd'])}) ? {x} + {m.lit(a['lambd'])} : {m.lit(0.0)}))"
    ),
    "threshold": lambda x, m, a: f"({x} > {m.lit(a['threshold'])} ? {x} : {m.lit(a['value'])})",
    "exp": lambda x, m, a: f"{m('exp')}({x})",
}
"""Activation op -> its C expression of one element (``identity`` is an alias; ``prelu``, ``softmax`` and
``log_softmax`` are in ops.py: they read a parameter or a whole axis)."""
