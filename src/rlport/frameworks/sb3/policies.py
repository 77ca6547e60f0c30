"""Build the policy graph of a live SB3 / sb3-contrib policy.

This is the one place that knows SB3's policy classes. It reproduces ``BasePolicy.predict``:
``preprocess_obs`` (+ VecNormalize), the features extractor, the network, the action
distribution's mode (or sample) and the Box post-processing (unscale or clip).
"""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np

from rlport.errors import UnsupportedError
from rlport.frameworks.torch.modules import SUPPORTED_LAYERS, emit_module
from rlport.graph.builder import GraphBuilder, to_numpy

__all__ = ["build_graph", "PolicyBuilder"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's clamp of the SAC-family actor's log_std


def _cls(obj: Any) -> str:
    return type(obj).__name__


class PolicyBuilder(GraphBuilder):
    """The graph builder of an SB3 policy; custom modules in it are captured with ``torch.export``.

    Attributes:
        policy: the live policy (its modules' example inputs are recorded on first need).
        constants: names of the tensors rlport made from captured modules' literals (kept fixed in training).
    """

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        self.constants: list[str] = []
        self._examples: dict[Any, Any] | None = None

    def example(self, key: Any) -> Any:
        """The input of module ``key`` (``id(module)``; ``("out", id(module))``: its output) on sample observations."""
        if self._examples is None:
            self._examples = _example_inputs(self.policy)
        if key not in self._examples:
            raise UnsupportedError("a custom module of the policy is not called by its predict(); cannot capture it")
        return self._examples[key]


_LIBRARIES = ("torch.", "stable_baselines3.", "sb3_contrib.")


def _translatable(module: Any) -> bool:
    """Whether :func:`emit_module` knows every layer in ``module`` (library classes it lists)."""
    return all(
        type(m).__module__.startswith(_LIBRARIES) and type(m).__name__ in SUPPORTED_LAYERS for m in module.modules()
    )


_RECURRENT = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")


def _recurrent(module: Any) -> bool:
    """Whether ``module`` holds a recurrent layer (refused by name: its state has no place in a captured graph)."""
    return any(type(m).__name__ in _RECURRENT for m in module.modules())


def _example_inputs(policy: Any) -> dict[Any, Any]:
    """Each module's first input (and output) during one deterministic ``_predict`` on two sampled observations."""
    import copy

    import torch

    seen: dict[Any, Any] = {}

    def before(module: Any, args: Any) -> None:
        seen.setdefault(id(module), args[0] if args else None)

    def after(module: Any, args: Any, out: Any) -> None:
        seen.setdefault(("out", id(module)), out)

    handles = [m.register_forward_pre_hook(before) for m in policy.modules()]
    handles += [m.register_forward_hook(after) for m in policy.modules()]
    space = copy.deepcopy(policy.observation_space)
    space.seed(0)
    samples = [space.sample() for _ in range(2)]
    obs = (
        {k: np.stack([s[k] for s in samples]) for k in samples[0]}
        if isinstance(samples[0], dict)
        else np.stack(samples)
    )
    try:
        with torch.no_grad():
            policy._predict(policy.obs_to_tensor(obs)[0], deterministic=True)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _emit(b: GraphBuilder, module: Any, x: Any, prefix: str, example_key: Any = None, method: str | None = None) -> str:
    """The ops of ``module(x)``: its layers when rlport knows them all, else captured with ``torch.export``."""
    if not isinstance(b, PolicyBuilder) or (method is None and (_translatable(module) or _recurrent(module))):
        return emit_module(b, module, x, prefix)  # a skeleton (a file) has nothing to run; an RNN is refused by name
    from rlport.frameworks.torch.capture import emit_captured
    from rlport.frameworks.torch.values import Emitter

    e = Emitter(b, prefix=f"{prefix}.")
    out = emit_captured(e, module, x, b.example(id(module) if example_key is None else example_key), method)
    b.constants += e.made
    return out


# ---- observations ------------------------------------------------------------------------


def _is_image_space(space: Any) -> bool:
    """SB3's ``is_image_space`` (channels not checked): a 3-d uint8 Box bounded by 0 and 255."""
    return (
        len(space.shape) == 3
        and np.dtype(space.dtype) == np.uint8
        and bool(np.all(np.asarray(space.low) == 0))
        and bool(np.all(np.asarray(space.high) == 255))
    )


def _leaf_preprocess(b: GraphBuilder, x: str, space: Any, normalize_images: bool) -> str:
    """SB3's ``preprocess_obs`` for one non-dict space."""
    kind = _cls(space)
    if kind == "Box":
        if normalize_images and _is_image_space(space):
            return b.add("divide", [x], attrs={"divisor": 255.0})
        return b.add("cast", [x], attrs={"dtype": "float32"})
    if kind == "Discrete":
        return b.add("one_hot", [x], attrs={"n": int(space.n)})
    if kind == "MultiDiscrete":
        return b.add("multi_one_hot", [x], attrs={"sizes": [int(n) for n in np.asarray(space.nvec).ravel()]})
    if kind == "MultiBinary":
        return b.add("cast", [x], attrs={"dtype": "float32"})
    raise UnsupportedError(f"observation space {kind} is not supported")


def _normalize(b: GraphBuilder, x: str, rms: Any, vec_normalize: Any, key: str | None) -> str:
    stem = "vecnormalize.obs" if key is None else f"vecnormalize.obs.{key}"
    params = {
        "mean": b.tensor(f"{stem}.mean", np.asarray(rms.mean, dtype=np.float64)),
        "var": b.tensor(f"{stem}.var", np.asarray(rms.var, dtype=np.float64)),
    }
    attrs = {"epsilon": float(vec_normalize.epsilon), "clip": float(vec_normalize.clip_obs)}
    return b.add("normalize", [x], params, attrs)


def _observations(b: GraphBuilder, policy: Any, vec_normalize: Any) -> str | dict[str, str]:
    """Graph inputs and pre-processing; a value per dict key, or one value."""
    space = policy.observation_space
    normalize = vec_normalize is not None and vec_normalize.norm_obs
    b.stage = "preprocess"
    if _cls(space) != "Dict":
        x = b.input("obs", "observation", key=None)
        if normalize:
            x = _normalize(b, x, vec_normalize.obs_rms, vec_normalize, None)
        out = _leaf_preprocess(b, x, space, policy.normalize_images)
    else:
        keys = getattr(vec_normalize, "norm_obs_keys", None) if normalize else []
        keys = list(space.spaces) if keys is None else list(keys)  # an empty list normalises no key
        out = {}
        for key, sub in space.spaces.items():
            if _cls(sub) == "Dict":
                raise UnsupportedError(f"nested dict observations (key {key!r}) are not supported by SB3 policies")
            x = b.input(f"obs.{key}", "observation", key=(key,))
            if key in keys:
                x = _normalize(b, x, vec_normalize.obs_rms[key], vec_normalize, key)
            out[key] = _leaf_preprocess(b, x, sub, policy.normalize_images)
    b.stage = "policy"
    return out


def _features(b: GraphBuilder, extractor: Any, obs: str | dict[str, str], prefix: str) -> str:
    """The features extractor; ``CombinedExtractor`` concatenates its per-key extractors."""
    if _cls(extractor) == "CombinedExtractor":
        if not isinstance(obs, dict):
            raise UnsupportedError("CombinedExtractor needs a dict observation space")
        parts = [_emit(b, sub, obs[key], f"{prefix}.extractors.{key}") for key, sub in extractor.extractors.items()]
        return b.add("concat", parts)
    if isinstance(obs, dict) and not isinstance(b, PolicyBuilder):
        raise UnsupportedError(
            f"features extractor {_cls(extractor)} on a dict observation space; supported: CombinedExtractor"
        )
    return _emit(b, extractor, obs, prefix)


# ---- actions -----------------------------------------------------------------------------


def _distribution(b: GraphBuilder, dist: Any, mean: str, latent: str, mask: str | None) -> str:
    """The action distribution's mode (deterministic) or sample, from its parameters."""
    kind = _cls(dist)
    masks = [mask] if mask else []
    if kind == "BernoulliDistribution":  # its ``action_dims`` is one int: the number of binary actions
        return b.add("bernoulli", [mean])
    if "MultiCategorical" in kind or kind == "MaskableBernoulliDistribution":  # two categories per binary action
        return b.add("multi_categorical", [mean, *masks], attrs={"sizes": [int(n) for n in dist.action_dims]})
    if "Categorical" in kind:
        return b.add("categorical", [mean, *masks])
    raise UnsupportedError(f"action distribution {kind} is not supported")


def _gaussian_head(b: GraphBuilder, policy: Any, dist: Any, mean: str, latent: str, log_std: Any, name: str) -> str:
    """A Gaussian or gSDE head (``log_std`` a parameter tensor) and its optional tanh squash."""
    params = {"log_std": b.tensor(name, log_std)}
    if _cls(dist) == "StateDependentNoiseDistribution":
        attrs = {"use_expln": bool(dist.use_expln), "full_std": bool(dist.full_std), "epsilon": float(dist.epsilon)}
        action = b.add("gsde", [mean, latent], params, attrs)
        if dist.bijector is not None:
            action = b.add("tanh", [action])
        return action
    if _cls(dist) == "DiagGaussianDistribution":
        return b.add("gaussian", [mean], params)
    raise UnsupportedError(f"action distribution {_cls(dist)} is not supported")


def _postprocess(b: GraphBuilder, action: str, policy: Any) -> str:
    """Reshape to the action space; unscale (squashed policies) or clip Box actions."""
    space = policy.action_space
    b.stage = "postprocess"
    shape = tuple(getattr(space, "shape", ()) or ())
    if len(shape) > 1:
        action = b.add("reshape", [action], attrs={"shape": list(shape)})
    if _cls(space) == "Box":
        params = {
            "low": b.tensor("space.action.low", np.asarray(space.low)),
            "high": b.tensor("space.action.high", np.asarray(space.high)),
        }
        op = "rescale_to_bounds" if policy.squash_output else "clip_to_bounds"
        action = b.add(op, [action], params, name="action")
    elif action != "action":
        action = b.add("identity", [action], name="action")
    return action


# ---- policy families ---------------------------------------------------------------------


def _actor_critic(b: GraphBuilder, policy: Any, obs: Any, mask: str | None) -> str:
    """A2C, PPO, TRPO, MaskablePPO and RecurrentPPO (``ActorCriticPolicy`` and subclasses)."""
    shared = getattr(policy, "share_features_extractor", True)
    extractor_name = "features_extractor" if shared else "pi_features_extractor"
    latent = _features(b, getattr(policy, extractor_name), obs, extractor_name)
    if hasattr(policy, "lstm_actor"):
        latent = _lstm(b, policy.lstm_actor, latent, "lstm_actor")
    extractor = policy.mlp_extractor
    if isinstance(b, PolicyBuilder) and not _library_mlp_extractor(extractor):  # the user's own actor network
        features = getattr(policy, extractor_name)
        latent = _emit(b, extractor, latent, "mlp_extractor", ("out", id(features)), method="forward_actor")
    else:
        if hasattr(extractor, "shared_net"):  # saved by SB3 < 1.8: layers shared with the critic
            latent = emit_module(b, extractor.shared_net, latent, "mlp_extractor.shared_net")
        latent = _emit(b, extractor.policy_net, latent, "mlp_extractor.policy_net")
    mean = _emit(b, policy.action_net, latent, "action_net")
    dist = policy.action_dist
    if _cls(dist) in ("DiagGaussianDistribution", "StateDependentNoiseDistribution"):
        return _gaussian_head(b, policy, dist, mean, latent, policy.log_std, "log_std")
    return _distribution(b, dist, mean, latent, mask)


def _library_mlp_extractor(extractor: Any) -> bool:
    return type(extractor).__module__.startswith(_LIBRARIES) and hasattr(extractor, "policy_net")


def _lstm(b: GraphBuilder, lstm: Any, x: str, prefix: str) -> str:
    if lstm.bidirectional or getattr(lstm, "proj_size", 0) or not lstm.bias or lstm.batch_first:
        raise UnsupportedError("only unidirectional LSTMs with biases, no projection and batch_first=False")
    layers, hidden = int(lstm.num_layers), int(lstm.hidden_size)
    fields = {"shape": (layers, hidden), "batch_axis": 1, "dtype": "float32"}
    h = b.input("lstm_h", "state", output="lstm_h_out", **fields)
    c = b.input("lstm_c", "state", output="lstm_c_out", **fields)
    start = b.input("episode_start", "episode_start")
    params = {}
    for k in range(layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            params[f"{kind}.{k}"] = b.tensor(f"{prefix}.{kind}_l{k}", getattr(lstm, f"{kind}_l{k}"))
    attrs = {"layers": layers, "hidden_size": hidden}
    names = ["lstm_out", "lstm_h_out", "lstm_c_out"]
    return b.add("lstm", [x, h, c, start], params, attrs, outputs=3, names=names)[0]


def _discrete_n(space: Any) -> int:
    """How many actions a Q-network chooses among: its action space must be Discrete."""
    if _cls(space) != "Discrete":
        raise UnsupportedError(f"a Q-network policy acts in a Discrete action space, not {_cls(space)}; "
                               "the file's action space does not fit its policy class")  # fmt: skip
    return int(space.n)


def _q_network(b: GraphBuilder, policy: Any, obs: Any, epsilon: float) -> str:
    """DQN: argmax of Q (epsilon-greedy when sampling)."""
    q_net = policy.q_net
    x = _features(b, q_net.features_extractor, obs, "q_net.features_extractor")
    q = _emit(b, q_net.q_net, x, "q_net.q_net")
    return b.add("greedy", [q], attrs={"epsilon": epsilon, "n": _discrete_n(policy.action_space)})


def _quantile_network(b: GraphBuilder, policy: Any, obs: Any, epsilon: float) -> str:
    """QR-DQN: argmax of the mean over quantiles."""
    net = policy.quantile_net
    x = _features(b, net.features_extractor, obs, "quantile_net.features_extractor")
    quantiles = _emit(b, net.quantile_net, x, "quantile_net.quantile_net")
    n = _discrete_n(policy.action_space)
    quantiles = b.add("reshape", [quantiles], attrs={"shape": [int(net.n_quantiles), n]})
    q = b.add("mean", [quantiles], attrs={"axis": 1})
    return b.add("greedy", [q], attrs={"epsilon": epsilon, "n": n})


def _actor(b: GraphBuilder, policy: Any, obs: Any) -> str:
    """SAC, TQC, CrossQ (squashed Gaussian / gSDE) and TD3, DDPG (deterministic tanh actor)."""
    actor = policy.actor
    x = _features(b, actor.features_extractor, obs, "actor.features_extractor")
    if not hasattr(actor, "latent_pi"):  # TD3 / DDPG: mu ends with Tanh
        return _emit(b, actor.mu, x, "actor.mu")
    latent = _emit(b, actor.latent_pi, x, "actor.latent_pi")
    mean = _emit(b, actor.mu, latent, "actor.mu")
    if actor.use_sde:
        return _gaussian_head(b, actor, actor.action_dist, mean, latent, actor.log_std, "actor.log_std")
    log_std = _emit(b, actor.log_std, latent, "actor.log_std")
    log_std = b.add("clip", [log_std], attrs={"min": LOG_STD_MIN, "max": LOG_STD_MAX})
    return b.add("tanh", [b.add("gaussian", [mean, log_std])])


def _ars(b: GraphBuilder, policy: Any, obs: Any) -> str:
    """ARS linear and MLP policies: the network output, argmax for Discrete."""
    x = _features(b, policy.features_extractor, obs, "features_extractor")
    out = _emit(b, policy.action_net, x, "action_net")
    if _cls(policy.action_space) == "Discrete":
        return b.add("greedy", [out], attrs={"epsilon": 0.0, "n": int(policy.action_space.n)})
    return out


def build_graph(model: Any, vec_normalize: Any = None) -> GraphBuilder:
    """Build the acting graph of ``model.policy``; return the builder (graph and tensors)."""
    policy = model.policy
    b = PolicyBuilder(policy) if _is_live(policy) else GraphBuilder()
    obs = _observations(b, policy, vec_normalize)
    epsilon = float(getattr(model, "exploration_rate", 0.0) or 0.0)
    mask = None
    if "Maskable" in _cls(policy):
        mask = b.input("action_mask", "action_mask", size=_mask_size(policy.action_space))
    if hasattr(policy, "mlp_extractor"):
        action = _actor_critic(b, policy, obs, mask)
    elif hasattr(policy, "quantile_net"):
        action = _quantile_network(b, policy, obs, epsilon)
    elif hasattr(policy, "q_net") and hasattr(policy.q_net, "q_net"):
        action = _q_network(b, policy, obs, epsilon)
    elif hasattr(policy, "actor") and hasattr(policy.actor, "mu"):
        action = _actor(b, policy, obs)
    elif hasattr(policy, "action_net"):
        action = _ars(b, policy, obs)
    else:
        raise UnsupportedError(
            f"policy class {_cls(policy)} is not supported; supported: ActorCriticPolicy (A2C, PPO, TRPO, "
            "MaskablePPO, RecurrentPPO), DQN, QR-DQN, SAC, TQC, TD3, DDPG, CrossQ and ARS policies"
        )
    b.output = _postprocess(b, action, policy)
    return b


def _is_live(policy: Any) -> bool:
    """A live torch policy (custom modules can be captured), not an inert skeleton read from a file.

    A live policy means torch is imported already; a file's import never imports torch (~1.5 s) to find out.
    """
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(policy, torch.nn.Module) and hasattr(policy, "_predict")


def _mask_size(space: Any) -> int:
    kind = _cls(space)
    if kind == "Discrete":
        return int(space.n)
    if kind == "MultiDiscrete":
        return int(np.sum(space.nvec))
    if kind == "MultiBinary":
        return 2 * int(np.prod(space.shape))
    raise UnsupportedError(f"action masks for {kind} action spaces are not supported")


def state_dict(policy: Any) -> dict[str, np.ndarray]:
    """Every tensor of the policy, by its ``state_dict`` name."""
    return {name: to_numpy(value) for name, value in policy.state_dict().items()}


VARIABLES = "variables."
"""Prefix of the tensors holding SB3's saved torch variables (``variables.log_ent_coef``)."""
VARIABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""What a saved variable's name may be: a plain attribute of the algorithm (``log_ent_coef``)."""


def torch_variables(model: Any) -> dict[str, np.ndarray]:
    """The torch variables SB3 saves beside the policy (``pytorch_variables.pth``), by name.

    SAC, TQC and CrossQ save their learned ``log_ent_coef`` (or the fixed ``ent_coef_tensor``);
    other algorithms save none.
    """
    import torch

    names = model._get_torch_save_params()[1] if hasattr(model, "_get_torch_save_params") else []
    found = {}
    for name in names:
        value = model
        for part in name.split("."):
            value = getattr(value, part, None)
        if isinstance(value, torch.Tensor):
            found[name] = to_numpy(value)
    return found
