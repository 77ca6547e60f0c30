"""Read a Stable-Baselines3 ``vecnormalize.pkl`` (SB3 1.0 to 2.x) without running its pickle.

The file is a pickled ``VecNormalize`` whose ``__dict__`` holds, in every SB3 version from 1.0:
``obs_rms`` and ``ret_rms`` (``RunningMeanStd``: ``mean``, ``var``, ``count``), ``clip_obs``,
``clip_reward``, ``gamma``, ``epsilon``, ``training``, ``norm_obs``, ``norm_reward``, plus the
spaces and last observations. What changed across versions:

- Dict observations (SB3 >= 1.1): ``obs_rms`` is a dict of ``RunningMeanStd`` by key.
- ``norm_obs_keys`` (SB3 >= 1.3): absent before; SB3's ``__setstate__`` then normalises every key
  of a Dict observation space, and so does this reader (SB3 1.1/1.2 also kept ``obs_keys``, a set).
- SB3 >= 2.0 creates ``obs_rms`` only when ``norm_obs`` is true.

Example:
    >>> stats = read_vecnormalize(Path("vecnormalize.pkl").read_bytes(), what="vecnormalize.pkl")  # doctest: +SKIP
    >>> stats.norm_obs, stats.obs_rms.mean                                                         # doctest: +SKIP
    (True, array([ 0.55, -0.003,  0.086]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlport.errors import BundleError
from rlport.readers import safe_pickle
from rlport.readers.untrusted import echo

__all__ = ["VecNormalizeStats", "RunningStats", "read_vecnormalize", "vec_normalize_settings", "MAX_VECNORMALIZE_SIZE"]

MAX_VECNORMALIZE_SIZE = 64 << 20
"""The largest ``vecnormalize.pkl`` read (64 MiB); real ones hold a few KiB (plus the last observations)."""


@dataclass(frozen=True, eq=False)
class RunningStats:
    """One running mean/variance, shaped like SB3's ``RunningMeanStd`` (``.mean``, ``.var``, ``.count``)."""

    mean: np.ndarray
    var: np.ndarray
    count: float


@dataclass(frozen=True, eq=False)
class VecNormalizeStats:
    """What a ``VecNormalize`` needs to normalise observations the way it did in training.

    Duck-types the attributes of SB3's ``VecNormalize`` that a graph builder reads
    (``obs_rms``, ``obs_rms[key]``, ``epsilon``, ``clip_obs``, ``norm_obs``, ``norm_obs_keys``, ...).

    Attributes:
        obs_mean: observation mean (float64), a dict of them by key for Dict observations, or
            None when the file has no observation statistics (``norm_obs=False`` in SB3 >= 2.0).
        obs_var: observation variance, shaped like ``obs_mean``.
        obs_count: how many observations the statistics saw (for Dict observations, the first
            key's; SB3 updates every key together).
        clip_obs: normalised observations are clipped to ``[-clip_obs, clip_obs]``.
        clip_reward: normalised rewards are clipped to ``[-clip_reward, clip_reward]``.
        epsilon: added to the variance before its square root.
        gamma: discount of the return statistics used to scale rewards.
        norm_obs: whether observations are normalised.
        norm_reward: whether rewards are normalised (training only; actions do not depend on it).
        training: whether the statistics were still being updated when saved.
        norm_obs_keys: the normalised keys of a Dict observation; None for other observations.
        ret_mean: mean of the discounted return statistics, None when absent.
        ret_var: their variance, None when absent.
        ret_count: how many returns they saw (0.0 when absent).
    """

    obs_mean: np.ndarray | dict[str, np.ndarray] | None
    obs_var: np.ndarray | dict[str, np.ndarray] | None
    obs_count: float
    clip_obs: float
    clip_reward: float
    epsilon: float
    gamma: float
    norm_obs: bool
    norm_reward: bool
    training: bool
    norm_obs_keys: list[str] | None
    ret_mean: float | None = None
    ret_var: float | None = None
    ret_count: float = 0.0

    @property
    def obs_rms(self) -> RunningStats | dict[str, RunningStats] | None:
        """The observation statistics as SB3's ``VecNormalize.obs_rms`` (a dict for Dict observations)."""
        if isinstance(self.obs_mean, dict):
            return {k: RunningStats(self.obs_mean[k], self.obs_var[k], self.obs_count) for k in self.obs_mean}
        if self.obs_mean is None:
            return None
        return RunningStats(self.obs_mean, self.obs_var, self.obs_count)

    @property
    def ret_rms(self) -> RunningStats | None:
        """The discounted-return statistics as SB3's ``VecNormalize.ret_rms``, None when absent."""
        if self.ret_mean is None or self.ret_var is None:
            return None
        return RunningStats(np.float64(self.ret_mean), np.float64(self.ret_var), self.ret_count)


def vec_normalize_settings(vec_normalize: Any) -> dict[str, Any]:
    """The settings and running counts of a ``VecNormalize`` (SB3's or :class:`VecNormalizeStats`), JSON-able.

    Kept in a bundle's ``source`` so that ``rlport.to_sb3`` can rebuild the wrapper and keep
    updating its statistics where training stopped (the means and variances are graph tensors).
    """
    obs_rms = getattr(vec_normalize, "obs_rms", None)
    first = next(iter(obs_rms.values()), None) if isinstance(obs_rms, dict) else obs_rms
    ret_rms = getattr(vec_normalize, "ret_rms", None)
    keys = getattr(vec_normalize, "norm_obs_keys", None)
    return {
        "norm_obs": bool(vec_normalize.norm_obs),
        "norm_reward": bool(vec_normalize.norm_reward),
        "clip_obs": float(vec_normalize.clip_obs),
        "clip_reward": float(vec_normalize.clip_reward),
        "gamma": float(vec_normalize.gamma),
        "epsilon": float(vec_normalize.epsilon),
        "norm_obs_keys": None if keys is None else [str(k) for k in keys],
        "obs_count": float(first.count) if first is not None else 0.0,
        "ret_mean": _one(np.asarray(ret_rms.mean)) if ret_rms is not None else None,
        "ret_var": _one(np.asarray(ret_rms.var)) if ret_rms is not None else None,
        "ret_count": float(ret_rms.count) if ret_rms is not None else 0.0,
    }


def _running_stats(obj: Any, what: str) -> tuple[np.ndarray, np.ndarray, float]:
    """mean, var, count of a pickled ``RunningMeanStd`` record."""
    name = safe_pickle.global_name(obj) or type(obj).__name__
    if not isinstance(obj, safe_pickle.Instance) or not name.endswith(".RunningMeanStd"):
        raise BundleError(f"{what}: expected a RunningMeanStd, found {name}")
    attrs = obj.attributes()
    try:
        mean = np.array(attrs["mean"], dtype=np.float64)
        var = np.array(attrs["var"], dtype=np.float64)
        count = float(attrs["count"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"{what}: RunningMeanStd lacks a numeric mean/var/count ({echo(str(exc), 200)})") from exc
    if mean.shape != var.shape:
        raise BundleError(f"{what}: RunningMeanStd mean {mean.shape} and var {var.shape} differ in shape")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0) and count >= 0):
        raise BundleError(f"{what}: RunningMeanStd holds NaN, infinite or negative statistics (count {count}); "
                          "the statistics are damaged")  # fmt: skip
    return mean, var, count


def _obs_stats(state: dict[str, Any], what: str) -> tuple[Any, Any, float]:
    rms = state.get("obs_rms")
    if rms is None:
        return None, None, 0.0
    if not isinstance(rms, dict):
        return _running_stats(rms, f"{what}: obs_rms")
    if not rms or not all(isinstance(k, str) for k in rms):
        raise BundleError(f"{what}: obs_rms is a dict without string keys")
    stats = {k: _running_stats(v, f"{what}: obs_rms[{k!r}]") for k, v in rms.items()}
    return {k: s[0] for k, s in stats.items()}, {k: s[1] for k, s in stats.items()}, next(iter(stats.values()))[2]


def _norm_obs_keys(state: dict[str, Any], obs_mean: Any, what: str) -> list[str] | None:
    """``norm_obs_keys``, or what SB3's ``__setstate__`` makes of files saved before it existed."""
    if "norm_obs_keys" in state:
        keys = state["norm_obs_keys"]
    else:
        space = state.get("observation_space")
        is_dict = isinstance(space, safe_pickle.Instance) and space.global_name.endswith(".Dict")
        spaces = space.attributes().get("spaces") if is_dict else None
        keys = list(spaces) if isinstance(spaces, dict) else (list(obs_mean) if isinstance(obs_mean, dict) else None)
    if keys is not None and (not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys)):
        raise BundleError(f"{what}: norm_obs_keys is not a list of strings ({echo(keys, 80)})")
    if isinstance(obs_mean, dict) and keys is not None and not set(keys) <= set(obs_mean):
        raise BundleError(
            f"{what}: norm_obs_keys {echo(list(keys))} name keys without statistics {echo(sorted(obs_mean))}"
        )
    return None if keys is None else list(keys)


def _scalar(state: dict[str, Any], key: str, kind: type, what: str) -> Any:
    """``state[key]`` as a bool (true/false or 0/1) or a float (a number, not NaN)."""
    if key not in state:
        raise BundleError(f"{what}: the VecNormalize has no {key!r}; is this an SB3 vecnormalize.pkl?")
    value = state[key]
    value = value.item() if isinstance(value, (np.generic, np.ndarray)) and np.size(value) == 1 else value
    if kind is bool and (value is True or value is False or (type(value) is int and value in (0, 1))):
        return bool(value)
    if kind is float and type(value) in (int, float):
        number = float(value) if type(value) is float or abs(value) < 1 << 1000 else math.nan
        if not math.isnan(number):
            return number
    expected = "true or false" if kind is bool else "a number"
    raise BundleError(f"{what}: {key} should be {expected}, found {echo(state[key], 60)}")


def _one(value: np.ndarray | None) -> float | None:
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def read_vecnormalize(data: bytes, *, what: str) -> VecNormalizeStats:
    """Read a ``VecNormalize`` pickle (``VecNormalize.save``) into :class:`VecNormalizeStats`; nothing runs.

    Args:
        data: the ``vecnormalize.pkl`` bytes.
        what: what the file is, for error messages.

    Raises:
        UnsafeFileError: the pickle names anything outside the allow-list (see ``safe_pickle``).
        BundleError: truncated, corrupt, or not a VecNormalize; a field of the wrong type; NaN,
            infinite or negative statistics; or ``norm_obs`` without observation statistics.

    Example:
        >>> stats = read_vecnormalize(raw, what="vecnormalize.pkl")           # doctest: +SKIP
        >>> (obs - stats.obs_rms.mean) / np.sqrt(stats.obs_rms.var + stats.epsilon)  # doctest: +SKIP
    """
    obj = safe_pickle.loads(data, what=what)
    name = safe_pickle.global_name(obj) or type(obj).__name__
    if not isinstance(obj, safe_pickle.Instance) or not name.endswith(".VecNormalize"):
        raise BundleError(f"{what}: expected a pickled VecNormalize, found {name}")
    state = obj.attributes()
    obs_mean, obs_var, obs_count = _obs_stats(state, what)
    if obs_mean is None and _scalar(state, "norm_obs", bool, what):
        raise BundleError(f"{what}: norm_obs is true but the file has no observation statistics (obs_rms is "
                          f"{echo(state.get('obs_rms'))}); the file is damaged")  # fmt: skip
    ret = state.get("ret_rms")
    ret_mean, ret_var, ret_count = _running_stats(ret, f"{what}: ret_rms") if ret is not None else (None, None, 0.0)
    return VecNormalizeStats(
        obs_mean=obs_mean,
        obs_var=obs_var,
        obs_count=obs_count,
        clip_obs=_scalar(state, "clip_obs", float, what),
        clip_reward=_scalar(state, "clip_reward", float, what),
        epsilon=_scalar(state, "epsilon", float, what),
        gamma=_scalar(state, "gamma", float, what),
        norm_obs=_scalar(state, "norm_obs", bool, what),
        norm_reward=_scalar(state, "norm_reward", bool, what),
        training=_scalar(state, "training", bool, what),
        norm_obs_keys=_norm_obs_keys(state, obs_mean, what),
        ret_mean=_one(ret_mean),
        ret_var=_one(ret_var),
        ret_count=ret_count,
    )
