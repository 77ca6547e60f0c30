"""The facts each kind of SB3 policy's state_dict tells by its tensor names and shapes (torch-free).

One function per kind (``actor_critic``, ``squashed``, ``q``, ``quantile``, ``deterministic``,
``ars``): it adds to ``found`` what the tensors say (``net_arch``, ``n_critics``, gSDE...) and to
``assumed`` the SB3 defaults of what they cannot say. :mod:`rlport.frameworks.sb3.state_dict_facts`
puts them together with the features extractor, the activation and the user's ``policy_kwargs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.bundle.spaces import BoxSpec, DiscreteSpec, SpaceSpec
from rlport.frameworks.sb3.skeleton import Tensors

__all__ = ["KINDS", "linear_sizes"]


def linear_sizes(t: Tensors, prefix: str) -> list[int]:
    """The output sizes of the Linear layers of the Sequential at ``prefix``, in order."""
    sizes = []
    for index in t.indices(prefix):
        weight = t.state.get(f"{prefix}.{index}.weight")
        if weight is not None and weight.ndim == 2:
            sizes.append(int(weight.shape[0]))
    return sizes


def _count(t: Tensors, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in t.state if k.startswith(prefix)})


def _action_dim(act: SpaceSpec) -> int:
    return int(np.prod(act.shape)) if isinstance(act, BoxSpec) else 1


def _gsde(t: Tensors, name: str, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    """gSDE keeps ``log_std`` as a (latent, actions) matrix (``full_std``) or a (latent, 1) one."""
    log_std = t.state.get(name)
    found["use_sde"] = log_std is not None and log_std.ndim == 2
    if not found["use_sde"]:
        return
    assumed["use_expln"] = False
    if _action_dim(act) > 1:
        found["full_std"] = int(log_std.shape[1]) == _action_dim(act)
    else:
        assumed["full_std"] = True


def _actor_critic(t: Tensors, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    found["net_arch"] = {"pi": linear_sizes(t, "mlp_extractor.policy_net"),
                         "vf": linear_sizes(t, "mlp_extractor.value_net")}  # fmt: skip
    if isinstance(act, BoxSpec):
        _gsde(t, "log_std", act, found, assumed)
        if found["use_sde"]:
            assumed["squash_output"] = False
    if "lstm_actor.weight_hh_l0" in t.state:
        found["lstm_hidden_size"] = int(t.state["lstm_actor.weight_hh_l0"].shape[1])
        found["n_lstm_layers"] = _count(t, "lstm_actor.weight_ih_l")
        found["enable_critic_lstm"] = t.has_prefix("lstm_critic")
        found["shared_lstm"] = not t.has_prefix("lstm_critic") and not t.has_prefix("critic")


def _squashed(t: Tensors, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    """SAC, TQC and CrossQ: a latent MLP, a mean layer, a log_std layer (or gSDE's matrix), n critics."""
    found["net_arch"] = {"pi": linear_sizes(t, "actor.latent_pi"), "qf": linear_sizes(t, "critic.qf0")[:-1]}
    found["n_critics"] = _count(t, "critic.qf")
    if any(k.startswith("actor.latent_pi.") and k.endswith(".ra_mean") for k in t.state):
        found["batch_norm"] = True
        assumed["batch_norm_eps"] = 0.001
    if linear_sizes(t, "critic.qf0")[-1:] not in ([], [1]):
        found["n_quantiles"] = linear_sizes(t, "critic.qf0")[-1]  # TQC
    _gsde(t, "actor.log_std", act, found, assumed)
    found.pop("full_std", None)  # SAC-family policies always build a full_std actor
    if found["use_sde"] and "actor.mu.0.weight" in t.state:
        assumed["clip_mean"] = 2.0  # Hardtanh(-clip_mean, clip_mean) after the mean: its bound is no tensor
    elif found["use_sde"]:
        found["clip_mean"] = 0.0


def _q(t: Tensors, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    found["net_arch"] = linear_sizes(t, "q_net.q_net")[:-1]


def _quantile(t: Tensors, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    sizes = linear_sizes(t, "quantile_net.quantile_net")
    found["net_arch"] = sizes[:-1]
    if sizes and isinstance(act, DiscreteSpec):
        found["n_quantiles"] = sizes[-1] // int(act.n)


def _deterministic(t: Tensors, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    found["net_arch"] = {"pi": linear_sizes(t, "actor.mu")[:-1], "qf": linear_sizes(t, "critic.qf0")[:-1]}
    found["n_critics"] = _count(t, "critic.qf")


def _ars(t: Tensors, act: SpaceSpec, found: dict[str, Any], assumed: dict[str, Any]) -> None:
    found["net_arch"] = linear_sizes(t, "action_net")[:-1]
    found["with_bias"] = any(k.startswith("action_net.") and k.endswith(".bias") for k in t.state)


KINDS = {"actor_critic": _actor_critic, "squashed": _squashed, "q": _q, "quantile": _quantile,
          "deterministic": _deterministic, "ars": _ars}  # fmt: skip
