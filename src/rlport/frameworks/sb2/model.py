"""What an SB2 (Stable Baselines 2, TensorFlow 1) model file holds, read without TensorFlow or pickle.

:class:`SB2Model` is the reader's output (``files.read_sb2``) and the graph builder's input
(``policies.build_sb2_graph``); :class:`ObsNormalisation` is the VecNormalize statistics of an SB2
RL Zoo folder (``zoo.py``), applied in the graph.

Example:
    >>> norm = ObsNormalisation(mean=np.zeros(3), var=np.ones(3))
    >>> norm.clip, norm.epsilon
    (10.0, 1e-08)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.bundle.spaces import SpaceSpec

__all__ = ["ObsNormalisation", "SB2Model", "ALGORITHMS", "FUNCTION"]

ALGORITHMS = ("a2c", "acer", "acktr", "ppo1", "ppo2", "trpo", "gail", "dqn", "ddpg", "sac", "td3", "her")
"""The SB2 algorithms, lower case as the RL Zoo names its folders."""
FUNCTION = "<function>"
"""What a cloudpickled function (a schedule, a custom extractor) becomes in :attr:`SB2Model.data`: never rebuilt."""


@dataclass(frozen=True)
class ObsNormalisation:
    """SB2 VecNormalize observation statistics: clip((obs - mean) / sqrt(var + epsilon), -clip, clip)."""

    mean: np.ndarray  # float, the observation's shape
    var: np.ndarray
    epsilon: float = 1e-8
    clip: float = 10.0


@dataclass(frozen=True)
class SB2Model:
    """An SB2 model file read without TensorFlow and without executing pickle.

    Attributes:
        algorithm: lower-case SB2 class: a2c acer acktr ppo1 ppo2 trpo gail dqn ddpg sac td3 (a HER
            model is its wrapped algorithm, with ``data["_her"]``).
        policy: the SB2 policy class name (``"MlpPolicy"``, ``"CnnLstmPolicy"``, ``"LnMlpPolicy"``). A
            RL Zoo custom class (``utils.CustomDQNPolicy``) is named by the built-in class it equals, its
            fixed arguments merged into ``policy_kwargs``; ``data["_policy_saved_as"]`` keeps the saved name.
        policy_module: the module of that class (``"stable_baselines.common.policies"``, ``"...sac.policies"``).
        data: inert values only: numbers, strings, bools, None, lists, dicts, numpy arrays; a class is its
            dotted name, a cloudpickled function :data:`FUNCTION`, any other object
            ``{"class": name, "args": [...], "state": ...}``.
        params: name -> array (newer .pkl, .zip), or a list in ``get_parameter_list()`` order (older .pkl).
        observation_space: the policy's observation space; for HER the goal env's Dict space as saved.
        action_space: the action space.
        policy_kwargs: inert; ``act_fun`` / ``cnn_extractor`` saved as globals are their dotted names
            (``"tensorflow.python.ops.math_ops.tanh"``, ``"stable_baselines.common.policies.nature_cnn"``).
        version: the stable-baselines version when the file has it.
        path: the file, for messages.
    """

    algorithm: str
    policy: str
    policy_module: str
    data: dict[str, Any]
    params: dict[str, np.ndarray] | list[np.ndarray]
    observation_space: SpaceSpec
    action_space: SpaceSpec
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    path: str = ""
