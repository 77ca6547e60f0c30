"""SB3 itself as the reference of a bare state_dict import, when stable-baselines3 is installed.

The policy SB3 builds from the inferred facts (class, spaces, ``policy_kwargs``) must take every
tensor of the file (``load_state_dict(strict=True)``: none missing, none left over, every shape
equal); then its deterministic actions are the probes the bundle must reproduce. The tensors
reach torch from rlport's pickle-free reader, never through ``torch.load``.

Example:
    >>> reference = sb3_reference(facts, state, obs_spec, act_spec, None, "weights.pth")   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

from rlport.assemble import Reference
from rlport.bundle.spaces import SpaceSpec
from rlport.errors import MissingDependencyError, RlportWarning, UnsupportedError
from rlport.frameworks.sb3.settings import capped, policy_class, policy_kwargs_of
from rlport.frameworks.sb3.state_dict_facts import Facts
from rlport.readers.gym_spaces import space_from_spec

__all__ = ["sb3_reference", "describe_facts"]

_SEED = 12345
"""Seed of the observation space the reference's probe observations are sampled from."""


def describe_facts(facts: Facts) -> str:
    """``MlpPolicy with net_arch=..., activation_fn=Tanh (assumed)`` for messages."""
    parts = []
    for key, value in facts.policy_kwargs.items():
        shown = value.rsplit(".", 1)[-1] if key == "activation_fn" else value
        parts.append(f"{key}={shown!r}" + (" (assumed)" if key in facts.assumed else ""))
    alias = facts.alias + (" (assumed)" if "policy_class" in facts.assumed else "")
    return f"{alias} with {', '.join(parts) or 'no policy_kwargs'}"


def _warn(text: str) -> None:
    warnings.warn(text, RlportWarning, stacklevel=4)


def sb3_reference(
    facts: Facts, state: dict[str, np.ndarray], obs: SpaceSpec, act: SpaceSpec, stats: Any, what: str
) -> Reference | None:
    """SB3's policy built from ``facts`` with ``state`` loaded, as the bundle's reference; None (warned) without SB3.

    Raises:
        UnsupportedError: SB3 cannot build the policy from the facts, or the tensors do not fit it
            (missing, left over or of other shapes); the message lists the facts, assumed ones marked.
    """
    try:
        import torch

        cls = policy_class(facts.policy_class)
    except (ImportError, MissingDependencyError) as exc:
        _warn(f"{what}: no reference compared: the bundle acts as rlport reads the tensors, but stable-baselines3 "
              f"could not rebuild the policy here ({exc}); install rlport[sb3] to have it checked")  # fmt: skip
        return None
    if facts.legacy:
        _warn(f"{what}: no reference compared: {facts.legacy}")
        return None
    policy = _build(cls, facts, obs, act, what)
    tensors = {name: torch.from_numpy(np.array(value)) for name, value in state.items()}  # writable copies
    try:
        policy.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise UnsupportedError(
            f"{what}: its tensors do not fit the policy stable-baselines3 builds from {describe_facts(facts)}: "
            f"{capped(str(exc), 600)}; a tensor is missing or left over (the file was edited or saved from another "
            "policy), or a fact given in policy_kwargs is wrong"
        ) from exc
    policy.set_training_mode(False)
    return Reference(
        name="stable-baselines3",
        predict=_predict(policy, _normalizer(stats, obs)),
        observations=_observations(obs),
        recurrent=hasattr(policy, "lstm_actor"),
        describe=f"stable-baselines3 {_version()} {cls.__name__} from the state_dict, predict(deterministic=True)",
    )


def _build(cls: type, facts: Facts, obs: SpaceSpec, act: SpaceSpec, what: str) -> Any:
    """``cls(observation_space, action_space, lr_schedule, **policy_kwargs)``, as SB3's ``_setup_model`` calls it."""
    kwargs, use_sde = policy_kwargs_of(facts.policy_kwargs, {}, {})
    parameters = inspect.signature(cls.__init__).parameters
    if "use_sde" in parameters:
        kwargs["use_sde"] = use_sde
    arguments: list[Any] = [space_from_spec(obs), space_from_spec(act)]
    if "lr_schedule" in parameters:
        arguments.append(lambda _progress: 3e-4)  # the optimizer's rate: acting does not use it
    try:
        return cls(*arguments, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError, NotImplementedError) as exc:
        raise UnsupportedError(
            f"{what}: stable-baselines3 cannot build {cls.__name__} from {describe_facts(facts)} "
            f"({type(exc).__name__}: {capped(str(exc))}); a fact given in policy_kwargs or assumed is wrong"
        ) from exc


def _predict(policy: Any, normalize: Callable[[Any], Any] | None) -> Callable[..., Any]:
    def predict(obs: Any, state: Any, episode_start: Any) -> tuple[Any, Any]:
        obs = normalize(obs) if normalize is not None else obs
        return policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)

    return predict


def _observations(obs: SpaceSpec) -> Callable[[int], Any]:
    """Observations sampled from the gymnasium space (seeded), stacked into a batch."""

    def observations(count: int) -> Any:
        space = copy.deepcopy(space_from_spec(obs))
        space.seed(_SEED)
        samples = [space.sample() for _ in range(count)]
        if isinstance(samples[0], dict):
            return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
        return np.stack(samples)

    return observations


def _normalizer(stats: Any, obs: SpaceSpec) -> Callable[[Any], Any] | None:
    """SB3's own ``VecNormalize.normalize_obs`` over the file's statistics (no env needed to call it)."""
    if stats is None or not stats.norm_obs or stats.obs_rms is None:
        return None
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import VecNormalize

    def running(values: Any) -> RunningMeanStd:
        rms = RunningMeanStd(shape=np.shape(values.mean))
        rms.mean, rms.var = np.asarray(values.mean), np.asarray(values.var)
        return rms

    vec_normalize = object.__new__(VecNormalize)  # only the statistics normalize_obs reads
    vec_normalize.norm_obs, vec_normalize.epsilon, vec_normalize.clip_obs = True, stats.epsilon, stats.clip_obs
    rms = stats.obs_rms
    vec_normalize.obs_rms = {k: running(v) for k, v in rms.items()} if isinstance(rms, dict) else running(rms)
    keys = stats.norm_obs_keys
    vec_normalize.norm_obs_keys = list(rms) if isinstance(rms, dict) and keys is None else keys
    return vec_normalize.normalize_obs


def _version() -> str:
    try:
        return metadata.version("stable-baselines3")
    except metadata.PackageNotFoundError:
        return "(version unknown)"
