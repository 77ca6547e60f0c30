"""SB2's off-policy policies as graph nodes: DQN (``deepq.policies``), SAC, TD3 and DDPG.

Each builds the acting network as SB2 creates it (``tf.layers.dense`` / contrib ``fully_connected``
layers, optional contrib ``layer_norm``, ``nature_cnn``), declared in creation order so that
list-form parameter files resolve too, and the critic where SB3's equivalent keeps one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.bundle.spaces import BoxSpec, DiscreteSpec, SpaceSpec
from rlport.errors import UnsupportedError, short
from rlport.frameworks.sb2.policy_nets import (
    Act,
    declare_cnn,
    declare_dense,
    declare_layer_norm,
    emit_act,
    emit_cnn,
    emit_dense,
    emit_layer_norm,
)
from rlport.frameworks.sb2.policy_params import Layout, activation
from rlport.graph.builder import GraphBuilder

__all__ = ["OffPolicy", "build_dqn", "build_actor", "LOG_STD_MIN", "LOG_STD_MAX"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB2's clip of SAC's log_std (sac/policies.py)
NATURE_CNN = "stable_baselines.common.policies.nature_cnn"
_KWARGS = {"layers", "act_fun", "feature_extraction", "cnn_extractor", "layer_norm", "dueling", "reg_weight"}
_POLICIES = {"MlpPolicy": ("mlp", False), "LnMlpPolicy": ("mlp", True), "CnnPolicy": ("cnn", False),
             "LnCnnPolicy": ("cnn", True)}  # fmt: skip


@dataclass
class OffPolicy:
    """What was built: the action value, SB3's policy_kwargs when SB3 has the same network, what SB3 lacks."""

    action: str
    sb3_kwargs: dict[str, Any] | None = None
    sb3_missing: list[str] = field(default_factory=list)
    includes_critic: bool = False


@dataclass
class _Net:
    feature: str
    layer_norm: bool
    layers: list[int]
    act: Act
    dueling: bool


def _net(policy: str, kwargs: dict[str, Any], family: str) -> _Net:
    if policy not in _POLICIES:
        raise UnsupportedError(f"{family} policy {short(policy)} is not supported; supported: {', '.join(_POLICIES)}")
    feature, layer_norm = _POLICIES[policy]
    unknown = sorted(set(kwargs) - _KWARGS)
    if unknown:
        raise UnsupportedError(
            f"policy_kwargs {short(unknown)} of {family} are not supported; supported: {sorted(_KWARGS)}"
        )
    feature = kwargs.get("feature_extraction", feature)
    if feature not in ("mlp", "cnn"):
        raise UnsupportedError(f"feature_extraction {short(feature)} is not supported; supported: 'mlp', 'cnn'")
    if feature == "cnn" and kwargs.get("cnn_extractor", NATURE_CNN) != NATURE_CNN:
        raise UnsupportedError(
            f"cnn_extractor {short(kwargs['cnn_extractor'])} is not supported: only SB2's nature_cnn"
        )
    layers = kwargs.get("layers") or [64, 64]
    if not isinstance(layers, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in layers
    ):
        raise UnsupportedError(f"policy_kwargs layers must be a list of positive layer sizes, found {short(layers)}")
    layer_norm = bool(kwargs.get("layer_norm", layer_norm))
    dueling = True if policy == "LnMlpPolicy" and family == "DQN" else bool(kwargs.get("dueling", True))
    return _Net(feature, layer_norm, list(layers), activation(kwargs.get("act_fun"), "relu"), dueling)


def _suffix(k: int) -> str:
    return "" if k == 0 else f"_{k}"


# ---- DQN -----------------------------------------------------------------------------------------


def _declare_dqn(layout: Layout, net: _Net, n_in: int, image: tuple[int, ...] | None, n: int) -> None:
    width = declare_cnn(layout, "model/action_value/", image) if image is not None else n_in
    hidden = [] if image is not None else net.layers  # with a CNN the action branch has no hidden layers
    last = width
    for k, size in enumerate(hidden):
        declare_dense(layout, f"model/action_value/fully_connected{_suffix(k)}", last, size, "fc")
        if net.layer_norm:
            declare_layer_norm(layout, f"model/action_value/LayerNorm{_suffix(k)}", size)
        last = size
    declare_dense(layout, f"model/action_value/fully_connected{_suffix(len(hidden))}", last, n, "fc")
    if net.dueling:
        last = width
        for k, size in enumerate(net.layers):
            declare_dense(layout, f"model/state_value/fully_connected{_suffix(k)}", last, size, "fc")
            if net.layer_norm:
                declare_layer_norm(layout, f"model/state_value/LayerNorm{_suffix(k)}", size)
            last = size
        declare_dense(layout, f"model/state_value/fully_connected{_suffix(len(net.layers))}", last, 1, "fc")


def build_dqn(b: GraphBuilder, x: str, n_in: int, image: tuple[int, ...] | None, policy: str, kwargs: dict,
              space: SpaceSpec, resolve_layout: Any) -> OffPolicy:  # fmt: skip
    """SB2's DQN: argmax of Q (dueling: V + A - mean(A)); sampling draws from softmax(Q) as SB2's step does."""
    net = _net(policy, kwargs, "DQN")
    if not isinstance(space, DiscreteSpec):
        raise UnsupportedError(f"DQN acts in a Discrete action space, not {type(space).__name__}")
    if (net.feature == "cnn") != (image is not None):
        raise UnsupportedError(
            f"DQN {policy} with feature_extraction {net.feature!r} does not fit the observation space"
        )
    layout = Layout("deepq/")
    layout.add("eps", (), needed=False)  # build_act's exploration rate, created before the model
    _declare_dqn(layout, net, n_in, image, space.n)
    values = resolve_layout(layout)
    equivalent = not net.dueling and not net.layer_norm and image is None and net.act[2] is not None
    features = (
        emit_cnn(b, x, values, "model/action_value/", image, "model.action_value.cnn") if image is not None else x
    )
    hidden = [] if image is not None else net.layers
    stem = "q_net.q_net" if equivalent else "model.action_value"
    names = [f"{stem}.{2 * k}" if equivalent else f"{stem}.fully_connected{_suffix(k)}" for k in range(len(hidden) + 1)]
    a = _mlp_stack(b, features, values, net, hidden, "model/action_value/", "fc", names)
    if not net.dueling:
        q = emit_dense(b, a, values, f"model/action_value/fully_connected{_suffix(len(hidden))}", "fc", names[-1])
    else:
        s_names = [f"model.state_value.fully_connected{_suffix(k)}" for k in range(len(net.layers) + 1)]
        s = _mlp_stack(b, features, values, net, net.layers, "model/state_value/", "fc", s_names)
        q = _dueling(b, a, s, values, len(hidden), len(net.layers), space.n)
    action = b.add("categorical", [q])
    missing = [] if equivalent else [_dqn_missing(net, image)]
    kwargs_sb3 = {"net_arch": net.layers, "activation_fn": f"torch.nn.modules.activation.{net.act[2]}"}
    return OffPolicy(action, kwargs_sb3 if equivalent else None, missing, includes_critic=equivalent)


def _dqn_missing(net: _Net, image: Any) -> str:
    parts = [p for p, on in (("a dueling head", net.dueling), ("layer normalisation", net.layer_norm),
                              ("a CNN on channel-last images", image is not None),
                              (f"activation {net.act[0]} with TF's parameters", net.act[2] is None)) if on]  # fmt: skip
    return f"SB2's DQN policy with {' and '.join(parts)}: SB3's DQN has a plain MLP Q-network"


def _mlp_stack(b: GraphBuilder, x: str, values: dict, net: _Net, hidden: list[int], scope: str, kind: str,
               names: list[str]) -> str:  # fmt: skip
    for k, _ in enumerate(hidden):
        layer = f"fully_connected{_suffix(k)}" if kind == "fc" else f"fc{k}"
        x = emit_dense(b, x, values, f"{scope}{layer}", kind, names[k])
        if net.layer_norm:
            x = emit_layer_norm(b, x, values, f"{scope}LayerNorm{_suffix(k)}", f"{names[k]}.layer_norm")
        x = emit_act(b, x, net.act)
    return x


def _dueling(b: GraphBuilder, a: str, s: str, values: dict, n_a: int, n_s: int, n: int) -> str:
    """``V(s) + A - mean(A)`` as one linear node over ``concat(a, s)``: the centring folds into A's weights."""
    wa = values[f"model/action_value/fully_connected{_suffix(n_a)}/weights"].astype(np.float64)
    ba = values[f"model/action_value/fully_connected{_suffix(n_a)}/biases"].astype(np.float64)
    ws = values[f"model/state_value/fully_connected{_suffix(n_s)}/weights"].astype(np.float64)
    bs = values[f"model/state_value/fully_connected{_suffix(n_s)}/biases"].astype(np.float64)
    centre = np.eye(n) - np.full((n, n), 1.0 / n)
    weight = np.concatenate([wa @ centre, np.repeat(ws, n, axis=1)], axis=0)  # (in_a + in_s, n)
    params = {
        "weight": b.tensor("model.dueling_q.weight", weight.T.astype(np.float32)),
        "bias": b.tensor("model.dueling_q.bias", (ba @ centre + bs).astype(np.float32)),
    }
    return b.add("linear", [b.add("concat", [a, s])], params)


# ---- SAC, TD3, DDPG actors -------------------------------------------------------------------------

_OUT = {"sac": "dense", "td3": "dense", "ddpg": "pi"}
"""The actor's output layer name under ``pi/`` (SAC adds ``dense_1`` for log_std)."""


def _declare_actor(layout: Layout, net: _Net, family: str, n_in: int, image: tuple[int, ...] | None, n: int) -> None:
    width = declare_cnn(layout, "pi/", image) if image is not None else n_in
    for k, size in enumerate(net.layers):
        declare_dense(layout, f"pi/fc{k}", width, size, "dense")
        if net.layer_norm:
            declare_layer_norm(layout, f"pi/LayerNorm{_suffix(k)}", size)
        width = size
    declare_dense(layout, f"pi/{_OUT[family]}", width, n, "dense")
    if family == "sac":
        declare_dense(layout, "pi/dense_1", width, n, "dense")


def _declare_critics(layout: Layout, net: _Net, family: str, n_in: int, n_act: int) -> None:
    """SAC's vf, qf1, qf2 / TD3's qf1, qf2: MLPs (the Q-networks on concat(obs, action)), SB3's critic.qf0/qf1."""
    for block in (["vf"] if family == "sac" else []) + ["qf1", "qf2"]:
        width = n_in if block == "vf" else n_in + n_act
        for k, size in enumerate(net.layers):
            declare_dense(layout, f"values_fn/{block}/fc{k}", width, size, "dense", needed=block != "vf")
            width = size
        declare_dense(layout, f"values_fn/{block}/{block}", width, 1, "dense", needed=block != "vf")


def build_actor(b: GraphBuilder, x: str, n_in: int, image: tuple[int, ...] | None, policy: str, kwargs: dict,
                space: SpaceSpec, resolve_layout: Any, family: str) -> OffPolicy:  # fmt: skip
    """SAC (squashed Gaussian, log_std clipped to [-20, 2]), TD3 and DDPG (tanh) actors, in [-1, 1]."""
    name = family.upper()
    net = _net(policy, kwargs, name)
    if not isinstance(space, BoxSpec) or len(space.shape) != 1:
        raise UnsupportedError(f"{name} acts in a 1-d Box action space, not {space!r:.100}")
    if (net.feature == "cnn") != (image is not None):
        raise UnsupportedError(
            f"{name} {policy} with feature_extraction {net.feature!r} does not fit the observation space"
        )
    n = space.shape[0]
    equivalent = image is None and not net.layer_norm and net.act[2] is not None
    layout = Layout("model/")
    _declare_actor(layout, net, family, n_in, image, n)
    with_critic = equivalent and family in ("sac", "td3")
    if with_critic:
        _declare_critics(layout, net, family, n_in, n)
    values = resolve_layout(layout)
    if image is not None:
        x = emit_cnn(b, x, values, "pi/", image, "model.pi.cnn")
    stem = {"sac": "actor.latent_pi", "td3": "actor.mu", "ddpg": "actor.mu"}[family] if equivalent else "model.pi"
    names = [f"{stem}.{2 * k}" if equivalent else f"{stem}.fc{k}" for k in range(len(net.layers))]
    h = _mlp_stack(b, x, values, net, net.layers, "pi/", "dense", names)
    out = (
        f"{stem}.{2 * len(net.layers)}"
        if equivalent and family != "sac"
        else ("actor.mu" if equivalent else "model.pi.out")
    )
    mean = emit_dense(b, h, values, f"pi/{_OUT[family]}", "dense", out)
    if family == "sac":
        log_std = emit_dense(b, h, values, "pi/dense_1", "dense", "actor.log_std" if equivalent else "model.pi.log_std")
        log_std = b.add("clip", [log_std], attrs={"min": LOG_STD_MIN, "max": LOG_STD_MAX})
        mean = b.add("gaussian", [mean, log_std])
    action = b.add("tanh", [mean])
    if with_critic:
        _critic_tensors(b, values, net)
    what = "a CNN on channel-last images" if image else "layer normalisation" if net.layer_norm else net.act[0]
    missing = [] if equivalent else [f"SB2's {name} policy with {what}: SB3's {name} has a plain MLP actor"]
    kwargs_sb3 = {"net_arch": net.layers, "activation_fn": f"torch.nn.modules.activation.{net.act[2]}"}
    return OffPolicy(action, kwargs_sb3 if equivalent else None, missing, includes_critic=with_critic)


def _critic_tensors(b: GraphBuilder, values: dict, net: _Net) -> None:
    """SB2's qf1 / qf2 as SB3's ``critic.qf0`` / ``critic.qf1`` (kept for training, not used to act)."""
    for q, block in ((0, "qf1"), (1, "qf2")):
        layers = [f"fc{k}" for k in range(len(net.layers))] + [block]
        for k, layer in enumerate(layers):
            b.tensor(f"critic.qf{q}.{2 * k}.weight", values[f"values_fn/{block}/{layer}/kernel"].T)
            b.tensor(f"critic.qf{q}.{2 * k}.bias", values[f"values_fn/{block}/{layer}/bias"])
