"""The SB2 RL Zoo layout: ``ALGO/ENV.pkl|zip`` with a sibling folder ``ALGO/ENV/`` (``config.yml``,
``obs_rms.pkl``/``ret_rms.pkl`` or ``vecnormalize.pkl``), as araffin/rl-baselines-zoo's ``enjoy.py`` uses it.

Normalisation is on as the zoo's ``utils.get_saved_hyperparams`` decides: ``config.yml``'s ``normalize``
(``true``, or a dict-like string of VecNormalize arguments), and without a ``config.yml`` the presence of
``obs_rms.pkl``. The statistics then normalise as SB2's VecNormalize does (``clip_obs`` 10 and
``epsilon`` 1e-8 unless the arguments say otherwise). ``env_wrapper`` and ``frame_stack`` become env-spec
wrappers (the zoo stacks frames after normalising, so the statistics are tiled over the stacked frames);
``*NoFrameskip*`` envs get SB2's Atari wrappers (``wrap_deepmind``) and 4 stacked frames, as in the zoo.

Example:
    >>> zoo = read_zoo_folder(Path("ppo2/HalfCheetahBulletEnv-v0.pkl"), model)   # doctest: +SKIP
    >>> [w.name for w in zoo.wrappers], zoo.normalisation is not None             # doctest: +SKIP
    (['time_feature'], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlport.bundle.manifest import WrapperSpec
from rlport.errors import BundleError
from rlport.frameworks.sb2.model import ObsNormalisation, SB2Model
from rlport.frameworks.sb2.zoo_files import RunningStats, read_config, read_running_stats, read_vecnormalize
from rlport.frameworks.sb2.zoo_returns import published_return
from rlport.frameworks.zoo.files import literal, plain_kwargs, wrappers_from_config
from rlport.readers.untrusted import echo

__all__ = ["SB2Zoo", "read_zoo_folder", "zoo_folder", "normalize_kwargs", "env_note", "ATARI_WRAPPER"]

ATARI_WRAPPER = WrapperSpec(
    "stable_baselines.common.atari_wrappers.wrap_deepmind",
    {"episode_life": True, "clip_rewards": True, "frame_stack": False, "scale": False},
)
"""SB2's ``make_atari_env``: ``wrap_deepmind(make_atari(id))`` (noop reset, max-and-skip 4, episodic life, fire
reset, 84x84 grey frames, clipped rewards); recorded by name (SB3's ``AtariWrapper`` is its equivalent)."""
_VECNORMALIZE_DEFAULTS = {"clip_obs": 10.0, "clip_reward": 10.0, "gamma": 0.99, "epsilon": 1e-8}
"""SB2 ``VecNormalize``'s defaults (stable_baselines/common/vec_env/vec_normalize.py)."""
_ENV_NOTES = (
    ("BulletEnv-v", "a PyBullet env: pip install pybullet; its pybullet_envs register the env with gym, not "
                    "gymnasium, so `rlport run` cannot make it (run the bundle on observations you supply)"),
    ("Fetch", "a gym robotics env (mujoco-py): pip install gymnasium-robotics, whose FetchReach-v4 and kin are "
              "today's versions (same observation and goal sizes)"),
    ("HandManipulate", "a gym robotics env (mujoco-py): pip install gymnasium-robotics"),
    ("NoFrameskip", "an Atari env: pip install ale-py (gymnasium's ALE) and build SB2's wrap_deepmind wrappers"),
)  # fmt: skip


@dataclass
class SB2Zoo:
    """What the zoo folder beside a model says about acting in its env."""

    folder: Path | None
    env_id: str
    config: dict[str, Any] = field(default_factory=dict)
    normalisation: ObsNormalisation | None = None
    vec_normalize: dict[str, Any] | None = None
    """The VecNormalize settings and running counts, JSON-able (kept in the bundle's ``source`` for ``to_sb3``)."""
    wrappers: tuple[WrapperSpec, ...] = ()
    published: dict[str, Any] = field(default_factory=dict)


def zoo_folder(model: Path) -> Path | None:
    """The folder ``ALGO/ENV/`` beside ``ALGO/ENV.pkl``, when there is one."""
    folder = model.parent / model.stem
    return folder if folder.is_dir() else None


def normalize_kwargs(config: dict[str, Any] | None, folder: Path | None) -> dict[str, Any] | None:
    """The VecNormalize arguments the zoo used (None: no normalisation), as ``get_saved_hyperparams`` decides.

    ``config`` is None when the folder has no ``config.yml``: then ``obs_rms.pkl`` alone turns it on.
    """
    if config is None:
        normalize = folder is not None and (folder / "obs_rms.pkl").is_file()
    else:
        normalize = config.get("normalize", False)
    if isinstance(normalize, str):
        return plain_kwargs(literal(normalize, "config.yml normalize"), "config.yml normalize")
    if not isinstance(normalize, bool):
        raise BundleError(f"config.yml: normalize should be true, false or a dict of VecNormalize arguments, found "
                          f"{echo(normalize)}")  # fmt: skip
    return {"norm_obs": True} if normalize else None


def _positive(settings: dict[str, Any], key: str, what: str) -> float:
    value = settings.get(key, _VECNORMALIZE_DEFAULTS[key])
    if type(value) not in (int, float) or not (math.isfinite(value) and value > 0):
        raise BundleError(f"{what}: VecNormalize {key} should be a number > 0, found {echo(value)}")
    return float(value)


def _statistics(folder: Path, kwargs: dict[str, Any]) -> tuple[RunningStats, dict[str, Any], RunningStats | None]:
    """Observation statistics, the VecNormalize settings in force, and the return statistics when saved."""
    if (folder / "vecnormalize.pkl").is_file():
        obs, saved = read_vecnormalize(folder / "vecnormalize.pkl")
        settings = {**kwargs, **saved}
    elif (folder / "obs_rms.pkl").is_file():
        obs, settings = read_running_stats(folder / "obs_rms.pkl"), dict(kwargs)
    else:
        obs, settings = None, kwargs
    if obs is None:
        raise BundleError(f"{folder}: the zoo normalised observations (config.yml normalize, or obs_rms.pkl) but "
                          "neither obs_rms.pkl nor vecnormalize.pkl holds the statistics; without them the "
                          "policy acts wrongly")  # fmt: skip
    ret = read_running_stats(folder / "ret_rms.pkl") if (folder / "ret_rms.pkl").is_file() else None
    return obs, settings, ret


def _tiled(stats: RunningStats, shape: tuple[int, ...], what: str) -> tuple[np.ndarray, np.ndarray]:
    """mean and var for the policy's observation: as saved, or tiled over stacked frames (last axis)."""
    mean, var, _ = stats
    if mean.shape == shape:
        return mean, var
    frames = shape[-1] // mean.shape[-1] if mean.ndim == len(shape) and mean.shape[-1] else 0
    if frames < 2 or mean.shape[:-1] != shape[:-1] or frames * mean.shape[-1] != shape[-1]:
        raise BundleError(f"{what}: the statistics have shape {mean.shape}, the policy observes {shape}; they are not "
                          "this model's")  # fmt: skip
    return np.concatenate([mean] * frames, axis=-1), np.concatenate([var] * frames, axis=-1)


def _normalisation(zoo: SB2Zoo, model: SB2Model, kwargs: dict[str, Any]) -> None:
    """Fill ``zoo.normalisation`` and ``zoo.vec_normalize`` from the folder's statistics."""
    obs, settings, ret = _statistics(zoo.folder, kwargs)
    where = str(zoo.folder)
    numbers = {key: _positive(settings, key, where) for key in _VECNORMALIZE_DEFAULTS}
    norm_obs = settings.get("norm_obs", True)
    if norm_obs:
        mean, var = _tiled(obs, tuple(model.observation_space.shape), where)
        zoo.normalisation = ObsNormalisation(mean, var, epsilon=numbers["epsilon"], clip=numbers["clip_obs"])
    zoo.vec_normalize = {
        "norm_obs": bool(norm_obs), "norm_reward": bool(settings.get("norm_reward", False)), **numbers,
        "norm_obs_keys": None, "obs_count": obs[2],
        "ret_mean": float(ret[0]) if ret is not None and ret[0].size == 1 else None,
        "ret_var": float(ret[1]) if ret is not None and ret[1].size == 1 else None,
        "ret_count": ret[2] if ret is not None else 0.0,
    }  # fmt: skip


def _wrappers(config: dict[str, Any], env_id: str, what: str) -> tuple[WrapperSpec, ...]:
    wrappers = wrappers_from_config(config, what)
    if "NoFrameskip" in env_id:
        stacked = any(w.name == "frame_stack" for w in wrappers)
        wrappers = [ATARI_WRAPPER, *wrappers, *([] if stacked else [WrapperSpec("frame_stack", {"n_stack": 4})])]
    return tuple(wrappers)


def read_zoo_folder(path: Path, model: SB2Model) -> SB2Zoo:
    """What the zoo layout around ``path`` (``ALGO/ENV.pkl``) says: env id (the file's name), normalisation,
    wrappers and published return. A model outside that layout gets just its env id from its name.

    Raises:
        BundleError: a file of the folder is malformed or over its limits, or normalisation is on without
            its statistics.
        UnsafeFileError: a file asks to run code.
    """
    folder = zoo_folder(path)
    zoo = SB2Zoo(folder=folder, env_id=path.stem, published=published_return(path))
    config = read_config(folder / "config.yml") if folder and (folder / "config.yml").is_file() else None
    zoo.config = config or {}
    kwargs = normalize_kwargs(config, folder)
    if kwargs is not None and folder is not None:
        _normalisation(zoo, model, kwargs)
    zoo.wrappers = _wrappers(zoo.config, zoo.env_id, str(folder / "config.yml") if folder else str(path))
    return zoo


def env_note(env_id: str) -> str | None:
    """What an env of the SB2 zoo needs that gymnasium alone does not provide; None for gymnasium's own."""
    for marker, note in _ENV_NOTES:
        if marker in env_id:
            return f"{env_id} is {note}"
    return None
