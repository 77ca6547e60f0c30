"""``export_zoo``: a bundle as an RL Baselines3 Zoo run folder, which the zoo's own ``enjoy`` plays as trained.

The zoo applies normalisation, env wrappers and frame stacking only when the run's
``ENV/config.yml`` says so (``rl_zoo3.utils.get_saved_hyperparams`` and ``create_test_env``);
with the model and its statistics alone it plays unnormalised. The folder written here is the
one the zoo writes after training::

    DIR/ENV.zip                  the SB3 model (as ``export_sb3`` writes it)
    DIR/ENV/config.yml           hyperparameters, normalize, env_wrapper, frame_stack, policy_kwargs
    DIR/ENV/args.yml             algo, env, env_kwargs
    DIR/ENV/vecnormalize.pkl     the VecNormalize statistics, when the bundle normalises

``enjoy`` finds runs at ``FOLDER/ALGO/ENV_N``: export to ``logs/a2c/Pendulum-v1_1`` and play it
with ``python -m rl_zoo3.enjoy --algo a2c --env Pendulum-v1 -f logs --exp-id 1``.

Example:
    >>> export_zoo("pendulum.rlp", "logs/a2c/Pendulum-v1_1")    # doctest: +SKIP
"""

from __future__ import annotations

import keyword
import math
import os
import re
import shlex
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rlport.bundle.bundle import Bundle
from rlport.errors import BundleError, MissingDependencyError, RlportWarning, UnsupportedError, short

__all__ = ["export_zoo", "zoo_config", "zoo_args", "enjoy_command", "ZOO_ALGOS"]

ZOO_ALGOS = {
    "A2C": "a2c", "PPO": "ppo", "DQN": "dqn", "SAC": "sac", "TD3": "td3", "DDPG": "ddpg", "QRDQN": "qrdqn",
    "TQC": "tqc", "TRPO": "trpo", "ARS": "ars", "RecurrentPPO": "ppo_lstm", "MaskablePPO": "ppo_mask",
    "CrossQ": "crossq",
}  # fmt: skip
"""The zoo's algorithm names (its ``--algo``), by SB3 class name."""

_DEFAULT_BUFFERS = frozenset(
    f"stable_baselines3.common.buffers.{name}"
    for name in ("RolloutBuffer", "DictRolloutBuffer", "ReplayBuffer", "DictReplayBuffer")
)
_ZOO_EVALUATES = frozenset({"replay_buffer_class", "replay_buffer_kwargs"})
"""``*_class`` / ``*_kwargs`` hyperparameters the zoo reads as Python expressions (besides ``policy_kwargs``)."""
_NOT_SETTINGS = frozenset({"policy_class", "n_envs"})


def export_zoo(
    bundle: Bundle | str | os.PathLike,
    folder: str | os.PathLike,
    *,
    overwrite: bool = False,
    allow_missing_critic: bool = False,
    env_module: str | None = None,
) -> list[Path]:
    """Write ``bundle`` as an RL Zoo run folder, all files or none.

    Args:
        bundle: the bundle (made from an SB3 model) or its path.
        folder: the run folder to write, ``FOLDER/ALGO/ENV_N`` for the zoo's ``enjoy`` to find it.
            Its parent must exist. A new folder appears whole (written beside it, then renamed).
        overwrite: write into an existing, non-empty folder, replacing files of the same names
            (default False: refused).
        allow_missing_critic: see :func:`rlport.to_sb3`.
        env_module: the one module a recorded ``module:EnvName`` env id may import.

    Returns:
        The paths written: ``ENV.zip``, ``ENV/config.yml``, ``ENV/args.yml`` and, when the
        bundle normalises, ``ENV/vecnormalize.pkl``.

    Raises:
        BundleError: the folder exists and is not empty (without ``overwrite``), or cannot be written.
        UnsupportedError: the bundle records no usable env id, the critic is missing (without
            ``allow_missing_critic``), or something the zoo layout cannot express (see below).

    The hyperparameters are those the bundle records; a schedule was kept as its start value
    (the zoo's ``lin_7e-4`` comes back as ``0.0007``). ``evaluations.npz`` is not written: the
    bundle keeps the published mean, not the episodes.

    Example:
        >>> export_zoo("walker.rlp", "logs/ppo/Walker2d-v4_1")   # doctest: +SKIP
    """
    from rlport.frameworks.sb3.files import check_critic, sb3_files

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    check_critic(bundle, allow_missing_critic)
    folder = Path(folder)
    name = run_name(bundle, env_module)
    args_text = _yaml_text(zoo_args(bundle))
    _check_folder(folder, overwrite)  # before the seconds spent importing torch and SB3
    config_text = _yaml_text(zoo_config(bundle))
    model_bytes, stats_bytes = sb3_files(bundle, allow_missing_critic, env_module, where=folder / f"{name}.zip")
    files = {
        f"{name}.zip": model_bytes,
        f"{name}/config.yml": config_text.encode(),
        f"{name}/args.yml": args_text.encode(),
    }
    if stats_bytes is not None:
        files[f"{name}/vecnormalize.pkl"] = stats_bytes
    _write_folder(folder, files, overwrite)
    return [folder / relative for relative in files]


def run_name(bundle: Bundle, env_module: str | None = None) -> str:
    """The env id as the zoo names its files (``ALE/Pong-v5`` -> ``ALE-Pong-v5``), checked to be a plain file name."""
    from rlport.envs import check_env_id

    if not bundle.env.id:
        raise UnsupportedError(
            "the zoo layout names its files after the env id and the bundle records none; import or export the "
            "model again with its env id (rlport import --env ID, rlport.from_sb3(model, env_id=...))"
        )
    name = check_env_id(bundle.env.id, env_module).replace("/", "-")  # huggingface_sb3's EnvironmentName
    if name in (".", "..") or "\\" in name or "\x00" in name:
        raise UnsupportedError(f"the env id {short(bundle.env.id)} cannot name a file of the zoo layout")
    return name


def zoo_config(bundle: Bundle) -> OrderedDict:
    """``ENV/config.yml`` as the zoo writes it: its hyperparameters file's keys, sorted.

    ``normalize`` holds the VecNormalize settings as a dict literal, ``env_wrapper`` the env's
    wrappers (outermost last), ``frame_stack`` the number of frames, ``policy_kwargs`` a
    Python expression the zoo evaluates (classes as ``nn.ReLU``, ``th.optim.RMSprop``...).

    Raises:
        UnsupportedError: frame stacking that is not the outermost wrapper, or together with
            normalisation (the zoo normalises single frames and stacks them afterwards).
    """
    from rlport.frameworks.sb3.env import normalises

    source, config = bundle.source, {}
    config.update(_settings(_section(source, "hyperparameters")))
    policy = _policy_alias(source)
    if policy:
        config["policy"] = policy
    if source.get("use_sde") is True or _section(source, "policy_kwargs").get("use_sde") is True:
        config["use_sde"] = True
    kwargs = {k: v for k, v in _section(source, "policy_kwargs").items() if k not in ("use_sde", "device")}
    if kwargs:
        config["policy_kwargs"] = _expression(kwargs)
    steps = bundle.provenance.get("num_timesteps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        config["n_timesteps"] = steps
    wrappers, n_stack = _wrappers(bundle)
    if wrappers:
        config["env_wrapper"] = wrappers
    if n_stack:
        if normalises(bundle):
            raise UnsupportedError(
                "the bundle stacks frames and normalises observations; the RL Zoo normalises each frame before "
                "stacking, which this bundle cannot tell apart: export it with --format sb3 instead"
            )
        config["frame_stack"] = n_stack
    if normalises(bundle):
        config["normalize"] = _normalize(source["vec_normalize"])
    return OrderedDict(sorted(config.items()))


def zoo_args(bundle: Bundle) -> OrderedDict:
    """``ENV/args.yml``: the command line the zoo records, as far as the bundle knows it (algo, env, env_kwargs)."""
    algorithm = bundle.source.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in ZOO_ALGOS:
        raise UnsupportedError(
            f"the RL Zoo has no algorithm for {short(algorithm)} (it knows {', '.join(ZOO_ALGOS)}); "
            "export with --format sb3 instead"
        )
    if algorithm == "MaskablePPO":
        warnings.warn(
            "rl_zoo3 2.9 has no ppo_mask algorithm: its enjoy cannot play this run (rlport import reads it)",
            RlportWarning,
            stacklevel=3,
        )
    kwargs = dict(bundle.env.kwargs) or None
    return OrderedDict(sorted({"algo": ZOO_ALGOS[algorithm], "env": bundle.env.id, "env_kwargs": kwargs}.items()))


def enjoy_command(folder: str | os.PathLike, bundle: Bundle) -> str | None:
    """The ``rl_zoo3.enjoy`` command line that plays ``folder``, or None when it is not at ``FOLDER/ALGO/ENV_N``."""
    folder = Path(folder).absolute()
    algo = ZOO_ALGOS.get(str(bundle.source.get("algorithm")))
    match = re.fullmatch(rf"{re.escape(run_name(bundle))}_([0-9]+)", folder.name)
    if algo is None or match is None or folder.parent.name != algo:
        return None
    root = folder.parent.parent
    return (
        f"python -m rl_zoo3.enjoy --algo {algo} --env {shlex.quote(bundle.env.id)} -f {shlex.quote(str(root))} "
        f"--exp-id {int(match.group(1))} --no-render"
    )


def _section(source: dict[str, Any], key: str) -> dict[str, Any]:
    """``source[key]`` (``hyperparameters``, ``policy_kwargs``): a dict, or an error saying the bundle is malformed."""
    value = source.get(key) or {}
    if not isinstance(value, dict):
        raise UnsupportedError(f"the bundle's source.{key} must be a dict, found a {type(value).__name__}")
    return value


def _settings(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded hyperparameters the zoo's config can hold: plain values, and the classes it evaluates."""
    settings = {}
    for key, value in recorded.items():
        if key in _NOT_SETTINGS or not isinstance(key, str):
            continue
        if key.endswith(("_class", "_kwargs")):
            if value is None or value == {} or (isinstance(value, str) and value in _DEFAULT_BUFFERS):
                continue  # what SB3 chooses by itself
            if key in _ZOO_EVALUATES:
                settings[key] = _expression(_fitted(recorded, key, value), key)
            else:
                warnings.warn(
                    f"config.yml: {key} left out, the RL Zoo does not read it from there", RlportWarning, stacklevel=4
                )
            continue
        if _plain(value):
            settings[key] = value
    return settings


def _fitted(recorded: dict[str, Any], key: str, value: Any) -> Any:
    """``replay_buffer_kwargs`` without the entries today's buffer class no longer takes (``online_sampling``)."""
    from rlport.frameworks.sb3.settings import fitted_kwargs, resolve_class

    name = recorded.get("replay_buffer_class")
    if key != "replay_buffer_kwargs" or not isinstance(value, dict) or not isinstance(name, str):
        return value
    return fitted_kwargs(resolve_class(name, "replay_buffer_class"), value, f"config.yml {key}")


def _plain(value: Any, depth: int = 0) -> bool:
    """A value YAML writes without tags: numbers, strings, booleans, None, and lists / dicts of them."""
    if depth > 8:
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _class_expression(name: Any, key: str) -> str:
    """A recorded class name as an expression in the zoo's ``exp_manager`` namespace (``nn``, ``th``, ...).

    Only names rlport's class table lists for ``key``'s role get here: the zoo evaluates this text.
    """
    from rlport.frameworks.sb3.classes import check_class_name

    name = check_class_name(name, key, "the bundle's source")
    module, _, attr = name.rpartition(".")
    if module.startswith("torch.nn.modules."):
        return f"nn.{attr}"
    if module.startswith("torch.optim."):
        return f"th.optim.{attr}"
    if attr in ("HerReplayBuffer", "RMSpropTFLike"):
        return attr  # imported by name in rl_zoo3.exp_manager
    return f"importlib.import_module({module!r}).{attr}"


def _expression(value: Any, key: str = "") -> str:
    """``value`` as Python source (``dict(net_arch=[64, 64], activation_fn=nn.ReLU)``), classes by expression."""
    from rlport.frameworks.sb3.classes import is_class_key

    if is_class_key(key) and value is not None:
        return _class_expression(value, key)
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in value):
            return "dict(" + ", ".join(f"{k}={_expression(v, k)}" for k, v in value.items()) + ")"
        return "{" + ", ".join(f"{k!r}: {_expression(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_expression(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise UnsupportedError(f"config.yml: {key or 'a value'} {short(value)} cannot be written as a Python literal")


def _policy_alias(source: dict[str, Any]) -> str | None:
    """The policy's short name (``MlpPolicy``) as the zoo's config gives it, when the class has one."""
    import importlib

    from rlport.frameworks.sb3.settings import ALGORITHMS

    algorithm, name = source.get("algorithm"), source.get("policy_class")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS or not isinstance(name, str):
        return None
    try:
        cls = getattr(importlib.import_module(ALGORITHMS[algorithm]), algorithm)
    except ImportError as exc:
        raise MissingDependencyError('the zoo export needs stable-baselines3; pip install "rlport[sb3]"') from exc
    aliases = getattr(cls, "policy_aliases", {})
    return next((alias for alias, c in aliases.items() if f"{c.__module__}.{c.__qualname__}" == name), None)


def _wrappers(bundle: Bundle) -> tuple[list[Any], int | None]:
    """The zoo's ``env_wrapper`` list (innermost first) and ``frame_stack``, from the bundle's env spec."""
    wrappers: list[Any] = []
    if bundle.env.max_episode_steps is not None:
        wrappers.append({"gymnasium.wrappers.TimeLimit": {"max_episode_steps": int(bundle.env.max_episode_steps)}})
    n_stack = None
    for wrapper in bundle.env.wrappers:
        kwargs = dict(wrapper.kwargs)
        if n_stack is not None:
            raise UnsupportedError(
                "the bundle's env stacks frames inside another wrapper; the RL Zoo stacks them outermost, "
                "after every env wrapper: export it with --format sb3 instead"
            )
        if wrapper.name == "frame_stack":
            n_stack = int(kwargs.get("n_stack", 0)) or None
        elif wrapper.name == "time_feature":
            name = "sb3_contrib.common.wrappers.TimeFeatureWrapper"
            wrappers.append(name if kwargs in ({}, {"max_steps": 1000}) else {name: kwargs})
        elif wrapper.name == "time_limit":
            wrappers.append({"gymnasium.wrappers.TimeLimit": kwargs})
        else:  # a wrapper recorded by name from a zoo config: given back as it was written
            wrappers.append(wrapper.name if not kwargs else {wrapper.name: kwargs})
    return wrappers, n_stack


def _normalize(settings: dict[str, Any]) -> str:
    """The ``normalize`` entry: the VecNormalize settings as a dict literal, as the zoo's configs write it."""
    keys = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys")
    chosen = {k: settings[k] for k in keys if settings.get(k) is not None}
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in chosen.items()) + "}"


def _yaml_text(data: OrderedDict) -> str:
    """YAML as the zoo writes it (``yaml.dump`` of an OrderedDict: the ``collections.OrderedDict`` tag)."""
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError('the zoo export needs PyYAML; pip install "rlport[sb3]"') from exc
    return yaml.dump(data)


def _check_folder(folder: Path, overwrite: bool) -> None:
    """The run folder can be written: new or empty (or ``overwrite``), below folders that are folders.

    Missing parent folders (the zoo's ``logs/ALGO/``) are made when the run is written, as ``mkdir -p``.
    """
    existing = next((p for p in (folder.parent, *folder.parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise BundleError(f"cannot write the zoo run folder {str(folder)!r}: {str(existing)!r} is a file, not a folder")
    if folder.exists() and not folder.is_dir():
        raise BundleError(f"cannot write the zoo run folder {str(folder)!r}: it is a file; give a folder name")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise BundleError(
            f"cannot write the zoo run folder {str(folder)!r}: it exists and is not empty; choose a new folder "
            "(the zoo numbers runs ENV_1, ENV_2...), or write into it with --force (overwrite=True in Python)"
        )


def _write_folder(folder: Path, files: dict[str, bytes], overwrite: bool) -> None:
    """A new folder: written whole beside ``folder``, then renamed. An existing one: the files, all or none."""
    from rlport.bundle.container import remove_stale_temps, temp_path, write_atomic_group

    _check_folder(folder, overwrite)
    remove_stale_temps(folder)
    if folder.is_dir() and any(folder.iterdir()):
        for relative in files:
            (folder / relative).parent.mkdir(exist_ok=True)
        write_atomic_group([(folder / relative, data, f"the run's {relative}") for relative, data in files.items()])
        return
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot make the folder {str(folder.parent)!r}: {exc.strerror or exc}") from exc
    staging = temp_path(folder)
    try:
        staging.mkdir()
        for relative, data in files.items():
            (staging / relative).parent.mkdir(exist_ok=True)
            (staging / relative).write_bytes(data)
        os.replace(staging, folder)  # onto a missing or empty folder: the run appears whole
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"cannot write the zoo run folder {str(folder)!r}: {exc.strerror or exc}") from exc
