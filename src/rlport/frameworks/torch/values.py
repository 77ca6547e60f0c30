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

__all__ = ["BATCH", "Const", "Emitter", "Var", "MAX_EMULATED"]

MAX_EMULATED = 1024
"""The widest value whose element-wise arithmetic, slices or residual sums are emulated with ``linear``
(an exact ``n x n`` selection or diagonal matrix): wider ones are refused."""


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
        made: names of the tensors rlport made to emulate an op (selection and diagonal matrices):
            not weights of the module, so that training keeps them fixed.
    """

    b: GraphBuilder
    prefix: str = ""
    made: list[str] = field(default_factory=list)
    _count: int = 0

    def tensor(self, value: Const | torch.Tensor, role: str, name: str | None = None) -> str:
        """Register a tensor; a named parameter keeps its name, anything else gets ``prefix + role_k``."""
        if isinstance(value, Const):
            name = name or value.name
            value = value.tensor
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

    def linear(self, x: Var, weight: torch.Tensor, bias: torch.Tensor | None, names=(None, None), made=False) -> Var:
        """``x @ weight.T + bias`` over the last axis; ``made``: rlport's own matrices (kept fixed in training)."""
        w_name, b_name = names
        params = {"weight": self._param(weight, "emulated" if made else "weight", w_name, made)}
        if bias is not None:
            params["bias"] = self._param(bias, "emulated" if made else "bias", b_name, made)
        return self.add("linear", [x], (*x.shape[:-1], int(weight.shape[0])), params)

    def _param(self, value: torch.Tensor, role: str, name: str | None, made: bool) -> str:
        registered = self.tensor(value, role, name)
        if made and registered not in self.made:
            self.made.append(registered)
        return registered

    def select(self, x: Var, indices: list[int], what: str) -> Var:
        """Columns ``indices`` of a rank-2 value, as an exact 0/1 selection matrix."""
        width = self.emulable(x, what)
        matrix = torch.zeros((len(indices), width), dtype=torch.float32)
        matrix[torch.arange(len(indices)), torch.tensor(indices, dtype=torch.int64)] = 1.0
        return self.linear(x, matrix, None, made=True)

    def emulable(self, x: Var, what: str) -> int:
        """The width of ``x`` when ``what`` can be emulated on it (rank 2, at most :data:`MAX_EMULATED` wide)."""
        if x.rank != 2 or x.shape[0] > MAX_EMULATED:
            raise UnsupportedError(
                f"{what} on a value of shape (batch, {', '.join(map(str, x.shape))}) has no graph op yet; "
                f"it is supported on (batch, n) values with n <= {MAX_EMULATED}"
            )
        return x.shape[0]


def as_tensor(value: Any) -> torch.Tensor:
    """A Python number or numpy array as a float32 tensor (a Const's tensor as it is)."""
    if isinstance(value, Const):
        return value.tensor
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(np.asarray(value, dtype=np.float32))
