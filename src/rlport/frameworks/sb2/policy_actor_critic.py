"""SB2's actor-critic policies (``stable_baselines.common.policies``) as graph nodes.

Used by A2C, ACER, ACKTR, PPO1, PPO2, TRPO and GAIL: ``FeedForwardPolicy`` (MlpPolicy, CnnPolicy)
and ``LstmPolicy`` (MlpLstmPolicy, MlpLnLstmPolicy, CnnLstmPolicy, CnnLnLstmPolicy), with their
``policy_kwargs`` (``layers``, ``net_arch``, ``act_fun``, ``feature_extraction``, ``n_lstm``,
``cnn_extractor`` when it is ``nature_cnn``). Variables are declared in SB2's creation order
(``mlp_extractor``'s interleaved ``pi_fc``/``vf_fc`` layers, then ``vf``, ``pi``, ``pi/logstd``, ``q``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import numpy as np

from rlport.bundle.spaces import BoxSpec, DiscreteSpec, MultiBinarySpec, MultiDiscreteSpec, SpaceSpec
from rlport.errors import UnsupportedError, short
from rlport.frameworks.sb2.policy_nets import (
    Act,
    declare_cnn,
    declare_dense,
    declare_lstm,
    emit_act,
    emit_cnn,
    emit_dense,
    emit_lstm,
)
from rlport.frameworks.sb2.policy_params import Layout, activation
from rlport.graph.builder import GraphBuilder

__all__ = ["POLICIES", "ActorCritic", "build_actor_critic"]

POLICIES = {
    "MlpPolicy": ("feedforward", "mlp", False),
    "CnnPolicy": ("feedforward", "cnn", False),
    "MlpLstmPolicy": ("lstm", "mlp", False),
    "MlpLnLstmPolicy": ("lstm", "mlp", True),
    "CnnLstmPolicy": ("lstm", "cnn", False),
    "CnnLnLstmPolicy": ("lstm", "cnn", True),
}
"""SB2 actor-critic policy class -> (kind, feature extraction, layer-normalised LSTM)."""

_KWARGS = {"layers", "net_arch", "act_fun", "feature_extraction", "cnn_extractor", "n_lstm", "layer_norm"}
NATURE_CNN = "stable_baselines.common.policies.nature_cnn"


@dataclass
class ActorCritic:
    """What was built: the action value, SB3's names when SB3 has the same network, what SB3 lacks."""

    action: str
    sb3_kwargs: dict[str, Any] | None = None
    sb3_missing: list[str] = field(default_factory=list)


@dataclass
class _Arch:
    kind: str
    feature: str
    layer_norm: bool
    act: Act
    shared: list[tuple[int, Any]]  # (net_arch index, int size or "lstm")
    pi: list[int]
    vf: list[int]
    n_lstm: int
    legacy_lstm: bool


def _sizes(value: Any, what: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                        for v in value):  # fmt: skip
        raise UnsupportedError(f"policy_kwargs {what} must be a list of positive layer sizes, found {short(value)}")
    return list(value)


def _arch(policy: str, kwargs: dict[str, Any]) -> _Arch:
    kind, feature, layer_norm = POLICIES[policy]
    unknown = sorted(set(kwargs) - _KWARGS)
    if unknown:
        raise UnsupportedError(
            f"policy_kwargs {short(unknown)} of {policy} are not supported; supported: {sorted(_KWARGS)}"
        )
    feature = kwargs.get("feature_extraction", feature)
    if feature not in ("mlp", "cnn"):
        raise UnsupportedError(f"feature_extraction {short(feature)} is not supported; supported: 'mlp', 'cnn'")
    if feature == "cnn" and kwargs.get("cnn_extractor", NATURE_CNN) != NATURE_CNN:
        raise UnsupportedError(
            f"cnn_extractor {short(kwargs['cnn_extractor'])} is not supported: only SB2's nature_cnn is known "
            "(a custom extractor is code the file does not describe)"
        )
    layer_norm = bool(kwargs.get("layer_norm", layer_norm)) if kind == "lstm" else False
    n_lstm = int(kwargs.get("n_lstm", 256))
    act = activation(kwargs.get("act_fun"), "tanh")
    net_arch = kwargs.get("net_arch")
    legacy = net_arch is None
    if legacy:
        layers = _sizes(kwargs.get("layers") or [64, 64], "layers")
        if kind == "lstm":
            shared = [] if feature == "cnn" else [(i, size) for i, size in enumerate(layers)]
            return _Arch(kind, feature, layer_norm, act, shared, [], [], n_lstm, True)
        net_arch = [{"vf": layers, "pi": layers}]
    if kind == "feedforward" and feature == "cnn":  # pi_latent = vf_latent = cnn_extractor(obs): no mlp_extractor
        return _Arch(kind, feature, layer_norm, act, [], [], [], n_lstm, False)
    if feature == "cnn" and kind == "lstm":
        raise UnsupportedError("SB2's LstmPolicy with net_arch has no CNN variant (SB2 raises NotImplementedError)")
    shared, pi, vf = _split(net_arch, kind == "lstm")
    return _Arch(kind, feature, layer_norm, act, shared, pi, vf, n_lstm, False)


def _split(net_arch: Any, lstm: bool) -> tuple[list[tuple[int, Any]], list[int], list[int]]:
    """SB2's ``net_arch``: shared sizes (and ``"lstm"``), then an optional ``dict(pi=[...], vf=[...])``."""
    if not isinstance(net_arch, (list, tuple)):
        raise UnsupportedError(f"policy_kwargs net_arch must be a list, found {short(net_arch)}")
    shared: list[tuple[int, Any]] = []
    pi: list[int] = []
    vf: list[int] = []
    for idx, layer in enumerate(net_arch):
        if isinstance(layer, int) and not isinstance(layer, bool) and layer > 0:
            shared.append((idx, layer))
        elif lstm and layer == "lstm" and all(s != "lstm" for _, s in shared):
            shared.append((idx, "lstm"))
        elif isinstance(layer, dict) and set(layer) <= {"pi", "vf"}:
            pi, vf = _sizes(layer.get("pi", []), "net_arch pi"), _sizes(layer.get("vf", []), "net_arch vf")
            break
        else:
            raise UnsupportedError(f"policy_kwargs net_arch entry {short(layer)} is not supported")
    if lstm and all(s != "lstm" for _, s in shared):
        raise UnsupportedError("policy_kwargs net_arch of an LSTM policy must contain 'lstm' once")
    return shared, pi, vf


def _head_width(space: SpaceSpec) -> int:
    if isinstance(space, DiscreteSpec):
        return space.n
    if isinstance(space, MultiDiscreteSpec):
        return int(sum(space.nvec))
    if isinstance(space, (BoxSpec, MultiBinarySpec)):
        return int(np.prod(space.shape))
    raise UnsupportedError(f"action space {type(space).__name__} is not supported by SB2's actor-critic policies")


def _declare(
    layout: Layout, arch: _Arch, n_in: int, image: tuple[int, ...] | None, space: SpaceSpec
) -> tuple[int, int]:
    """Every variable of the model scope in creation order; returns the policy and value latent widths."""
    width = declare_cnn(layout, "", image) if image is not None else n_in
    if arch.legacy_lstm:
        for i, size in arch.shared:
            declare_dense(layout, f"pi_fc{i}", width, size, "linear")
            width = size
        declare_lstm(layout, "lstm1", width, arch.n_lstm, arch.layer_norm)
        pi_w = vf_w = arch.n_lstm
    else:
        for idx, size in arch.shared:
            if size == "lstm":
                declare_lstm(layout, "lstm1", width, arch.n_lstm, arch.layer_norm)
                width = arch.n_lstm
            else:
                declare_dense(layout, f"shared_fc{idx}", width, size, "linear")
                width = size
        pi_w = vf_w = width
        pairs = zip_longest(arch.pi, arch.vf) if arch.kind == "feedforward" else \
            [(p, None) for p in arch.pi] + [(None, v) for v in arch.vf]  # fmt: skip
        for idx, (p, v) in enumerate(pairs):
            idx = idx if arch.kind == "feedforward" or p is not None else idx - len(arch.pi)
            if p is not None:
                declare_dense(layout, f"pi_fc{idx}", pi_w, p, "linear")
                pi_w = p
            if v is not None:
                declare_dense(layout, f"vf_fc{idx}", vf_w, v, "linear")
                vf_w = v
    n_act = _head_width(space)
    declare_dense(layout, "vf", vf_w, 1, "linear")
    declare_dense(layout, "pi", pi_w, n_act, "linear")
    if isinstance(space, BoxSpec):
        layout.add("pi/logstd", (1, n_act))
    declare_dense(layout, "q", vf_w, n_act, "linear", needed=False)
    return pi_w, vf_w


def build_actor_critic(
    b: GraphBuilder,
    x: str,
    n_in: int,
    image: tuple[int, ...] | None,
    policy: str,
    kwargs: dict[str, Any],
    space: SpaceSpec,
    resolve_layout: Any,
) -> ActorCritic:
    """Emit the policy's nodes from ``x`` (flat features, or an NHWC image when ``image`` is its shape).

    ``resolve_layout(layout)`` reads the declared variables from the file.
    """
    arch = _arch(policy, kwargs)
    if (arch.feature == "cnn") != (image is not None):
        needs = "an image (H, W, C) Box" if arch.feature == "cnn" else "a flat"
        raise UnsupportedError(f"{policy} with feature_extraction {arch.feature!r} needs {needs} observation space")
    layout = Layout(("model/", "pi/model/"))
    _declare(layout, arch, n_in, image, space)
    values = resolve_layout(layout)
    equivalent = arch.kind == "feedforward" and arch.feature == "mlp" and arch.act[2] is not None
    names = _Names(equivalent)
    if image is not None:
        x = emit_cnn(b, x, values, "", image, "model.cnn")
    latent = x
    lstm_done = False
    for k, (idx, size) in enumerate(arch.shared):
        if size == "lstm":
            latent, lstm_done = emit_lstm(b, latent, values, "lstm1", arch.n_lstm, arch.layer_norm, "model.lstm1"), True
            continue
        scope = f"pi_fc{idx}" if arch.legacy_lstm else f"shared_fc{idx}"
        latent = emit_act(b, emit_dense(b, latent, values, scope, "linear", names.layer("shared", scope, k)), arch.act)
    if arch.kind == "lstm" and not lstm_done:
        latent = emit_lstm(b, latent, values, "lstm1", arch.n_lstm, arch.layer_norm, "model.lstm1")
    pi = latent
    for k, _ in enumerate(arch.pi):
        pi = emit_act(
            b, emit_dense(b, pi, values, f"pi_fc{k}", "linear", names.layer("policy", f"pi_fc{k}", k)), arch.act
        )
    if equivalent:
        for k, _ in enumerate(arch.vf):
            for part in ("w", "b"):
                _critic_tensor(b, values, f"vf_fc{k}/{part}", f"mlp_extractor.value_net.{2 * k}")
        _critic_tensor(b, values, "vf/w", "value_net")
        _critic_tensor(b, values, "vf/b", "value_net")
    action = _head(b, pi, values, space, names)
    return ActorCritic(action, _sb3_kwargs(arch) if equivalent else None, _missing(arch))


def _critic_tensor(b: GraphBuilder, values: dict[str, np.ndarray], var: str, name: str) -> None:
    array = values[var]
    if var.endswith("/w"):
        b.tensor(f"{name}.weight", array.T)
    else:
        b.tensor(f"{name}.bias", array.reshape(-1))


class _Names:
    """Tensor names: SB3's ``state_dict`` names where SB3 has the same network, else ``model.<TF scope>``."""

    def __init__(self, sb3: bool) -> None:
        self.sb3 = sb3

    def layer(self, branch: str, scope: str, k: int) -> str:
        return f"mlp_extractor.{branch}_net.{2 * k}" if self.sb3 else f"model.{scope}"

    def head(self, kind: str) -> str:
        return {"pi": "action_net", "logstd": "log_std"}[kind] if self.sb3 else f"model.pi.{kind}"


def _head(b: GraphBuilder, latent: str, values: dict[str, np.ndarray], space: SpaceSpec, names: _Names) -> str:
    """The distribution over ``pi``'s output: its mode, or a sample (SB2's proba_distribution_from_latent)."""
    logits = emit_dense(b, latent, values, "pi", "linear", names.head("pi"))
    if isinstance(space, BoxSpec):
        log_std = b.tensor(names.head("logstd"), values["pi/logstd"].reshape(-1))
        return b.add("gaussian", [logits], {"log_std": log_std})
    if isinstance(space, DiscreteSpec):
        return b.add("categorical", [logits])
    if isinstance(space, MultiDiscreteSpec):
        return b.add("multi_categorical", [logits], attrs={"sizes": [int(n) for n in space.nvec]})
    return b.add("bernoulli", [logits])


def _sb3_kwargs(arch: _Arch) -> dict[str, Any]:
    shared = [size for _, size in arch.shared]
    return {
        "net_arch": {"pi": shared + arch.pi, "vf": shared + arch.vf},
        "activation_fn": f"torch.nn.modules.activation.{arch.act[2]}",
    }


def _missing(arch: _Arch) -> list[str]:
    if arch.kind == "lstm":
        return [f"SB2's {'layer-normalised ' if arch.layer_norm else ''}LSTM policy (an LSTM shared by actor and "
                "critic, SB2's gate layout and single bias): sb3-contrib's RecurrentPPO has separate actor and critic "
                "LSTMs after the features"]  # fmt: skip
    if arch.feature == "cnn":
        return ["SB2's CnnPolicy on channel-last images (rlport keeps TF's NHWC convolution layout)"]
    if arch.act[2] is None:
        return [f"activation {arch.act[0]} with TF's parameters (torch's default differs)"]
    return []
