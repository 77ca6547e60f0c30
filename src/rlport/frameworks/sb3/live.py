"""Export a live Stable-Baselines3 / sb3-contrib model to a bundle.

Example:
    >>> from stable_baselines3 import PPO                                  # doctest: +SKIP
    >>> model = PPO("MlpPolicy", "CartPole-v1").learn(20_000)              # doctest: +SKIP
    >>> rlport.from_sb3(model, env_id="CartPole-v1").save("cartpole.rlp")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import math
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np

from rlport.assemble import Reference, assemble
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.errors import MissingDependencyError, UnsupportedError
from rlport.frameworks.sb3.policies import VARIABLES, build_graph, state_dict, torch_variables
from rlport.frameworks.sb3.vecnormalize import vec_normalize_settings
from rlport.readers import safe_pickle
from rlport.readers.gym_spaces import spec_from_space

__all__ = ["from_sb3", "provenance", "jsonable", "settings"]


def _version(package: str) -> str | None:
    from importlib import metadata  # here: ~20 ms of imports an import of a file does not need

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance(model: Any) -> dict[str, Any]:
    """Where and with what the model was made (docs/FORMAT.md section 6); ``assemble`` adds when and by what."""
    return {
        "framework": "stable-baselines3",
        "framework_version": _version("stable-baselines3"),
        "sb3_contrib": _version("sb3-contrib"),
        "algorithm": type(model).__name__,
        "policy_class": type(model.policy).__name__,
        "num_timesteps": int(getattr(model, "num_timesteps", 0)),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "gymnasium": _version("gymnasium"),
        "device": str(getattr(model, "device", "cpu")),
        "platform": f"{platform.system()}-{platform.machine()}",
    }


def jsonable(value: Any) -> Any:
    """A JSON-able copy: classes become ``"module.Name"``, numpy values plain numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, safe_pickle.GlobalRef):  # a class named by a pickle that was read, never imported
        return safe_pickle.global_name(value) or repr(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    return repr(value)


# constructor arguments that are not training settings (or are recorded elsewhere in the bundle)
_NOT_SETTINGS = frozenset(
    {"policy", "env", "policy_kwargs", "use_sde", "device", "verbose", "seed", "tensorboard_log", "n_envs",
     "num_timesteps", "start_time", "monitor_wrapper", "stats_window_size", "action_noise",
     "ep_info_buffer", "ep_success_buffer"}
)  # fmt: skip


def settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The plain-valued (numbers, strings, booleans, lists of them) training settings among an algorithm's attributes.

    What ``rlport.to_sb3`` passes back to the algorithm's constructor so that training resumes
    with the same hyperparameters. Classes (``replay_buffer_class``) are kept as dotted names and
    ``*_kwargs`` dicts with their plain entries; private names, other objects and ``None`` are left out.
    """
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("_") or key in _NOT_SETTINGS:
            continue
        if key.endswith("_class"):  # replay_buffer_class ...: kept by name, imported back by to_sb3
            if name := _class_name(value):
                kept[key] = name
            continue
        if key.endswith("_kwargs") and isinstance(value, Mapping):  # replay_buffer_kwargs: its plain entries
            plain = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in value.items() if _plain(v)}
            plain = {k: v for k, v in plain.items() if isinstance(k, str)}  # keys from a file may be anything
            if plain:
                kept[key] = plain
            continue
        if key == "learning_rate" and _plain(value) and not isinstance(value, str) and not value > 0:
            continue  # a decayed schedule's end value, as SB3 saves some: resuming with it would not learn
        if isinstance(value, (list, tuple)) and value and all(_plain(v) for v in value):
            kept[key] = [v.item() if isinstance(v, np.generic) else v for v in value]  # train_freq=(4, "step")
        elif _plain(value):
            kept[key] = value.item() if isinstance(value, np.generic) else value
    return kept


def _class_name(value: Any) -> str | None:
    """``"module.Qual.Name"`` of a class (live) or of an inert reference to one (imported)."""
    if isinstance(value, safe_pickle.GlobalRef):  # itself a (stand-in) class: test it first
        return safe_pickle.global_name(value)
    return f"{value.__module__}.{value.__qualname__}" if isinstance(value, type) else None


def _plain(value: Any) -> bool:
    if isinstance(value, np.generic):
        value = value.item()
    return isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))


def _live_settings(model: Any) -> dict[str, Any]:
    """The model's constructor arguments; a schedule is kept as its start value."""
    values: dict[str, Any] = {}
    for name in inspect.signature(type(model).__init__).parameters:
        value = getattr(model, name, None)
        if name in _NOT_SETTINGS or (isinstance(value, type) and not name.endswith("_class")):
            continue
        if hasattr(value, "frequency") and hasattr(value, "unit"):  # TrainFreq(4, TrainFrequencyUnit.STEP)
            value = [value.frequency, getattr(value.unit, "value", str(value.unit))]
        elif callable(value) and not isinstance(value, type):  # a schedule: kept as its start value
            try:
                value = float(value(1.0))
            except Exception:  # noqa: BLE001 - not a schedule after all: not a setting to record
                continue
        values[name] = value
    return settings(values)


def _env_id(model: Any) -> str | None:
    """The gymnasium id of the model's training env, when it has one."""
    env = getattr(model, "env", None)
    for sub in getattr(env, "envs", [])[:1]:
        spec = getattr(getattr(sub, "unwrapped", sub), "spec", None)
        return getattr(spec, "id", None)
    return None


def _reference(model: Any, vec_normalize: Any) -> Reference:
    """SB3 as the bundle's reference: observations sampled from its space, its own deterministic actions."""

    def observations(count: int) -> Any:
        space = copy.deepcopy(model.observation_space)  # seeding the model's own space would change its env's samples
        space.seed(12345)
        samples = [space.sample() for _ in range(count)]
        if isinstance(samples[0], dict):
            return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
        return np.stack(samples)

    def predict(obs: Any, state: Any, episode_start: Any) -> tuple[Any, Any]:
        if vec_normalize is not None:
            obs = vec_normalize.normalize_obs(obs)
        return model.predict(obs, state=state, episode_start=episode_start, deterministic=True)

    return Reference(
        name="stable-baselines3",
        predict=predict,
        observations=observations,
        recurrent=hasattr(model.policy, "lstm_actor"),
        describe=f"stable-baselines3 {_version('stable-baselines3')} predict(deterministic=True)",
        cannot_express=_custom_code(model.policy),
    )


_LIBRARIES = ("stable_baselines3.", "sb3_contrib.", "torch.")
"""Modules whose classes the graph is built from: anything else is the user's own code."""


def _library_class(cls: type) -> bool:
    return cls.__module__.startswith(_LIBRARIES)


def _overrides(obj: Any) -> list[str]:
    """``Class.method`` for each method that classes outside SB3, sb3-contrib and torch override in ``obj``."""
    mro = type(obj).__mro__
    base = next((cls for cls in mro if _library_class(cls)), object)
    return [
        f"{cls.__qualname__}.{name}"
        for cls in mro[: mro.index(base)]
        for name, value in vars(cls).items()
        if name != "__init__" and hasattr(base, name) and (callable(value) or isinstance(value, property))
    ]


def _custom_code(policy: Any) -> list[str]:
    """What the graph may not follow: overridden methods of the policy and its modules, custom module classes."""
    found = _overrides(policy)
    for name, module in policy.named_modules():
        if name and not _library_class(type(module)):
            cls = type(module)
            found.append(f"{name} ({cls.__module__}.{cls.__qualname__})")
            found += [method for method in _overrides(module) if method not in found]
    return found


def from_sb3(
    model: Any,
    vec_normalize: Any = None,
    env_id: str | None = None,
    probes: int = 256,
    include_critic: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    fingerprint: bool = True,
    evaluate: int = 10,
) -> Bundle:
    """Export a live SB3 / sb3-contrib model (and its VecNormalize statistics) to a bundle.

    Args:
        model: a trained or loaded ``stable_baselines3`` / ``sb3_contrib`` algorithm.
        vec_normalize: the ``VecNormalize`` wrapper the model was trained with; its observation
            statistics become the bundle's pre-processing (return normalisation is recorded only).
        env_id: the gymnasium id to run the policy in; by default the model's training env id.
        probes: how many parity probes to record (observations and SB3's deterministic actions);
            lowered for large observations so that they take about 1 MiB at most (16 at least).
        include_critic: also keep the value / Q networks and every other policy tensor, so that
            training can resume elsewhere. By default only what acting needs is kept.
        env_kwargs: keyword arguments for ``gymnasium.make``.
        fingerprint: record the env's dynamics fingerprint for ``rlport verify`` (when the env can be made).
        evaluate: record the returns of this many deterministic episodes for ``rlport verify`` (0: none).

    Returns:
        The :class:`~rlport.bundle.bundle.Bundle`; call ``.save(path)`` to write it.

    Raises:
        UnsupportedError: a layer, space or policy class that the graph cannot express; or a bundle
            whose deterministic actions differ from SB3's own on the probes (checked before it is
            returned, even with ``probes=0``), e.g. a policy subclass that overrides ``_predict`` or
            ``forward``: the message names the overridden methods and custom modules.
    """
    if not hasattr(model, "policy") or not hasattr(model, "observation_space"):
        raise UnsupportedError(f"from_sb3 needs a stable-baselines3 model, found {type(model).__name__}")
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError('from_sb3 needs torch; pip install "rlport[sb3]"') from exc
    model.policy.set_training_mode(False)
    builder = build_graph(model, vec_normalize)
    tensors = dict(builder.tensors)
    full = state_dict(model.policy)
    variables = torch_variables(model) if include_critic else {}
    if include_critic:
        for name, value in full.items():
            tensors.setdefault(name, value)
        tensors.update({VARIABLES + name: value for name, value in variables.items()})
    source = {
        "framework": "stable-baselines3",
        "algorithm": type(model).__name__,
        "algorithm_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "policy_class": f"{type(model.policy).__module__}.{type(model.policy).__qualname__}",
        "policy_kwargs": jsonable(getattr(model, "policy_kwargs", {}) or {}),
        "state_dict": [name for name in full if name in tensors],
        "includes_critic": bool(include_critic),
        "squash_output": bool(getattr(model.policy, "squash_output", False)),
        "use_sde": bool(getattr(model, "use_sde", False)),
        "hyperparameters": _live_settings(model),
    }
    if variables:
        source["variables"] = list(variables)
    if getattr(builder, "constants", None):  # tensors rlport made from captured modules' literals: fixed in training
        source["constants"] = list(builder.constants)
    if vec_normalize is not None:
        source["vec_normalize"] = vec_normalize_settings(vec_normalize)
    bundle = assemble(
        builder.build(builder.output),
        tensors,
        spec_from_space(model.observation_space),
        spec_from_space(model.action_space),
        EnvSpec(id=env_id or _env_id(model), kwargs=dict(env_kwargs or {})),
        source,
        provenance(model),
        probes=probes,
        reference=_reference(model, vec_normalize),
        what="the exported model",
    )
    from rlport.verify.record import record_verification

    record_verification(bundle, fingerprint=fingerprint, evaluate=evaluate)
    return bundle
