"""What every C emitter shares: its signature, the C function's return codes, and small helpers.

An emitter is ``emit(p, ins, outs, params, attrs)``: the input and output values as
:class:`~rlport.backends.c.program.Ref` (pointers to one row, static shapes), the node's parameter
tensors and its attributes (with ``_shape``, ``_scales`` and ``_int8`` added by the generator: the
first input's full shape, the int8 scale each input is read with, the stored int8 weight). Needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rlport.backends.c.program import CTYPES, FLOAT_CTYPES, Program, Ref, ctype_of, literal
from rlport.errors import UnsupportedError
from rlport.graph.reference import PREPARE

__all__ = [
    "Emitter",
    "MASK_ERROR",
    "OBSERVATION_ERROR",
    "SAMPLING_ERROR",
    "axis_split",
    "clip_expr",
    "compute_type",
    "ctype_dtype",
    "float_type",
    "loop",
    "prepare_params",
    "row_const",
]

OBSERVATION_ERROR = 1
"""What the C function returns for a discrete observation outside its space."""
MASK_ERROR = 2
"""What the C function returns for an action mask that allows no action in some row."""
SAMPLING_ERROR = 3
"""What the C function returns when asked to sample but compiled with ``RLPORT_DETERMINISTIC_ONLY``."""

Emitter = Callable[[Program, list, list, dict, dict], None]


def float_type(ctype: str, op: str) -> str:
    """``ctype`` if it is float or double, else :class:`UnsupportedError` naming the op."""
    if ctype not in FLOAT_CTYPES:
        raise UnsupportedError(f"the C export computes op {op!r} in float or double, not {ctype}")
    return ctype


def loop(p: Program, n: int, body: str) -> None:
    """``body`` for every element ``i`` of a row of ``n``."""
    p.line(f"for (long i = 0; i < {n}; ++i) {body}")


def prepare_params(op: str, params: dict, attrs: dict) -> dict:
    """The op's parameters as graph/reference.py's ``PREPARE`` hook makes them (the numpy backend's own constants)."""
    return PREPARE[op](params, attrs) if op in PREPARE else {**params, **attrs}


def row_const(p: Program, array: Any, shape: tuple[int, ...], ctype: str) -> str:
    """A parameter broadcast to one row of ``shape``: a literal when it is one number, else a const array index."""
    array = np.asarray(array)
    if array.size == 1:
        return literal(array.reshape(-1)[0].item(), ctype)
    row = np.broadcast_to(array.reshape(array.shape[-len(shape) :] if array.ndim > len(shape) else array.shape), shape)
    return f"{p.const(row, ctype)}[i]"


def compute_type(*dtypes: Any) -> str:
    """The C type numpy computes in for operands of these dtypes (Python numbers are weak: left out)."""
    return ctype_of(np.result_type(*dtypes))


def clip_expr(v: str, low: str, high: str) -> str:
    """``min(max(v, low), high)`` keeping a NaN ``v``, as numpy's clip does."""
    return f"({v} < {low} ? {low} : ({v} > {high} ? {high} : {v}))"


def axis_split(ref: Ref, value_shape: tuple, axis: int) -> tuple[int, int, int]:
    """(outer, n, inner) of ``axis`` (of the value's full shape, batch axis included) in one row."""
    axis %= len(value_shape)
    row_axis = axis - sum(1 for d in value_shape[:axis] if d is None)
    return math.prod(ref.shape[:row_axis]), ref.shape[row_axis], math.prod(ref.shape[row_axis + 1 :])


def ctype_dtype(ctype: str) -> np.dtype:
    """The numpy dtype of a C type of :data:`~rlport.backends.c.program.CTYPES`."""
    return np.dtype({c: d for d, c in CTYPES.items()}[ctype])
