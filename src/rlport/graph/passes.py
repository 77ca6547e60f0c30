"""Passes over a policy graph: analyses that every backend shares (they take nodes, never a Bundle).

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlport.graph.graph import Graph, Node
from rlport.graph.infer import Value
from rlport.graph.schema import op_schema

__all__ = ["LiveNode", "graph_results", "live_nodes", "passthrough_of", "noop_nodes"]

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
