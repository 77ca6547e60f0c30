"""ATen ops on tensors (shapes, slices, concatenation, reductions, arithmetic, clamps) -> graph ops.

One small function per op family; :data:`TENSORS` maps the ATen op's name to it. Literal constants
an op takes (``x * 0.5``) become tensors rlport makes (the emitter's ``made``, kept fixed in
training); a parameter of the module keeps its name. This module imports torch: import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rlport.errors import UnsupportedError
from rlport.frameworks.torch.values import Call, Const, Emitter, Var, as_tensor, axis_of, computed

__all__ = ["TENSORS"]

_FLT_MAX = float(torch.finfo(torch.float32).max)


# ---- shapes ------------------------------------------------------------------------------


def _reshape(e: Emitter, call: Call, x: Any, *args: Any, **kwargs: Any) -> Var:
    """Any op that only changes the shape and keeps the batch axis first: from the captured output shape."""
    x = computed(x, call.op)
    out = tuple(call.out)
    if out == x.shape:
        return x
    if len(out) == 1:
        return e.add("flatten", [x], out)
    return e.add("reshape", [x], out, attrs={"shape": list(out)})


def _to_copy(e: Emitter, call: Call, x: Any, *args: Any, dtype: Any = None, **kwargs: Any) -> Var:
    if dtype is None or dtype == torch.float32:
        return x
    raise UnsupportedError(f"a cast to {dtype}; the graph computes in float32")


def _cat(e: Emitter, call: Call, tensors: list, dim: int = 0) -> Var:
    parts = [computed(t, "cat of a constant") for t in tensors]
    if axis_of(parts[0], dim) != -1 or len({p.rank for p in parts}) != 1:
        raise UnsupportedError(f"cat along dim {dim}; the graph concatenates along the last axis only")
    return e.add("concat", parts, call.out)


def _sliced(e: Emitter, x: Var, dim: int, start: int, end: int, step: int = 1) -> Var:
    """``x[..., start:end:step, ...]`` along ``dim`` (never the batch axis)."""
    axis = axis_of(x, dim)
    position = len(x.shape) + axis
    size = len(range(x.shape[position])[start:end:step])
    if size == x.shape[position]:
        return x
    shape = (*x.shape[:position], size, *x.shape[position + 1 :])
    return e.add("slice", [x], shape, attrs={"axis": axis, "start": int(start), "end": int(end), "step": int(step)})


_END = 1 << 62  # torch's "to the end" (2**63 - 1) within the slice op's limits


def _slice(e: Emitter, call: Call, x: Any, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Var:
    x = computed(x, call.op)
    start, end = 0 if start is None else int(start), _END if end is None else min(int(end), _END)
    if int(dim) == 0:
        if start == 0 and step == 1 and end >= _END:
            return x
        raise UnsupportedError("a slice of the batch axis")
    return _sliced(e, x, dim, max(start, -_END), end, int(step))


def _select(e: Emitter, call: Call, x: Any, dim: int, index: int) -> Var:
    x = computed(x, call.op)
    index = int(index)
    picked = _sliced(e, x, dim, index, index + 1 if index != -1 else _END)
    return e.add("reshape", [picked], call.out, attrs={"shape": list(call.out)})


def _split_sizes(e: Emitter, x: Var, sizes: list[int], dim: int, what: str) -> tuple:
    width = x.shape[len(x.shape) + axis_of(x, dim)]
    if sum(sizes) != width:
        raise UnsupportedError(f"{what} into sizes {sizes} of an axis of {width}")
    out, start = [], 0
    for size in sizes:
        out.append(_sliced(e, x, dim, start, start + size))
        start += size
    return tuple(out)


def _split(e: Emitter, call: Call, x: Any, split_size: Any, dim: int = 0) -> tuple:
    x = computed(x, call.op)
    if isinstance(split_size, (list, tuple)):
        return _split_sizes(e, x, [int(s) for s in split_size], dim, "split")
    return _split_sizes(e, x, [s[len(x.shape) + axis_of(x, dim)] for s in call.out], dim, "split")


def _chunk(e: Emitter, call: Call, x: Any, chunks: int, dim: int = 0) -> tuple:
    x = computed(x, call.op)
    return _split_sizes(e, x, [s[len(x.shape) + axis_of(x, dim)] for s in call.out], dim, "chunk")


def _mean(e: Emitter, call: Call, x: Any, dims: Any = None, keepdim: bool = False, **kwargs: Any) -> Var:
    x = computed(x, call.op)
    dims = [dims] if isinstance(dims, int) else list(dims) if dims else list(range(1, x.rank))
    for position in sorted({axis_of(x, d) + x.rank for d in dims}, reverse=True):  # the last axis first
        shape = list(x.shape)
        shape.pop(position - 1)
        x = e.add("mean", [x], tuple(shape), attrs={"axis": position - x.rank})
    return _reshape(e, call, x) if keepdim else x


def _expand_as(e: Emitter, call: Call, x: Any, other: Any) -> Any:
    """``log_std.expand_as(mean)``: a constant broadcast over the batch stays a constant."""
    if isinstance(x, Const) and isinstance(other, Var):
        return Const(x.tensor.expand((1, *other.shape)).contiguous(), name=x.name, batched=True)
    return _expand(e, call, x, None)


def _expand(e: Emitter, call: Call, x: Any, sizes: Any, **kwargs: Any) -> Var:
    x = computed(x, call.op)
    if tuple(call.out) != x.shape:
        raise UnsupportedError(f"expand of a computed value from {x.shape} to {tuple(call.out)}")
    return x


# ---- arithmetic ----------------------------------------------------------------------------


def _other(e: Emitter, x: Var, c: Any, what: str) -> str:
    """A constant operand as the ``other`` parameter: broadcast over the batch, without growing ``x``'s row."""
    tensor = as_tensor(c).to(torch.float32)
    batched = isinstance(c, Const) and c.batched
    if batched:
        tensor = tensor[0]
    elif tensor.ndim >= x.rank:  # a constant with a batch axis of its own
        if tensor.shape[0] != 1:
            raise UnsupportedError(f"{what} with a constant of shape {tuple(tensor.shape)} along the batch axis")
        tensor = tensor[0]
    try:
        grown = torch.broadcast_shapes(tuple(tensor.shape), x.shape) != x.shape
    except RuntimeError:
        grown = True
    if grown:
        raise UnsupportedError(f"{what} of a value of shape {x.shape} and a constant of shape {tuple(tensor.shape)}")
    name = c.name if isinstance(c, Const) and not batched else None
    return e.tensor(Const(tensor, name=name), "const")


def _scaled(e: Emitter, value: Any, alpha: float, what: str) -> Any:
    """``alpha * value``: folded for a constant, a ``mul`` node for a computed value."""
    if alpha == 1.0:
        return value
    if isinstance(value, Var):
        return e.add("mul", [value], value.shape, {"other": _other(e, value, alpha, what)})
    return Const(as_tensor(value) * alpha, batched=isinstance(value, Const) and value.batched)


def _arith(kind: str) -> Callable[..., Var]:
    """add, sub, mul, div and rsub of computed values and constants, as torch: ``a OP alpha * b``."""

    def emit(e: Emitter, call: Call, a: Any, b: Any, alpha: Any = 1, rounding_mode: Any = None) -> Var:
        if rounding_mode is not None:
            raise UnsupportedError(f"div with rounding_mode={rounding_mode!r}")
        op = kind
        if kind == "rsub":  # rsub(a, b) = b - alpha * a
            a, b, op = b, a, "sub"
        b = _scaled(e, b, float(alpha), call.op)
        if isinstance(a, Var) and isinstance(b, Var):
            if a.rank != b.rank:
                raise UnsupportedError(f"{op} of computed values of ranks {a.rank} and {b.rank}")
            return e.add(op, [a, b], call.out)
        if isinstance(a, Var):
            return e.add(op, [a], call.out, {"other": _other(e, a, b, call.op)})
        x = computed(b, call.op)  # a constant OP a computed value
        if op in ("add", "mul"):
            return e.add(op, [x], call.out, {"other": _other(e, x, a, call.op)})
        if op == "sub":  # c - x = (-x) + c, exactly
            negated = e.add("mul", [x], x.shape, {"other": _other(e, x, -1.0, call.op)})
            return e.add("add", [negated], call.out, {"other": _other(e, x, a, call.op)})
        raise UnsupportedError("division of a constant by a computed value has no graph op")

    return emit


def _neg(e: Emitter, call: Call, x: Any) -> Var:
    x = computed(x, call.op)
    return e.add("mul", [x], x.shape, {"other": _other(e, x, -1.0, call.op)})


def _clamp(e: Emitter, call: Call, x: Any, min: Any = None, max: Any = None) -> Var:  # noqa: A002
    x = computed(x, call.op)
    if isinstance(min, Const) or isinstance(max, Const):
        raise UnsupportedError("clamp with tensor bounds; supported: number bounds")
    if min is not None and float(min) == 0.0 and max is None:
        return e.add("relu", [x], x.shape)
    low = -_FLT_MAX if min is None else float(min)
    high = _FLT_MAX if max is None else float(max)
    return e.add("clip", [x], x.shape, attrs={"min": low, "max": high})


TENSORS: dict[str, Callable[..., Any]] = {
    "view": _reshape,
    "reshape": _reshape,
    "_unsafe_view": _reshape,
    "flatten": _reshape,
    "unsqueeze": _reshape,
    "squeeze": _reshape,
    "_to_copy": _to_copy,
    "to": _to_copy,
    "cat": _cat,
    "concat": _cat,
    "slice": _slice,
    "select": _select,
    "split": _split,
    "split_with_sizes": _split,
    "chunk": _chunk,
    "mean": _mean,
    "expand": _expand,
    "expand_as": _expand_as,
    "add": _arith("add"),
    "sub": _arith("sub"),
    "rsub": _arith("rsub"),
    "mul": _arith("mul"),
    "div": _arith("div"),
    "neg": _neg,
    "clamp": _clamp,
    "clip": _clamp,
}
"""ATen op name -> its translation (tensor ops)."""
