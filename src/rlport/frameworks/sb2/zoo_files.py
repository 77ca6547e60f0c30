"""The files beside an SB2 RL Zoo model (``ALGO/ENV/``), read as untrusted input.

``config.yml`` is YAML written with Python tags (``!!python/object/apply:collections.OrderedDict``,
``!!python/tuple``), which the zoo read with an unsafe loader; here PyYAML's SafeLoader takes those two
tags as a dict and a list and refuses every other Python tag, with nesting bounded. ``obs_rms.pkl`` /
``ret_rms.pkl`` (a pickled ``RunningMeanStd``) and ``vecnormalize.pkl`` (a pickled ``VecNormalize``, later
zoo versions) go through the SB2 allow-list pickle reader.

Example:
    >>> config = read_config(Path("ppo2/HalfCheetahBulletEnv-v0/config.yml"))   # doctest: +SKIP
    >>> config["normalize"]                                                      # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlport.errors import BundleError
from rlport.frameworks.sb2 import file_pickle
from rlport.frameworks.zoo.files import read_zoo_yaml
from rlport.readers import safe_pickle
from rlport.readers.untrusted import echo, read_regular

__all__ = ["read_config", "read_running_stats", "read_vecnormalize", "RunningStats", "MAX_STATISTICS_SIZE"]

MAX_STATISTICS_SIZE = 64 << 20
"""The largest ``obs_rms.pkl``, ``ret_rms.pkl`` or ``vecnormalize.pkl`` read (64 MiB); real ones hold < 1 KiB."""
RunningStats = tuple[np.ndarray, np.ndarray, float]
"""``(mean, var, count)`` of a ``RunningMeanStd``, float64."""


def read_config(path: Path) -> dict[str, Any]:
    """An SB2 zoo ``config.yml``: a mapping with string keys (tuples become lists); nothing executed.

    The RL Zoo's own safe reader (:func:`rlport.frameworks.zoo.files.read_zoo_yaml`), with SB2's
    ``!!python/tuple`` tag read as a list.

    Raises:
        BundleError: not a regular file, over MAX_YAML_SIZE, not YAML, nested or expanding beyond the limits,
            or not a mapping with string keys.
        UnsafeFileError: a Python tag other than OrderedDict and tuple.
        MissingDependencyError: PyYAML is not installed.
    """
    return read_zoo_yaml(path, tuples=True)


def _stats(record: Any, what: str) -> RunningStats:
    """mean, var, count of a pickled ``RunningMeanStd`` record; finite, var >= 0."""
    name = safe_pickle.global_name(record) or type(record).__name__
    if not isinstance(record, safe_pickle.Instance) or not name.endswith(".RunningMeanStd"):
        raise BundleError(f"{what}: expected a pickled RunningMeanStd, found {echo(name, 80)}")
    attrs = record.attributes()
    try:
        mean, var = (np.array(attrs[key], dtype=np.float64) for key in ("mean", "var"))
        count = float(attrs["count"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"{what}: RunningMeanStd lacks a numeric mean/var/count ({echo(str(exc), 200)})") from exc
    if mean.shape != var.shape:
        raise BundleError(f"{what}: RunningMeanStd mean {mean.shape} and var {var.shape} differ in shape")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0) and count >= 0):
        raise BundleError(f"{what}: RunningMeanStd holds NaN, infinite or negative statistics; they are damaged")
    return mean, var, count


def read_running_stats(path: Path) -> RunningStats:
    """``obs_rms.pkl`` or ``ret_rms.pkl`` (SB2's ``VecNormalize.save_running_average``).

    Raises:
        BundleError: not a regular file, over MAX_STATISTICS_SIZE, corrupt, or not sound statistics.
        UnsafeFileError: the pickle names anything outside the allow-list.
    """
    raw = read_regular(path, MAX_STATISTICS_SIZE, str(path))
    return _stats(file_pickle.loads(raw, what=str(path)), str(path))


def read_vecnormalize(path: Path) -> tuple[RunningStats | None, dict[str, Any]]:
    """A pickled SB2 ``VecNormalize`` (``vecnormalize.pkl``): its observation statistics and its plain settings
    (``norm_obs``, ``clip_obs``, ``epsilon``... as saved).

    Raises:
        BundleError: not a VecNormalize, or statistics that are not sound.
        UnsafeFileError: the pickle names anything outside the allow-list.
    """
    raw = read_regular(path, MAX_STATISTICS_SIZE, str(path))
    record = file_pickle.loads(raw, what=str(path))
    if not (safe_pickle.global_name(record) or "").endswith(".VecNormalize"):
        raise BundleError(f"{path}: expected a pickled VecNormalize, found {echo(safe_pickle.global_name(record))}")
    state = record.attributes()
    obs = _stats(state["obs_rms"], f"{path}: obs_rms") if state.get("obs_rms") is not None else None
    settings = {k: file_pickle.inert(state[k]) for k in ("norm_obs", "norm_reward", "clip_obs", "clip_reward",
                                                          "gamma", "epsilon") if k in state}  # fmt: skip
    return obs, settings
