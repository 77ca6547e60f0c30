"""Run a bundle's policy graph with torch, following SB3's ``predict`` convention.

The graph becomes a plain ``nn.Module`` (:attr:`TorchPolicy.module`, a
:class:`~rlport.backends.torch.module.GraphModule`) built from the bundle's tensors alone: no
Stable-Baselines3 needed. Its ``forward`` takes exactly the graph's inputs, so that
``torch.jit.trace``, ``torch.export``, ``torch.onnx.export`` and ``torch.compile`` take it as
any module (``torch_graph_module.py`` says how, with ``torch.export`` and a dynamic batch).
torch is imported only when a policy is made.

Example:
    >>> from rlport.bundle.bundle import Bundle
    >>> policy = TorchPolicy(Bundle.load("cartpole.rlp"), device="cpu")   # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)           # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.feed import dry_run_observation
from rlport.backends.predict import GraphPredictor
from rlport.errors import ObservationError, UnsupportedError, require

if TYPE_CHECKING:
    import torch

    from rlport.bundle.bundle import Bundle

__all__ = ["TorchPolicy"]


class TorchPolicy(GraphPredictor):
    """A bundle's policy run by torch: numpy in, numpy out, exactly as :class:`NumpyPolicy`.

    Observations, states, episode starts and masks are fed as the numpy runtime feeds them
    (batching, channel-last images transposed, zero initial state); the graph runs in
    :attr:`module` under ``torch.no_grad()``. ``predict`` (see :meth:`GraphPredictor.predict`)
    is not thread-safe.

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
        >>> program = torch.export.export(policy.module, policy.example_inputs(4),    # doctest: +SKIP
        ...                               dynamic_shapes=policy.module.dynamic_shapes())
    """

    backend = "torch"

    def __init__(self, bundle: Bundle, device: str = "cpu", seed: int | None = None) -> None:
        torch = require("torch", "torch", "the torch runtime")
        from rlport.backends.torch.module import GraphModule

        self._torch = torch
        self.bundle = bundle
        self.observation_space = bundle.observation_space
        self.action_space = bundle.action_space
        self.device = _device(torch, device)
        graph = bundle.graph
        quantised = bundle.encodings.values  # values a linear/conv2d reads fake-quantised (format 1.1)
        self.module = GraphModule(graph, bundle.tensors, device=self.device, seed=seed, quantised=quantised).eval()
        self._bind_inputs(graph)
        self._dry_run()

    def seed(self, seed: int | None) -> None:
        """Reseed the generator used for ``deterministic=False``."""
        self.module.seed(seed)

    def trainable(self) -> Any:
        """The bundle's policy as a trainable module (fresh weights' copy, on this policy's device).

        Gives ``distribution(obs)``, ``evaluate_actions(obs, actions)`` with gradients into the
        weights, and ``to_bundle()`` to write the fine-tuned weights back: see
        :class:`~rlport.backends.torch.trainable.TrainablePolicy`.

        Example:
            >>> policy = rlport.load("ppo-cartpole.rlp", backend="torch").trainable()   # doctest: +SKIP
            >>> log_prob, entropy, _ = policy.evaluate_actions(obs, actions)            # doctest: +SKIP
        """
        from rlport.backends.torch.trainable import TrainablePolicy

        return TrainablePolicy(self.bundle, device=self.device)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Inputs for :attr:`module` in graph order, a batch of ``batch`` rows, for tracing and export tools.

        Each observation leaf at its space's least usable value, zero recurrent states, no
        episode start, every action allowed (a mask is given, so that tools see that input).
        Use a batch of at least 2 with a dynamic batch axis: torch specialises sizes 0 and 1.

        Example:
            >>> traced = torch.jit.trace(policy.module, policy.example_inputs())   # doctest: +SKIP
        """
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise ObservationError(f"example_inputs: batch must be a positive integer, found {batch!r}")
        observation = dry_run_observation(self.observation_space, batch)
        mask = None if self._mask is None else np.ones((batch, self._inputs[self._mask].size), bool)
        return self.module_inputs(observation, action_masks=mask)

    def module_inputs(
        self, observation: Any, state: Any = None, episode_start: Any = None, action_masks: Any = None
    ) -> tuple[torch.Tensor | None, ...]:
        """What :attr:`module` takes for ``predict``'s arguments: the graph's inputs in order, as tensors.

        Fed as ``predict`` feeds them (one observation gains a batch axis, channel-last images are
        transposed, ``None`` states are zeros); ``None`` for an action mask not given.

        Raises:
            ObservationError: an argument does not fit the policy, as for ``predict``.

        Example:
            >>> action, *next_states = policy.module(*policy.module_inputs(obs))   # doctest: +SKIP
        """
        values, _ = self._feed(observation, state, episode_start, action_masks)
        return tuple(None if value is None else self._tensor(value) for value in values)

    def _run(self, values: list, deterministic: bool) -> list[np.ndarray]:
        with self._torch.no_grad():
            inputs = [None if value is None else self._tensor(value) for value in values]
            return [r.cpu().numpy() for r in self.module(*inputs, deterministic=deterministic)]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:
            array = array.copy()
        return self._torch.from_numpy(array).to(self.device)


def _device(torch: Any, device: str) -> torch.device:
    """``device`` as a torch device that exists here, or an :class:`UnsupportedError` saying what to use."""
    try:
        found = torch.device(device)
        torch.empty(0, device=found)
    except (RuntimeError, AssertionError, TypeError) as exc:
        cuda = "available" if torch.cuda.is_available() else "not available"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UnsupportedError(
            f"torch device {device!r} cannot be used here ({reason}); CUDA is {cuda} "
            "to this torch; use device='cpu' or install a torch build for your accelerator"
        ) from exc
    return found
