"""Parity probes: observations and the deterministic actions a source gives for them (FORMAT.md section 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["record_probes"]

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
MIN_PROBES = 16


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
