"""What a bare SB3 ``state_dict`` says about the policy that holds it, and what must be assumed.

``torch.save(model.policy.state_dict(), "weights.pth")`` keeps tensors only: no policy class, no
spaces, no ``policy_kwargs``. SB3 rebuilds a policy from the algorithm, the env's spaces and its
construction rules; so does this module, torch-free. The tensor names and shapes tell the layer
sizes (``net_arch``), the features extractor (NatureCNN by its ``cnn`` tensors, one per image key of
a Dict space), whether actor and critic share it (equal tensors), the number of critics, quantiles
and LSTM layers, gSDE (a ``log_std`` matrix) and PReLU (a weight between two Linear layers). Nothing
tells a parameter-free activation (Tanh or ReLU), ``normalize_images`` or gSDE's ``squash_output``:
those come from the user's ``policy_kwargs`` or are SB3's defaults for the algorithm, and are listed
as *assumed*.

Example:
    >>> facts = infer_facts("PPO", state, obs_spec, act_spec, {})   # doctest: +SKIP
    >>> facts.policy_kwargs["net_arch"], facts.assumed                # doctest: +SKIP
    ({'pi': [64, 64], 'vf': [64, 64]}, ['activation_fn'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.bundle.spaces import BoxSpec, DictSpec, SpaceSpec, is_image, leaves
from rlport.errors import UnsupportedError
from rlport.frameworks.sb3.classes import check_class_name
from rlport.frameworks.sb3.skeleton import Tensors
from rlport.frameworks.sb3.state_dict_kinds import KINDS, linear_sizes

__all__ = ["Family", "FAMILIES", "Facts", "infer_facts", "activation_name"]

_TORCH_ACTIVATIONS = "torch.nn.modules.activation"


@dataclass(frozen=True)
class Family:
    """How an algorithm's policies are built and named.

    Attributes:
        kind: the layout of its state_dict (``actor_critic``, ``q``, ``quantile``, ``squashed``,
            ``deterministic``, ``ars``).
        module: the module of its policy classes, as SB3 saves them (``model.policy_class``).
        classes: policy alias (``"MlpPolicy"``) -> class name in ``module``.
        activation: SB3's default ``activation_fn`` for the algorithm.
    """

    kind: str
    module: str
    classes: dict[str, str]
    activation: str


_ACTOR_CRITIC = {"MlpPolicy": "ActorCriticPolicy", "CnnPolicy": "ActorCriticCnnPolicy",
                 "MultiInputPolicy": "MultiInputActorCriticPolicy"}  # fmt: skip

_RECURRENT = {"MlpLstmPolicy": "RecurrentActorCriticPolicy", "CnnLstmPolicy": "RecurrentActorCriticCnnPolicy",
              "MultiInputLstmPolicy": "RecurrentMultiInputActorCriticPolicy"}  # fmt: skip


def _aliases(mlp: str) -> dict[str, str]:
    return {"MlpPolicy": mlp, "CnnPolicy": "CnnPolicy", "MultiInputPolicy": "MultiInputPolicy"}


FAMILIES: dict[str, Family] = {
    "A2C": Family("actor_critic", "stable_baselines3.common.policies", _ACTOR_CRITIC, "Tanh"),
    "PPO": Family("actor_critic", "stable_baselines3.common.policies", _ACTOR_CRITIC, "Tanh"),
    "TRPO": Family("actor_critic", "stable_baselines3.common.policies", _ACTOR_CRITIC, "Tanh"),
    "MaskablePPO": Family("actor_critic", "sb3_contrib.common.maskable.policies",
                          {k: f"Maskable{v}" for k, v in _ACTOR_CRITIC.items()}, "Tanh"),
    "RecurrentPPO": Family("actor_critic", "sb3_contrib.common.recurrent.policies", _RECURRENT, "Tanh"),
    "DQN": Family("q", "stable_baselines3.dqn.policies", _aliases("DQNPolicy"), "ReLU"),
    "QRDQN": Family("quantile", "sb3_contrib.qrdqn.policies", _aliases("QRDQNPolicy"), "ReLU"),
    "SAC": Family("squashed", "stable_baselines3.sac.policies", _aliases("SACPolicy"), "ReLU"),
    "TQC": Family("squashed", "sb3_contrib.tqc.policies", _aliases("TQCPolicy"), "ReLU"),
    "CrossQ": Family("squashed", "sb3_contrib.crossq.policies", {"MlpPolicy": "CrossQPolicy"}, "ReLU"),
    "TD3": Family("deterministic", "stable_baselines3.td3.policies", _aliases("TD3Policy"), "ReLU"),
    "DDPG": Family("deterministic", "stable_baselines3.td3.policies", _aliases("TD3Policy"), "ReLU"),
    "ARS": Family("ars", "sb3_contrib.ars.policies", {"MlpPolicy": "ARSPolicy", "LinearPolicy": "ARSLinearPolicy"},
                  "ReLU"),
}  # fmt: skip
"""Every algorithm whose bare state_dict rlport imports (the algorithms of ``rlport.to_sb3``)."""

_ACTOR = {"actor_critic": "mlp_extractor.policy_net", "q": "q_net.q_net", "quantile": "quantile_net.quantile_net",
          "squashed": "actor.latent_pi", "deterministic": "actor.mu", "ars": "action_net"}  # fmt: skip
"""Each kind's actor MLP (whose hidden layers the activation acts in)."""
_EXTRACTOR = {"actor_critic": "pi_features_extractor", "q": "q_net.features_extractor",
              "quantile": "quantile_net.features_extractor", "squashed": "actor.features_extractor",
              "deterministic": "actor.features_extractor", "ars": "features_extractor"}  # fmt: skip
"""Each kind's actor features extractor; with a critic's copy to tell sharing (``_SHARED``)."""
_SHARED = {"actor_critic": "vf_features_extractor", "squashed": "critic.features_extractor",
           "deterministic": "critic.features_extractor"}  # fmt: skip


@dataclass
class Facts:
    """The policy a state_dict belongs to: class, ``policy_kwargs`` (classes by dotted name), and what was assumed.

    Attributes:
        policy_class: the dotted class name SB3 saves (``stable_baselines3.dqn.policies.DQNPolicy``).
        alias: the name the user passes SB3 (``"MlpPolicy"``).
        policy_kwargs: every fact SB3 needs to rebuild it, JSON-able.
        assumed: the facts neither the tensors nor the user gave (``"activation_fn"``, ``"policy_class"``...).
        legacy: why today's SB3 cannot build this policy (shared layers of SB3 < 1.8), or None.
    """

    policy_class: str
    alias: str
    policy_kwargs: dict[str, Any]
    assumed: list[str] = field(default_factory=list)
    legacy: str | None = None


def activation_name(value: Any, what: str) -> str:
    """The dotted name of an activation given as a class, ``"ReLU"``, ``"nn.ReLU"`` or a dotted name."""
    if isinstance(value, type):
        value = f"{value.__module__}.{value.__qualname__}"
    if not isinstance(value, str):
        raise UnsupportedError(f"{what}: activation_fn should be a torch.nn activation class or its name, "
                               f"found {type(value).__name__}")  # fmt: skip
    short = value.rsplit(".", 1)[-1]
    name = value if value.count(".") > 2 else f"{_TORCH_ACTIVATIONS}.{short}"
    return check_class_name(name, "activation_fn", what, 'pass e.g. policy_kwargs={"activation_fn": "ReLU"}')


def _has_prelu(t: Tensors, prefix: str) -> bool:
    """A 1-d weight with no bias and no running statistics: a PReLU between two Linear layers."""
    for index in t.indices(prefix):
        layer = f"{prefix}.{index}"
        weight = t.state.get(f"{layer}.weight")
        others = (f"{layer}.bias", f"{layer}.running_mean", f"{layer}.ra_mean")
        if weight is not None and weight.ndim == 1 and not any(name in t.state for name in others):
            return True
    return False


def _same(t: Tensors, a: str, b: str) -> bool:
    """Whether the tensors under ``a`` and ``b`` are the same names with equal values (one shared module)."""
    left = {k[len(a) :]: v for k, v in t.state.items() if k.startswith(a + ".")}
    right = {k[len(b) :]: v for k, v in t.state.items() if k.startswith(b + ".")}
    return left.keys() == right.keys() and all(np.array_equal(v, right[k]) for k, v in left.items())


def _extractor(t: Tensors, prefix: str, obs: SpaceSpec, found: dict[str, Any]) -> str:
    """The policy alias the features extractor's tensors mean, and its ``features_extractor_kwargs``."""
    kwargs: dict[str, Any] = {}
    if isinstance(obs, DictSpec):
        images = [(k, s) for k, s in obs.spaces if t.has_prefix(f"{prefix}.extractors.{k}.cnn")]
        dims = {int(t.get(f"{prefix}.extractors.{k}.linear.0.weight").shape[0]) for k, _ in images}
        if len(dims) > 1:
            raise UnsupportedError(
                f"the image keys of the Dict space have CNNs of {sorted(dims)} features; SB3's "
                "CombinedExtractor gives each the same cnn_output_dim (a custom extractor?)"
            )
        kwargs.update({"cnn_output_dim": dims.pop()} if dims else {})
        alias = "MultiInputPolicy"
    elif t.has_prefix(f"{prefix}.cnn"):
        kwargs["features_dim"] = int(t.get(f"{prefix}.linear.0.weight").shape[0])
        images, alias = [("", obs)], "CnnPolicy"
    else:
        images, alias = [], "MlpPolicy"
    if any(not is_image(space) for _, space in images):
        kwargs["normalized_image"] = True  # a CNN on a space SB3 does not take for raw pixels
    if kwargs:
        found["features_extractor_kwargs"] = kwargs
    return alias


def _normal_arch(value: Any, kind: str) -> Any:
    """``net_arch`` in the form inferred facts have: a dict for actor-critic and off-policy actors, else a list."""
    keys = {"actor_critic": ("pi", "vf"), "squashed": ("pi", "qf"), "deterministic": ("pi", "qf")}.get(kind)
    if keys and isinstance(value, list) and all(isinstance(v, int) for v in value):
        return {key: list(value) for key in keys}
    if keys and isinstance(value, dict):
        return {key: list(value.get(key, [])) for key in keys}
    return value


def _merge(found: dict[str, Any], given: dict[str, Any], kind: str, what: str) -> dict[str, Any]:
    """The inferred facts with the user's added; a given fact the tensors contradict is refused, named."""
    out = dict(found)
    for key, value in given.items():
        value = _normal_arch(value, kind) if key == "net_arch" else value
        ours = found.get(key)
        if isinstance(ours, dict) and isinstance(value, dict) and key != "net_arch":
            clash = {k for k in ours.keys() & value.keys() if ours[k] != value[k]}
            value = {**ours, **value} if not clash else value
        else:
            clash = key in found and ours != value
        if clash:
            raise UnsupportedError(
                f"{what}: policy_kwargs {key}={value!r} does not fit the tensors, which say {key}={ours!r}; "
                f"correct it or leave it out (rlport reads it from the tensors)"
            )
        out[key] = value
    return out


def _activation(t: Tensors, family: Family, given: Any, hidden: int, what: str) -> tuple[str | None, bool]:
    """The activation's dotted name (None: no hidden layer uses one) and whether it is assumed."""
    prelu = _has_prelu(t, _ACTOR[family.kind])
    if given is not None:
        name = activation_name(given, what)
        if prelu != name.endswith(".PReLU") and (prelu or hidden):
            held = "hold PReLU weights" if prelu else "hold no PReLU weights"
            raise UnsupportedError(f"{what}: policy_kwargs activation_fn={name} does not fit the tensors, which "
                                   f"{held} between the Linear layers of {_ACTOR[family.kind]}")  # fmt: skip
        return name, False
    if prelu:
        return f"{_TORCH_ACTIVATIONS}.PReLU", False
    return (f"{_TORCH_ACTIVATIONS}.{family.activation}", True) if hidden else (None, False)


def _hidden(found: dict[str, Any]) -> int:
    arch = found.get("net_arch")
    return len(arch["pi"]) if isinstance(arch, dict) else len(arch or [])


def _alias(family: Family, inferred: str, given: str | None, hidden: int, what: str) -> tuple[str, bool]:
    """The policy alias (``MlpPolicy``...) in the algorithm's own names, and whether it was assumed."""
    if family.kind == "ars":
        inferred = "MlpPolicy" if hidden else "LinearPolicy"
    names = list(family.classes)
    index = ["MlpPolicy", "CnnPolicy", "MultiInputPolicy"].index(inferred) if family.kind != "ars" else None
    alias = inferred if index is None else names[index] if index < len(names) else None
    if alias is None:
        raise UnsupportedError(f"{what}: the tensors are those of a {inferred}, which this algorithm does not "
                               f"have (its policies: {', '.join(names)})")  # fmt: skip
    if given is not None and given != alias and not (family.kind == "ars" and not hidden and given in names):
        raise UnsupportedError(f"{what}: policy {given!r} does not fit the tensors, which are those of a {alias} "
                               f"(this algorithm's policies: {', '.join(names)})")  # fmt: skip
    return given or alias, family.kind == "ars" and not hidden and given is None


def infer_facts(
    algorithm: str,
    state: dict[str, np.ndarray],
    obs: SpaceSpec,
    act: SpaceSpec,
    given: dict[str, Any],
    policy: str | None = None,
    what: str = "the state_dict",
) -> Facts:
    """The facts of the SB3 policy that ``state`` is the state_dict of (torch-free).

    Args:
        algorithm: a key of :data:`FAMILIES` (``"PPO"``).
        state: the tensors by name.
        obs, act: the spaces the policy was built with (channel-first images, as SB3 transposes them).
        given: the user's ``policy_kwargs`` (classes by name); each one the tensors also tell must agree.
        policy: the user's policy alias, when given (``"LinearPolicy"``).
        what: the file, for messages.

    Raises:
        UnsupportedError: an unknown algorithm, or a given fact the tensors contradict (named).
    """
    family = FAMILIES.get(algorithm)
    if family is None:
        raise UnsupportedError(f"algorithm {algorithm!r} is not one rlport imports weights of; known: "
                               f"{', '.join(FAMILIES)}")  # fmt: skip
    t, found, assumed = Tensors(state), {}, {}
    KINDS[family.kind](t, act, found, assumed)
    prefix = _EXTRACTOR[family.kind]
    prefix = prefix if family.kind != "actor_critic" or t.has_prefix(prefix) else "features_extractor"
    inferred_alias = _extractor(t, prefix, obs, found)
    if family.kind in _SHARED and t.has_prefix(prefix):
        found["share_features_extractor"] = _same(t, prefix, _SHARED[family.kind])
    hidden = _hidden(found)
    name, activation_assumed = _activation(t, family, given.get("activation_fn"), hidden, what)
    alias, alias_assumed = _alias(family, inferred_alias, policy, hidden, what)
    if family.kind == "ars" and isinstance(act, BoxSpec):
        assumed["squash_output"] = alias == "MlpPolicy"  # ARSPolicy squashes by default, ARSLinearPolicy does not
    if family.kind != "ars" and any(is_image(space) for _, space in leaves(obs)):
        assumed["normalize_images"] = True
    merged = _merge(found, {k: v for k, v in given.items() if k != "activation_fn"}, family.kind, what)
    if name is not None:
        merged["activation_fn"] = name
    if alias == "LinearPolicy":
        merged.pop("net_arch")  # ARSLinearPolicy has none: no hidden layer
    facts = Facts(f"{family.module}.{family.classes[alias]}", alias, merged)
    for key, value in assumed.items():
        if key not in given:
            merged[key] = value
            facts.assumed.append(key)
    facts.assumed += ["activation_fn"] * activation_assumed + ["policy_class"] * alias_assumed
    if t.has_prefix("mlp_extractor.shared_net"):
        merged["net_arch"] = [*linear_sizes(t, "mlp_extractor.shared_net"), merged["net_arch"]]
        facts.legacy = "its layers shared by actor and critic (SB3 < 1.8) are not built by today's SB3"
    return facts
