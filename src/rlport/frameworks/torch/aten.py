"""ATen ops (as ``torch.export`` captures them) -> policy graph ops: the table.

One small function per ATen op family, registered by the op's name (``"linear"`` for
``aten.linear.default``), in :mod:`~rlport.frameworks.torch.aten_layers` and
:mod:`~rlport.frameworks.torch.aten_tensors`. A function gets the
:class:`~rlport.frameworks.torch.values.Emitter`, the :class:`~rlport.frameworks.torch.values.Call`
(its output shape without the batch axis, for shape ops) and the op's arguments with every captured
value resolved (:class:`Var`, :class:`Const`, :data:`BATCH` or a plain value). Ops whose inputs are
all constants never get here: they are folded (computed once at capture).
This module imports torch: import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlport.frameworks.torch.aten_layers import LAYERS
from rlport.frameworks.torch.aten_tensors import TENSORS
from rlport.frameworks.torch.values import Call

__all__ = ["HANDLERS", "IDENTITY_OPS", "IGNORED_OPS", "Call", "supported_ops"]

HANDLERS: dict[str, Callable[..., Any]] = {**LAYERS, **TENSORS}
"""ATen op name (``aten.NAME.overload``'s ``NAME``) -> its translation."""

IDENTITY_OPS = frozenset({"clone", "contiguous", "detach", "alias", "lift_fresh_copy", "dropout_", "type_as"})
"""Ops that give their input back unchanged in eval mode."""

IGNORED_OPS = frozenset({"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size",
                         "sym_constrain_range", "_assert_async"})  # fmt: skip
"""Checks torch.export records: nothing to compute."""


def supported_ops() -> list[str]:
    """The ATen op names translated, for messages."""
    return sorted(set(HANDLERS) | IDENTITY_OPS)
