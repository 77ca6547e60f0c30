"""The env side of ``rlport.to_sb3``: the model's VecEnv, its space check and the bundle's VecNormalize."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.errors import (
    EnvError,
    MissingDependencyError,
    RlportWarning,
    SpaceError,
    UnsafeFileError,
    UnsupportedError,
    short,
)

__all__ = ["sb3_env", "spaces_only_env", "export_env", "normalises"]


def sb3_env(bundle: Bundle, env: Any, cls: type, env_module: str | None = None) -> Any:
    """The model's VecEnv (with the bundle's VecNormalize), or None when no env can be had.

    A recorded env id that would import a module the user did not name (``env_module``) is refused.
    """
    from rlport.envs import make_env

    if env is None:
        try:
            env = make_env(bundle.env, env_module=env_module)
        except (EnvError, MissingDependencyError) as exc:
            warnings.warn(
                f"the model has no env ({exc}); call model.set_env(env) before model.learn(), "
                "or pass env= to to_sb3 so that the bundle's VecNormalize statistics are applied",
                RlportWarning,
                stacklevel=4,
            )
            return None
    venv = cls._wrap_env(env, verbose=0)  # SB3's own wrapping: Monitor, DummyVecEnv, channel-first images
    _check_spaces(bundle, venv)
    settings = _vec_normalize_settings(bundle.source.get("vec_normalize"))
    if settings and (settings.get("norm_obs") or settings.get("norm_reward")):
        venv = _vec_normalize(venv, bundle, settings)
    return venv


def _check_spaces(bundle: Bundle, venv: Any) -> None:
    """The env must fit the policy: same action space; observations alike up to bounds and float width.

    Observation bounds often change between gym releases without changing what a policy sees; the
    model takes the env's observation space then, as SB3 would when training on it. Image-ness
    (SB3 scales uint8 images by 1/255) and action bounds (clipping, rescaling) must agree exactly.
    """
    from rlport.bundle.spaces import is_image, leaves
    from rlport.envs import check_spaces
    from rlport.readers.gym_spaces import spec_from_space

    hint = "pass to_sb3 an env with the spaces the policy was trained on"
    check_spaces(bundle, venv, exact=False, hint=hint)
    theirs = spec_from_space(venv.observation_space)
    for (key, ours), (_, other) in zip(leaves(bundle.observation_space), leaves(theirs), strict=True):
        if is_image(ours) != is_image(other):
            where = f"observation {'.'.join(key)}" if key else "observation"
            raise SpaceError(
                f"the env's {where} is {'' if is_image(other) else 'not '}an image but the bundle's is "
                f"{'' if is_image(ours) else 'not '}(SB3 scales images by 1/255); {hint}"
            )
    if spec_from_space(venv.action_space).to_json() != bundle.action_space.to_json():
        check_spaces(bundle, venv, exact=True, hint=hint)  # names the difference


_FLAGS = ("norm_obs", "norm_reward")
_NUMBERS = ("clip_obs", "clip_reward", "gamma", "epsilon", "ret_mean")
_COUNTS = ("obs_count", "ret_var", "ret_count")  # numbers that cannot be negative


def _vec_normalize_settings(settings: Any) -> dict[str, Any] | None:
    """The bundle's ``source.vec_normalize`` once every entry has the type VecNormalize takes (None: absent)."""
    if settings is None:
        return None

    def bad(what: str) -> UnsupportedError:
        return UnsupportedError(
            f"the bundle's source.vec_normalize {what}; export the model again with its VecNormalize, "
            "or pass env= a VecNormalize of your own"
        )

    if not isinstance(settings, dict):
        raise bad(f"must be a dict, found a {type(settings).__name__}")
    for key in _FLAGS:
        if not isinstance(settings.get(key, False), bool):
            raise bad(f"{key} must be true or false, found a {type(settings[key]).__name__}")
    for key in _NUMBERS + _COUNTS:
        value = settings.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if value is not None and (not number or (key in _COUNTS and value < 0)):
            raise bad(f"{key} must be a finite{' non-negative' if key in _COUNTS else ''} number, found {value!r:.100}")
    keys = settings.get("norm_obs_keys")
    if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise bad(f"norm_obs_keys must list observation keys, found {keys!r:.100}")
    return settings


def _vec_normalize(venv: Any, bundle: Bundle, settings: dict[str, Any]) -> Any:
    """``venv`` inside a VecNormalize carrying the bundle's statistics and running counts."""
    from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_normalize

    wrapper = unwrap_vec_normalize(venv)
    if wrapper is None:
        options = ("norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys")
        norm_obs = bool(settings.get("norm_obs"))
        wrapper = venv = VecNormalize(venv, norm_obs=norm_obs, **{k: settings[k] for k in options if k in settings})
    if settings.get("norm_obs"):
        _observation_statistics(wrapper, bundle, settings)
    if settings.get("ret_var") is not None:
        wrapper.ret_rms.mean, wrapper.ret_rms.var = float(settings["ret_mean"]), float(settings["ret_var"])
        wrapper.ret_rms.count = max(float(settings.get("ret_count") or 0.0), 1e-4)
    return venv


def _observation_statistics(wrapper: Any, bundle: Bundle, settings: dict[str, Any]) -> None:
    """The bundle's observation means, variances and count into ``wrapper`` (SB3's VecNormalize)."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    count = float(settings.get("obs_count") or 0.0)
    if count <= 0.0:
        warnings.warn(
            "the bundle does not record how many observations its statistics saw; they are frozen "
            "(VecNormalize.training = False) so that the first update does not overwrite them",
            RlportWarning,
            stacklevel=6,
        )
        wrapper.training = False

    def stats(stem: str, shape: tuple[int, ...]) -> RunningMeanStd:
        mean, var = bundle.tensors.get(f"{stem}.mean"), bundle.tensors.get(f"{stem}.var")
        if mean is None or var is None or np.shape(mean) != shape or np.shape(var) != shape:
            raise UnsupportedError(
                f"the bundle normalises observations but its {stem}.mean / .var are missing or not of the env's "
                f"observation shape {shape}; export the model again with its VecNormalize"
            )
        rms = RunningMeanStd(shape=shape)
        rms.mean, rms.var = np.array(mean), np.array(var)
        rms.count = max(count, 1e-4)
        return rms

    if isinstance(wrapper.obs_rms, dict):
        for key in wrapper.obs_rms:
            if f"vecnormalize.obs.{key}.mean" in bundle.tensors:
                wrapper.obs_rms[key] = stats(f"vecnormalize.obs.{key}", np.shape(wrapper.obs_rms[key].mean))
    else:
        wrapper.obs_rms = stats("vecnormalize.obs", tuple(wrapper.observation_space.shape))
    wrapper.norm_obs = True  # the policy expects normalised observations, whatever a given wrapper said


def spaces_only_env(bundle: Bundle) -> Any:
    """A gymnasium env with the bundle's spaces and nothing else: enough to build and save a model."""
    import gymnasium as gym

    from rlport.readers.gym_spaces import space_from_spec

    class SpacesOnly(gym.Env):
        observation_space = space_from_spec(bundle.observation_space)
        action_space = space_from_spec(bundle.action_space)

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
            raise EnvError("this env only carries the bundle's spaces; pass a real env to train")

        def step(self, action: Any) -> Any:
            raise EnvError("this env only carries the bundle's spaces; pass a real env to train")

    return SpacesOnly()


def normalises(bundle: Bundle) -> bool:
    """Whether the bundle's model comes back inside a ``VecNormalize`` (observations or rewards normalised)."""
    settings = _vec_normalize_settings(bundle.source.get("vec_normalize"))
    return bool(settings and (settings.get("norm_obs") or settings.get("norm_reward")))


def export_env(bundle: Bundle, env_module: str | None = None) -> tuple[Any, str | None]:
    """The env whose spaces an exported model carries, and a note when it is not the bundle's env made here.

    The bundle's env made here gives today's observation bounds (gym-era files record others), so
    that ``ALGO.load(path, env=gym.make(env_id))`` passes SB3's space check. When it cannot be
    made, an env with the bundle's recorded spaces stands in, and the note says so.
    """
    from rlport.envs import make_env

    fallback = "the exported model carries the bundle's recorded observation and action spaces"
    if not bundle.env.id:
        return spaces_only_env(bundle), f"the bundle records no env id: {fallback}"
    try:
        return make_env(bundle.env, env_module=env_module), None
    except (EnvError, MissingDependencyError, UnsafeFileError) as exc:
        note = (
            f"the env {short(bundle.env.id)} cannot be made here ({exc}): {fallback}; if ALGO.load(path, env=env) then "
            "says the observation spaces do not match, pass custom_objects={'observation_space': env.observation_space}"
        )
        return spaces_only_env(bundle), note
