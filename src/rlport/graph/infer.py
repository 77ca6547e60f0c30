"""Static shape, dtype and range inference over a policy graph: no op is executed.

``infer`` walks the graph once with the shapes and dtypes of its inputs and parameter tensors and
gives, for every value, its shape (``None`` marks the batch axis), its dtype and an interval that
holds every element it can take, for both deterministic and sampled acting. From these, a bundle
is checked before anything runs: every value stays within the size limits (so a few kilobytes of
manifest cannot ask for gigabytes), every parameter fits its op, and the action lies in the action
space (see ``rlport.bundle.bundle``). Needs numpy and ``rlport.errors`` only.

Example:
    >>> g = Graph((GraphInput("obs", "observation"),), output="y",
    ...           policy=(Node("tanh", ("obs",), ("y",)),))                       # doctest: +SKIP
    >>> infer(g, {}, {(): Value.box((3,), "float32")})["y"].shape                  # doctest: +SKIP
    (None, 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlport.errors import GraphError, short
from rlport.graph.graph import Graph, Node
from rlport.graph.schema import LSTM_LAYER_NORM_ROLES

__all__ = [
    "Value",
    "infer",
    "CAST_DTYPES",
    "MAX_VALUE_ELEMENTS",
    "MAX_GRAPH_ELEMENTS",
    "MAX_GRAPH_FLOPS",
    "MAX_RANK",
]

MAX_VALUE_ELEMENTS = 1 << 24
"""The most elements one value of the graph may have per batch row."""
MAX_GRAPH_ELEMENTS = 1 << 26
"""The most elements all values of the graph together may have per batch row."""
MAX_GRAPH_FLOPS = 1 << 34
"""The most multiply-adds the graph's linear, conv2d and lstm ops may take per batch row (about 17 G)."""
MAX_RANK = 8
"""The most axes a value (batch axis included) may have."""
CAST_DTYPES = frozenset("bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split())
"""The dtypes a ``cast`` node may name."""

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_INF = math.inf
_BOUNDED: dict[str, tuple[float, float]] = {
    "tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0), "softsign": (-1.0, 1.0),
    "softmax": (0.0, 1.0), "relu": (0.0, _INF), "relu6": (0.0, 6.0), "softplus": (0.0, _INF), "exp": (0.0, _INF),
}  # fmt: skip
"""Activations whose result lies in a fixed interval whatever their input."""


@dataclass(frozen=True)
class Value:
    """What a graph value can be: shape (``None`` is the batch axis), dtype, and element bounds.

    ``low``/``high`` are float64 arrays broadcastable to the shape without its batch axis;
    ``integral`` says every element is a whole number.
    """

    shape: tuple[int | None, ...]
    dtype: np.dtype
    low: np.ndarray
    high: np.ndarray
    integral: bool = False

    @staticmethod
    def of(shape: tuple[int | None, ...], dtype: Any, low: Any = -_INF, high: Any = _INF, integral: bool = False):
        return Value(tuple(shape), np.dtype(dtype), np.asarray(low, np.float64), np.asarray(high, np.float64), integral)

    @property
    def row(self) -> tuple[int, ...]:
        """The shape without the batch axis."""
        return tuple(d for d in self.shape if d is not None)

    @property
    def elements(self) -> int:
        return math.prod(self.row)

    def with_range(self, low: Any, high: Any, integral: bool | None = None) -> Value:
        return Value.of(self.shape, self.dtype, low, high, self.integral if integral is None else integral)


def _fail(message: str) -> None:
    raise GraphError(message)


def _batch_first(v: Value, what: str, rank: int | None = None) -> tuple[int, ...]:
    """The row shape of a value whose batch axis is its first; optionally of a given full rank."""
    if not v.shape or v.shape[0] is not None or None in v.shape[1:]:
        _fail(f"{what}: expected a value with the batch axis first, found shape {v.shape}")
    if rank is not None and len(v.shape) != rank:
        _fail(f"{what}: expected rank {rank} (batch axis included), found shape {v.shape}")
    return v.shape[1:]


def _broadcastable(param: np.ndarray, row: tuple[int, ...], what: str) -> None:
    try:
        shape = np.broadcast_shapes(param.shape, row)
    except ValueError:
        shape = None
    if shape != row:
        _fail(f"{what}: a parameter of shape {param.shape} does not broadcast to the value's shape {row}")


def _number(attrs: Mapping[str, Any], name: str, what: str, low: float = -_INF, high: float = _INF) -> float:
    value = float(attrs[name])
    if math.isnan(value) or not low <= value <= high:
        _fail(f"{what}: attribute {name!r} must be a number in [{low}, {high}], found {short(attrs[name])}")
    return value


def _count(attrs: Mapping[str, Any], name: str, what: str, low: int = 1, high: int = MAX_VALUE_ELEMENTS) -> int:
    value = attrs[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        _fail(f"{what}: attribute {name!r} must be an integer in {low}..{high}, found {short(value)}")
    return int(value)


def _counts(attrs: Mapping[str, Any], name: str, what: str, length: int | None = None, low: int = 1) -> list[int]:
    values = attrs[name]
    if not isinstance(values, (list, tuple)) or not 0 < len(values) <= MAX_VALUE_ELEMENTS:
        _fail(f"{what}: attribute {name!r} must be a non-empty list of integers, found {short(values)}")
    if length is not None and len(values) != length:
        _fail(f"{what}: attribute {name!r} must have {length} entries, found {len(values)}")
    return [_count({name: v}, name, what, low) for v in values]


# ---- shape rules, one per op -----------------------------------------------------------------


Rule = Callable[[list[Value], dict[str, np.ndarray], dict[str, Any], str], list[Value]]


def _elementwise(xs, p, a, what, op: str) -> list[Value]:
    x = xs[0]
    if op in ("softmax", "log_softmax"):
        axis = _count(a, "axis", what, -len(x.shape), len(x.shape) - 1)
        if x.shape[axis] is None:
            _fail(f"{what}: attribute 'axis' must not be the batch axis")
    if op == "prelu" and p["weight"].size != 1 and (len(x.shape) < 2 or p["weight"].size != x.shape[1]):
        _fail(f"{what}: prelu weight of {p['weight'].size} values fits neither 1 nor the {x.shape[1:2]} channels")
    if op == "celu" and _number(a, "alpha", what) == 0.0:
        _fail(f"{what}: attribute 'alpha' must not be 0")
    if op == "softplus" and _number(a, "beta", what) == 0.0:
        _fail(f"{what}: attribute 'beta' must not be 0")
    if op == "identity":
        return [x]
    if x.dtype.kind != "f":  # the backends' numpy, torch and ONNX functions disagree on integer inputs
        _fail(f"{what}: takes a float input, found {x.dtype}; add a `cast` node before it")
    dtype = x.dtype
    if op in _BOUNDED:
        return [Value.of(x.shape, dtype, *_BOUNDED[op])]
    if op == "hardtanh":
        low, high = _number(a, "min_val", what), _number(a, "max_val", what)
        return [Value.of(x.shape, dtype, min(low, high), high)]
    return [Value.of(x.shape, dtype)]


def _cast(xs, p, a, what) -> list[Value]:
    x, name = xs[0], a["dtype"]
    if name not in CAST_DTYPES:
        _fail(f"{what}: cannot cast to {short(name)}; a cast names one of {', '.join(sorted(CAST_DTYPES))}")
    dtype = np.dtype(name)
    if dtype.kind == "f":
        return [Value.of(x.shape, dtype, x.low, x.high, x.integral)]
    if dtype.kind == "b":
        return [Value.of(x.shape, dtype, 0, 1, True)]
    info = np.iinfo(dtype)
    low, high = np.trunc(x.low), np.trunc(x.high)  # a float cast to an integer drops its fraction
    if np.all(low >= info.min) and np.all(high <= info.max):
        return [Value.of(x.shape, dtype, low, high, True)]
    return [Value.of(x.shape, dtype, info.min, info.max, True)]  # wraps around: anything


def _normalize(xs, p, a, what) -> list[Value]:
    row = _batch_first(xs[0], what)
    for role in ("mean", "var"):
        _broadcastable(p[role], row, f"{what} {role}")
    epsilon, clip = _number(a, "epsilon", what, 0.0), _number(a, "clip", what, 0.0)
    if np.any(p["var"] < 0) or np.any(p["var"] + epsilon <= 0):
        _fail(f"{what}: the variance must be >= 0 and variance + epsilon > 0")
    return [Value.of(xs[0].shape, _F32, -clip, clip)]


def _divide(xs, p, a, what) -> list[Value]:
    if _number(a, "divisor", what) == 0.0 or math.isinf(float(a["divisor"])):
        _fail(f"{what}: attribute 'divisor' must be a finite number other than 0")
    return [Value.of(xs[0].shape, _F32)]


def _one_hot(xs, p, a, what) -> list[Value]:
    _batch_first(xs[0], what, rank=1)
    n = _count(a, "n", what)
    return [Value.of((None, n), _F32, 0, 1, True)]


def _multi_one_hot(xs, p, a, what) -> list[Value]:
    (k,) = _batch_first(xs[0], what, rank=2)
    sizes = _counts(a, "sizes", what, length=k)
    return [Value.of((None, sum(sizes)), _F32, 0, 1, True)]


def _flatten(xs, p, a, what) -> list[Value]:
    x = xs[0]
    _batch_first(x, what)
    return [Value.of((None, x.elements), x.dtype, np.min(x.low), np.max(x.high), x.integral)]


def _concat(xs, p, a, what) -> list[Value]:
    rows = [_batch_first(x, f"{what} input {i}") for i, x in enumerate(xs)]
    if any(len(r) != len(rows[0]) or r[:-1] != rows[0][:-1] for r in rows) or not rows[0]:
        _fail(f"{what}: inputs of shapes {[x.shape for x in xs]} cannot be concatenated on the last axis")
    dtype = np.result_type(*(x.dtype for x in xs))
    return [Value.of((None, *rows[0][:-1], sum(r[-1] for r in rows)), dtype)]


def _linear(xs, p, a, what) -> list[Value]:
    x, weight, bias = xs[0], p["weight"], p.get("bias")
    row = _batch_first(x, what)
    if not row or weight.shape[1] != row[-1]:
        _fail(f"{what}: a weight of shape {weight.shape} cannot take inputs of shape {x.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        _fail(f"{what}: a bias of shape {bias.shape} does not fit a weight of shape {weight.shape}")
    return [Value.of((None, *row[:-1], weight.shape[0]), np.result_type(x.dtype, weight.dtype, _F32))]


def _pair(a, name, what, low) -> tuple[int, int]:
    values = _counts(a, name, what, length=2, low=low)
    if max(values) > 1 << 16:
        _fail(f"{what}: attribute {name!r} is too large: {values}")
    return values[0], values[1]


def _conv2d(xs, p, a, what) -> list[Value]:
    c, h, w = _batch_first(xs[0], what, rank=4)
    weight, bias = p["weight"], p.get("bias")
    out, per_group, kh, kw = weight.shape
    groups = _count(a, "groups", what, 1, max(c, 1))
    (sh, sw), (ph, pw) = _pair(a, "stride", what, 1), _pair(a, "padding", what, 0)
    dh, dw = _pair(a, "dilation", what, 1)
    if c % groups or out % groups or per_group * groups != c or min(out, kh, kw) < 1:
        _fail(f"{what}: a weight of shape {weight.shape} with groups={groups} does not fit {c} input channels")
    if bias is not None and bias.shape != (out,):
        _fail(f"{what}: a bias of shape {bias.shape} does not fit {out} output channels")
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        _fail(f"{what}: a {kh}x{kw} kernel does not fit inputs of {h}x{w} (padding {ph}, {pw})")
    return [Value.of((None, out, ho, wo), np.result_type(xs[0].dtype, weight.dtype, _F32))]


def _batch_norm(xs, p, a, what) -> list[Value]:
    row = _batch_first(xs[0], what)
    epsilon = _number(a, "epsilon", what, 0.0)
    for role, param in p.items():
        if not row or param.shape != (row[0],):
            _fail(f"{what}: {role} of shape {param.shape} does not fit {row[:1]} channels")
    if np.any(p["var"] < 0) or np.any(p["var"] + epsilon <= 0):
        _fail(f"{what}: the variance must be >= 0 and variance + epsilon > 0")
    return [Value.of(xs[0].shape, np.result_type(xs[0].dtype, _F32))]


def _layer_norm(xs, p, a, what) -> list[Value]:
    row = _batch_first(xs[0], what)
    axes = _count(a, "axes", what, 1, max(len(row), 1))
    _number(a, "epsilon", what, 0.0)
    for role, param in p.items():
        if param.shape != row[len(row) - axes :]:
            _fail(f"{what}: {role} of shape {param.shape} does not fit the normalised shape {row[len(row) - axes :]}")
    return [Value.of(xs[0].shape, xs[0].dtype if xs[0].dtype.kind == "f" else _F32)]


def _reshape(xs, p, a, what) -> list[Value]:
    x = xs[0]
    _batch_first(x, what)
    shape = a["shape"]
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        _fail(f"{what}: attribute 'shape' must be a list of integers, found {short(shape)}")
    known = math.prod(d for d in shape if d != -1)
    if shape.count(-1) > 1 or any(d < -1 or d == 0 for d in shape) or known == 0 or x.elements % known:
        _fail(f"{what}: cannot reshape {x.row} to {shape}")
    shape = [x.elements // known if d == -1 else d for d in shape]
    if math.prod(shape) != x.elements:
        _fail(f"{what}: cannot reshape {x.row} ({x.elements} elements) to {shape}")
    low, high = (b if b.size == 1 else b.reshape(-1) if b.size == x.elements else None for b in (x.low, x.high))
    if low is None or high is None:
        low, high = np.min(x.low), np.max(x.high)
    else:
        low, high = low.reshape(shape) if low.size > 1 else low, high.reshape(shape) if high.size > 1 else high
    return [Value.of((None, *shape), x.dtype, low, high, x.integral)]


def _mean(xs, p, a, what) -> list[Value]:
    x = xs[0]
    row = _batch_first(x, what)
    axis = _count(a, "axis", what, -len(x.shape), len(row))
    axis = axis + len(x.shape) if axis < 0 else axis
    if axis == 0:
        _fail(f"{what}: attribute 'axis' must not be the batch axis (0)")
    shape = x.shape[:axis] + x.shape[axis + 1 :]
    return [Value.of(shape, x.dtype if x.dtype.kind == "f" else np.dtype(np.float64), np.min(x.low), np.max(x.high))]


def _clip(xs, p, a, what) -> list[Value]:
    x = xs[0]
    low, high = _number(a, "min", what), _number(a, "max", what)
    # numpy's minimum(maximum(x, low), high): monotone in x
    return [x.with_range(np.minimum(np.maximum(x.low, low), high), np.minimum(np.maximum(x.high, low), high))]


def _operand(xs, p, what) -> Value:
    """The second operand of a binary op: its second input, or its ``other`` parameter (exactly one)."""
    if (len(xs) > 1) == ("other" in p):
        _fail(f"{what}: takes its second operand as a second input or as the parameter 'other', exactly one of them")
    if len(xs) > 1:
        x, y = xs
        if len(y.shape) != len(x.shape) or y.shape[:1] != (None,):
            _fail(f"{what}: operands of shapes {x.shape} and {y.shape} need the same rank, batch axis first")
        return y
    other = p["other"]
    if other.ndim >= len(xs[0].shape):
        _fail(f"{what}: parameter 'other' of shape {other.shape} has more axes than a row of {xs[0].shape}")
    return Value.of((None, *other.shape), other.dtype, other, other)


def _interval(op: str, x: Value, y: Value) -> tuple[np.ndarray, np.ndarray]:
    """Element bounds of ``x OP y`` from the operands' bounds (unbounded where they give nothing finite)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if op == "add":
            return x.low + y.low, x.high + y.high
        if op == "sub":
            return x.low - y.high, x.high - y.low
        if op == "mul":
            corners = np.stack(np.broadcast_arrays(x.low * y.low, x.low * y.high, x.high * y.low, x.high * y.high))
            low, high = corners.min(axis=0), corners.max(axis=0)
            unknown = np.isnan(corners).any(axis=0)
            return np.where(unknown, -_INF, low), np.where(unknown, _INF, high)
    return np.asarray(-_INF), np.asarray(_INF)


def _binary(xs, p, a, what, op: str) -> list[Value]:
    x = xs[0]
    row = _batch_first(x, what)
    y = _operand(xs, p, what)
    if x.dtype.kind != "f" or y.dtype.kind != "f":
        _fail(f"{what}: takes float operands, found {x.dtype} and {y.dtype}; add a `cast` node before it")
    try:
        shape = np.broadcast_shapes(row, y.row if len(xs) > 1 else tuple(p["other"].shape))
    except ValueError:
        _fail(f"{what}: operands of shapes {x.shape} and {y.shape} do not broadcast")
    if len(xs) == 1 and tuple(shape) != row:
        _fail(f"{what}: parameter 'other' of shape {p['other'].shape} would grow a row of {x.shape}")
    low, high = _interval(op, x, y)
    return [Value.of((None, *shape), np.result_type(x.dtype, y.dtype), low, high)]


def _pool2d(xs, p, a, what, op: str) -> list[Value]:
    x = xs[0]
    c, h, w = _batch_first(x, what, rank=4)
    (kh, kw), (sh, sw) = _pair(a, "kernel", what, 1), _pair(a, "stride", what, 1)
    ph, pw = _pair(a, "padding", what, 0)
    dh, dw = _pair(a, "dilation", what, 1) if op == "max_pool2d" else (1, 1)
    if 2 * ph > dh * (kh - 1) + 1 or 2 * pw > dw * (kw - 1) + 1:
        _fail(f"{what}: padding ({ph}, {pw}) must be at most half of the kernel ({kh}, {kw}) (torch's rule)")
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        _fail(f"{what}: a {kh}x{kw} window does not fit inputs of {h}x{w} (padding {ph}, {pw})")
    if x.dtype.kind != "f":
        _fail(f"{what}: takes a float input, found {x.dtype}; add a `cast` node before it")
    low, high = float(np.min(x.low)), float(np.max(x.high))
    if op == "avg_pool2d" and (ph or pw) and a["count_include_pad"]:
        low, high = min(low, 0.0), max(high, 0.0)  # the zero padding counts
    return [Value.of((None, c, ho, wo), x.dtype, low, high)]


def _slice(xs, p, a, what) -> list[Value]:
    x = xs[0]
    row = _batch_first(x, what)
    axis = _count(a, "axis", what, -len(x.shape), len(row))
    axis = axis + len(x.shape) if axis < 0 else axis
    if axis == 0:
        _fail(f"{what}: attribute 'axis' must not be the batch axis (0)")
    start, end = _count(a, "start", what, -(1 << 62), 1 << 62), _count(a, "end", what, -(1 << 62), 1 << 62)
    step = _count(a, "step", what, 1, MAX_VALUE_ELEMENTS)
    size = len(range(row[axis - 1])[start:end:step])
    if size < 1:
        _fail(f"{what}: start {start}, end {end}, step {step} select nothing of an axis of {row[axis - 1]}")
    shape = x.shape[:axis] + (size,) + x.shape[axis + 1 :]
    return [Value.of(shape, x.dtype, np.min(x.low), np.max(x.high), x.integral)]


def _lstm(xs, p, a, what) -> list[Value]:
    x, h, c = xs[:3]
    (features,) = _batch_first(x, what, rank=2)
    layers, hidden = _count(a, "layers", what, 1, 1024), _count(a, "hidden_size", what)
    for name, state in (("h", h), ("c", c)):
        if state.shape != (layers, None, hidden):
            _fail(f"{what}: state {name} must have shape ({layers}, batch, {hidden}), found {state.shape}")
    if len(xs) > 3:
        _batch_first(xs[3], f"{what} episode_start", rank=1)
    layer_norm, epsilon = bool(a["layer_norm"]), a["layer_norm_epsilon"]
    if layer_norm and not (math.isfinite(float(epsilon)) and float(epsilon) > 0):
        _fail(f"{what}: attribute 'layer_norm_epsilon' must be a finite number > 0, found {short(epsilon)}")
    for k in range(layers):
        wanted = {"weight_ih": (4 * hidden, features if k == 0 else hidden), "weight_hh": (4 * hidden, hidden),
                  "bias_ih": (4 * hidden,), "bias_hh": (4 * hidden,)}  # fmt: skip
        if layer_norm:
            wanted |= {role: (hidden,) if role.startswith("ln_c_") else (4 * hidden,) for role in LSTM_LAYER_NORM_ROLES}
        for role, shape in wanted.items():
            if p[f"{role}.{k}"].shape != shape:
                _fail(f"{what}: {role}.{k} must have shape {shape}, found {p[f'{role}.{k}'].shape}")
    h_out = Value.of((layers, None, hidden), _F32, -1, 1)  # o * tanh(c): within [-1, 1]; c is unbounded
    return [Value.of((None, hidden), _F32, -1, 1), h_out, Value.of((layers, None, hidden), _F32)]


def _check_mask(xs, width: int, what: str) -> None:
    if len(xs) > 1 and _batch_first(xs[1], f"{what} mask", rank=2) != (width,):
        _fail(f"{what}: a mask of shape {xs[1].shape} does not fit {width} logits")


def _categorical(xs, p, a, what) -> list[Value]:
    (n,) = _batch_first(xs[0], what, rank=2)
    _check_mask(xs, n, what)
    return [Value.of((None,), _I64, 0, n - 1, True)]


def _multi_categorical(xs, p, a, what) -> list[Value]:
    (width,) = _batch_first(xs[0], what, rank=2)
    sizes = _counts(a, "sizes", what)
    if sum(sizes) != width:
        _fail(f"{what}: sizes {short(sizes)} add up to {sum(sizes)}, but there are {width} logits")
    _check_mask(xs, width, what)
    return [Value.of((None, len(sizes)), _I64, 0, np.asarray(sizes) - 1, True)]


def _gaussian(xs, p, a, what) -> list[Value]:
    row = _batch_first(xs[0], what)
    if len(xs) < 2 and "log_std" not in p:
        _fail(f"{what}: a gaussian needs its log_std, as a second input or as the 'log_std' parameter; found neither")
    if len(xs) > 1 and xs[1].shape != xs[0].shape:
        _fail(f"{what}: log_std of shape {xs[1].shape} does not match the mean's {xs[0].shape}")
    if "log_std" in p:
        _broadcastable(p["log_std"], row, f"{what} log_std")
    return [Value.of(xs[0].shape, xs[0].dtype)]  # sampled: any number


def _gsde(xs, p, a, what) -> list[Value]:
    (actions,) = _batch_first(xs[0], what, rank=2)
    (latent,) = _batch_first(xs[1], f"{what} latent", rank=2)
    log_std = p["log_std"]
    if log_std.shape not in ((latent, actions), (latent, 1)):
        _fail(f"{what}: log_std of shape {log_std.shape} must be ({latent}, {actions}) or ({latent}, 1)")
    _number(a, "epsilon", what, 0.0)
    return [Value.of(xs[0].shape, xs[0].dtype)]


def _greedy(xs, p, a, what) -> list[Value]:
    (width,) = _batch_first(xs[0], what, rank=2)
    n = _count(a, "n", what)
    epsilon = _number(a, "epsilon", what, 0.0, 1.0)
    return [Value.of((None,), _I64, 0, (max(n, width) if epsilon > 0 else width) - 1, True)]


def _bounds(xs, p, what) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    row = _batch_first(xs[0], what)
    low, high = (p[k].astype(np.float64) for k in ("low", "high"))
    for name, bound in (("low", low), ("high", high)):
        _broadcastable(bound, row, f"{what} {name}")
    return row, low, high


def _rescale(xs, p, a, what) -> list[Value]:
    x = xs[0]
    _, low, high = _bounds(xs, p, what)
    span = high - low
    with np.errstate(all="ignore"):
        ends = [low + 0.5 * (end + 1.0) * span for end in (x.low, x.high)]
    ends = [np.where(np.isnan(e), np.nan, e) for e in ends]
    out_low, out_high = np.fmin(ends[0], ends[1]), np.fmax(ends[0], ends[1])
    unknown = np.isnan(ends[0]) | np.isnan(ends[1])
    dtype = np.result_type(x.dtype, p["low"].dtype, _F32)
    return [Value.of(x.shape, dtype, np.where(unknown, -_INF, out_low), np.where(unknown, _INF, out_high))]


def _clip_to_bounds(xs, p, a, what) -> list[Value]:
    x = xs[0]
    _, low, high = _bounds(xs, p, what)
    dtype = np.result_type(x.dtype, p["low"].dtype)
    low_end = np.minimum(np.maximum(x.low, low), high)
    high_end = np.minimum(np.maximum(x.high, low), high)
    return [Value.of(x.shape, dtype, low_end, high_end, x.integral)]


_ACTIVATION_NAMES = (
    "identity relu relu6 leaky_relu elu celu selu gelu silu mish sigmoid logsigmoid hardsigmoid hardswish hardtanh "
    "tanh tanhshrink softplus softsign softmax log_softmax hardshrink softshrink threshold rrelu prelu exp"
).split()

RULES: dict[str, Rule] = {
    **{name: (lambda xs, p, a, what, _op=name: _elementwise(xs, p, a, what, _op)) for name in _ACTIVATION_NAMES},
    "cast": _cast,
    "normalize": _normalize,
    "divide": _divide,
    "one_hot": _one_hot,
    "multi_one_hot": _multi_one_hot,
    "flatten": _flatten,
    "concat": _concat,
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "reshape": _reshape,
    "mean": _mean,
    "clip": _clip,
    **{name: (lambda xs, p, a, what, _op=name: _binary(xs, p, a, what, _op)) for name in ("add", "sub", "mul", "div")},
    **{name: (lambda xs, p, a, what, _op=name: _pool2d(xs, p, a, what, _op)) for name in ("max_pool2d", "avg_pool2d")},
    "slice": _slice,
    "lstm": _lstm,
    "categorical": _categorical,
    "multi_categorical": _multi_categorical,
    "bernoulli": lambda xs, p, a, what: [Value.of(xs[0].shape, _F32, 0, 1, True)],
    "gaussian": _gaussian,
    "gsde": _gsde,
    "greedy": _greedy,
    "rescale_to_bounds": _rescale,
    "clip_to_bounds": _clip_to_bounds,
}
"""One shape/dtype/range rule per op of format 1.0."""


def _flops(node: Node, inputs: list[Value], outputs: list[Value], params: dict[str, np.ndarray]) -> int:
    """Multiply-adds per batch row of the ops whose cost is not linear in their output size."""
    if node.op == "linear":
        return outputs[0].elements * params["weight"].shape[1]
    if node.op == "conv2d":
        return outputs[0].elements * math.prod(params["weight"].shape[1:])
    if node.op == "lstm":
        return sum(w.size for role, w in params.items() if role.startswith("weight"))
    return 0


def infer(
    graph: Graph, tensors: Mapping[str, np.ndarray], observations: Mapping[tuple[str, ...], Value]
) -> dict[str, Value]:
    """Shapes, dtypes and element bounds of every value of ``graph`` (validated first with ``graph.validate``).

    Args:
        graph: a graph that passed :meth:`Graph.validate`.
        tensors: the bundle's tensors (read for their shapes, dtypes and, for bounds, values).
        observations: the :class:`Value` of each observation leaf by its key path (``()`` for a non-dict space).

    Raises:
        GraphError: a node's inputs or parameters do not fit it, an attribute is out of its range, or
            a value, all values together or the graph's work exceed the limits of docs/FORMAT.md.
    """
    values: dict[str, Value] = {}
    for graph_input in graph.inputs:
        values[graph_input.name] = _input_value(graph_input, observations)
    total = sum(v.elements for v in values.values())
    flops = 0
    for index, node in enumerate(graph.nodes()):
        what = f"node {index} ({node.op})"
        params = {role: tensors[name] for role, name in node.params.items()}
        inputs = [values[name] for name in node.inputs]
        try:
            outputs = RULES[node.op](inputs, params, node.resolved_attrs(), what)
        except (TypeError, ValueError, OverflowError) as exc:
            raise GraphError(f"{what}: its attributes or parameters do not fit it ({short(str(exc), 200)})") from None
        for name, value in zip(node.outputs, outputs, strict=True):
            if len(value.shape) > MAX_RANK or value.elements > MAX_VALUE_ELEMENTS:
                _fail(f"{what}: its output {short(name)} of shape {value.shape} is over the limit of "
                      f"{MAX_VALUE_ELEMENTS} elements per batch row (or {MAX_RANK} axes)")  # fmt: skip
            values[name] = value
            total += value.elements
        flops += _flops(node, inputs, outputs, params)
        if total > MAX_GRAPH_ELEMENTS or flops > MAX_GRAPH_FLOPS:
            _fail(f"{what}: the graph needs more than {MAX_GRAPH_ELEMENTS} elements or {MAX_GRAPH_FLOPS} multiply-adds "
                  "per batch row, over the limits; the bundle is hostile or far larger than a policy")  # fmt: skip
    _check_next_states(graph, values)
    return values


def _check_next_states(graph: Graph, values: Mapping[str, Value]) -> None:
    """A state's next value must have the state's own shape and declared dtype (a runtime feeds it back)."""
    for state in graph.inputs_with_role("state"):
        now, after = values[state.name], values[state.output]
        if after.shape != now.shape or after.dtype != now.dtype:
            _fail(
                f"state {short(state.name)}: its next value {short(state.output)} has shape {after.shape} and dtype "
                f"{after.dtype}, but the state is declared with shape {now.shape} and dtype {now.dtype}; "
                "declare the state with the dtype its op gives (an lstm gives float32)"
            )


def _input_value(graph_input: Any, observations: Mapping[tuple[str, ...], Value]) -> Value:
    if graph_input.role == "observation":
        key = tuple(graph_input.key or ())
        if key not in observations:
            _fail(f"graph input {short(graph_input.name)}: no observation leaf has key {list(key)}")
        return observations[key]
    if graph_input.role == "state":
        shape: list[int | None] = list(graph_input.shape)
        shape.insert(graph_input.batch_axis, None)
        return Value.of(tuple(shape), graph_input.dtype)
    if graph_input.role == "episode_start":
        return Value.of((None,), _F32, 0, 1)
    return Value.of((None, graph_input.size), np.bool_, 0, 1, True)  # action_mask
