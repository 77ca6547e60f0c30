"""What a captured torch program's values become while it is translated to graph ops.

A value of the exported program is one of: a :class:`Var` (computed from the observation: a
graph value), a :class:`Const` (a parameter, a buffer, a literal or anything computed from them
alone, folded while translating), :data:`BATCH` (the dynamic batch size), a plain Python value,
or a tuple of these (an op with several outputs). :class:`Emitter` appends graph nodes and
registers tensors under the module's ``state_dict`` names. This module imports torch: import it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlport.errors import UnsupportedError
from rlport.graph.builder import GraphBuilder

__all__ = ["BATCH", "Call", "Const", "Emitter", "Var", "as_tensor", "axis_of", "computed", "constant"]


class _Batch:
    """The dynamic batch size (a ``SymInt`` of the exported program)."""

    def __repr__(self) -> str:
        return "BATCH"


BATCH = _Batch()


@dataclass(frozen=True)
class Var:
    """A graph value computed from the observation: its name and its shape without the batch axis."""

    name: str
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        """The rank with the batch axis."""
        return len(self.shape) + 1


@dataclass(frozen=True)
class Const:
    """A tensor known at capture time; ``batched``: it has a leading batch axis of 1 (broadcast over the batch).

    ``name`` is the module's ``state_dict`` name when the tensor is one of its parameters or buffers
    as they are; ``transposed_of`` names the 2-d parameter it is the transpose of (``W.t()``).
    """

    tensor: torch.Tensor
    name: str | None = None
    batched: bool = False
    transposed_of: str | None = None


@dataclass
class Emitter:
    """Appends graph nodes for one captured program; names tensors ``prefix + state_dict name``.

    Attributes:
        b: the graph builder.
        prefix: put before every tensor name (``"features_extractor."``), empty at the top level.
        made: names of the tensors rlport made from the module's literals and folded constants
            (``x * 0.5``): not weights of the module, so that training keeps them fixed.
        strip: taken off the front of a captured parameter's name first (a wrapper's attribute name).
    """

    b: GraphBuilder
    prefix: str = ""
    made: list[str] = field(default_factory=list)
    strip: str = ""
    _count: int = 0

    def tensor(self, value: Const | torch.Tensor, role: str, name: str | None = None) -> str:
        """Register a tensor; a named parameter keeps its name, anything else gets ``prefix + role_k`` (in ``made``)."""
        if isinstance(value, Const):
            name = name or value.name
            value = value.tensor
        if name is not None and self.strip and name.startswith(self.strip):
            name = name[len(self.strip) :]
        if name is None:
            self._count += 1
            name = f"{role}_{self._count}"
            full = self.prefix + name
            self.made.append(full)
        else:
            full = self.prefix + name
        array = value.detach().cpu()
        if array.dtype in (torch.float16, torch.bfloat16, torch.float64):
            array = array.to(torch.float32)
        return self.b.tensor(full, array.contiguous())

    def add(self, op: str, x: list[Var], shape: tuple[int, ...], params=None, attrs=None) -> Var:
        """Append one node; the result is a :class:`Var` of non-batch shape ``shape``."""
        return Var(self.b.add(op, [v.name for v in x], params, attrs), tuple(int(s) for s in shape))

    def linear(self, x: Var, weight: torch.Tensor, bias: torch.Tensor | None, names=(None, None)) -> Var:
        """``x @ weight.T + bias`` over the last axis; ``names``: the parameters' names (None: made by rlport)."""
        params = {"weight": self.tensor(weight, "weight", names[0])}
        if bias is not None:
            params["bias"] = self.tensor(bias, "bias", names[1])
        return self.add("linear", [x], (*x.shape[:-1], int(weight.shape[0])), params)


@dataclass(frozen=True)
class Call:
    """One captured call: the ATen op's name and its output's shape(s) without the batch axis."""

    op: str
    out: Any


def axis_of(x: Var, dim: int) -> int:
    """``dim`` of the full tensor (batch axis 0) as a negative axis, or refused when it is the batch axis."""
    dim = int(dim)
    full = dim if dim < 0 else dim - x.rank
    if not -x.rank < full < 0:
        raise UnsupportedError(f"an op along dim {dim} (the batch axis) of a rank-{x.rank} value")
    return full


def computed(value: Any, what: str) -> Var:
    if not isinstance(value, Var):
        raise UnsupportedError(f"{what} expects its input computed from the observation, found a constant")
    return value


def constant(value: Any, what: str) -> Const:
    if not isinstance(value, Const):
        raise UnsupportedError(f"{what} expects a constant (a parameter or buffer) here, found a computed value")
    return value


def as_tensor(value: Any) -> torch.Tensor:
    """A Python number or numpy array as a float32 tensor (a Const's tensor as it is)."""
    if isinstance(value, Const):
        return value.tensor
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(np.asarray(value, dtype=np.float32))
