"""Tiny SB3 / sb3-contrib models on made-up spaces, shared by the SB3 importer tests.

Every model is built in-process on :class:`SpacesEnv` (an env that only has spaces), with tiny
networks, on the CPU, and then has *all* its weights (and batch-norm statistics) perturbed with
seeded noise so that ties and default initialisations cannot hide a bug.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import sb3_contrib
import stable_baselines3
import torch
from gymnasium import spaces

import rlport

ALGOS: dict[str, type] = {
    "A2C": stable_baselines3.A2C,
    "PPO": stable_baselines3.PPO,
    "DQN": stable_baselines3.DQN,
    "SAC": stable_baselines3.SAC,
    "TD3": stable_baselines3.TD3,
    "DDPG": stable_baselines3.DDPG,
    "TRPO": sb3_contrib.TRPO,
    "QRDQN": sb3_contrib.QRDQN,
    "TQC": sb3_contrib.TQC,
    "CrossQ": sb3_contrib.CrossQ,
    "ARS": sb3_contrib.ARS,
    "MaskablePPO": sb3_contrib.MaskablePPO,
    "RecurrentPPO": sb3_contrib.RecurrentPPO,
}

# Small rollout / replay sizes: the models are never trained, only built.
ALGO_KWARGS: dict[str, dict[str, Any]] = {
    "A2C": {"n_steps": 8},
    "PPO": {"n_steps": 64, "batch_size": 64},
    "TRPO": {"n_steps": 64, "batch_size": 64},
    "MaskablePPO": {"n_steps": 64, "batch_size": 64},
    "RecurrentPPO": {"n_steps": 64, "batch_size": 64},
    "DQN": {"buffer_size": 64, "learning_starts": 0},
    "QRDQN": {"buffer_size": 64, "learning_starts": 0},
    "SAC": {"buffer_size": 64, "learning_starts": 0},
    "TQC": {"buffer_size": 64, "learning_starts": 0},
    "TD3": {"buffer_size": 64, "learning_starts": 0},
    "DDPG": {"buffer_size": 64, "learning_starts": 0},
    "CrossQ": {"buffer_size": 64, "learning_starts": 0},
    "ARS": {"n_delta": 2},
}

# ---- spaces ------------------------------------------------------------------------------


def _f32(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float32)


OBS_SPACES: dict[str, spaces.Space] = {
    "box": spaces.Box(-3.0, 3.0, (6,), np.float32),
    "box2d": spaces.Box(-2.0, 2.0, (3, 4), np.float32),
    "discrete": spaces.Discrete(7),
    "multidiscrete": spaces.MultiDiscrete([3, 5, 2]),
    "multibinary": spaces.MultiBinary(5),
    "gray": spaces.Box(0, 255, (36, 36, 1), np.uint8),  # channel-last, as envs give images
    "rgb": spaces.Box(0, 255, (36, 36, 3), np.uint8),
    "dict": spaces.Dict(
        {
            "vec": spaces.Box(-1.0, 1.0, (4,), np.float32),
            "disc": spaces.Discrete(5),
            "img": spaces.Box(0, 255, (36, 36, 1), np.uint8),
        }
    ),
    "box64": spaces.Box(-1.0, 1.0, (4,), np.float64),
    "multibinary2d": spaces.MultiBinary([2, 3]),
    "rgb_first": spaces.Box(0, 255, (3, 36, 36), np.uint8),  # already channel-first
    "dict_mixed": spaces.Dict(
        {
            "z_bits": spaces.MultiBinary(3),
            "a_choice": spaces.MultiDiscrete([2, 4]),
            "m_pos": spaces.Box(-2.0, 2.0, (2, 2), np.float32),
        }
    ),
    "dict_vec": spaces.Dict(
        {"pos": spaces.Box(-5.0, 5.0, (3,), np.float32), "vel": spaces.Box(-1.0, 1.0, (2,), np.float32)}
    ),
}

ACTION_SPACES: dict[str, spaces.Space] = {
    "discrete": spaces.Discrete(4),
    "box": spaces.Box(_f32([-1.0, -2.0, 0.5]), _f32([2.0, 1.0, 3.0]), dtype=np.float32),  # asymmetric
    "box2d": spaces.Box(_f32([[-1, -1, 0], [-2, 0, -0.5]]), _f32([[1, 2, 1], [0.5, 1, 0.5]]), dtype=np.float32),
    "wide": spaces.Box(-100.0, 100.0, (2,), np.float32),  # sampling statistics without clipping
    "unit": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "box64": spaces.Box(-0.5, np.array([1.0, 2.0], dtype=np.float64), dtype=np.float64),
    "multidiscrete": spaces.MultiDiscrete([3, 2, 4]),
    "multibinary": spaces.MultiBinary(4),
}


class SpacesEnv(gym.Env):
    """An env that only has spaces: SB3 needs one to build a model."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}

    def action_masks(self) -> np.ndarray:
        """MaskablePPO's learning asks for it: every action allowed."""
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            size = int(space.n)
        elif isinstance(space, spaces.MultiDiscrete):
            size = int(np.sum(space.nvec))
        else:
            size = 2 * int(np.prod(space.shape))
        return np.ones(size, dtype=bool)


# ---- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model to build: algorithm, policy, space names and keyword arguments."""

    algo: str
    policy: str = "MlpPolicy"
    obs: str = "box"
    action: str = "box"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.algo}-{self.policy}-{self.obs}-{self.action}"


def default_policy_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Tiny networks: 16-unit hidden layers, 16-32 feature CNNs, 5 quantiles."""
    kwargs: dict[str, Any] = {}
    if spec.algo == "ARS":
        return {"net_arch": [16]} if spec.policy == "MlpPolicy" else {}
    kwargs["net_arch"] = [16] if spec.algo in ("DQN", "QRDQN") else [16, 16]
    if spec.algo in ("QRDQN", "TQC"):
        kwargs["n_quantiles"] = 5
    if "Cnn" in spec.policy:
        kwargs["features_extractor_kwargs"] = {"features_dim": 32}
    if "MultiInput" in spec.policy:
        kwargs["features_extractor_kwargs"] = {"cnn_output_dim": 16}
    if spec.algo == "RecurrentPPO":
        kwargs["lstm_hidden_size"] = 8
    return kwargs


def make_model(spec: ModelSpec, seed: int = 0, env: Any = None) -> Any:
    """Build the model of ``spec`` (on ``env`` if given) and perturb every weight."""
    algo = ALGOS[spec.algo]
    if env is None:
        env = SpacesEnv(OBS_SPACES[spec.obs], ACTION_SPACES[spec.action])
    policy_kwargs = {**default_policy_kwargs(spec), **spec.policy_kwargs}
    kwargs = {**ALGO_KWARGS[spec.algo], **spec.kwargs}
    model = algo(spec.policy, env, policy_kwargs=policy_kwargs, device="cpu", seed=seed, **kwargs)
    perturb(model.policy, seed)
    if policy_kwargs.get("normalize_images") is False:
        _scale_first_convolutions(model.policy, 1.0 / 255.0)
    _center_head(model, seed)
    model.policy.set_training_mode(False)
    return model


def _center_head(model: Any, seed: int) -> None:
    """Shift the output layer's bias so that each output averages zero over sampled observations.

    ReLU features are positive on average, so random weights tend to favour one action for every
    observation; centred outputs make every action (and both sides of every bound) occur.
    """
    policy = model.policy
    heads = [getattr(policy, "action_net", None), getattr(getattr(policy, "q_net", None), "q_net", None)]
    heads += [getattr(getattr(policy, "quantile_net", None), "quantile_net", None)]
    heads += [getattr(getattr(policy, "actor", None), "mu", None)]
    linears = [m for head in heads if head is not None for m in head.modules() if isinstance(m, torch.nn.Linear)]
    if not linears or linears[-1].bias is None:
        return
    outputs: list[torch.Tensor] = []
    hook = linears[-1].register_forward_hook(lambda module, args, out: outputs.append(out.detach()))
    try:
        model.predict(sample_obs(model.observation_space, 256, seed + 2000), deterministic=True)
    finally:
        hook.remove()
    with torch.no_grad():
        linears[-1].bias.sub_(outputs[0].mean(dim=0))


def _scale_first_convolutions(policy: torch.nn.Module, factor: float) -> None:
    """Keep activations O(1) on raw pixels, so that float32 round-off stays far below 1e-5."""
    with torch.no_grad():
        for module in policy.modules():
            if type(module).__name__ == "NatureCNN":
                module.cnn[0].weight.mul_(factor)


def perturb(module: torch.nn.Module, seed: int) -> None:
    """Add seeded noise to every parameter and make running statistics non-trivial."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            scale = 1.0 / math.sqrt(math.prod(p.shape[1:])) if p.ndim >= 2 else 0.3  # weights / biases, log-stds
            p.add_(noise * scale)
        for name, buf in module.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("ra_mean", "running_mean"):
                buf.add_(torch.randn(buf.shape, generator=gen) * 0.5)
            elif leaf in ("ra_var", "running_var"):
                buf.copy_(torch.rand(buf.shape, generator=gen) * 2.0 + 0.2)


# ---- observations ------------------------------------------------------------------------


def sample_obs(space: spaces.Space, n: int, seed: int) -> Any:
    """``n`` observations sampled from ``space`` (seeded), stacked along a new batch axis."""
    space = copy.deepcopy(space)  # seeding the shared space would change other tests' samples
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        batch = {key: np.stack([s[key] for s in samples]) for key in space.spaces}
        return {key: _blocky(value, space[key], seed) for key, value in batch.items()}
    return _blocky(np.stack(samples), space, seed)


def _blocky(batch: np.ndarray, space: spaces.Space, seed: int) -> np.ndarray:
    """Images made of random 6x6 blocks instead of pixel noise (whose CNN features hardly vary)."""
    if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
        return batch
    spatial = [size > 4 for size in space.shape]  # the channel axis (first or last) is small
    coarse_shape = [-(-size // 6) if big else size for size, big in zip(space.shape, spatial, strict=True)]
    image = np.random.default_rng(seed).integers(0, 256, (len(batch), *coarse_shape), dtype=np.uint8)
    for axis, big in enumerate(spatial):
        if big:
            image = np.repeat(image, 6, axis=axis + 1)
    h, w, c = space.shape
    return np.ascontiguousarray(image[:, :h, :w, :c])


def take(obs: Any, index: Any) -> Any:
    """Rows ``index`` of an observation batch (dict or array)."""
    if isinstance(obs, dict):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]


# ---- export ------------------------------------------------------------------------------


def roundtrip(model: Any, tmp_path: Path, seed: int | None = None, **export_kwargs: Any) -> Any:
    """Export ``model``, save, load with the numpy runtime; return (bundle, policy)."""
    export_kwargs.setdefault("probes", 32)
    bundle = rlport.from_sb3(model, **export_kwargs)
    path = bundle.save(tmp_path / "policy.rlp")
    return bundle, rlport.load(path, seed=seed)


def assert_same_actions(ours: np.ndarray, theirs: np.ndarray, what: str = "") -> None:
    """Discrete actions identical; continuous within 1e-5; same shape and dtype kind."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != SB3's {theirs.shape}"
    assert ours.dtype.kind == theirs.dtype.kind, f"{what}: dtype {ours.dtype} != SB3's {theirs.dtype}"
    if theirs.dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5, err_msg=what)
    else:
        mismatch = np.flatnonzero((ours != theirs).reshape(len(ours), -1).any(axis=1)) if ours.ndim else []
        assert np.array_equal(ours, theirs), f"{what}: {len(mismatch)} rows differ, first {list(mismatch[:5])}"
