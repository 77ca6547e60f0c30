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

from rlport.errors import BundleError, MissingDependencyError, UnsafeFileError
from rlport.frameworks.sb2 import file_pickle
from rlport.frameworks.zoo.files import MAX_YAML_SIZE
from rlport.readers import safe_pickle
from rlport.readers.untrusted import ECHO_LENGTH, MAX_NESTING, check_nesting, echo, read_regular

__all__ = ["read_config", "read_running_stats", "read_vecnormalize", "RunningStats", "MAX_STATISTICS_SIZE"]

MAX_STATISTICS_SIZE = 64 << 20
"""The largest ``obs_rms.pkl``, ``ret_rms.pkl`` or ``vecnormalize.pkl`` read (64 MiB); real ones hold < 1 KiB."""
_TAGS = "tag:yaml.org,2002:python/"
RunningStats = tuple[np.ndarray, np.ndarray, float]
"""``(mean, var, count)`` of a ``RunningMeanStd``, float64."""


def _loader(yaml: Any, path: Path) -> type:
    """SafeLoader plus the zoo's OrderedDict and tuple tags; nodes nest at most MAX_NESTING deep."""

    class SB2ZooLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > MAX_NESTING:
                    raise BundleError(f"{path}: YAML nested more than {MAX_NESTING} levels deep; no zoo file is")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    def ordered_dict(loader: Any, node: Any) -> dict[str, Any]:
        args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else None
        pairs = args[0] if args is not None and len(args) == 1 and isinstance(args[0], list) else None
        if pairs is None or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise BundleError(f"{path}: an OrderedDict should be written as the zoo writes it, one sequence of "
                              "[key, value] pairs with string keys")  # fmt: skip
        return dict(pairs)

    def refuse(loader: Any, suffix: str, node: Any) -> None:
        raise UnsafeFileError(f"{path}: refused YAML tag !!python/{suffix[:ECHO_LENGTH]}; rlport never runs code "
                              "from model files (it reads only the OrderedDict and tuple tags)")  # fmt: skip

    SB2ZooLoader.add_constructor(f"{_TAGS}object/apply:collections.OrderedDict", ordered_dict)
    SB2ZooLoader.add_constructor(f"{_TAGS}tuple", lambda loader, node: loader.construct_sequence(node, deep=True))
    SB2ZooLoader.add_multi_constructor(_TAGS, refuse)
    return SB2ZooLoader


def read_config(path: Path) -> dict[str, Any]:
    """An SB2 zoo ``config.yml``: a mapping with string keys (tuples become lists); nothing executed.

    Raises:
        BundleError: not a regular file, over MAX_YAML_SIZE, not YAML, nested or expanding beyond the limits,
            or not a mapping with string keys.
        UnsafeFileError: a Python tag other than OrderedDict and tuple.
        MissingDependencyError: PyYAML is not installed.
    """
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError('reading RL Zoo folders needs PyYAML; pip install "rlport[yaml]"') from exc
    raw = read_regular(path, MAX_YAML_SIZE, str(path))
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_loader(yaml, path))  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise BundleError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        raise BundleError(f"{path} is not valid YAML: {echo(str(exc), 300)}") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise BundleError(f"{path}: a YAML value cannot be read ({echo(str(exc) or type(exc).__name__)})") from exc
    check_nesting(data, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise BundleError(f"{path}: expected a mapping with string keys, found {echo(data)}")
    return data


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
