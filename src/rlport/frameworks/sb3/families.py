"""Skeletons of each SB3 / sb3-contrib policy family, built from a saved state_dict.

Each builder gives an object with the attributes that :mod:`rlport.frameworks.sb3.policies`
reads from a live policy (``mlp_extractor``, ``actor``, ``q_net``, ``action_dist`` ...).
"""

from __future__ import annotations

from typing import Any

from rlport.errors import UnsupportedError
from rlport.frameworks.sb3.skeleton import Skeleton, Tensors, features_extractor, mlp, module

__all__ = ["build"]


def _kind(space: Any) -> str:
    return type(space).__name__


def _base(name: str, observation_space: Any, action_space: Any, kwargs: dict[str, Any], squash: bool) -> Skeleton:
    return module(
        name,
        observation_space=observation_space,
        action_space=action_space,
        normalize_images=bool(kwargs.get("normalize_images", True)),
        squash_output=bool(squash) and _kind(action_space) == "Box",
    )


def _gsde(kwargs: dict[str, Any], squash: bool) -> Skeleton:
    return module(
        "StateDependentNoiseDistribution",
        use_expln=bool(kwargs.get("use_expln", False)),
        full_std=bool(kwargs.get("full_std", True)),
        epsilon=1e-6,
        bijector=module("TanhBijector") if squash else None,
    )


def _action_dist(action_space: Any, kwargs: dict[str, Any], maskable: bool) -> Skeleton:
    """What SB3's ``make_proba_distribution`` (or its maskable version) makes for this space."""
    kind = _kind(action_space)
    prefix = "Maskable" if maskable else ""
    if kind == "Box":
        if kwargs.get("use_sde"):
            return _gsde(kwargs, bool(kwargs.get("squash_output", False)))
        return module("DiagGaussianDistribution")
    if kind == "Discrete":
        return module(f"{prefix}CategoricalDistribution")
    if kind == "MultiDiscrete":
        if len(getattr(action_space.nvec, "shape", ())) != 1:
            raise UnsupportedError(f"a MultiDiscrete action space of shape {action_space.nvec.shape} is not supported "
                                   "(SB3 acts in one-dimensional ones)")  # fmt: skip
        return module(f"{prefix}MultiCategoricalDistribution", action_dims=[int(n) for n in action_space.nvec])
    if kind == "MultiBinary":
        if maskable:
            return module("MaskableBernoulliDistribution", action_dims=[2] * int(_size(action_space)))
        return module("BernoulliDistribution", action_dims=int(_size(action_space)))
    raise UnsupportedError(f"action space {kind} is not supported")


def _size(space: Any) -> int:
    size = 1
    for dim in space.shape:
        size *= int(dim)
    return size


def _lstm(t: Tensors, prefix: str) -> Skeleton:
    layers = len([k for k in t.state if k.startswith(f"{prefix}.weight_ih_l")])
    hidden = int(t.get(f"{prefix}.weight_hh_l0").shape[1])
    lstm = module("LSTM", num_layers=layers, hidden_size=hidden, bidirectional=False, proj_size=0, bias=True,
                  batch_first=False)  # fmt: skip
    for k in range(layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(lstm, f"{kind}_l{k}", t.get(f"{prefix}.{kind}_l{k}"))
    return lstm


def actor_critic(name: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """A2C, PPO, TRPO (ActorCriticPolicy and its Cnn/MultiInput forms), MaskablePPO, RecurrentPPO."""
    squash = bool(kwargs.get("use_sde") and kwargs.get("squash_output", False))
    policy = _base(name, obs, act, kwargs, squash)
    fn = kwargs.get("activation_fn", "Tanh")
    shared = not t.has_prefix("pi_features_extractor")
    extractor = "features_extractor" if shared else "pi_features_extractor"
    policy.share_features_extractor = shared
    setattr(policy, extractor, features_extractor(t, extractor, obs))
    extractor_mlp = module("MlpExtractor", policy_net=mlp(t, "mlp_extractor.policy_net", fn, fn))
    if t.has_prefix("mlp_extractor.shared_net"):  # SB3 < 1.8: layers shared by actor and critic
        extractor_mlp.shared_net = mlp(t, "mlp_extractor.shared_net", fn, fn)
    policy.mlp_extractor = extractor_mlp
    if t.has_prefix("lstm_actor"):
        policy.lstm_actor = _lstm(t, "lstm_actor")
    policy.action_net = module("Linear", weight=t.get("action_net.weight"), bias=t.state.get("action_net.bias"))
    policy.action_dist = _action_dist(act, kwargs, maskable="Maskable" in name)
    if _kind(act) == "Box":
        policy.log_std = t.get("log_std")
    return policy


def q_network(name: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """DQN."""
    policy = _base(name, obs, act, kwargs, False)
    fn = kwargs.get("activation_fn", "ReLU")
    policy.q_net = module(
        "QNetwork",
        features_extractor=features_extractor(t, "q_net.features_extractor", obs),
        q_net=mlp(t, "q_net.q_net", fn, None),
    )
    return policy


def quantile_network(name: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """QR-DQN: the output layer holds ``n_quantiles * n_actions`` units."""
    policy = _base(name, obs, act, kwargs, False)
    fn = kwargs.get("activation_fn", "ReLU")
    net = mlp(t, "quantile_net.quantile_net", fn, None)
    last = list(net._children.values())[-1]
    policy.quantile_net = module(
        "QuantileNetwork",
        features_extractor=features_extractor(t, "quantile_net.features_extractor", obs),
        quantile_net=net,
        n_quantiles=int(last.weight.shape[0]) // int(act.n),
    )
    return policy


def squashed_actor(name: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """SAC, TQC and CrossQ: a latent MLP, a mean layer and log_std (a layer, or gSDE's matrix)."""
    policy = _base(name, obs, act, kwargs, True)
    fn = kwargs.get("activation_fn", "ReLU")
    eps = float(kwargs.get("batch_norm_eps", 0.001))
    use_sde = "actor.log_std" in t.state  # gSDE keeps a log_std matrix; otherwise log_std is a Linear layer
    actor = module(
        "Actor",
        features_extractor=features_extractor(t, "actor.features_extractor", obs),
        latent_pi=mlp(t, "actor.latent_pi", fn, fn, eps=eps),
        use_sde=use_sde,
    )
    if "actor.mu.weight" in t.state:
        actor.mu = module("Linear", weight=t.get("actor.mu.weight"), bias=t.state.get("actor.mu.bias"))
    else:  # gSDE with clip_mean: Sequential(Linear, Hardtanh(-clip_mean, clip_mean))
        clip = float(kwargs.get("clip_mean", 2.0))
        actor.mu = module("Sequential").add("0", module("Linear", weight=t.get("actor.mu.0.weight"),
                                                        bias=t.state.get("actor.mu.0.bias")))  # fmt: skip
        actor.mu.add("1", module("Hardtanh", min_val=-clip, max_val=clip))
    if use_sde:
        actor.log_std = t.get("actor.log_std")
        actor.action_dist = _gsde(kwargs, True)
    else:
        actor.log_std = module("Linear", weight=t.get("actor.log_std.weight"), bias=t.state.get("actor.log_std.bias"))
    policy.actor = actor
    return policy


def deterministic_actor(name: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """TD3 and DDPG: an MLP ending with tanh."""
    policy = _base(name, obs, act, kwargs, True)
    fn = kwargs.get("activation_fn", "ReLU")
    policy.actor = module(
        "Actor",
        features_extractor=features_extractor(t, "actor.features_extractor", obs),
        mu=mlp(t, "actor.mu", fn, "Tanh"),
    )
    return policy


def ars(name: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """ARS linear (no hidden layer, no bias by default) and MLP policies."""
    linear = name == "ARSLinearPolicy"
    squash = bool(kwargs.get("squash_output", not linear)) and _kind(act) == "Box"
    policy = _base(name, obs, act, kwargs, squash)
    policy.features_extractor = features_extractor(t, "features_extractor", obs)
    policy.action_net = mlp(t, "action_net", kwargs.get("activation_fn", "ReLU"), "Tanh" if squash else None)
    return policy


_BY_TENSORS = [
    ("mlp_extractor", actor_critic),
    ("quantile_net", quantile_network),
    ("q_net", q_network),
    ("actor.latent_pi", squashed_actor),
    ("actor.mu", deterministic_actor),
    ("action_net", ars),
]


def build(policy_class: str, t: Tensors, obs: Any, act: Any, kwargs: dict[str, Any]) -> Skeleton:
    """The skeleton of ``policy_class`` ("module.Name"), recognised by the tensors it holds."""
    name = policy_class.rsplit(".", 1)[-1]
    for prefix, builder in _BY_TENSORS:
        if t.has_prefix(prefix):
            return builder(name, t, obs, act, kwargs)
    raise UnsupportedError(
        f"policy class {policy_class} holds tensors rlport does not recognise "
        f"({sorted({k.split('.')[0] for k in t.state})}); supported: A2C, PPO, TRPO, MaskablePPO, RecurrentPPO, "
        "DQN, QR-DQN, SAC, TQC, CrossQ, TD3, DDPG and ARS policies"
    )
