"""Float bundles of several policy families (from tiny SB3 models), shared by the compression tests.

Each is built once per session. ``cartpole`` records a gymnasium env (CartPole-v1) so that
rollouts and paired episodes can run; the others have only spaces (no env), so that the
comparison falls back to the probes.
"""

from __future__ import annotations

import functools

import rlport
from rlport.bundle.bundle import Bundle
from sb3_models import ModelSpec, make_model

FAMILIES = {
    "mlp-discrete": ModelSpec("PPO", action="discrete", policy_kwargs={"net_arch": [64, 64]}),
    "cnn": ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"),
    "lstm": ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box"),
    "dict": ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="discrete"),
    "sac-continuous": ModelSpec("SAC", action="box"),
}
"""The families every backend must run quantised: MLP, CNN, LSTM, Dict observations, a squashed Gaussian."""


@functools.cache
def float_bundle(family: str) -> Bundle:
    """The float bundle of ``family`` (probes recorded from SB3, no env)."""
    return rlport.from_sb3(make_model(FAMILIES[family]), probes=64, fingerprint=False, evaluate=0)


@functools.cache
def cartpole_bundle() -> Bundle:
    """A PPO CartPole-v1 policy (untrained, perturbed weights), with its env recorded."""
    import gymnasium as gym

    model = make_model(ModelSpec("PPO", action="discrete"), env=gym.make("CartPole-v1"))
    return rlport.from_sb3(model, env_id="CartPole-v1", probes=32, fingerprint=False, evaluate=0)


def balancer() -> Bundle:
    """A hand-made CartPole-v1 policy that balances: push towards where the pole falls (angle + angular velocity).

    ``obs -> linear(4, 8) -> tanh -> linear(8, 2) -> categorical``; its return is far above a constant action's.
    """
    import gymnasium as gym
    import numpy as np

    from rlport.bundle.manifest import EnvSpec
    from rlport.bundle.spaces import DiscreteSpec
    from rlport.graph.graph import Graph, GraphInput, Node
    from rlport.readers.gym_spaces import spec_from_space

    features = np.zeros((8, 4), np.float32)
    features[:4] = np.diag([0.1, 0.5, 3.0, 1.0])  # scaled copies of the observation (tanh stays linear)
    features[4:] = -features[:4]
    push = np.array([0.1, 0.5, 3.0, 1.0, -0.1, -0.5, -3.0, -1.0], np.float32)
    head = np.stack([-push, push]).astype(np.float32)  # action 1 (right) when the weighted sum is positive
    tensors = {"pi.0.weight": features, "pi.0.bias": np.zeros(8, np.float32), "pi.2.weight": head,
               "pi.2.bias": np.zeros(2, np.float32)}  # fmt: skip
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            Node("linear", ("obs",), ("h0",), params={"weight": "pi.0.weight", "bias": "pi.0.bias"}),
            Node("tanh", ("h0",), ("h1",)),
            Node("linear", ("h1",), ("logits",), params={"weight": "pi.2.weight", "bias": "pi.2.bias"}),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    env = gym.make("CartPole-v1")
    return Bundle(
        observation_space=spec_from_space(env.observation_space),
        action_space=DiscreteSpec(2),
        graph=graph,
        tensors=tensors,
        env=EnvSpec(id="CartPole-v1", max_episode_steps=500),
        provenance={"framework": "hand-made"},
        source={"framework": "tests"},
    )
