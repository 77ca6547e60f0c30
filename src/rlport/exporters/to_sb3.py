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
from rlport.errors import MissingDependencyError, RlportWarning, UnsupportedError
from rlport.exporters.sb3_env import sb3_env, spaces_only_env
from rlport.exporters.sb3_weights import load_variables, load_weights, weights_of

__all__ = ["to_sb3", "export_sb3", "ALGORITHMS"]

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
# classes a bundle may name (policy class, activation, features extractor, optimizer); nothing else is imported
_IMPORTABLE = ("stable_baselines3.", "sb3_contrib.", "torch.nn.", "torch.optim.")
_NOT_ARGUMENTS = frozenset({"self", "policy", "env", "device", "policy_kwargs", "use_sde", "_init_setup_model"})


def to_sb3(
    bundle: Bundle | str | os.PathLike,
    env: Any = None,
    *,
    algorithm: str | None = None,
    device: str = "auto",
    allow_missing_critic: bool = False,
    policy_kwargs: dict[str, Any] | None = None,
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
        device: the torch device of the model (SB3's ``"auto"``, ``"cpu"``, ``"cuda"``).
        allow_missing_critic: for bundles exported without ``include_critic=True``: build the
            model anyway, with value / Q networks freshly initialised (actions still match).
        policy_kwargs: entries that replace the recorded ``policy_kwargs`` (a custom class, say).
        **kwargs: algorithm arguments that replace the recorded hyperparameters (``buffer_size=``...).

    Returns:
        The SB3 model: ``model.predict`` gives the bundle's actions (observations normalised by
        ``model.get_vec_normalize_env()`` where there is one), and ``model.learn`` continues
        (with the learned entropy coefficient of SAC/TQC/CrossQ when the bundle keeps the critic).

    Raises:
        MissingDependencyError: stable-baselines3 (or sb3-contrib) is not installed.
        UnsupportedError: not an SB3 bundle, critic missing, or weights that do not fit the model
            this SB3 version builds.
        SpaceError: ``env`` has other spaces than the bundle.

    Example:
        >>> model = rlport.to_sb3("pendulum.rlp", allow_missing_critic=True)   # doctest: +SKIP
        >>> action, _ = model.predict(obs, deterministic=True)                 # doctest: +SKIP
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    source = bundle.source
    if source.get("framework") != "stable-baselines3":
        raise UnsupportedError(
            f"this bundle was not made from a Stable-Baselines3 model (source framework: {source.get('framework')!r}); "
            "to_sb3 needs one exported by rlport.from_sb3 or imported by rlport import"
        )
    cls = _algorithm_class(algorithm or source.get("algorithm"))
    tensors, net_arch = weights_of(bundle)
    model_kwargs, use_sde = _policy_kwargs(source.get("policy_kwargs") or {}, source, policy_kwargs or {})
    if net_arch is not None and "net_arch" not in (policy_kwargs or {}):
        model_kwargs["net_arch"] = net_arch
    venv = sb3_env(bundle, env, cls)
    recorded = _recorded_classes(source.get("hyperparameters") or {}, kwargs, venv is not None)
    arguments = _arguments(cls, {**recorded, **kwargs}, bundle, venv is not None)
    if "use_sde" in inspect.signature(cls.__init__).parameters:
        arguments["use_sde"] = use_sde
    try:
        model = _build(cls, source, venv, device, model_kwargs, arguments, bundle)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError) as exc:
        raise UnsupportedError(
            f"{cls.__name__} of this stable-baselines3 cannot be built with the recorded settings "
            f"(policy_kwargs={model_kwargs}, {arguments}): {type(exc).__name__}: {exc}; pass the offending "
            "argument to to_sb3 (policy_kwargs= or a keyword)"
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
) -> list[Path]:
    """Write the bundle as an SB3 ``.zip`` (and ``vecnormalize.pkl``) that today's SB3 loads with ``ALGO.load``.

    Args:
        bundle: the bundle or its path.
        path: the ``.zip`` to write.
        vecnormalize: where to write the VecNormalize statistics, for bundles that normalise
            observations (default: ``vecnormalize.pkl`` beside ``path``).
        allow_missing_critic: see :func:`to_sb3`.

    Returns:
        The paths written. Both files are complete before either is written; each appears atomically.

    Example:
        >>> export_sb3("walker.rlp", "walker.zip")    # then PPO.load("walker.zip")   # doctest: +SKIP
    """
    from rlport.bundle.container import write_atomic

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    model = to_sb3(bundle, spaces_only_env(bundle), device="cpu", allow_missing_critic=allow_missing_critic)
    if getattr(getattr(model, "replay_buffer_class", None), "__name__", "") == "HerReplayBuffer":
        warnings.warn(
            f"{path}: a HER model; SB3 loads it only with its env: {type(model).__name__}.load(path, env=goal_env)",
            RlportWarning,
            stacklevel=2,
        )
    buffer = io.BytesIO()
    model.save(buffer)  # SB3 leaves the env out of its files
    outputs = [(Path(path), buffer.getvalue(), "the SB3 model")]
    wrapper = model.get_vec_normalize_env()
    if wrapper is not None:
        target = Path(vecnormalize) if vecnormalize is not None else Path(path).parent / "vecnormalize.pkl"
        outputs.append((target, pickle.dumps(wrapper), "the VecNormalize statistics"))  # VecNormalize.save's format
    for target, data, what in outputs:
        write_atomic(target, data, what=what)
    return [target for target, _, _ in outputs]


def _build(
    cls: type, source: dict, venv: Any, device: str, policy_kwargs: dict, arguments: dict, bundle: Bundle
) -> Any:
    """A fresh model, set up the way ``ALGO.load`` sets one up (without an env when there is none)."""
    model = cls(
        _import(source.get("policy_class") or "", "policy_class"),
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


def _algorithm_class(name: str | None) -> type:
    if name not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        if name is None:
            raise UnsupportedError(
                "the bundle does not record which algorithm trained it (A2C, PPO and TRPO share a policy class); "
                f"pass algorithm= (one of {known})"
            )
        raise UnsupportedError(
            f"algorithm {name!r} is not supported by to_sb3 (supported: {known}); "
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
    for key in [k for k, v in settings.items() if k.endswith("_class") and isinstance(v, str) and k not in given]:
        cls = _import(settings[key], key, hint=f"to_sb3(bundle, {key}=YourClass)")
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
    dropped = sorted(set(kwargs) - set(parameters))
    if dropped:
        warnings.warn(
            f"{key}: {', '.join(dropped)} dropped, {cls.__name__} of this stable-baselines3 no longer takes them",
            RlportWarning,
            stacklevel=4,
        )
    return {k: v for k, v in kwargs.items() if k in parameters}


def _import(name: str, key: str, hint: str | None = None) -> Any:
    """The class ``name`` (``"module.Qual.Name"``) from torch / SB3 / sb3-contrib; nothing else is imported."""
    if not name.startswith(_IMPORTABLE):
        raise UnsupportedError(
            f"{key} is {name or 'not recorded'}, which is not part of torch, stable-baselines3 or sb3-contrib; "
            "rlport imports only those. Pass the class yourself: "
            + (hint or f"to_sb3(bundle, policy_kwargs={{{key!r}: YourClass}})")
        )
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise UnsupportedError(f"{key} {name} does not exist in the installed torch / stable-baselines3 / sb3-contrib")


def _resolve(value: Any, key: str) -> Any:
    """Class names back to classes, for keys that hold classes (``activation_fn``, ``*_class``)."""
    if isinstance(value, dict):
        return {k: _resolve(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, key) for v in value]
    if isinstance(value, str) and (key == "activation_fn" or key.endswith("_class")):
        return _import(value, key)
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
