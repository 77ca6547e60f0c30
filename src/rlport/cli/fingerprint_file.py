"""The JSON file ``rlport fingerprint -o`` writes and ``rlport verify --fingerprint`` reads.

``{"meta": {...}, "tensors": {name: {"dtype": "float64", "shape": [rows, ...], "data": [flat values]}}}``:
``meta`` and the tensors are those of :func:`rlport.verify.fingerprint.record_fingerprint`. The reader
trusts nothing in the file: its size is bounded before it is parsed, every dtype is one of a small
table, and every shape matches its data before an array is made.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from rlport.bundle.container import read_regular_file
from rlport.errors import BundleError

__all__ = ["MAX_FINGERPRINT_DIMS", "MAX_FINGERPRINT_FILE_SIZE", "encode_fingerprint", "load_fingerprint_file"]

MAX_FINGERPRINT_FILE_SIZE = 64 * 1024**2
"""Largest fingerprint file ``rlport verify --fingerprint`` reads, in bytes (64 MiB)."""
MAX_FINGERPRINT_DIMS = 8
"""Most dimensions of a tensor in a fingerprint file (rows, then the observation's own axes)."""

_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_DTYPES += ("float16", "float32", "float64")
_NUMBER = (int, float, bool)
_REWRITE = "pass a file written by `rlport fingerprint`, or record it again"


def _shown(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_fingerprint(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> bytes:
    """The bytes of a fingerprint file for ``record_fingerprint``'s ``(meta, tensors)``."""
    encoded = {
        name: {"dtype": t.dtype.name, "shape": list(t.shape), "data": t.reshape(-1).tolist()}
        for name, t in tensors.items()
    }
    return json.dumps({"meta": meta, "tensors": encoded}).encode()


def load_fingerprint_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a fingerprint file back as ``(meta, tensors)`` for ``rlport.verify.checks.verify(fingerprint=...)``.

    Raises:
        BundleError: the file is not a regular file, is over :data:`MAX_FINGERPRINT_FILE_SIZE`, is
            not JSON, or a tensor has an unknown dtype, a bad shape or data that does not fit them.
    """
    what = f"fingerprint file {str(path)!r}"
    raw = read_regular_file(path, what, MAX_FINGERPRINT_FILE_SIZE)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a number of > 4300 digits, deep nesting
        raise BundleError(f"{what} is not JSON ({type(exc).__name__}: {str(exc)[:100]}); {_REWRITE}") from None
    meta, tensors = (data.get("meta"), data.get("tensors")) if isinstance(data, dict) else (None, None)
    if not isinstance(meta, dict) or not isinstance(tensors, dict):
        raise BundleError(f"{what}: expected a JSON object with a 'meta' and a 'tensors' object; {_REWRITE}")
    return meta, {name: _tensor(entry, f"{what}: tensor {_shown(name)}") for name, entry in tensors.items()}


def _tensor(entry: Any, where: str) -> np.ndarray:
    if not isinstance(entry, dict):
        raise BundleError(f"{where}: expected an object with 'dtype', 'shape' and 'data', found {_shown(entry)}")
    dtype, shape, values = entry.get("dtype"), entry.get("shape"), entry.get("data")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise BundleError(f"{where}: dtype {_shown(dtype)} is not one of {', '.join(_DTYPES)}; {_REWRITE}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_FINGERPRINT_DIMS
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise BundleError(
            f"{where}: shape {_shown(shape)} is not a list of at most {MAX_FINGERPRINT_DIMS} whole numbers >= 0"
        )
    if not isinstance(values, list) or not all(type(v) in _NUMBER for v in values):
        raise BundleError(f"{where}: 'data' must be a flat list of numbers; {_REWRITE}")
    if math.prod(shape) != len(values):
        count = math.prod(shape)
        raise BundleError(f"{where}: shape {_shown(shape)} holds {count:,} values, but 'data' has {len(values):,}")
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except (ValueError, OverflowError, TypeError) as exc:  # 300 as uint8, NaN as int64...
        raise BundleError(f"{where}: its data does not fit dtype {dtype} ({str(exc)[:100]}); {_REWRITE}") from None
