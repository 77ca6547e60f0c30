"""Parity probes: observations and the deterministic actions a source gives for them (FORMAT.md section 7).

A producer that has the source at hand (``from_sb3``) records the source's actions as probes and
checks the bundle against them (``rlport.backends.parity.check_against_source``, called by
``rlport.assemble``) before handing the bundle back: a bundle that acts otherwise than its source is
refused, never written. ``rlport verify`` replays the same probes on the target
(``rlport.backends.parity.compare_probes``), with the same tolerance defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "record_probes",
    "probe_count",
    "action_tolerance",
    "ProbeComparison",
    "PARITY_ATOL",
    "MIN_PROBES",
    "MAX_PROBE_BYTES",
]

PARITY_ATOL = 1e-5
"""Largest difference allowed between continuous probe actions and the runtime's, per unit of action scale."""

Predict = Callable[[Any, Any, Any], tuple[Any, Any]]
"""``predict(obs, state, episode_start) -> (action, state)``, deterministic."""


def record_probes(batch: Any, predict: Predict, recurrent: bool) -> dict[str, np.ndarray]:
    """The probe tensors for an observation batch (an array, or a dict of arrays).

    Non-recurrent sources act on the whole batch at once. Recurrent ones act on it as one
    stream of steps of a single env, carrying the state, with an episode starting at the first
    step and then at random (10%) steps; ``episode_start`` is recorded too.
    """
    is_dict = isinstance(batch, dict)
    tensors = {f"obs.{k}": v for k, v in batch.items()} if is_dict else {"obs": batch}
    count = len(next(iter(batch.values()))) if is_dict else len(batch)
    if not recurrent:
        tensors["action"] = np.asarray(predict(batch, None, None)[0])
        return tensors
    starts = np.random.default_rng(0).random(count) < 0.1
    starts[0] = True
    state, actions = None, []
    for i in range(count):
        step = {k: v[i : i + 1] for k, v in batch.items()} if is_dict else batch[i : i + 1]
        action, state = predict(step, state, starts[i : i + 1])
        actions.append(np.asarray(action)[0])
    tensors["action"] = np.stack(actions)
    tensors["episode_start"] = starts.astype(np.float32)
    return tensors


MAX_PROBE_BYTES = 1 << 20
"""Probes of large observations are fewer, so that they take about this many bytes."""
MIN_PROBES = 16
"""The fewest probes recorded (and checked against a source) when any are asked for."""


def probe_count(space: Any, requested: int) -> int:
    """``requested``, lowered so that image-sized observations keep probes under about 1 MiB (16 at least).

    Args:
        space: the observation space spec (:mod:`rlport.bundle.spaces`).
        requested: the number of probes asked for (0 or less: none).
    """
    from rlport.bundle.spaces import DictSpec, DiscreteSpec, item_shape, leaves

    if requested <= 0:
        return 0
    per_obs = 0
    for _, leaf in leaves(space) if isinstance(space, DictSpec) else [((), space)]:
        dtype = np.dtype(np.int64 if isinstance(leaf, DiscreteSpec) else getattr(leaf, "dtype", np.int8))
        per_obs += int(np.prod(item_shape(leaf))) * dtype.itemsize
    return min(requested, max(MIN_PROBES, MAX_PROBE_BYTES // max(per_obs, 1)))


def action_tolerance(action_space: Any) -> float:
    """The largest absolute difference allowed for continuous actions: ``PARITY_ATOL`` times the action scale.

    The scale is the largest finite bound of a Box action space in magnitude, at least 1: float32
    arithmetic rescaling a squashed action to ``[-400, 400]`` errs in the last bits of 400, not of 1.
    """
    from rlport.bundle.spaces import BoxSpec

    scale = 1.0
    if isinstance(action_space, BoxSpec) and action_space.low.size:
        bounds = np.abs(np.concatenate([action_space.low.ravel(), action_space.high.ravel()]).astype(np.float64))
        finite = bounds[np.isfinite(bounds)]
        scale = max(scale, float(finite.max())) if finite.size else scale
    return PARITY_ATOL * scale


@dataclass(frozen=True)
class ProbeComparison:
    """The probes replayed through the numpy runtime, against the actions recorded with them."""

    count: int
    mismatched: int
    continuous: bool
    max_error: float = 0.0
    tolerance: float = 0.0
    first: int | None = None
    shape_error: str | None = None

    def describe(self) -> str:
        """``"3/256 probes differ (max |Δaction| = 0.5 > 2e-05)"``, or the shape difference."""
        if self.shape_error:
            return self.shape_error
        if self.continuous:
            sign = ">" if self.max_error > self.tolerance else "<="
            return (f"{self.mismatched}/{self.count} probes differ "
                    f"(max |Δaction| = {self.max_error:.3g} {sign} {self.tolerance:g})")  # fmt: skip
        return f"{self.mismatched}/{self.count} probes differ (discrete actions must be equal)"
