"""The bundle's ``source`` for an SB2 model: SB2's own description, and SB3's where SB3 has the same policy.

Where Stable-Baselines3 has an equivalent (A2C/ACKTR -> A2C; PPO1/PPO2/TRPO/GAIL -> PPO; DQN without
dueling or layer norm -> DQN; SAC, TD3, DDPG; HER -> the wrapped algorithm with HerReplayBuffer), the
keys are those ``rlport.from_sb3`` writes for that SB3 model, so ``rlport.to_sb3`` rebuilds it.
Elsewhere ``source["sb3_missing"]`` says what SB3 lacks, for ``to_sb3``'s refusal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rlport.bundle.spaces import DictSpec

if TYPE_CHECKING:
    from rlport.frameworks.sb2.model import ObsNormalisation, SB2Model

__all__ = ["sb3_source", "SB3_ALGORITHMS"]

SB3_ALGORITHMS = {
    "a2c": "A2C", "acktr": "A2C", "ppo1": "PPO", "ppo2": "PPO", "trpo": "PPO", "gail": "PPO",
    "dqn": "DQN", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG",
}  # fmt: skip
"""SB2 algorithm -> the SB3 algorithm whose policy is the same network (ACER has none)."""

_MODULES = {"A2C": "a2c", "PPO": "ppo", "DQN": "dqn", "SAC": "sac", "TD3": "td3", "DDPG": "ddpg"}
_POLICY_CLASS = {
    "A2C": "stable_baselines3.common.policies.ActorCriticPolicy",
    "PPO": "stable_baselines3.common.policies.ActorCriticPolicy",
    "DQN": "stable_baselines3.dqn.policies.DQNPolicy",
    "SAC": "stable_baselines3.sac.policies.SACPolicy",
    "TD3": "stable_baselines3.td3.policies.TD3Policy",
    "DDPG": "stable_baselines3.td3.policies.TD3Policy",
}
_MULTI_INPUT = {
    "DQN": "stable_baselines3.dqn.policies.MultiInputPolicy",
    "SAC": "stable_baselines3.sac.policies.MultiInputPolicy",
    "TD3": "stable_baselines3.td3.policies.MultiInputPolicy",
    "DDPG": "stable_baselines3.td3.policies.MultiInputPolicy",
}

_SETTINGS = {  # SB2 data key -> SB3 constructor argument (plain numbers only; schedules are left out)
    "gamma": "gamma", "learning_rate": "learning_rate", "ent_coef": "ent_coef", "vf_coef": "vf_coef",
    "max_grad_norm": "max_grad_norm", "n_steps": "n_steps", "lam": "gae_lambda", "noptepochs": "n_epochs",
    "cliprange": "clip_range", "buffer_size": "buffer_size", "batch_size": "batch_size", "tau": "tau",
    "learning_starts": "learning_starts", "train_freq": "train_freq", "gradient_steps": "gradient_steps",
    "target_network_update_freq": "target_update_interval", "exploration_fraction": "exploration_fraction",
    "exploration_final_eps": "exploration_final_eps", "policy_delay": "policy_delay",
    "target_policy_noise": "target_policy_noise", "target_noise_clip": "target_noise_clip",
}  # fmt: skip


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Inert values as JSON: containers, plain scalars; anything else its type name."""
    if depth > 16:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        return _jsonable(value.item(), depth + 1)
    return f"<{type(value).__name__}>"


def _hyperparameters(model: SB2Model, algorithm: str) -> dict[str, Any]:
    out = {}
    for key, target in _SETTINGS.items():
        value = model.data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if not (key == "ent_coef" and algorithm == "SAC"):  # SAC's "auto" or a float: SB3 takes both forms
                out[target] = value
    if algorithm == "SAC" and isinstance(model.data.get("ent_coef"), str):
        out["ent_coef"] = model.data["ent_coef"]
    her = model.data.get("_her")
    if isinstance(her, dict):
        out["replay_buffer_class"] = "stable_baselines3.her.her_replay_buffer.HerReplayBuffer"
        kwargs = {
            k: her[k] for k in ("n_sampled_goal", "goal_selection_strategy") if isinstance(her.get(k), (int, str))
        }
        if kwargs:
            out["replay_buffer_kwargs"] = kwargs
    return out


def sb3_source(
    model: SB2Model, built: Any, tensor_names: list[str], obs_norm: ObsNormalisation | None
) -> dict[str, Any]:
    """``source`` of the bundle: ``framework``, ``sb2`` and either SB3's keys or ``sb3_missing``."""
    source: dict[str, Any] = {
        "framework": "stable-baselines",
        "sb2": {
            "algorithm": model.algorithm,
            "policy": model.policy,
            "policy_module": model.policy_module,
            "policy_kwargs": _jsonable(model.policy_kwargs or {}),
            "version": model.version,
            "her": isinstance(model.data.get("_her"), dict),
        },
    }
    missing = list(built.sb3_missing)
    if model.algorithm == "acer":
        missing.insert(0, "ACER (Stable-Baselines3 has no ACER; its policy network alone would need a Q head too)")
    if model.algorithm == "ddpg" and "ddpg.obs_rms.mean" in tensor_names:
        missing.append("DDPG's observation normalisation on top of the zoo's VecNormalize, or an asymmetric "
                       "observation_range (SB3's DDPG has neither)")  # fmt: skip
    if missing or built.sb3_kwargs is None:
        source["sb3_missing"] = "; ".join(missing) or "this SB2 policy"
        return source
    algorithm = SB3_ALGORITHMS[model.algorithm]
    dict_obs = isinstance(model.observation_space, DictSpec)
    source.update({
        "algorithm": algorithm,
        "algorithm_class": f"stable_baselines3.{_MODULES[algorithm]}.{_MODULES[algorithm]}.{algorithm}",
        "policy_class": _MULTI_INPUT[algorithm] if dict_obs else _POLICY_CLASS[algorithm],
        "policy_kwargs": dict(built.sb3_kwargs),
        "state_dict": [n for n in tensor_names if not n.startswith(("space.", "vecnormalize.", "sb2."))],
        "includes_critic": bool(getattr(built, "includes_critic", True)),
        "squash_output": model.algorithm in ("sac", "td3", "ddpg"),
        "use_sde": False,
        "hyperparameters": _hyperparameters(model, algorithm),
    })  # fmt: skip
    settings = _vec_normalize(model, obs_norm, tensor_names)
    if settings is not None:
        source["vec_normalize"] = settings
    return source


def _vec_normalize(model: SB2Model, obs_norm: ObsNormalisation | None, tensor_names: list[str]) -> dict | None:
    """VecNormalize's settings for the observation statistics kept as ``vecnormalize.obs.*`` tensors."""
    if "vecnormalize.obs.mean" not in tensor_names:
        return None
    if obs_norm is not None:
        clip, epsilon = float(obs_norm.clip), float(obs_norm.epsilon)
    else:  # DDPG's own obs_rms, clipped to its symmetric observation_range
        from rlport.frameworks.sb2.policy_ddpg import observation_range

        clip, epsilon = observation_range(model)[1], 0.0
    return {
        "norm_obs": True, "norm_reward": False, "clip_obs": clip, "clip_reward": 10.0,
        "gamma": float(model.data.get("gamma", 0.99)), "epsilon": epsilon, "norm_obs_keys": None,
        "obs_count": 0.0, "ret_mean": None, "ret_var": None, "ret_count": 0.0,
    }  # fmt: skip
