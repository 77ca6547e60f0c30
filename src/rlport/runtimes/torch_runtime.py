"""Run a bundle's policy graph with torch, following SB3's ``predict`` convention.

The graph becomes a plain ``nn.Module`` (:attr:`TorchPolicy.module`) built from the bundle's
tensors alone: no Stable-Baselines3 needed. torch is imported only when a policy is made.

Example:
    >>> from rlport.bundle.bundle import Bundle
    >>> policy = TorchPolicy(Bundle.load("cartpole.rlp"), device="cpu")   # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)           # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.errors import require
from rlport.runtimes.numpy_runtime import NumpyPolicy, _leaf_feeder, _leaf_space

if TYPE_CHECKING:
    import torch

    from rlport.bundle.bundle import Bundle

__all__ = ["TorchPolicy"]


class TorchPolicy:
    """A bundle's policy run by torch: numpy in, numpy out, exactly as :class:`NumpyPolicy`.

    Observations, states, episode starts and masks are fed as the numpy runtime feeds them
    (batching, channel-last images transposed, zero initial state); the graph runs in
    :attr:`module` under ``torch.no_grad()``. ``predict`` is not thread-safe.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        device: where the module runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...).
        seed: seed of the generator used when ``deterministic=False``.

    Raises:
        MissingDependencyError: torch is not installed.

    Example:
        >>> policy = TorchPolicy(bundle, seed=0)                          # doctest: +SKIP
        >>> action, _ = policy.predict(obs, deterministic=False)          # doctest: +SKIP
        >>> with torch.no_grad():                                         # doctest: +SKIP
        ...     action, *states = policy.module(torch.as_tensor(obs)[None])
    """

    backend = "torch"

    # The numpy runtime's observation feeding, reused as is: they read the attributes set below.
    _feed = NumpyPolicy._feed
    _feed_state = NumpyPolicy._feed_state
    _dry_run = NumpyPolicy._dry_run
    is_recurrent = NumpyPolicy.is_recurrent

    def __init__(self, bundle: Bundle, device: str = "cpu", seed: int | None = None) -> None:
        torch = require("torch", "sb3", "the torch runtime")
        from rlport.runtimes.torch_ops import GraphModule

        self._torch = torch
        self.bundle = bundle
        self.observation_space = bundle.observation_space
        self.action_space = bundle.action_space
        self.device = torch.device(device)
        graph = bundle.graph
        self.module = GraphModule(graph, bundle.tensors, device=self.device, seed=seed).eval()
        self._inputs = graph.inputs
        roles = [graph_input.role for graph_input in graph.inputs]
        self._obs = []
        for index, graph_input in enumerate(graph.inputs):
            if graph_input.role == "observation":
                key = graph_input.key or ()
                what = f"observation[{'.'.join(key)!r}]" if key else "observation"
                self._obs.append((index, key, _leaf_feeder(_leaf_space(self.observation_space, key), what)))
        self._states = [(i, g) for i, g in enumerate(graph.inputs) if g.role == "state"]
        self._start = roles.index("episode_start") if "episode_start" in roles else None
        self._mask = roles.index("action_mask") if "action_mask" in roles else None
        self._dry_run()

    def seed(self, seed: int | None) -> None:
        """Reseed the generator used for ``deterministic=False``."""
        self.module.seed(seed)

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Act on one observation or a batch, exactly as SB3's ``model.predict``.

        Args:
            observation: one observation or a batch (a dict of arrays for dict spaces).
            state: recurrent state from the previous call (``None`` at the start).
            episode_start: per batch row, whether an episode starts (resets the state).
            deterministic: take the distribution's mode instead of sampling.
            action_masks: booleans per action (MaskablePPO); ``None`` allows every action.

        Returns:
            The action as a numpy array (batch axis removed for a single observation) and the
            next state (``state`` unchanged for non-recurrent policies).

        Example:
            >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
        """
        values, vectorized = self._feed(observation, state, episode_start, action_masks)
        with self._torch.no_grad():
            inputs = [None if value is None else self._tensor(value) for value in values]
            results = [r.cpu().numpy() for r in self.module(*inputs, deterministic=bool(deterministic))]
        action = results[0] if vectorized else results[0][0]
        if self._states:
            return action, tuple(results[1:])
        return action, state

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:
            array = array.copy()
        return self._torch.from_numpy(array).to(self.device)
