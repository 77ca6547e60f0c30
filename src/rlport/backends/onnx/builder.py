"""The ONNX graph under construction: nodes, initializers, and the numpy dtype of every value.

The per-op emitters (:mod:`rlport.backends.onnx.ops`) write into a :class:`Builder`;
:func:`rlport.backends.onnx.export.onnx_model` turns its nodes and initializers into a model.
``onnx`` is imported when a builder is made, never when this module is imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.errors import UnsupportedError, require

__all__ = ["Builder", "require_onnx", "numpy_dtype", "ONNX_DTYPES", "F32", "I64"]

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)
ONNX_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
ONNX_DTYPES += ("float16", "float32", "float64")
"""The numpy dtypes a value of an exported graph may have (each has an ONNX tensor type)."""


def numpy_dtype(value: Any) -> np.dtype:
    """``value`` (a dtype, scalar type or name, as a ``cast`` node gives it) as a native dtype of :data:`ONNX_DTYPES`.

    Raises:
        UnsupportedError: anything else (complex, strings, objects, ``bfloat16``, a list...), named.
    """
    dtype = None
    if isinstance(value, (str, np.dtype, type)):  # a type: bool, np.float32... (JSON gives no types)
        try:
            dtype = np.dtype(value)
        except (TypeError, ValueError):
            dtype = None
    if dtype is None or dtype.name not in ONNX_DTYPES:
        shown = repr(value)
        shown = shown if len(shown) <= 100 else f"{shown[:100]}..."
        raise UnsupportedError(
            f"dtype {shown} cannot be written to ONNX; supported: {', '.join(ONNX_DTYPES)}. "
            "Use the numpy backend, or a graph that casts to one of these"
        )
    return dtype.newbyteorder("=")


def require_onnx():
    """The ``onnx`` module, or :class:`MissingDependencyError` naming the ``onnx`` extra."""
    return require("onnx", "onnx", "ONNX export")


class Builder:
    """Collects ONNX nodes and initializers and remembers the numpy dtype of every value."""

    def __init__(self, opset: int, types: dict[str, np.dtype]) -> None:
        onnx = require_onnx()
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.opset = opset
        self.types = dict(types)
        self.ranks: dict[str, int] = {}
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._taken = set(types)
        self._count = 0
        self._params: dict[tuple, str] = {}
        self.expected: np.dtype = F32  # the numpy dtype of the current node's first output

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}:{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def const(self, array: Any, dtype: Any = None, hint: str = "const") -> str:
        array = np.asarray(array, dtype=dtype)  # (ascontiguousarray would make scalars 1-d)
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        self.types[name] = array.dtype
        return name

    def param(self, tensor: str, array: np.ndarray, dtype: Any, shape: tuple[int, ...] | None = None) -> str:
        """A (cast, reshaped) weight as an initializer, shared by the nodes that use it."""
        key = (tensor, np.dtype(dtype).str, shape)
        if key not in self._params:
            value = array.astype(dtype)
            self._params[key] = self.const(value if shape is None else value.reshape(shape), hint=tensor)
        return self._params[key]

    def scalar(self, value: float, like: str) -> str:
        return self.const(value, self.types[like])

    def op(self, op_type: str, inputs: list[str], dtype: Any = None, n_out: int = 1, **attrs: Any) -> Any:
        """Append a node; its outputs have ``dtype`` (by default, the first input's)."""
        outputs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outputs, **attrs))
        out_type = np.dtype(dtype) if dtype is not None else self.types.get(inputs[0])
        for name in outputs:
            if out_type is not None:
                self.types[name] = out_type
        return outputs[0] if n_out == 1 else outputs

    def tensor_dtype(self, dtype: Any) -> int:
        """The ONNX tensor type of a numpy dtype (or name); :class:`UnsupportedError` for one ONNX lacks."""
        return self.helper.np_dtype_to_tensor_dtype(numpy_dtype(dtype))

    def cast(self, name: str, dtype: Any) -> str:
        """``name`` as ``dtype`` (one of :data:`ONNX_DTYPES`; anything else is an :class:`UnsupportedError`)."""
        dtype = numpy_dtype(dtype)
        if self.types.get(name) == dtype:
            return name
        return self.op("Cast", [name], dtype, to=self.helper.np_dtype_to_tensor_dtype(dtype))

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int) -> str:
        if self.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, [x, self.const(axes, I64)], keepdims=keepdims)
        return self.op(op_type, [x], axes=axes, keepdims=keepdims)
