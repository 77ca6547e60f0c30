"""Replaying parity probes through a runtime: the bundle against its source, or on the target.

The probes' format, count limits and tolerance live in :mod:`rlport.bundle.probes`; replaying needs
a runtime (the numpy one by default), so it lives here, above the backends.

Example:
    >>> check_against_source(bundle, "stable-baselines3", ["MyPolicy._predict"])   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.probes import ProbeComparison, action_tolerance
from rlport.errors import UnsupportedError

__all__ = ["compare_probes", "check_against_source", "probe_observations"]


def probe_observations(probes: dict[str, np.ndarray]) -> Any:
    if "obs" in probes:
        return probes["obs"]
    return {name[4:]: value for name, value in probes.items() if name.startswith("obs.")}


def _replay(policy: Any, probes: dict[str, np.ndarray], count: int) -> np.ndarray:
    """The policy's deterministic actions for the probes (step by step, carrying the state, if recurrent)."""
    obs = probe_observations(probes)
    if not policy.is_recurrent:
        return np.asarray(policy.predict(obs, deterministic=True)[0])
    starts, state, actions = probes.get("episode_start"), None, []
    for i in range(count):
        step = {k: v[i : i + 1] for k, v in obs.items()} if isinstance(obs, dict) else obs[i : i + 1]
        start = None if starts is None else starts[i : i + 1]
        action, state = policy.predict(step, state=state, episode_start=start, deterministic=True)
        actions.append(np.asarray(action)[0])
    return np.stack(actions)


def compare_probes(bundle: Any, probes: dict[str, np.ndarray] | None = None, policy: Any = None) -> ProbeComparison:
    """Replay ``probes`` (default: the bundle's own) through the bundle's numpy runtime and count the differences.

    Discrete actions must be equal; continuous ones within :func:`action_tolerance`. ``policy`` is
    the bundle's numpy policy when the caller has one built already (default: a new one).
    """
    probes = bundle.probes if probes is None else probes
    expected = np.asarray(probes["action"])
    count = len(expected)
    actual = _replay(NumpyPolicy(bundle) if policy is None else policy, probes, count)
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
