"""Build the acting graph of an SB2 (Stable Baselines 2, TensorFlow 1) model read by ``files.read_sb2``.

This is the one place that knows SB2's policies. It reproduces ``model.predict``: the observation
as ``observation_input`` processes it (one-hot, cast, the CNN policies' scaling to [0, 1]), the
zoo's VecNormalize statistics and DDPG's own ``obs_rms``, the network, the distribution's mode (or
sample), and the action post-processing (clipping for the actor-critic algorithms' Box actions;
``unscale_action`` of the tanh-squashed SAC, TD3 and DDPG actors; argmax for DQN). HER models take
the goal env's Dict observation, concatenated in SB2's ``KEY_ORDER``.

Where Stable-Baselines3 has the same policy, tensors are named and ``source`` filled as
``rlport.from_sb3`` does for that SB3 model, so that ``rlport.to_sb3`` rebuilds it; elsewhere
``source["sb3_missing"]`` says what SB3 lacks.

Example:
    >>> sb2 = build_sb2_graph(read_sb2("a2c/CartPole-v1.pkl"), None)   # doctest: +SKIP
    >>> sb2.source["algorithm"], sb2.graph.output                       # doctest: +SKIP
    ('A2C', 'action')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import (
    BoxSpec,
    DictSpec,
    DiscreteSpec,
    MultiBinarySpec,
    MultiDiscreteSpec,
    SpaceSpec,
    is_image,
)
from rlport.errors import UnsupportedError, short
from rlport.frameworks.sb2 import policy_actor_critic, policy_offpolicy
from rlport.frameworks.sb2.policy_ddpg import ddpg_observations
from rlport.frameworks.sb2.policy_params import resolve
from rlport.frameworks.sb2.policy_source import sb3_source
from rlport.graph.builder import GraphBuilder
from rlport.graph.graph import Graph

if TYPE_CHECKING:
    from rlport.frameworks.sb2.model import ObsNormalisation, SB2Model

__all__ = ["SB2Graph", "build_sb2_graph", "HER_KEY_ORDER"]

HER_KEY_ORDER = ("observation", "achieved_goal", "desired_goal")
"""SB2's ``her.utils.KEY_ORDER``: how HERGoalEnvWrapper concatenates a goal env's Dict observation."""

_ACTOR_CRITIC = ("a2c", "acer", "acktr", "ppo1", "ppo2", "trpo", "gail")
_OFF_POLICY = ("dqn", "sac", "td3", "ddpg")


@dataclass
class SB2Graph:
    """An SB2 model's acting graph, its tensors, the bundle's ``source`` and what the graph leaves out."""

    graph: Graph
    tensors: dict[str, np.ndarray]
    source: dict[str, Any]
    cannot_express: list[str] = field(default_factory=list)


@dataclass
class _Obs:
    value: str
    width: int  # the flat feature width (MLP policies)
    image: tuple[int, ...] | None  # (H, W, C) for the CNN policies
    her_rows: np.ndarray | None = None  # HER: KEY_ORDER feature index of each feature in the graph's order


def build_sb2_graph(model: SB2Model, obs_norm: ObsNormalisation | None) -> SB2Graph:
    """The graph that acts as ``model.predict`` does (deterministic: exactly; sampled: SB2's distribution).

    Args:
        model: the SB2 model, read without TensorFlow.
        obs_norm: the RL Zoo's VecNormalize observation statistics, when the zoo normalised.

    Raises:
        UnsupportedError: an algorithm, policy class, policy_kwargs entry, space or activation the graph
            cannot express, or parameters that do not fit the policy (the message names the first one).
    """
    algorithm = model.algorithm
    if algorithm not in _ACTOR_CRITIC + _OFF_POLICY:
        raise UnsupportedError(
            f"{model.path or 'the file'}: SB2 algorithm {short(algorithm)} is not supported; supported: "
            f"{', '.join(_ACTOR_CRITIC + _OFF_POLICY)} (and HER around dqn, sac, td3, ddpg)"
        )
    b = GraphBuilder()
    obs = _observations(b, model, obs_norm)
    what = model.path or f"the SB2 {algorithm} file"

    def resolve_layout(layout: Any) -> dict[str, np.ndarray]:
        values = resolve(model.params, layout, what)
        return _her_rows(values, obs.her_rows) if obs.her_rows is not None else values

    kwargs = dict(model.policy_kwargs or {})
    if algorithm in _ACTOR_CRITIC:
        if model.policy not in policy_actor_critic.POLICIES:
            raise _unknown_policy(model, list(policy_actor_critic.POLICIES))
        built: Any = policy_actor_critic.build_actor_critic(
            b, obs.value, obs.width, obs.image, model.policy, kwargs, model.action_space, resolve_layout
        )
    elif algorithm == "dqn":
        built = policy_offpolicy.build_dqn(b, obs.value, obs.width, obs.image, model.policy, kwargs,
                                           model.action_space, resolve_layout)  # fmt: skip
    else:
        built = policy_offpolicy.build_actor(b, obs.value, obs.width, obs.image, model.policy, kwargs,
                                             model.action_space, resolve_layout, algorithm)  # fmt: skip
    output = _postprocess(b, built.action, model)
    source = sb3_source(model, built, list(b.tensors), obs_norm)
    return SB2Graph(b.build(output), dict(b.tensors), source, _cannot_express(model))


def _unknown_policy(model: SB2Model, known: list[str]) -> UnsupportedError:
    return UnsupportedError(
        f"{model.path or 'the file'}: SB2 policy {short(model.policy)} ({short(model.policy_module)}) is not supported "
        f"for {model.algorithm}; supported: {', '.join(known)} (a custom policy class is code the file does not "
        "describe)"
    )


# ---- observations --------------------------------------------------------------------------------


def _observations(b: GraphBuilder, model: SB2Model, obs_norm: ObsNormalisation | None) -> _Obs:
    """Graph inputs and SB2's ``observation_input`` processing (plus normalisation); HER: Dict concatenated."""
    b.stage = "preprocess"
    space = model.observation_space
    cnn = _uses_cnn(model)
    if isinstance(space, DictSpec):
        obs = _her_observation(b, model, space, obs_norm)
    else:
        x = b.input("obs", "observation", key=None)
        if obs_norm is not None:
            x = _vec_normalize(b, x, obs_norm, space)
        obs = _leaf(b, x, space, cnn)
    if model.algorithm == "ddpg":
        shape = obs.image or (tuple(space.shape) if isinstance(space, BoxSpec) else (obs.width,))
        obs = _Obs(ddpg_observations(b, obs.value, model, shape), obs.width, obs.image, obs.her_rows)
    if obs.image is None and isinstance(space, BoxSpec) and len(space.shape) > 1:
        obs = _Obs(b.add("flatten", [obs.value]), obs.width, None)
    b.stage = "policy"
    return obs


def _uses_cnn(model: SB2Model) -> bool:
    kwargs = model.policy_kwargs or {}
    default = "cnn" if model.policy.startswith(("Cnn", "LnCnn")) else "mlp"
    return kwargs.get("feature_extraction", default) == "cnn"


def _leaf(b: GraphBuilder, x: str, space: SpaceSpec, cnn: bool) -> _Obs:
    if isinstance(space, DiscreteSpec):
        return _Obs(b.add("one_hot", [x], attrs={"n": space.n}), space.n, None)
    if isinstance(space, MultiDiscreteSpec):
        sizes = [int(n) for n in space.nvec]
        return _Obs(b.add("multi_one_hot", [x], attrs={"sizes": sizes}), sum(sizes), None)
    if isinstance(space, MultiBinarySpec):
        return _Obs(b.add("cast", [x], attrs={"dtype": "float32"}), int(np.prod(space.shape)), None)
    if not isinstance(space, BoxSpec):
        raise UnsupportedError(f"observation space {type(space).__name__} is not supported by SB2 policies")
    width = int(np.prod(space.shape))
    if not cnn:
        return _Obs(b.add("cast", [x], attrs={"dtype": "float32"}), width, None)
    if len(space.shape) != 3:
        raise UnsupportedError(f"SB2's nature_cnn needs an (H, W, C) image observation, found shape {space.shape}")
    return _Obs(_scaled(b, x, space), width, tuple(space.shape))


def _scaled(b: GraphBuilder, x: str, space: BoxSpec) -> str:
    """The CNN policies' ``(obs - low) / (high - low)`` when the bounds are finite (images: ``obs / 255``)."""
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.any(high != low)):
        return b.add("cast", [x], attrs={"dtype": "float32"})
    if is_image(space):
        return b.add("divide", [x], attrs={"divisor": 255.0})
    if np.any(high == low):
        raise UnsupportedError("SB2 divides by a zero range (high == low) in some observation element: refused")
    params = {
        "mean": b.tensor("sb2.obs_scale.low", low.astype(np.float32)),
        "var": b.tensor("sb2.obs_scale.range_squared", np.square(high.astype(np.float64) - low).astype(np.float32)),
    }
    return b.add("normalize", [x], params, {"epsilon": 0.0, "clip": float(np.finfo(np.float32).max)})


def _vec_normalize(b: GraphBuilder, x: str, norm: ObsNormalisation, space: SpaceSpec) -> str:
    shape = getattr(space, "shape", None)
    if np.shape(norm.mean) != shape or np.shape(norm.var) != shape:
        raise UnsupportedError(
            f"the observation statistics have shape {np.shape(norm.mean)}, the observation space {shape}: "
            "obs_rms.pkl does not belong to this model"
        )
    params = {
        "mean": b.tensor("vecnormalize.obs.mean", np.asarray(norm.mean, dtype=np.float64)),
        "var": b.tensor("vecnormalize.obs.var", np.asarray(norm.var, dtype=np.float64)),
    }
    return b.add("normalize", [x], params, {"epsilon": float(norm.epsilon), "clip": float(norm.clip)})


def _her_observation(b: GraphBuilder, model: SB2Model, space: DictSpec, obs_norm: Any) -> _Obs:
    """HERGoalEnvWrapper.convert_dict_to_obs: the keys' values concatenated in KEY_ORDER.

    The graph concatenates in the Dict space's own key order (SB3's CombinedExtractor's order), and the
    first layers' kernel rows are permuted to match (:func:`_her_rows`): the same products, summed.
    """
    spaces = dict(space.spaces)
    if set(spaces) != set(HER_KEY_ORDER) or obs_norm is not None:
        raise UnsupportedError(
            f"a Dict observation space is supported for HER goal envs with exactly the keys {HER_KEY_ORDER} "
            f"and without VecNormalize; found keys {short(sorted(spaces))}"
        )
    parts, sizes = [], {}
    for key, sub in space.spaces:  # inputs in the space's own order (the format requires it)
        x = b.input(f"obs.{key}", "observation", key=(key,))
        if not isinstance(sub, (BoxSpec, MultiBinarySpec)) or len(getattr(sub, "shape", ())) != 1:
            raise UnsupportedError(f"HER observation {key!r} must be a 1-d Box, found {type(sub).__name__}")
        parts.append(b.add("cast", [x], attrs={"dtype": "float32"}))
        sizes[key] = int(sub.shape[0])
    offsets = dict(zip(HER_KEY_ORDER, np.cumsum([0] + [sizes[k] for k in HER_KEY_ORDER]), strict=False))
    rows = np.concatenate([np.arange(offsets[key], offsets[key] + sizes[key]) for key, _ in space.spaces])
    return _Obs(b.add("concat", parts), int(sum(sizes.values())), None, rows)


FIRST_KERNELS = ("pi/fc0/kernel", "values_fn/qf1/fc0/kernel", "values_fn/qf2/fc0/kernel", "values_fn/vf/fc0/kernel",
                 "model/action_value/fully_connected/weights", "model/state_value/fully_connected/weights")  # fmt: skip
"""The kernels that read the observation (HER): their rows follow the observation's feature order."""


def _her_rows(values: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(values)
    for name in FIRST_KERNELS:
        if name in out:
            kernel = out[name]
            out[name] = np.concatenate([kernel[rows], kernel[len(rows) :]], axis=0)  # Q-networks: actions after
    return out


# ---- actions -------------------------------------------------------------------------------------


def _postprocess(b: GraphBuilder, action: str, model: SB2Model) -> str:
    """Clip Box actions (actor-critic ``predict``), unscale the tanh actors' [-1, 1] to the bounds."""
    space = model.action_space
    b.stage = "postprocess"
    shape = tuple(getattr(space, "shape", ()) or ())
    if len(shape) > 1:
        action = b.add("reshape", [action], attrs={"shape": list(shape)})
    if isinstance(space, BoxSpec):
        params = {
            "low": b.tensor("space.action.low", np.broadcast_to(space.low, shape).astype(space.dtype)),
            "high": b.tensor("space.action.high", np.broadcast_to(space.high, shape).astype(space.dtype)),
        }
        op = "rescale_to_bounds" if model.algorithm in ("sac", "td3", "ddpg") else "clip_to_bounds"
        return b.add(op, [action], params, name="action")
    return b.add("identity", [action], name="action")


def _cannot_express(model: SB2Model) -> list[str]:
    """What SB2 does when acting that the graph leaves out."""
    out = []
    if model.algorithm in ("ddpg", "td3") and model.data.get("action_noise") is not None:
        out.append("exploration noise (action_noise) added when not deterministic")
    if model.algorithm == "ddpg" and model.data.get("param_noise") is not None:
        out.append("parameter noise (param_noise) of the perturbed actor when not deterministic")
    if model.algorithm == "acer":
        out.append("ACER's Q head (not used to act)")
    return out
