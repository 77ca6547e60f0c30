"""A small helper that importers use to assemble a :class:`~rlport.graph.graph.Graph`."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.errors import UnsupportedError
from rlport.graph.graph import Graph, GraphInput, Node

__all__ = ["GraphBuilder"]


def to_numpy(value: Any) -> np.ndarray:
    """A C-contiguous numpy copy, of the same shape, of a torch tensor (any device) or array-like.

    bfloat16 tensors become float32 (numpy has no bfloat16). Scalars keep their shape ``()``.
    """
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.array(value, order="C")  # a copy: training the model on must not change the bundle


class GraphBuilder:
    """Collects inputs, nodes (per stage) and tensors, and hands out fresh value names.

    Example:
        >>> b = GraphBuilder()
        >>> x = b.input("obs", "observation")
        >>> y = b.add("relu", [x])
        >>> graph = b.build(y)
    """

    def __init__(self) -> None:
        self.inputs: list[GraphInput] = []
        self.stages: dict[str, list[Node]] = {"preprocess": [], "policy": [], "postprocess": []}
        self.tensors: dict[str, np.ndarray] = {}
        self.stage = "policy"
        self._count = 0

    def input(self, name: str, role: str, **fields: Any) -> str:
        self.inputs.append(GraphInput(name, role, **fields))
        return name

    def tensor(self, name: str, value: Any) -> str:
        """Register a tensor under ``name`` (the source's own name where it has one)."""
        array = to_numpy(value)
        if name in self.tensors and not np.array_equal(self.tensors[name], array):
            raise UnsupportedError(f"two different tensors want the name {name!r}")
        self.tensors[name] = array
        return name

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def add(
        self,
        op: str,
        inputs: list[str],
        params: dict[str, str] | None = None,
        attrs: dict[str, Any] | None = None,
        outputs: int = 1,
        name: str | None = None,
        names: list[str] | None = None,
    ) -> Any:
        """Append a node to the current stage; return its output name (or names).

        ``name`` (one output) or ``names`` fix the output names; otherwise fresh ones are made.
        """
        if names is None:
            names = [name] if name and outputs == 1 else [self.fresh(op) for _ in range(outputs)]
        self.stages[self.stage].append(Node(op, tuple(inputs), tuple(names), params or {}, attrs or {}))
        return names[0] if outputs == 1 else names

    def build(self, output: str) -> Graph:
        return Graph(
            tuple(self.inputs),
            output,
            preprocess=tuple(self.stages["preprocess"]),
            policy=tuple(self.stages["policy"]),
            postprocess=tuple(self.stages["postprocess"]),
        )
