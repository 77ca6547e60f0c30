"""The classes a bundle or an SB3 file may name, by full dotted name, and the check that refuses every other name.

A bundle's ``source`` (and an SB3 ``.zip``'s ``data``) names classes: the policy class,
``policy_kwargs`` entries such as ``activation_fn`` / ``features_extractor_class`` /
``optimizer_class``, and hyperparameters such as ``replay_buffer_class``. Those names are
untrusted: ``stable_baselines3.common.save_util.os.system`` starts with an SB3 prefix and is not
a class. :data:`CLASSES` lists, by full dotted name, every class of stable-baselines3 (1.x and
2.x), sb3-contrib and torch that rlport turns back into a class, with its role; each recorded
key has one role (:data:`KEY_ROLES`). A name is checked by name only (nothing is imported here):
a name that is not in the table for its key's role is refused with
:class:`~rlport.errors.UnsupportedError` before anything is imported. ``rlport.to_sb3`` then
imports the table entry's module and takes the one class from it.

Only concrete classes are listed: ``torch.nn.Module`` is a class of the right base but no
activation, and functions (``torch.nn.functional.relu``) are never classes. A custom class is
passed by the user (``to_sb3(bundle, policy_kwargs={"activation_fn": MyActivation})``), never
named by a file.

Example:
    >>> check_class_name("torch.nn.modules.activation.ReLU", "activation_fn", "policy_kwargs")
    'torch.nn.modules.activation.ReLU'
    >>> CLASSES["stable_baselines3.ppo.policies.MlpPolicy"]
    'policy'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from rlport.errors import UnsupportedError

__all__ = [
    "CLASSES",
    "KEY_ROLES",
    "ROLE_BASES",
    "MAX_CLASS_NAME_LENGTH",
    "MAX_SETTINGS_DEPTH",
    "check_class_name",
    "check_recorded_classes",
    "hint_for",
    "is_class_key",
    "role_of",
]

MAX_CLASS_NAME_LENGTH = 200
"""Longest class name looked up (characters); every name in :data:`CLASSES` is far shorter."""

MAX_SETTINGS_DEPTH = 16
"""Deepest nesting of dicts and lists walked in recorded ``policy_kwargs`` (SB3's own nest 3 deep)."""

_SB3 = "stable_baselines3"
_CONTRIB = "sb3_contrib"
_ACTIVATIONS = (
    "CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "LogSigmoid",
    "LogSoftmax", "Mish", "PReLU", "RReLU", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softmax", "Softmax2d",
    "Softmin", "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink",
)  # fmt: skip
_OPTIMIZERS = {  # module of torch.optim (as pickles and __module__ name it) -> class
    "adadelta": "Adadelta", "adagrad": "Adagrad", "adam": "Adam", "adamax": "Adamax", "adamw": "AdamW",
    "asgd": "ASGD", "lbfgs": "LBFGS", "nadam": "NAdam", "radam": "RAdam", "rmsprop": "RMSprop", "rprop": "Rprop",
    "sgd": "SGD", "sparse_adam": "SparseAdam",
}  # fmt: skip
_ACTOR_CRITIC = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
_ON_POLICY = (f"{_SB3}.a2c", f"{_SB3}.ppo", f"{_CONTRIB}.trpo")  # their policies are SB3's ActorCriticPolicy family

# role -> module -> class names in that module (canonical names and the aliases SB3 / sb3-contrib export)
_TABLE: dict[str, dict[str, tuple[str, ...]]] = {
    "policy": {
        f"{_SB3}.common.policies": ("ActorCriticPolicy", "ActorCriticCnnPolicy", "MultiInputActorCriticPolicy"),
        **{f"{package}.policies": (*_ACTOR_CRITIC, "ActorCriticPolicy", "ActorCriticCnnPolicy",
                                   "MultiInputActorCriticPolicy") for package in _ON_POLICY},
        **{package: _ACTOR_CRITIC for package in _ON_POLICY},
        f"{_SB3}.dqn.policies": (*_ACTOR_CRITIC, "DQNPolicy"),
        f"{_SB3}.dqn": _ACTOR_CRITIC,
        f"{_SB3}.sac.policies": (*_ACTOR_CRITIC, "SACPolicy"),
        f"{_SB3}.sac": _ACTOR_CRITIC,
        f"{_SB3}.td3.policies": (*_ACTOR_CRITIC, "TD3Policy"),
        f"{_SB3}.td3": _ACTOR_CRITIC,
        f"{_SB3}.ddpg.policies": _ACTOR_CRITIC,
        f"{_SB3}.ddpg": _ACTOR_CRITIC,
        f"{_CONTRIB}.qrdqn.policies": (*_ACTOR_CRITIC, "QRDQNPolicy"),
        f"{_CONTRIB}.qrdqn": _ACTOR_CRITIC,
        f"{_CONTRIB}.tqc.policies": (*_ACTOR_CRITIC, "TQCPolicy"),
        f"{_CONTRIB}.tqc": _ACTOR_CRITIC,
        f"{_CONTRIB}.crossq.policies": ("MlpPolicy", "CrossQPolicy"),
        f"{_CONTRIB}.crossq": ("MlpPolicy",),
        f"{_CONTRIB}.ars.policies": ("MlpPolicy", "LinearPolicy", "ARSPolicy", "ARSLinearPolicy"),
        f"{_CONTRIB}.ars": ("MlpPolicy", "LinearPolicy"),
        f"{_CONTRIB}.common.maskable.policies": (
            "MaskableActorCriticPolicy", "MaskableActorCriticCnnPolicy", "MaskableMultiInputActorCriticPolicy",
        ),
        f"{_CONTRIB}.ppo_mask.policies": (*_ACTOR_CRITIC, "MaskableActorCriticPolicy", "MaskableActorCriticCnnPolicy",
                                          "MaskableMultiInputActorCriticPolicy"),
        f"{_CONTRIB}.ppo_mask": _ACTOR_CRITIC,
        f"{_CONTRIB}.common.recurrent.policies": (
            "RecurrentActorCriticPolicy", "RecurrentActorCriticCnnPolicy", "RecurrentMultiInputActorCriticPolicy",
        ),
        f"{_CONTRIB}.ppo_recurrent.policies": ("MlpLstmPolicy", "CnnLstmPolicy", "MultiInputLstmPolicy",
                                               "RecurrentActorCriticPolicy", "RecurrentActorCriticCnnPolicy",
                                               "RecurrentMultiInputActorCriticPolicy"),
        f"{_CONTRIB}.ppo_recurrent": ("MlpLstmPolicy", "CnnLstmPolicy", "MultiInputLstmPolicy"),
    },
    "activation": {
        "torch.nn.modules.activation": _ACTIVATIONS,
        "torch.nn.modules.linear": ("Identity",),
        "torch.nn": (*_ACTIVATIONS, "Identity"),
    },
    "optimizer": {
        **{f"torch.optim.{module}": (name,) for module, name in _OPTIMIZERS.items()},
        "torch.optim": (*_OPTIMIZERS.values(), "Adafactor", "Muon"),  # the last two name torch.optim as __module__
        f"{_SB3}.common.sb2_compat.rmsprop_tf_like": ("RMSpropTFLike",),  # the RL Zoo's A2C Atari optimizer
    },
    "features_extractor": {
        f"{_SB3}.common.torch_layers": ("FlattenExtractor", "NatureCNN", "CombinedExtractor"),
    },
    "replay_buffer": {
        f"{_SB3}.common.buffers": ("ReplayBuffer", "DictReplayBuffer", "NStepReplayBuffer"),
        f"{_SB3}.her.her_replay_buffer": ("HerReplayBuffer",),
        f"{_SB3}.her": ("HerReplayBuffer",),
        _SB3: ("HerReplayBuffer",),
    },
    "rollout_buffer": {
        f"{_SB3}.common.buffers": ("RolloutBuffer", "DictRolloutBuffer"),
        f"{_CONTRIB}.common.maskable.buffers": ("MaskableRolloutBuffer", "MaskableDictRolloutBuffer"),
        f"{_CONTRIB}.common.recurrent.buffers": ("RecurrentRolloutBuffer", "RecurrentDictRolloutBuffer"),
    },
    "algorithm": {
        _SB3: ("A2C", "PPO", "DQN", "SAC", "TD3", "DDPG"),
        **{f"{_SB3}.{name.lower()}.{name.lower()}": (name,) for name in ("A2C", "PPO", "DQN", "SAC", "TD3", "DDPG")},
        _CONTRIB: ("ARS", "CrossQ", "MaskablePPO", "QRDQN", "RecurrentPPO", "TQC", "TRPO"),
        f"{_CONTRIB}.ars.ars": ("ARS",),
        f"{_CONTRIB}.crossq.crossq": ("CrossQ",),
        f"{_CONTRIB}.ppo_mask.ppo_mask": ("MaskablePPO",),
        f"{_CONTRIB}.qrdqn.qrdqn": ("QRDQN",),
        f"{_CONTRIB}.ppo_recurrent.ppo_recurrent": ("RecurrentPPO",),
        f"{_CONTRIB}.tqc.tqc": ("TQC",),
        f"{_CONTRIB}.trpo.trpo": ("TRPO",),
    },
}  # fmt: skip

CLASSES: Mapping[str, str] = MappingProxyType(
    {
        f"{module}.{name}": role
        for role, modules in _TABLE.items()
        for module, names in modules.items()
        for name in names
    }
)
"""Every class name rlport turns back into a class (``"module.Class"``) -> its role."""

ROLE_BASES: Mapping[str, str] = MappingProxyType(
    {
        "policy": f"{_SB3}.common.policies.BasePolicy",
        "activation": "torch.nn.modules.module.Module",
        "optimizer": "torch.optim.optimizer.Optimizer",
        "features_extractor": f"{_SB3}.common.torch_layers.BaseFeaturesExtractor",
        "replay_buffer": f"{_SB3}.common.buffers.ReplayBuffer",
        "rollout_buffer": f"{_SB3}.common.buffers.RolloutBuffer",
        "algorithm": f"{_SB3}.common.base_class.BaseAlgorithm",
    }
)
"""The base class a resolved class of each role must derive from (checked after import by ``to_sb3``)."""

KEY_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "policy_class": "policy",
        "activation_fn": "activation",
        "optimizer_class": "optimizer",
        "features_extractor_class": "features_extractor",
        "replay_buffer_class": "replay_buffer",
        "rollout_buffer_class": "rollout_buffer",
        "model_class": "algorithm",  # SB3 < 1.1's HER wrapper
        "algorithm_class": "algorithm",
    }
)
"""The role of each recorded key that holds a class; any other ``*_class`` key may name any class of the table."""

_ROLE_WORDS = {
    "policy": "a stable-baselines3 / sb3-contrib policy class",
    "activation": "a torch.nn activation",
    "optimizer": "a torch optimizer",
    "features_extractor": "an SB3 features extractor",
    "replay_buffer": "an SB3 replay buffer",
    "rollout_buffer": "an SB3 / sb3-contrib rollout buffer",
    "algorithm": "a stable-baselines3 / sb3-contrib algorithm",
    None: "a class",
}
_PACKAGES = ("stable_baselines3.", "sb3_contrib.", "torch.")
_SHOWN = 100  # characters of an untrusted name or key echoed in a message
_POLICY_HINT = (
    "to_sb3 rebuilds only the policy classes of stable-baselines3 and sb3-contrib: export the model again with "
    "rlport.from_sb3, or build a custom policy yourself"
)


def is_class_key(key: Any) -> bool:
    """Whether a recorded setting named ``key`` holds a class (``activation_fn``, ``*_class``)."""
    return isinstance(key, str) and (key in KEY_ROLES or key.endswith("_class"))


def role_of(key: str) -> str | None:
    """The role a class under ``key`` must have; None for an unknown ``*_class`` key (any class of the table)."""
    return KEY_ROLES.get(key)


def hint_for(key: str) -> str:
    """How a user passes a class of their own instead of the one a file records under ``key``."""
    if key in ("replay_buffer_class", "rollout_buffer_class"):
        return _hint(key, f"{key}=YourClass")
    return _hint(key, f"policy_kwargs={{{_shown(key)!r}: YourClass}}")


def check_class_name(name: Any, key: str, what: str, hint: str | None = None) -> str:
    """``name`` itself when :data:`CLASSES` lists it for the role of ``key``; checked by name, nothing is imported.

    Args:
        name: the recorded value (untrusted: any type, any length).
        key: the setting it is recorded under (``"activation_fn"``, ``"replay_buffer_class"``...).
        what: where it was found, for the message (``"the bundle's source (policy_kwargs)"``).
        hint: how the user passes the class instead; by default the ``to_sb3`` argument for ``key``.

    Returns:
        ``name``, a key of :data:`CLASSES` of the right role.

    Raises:
        UnsupportedError: not a string, too long, not in the table or in it for another role; the
            message echoes at most about 100 characters of the name and says how to pass the class.

    Example:
        >>> check_class_name("stable_baselines3.common.save_util.os.system", "activation_fn", "policy_kwargs")
        Traceback (most recent call last):
        rlport.errors.UnsupportedError: policy_kwargs: activation_fn is stable_baselines3.common.save_util.os...
    """
    key_shown, role = _shown(key), role_of(key)
    hint = hint or hint_for(key)
    if not isinstance(name, str):
        raise UnsupportedError(
            f"{what}: {key_shown} must be the dotted name of {_ROLE_WORDS[role]}, "
            f"found a value of type {type(name).__name__}. {hint}"
        )
    if len(name) > MAX_CLASS_NAME_LENGTH:
        raise UnsupportedError(
            f"{what}: {key_shown} is a name of {len(name):,} characters ({name[:_SHOWN]}...); no class rlport imports "
            f"has a name over {MAX_CLASS_NAME_LENGTH}. {hint}"
        )
    found = CLASSES.get(name)
    if found is not None and (role is None or found == role):
        return name
    if not name.startswith(_PACKAGES):
        raise UnsupportedError(
            f"{what}: {key_shown} is {_shown(name)}, which is not part of torch, stable-baselines3 or sb3-contrib; "
            f"rlport imports only those. {hint}"
        )
    if found is not None:
        raise UnsupportedError(f"{what}: {key_shown} is {name}, {_ROLE_WORDS[found]}, not {_ROLE_WORDS[role]}. {hint}")
    raise UnsupportedError(
        f"{what}: {key_shown} is {_shown(name)}, which is not {_ROLE_WORDS[role]} rlport knows ({_known(role)}); "
        f"rlport imports only the classes of its table. {hint}"
    )


def check_recorded_classes(policy_kwargs: Any, hyperparameters: Any, policy_class: Any, what: str) -> None:
    """Check every class name a bundle's ``source`` (or an SB3 file) records, by name, before anything is imported.

    ``policy_class``; every ``activation_fn`` / ``*_class`` entry of ``policy_kwargs``, nested
    ``*_kwargs`` dicts included (at most :data:`MAX_SETTINGS_DEPTH` deep); every top-level
    ``*_class`` hyperparameter (``replay_buffer_class``...). ``None`` values mean "not set" and pass.

    Args:
        policy_kwargs: the recorded ``policy_kwargs`` (a dict, or None), classes by dotted name.
        hyperparameters: the recorded hyperparameters (a dict, or None).
        policy_class: the recorded policy class name, or None when not recorded.
        what: where they come from, for messages (a file name, ``"the bundle's source"``).

    Raises:
        UnsupportedError: a name that :func:`check_class_name` refuses, a section that is not a
            dict, or ``policy_kwargs`` nested deeper than :data:`MAX_SETTINGS_DEPTH`.

    Example:
        >>> check_recorded_classes({"activation_fn": "torch.nn.Tanh"}, {}, "stable_baselines3.ppo.MlpPolicy", "x.zip")
    """
    if policy_class is not None:
        check_class_name(policy_class, "policy_class", what, _POLICY_HINT)
    for path, name in _class_entries(_section(policy_kwargs, "policy_kwargs", what), what, (), 0):
        key, place = path[-1], "".join(_index(p) for p in path[:-1])
        top = f"{{{_shown(path[0])!r}: ...}}" if place else f"{{{_shown(key)!r}: YourClass}}"
        check_class_name(name, key, f"{what} (policy_kwargs{place})", _hint(key, f"policy_kwargs={top}"))
    for key, name in _section(hyperparameters, "hyperparameters", what).items():
        if is_class_key(key) and name is not None:
            check_class_name(name, key, f"{what} (hyperparameters)", _hint(key, f"{key}=YourClass"))


def _section(value: Any, name: str, what: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnsupportedError(f"{what}: {name} must be a dict, found a {type(value).__name__}; export the model again")
    return value


def _class_entries(value: Any, what: str, path: tuple[Any, ...], depth: int) -> Iterator[tuple[tuple, Any]]:
    """``(path, value)`` of every class-valued entry under ``value`` (dicts and lists walked); ``path[-1]`` its key."""
    if depth > MAX_SETTINGS_DEPTH:
        raise UnsupportedError(
            f"{what}: policy_kwargs nest deeper than {MAX_SETTINGS_DEPTH} levels (SB3's own nest 3); "
            "export the model again or pass policy_kwargs= to to_sb3"
        )
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(value, Mapping) and is_class_key(key):
            if item is not None:
                yield (*path, key), item
        elif isinstance(item, (Mapping, list)):
            yield from _class_entries(item, what, (*path, key), depth + 1)


def _index(key: Any) -> str:
    return f"[{key}]" if isinstance(key, int) else f"[{_shown(key)!r}]"


def _hint(key: str, argument: str) -> str:
    """How to pass a class instead of the one recorded under ``key``, as the ``to_sb3`` ``argument``."""
    return _POLICY_HINT if role_of(key) == "policy" else f"Pass the class yourself: to_sb3(bundle, {argument})"


def _known(role: str | None) -> str:
    """A few short names of the classes of ``role``, for messages."""
    names = sorted({name.rsplit(".", 1)[-1] for name, r in CLASSES.items() if role in (None, r)})
    shown = ", ".join(names[:8])
    return shown if len(names) <= 8 else f"{shown}... {len(names)} in all: rlport.frameworks.sb3.classes.CLASSES"


def _shown(text: Any) -> str:
    """An untrusted name or key, cut to about 100 characters for a message."""
    if not isinstance(text, str):
        return f"a {type(text).__name__}"
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text):,} characters)"
