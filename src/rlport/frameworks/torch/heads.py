"""The heads of ``from_torch``: what a module's outputs mean, as graph ops and as the source's own action.

A head turns the captured module's outputs into the action: its graph ops (the action op of
the policy stage and the post-processing to the action space) and, for the check against the
module, the deterministic action computed from the module's outputs in torch. This module
imports torch: import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlport.errors import UnsupportedError
from rlport.frameworks.torch.values import Const, Emitter, Var

__all__ = ["HEADS", "emit_head", "head_action", "check_head"]

HEADS: dict[str, str] = {
    "categorical": "logits, one output (Discrete; MultiDiscrete: the sub-spaces' logits concatenated)",
    "argmax": "Q-values, one output (Discrete): the action is the argmax",
    "gaussian": "(mean, log_std), two outputs (Box): the deterministic action is the mean clipped to the bounds",
    "squashed_gaussian": "(mean, log_std), two outputs (Box): tanh of a Gaussian, rescaled to the bounds",
    "deterministic": "the action, one output (Box): clipped to the bounds",
    "tanh": "an action in [-1, 1], one output (Box): rescaled to the bounds",
}
"""Each head of ``from_torch`` -> what the module must return."""

_OUTPUTS = {"gaussian": 2, "squashed_gaussian": 2}
_DISCRETE = ("categorical", "argmax")


def _kind(space: Any) -> str:
    return type(space).__name__


def _sizes(space: Any) -> list[int]:
    if _kind(space) == "Discrete":
        return [int(space.n)]
    return [int(n) for n in np.asarray(space.nvec).ravel()]


def check_head(head: Any, action_space: Any) -> None:
    """Refuse an unknown head, or one that does not fit the action space."""
    if head not in HEADS:
        raise UnsupportedError(f"head {head!r} is not known; choose one of: "
                               + "; ".join(f"{k!r} ({v})" for k, v in HEADS.items()))  # fmt: skip
    kind = _kind(action_space)
    fits = {"categorical": ("Discrete", "MultiDiscrete"), "argmax": ("Discrete",)}.get(head, ("Box",))
    if kind not in fits:
        raise UnsupportedError(f"head {head!r} acts in a {' or '.join(fits)} action space, not {kind}")
    if head in ("squashed_gaussian", "tanh"):
        bounds = np.concatenate([np.asarray(action_space.low).ravel(), np.asarray(action_space.high).ravel()])
        if not np.all(np.isfinite(bounds)):
            raise UnsupportedError(f"head {head!r} rescales to the action space's bounds, which must be finite")


def _width(space: Any) -> int:
    return sum(_sizes(space)) if _kind(space) != "Box" else int(np.prod(space.shape))


def _output(value: Any, width: int, what: str, head: str) -> Any:
    """A module output of ``width`` values per row: a computed value or (``log_std``) a constant."""
    if isinstance(value, Var):
        shape = value.shape
    elif isinstance(value, Const):
        shape = tuple(value.tensor.shape[1:] if value.batched else value.tensor.shape)
    else:
        shape = None
    if shape is None:
        raise UnsupportedError(f"head {head!r}: the module's {what} is {type(value).__name__}, not a tensor")
    if tuple(shape) != (width,):
        raise UnsupportedError(f"head {head!r}: the module's {what} has shape (batch, {', '.join(map(str, shape))}); "
                               f"the action space needs (batch, {width})")  # fmt: skip
    return value


def emit_head(e: Emitter, head: str, outputs: list[Any], action_space: Any) -> str:
    """Append the action op (policy stage) and the post-processing; return the graph's output name."""
    count = _OUTPUTS.get(head, 1)
    if len(outputs) != count:
        raise UnsupportedError(f"head {head!r} needs the module to return {count} tensor(s) ({HEADS[head]}), "
                               f"found {len(outputs)}")  # fmt: skip
    width = _width(action_space)
    first = _output(outputs[0], width, "first output" if count > 1 else "output", head)
    if not isinstance(first, Var):
        raise UnsupportedError(f"head {head!r}: the module's first output does not depend on the observation")
    b = e.b
    if head == "categorical":
        sizes = _sizes(action_space)
        attrs = {"sizes": sizes} if len(sizes) > 1 or _kind(action_space) != "Discrete" else None
        action = b.add("multi_categorical" if attrs else "categorical", [first.name], attrs=attrs)
    elif head == "argmax":
        action = b.add("greedy", [first.name], attrs={"epsilon": 0.0, "n": int(action_space.n)})
    elif head in ("gaussian", "squashed_gaussian"):
        log_std = _output(outputs[1], width, "second output (log_std)", head)
        if isinstance(log_std, Var):
            action = b.add("gaussian", [first.name, log_std.name])
        else:
            param = e.tensor(Const(log_std.tensor.reshape(width), name=log_std.name), "log_std")
            action = b.add("gaussian", [first.name], {"log_std": param})
        if head == "squashed_gaussian":
            action = b.add("tanh", [action])
    else:
        action = first.name
    return _postprocess(e, head, action, action_space)


def _postprocess(e: Emitter, head: str, action: str, space: Any) -> str:
    b = e.b
    b.stage = "postprocess"
    shape = tuple(getattr(space, "shape", ()) or ())
    if head in _DISCRETE:
        return b.add("identity", [action], name="action")
    if len(shape) > 1:
        action = b.add("reshape", [action], attrs={"shape": list(shape)})
    params = {
        "low": b.tensor("space.action.low", np.asarray(space.low)),
        "high": b.tensor("space.action.high", np.asarray(space.high)),
    }
    op = "rescale_to_bounds" if head in ("squashed_gaussian", "tanh") else "clip_to_bounds"
    return b.add(op, [action], params, name="action")


def _argmax_splits(logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.stack([part.argmax(dim=-1) for part in torch.split(logits, sizes, dim=-1)], dim=-1)


def head_action(head: str, outputs: Any, action_space: Any) -> np.ndarray:
    """The deterministic action of the module's outputs (a batch), as the head defines it, in torch."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else (outputs,)
    first = outputs[0].detach().float()
    if head in _DISCRETE:
        sizes = _sizes(action_space)
        if _kind(action_space) == "Discrete":
            return first.argmax(dim=-1).cpu().numpy()
        return _argmax_splits(first, sizes).cpu().numpy()
    low = torch.as_tensor(np.asarray(action_space.low))
    high = torch.as_tensor(np.asarray(action_space.high))
    a = first.reshape((first.shape[0], *action_space.shape))
    rescale: Callable[[torch.Tensor], torch.Tensor] = lambda t: low + (0.5 * (t + 1.0) * (high - low))  # noqa: E731
    if head == "squashed_gaussian":
        return rescale(torch.tanh(a)).numpy()
    if head == "tanh":
        return rescale(a).numpy()
    return torch.minimum(torch.maximum(a, low), high).numpy()
