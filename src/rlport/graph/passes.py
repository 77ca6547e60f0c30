"""Passes over a policy graph: analyses that every backend shares (they take nodes, never a Bundle).

And the decoding of stored tensors (format 1.1 ``encodings``): :func:`decode_tensors` is the one place
that turns stored tensors (float16, int8 with per-channel scales) into what the ops take;
:func:`int8_tensors` hands the raw int8 tensors and scales to a backend that computes in int8, and
:func:`fake_quantise` is what every backend does to a value named in ``encodings.values``.

Example:
    >>> from rlport.graph.graph import Graph, GraphInput, Node
    >>> g = Graph(
    ...     inputs=(GraphInput("obs", "observation"),),
    ...     policy=(Node("identity", ("obs",), ("y",)), Node("tanh", ("obs",), ("unused",))),
    ...     output="y",
    ... )
    >>> [(step.node.op, step.passthrough) for step in live_nodes(g, deterministic=True)]
    [('identity', 0)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.errors import BundleError, short
from rlport.graph.graph import Graph, Node
from rlport.graph.infer import Value
from rlport.graph.schema import op_schema

__all__ = [
    "LiveNode",
    "graph_results",
    "live_nodes",
    "passthrough_of",
    "noop_nodes",
    "Encodings",
    "TensorEncoding",
    "ValueEncoding",
    "Int8Tensor",
    "check_encodings",
    "decode_tensors",
    "dequantise",
    "fake_quantise",
    "int8_tensors",
    "widen",
]

_NOOP_WHEN: dict[str, Callable[[Value, Mapping[str, Any]], bool]] = {
    "cast": lambda x, attrs: x.dtype == np.dtype(attrs["dtype"]),
    "flatten": lambda x, attrs: len(x.shape) == 2,
}
"""Ops that return their input unchanged when its inferred value says so (a cast to its own dtype,
a flatten of rows that are already flat)."""


@dataclass(frozen=True)
class LiveNode:
    """A node that contributes to the wanted values.

    Attributes:
        index: the node's position in ``graph.nodes()``.
        node: the node.
        passthrough: when not None, the node's one output is its input at this position,
            unchanged: a backend aliases the value instead of running the op.
    """

    index: int
    node: Node
    passthrough: int | None


def graph_results(graph: Graph) -> list[str]:
    """The values a run returns: the action, then each recurrent state's next value (in input order)."""
    return [graph.output, *(state.output for state in graph.inputs_with_role("state"))]


def passthrough_of(node: Node, deterministic: bool) -> int | None:
    """The input position ``node`` returns unchanged in this mode, from the op's schema (None: it computes).

    ``passthrough`` ops (``identity``) always pass their input through; ``mode_passthrough`` ops
    (a Gaussian's mean) only when acting deterministically.
    """
    schema = op_schema(node.op)
    if schema.passthrough is not None:
        return schema.passthrough
    return schema.mode_passthrough if deterministic else None


def noop_nodes(graph: Graph, values: Mapping[str, Value]) -> frozenset[int]:
    """Indices of the nodes that return their one input unchanged, given the inferred ``values``.

    Args:
        graph: a validated graph.
        values: every value's static shape and dtype (:func:`rlport.graph.infer.infer`).
    """
    found = set()
    for index, node in enumerate(graph.nodes()):
        rule = _NOOP_WHEN.get(node.op)
        if rule is not None and rule(values[node.inputs[0]], node.resolved_attrs()):
            found.add(index)
    return frozenset(found)


def live_nodes(
    graph: Graph, deterministic: bool, needed: Iterable[str] | None = None, noops: frozenset[int] = frozenset()
) -> list[LiveNode]:
    """The nodes that ``needed`` depends on (default: :func:`graph_results`), in execution order.

    A pass-through node needs only the input it passes through, so acting deterministically
    the inputs of a Gaussian other than its mean (the log-std branch) are not computed.

    Args:
        graph: a validated graph.
        deterministic: the mode the nodes will run in.
        needed: the value names wanted.
        noops: nodes to pass their first input through (:func:`noop_nodes`).
    """
    wanted = set(graph_results(graph) if needed is None else needed)
    live = []
    for index, node in reversed(list(enumerate(graph.nodes()))):
        if not wanted.intersection(node.outputs):
            continue
        passthrough = 0 if index in noops else passthrough_of(node, deterministic)
        wanted.update(node.inputs if passthrough is None else (node.inputs[passthrough],))
        live.append(LiveNode(index, node, passthrough))
    return live[::-1]


# ---- stored tensors and their encodings (docs/FORMAT.md section 5.1, format 1.1) ----------------

INT8_SYMMETRIC = "int8_symmetric"
"""The one encoding scheme of format 1.1: ``int8 * scale``, a float32 scale per slice along ``axis`` (zero point 0)."""
ENCODING_SCHEMES = (INT8_SYMMETRIC,)
QUANTISED_READERS = frozenset({"linear", "conv2d"})
"""Ops whose reads of a value named in ``encodings.values`` see the value fake-quantised."""
INT8_MIN, INT8_MAX = -128, 127
"""The range activations are quantised to (what ONNX ``QuantizeLinear`` saturates to)."""
_ENCODING_KEYS = {"tensors", "values"}


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise BundleError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TensorEncoding:
    """How one stored tensor becomes what the ops take: ``int8 * scale`` along ``axis``.

    Attributes:
        scheme: ``"int8_symmetric"``.
        scale: the name of the float32 tensor of scales, one per slice of the tensor along ``axis``.
        axis: the axis the scales run along (0, the output channel, for ``linear`` and ``conv2d`` weights).
    """

    scheme: str
    scale: str
    axis: int

    def __post_init__(self) -> None:
        _scheme(self.scheme, "a tensor encoding")
        _require(isinstance(self.scale, str) and self.scale != "", "a tensor encoding's 'scale' must name a tensor")
        _require(_is_int(self.axis) and self.axis >= 0, "a tensor encoding's 'axis' must be an integer >= 0")

    def to_json(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "scale": self.scale, "axis": self.axis}

    @classmethod
    def from_json(cls, name: str, data: Any) -> TensorEncoding:
        where = f"encoding of tensor {short(name)}"
        _require(
            isinstance(data, dict) and set(data) == {"scheme", "scale", "axis"},
            f"{where} must be {{scheme, scale, axis}}, found {short(data)}",
        )
        _scheme(data["scheme"], where)
        _require(isinstance(data["scale"], str) and data["scale"] != "", f"{where}: 'scale' must name a tensor")
        _require(_is_int(data["axis"]) and data["axis"] >= 0, f"{where}: 'axis' must be an integer >= 0")
        return cls(data["scheme"], data["scale"], data["axis"])


@dataclass(frozen=True)
class ValueEncoding:
    """A graph value fake-quantised where a ``linear`` or ``conv2d`` reads it: ``clip(round(v / scale)) * scale``."""

    scheme: str
    scale: float

    def __post_init__(self) -> None:
        _scheme(self.scheme, "a value encoding")
        _require(
            isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool) and _positive_f32(self.scale),
            f"a value encoding's scale must be a number > 0 that float32 holds, found {short(self.scale)}",
        )

    def to_json(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "scale": self.scale}

    @classmethod
    def from_json(cls, name: str, data: Any) -> ValueEncoding:
        where = f"encoding of value {short(name)}"
        _require(
            isinstance(data, dict) and set(data) == {"scheme", "scale"},
            f"{where} must be {{scheme, scale}}, found {short(data)}",
        )
        _scheme(data["scheme"], where)
        scale = data["scale"]
        _require(
            isinstance(scale, (int, float)) and not isinstance(scale, bool) and _positive_f32(scale),
            f"{where}: 'scale' must be a number > 0 that float32 holds (finite, not 0), found {short(scale)}",
        )
        return cls(data["scheme"], float(np.float32(scale)))


def _scheme(value: Any, where: str) -> None:
    _require(
        value in ENCODING_SCHEMES,
        f"{where}: unknown scheme {short(value)} (this rlport knows {', '.join(ENCODING_SCHEMES)}); "
        "a newer rlport may read it (pip install -U rlport)",
    )


def _positive_f32(value: float) -> bool:
    with np.errstate(over="ignore", under="ignore"):
        as_f32 = np.float32(value)
    return bool(np.isfinite(as_f32) and as_f32 > 0)


@dataclass(frozen=True)
class Encodings:
    """The manifest's ``encodings`` (format 1.1): stored tensors' encodings and fake-quantised values.

    Empty (the default) for a bundle of format 1.0. Example:
        >>> enc = Encodings({"w": TensorEncoding("int8_symmetric", "w.scale", 0)})
        >>> Encodings.from_json(enc.to_json()) == enc, bool(Encodings())
        (True, False)
    """

    tensors: Mapping[str, TensorEncoding] = field(default_factory=dict)
    values: Mapping[str, ValueEncoding] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tensors or self.values)

    def to_json(self) -> dict[str, Any]:
        return {
            "tensors": {name: enc.to_json() for name, enc in sorted(self.tensors.items())},
            "values": {name: enc.to_json() for name, enc in sorted(self.values.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> Encodings:
        _require(
            isinstance(data, dict) and set(data) <= _ENCODING_KEYS,
            f"'encodings' must be an object with 'tensors' and/or 'values', found {short(data)}",
        )
        tensors, values = data.get("tensors", {}), data.get("values", {})
        _require(isinstance(tensors, dict) and isinstance(values, dict), "'encodings' members must be objects")
        return cls(
            {name: TensorEncoding.from_json(name, entry) for name, entry in tensors.items()},
            {name: ValueEncoding.from_json(name, entry) for name, entry in values.items()},
        )


def check_encodings(graph: Graph, stored: Mapping[str, np.ndarray], encodings: Encodings) -> None:
    """Refuse encodings that do not fit the stored tensors or the graph (before anything is decoded).

    Args:
        graph: the bundle's graph.
        stored: the tensors as stored in ``weights.safetensors``.
        encodings: the manifest's encodings.

    Raises:
        BundleError: a tensor or scale missing, of another dtype or shape, a scale that is not finite
            and > 0, a scale that is itself encoded, or a value no ``linear``/``conv2d`` reads.
    """
    scales = {enc.scale for enc in encodings.tensors.values()}
    for name, enc in encodings.tensors.items():
        where = f"encoded tensor {short(name)}"
        _require(name in stored, f"{where} is not in weights.safetensors; the bundle is corrupt")
        _require(name not in scales, f"{where} is also a scale tensor; the bundle is corrupt")
        array, scale = stored[name], stored.get(enc.scale)
        _require(array.dtype == np.int8, f"{where} must be stored as I8 for {enc.scheme}, found {array.dtype}")
        _require(enc.axis < array.ndim, f"{where} has {array.ndim} axes; its axis {enc.axis} does not exist")
        _require(scale is not None, f"{where}: its scale tensor {short(enc.scale)} is missing; the bundle is corrupt")
        _require(enc.scale not in encodings.tensors, f"{where}: its scale {short(enc.scale)} is itself encoded")
        _require(scale.dtype == np.float32, f"{where}: scale {short(enc.scale)} must be F32, found {scale.dtype}")
        wanted = (array.shape[enc.axis],)
        _require(
            scale.shape == wanted,
            f"{where}: scale {short(enc.scale)} has shape {scale.shape}, expected {wanted} (one per slice of axis "
            f"{enc.axis})",
        )
        _require(
            bool(np.all(np.isfinite(scale)) and np.all(scale > 0)),
            f"{where}: scale {short(enc.scale)} holds values that are not finite and > 0; the bundle is corrupt",
        )
    read = {name for node in graph.nodes() if node.op in QUANTISED_READERS for name in node.inputs}
    for name in encodings.values:
        _require(
            name in read,
            f"encoded value {short(name)} is not an input of any {' or '.join(sorted(QUANTISED_READERS))} node; "
            "only those read values fake-quantised",
        )


def widen(array: np.ndarray) -> np.ndarray:
    """A tensor stored without an encoding as the ops take it: float16 widened to float32, the rest as stored."""
    return array.astype(np.float32) if array.dtype == np.float16 else array


def dequantise(stored: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """``int8 * scale`` along ``axis``, in float32 (the decoding of ``int8_symmetric``)."""
    shape = [1] * stored.ndim
    shape[axis] = -1
    return stored.astype(np.float32) * scale.astype(np.float32).reshape(shape)


def decode_tensors(
    stored: Mapping[str, np.ndarray], encodings: Encodings | None = None, widen_float16: bool = True
) -> dict[str, np.ndarray]:
    """Stored tensors as the ops take them: the one place that turns stored tensors into float.

    Encoded tensors are dequantised (:func:`dequantise`); the rest go through :func:`widen` (unless
    ``widen_float16`` is false: ``Bundle.load`` keeps float16 tensors as stored, and each backend widens
    them with :func:`widen`). Scale tensors stay (no node names them). Call :func:`check_encodings` first.

    Example:
        >>> enc = Encodings({"w": TensorEncoding("int8_symmetric", "s", 0)})
        >>> w = np.array([[127, -64]], np.int8)
        >>> decode_tensors({"w": w, "s": np.array([0.5], np.float32)}, enc)["w"].tolist()
        [[63.5, -32.0]]
    """
    tensors = {name: widen(array) if widen_float16 else array for name, array in stored.items()}
    for name, enc in (encodings.tensors if encodings else {}).items():
        tensors[name] = dequantise(stored[name], stored[enc.scale], enc.axis)
    return tensors


@dataclass(frozen=True)
class Int8Tensor:
    """A tensor as stored for integer arithmetic: ``values`` (int8) times ``scale`` (float32) along ``axis``."""

    values: np.ndarray
    scale: np.ndarray
    axis: int


def int8_tensors(stored: Mapping[str, np.ndarray], encodings: Encodings) -> dict[str, Int8Tensor]:
    """The raw int8 tensors and their scales, for a backend that computes in int8 (not turned into floats).

    A ``linear``'s weight ``(out, in)`` has one scale per output row: ``y[o] = scale[o] * sum_i q[o, i] x[i]
    + bias[o]``; a ``conv2d``'s weight ``(out, in/groups, kh, kw)`` one per output channel.
    """
    return {
        name: Int8Tensor(stored[name], stored[enc.scale], enc.axis)
        for name, enc in encodings.tensors.items()
        if enc.scheme == INT8_SYMMETRIC
    }


def fake_quantise(x: np.ndarray, scale: float) -> np.ndarray:
    """``clip(round_half_even(x / scale), -128, 127) * scale`` in float32: what ONNX QuantizeLinear then
    DequantizeLinear compute with a zero point of 0.

    Example:
        >>> y = fake_quantise(np.array([0.26, -1.0, 9.0], np.float32), 0.05)
        >>> bool(np.array_equal(y, np.float32([5, -20, 127]) * np.float32(0.05)))
        True
    """
    s = np.float32(scale)
    with np.errstate(over="ignore"):  # beyond float32 / s: saturates, as QuantizeLinear does
        q = np.clip(np.round(np.asarray(x, np.float32) / s), INT8_MIN, INT8_MAX)
    return (q * s).astype(np.float32)
