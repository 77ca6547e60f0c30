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
import os
from typing import Any

from rlport.bundle.bundle import Bundle
from rlport.errors import MissingDependencyError, UnsupportedError
from rlport.frameworks.sb3.env import sb3_env
from rlport.frameworks.sb3.files import check_critic, export_sb3, vecnormalize_path
from rlport.frameworks.sb3.settings import (
    ALGORITHMS,
    arguments_for,
    capped,
    check_classes,
    check_sizes,
    policy_class,
    policy_kwargs_of,
    recorded_classes,
)
from rlport.frameworks.sb3.weights import load_variables, load_weights, weights_of

__all__ = ["to_sb3", "export_sb3", "check_critic", "vecnormalize_path", "ALGORITHMS"]


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
    if source.get("framework") == "stable-baselines" and source.get("sb3_missing"):
        raise UnsupportedError(
            "this bundle was imported from a Stable Baselines 2 model that Stable-Baselines3 has no equivalent "
            f"for: {capped(repr(source['sb3_missing']))}; run it with rlport (rlport.load, rlport run) or export "
            "it with --format onnx"
        )
    if source.get("framework") not in ("stable-baselines3", "stable-baselines"):
        raise UnsupportedError(
            "this bundle was not made from a Stable-Baselines3 model (source framework: "
            f"{capped(repr(source.get('framework')))}); to_sb3 needs one exported by rlport.from_sb3 or imported "
            "by rlport import"
        )
    check_classes(source, policy_kwargs or {}, kwargs)  # every recorded class name, before anything is imported
    cls = _algorithm_class(algorithm or source.get("algorithm"))
    _check_device(device)
    policy = policy_class(source.get("policy_class"))
    tensors, net_arch = weights_of(bundle)
    model_kwargs, use_sde = policy_kwargs_of(source.get("policy_kwargs") or {}, source, policy_kwargs or {})
    check_sizes(source.get("policy_kwargs") or {}, policy_kwargs or {}, bundle)
    if net_arch is not None and "net_arch" not in (policy_kwargs or {}):
        model_kwargs["net_arch"] = net_arch
    venv = sb3_env(bundle, env, cls, env_module)
    recorded = recorded_classes(source.get("hyperparameters") or {}, kwargs, venv is not None)
    arguments = arguments_for(cls, {**recorded, **kwargs}, bundle, venv is not None)
    if "use_sde" in inspect.signature(cls.__init__).parameters:
        arguments["use_sde"] = use_sde
    try:
        model = _build(cls, policy, venv, device, model_kwargs, arguments, bundle)
    except MemoryError as exc:  # numpy refuses a buffer (buffer_size, n_steps) larger than this machine can hold
        raise UnsupportedError(
            f"{cls.__name__}'s buffers for the recorded settings do not fit in memory ({capped(exc)}); pass smaller "
            "ones to to_sb3 (buffer_size=, n_steps=)"
        ) from exc
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError, OverflowError) as exc:
        raise UnsupportedError(
            f"{cls.__name__} of this stable-baselines3 cannot be built with the recorded settings "
            f"(policy_kwargs={capped(model_kwargs)}, {capped(arguments)}): {type(exc).__name__}: {capped(exc)}; "
            "pass the offending argument to to_sb3 (policy_kwargs= or a keyword)"
        ) from exc
    load_weights(model, tensors, bool(source.get("includes_critic")), allow_missing_critic)
    load_variables(model, bundle)
    model.num_timesteps = int(bundle.provenance.get("num_timesteps") or 0)
    return model


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
        from rlport.readers.gym_spaces import space_from_spec

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

    from rlport.backends.torch.runtime import _device

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
            f"algorithm {capped(repr(name))} is not supported by to_sb3 (supported: {known}); "
            "for a subclass of one of them, pass algorithm= its base and build yours from the result"
        )
    package = ALGORITHMS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        needed = package.replace("_", "-")
        raise MissingDependencyError(f'to_sb3 needs {needed} for {name}; pip install "rlport[sb3]"') from exc
    return getattr(module, name)
