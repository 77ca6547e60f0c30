"""The settings a bundle records for SB3, checked before SB3 sees them: class names through the table of
``frameworks/sb3/classes.py`` (refused by name, before any import), sizes bounded by the bundle's own
scale, and constructor arguments fitted to the installed SB3.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.errors import MissingDependencyError, RlportWarning, UnsupportedError
from rlport.frameworks.sb3.classes import (
    CLASSES,
    ROLE_BASES,
    check_class_name,
    check_recorded_classes,
    hint_for,
    is_class_key,
)

__all__ = [
    "ALGORITHMS",
    "SOURCE",
    "MAX_RECORDED_COUNT",
    "arguments_for",
    "capped",
    "check_classes",
    "check_sizes",
    "fitted_kwargs",
    "policy_class",
    "policy_kwargs_of",
    "recorded_classes",
    "resolve_class",
]

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
"""The algorithms ``to_sb3`` rebuilds, and the package each comes from."""


SOURCE = "the bundle's source"


_NOT_ARGUMENTS = frozenset({"self", "policy", "env", "device", "policy_kwargs", "use_sde", "_init_setup_model"})


def recorded_classes(settings: dict[str, Any], given: dict[str, Any], has_env: bool) -> dict[str, Any]:
    """The recorded settings with ``*resolve_class`` names imported and ``*_kwargs`` fitted to those classes.

    Settings the caller passes are left to the caller. Entries a class no longer takes (SB3 < 1.8's
    ``online_sampling`` for ``HerReplayBuffer``) are dropped with a warning; a ``HerReplayBuffer``
    without an env (SB3 cannot build one) is dropped with a warning that says to pass ``env=``.
    """
    settings = dict(settings)
    for key in [k for k, v in settings.items() if is_class_key(k) and v is not None and k not in given]:
        cls = resolve_class(settings[key], key, hint=f"Pass the class yourself: to_sb3(bundle, {key}=YourClass)")
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
            settings[kwargs_key] = fitted_kwargs(cls, settings[kwargs_key], kwargs_key)
    return settings


def fitted_kwargs(cls: type, kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(kwargs)
    dropped = sorted(str(k) for k in set(kwargs) - set(parameters))
    if dropped:
        warnings.warn(
            f"{key}: {capped(', '.join(dropped))} dropped, {cls.__name__} of this stable-baselines3 no longer "
            "takes them",
            RlportWarning,
            stacklevel=4,
        )
    return {k: v for k, v in kwargs.items() if k in parameters}


def check_classes(source: dict[str, Any], given_kwargs: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse, by name and before any import, every recorded class the caller does not pass instead."""

    def recorded(section: Any, passed: dict[str, Any]) -> Any:
        return {k: v for k, v in section.items() if k not in passed} if isinstance(section, dict) else section

    policy_kwargs = recorded(source.get("policy_kwargs"), given_kwargs)
    hyperparameters = recorded(source.get("hyperparameters"), given)
    check_recorded_classes(policy_kwargs, hyperparameters, source.get("policy_class"), SOURCE)
    refused = source.get("refused_classes") or {}
    if not isinstance(refused, dict):
        raise UnsupportedError(f"{SOURCE}: refused_classes must be a dict; export the model again")
    for key, name in refused.items():
        if key not in given and key not in given_kwargs:
            raise UnsupportedError(
                f"the model was trained with {capped(key)} {capped(name)}, a class rlport does not import; "
                + hint_for(str(key))
            )


def policy_class(name: Any) -> type:
    if name is None:
        raise UnsupportedError(
            f"{SOURCE} does not record its policy class (source.policy_class); export the model again with "
            "rlport.from_sb3 or import its SB3 file with rlport.import_sb3"
        )
    return resolve_class(name, "policy_class")


def resolve_class(name: Any, key: str, hint: str | None = None) -> type:
    """The class ``name`` when the table lists it for ``key``'s role: refused by name before any import.

    Only the module part of the table entry is imported, the class is one attribute of it, and it
    must be a class of the role's base (``torch.nn.Module`` for an activation...).
    """
    name = check_class_name(name, key, SOURCE, hint)
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
    """Class names back to classes, for keys that hold classes (``activation_fn``, ``*resolve_class``)."""
    if is_class_key(key):
        return None if value is None else resolve_class(value, key)
    if isinstance(value, dict):
        return {k: _resolve(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, None) for v in value]
    return value


def policy_kwargs_of(recorded: dict[str, Any], source: dict[str, Any], given: dict[str, Any]) -> tuple[dict, bool]:
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


def check_sizes(recorded: dict[str, Any], given: dict[str, Any], bundle: Bundle) -> None:
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
                    f"the recorded policy_kwargs {key} asks for {capped(value)}, outside 0..{top}, what this "
                    f"bundle's scale allows; pass policy_kwargs={{{key!r}: ...}} to to_sb3 yourself"
                )

    walk({k: v for k, v in recorded.items() if k not in given}, "")


def arguments_for(cls: type, settings: dict[str, Any], bundle: Bundle, has_env: bool) -> dict[str, Any]:
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


def capped(value: Any, limit: int = 300) -> str:
    """``str`` of a recorded value (a string as is, else its repr) cut to ``limit`` characters for a message."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
