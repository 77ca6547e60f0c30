"""``rlport.to_sb3``: a bundle back into a Stable-Baselines3 / sb3-contrib model, ready to ``.learn()``.

The algorithm, policy class, ``policy_kwargs``, gSDE flag and plain-valued hyperparameters come
from the bundle's ``source`` (written by ``from_sb3`` / ``import_sb3``). SB3 builds a fresh model
with them and the bundle's tensors are loaded into its policy: the "state_dict into a freshly
built model" route, done for the user. Observation statistics come back as a ``VecNormalize``
around the model's env (``model.get_vec_normalize_env()``), with their running counts.

Example:
    >>> model = rlport.to_sb3("walker.rlp")                        # doctest: +SKIP
    >>> model.learn(100_000, reset_num_timesteps=False)            # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.errors import BundleError, MissingDependencyError, RlportWarning, SpaceError, UnsupportedError, require
from rlport.exporters.sb3_env import export_env, normalises, sb3_env, spaces_only_env
from rlport.exporters.sb3_weights import load_variables, load_weights, weights_of
from rlport.importers.sb3_classes import (
    CLASSES,
    ROLE_BASES,
    check_class_name,
    check_recorded_classes,
    hint_for,
    is_class_key,
)

__all__ = ["to_sb3", "export_sb3", "check_critic", "vecnormalize_path", "ALGORITHMS"]

ALGORITHMS = {
    "A2C": "stable_baselines3",
    "PPO": "stable_baselines3",
    "DQN": "stable_baselines3",
    "SAC": "stable_baselines3",
    "TD3": "stable_baselines3",
    "DDPG": "stable_baselines3",
    "TRPO": "sb3_contrib",
    "QRDQN": "sb3_contrib",
    "TQC": "sb3_contrib",
    "CrossQ": "sb3_contrib",
    "ARS": "sb3_contrib",
    "MaskablePPO": "sb3_contrib",
    "RecurrentPPO": "sb3_contrib",
}
_SOURCE = "the bundle's source"
_NOT_ARGUMENTS = frozenset({"self", "policy", "env", "device", "policy_kwargs", "use_sde", "_init_setup_model"})


def to_sb3(
    bundle: Bundle | str | os.PathLike,
    env: Any = None,
    *,
    algorithm: str | None = None,
    device: str = "auto",
    allow_missing_critic: bool = False,
    policy_kwargs: dict[str, Any] | None = None,
    env_module: str | None = None,
    **kwargs: Any,
) -> Any:
    """Rebuild the SB3 / sb3-contrib model a bundle was exported from, with its weights loaded.

    Args:
        bundle: a :class:`Bundle` or the path of a ``.rlp`` file made by ``from_sb3`` / ``import_sb3``.
        env: the env to keep training in (a gymnasium env or an SB3 ``VecEnv``). By default the
            bundle's own env (id, kwargs and wrappers), when it can be made here; otherwise the
            model has no env (like ``PPO.load`` without one) and a warning says so. When the
            bundle normalises observations, the env is wrapped in a ``VecNormalize`` holding the
            bundle's statistics (an env that already is one gets them loaded).
        algorithm: the algorithm name, for bundles that do not record it (A2C, PPO, TRPO).
        device: the torch device of the model (SB3's ``"auto"``: CUDA when there is one, else the CPU;
            ``"cpu"``, ``"cuda"``, ``"cuda:1"``...). A device that is not there is an error, as for
            ``rlport.load(..., backend="torch")``: SB3 alone would fall back to the CPU silently.
        allow_missing_critic: for bundles exported without ``include_critic=True``: build the
            model anyway, with value / Q networks freshly initialised (actions still match).
        policy_kwargs: entries that replace the recorded ``policy_kwargs`` (a custom class, say).
        env_module: the one module a recorded ``module:EnvName`` env id may import
            (see :func:`rlport.envs.check_env_id`); other such ids are refused with ``UnsafeFileError``.
        **kwargs: algorithm arguments that replace the recorded hyperparameters (``buffer_size=``...).

    Returns:
        The SB3 model: ``model.predict`` gives the bundle's actions (observations normalised by
        ``model.get_vec_normalize_env()`` where there is one), and ``model.learn`` continues
        (with the learned entropy coefficient of SAC/TQC/CrossQ when the bundle keeps the critic).

    Raises:
        MissingDependencyError: stable-baselines3 (or sb3-contrib) is not installed.
        UnsupportedError: not an SB3 bundle, critic missing, a ``device`` that is not there, or
            weights that do not fit the model this SB3 version builds.
        SpaceError: ``env`` has other spaces than the bundle.

    Example:
        >>> model = rlport.to_sb3("pendulum.rlp", allow_missing_critic=True)   # doctest: +SKIP
        >>> action, _ = model.predict(obs, deterministic=True)                 # doctest: +SKIP
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    source = bundle.source
    if source.get("framework") != "stable-baselines3":
        raise UnsupportedError(
            "this bundle was not made from a Stable-Baselines3 model (source framework: "
            f"{_capped(repr(source.get('framework')))}); to_sb3 needs one exported by rlport.from_sb3 or imported "
            "by rlport import"
        )
    _check_classes(source, policy_kwargs or {}, kwargs)  # every recorded class name, before anything is imported
    cls = _algorithm_class(algorithm or source.get("algorithm"))
    _check_device(device)
    policy = _policy_class(source.get("policy_class"))
    tensors, net_arch = weights_of(bundle)
    model_kwargs, use_sde = _policy_kwargs(source.get("policy_kwargs") or {}, source, policy_kwargs or {})
    _check_sizes(source.get("policy_kwargs") or {}, policy_kwargs or {}, bundle)
    if net_arch is not None and "net_arch" not in (policy_kwargs or {}):
        model_kwargs["net_arch"] = net_arch
    venv = sb3_env(bundle, env, cls, env_module)
    recorded = _recorded_classes(source.get("hyperparameters") or {}, kwargs, venv is not None)
    arguments = _arguments(cls, {**recorded, **kwargs}, bundle, venv is not None)
    if "use_sde" in inspect.signature(cls.__init__).parameters:
        arguments["use_sde"] = use_sde
    try:
        model = _build(cls, policy, venv, device, model_kwargs, arguments, bundle)
    except MemoryError as exc:  # numpy refuses a buffer (buffer_size, n_steps) larger than this machine can hold
        raise UnsupportedError(
            f"{cls.__name__}'s buffers for the recorded settings do not fit in memory ({_capped(exc)}); pass smaller "
            "ones to to_sb3 (buffer_size=, n_steps=)"
        ) from exc
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError, OverflowError) as exc:
        raise UnsupportedError(
            f"{cls.__name__} of this stable-baselines3 cannot be built with the recorded settings "
            f"(policy_kwargs={_capped(model_kwargs)}, {_capped(arguments)}): {type(exc).__name__}: {_capped(exc)}; "
            "pass the offending argument to to_sb3 (policy_kwargs= or a keyword)"
        ) from exc
    load_weights(model, tensors, bool(source.get("includes_critic")), allow_missing_critic)
    load_variables(model, bundle)
    model.num_timesteps = int(bundle.provenance.get("num_timesteps") or 0)
    return model


def export_sb3(
    bundle: Bundle | str | os.PathLike,
    path: str | os.PathLike,
    vecnormalize: str | os.PathLike | None = None,
    allow_missing_critic: bool = False,
    *,
    overwrite: bool = False,
    env_module: str | None = None,
) -> list[Path]:
    """Write the bundle as an SB3 ``.zip`` (and its VecNormalize statistics) that today's SB3 loads with ``ALGO.load``.

    The model carries the observation space of the bundle's env as made here (today's bounds, so
    that ``ALGO.load(path, env=gym.make(env_id))`` passes SB3's space check); when that env cannot
    be made, the bundle's recorded spaces, with a warning.

    Args:
        bundle: the bundle or its path.
        path: the ``.zip`` to write.
        vecnormalize: where to write the VecNormalize statistics, for bundles that normalise
            observations (default: ``path`` with ``.vecnormalize.pkl`` for its suffix, so
            ``model.zip`` -> ``model.vecnormalize.pkl``).
        allow_missing_critic: see :func:`to_sb3`.
        overwrite: replace files that exist. Default False: an existing file is never replaced
            silently (a second export into one folder must not swap another run's statistics).
        env_module: the one module a recorded ``module:EnvName`` env id may import.

    Returns:
        The paths written: the model, then the statistics when there are some. Both files appear
        together or neither does (a failure restores what was there).

    Raises:
        BundleError: a file to write exists (without ``overwrite``), or its folder does not.
        UnsupportedError: the critic is missing (without ``allow_missing_critic``), or see :func:`to_sb3`.

    Example:
        >>> export_sb3("walker.rlp", "walker.zip")    # then PPO.load("walker.zip")   # doctest: +SKIP
    """
    from rlport.bundle.container import write_atomic_group

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    check_critic(bundle, allow_missing_critic)
    target = Path(path)
    stats = Path(vecnormalize) if vecnormalize is not None else vecnormalize_path(target)
    if vecnormalize is not None and not normalises(bundle):
        warnings.warn(
            f"{stats}: not written, the bundle does not normalise observations or rewards", RlportWarning, stacklevel=2
        )
    planned = [(target, "the SB3 model")] + ([(stats, "the VecNormalize statistics")] if normalises(bundle) else [])
    refuse_existing(planned, overwrite)  # before the seconds spent importing torch and SB3
    for module in ("gymnasium", "stable_baselines3"):
        require(module, "sb3", "export_sb3")
    model_bytes, stats_bytes = sb3_files(bundle, allow_missing_critic, env_module, where=target)
    outputs = [(target, model_bytes, "the SB3 model")]
    if stats_bytes is not None:
        outputs.append((stats, stats_bytes, "the VecNormalize statistics"))  # VecNormalize.save's format
    refuse_existing([(p, what) for p, _, what in outputs], overwrite)
    write_atomic_group(outputs)  # all or nothing: never a model without its statistics
    return [p for p, _, _ in outputs]


def vecnormalize_path(model_path: str | os.PathLike) -> Path:
    """Where ``export_sb3`` puts the statistics by default: ``model.zip`` -> ``model.vecnormalize.pkl``."""
    return Path(model_path).with_suffix(".vecnormalize.pkl")


def refuse_existing(outputs: list[tuple[Path, str]], overwrite: bool) -> None:
    """Raise :class:`BundleError` for the first ``(path, what)`` that exists, unless ``overwrite``."""
    for target, what in outputs:
        if not overwrite and (Path(target).exists() or Path(target).is_symlink()):
            raise BundleError(
                f"cannot save {what} to {str(target)!r}: the file exists; choose another name, or replace it with "
                "--force (overwrite=True in Python)"
            )


def sb3_files(
    bundle: Bundle, allow_missing_critic: bool, env_module: str | None, where: object = "the export"
) -> tuple[bytes, bytes | None]:
    """The bytes of ``model.save`` and of the pickled VecNormalize (None when the model has none)."""
    model = export_model(bundle, allow_missing_critic, env_module)
    if getattr(getattr(model, "replay_buffer_class", None), "__name__", "") == "HerReplayBuffer":
        warnings.warn(
            f"{where}: a HER model; SB3 loads it only with its env: {type(model).__name__}.load(path, env=goal_env)",
            RlportWarning,
            stacklevel=3,
        )
    buffer = io.BytesIO()
    model.save(buffer)  # SB3 leaves the env out of its files
    wrapper = model.get_vec_normalize_env()
    stats = pickle.dumps(wrapper) if wrapper is not None else None  # VecNormalize.__getstate__ leaves the env out
    if model.get_env() is not None:
        model.get_env().close()
    return buffer.getvalue(), stats


def export_model(bundle: Bundle, allow_missing_critic: bool, env_module: str | None = None) -> Any:
    """The model to save: built with the bundle's env as made here (today's spaces), else with its recorded spaces."""
    env, note = export_env(bundle, env_module)
    if note:
        warnings.warn(note, RlportWarning, stacklevel=4)
    try:
        return to_sb3(bundle, env, device="cpu", allow_missing_critic=allow_missing_critic)
    except SpaceError as exc:
        if note:  # the spaces-only env was refused: nothing else to try
            raise
        env.close()
        warnings.warn(
            f"the env {bundle.env.id!r:.100} made here does not fit the bundle ({exc}); the exported model carries the "
            "bundle's recorded spaces",
            RlportWarning,
            stacklevel=4,
        )
        return to_sb3(bundle, spaces_only_env(bundle), device="cpu", allow_missing_critic=allow_missing_critic)


_NO_CRITIC = frozenset({"DQN", "QRDQN", "ARS"})
"""Algorithms whose bundles hold all a model needs without ``include_critic`` (target networks start as copies)."""


def check_critic(bundle: Bundle, allow_missing_critic: bool, option: str = "pass allow_missing_critic=True") -> None:
    """Refuse, before torch or SB3 is imported, a bundle without the critic its algorithm trains with.

    ``to_sb3`` makes the same refusal once it has built the model (naming the missing modules);
    this check reads only the bundle, so that a command line says so at once.

    Args:
        bundle: the bundle.
        allow_missing_critic: accept the bundle (the critic then starts afresh).
        option: how the caller's user allows it (``"pass --allow-missing-critic"`` on the command line).

    Raises:
        UnsupportedError: the bundle was exported without the critic and ``allow_missing_critic`` is False.

    Example:
        >>> check_critic(Bundle.load("sac.rlp"), allow_missing_critic=False)   # doctest: +SKIP
        UnsupportedError: ... to start them afresh, pass allow_missing_critic=True
    """
    source = bundle.source
    algorithm = source.get("algorithm")
    if allow_missing_critic or source.get("includes_critic") is True or source.get("framework") != "stable-baselines3":
        return
    if algorithm is not None and (not isinstance(algorithm, str) or algorithm not in ALGORITHMS):
        return  # to_sb3 names the unknown algorithm
    if algorithm in _NO_CRITIC:
        return
    name = algorithm or "the model"
    raise UnsupportedError(
        f"this bundle keeps only what acting needs (exported without include_critic=True): {name}'s value/Q "
        "networks (the critic) are not in it. To resume training with them, export again with "
        "rlport.from_sb3(model, include_critic=True) or `rlport import ... --include-critic`; "
        f"to start them afresh, {option}"
    )


def _build(
    cls: type, policy: type, venv: Any, device: str, policy_kwargs: dict, arguments: dict, bundle: Bundle
) -> Any:
    """A fresh model, set up the way ``ALGO.load`` sets one up (without an env when there is none)."""
    model = cls(
        policy,
        venv,
        device=device,
        policy_kwargs=policy_kwargs,
        _init_setup_model=False,
        **arguments,
    )
    if venv is None:
        from rlport.importers.gym_spaces import space_from_spec

        model.observation_space = space_from_spec(bundle.observation_space)
        model.action_space = space_from_spec(bundle.action_space)
        model.n_envs = 1
    model._setup_model()
    return model


def _check_device(device: Any) -> None:
    """Refuse a torch device that is not there (the torch backend's rule); ``"auto"`` is SB3's own choice."""
    if isinstance(device, str) and device == "auto":
        return
    import torch

    from rlport.runtimes.torch_runtime import _device

    _device(torch, device)


def _algorithm_class(name: Any) -> type:
    if not isinstance(name, str) or name not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        if name is None:
            raise UnsupportedError(
                "the bundle does not record which algorithm trained it (A2C, PPO and TRPO share a policy class); "
                f"pass algorithm= (one of {known})"
            )
        raise UnsupportedError(
            f"algorithm {_capped(repr(name))} is not supported by to_sb3 (supported: {known}); "
            "for a subclass of one of them, pass algorithm= its base and build yours from the result"
        )
    package = ALGORITHMS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        needed = package.replace("_", "-")
        raise MissingDependencyError(f'to_sb3 needs {needed} for {name}; pip install "rlport[sb3]"') from exc
    return getattr(module, name)


def _recorded_classes(settings: dict[str, Any], given: dict[str, Any], has_env: bool) -> dict[str, Any]:
    """The recorded settings with ``*_class`` names imported and ``*_kwargs`` fitted to those classes.

    Settings the caller passes are left to the caller. Entries a class no longer takes (SB3 < 1.8's
    ``online_sampling`` for ``HerReplayBuffer``) are dropped with a warning; a ``HerReplayBuffer``
    without an env (SB3 cannot build one) is dropped with a warning that says to pass ``env=``.
    """
    settings = dict(settings)
    for key in [k for k, v in settings.items() if is_class_key(k) and v is not None and k not in given]:
        cls = _class(settings[key], key, hint=f"Pass the class yourself: to_sb3(bundle, {key}=YourClass)")
        if not has_env and cls.__name__ == "HerReplayBuffer":
            warnings.warn(
                f"the bundle was trained with {settings[key]}, which SB3 builds only with an env; the model "
                "has none and uses the default replay buffer: pass env= (a goal env) to keep training with HER",
                RlportWarning,
                stacklevel=3,
            )
            settings.pop(key)
            settings.pop(key.removesuffix("_class") + "_kwargs", None)
            continue
        settings[key] = cls
        kwargs_key = key.removesuffix("_class") + "_kwargs"
        if isinstance(settings.get(kwargs_key), dict) and kwargs_key not in given:
            settings[kwargs_key] = _fitted_kwargs(cls, settings[kwargs_key], kwargs_key)
    return settings


def _fitted_kwargs(cls: type, kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(kwargs)
    dropped = sorted(str(k) for k in set(kwargs) - set(parameters))
    if dropped:
        warnings.warn(
            f"{key}: {_capped(', '.join(dropped))} dropped, {cls.__name__} of this stable-baselines3 no longer "
            "takes them",
            RlportWarning,
            stacklevel=4,
        )
    return {k: v for k, v in kwargs.items() if k in parameters}


def _check_classes(source: dict[str, Any], given_kwargs: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse, by name and before any import, every recorded class the caller does not pass instead."""

    def recorded(section: Any, passed: dict[str, Any]) -> Any:
        return {k: v for k, v in section.items() if k not in passed} if isinstance(section, dict) else section

    policy_kwargs = recorded(source.get("policy_kwargs"), given_kwargs)
    hyperparameters = recorded(source.get("hyperparameters"), given)
    check_recorded_classes(policy_kwargs, hyperparameters, source.get("policy_class"), _SOURCE)
    refused = source.get("refused_classes") or {}
    if not isinstance(refused, dict):
        raise UnsupportedError(f"{_SOURCE}: refused_classes must be a dict; export the model again")
    for key, name in refused.items():
        if key not in given and key not in given_kwargs:
            raise UnsupportedError(
                f"the model was trained with {_capped(key)} {_capped(name)}, a class rlport does not import; "
                + hint_for(str(key))
            )


def _policy_class(name: Any) -> type:
    if name is None:
        raise UnsupportedError(
            f"{_SOURCE} does not record its policy class (source.policy_class); export the model again with "
            "rlport.from_sb3 or import its SB3 file with rlport.import_sb3"
        )
    return _class(name, "policy_class")


def _class(name: Any, key: str, hint: str | None = None) -> type:
    """The class ``name`` when the table lists it for ``key``'s role: refused by name before any import.

    Only the module part of the table entry is imported, the class is one attribute of it, and it
    must be a class of the role's base (``torch.nn.Module`` for an activation...).
    """
    name = check_class_name(name, key, _SOURCE, hint)
    cls = _load(name, key)
    base = _load(ROLE_BASES[CLASSES[name]], key)
    if cls is None:
        raise UnsupportedError(
            f"{key} {name} does not exist in the installed torch / stable-baselines3 / sb3-contrib; "
            + (hint or hint_for(key))
        )
    if not inspect.isclass(cls) or base is None or not issubclass(cls, base):
        raise UnsupportedError(
            f"{key} {name} is a {type(cls).__name__} here, not a subclass of {ROLE_BASES[CLASSES[name]]}; "
            "rlport refuses it (please report this)"
        )
    return cls


def _load(name: str, key: str) -> Any:
    """``module.Name`` of the table: one import of the module part, one ``getattr``; None when either is missing."""
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.split(".")[0]
        if getattr(exc, "name", None) == package:
            raise MissingDependencyError(
                f'{key} {name} needs {package.replace("_", "-")}; pip install "rlport[sb3]"'
            ) from exc
        return None
    return getattr(module, attr, None)


def _resolve(value: Any, key: Any) -> Any:
    """Class names back to classes, for keys that hold classes (``activation_fn``, ``*_class``)."""
    if is_class_key(key):
        return None if value is None else _class(value, key)
    if isinstance(value, dict):
        return {k: _resolve(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, None) for v in value]
    return value


def _policy_kwargs(recorded: dict[str, Any], source: dict[str, Any], given: dict[str, Any]) -> tuple[dict, bool]:
    """``policy_kwargs`` as SB3 takes them, and the gSDE flag (which older SB3 kept among them)."""
    kwargs = {k: v for k, v in recorded.items() if k not in given and k != "device"}  # SB3.load drops device too
    kwargs = {**_resolve(kwargs, ""), **given}
    use_sde = bool(kwargs.pop("use_sde", False) or source.get("use_sde", False))
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
        kwargs["net_arch"] = net_arch[0]  # SB3 < 1.8's [dict(pi=..., vf=...)], converted as SB3.load does
    return kwargs, use_sde


_SIZE_KEYS = frozenset({"net_arch", "features_dim", "cnn_output_dim", "n_quantiles", "lstm_hidden_size"})
"""Recorded ``policy_kwargs`` entries (at any depth) that set layer sizes of the model SB3 builds."""
_COUNT_KEYS = frozenset({"n_critics", "n_lstm_layers"})
"""Recorded ``policy_kwargs`` entries that set how many networks or layers SB3 builds."""
MAX_RECORDED_COUNT = 64
"""The most critics or LSTM layers a bundle's recorded settings may ask SB3 to build."""


def _check_sizes(recorded: dict[str, Any], given: dict[str, Any], bundle: Bundle) -> None:
    """Recorded layer sizes must be of the bundle's own scale (at most 4x its widest tensor, or 4096).

    The critic a bundle does not keep is built from these numbers: a crafted ``net_arch`` of
    ``[10**12]`` would have torch allocate terabytes. Settings the caller passes are theirs.
    """
    widest = max((max(t.shape, default=1) for t in bundle.tensors.values()), default=1)
    limit = max(4 * widest, 4096)

    def walk(value: Any, key: str, depth: int = 0) -> None:
        if depth > 16:
            raise UnsupportedError("the recorded policy_kwargs nest more than 16 levels deep")
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k) if k not in ("pi", "vf", "qf") else key, depth + 1)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key, depth + 1)
        elif isinstance(value, int) and not isinstance(value, bool) and key in _SIZE_KEYS | _COUNT_KEYS:
            top = MAX_RECORDED_COUNT if key in _COUNT_KEYS else limit
            if not 0 <= value <= top:
                raise UnsupportedError(
                    f"the recorded policy_kwargs {key} asks for {_capped(value)}, outside 0..{top}, what this "
                    f"bundle's scale allows; pass policy_kwargs={{{key!r}: ...}} to to_sb3 yourself"
                )

    walk({k: v for k, v in recorded.items() if k not in given}, "")


def _arguments(cls: type, settings: dict[str, Any], bundle: Bundle, has_env: bool) -> dict[str, Any]:
    """The recorded settings that this version of the algorithm's constructor takes, in its terms."""
    settings = dict(settings)
    if settings.get("train_freq") == -1 and "n_episodes_rollout" in settings:  # SB3 < 1.1: train per episode
        settings["train_freq"] = [settings.pop("n_episodes_rollout"), "episode"]
    if isinstance(settings.get("train_freq"), int) and settings["train_freq"] < 1:
        del settings["train_freq"]
    names = set(inspect.signature(cls.__init__).parameters) - _NOT_ARGUMENTS
    arguments = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in names}
    if "use_rms_prop" in names and "optimizer_class" not in (bundle.source.get("policy_kwargs") or {}):
        arguments.setdefault("use_rms_prop", False)  # A2C records RMSprop in policy_kwargs when it uses it
    if "target_entropy" in names and not has_env and arguments.get("target_entropy", "auto") == "auto":
        shape = bundle.action_space.shape  # SB3 reads "auto" off the env's action space
        arguments["target_entropy"] = -float(np.prod(shape))
    return arguments


def _capped(value: Any, limit: int = 300) -> str:
    """``str`` of a recorded value (a string as is, else its repr) cut to ``limit`` characters for a message."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
