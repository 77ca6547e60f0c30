"""Checks of a bundle made before anything runs: the graph's sizes, its parameters' values, and
that its action always lies in the action space (docs/FORMAT.md section 4.2).

The graph's values are inferred by ``rlport.graph.infer`` from the spaces and the tensors alone;
this module says what the spaces mean for it. Needs numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rlport.bundle.spaces import (
    BoxSpec,
    DiscreteSpec,
    MultiBinarySpec,
    MultiDiscreteSpec,
    SpaceSpec,
    leaves,
)
from rlport.errors import GraphError, short
from rlport.graph.graph import Graph
from rlport.graph.infer import Value, infer

__all__ = ["check_statically", "observation_values", "check_action", "check_parameters", "check_bound_tensors"]

_PER_ELEMENT_BOUNDS = 4096
"""Observation leaves up to this size keep per-element bounds in the inference; larger ones their extremes."""
_UNBOUNDED_PARAMS = {("clip_to_bounds", "low"), ("clip_to_bounds", "high")}
"""(op, role) parameters that may hold infinities (an unbounded action space); nothing may hold NaN."""


def check_statically(
    graph: Graph, tensors: Mapping[str, np.ndarray], observation: SpaceSpec, action: SpaceSpec
) -> dict[str, Value]:
    """Raise :class:`GraphError` unless the graph fits its limits, its parameters are finite and its
    action is always in ``action`` (``graph.validate`` must have passed); return the inferred values."""
    check_parameters(graph, tensors)
    values = infer(graph, tensors, observation_values(observation))
    check_action(values[graph.output], action)
    check_bound_tensors(graph, tensors, action)
    return values


def check_bound_tensors(graph: Graph, tensors: Mapping[str, np.ndarray], action: SpaceSpec) -> None:
    """A final clip or un-squash must use the action space's own bounds, as SB3's ``predict`` does."""
    producers = {name: node for node in graph.nodes() for name in node.outputs}
    node = producers.get(graph.output)
    while node is not None and node.op == "identity":
        node = producers.get(node.inputs[0])
    if node is None or node.op not in ("clip_to_bounds", "rescale_to_bounds") or not isinstance(action, BoxSpec):
        return
    for role, bound in (("low", action.low), ("high", action.high)):
        tensor = np.asarray(tensors[node.params[role]], np.float64)
        if not np.array_equal(np.broadcast_to(tensor, bound.shape), bound.astype(np.float64)):
            raise GraphError(
                f"the {node.op} bound {role!r} (tensor {short(node.params[role])}) differs from the action space's "
                f"{role}; a bundle must act within and up to the bounds it declares. Re-export it"
            )


def check_parameters(graph: Graph, tensors: Mapping[str, np.ndarray]) -> None:
    """Every tensor the graph uses must be finite (bounds for clipping may be infinite, never NaN)."""
    for node in graph.nodes():
        for role, name in node.params.items():
            array = tensors[name]
            if array.dtype.kind not in "fc":
                continue
            bad = np.isnan(array) if (node.op, role) in _UNBOUNDED_PARAMS else ~np.isfinite(array)
            if bad.any():
                raise GraphError(
                    f"tensor {short(name)} ({node.op} {role}) holds {int(bad.sum())} NaN or infinite value(s); "
                    "a policy with non-finite weights or statistics acts wrongly. Re-export it from a healthy model"
                )


def observation_values(space: SpaceSpec) -> dict[tuple[str, ...], Value]:
    """The inference's view of each observation leaf: shape with a batch axis, dtype, bounds."""
    values = {}
    for key, leaf in leaves(space):
        if isinstance(leaf, BoxSpec):
            low, high = leaf.low.astype(np.float64), leaf.high.astype(np.float64)
            if low.size > _PER_ELEMENT_BOUNDS:
                low, high = low.min(initial=np.inf), high.max(initial=-np.inf)
            value = Value.of((None, *leaf.shape), leaf.dtype, low, high, np.dtype(leaf.dtype).kind in "biu")
        elif isinstance(leaf, DiscreteSpec):
            value = Value.of((None,), np.int64, leaf.start, leaf.start + leaf.n - 1, True)
        elif isinstance(leaf, MultiDiscreteSpec):
            start = np.asarray(leaf.start, np.float64).reshape(leaf.shape)
            top = start + np.asarray(leaf.nvec, np.float64).reshape(leaf.shape) - 1
            value = Value.of((None, *leaf.shape), leaf.dtype, start, top, True)
        else:
            value = Value.of((None, *leaf.shape), np.int8, 0, 1, True)
        values[key] = value
    return values


def _space_bounds(space: SpaceSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """Element bounds of an action space and the dtype kind its actions must have ("i": integer)."""
    if isinstance(space, DiscreteSpec):
        return np.float64(space.start), np.float64(space.start + space.n - 1), "i"
    if isinstance(space, MultiDiscreteSpec):
        start = np.asarray(space.start, np.float64).reshape(space.shape)
        return start, start + np.asarray(space.nvec, np.float64).reshape(space.shape) - 1, "i"
    if isinstance(space, MultiBinarySpec):
        return np.float64(0), np.float64(1), "b"
    if isinstance(space, BoxSpec):
        kind = "f" if np.dtype(space.dtype).kind == "f" else "i"
        return space.low.astype(np.float64), space.high.astype(np.float64), kind
    raise GraphError(f"{type(space).__name__} action spaces are not supported (SB3 does not support them either)")


def check_action(value: Value, space: SpaceSpec) -> None:
    """The graph's output must have the action space's shape and kind and stay within its bounds.

    Float bounds are compared with a tolerance of a few float32 steps, as the un-squashing of a
    tanh action computes the bound itself.
    """
    shape = getattr(space, "shape", None)
    low, high, kind = _space_bounds(space)
    if value.row != tuple(shape):
        raise GraphError(f"the graph's action has shape {value.row} per row, but the action space needs {tuple(shape)}")
    dtype_kind = value.dtype.kind
    if (kind == "f" and dtype_kind != "f") or (kind == "i" and dtype_kind not in "iu") or dtype_kind not in "biuf":
        wanted = {"f": "a float", "i": "an integer", "b": "a 0/1"}[kind]
        raise GraphError(f"the graph's action is {value.dtype.name}, but the action space needs {wanted} dtype")
    if kind in "ib" and not value.integral:
        raise GraphError("the graph's action can take fractional values, but the action space is discrete")
    slack = 0.0 if kind in "ib" else 4 * float(np.finfo(np.float32).eps)
    with np.errstate(invalid="ignore"):
        below = value.low < low - slack * np.maximum(1.0, np.abs(low))
        above = value.high > high + slack * np.maximum(1.0, np.abs(high))
    if np.any(below) or np.any(above):
        found = f"[{_extreme(value.low, min)}, {_extreme(value.high, max)}]"
        wanted = f"[{_extreme(low, min)}, {_extreme(high, max)}]"
        raise GraphError(
            f"the graph's action can reach {found}, outside the action space's bounds {wanted}; "
            "its bounds (a clip, an argmax width, a greedy n, a discrete start) disagree with the space"
        )


def _extreme(array: np.ndarray, pick) -> str:
    return f"{pick(np.asarray(array, np.float64).reshape(-1).tolist()):g}"
