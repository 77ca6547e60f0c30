"""DDPG's own observation processing: ``clip(normalize(obs, obs_rms), *observation_range)`` inside the graph.

SB2's DDPG normalises the processed observation with its ``obs_rms`` (a TF ``RunningMeanStd`` of
``runningsum``, ``runningsumsq``, ``count``: ``mean = sum / count``, ``std = sqrt(max(sumsq / count -
mean**2, 1e-2))``, in float32) when ``normalize_observations``, and always clips it to
``observation_range`` (default (-5, 5)). With a symmetric range this is exactly SB3's VecNormalize
with ``epsilon=0``, so the statistics are kept under VecNormalize's tensor names and ``to_sb3``
rebuilds the model inside one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.errors import UnsupportedError, short
from rlport.graph.builder import GraphBuilder

if TYPE_CHECKING:
    from rlport.frameworks.sb2.model import SB2Model

__all__ = ["ddpg_observations", "observation_range", "obs_rms"]

_RMS = ("runningsum", "runningsumsq", "count")


def observation_range(model: SB2Model) -> tuple[float, float]:
    value = model.data.get("observation_range", (-5.0, 5.0))
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UnsupportedError(f"DDPG's observation_range must be two numbers, found {short(value)}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise UnsupportedError(f"DDPG's observation_range must be finite with low < high, found {short(value)}")
    return low, high


def obs_rms(model: SB2Model, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, float] | None:
    """DDPG's observation mean, variance (float32, as TF computes them) and count; None without normalisation."""
    if not model.data.get("normalize_observations"):
        return None
    raw = _named(model.params, shape) if isinstance(model.params, Mapping) else _listed(model, shape)
    total, total_sq, count = (np.asarray(v, dtype=np.float64) for v in raw)
    if count.shape != () or total.shape != shape or total_sq.shape != shape or not count > 0:
        raise UnsupportedError(
            f"{model.path or 'the file'}: DDPG's obs_rms must hold runningsum and runningsumsq of the observation's "
            f"shape {shape} and a positive count; found {total.shape}, {total_sq.shape}, count {short(count)}"
        )
    mean = (total / count).astype(np.float32)
    var = np.maximum((total_sq / count).astype(np.float32) - np.square(mean), np.float32(1e-2))
    return mean, var.astype(np.float32), float(count)


def _named(params: Mapping[str, Any], shape: tuple[int, ...]) -> list[Any]:
    found = []
    for var in _RMS:
        keys = [k for k in params if isinstance(k, str) and k.endswith(f"obs_rms/{var}:0")]
        if len(keys) != 1:
            raise UnsupportedError(
                f"DDPG normalises observations but the file has {len(keys)} variables named */obs_rms/{var}:0 "
                "(expected one)"
            )
        found.append(params[keys[0]])
    return found


def _listed(model: SB2Model, shape: tuple[int, ...]) -> list[Any]:
    """``get_parameter_list()`` ends with obs_rms (sum, sumsq, count), then ret_rms when returns are normalised."""
    end = len(model.params) - (3 if model.data.get("normalize_returns") else 0)
    if end < 3:
        raise UnsupportedError(f"{model.path or 'the file'}: DDPG normalises observations but the file has no obs_rms")
    return list(model.params[end - 3 : end])


def ddpg_observations(b: GraphBuilder, x: str, model: SB2Model, shape: tuple[int, ...]) -> str:
    """``clip(normalize(x, obs_rms), low, high)`` of the processed observation ``x`` of ``shape``; under
    VecNormalize's names when SB3 can hold it."""
    low, high = observation_range(model)
    stats = obs_rms(model, shape)
    mean, var = (stats[0], stats[1]) if stats is not None else (np.zeros(shape, np.float32), np.ones(shape, np.float32))
    foldable = low == -high and "vecnormalize.obs.mean" not in b.tensors
    stem = "vecnormalize.obs" if foldable else "ddpg.obs_rms"
    params = {"mean": b.tensor(f"{stem}.mean", mean), "var": b.tensor(f"{stem}.var", var)}
    clip = high if foldable else float(np.finfo(np.float32).max)
    x = b.add("normalize", [x], params, {"epsilon": 0.0, "clip": clip})
    if not foldable:
        x = b.add("clip", [x], attrs={"min": low, "max": high})
    return x
