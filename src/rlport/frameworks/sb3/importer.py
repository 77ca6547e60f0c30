"""``rlport.import_sb3``: an SB3 ``.zip`` (and its ``vecnormalize.pkl``) to a bundle, torch-free.

Example:
    >>> bundle = rlport.import_sb3("model.zip", vecnormalize="vecnormalize.pkl", env_id="Pendulum-v1")  # doctest: +SKIP
    >>> bundle.save("model.rlp")                                                                        # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rlport.assemble import assemble
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.errors import BundleError, RlportError, RlportWarning, UnsupportedError
from rlport.frameworks.sb3.classes import MAX_CLASS_NAME_LENGTH, check_class_name, check_recorded_classes
from rlport.frameworks.sb3.live import jsonable, settings
from rlport.frameworks.sb3.policies import VARIABLE_NAME, VARIABLES, build_graph
from rlport.frameworks.sb3.skeleton import build_policy
from rlport.frameworks.sb3.vecnormalize import MAX_VECNORMALIZE_SIZE, read_vecnormalize, vec_normalize_settings
from rlport.frameworks.sb3.zip import SB3File, decode_entry, read_sb3_zip
from rlport.frameworks.zoo.files import run_of_model
from rlport.readers import safe_pickle
from rlport.readers.gym_spaces import spec_from_space
from rlport.readers.untrusted import echo, read_regular
from rlport.verify.record import platform_key, record_or_warn

__all__ = ["import_sb3", "algorithm_of", "trusted_module", "MAX_TIMESTEPS"]

MAX_TIMESTEPS = 1 << 62
"""The largest ``num_timesteps`` read from an SB3 file (it must fit the int64 SB3 counts in)."""

_ALGORITHMS = [
    ("sb3_contrib.qrdqn.", "QRDQN"),
    ("sb3_contrib.tqc.", "TQC"),
    ("sb3_contrib.crossq.", "CrossQ"),
    ("sb3_contrib.ars.", "ARS"),
    ("sb3_contrib.trpo.", "TRPO"),
    ("sb3_contrib.ppo_mask.", "MaskablePPO"),
    ("sb3_contrib.common.maskable.", "MaskablePPO"),
    ("sb3_contrib.ppo_recurrent.", "RecurrentPPO"),
    ("sb3_contrib.common.recurrent.", "RecurrentPPO"),
    ("stable_baselines3.dqn.", "DQN"),
    ("stable_baselines3.sac.", "SAC"),
    ("stable_baselines3.td3.", "TD3"),
    ("stable_baselines3.ddpg.", "DDPG"),
    ("stable_baselines3.ppo.", "PPO"),
    ("stable_baselines3.a2c.", "A2C"),
]


# attributes that only one of the algorithms sharing ``ActorCriticPolicy`` saves
_ON_POLICY_HINTS = [("cg_max_steps", "TRPO"), ("clip_range", "PPO"), ("gae_lambda", "A2C")]


def algorithm_of(policy_class: str, data: dict[str, Any] | None = None) -> str | None:
    """The algorithm a policy class belongs to, when its module says; else what the saved attributes say.

    A2C, PPO and TRPO share ``ActorCriticPolicy``: TRPO saves ``cg_max_steps``, PPO ``clip_range``,
    and A2C neither (but ``gae_lambda`` like the others).
    """
    for prefix, name in _ALGORITHMS:
        if policy_class.startswith(prefix):
            return name
    if policy_class.startswith("stable_baselines3.common.policies."):
        for key, name in _ON_POLICY_HINTS:
            if key in (data or {}):
                return name
    return None


_NOT_DECODED = frozenset({"observation_space", "action_space", "ep_info_buffer", "ep_success_buffer"})
"""``data`` entries that :func:`~rlport.frameworks.sb3.live.settings` leaves out whatever they hold (spaces, the
episode buffers), like the private ``_last_obs``...: not decoded for the training settings."""


def _training_settings(f: SB3File) -> dict[str, Any]:
    """The plain hyperparameters of ``data``; serialized ones only when the allow-list reader takes them.

    Schedules (``learning_rate``/``clip_range`` saved as functions) are code and are never read:
    ``to_sb3`` then uses the algorithm's defaults unless the user passes them.
    """
    values: dict[str, Any] = {}
    for key, entry in f.data.items():
        if key.startswith("_") or key in _NOT_DECODED:
            continue
        try:
            value = decode_entry(entry, f"data[{key!r}]")
        except RlportError:
            continue
        if (safe_pickle.global_name(value) or "").endswith(".TrainFreq") and len(value.args) == 2:
            count, unit = value.args  # SB3 >= 1.1: TrainFreq(frequency, TrainFrequencyUnit(...))
            value = [count, unit.args[0] if isinstance(unit, safe_pickle.Instance) and unit.args else "step"]
        values[key] = value
    return settings(values)


def _number(f: SB3File, key: str, default: float, low: float, high: float) -> float:
    """``data[key]``, a JSON number in ``[low, high]`` (``default`` when absent or null)."""
    value = f.data.get(key)
    if value is None:
        return default
    if type(value) not in (int, float) or not low <= value <= high:
        raise BundleError(f"{f.path}: data[{key!r}] should be a number from {low} to {high}, found {echo(value)}; "
                          "the file is damaged or was edited")  # fmt: skip
    return value


def trusted_module(env_id: str | None, env_module: str | None) -> str | None:
    """The module an env id the caller typed may import: theirs to choose (``"my_pkg:MyEnv"`` -> ``"my_pkg"``)."""
    if env_module is None and isinstance(env_id, str) and ":" in env_id:
        return env_id.split(":", 1)[0]
    return env_module


def _provenance(f: SB3File, algorithm: str | None) -> dict[str, Any]:
    """Where and with what the file was made, from its ``system_info.txt``; ``assemble`` adds when and by what."""
    info = f.system_info
    return {
        "framework": "stable-baselines3",
        "framework_version": f.sb3_version,
        "algorithm": algorithm or algorithm_of(f.policy_class, f.data),
        "policy_class": f.policy_class.rsplit(".", 1)[-1],
        "num_timesteps": int(_number(f, "num_timesteps", 0, 0, MAX_TIMESTEPS)),
        "python": info.get("Python"),
        "numpy": info.get("Numpy"),
        "torch": info.get("PyTorch"),
        "gymnasium": info.get("Gymnasium"),  # SB3 >= 2.0 (it may list "OpenAI Gym" too: installed, not used)
        "gym": None if "Gymnasium" in info else info.get("Gym"),  # SB3 < 2.0 trained with gym, not gymnasium
        "gpu_enabled": info.get("GPU Enabled"),
        "platform": platform_key(info.get("OS")),  # "Linux-x86_64", as from_sb3 records it
        "os": info.get("OS"),
        "imported_from": os.path.basename(f.path),
    }


_TRAINING_ONLY = frozenset({"optimizer_class", "replay_buffer_class", "rollout_buffer_class"})
"""Class settings acting does not depend on: a name outside the table is set aside, not refused."""


def _apply_class_table(source: dict[str, Any], what: str) -> None:
    """Check the class names of ``source`` against rlport's table (``sb3_classes``), before they are recorded.

    A class that shapes the policy (its class, activation, extractor) must be in the table, or the
    import is refused. A training-only class outside it (a custom optimizer or buffer) is left out of
    the recorded settings and listed under ``source["refused_classes"]``: the bundle acts as the file
    does, and ``to_sb3`` asks for that class (``replay_buffer_class=YourClass``) instead of guessing.
    """
    refused: dict[str, str] = {}
    for section in (source["policy_kwargs"], source["hyperparameters"]):
        for key in [k for k in section if k in _TRAINING_ONLY and section[k] is not None]:
            try:
                check_class_name(section[key], key, what)
            except UnsupportedError:
                name = section.pop(key)
                refused[key] = name if isinstance(name, str) and len(name) <= MAX_CLASS_NAME_LENGTH else echo(name)
                section.pop(key.removesuffix("_class") + "_kwargs", None)
    check_recorded_classes(source["policy_kwargs"], source["hyperparameters"], source["policy_class"], what)
    if refused:
        source["refused_classes"] = refused
        warnings.warn(
            f"{what}: {', '.join(f'{k}={v}' for k, v in refused.items())} is not a class rlport imports; the bundle "
            f"acts as the file does, and to_sb3 will ask for it ({', '.join(f'{k}=YourClass' for k in refused)})",
            RlportWarning,
            stacklevel=3,
        )


def _warn_unused_statistics(path: str | os.PathLike) -> None:
    """Say so when ``path`` is the model of an RL Zoo run whose ``vecnormalize.pkl`` is left out."""
    run = run_of_model(path)
    statistics = None if run is None else run / Path(path).stem / "vecnormalize.pkl"
    if statistics is not None and statistics.is_file():
        warnings.warn(
            f"{path} is the model of the RL Zoo run {run}, whose {statistics} is not applied: the bundle acts on "
            f"unnormalised observations, unlike the run's agent; import the run folder to apply them",
            RlportWarning,
            stacklevel=3,
        )


def import_sb3(
    path: str | os.PathLike,
    vecnormalize: str | os.PathLike | None = None,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    probes: int = 256,
    include_critic: bool = False,
    algorithm: str | None = None,
    env: EnvSpec | None = None,
    fingerprint: bool = True,
    evaluate: int = 0,
    env_module: str | None = None,
) -> Bundle:
    """Import an SB3 / sb3-contrib ``.zip`` saved by any SB3 version from 1.0, without torch or pickle.

    Args:
        path: the model ``.zip``.
        vecnormalize: its ``vecnormalize.pkl``, whose observation statistics become pre-processing.
            Without it, a model that sits in an RL Zoo run folder beside statistics (``RUN/ENV.zip``,
            ``RUN/ENV/vecnormalize.pkl``) is imported alone with a warning: ``import_zoo(RUN)`` applies them.
        env_id: the gymnasium env id to record (SB3 files do not name their env).
        env_kwargs: kwargs for ``gymnasium.make``.
        probes: how many probes to record (actions computed by rlport's runtime at import).
        include_critic: also keep every other tensor of ``policy.pth`` (value / Q networks).
        algorithm: the algorithm name, when the policy class does not tell (A2C, PPO, TRPO).
        env: a full env spec (wrappers...) instead of ``env_id``/``env_kwargs``.
        fingerprint: record the env's dynamics fingerprint for ``rlport verify``. When the env cannot be made
            here, or its spaces differ from the file's, the bundle is made all the same (weights and spaces
            come from the file), with an ``RlportWarning`` saying why nothing was recorded.
        evaluate: record the returns of this many deterministic episodes (0: none; zoo runs have published ones).
        env_module: the one module an env id of the form ``module:EnvName`` may make gymnasium import
            (an ``env_id`` passed here names its own).

    Raises:
        BundleError, UnsafeFileError, UnsupportedError: see :func:`rlport.frameworks.sb3.zip.read_sb3_zip`.
    """
    f = read_sb3_zip(path)
    stats = None
    if vecnormalize is not None:
        raw = read_regular(vecnormalize, MAX_VECNORMALIZE_SIZE, str(vecnormalize))
        stats = read_vecnormalize(raw, what=str(vecnormalize))
    else:
        _warn_unused_statistics(path)
    env_module = trusted_module(env_id, env_module)
    policy = build_policy(f.policy_class, f.state_dict, f.observation_space, f.action_space, f.policy_kwargs)
    model = SimpleNamespace(policy=policy, exploration_rate=float(_number(f, "exploration_rate", 0.0, 0.0, 1.0)))
    builder = build_graph(model, stats)
    tensors = dict(builder.tensors)
    variables = {k: v for k, v in f.variables.items() if VARIABLE_NAME.fullmatch(k)} if include_critic else {}
    if include_critic:
        for name, value in f.state_dict.items():
            tensors.setdefault(name, value)
        tensors.update({VARIABLES + name: value for name, value in variables.items()})
    source = {
        "framework": "stable-baselines3",
        "algorithm": algorithm or algorithm_of(f.policy_class, f.data),
        "policy_class": f.policy_class,
        "policy_kwargs": jsonable({**f.policy_kwargs, **f.class_names}),
        "state_dict": [name for name in f.state_dict if name in tensors],
        "includes_critic": bool(include_critic),
        "squash_output": bool(policy.squash_output),
        "use_sde": bool(f.data.get("use_sde") or f.policy_kwargs.get("use_sde")),
        "hyperparameters": _training_settings(f),
        "imported": True,
        "sb3_version": f.sb3_version,
    }
    _apply_class_table(source, str(path))
    if variables:
        source["variables"] = list(variables)
    if stats is not None:
        source["vec_normalize"] = vec_normalize_settings(stats)
    bundle = assemble(
        builder.build(builder.output),
        tensors,
        spec_from_space(f.observation_space),
        spec_from_space(f.action_space),
        env or EnvSpec(id=env_id, kwargs=dict(env_kwargs or {})),
        source,
        _provenance(f, algorithm),
        probes=probes,
        runtime_note="rlport numpy runtime at import (SB3 was not run)",
        what=str(path),
    )
    record_or_warn(bundle, str(path), fingerprint=fingerprint, evaluate=evaluate, env_module=env_module)
    return bundle
