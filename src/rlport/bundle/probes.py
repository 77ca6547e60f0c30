"""Parity probes: observations and the deterministic actions a source gives for them (FORMAT.md section 7).

A producer that has the source at hand (``from_sb3``) records the source's actions as probes and
checks the bundle against them (:func:`check_against_source`, called by ``bundle.assemble``) before
handing the bundle back: a bundle that acts otherwise
than its source is refused, never written. ``rlport verify`` replays the same probes on the
target (:func:`compare_probes`), with the same tolerance.

Example:
    >>> check_against_source(bundle, "stable-baselines3", "MyPolicy._predict")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlport.errors import UnsupportedError

__all__ = [
    "record_probes",
    "probe_count",
    "compare_probes",
    "check_against_source",
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


def _probe_obs(probes: dict[str, np.ndarray]) -> Any:
    if "obs" in probes:
        return probes["obs"]
    return {name[4:]: value for name, value in probes.items() if name.startswith("obs.")}


def _replay(policy: Any, probes: dict[str, np.ndarray], count: int) -> np.ndarray:
    """The policy's deterministic actions for the probes (step by step, carrying the state, if recurrent)."""
    obs = _probe_obs(probes)
    if not policy.is_recurrent:
        return np.asarray(policy.predict(obs, deterministic=True)[0])
    starts, state, actions = probes.get("episode_start"), None, []
    for i in range(count):
        step = {k: v[i : i + 1] for k, v in obs.items()} if isinstance(obs, dict) else obs[i : i + 1]
        start = None if starts is None else starts[i : i + 1]
        action, state = policy.predict(step, state=state, episode_start=start, deterministic=True)
        actions.append(np.asarray(action)[0])
    return np.stack(actions)


def compare_probes(
    bundle: Any, probes: dict[str, np.ndarray] | None = None, policy: Any = None
) -> ProbeComparison:
    """Replay ``probes`` (default: the bundle's own) through the bundle's numpy runtime and count the differences.

    Discrete actions must be equal; continuous ones within :func:`action_tolerance`. ``policy`` is
    the bundle's numpy policy when the caller has one built already (default: a new one).
    """
    probes = bundle.probes if probes is None else probes
    expected = np.asarray(probes["action"])
    count = len(expected)
    actual = _replay(bundle.policy() if policy is None else policy, probes, count)
    continuous = expected.dtype.kind == "f"
    if actual.shape != expected.shape:
        return ProbeComparison(count, count, continuous,
                               shape_error=f"action shape {actual.shape}, recorded {expected.shape}")  # fmt: skip
    if not continuous:
        rows = np.asarray(actual != expected).reshape(count, -1).any(axis=1)
        return ProbeComparison(count, int(rows.sum()), False, first=int(np.argmax(rows)) if rows.any() else None)
    tolerance = action_tolerance(bundle.action_space)
    errors = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).reshape(count, -1)
    per_probe = errors.max(axis=1) if errors.size else np.zeros(count)
    rows = ~(per_probe <= tolerance)  # NaN counts as a difference
    first = int(np.argmax(rows)) if rows.any() else None
    worst = float(np.max(per_probe)) if per_probe.size else 0.0  # NaN when any action is NaN
    return ProbeComparison(count, int(rows.sum()), True, worst, tolerance, first)


def check_against_source(
    bundle: Any,
    source: str,
    cannot_express: list[str],
    probes: dict[str, np.ndarray] | None = None,
    policy: Any = None,
) -> ProbeComparison:
    """Refuse a bundle whose actions differ from its source's on the probes (the source's own actions).

    Every producer that has the source framework at hand calls this before handing a bundle back.

    Args:
        bundle: the bundle just built.
        source: the source's name for the message (``"SB3"``).
        cannot_express: what the source has that the graph may not follow (overridden methods,
            custom modules), named in the refusal; empty when nothing unusual was found.
        probes: the source's probes (default: the bundle's own).
        policy: the bundle's numpy policy, when already built (default: a new one).

    Raises:
        UnsupportedError: the bundle's actions differ; names ``cannot_express`` and the mismatch count.
    """
    result = compare_probes(bundle, probes, policy)
    if result.mismatched == 0:
        return result
    found = (
        f"what the bundle cannot express: {', '.join(cannot_express)}. The bundle holds the standard layers and "
        f"methods only; export a policy that acts through them (move custom logic out of the policy)"
        if cannot_express
        else "no custom method or module was found, so this is an rlport bug: please report it"
    )
    raise UnsupportedError(
        f"the bundle does not act as the {source} policy does, deterministically: {result.describe()}; {found}"
    )
