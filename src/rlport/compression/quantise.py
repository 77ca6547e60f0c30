"""A bundle's network weights made smaller: float16 (format 1.0), or int8 with per-channel scales (format 1.1).

int8 is symmetric, one float32 scale per output channel of each ``linear`` and ``conv2d`` weight
(``scale = max|w| / 127`` over the channel's row); biases, norms, normalisation statistics and
bounds stay as they are. float16 narrows the float32 tensors of the graph's ``policy`` stage (the
network) except its output layers (:func:`head_tensors`, which stay float32: their rounding goes
straight into the action distribution's parameters, where near-ties decide discrete actions), and
leaves pre- and post-processing (normalisation statistics, bounds) alone.

Example:
    >>> small = quantise_weights(rlport.Bundle.load("cartpole.rlp"), "int8")   # doctest: +SKIP
    >>> sorted(small.encodings.tensors)[:1]                                      # doctest: +SKIP
    ['mlp_extractor.policy_net.0.weight']
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.errors import UnsupportedError
from rlport.graph.passes import (
    INT8_SYMMETRIC,
    QUANTISED_READERS,
    Encodings,
    TensorEncoding,
    ValueEncoding,
    dequantise,
    passthrough_of,
)

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["WEIGHT_SCHEMES", "head_tensors", "quantise_weights", "quantise_int8", "with_value_scales", "weight_bytes"]

WEIGHT_SCHEMES = ("fp16", "int8")
"""What ``rlport compress --weights`` takes."""
INT8_LEVELS = 127
"""int8 weights use -127..127 (symmetric: -128 is never written)."""
_F16_MAX = float(np.finfo(np.float16).max)
_LAYERS = frozenset({"linear", "conv2d", "lstm"})
"""Ops that are a network's layers (where the walk of :func:`head_tensors` stops)."""


def quantise_weights(bundle: Bundle, weights: str) -> Bundle:
    """A copy of ``bundle`` with its network weights in ``weights`` (``"fp16"`` or ``"int8"``).

    Raises:
        UnsupportedError: an unknown scheme, a bundle that is already quantised (int8), a float16
            tensor beyond float16's range, or no weight to quantise.
    """
    if weights not in WEIGHT_SCHEMES:
        raise UnsupportedError(f"unknown weight format {weights!r}; use one of {', '.join(WEIGHT_SCHEMES)}")
    if bundle.encodings.tensors:
        raise UnsupportedError("the bundle's weights are int8 already; compress the float bundle it was made from")
    return _fp16(bundle) if weights == "fp16" else _int8(bundle)


def head_tensors(graph: Any) -> set[str]:
    """The parameters of the output layers: the last ``linear``/``conv2d``/``lstm`` nodes on each path to the
    deterministic action, and of every node between them and the action (bounds). A node that passes an input
    through when acting deterministically (a Gaussian or gSDE's mean) is followed through that input only.

    Example:
        >>> from rlport.graph.graph import Graph, GraphInput, Node
        >>> hidden = Node("linear", ("obs",), ("h",), params={"weight": "w0"})
        >>> head = Node("linear", ("h",), ("q",), params={"weight": "w1", "bias": "b1"})
        >>> graph = Graph((GraphInput("obs", "observation"),), policy=(hidden, head), output="q")
        >>> sorted(head_tensors(graph))
        ['b1', 'w1']
    """
    wanted, found = {graph.output}, set()
    for node in reversed(list(graph.nodes())):
        if not wanted.intersection(node.outputs):
            continue
        found.update(node.params.values())
        through = passthrough_of(node, deterministic=True)
        if through is not None:
            wanted.add(node.inputs[through])
        elif node.op not in _LAYERS:
            wanted.update(node.inputs)
    return found


def _fp16(bundle: Bundle) -> Bundle:
    network = sorted({name for node in bundle.graph.policy for name in node.params.values()})
    tensors = dict(bundle.tensors)
    head = head_tensors(bundle.graph)
    changed = [name for name in network if tensors[name].dtype == np.float32 and name not in head]
    if not changed:  # a network that is one layer: narrow it all the same
        changed = [name for name in network if tensors[name].dtype == np.float32]
    if not changed:
        raise UnsupportedError("the network has no float32 tensor to store as float16")
    for name in changed:
        peak = float(np.max(np.abs(tensors[name]), initial=0.0))
        if peak > _F16_MAX:
            raise UnsupportedError(
                f"tensor {name!r} holds {peak:.3g}, beyond float16's range (65504); use --weights int8 instead"
            )
        tensors[name] = tensors[name].astype(np.float16)
    return replace(bundle, tensors=tensors)


def _int8_weights(bundle: Bundle) -> list[str]:
    """Weights of ``linear``/``conv2d`` nodes that nothing else reads, in graph order."""
    other_uses = {
        name
        for node in bundle.graph.nodes()
        for role, name in node.params.items()
        if node.op not in QUANTISED_READERS or role != "weight"
    }
    found = []
    for node in bundle.graph.nodes():
        name = node.params.get("weight") if node.op in QUANTISED_READERS else None
        if name and name not in other_uses and name not in found and bundle.tensors[name].dtype.kind == "f":
            found.append(name)
    return found


def quantise_int8(weight: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 values, float32 scales)`` with ``values * scale`` close to ``weight``, one scale per slice of ``axis``.

    A slice of zeros gets the scale 1 (any scale > 0 decodes it exactly).

    Example:
        >>> q, s = quantise_int8(np.array([[0.5, -1.0], [0.0, 0.0]], np.float32))
        >>> q.tolist(), s.tolist()
        ([[64, -127], [0, 0]], [0.007874015718698502, 1.0])
    """
    moved = np.moveaxis(np.asarray(weight, np.float64), axis, 0)
    peak = np.abs(moved.reshape(len(moved), -1)).max(axis=1, initial=0.0)
    scale = np.where(peak > 0, peak / INT8_LEVELS, 1.0).astype(np.float32)
    scale = np.maximum(scale, np.finfo(np.float32).tiny)
    shape = [1] * moved.ndim
    shape[0] = -1
    q = np.clip(np.rint(moved / scale.astype(np.float64).reshape(shape)), -INT8_LEVELS, INT8_LEVELS)
    return np.moveaxis(q.astype(np.int8), 0, axis), scale


def _int8(bundle: Bundle) -> Bundle:
    names = _int8_weights(bundle)
    if not names:
        raise UnsupportedError("the graph has no linear or conv2d weight to store as int8; try --weights fp16")
    tensors, encoded, encodings = dict(bundle.tensors), {}, {}
    for name in names:
        q, scale = quantise_int8(bundle.tensors[name], axis=0)
        scale_name = f"{name}.scale"
        while scale_name in tensors:
            scale_name += "_"
        tensors[scale_name] = scale
        tensors[name] = dequantise(q, scale, 0)
        encoded[name] = q
        encodings[name] = TensorEncoding(INT8_SYMMETRIC, scale_name, 0)
    return replace(bundle, tensors=tensors, encoded=encoded, encodings=Encodings(encodings, bundle.encodings.values))


def with_value_scales(bundle: Bundle, scales: dict[str, float]) -> Bundle:
    """A copy of ``bundle`` whose ``linear``/``conv2d`` nodes read the values ``scales`` names fake-quantised."""
    values = {name: ValueEncoding(INT8_SYMMETRIC, float(np.float32(s))) for name, s in sorted(scales.items())}
    return replace(bundle, encodings=Encodings(bundle.encodings.tensors, values))


def weight_bytes(bundle: Bundle) -> int:
    """Bytes of the tensors the graph names, as stored (int8 ones with their scales)."""
    names = {name for node in bundle.graph.nodes() for name in node.params.values()}
    names |= {bundle.encodings.tensors[n].scale for n in names if n in bundle.encodings.tensors}
    stored = bundle.stored_tensors()
    return int(sum(stored[name].nbytes for name in names))
