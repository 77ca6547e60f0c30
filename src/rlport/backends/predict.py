"""SB3's ``predict`` convention, shared by every runtime: arguments in, graph inputs, action out.

A runtime subclasses :class:`GraphPredictor`, calls :meth:`GraphPredictor._bind_inputs` in its
constructor and implements ``_run``. The predictor checks and feeds observations, recurrent
states, episode starts and action masks as the graph's inputs (in graph order, as numpy arrays
in native byte order) and turns the graph's results back into SB3's ``(action, state)``. Every
backend thus refuses the same arguments with the same :class:`~rlport.errors.ObservationError`,
and none returns a non-finite action (:class:`~rlport.errors.ActionError`). Needs numpy only.

Example:
    >>> class MyPolicy(GraphPredictor):                               # doctest: +SKIP
    ...     def __init__(self, bundle):
    ...         self.observation_space = bundle.observation_space
    ...         self.action_space = bundle.action_space
    ...         self._bind_inputs(bundle.graph)
    ...     def _run(self, values, deterministic):
    ...         return run_my_graph(values, deterministic)              # (action, *next_states)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.feed import (
    LeafFeeder,
    action_mask_array,
    all_finite,
    discrete_range,
    dry_run_observation,
    episode_start_array,
    fast_leaf_feeder,
    leaf_space,
    non_finite_action,
    observation_leaf,
    shown,
    state_array,
)
from rlport.bundle.spaces import DictSpec
from rlport.errors import ActionError, GraphError, ObservationError

if TYPE_CHECKING:
    from rlport.graph.graph import Graph

__all__ = ["GraphPredictor", "LeafFeeder", "fast_leaf_feeder"]


class GraphPredictor:
    """The ``predict`` of Stable-Baselines3 over a policy graph; subclasses say how the graph runs.

    Subclasses set :attr:`observation_space` and :attr:`action_space`, call :meth:`_bind_inputs`
    and implement ``_run(values, deterministic)``: the graph's inputs in graph order (``None``
    for an action mask that is not given) in, ``(action, *next_states)`` as numpy arrays out.
    """

    backend = ""
    """The backend's name, as ``rlport.load(..., backend=)`` takes it."""

    def _bind_inputs(
        self, graph: Graph, leaf_feeder: Callable[[Any, str], LeafFeeder] = fast_leaf_feeder, fill_mask: bool = False
    ) -> None:
        """Prepare the feeding of ``graph``'s inputs.

        Args:
            graph: the policy graph whose inputs ``predict`` feeds.
            leaf_feeder: makes the feeder of one observation leaf from its space and its name.
            fill_mask: feed an all-true mask when ``action_masks`` is ``None`` (instead of ``None``).

        Raises:
            GraphError: an observation input's key does not fit the observation space.
        """
        self._inputs = graph.inputs
        self._obs: list[tuple[int, tuple[str, ...], LeafFeeder]] = []
        for index, graph_input in enumerate(graph.inputs):
            if graph_input.role == "observation":
                key = graph_input.key or ()
                what = f"observation[{'.'.join(key)!r}]" if key else "observation"
                self._obs.append((index, key, leaf_feeder(leaf_space(self.observation_space, key), what)))
        self._states = [(index, spec) for index, spec in enumerate(graph.inputs) if spec.role == "state"]
        roles = [graph_input.role for graph_input in graph.inputs]
        self._start = roles.index("episode_start") if "episode_start" in roles else None
        self._mask = roles.index("action_mask") if "action_mask" in roles else None
        self._fill_mask = fill_mask
        self._action_range = discrete_range(self.action_space)

    @property
    def is_recurrent(self) -> bool:
        """Whether ``predict`` carries a recurrent state."""
        return bool(self._states)

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
            deterministic: take the distribution's mode instead of sampling (read as a bool).
            action_masks: booleans per action (MaskablePPO); ``None`` allows every action.

        Returns:
            The action as a numpy array (batch axis removed for a single observation) and the
            next state (``state`` unchanged for non-recurrent policies).

        Raises:
            ObservationError: an argument does not fit the policy (type, dtype, shape, keys,
                batch size, a discrete value outside its space).
            ActionError: the policy computed a non-finite action or one outside its discrete
                action space (NaN weights, an observation far outside what it was trained on).

        Example:
            >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
        """
        try:
            deterministic = bool(deterministic)
        except (ValueError, TypeError) as exc:
            found = f"{type(deterministic).__name__} ({str(exc)[:100]})"
            raise ObservationError(f"deterministic: expected a bool, found {found}") from None
        values, vectorized = self._feed(observation, state, episode_start, action_masks)
        results = self._run(values, deterministic)
        action = self._checked(results[0], vectorized)
        if self._states:
            return action, tuple(results[1:])
        return action, state

    def _checked(self, action: np.ndarray, vectorized: bool) -> np.ndarray:
        """The action a backend computed, checked (finite; inside a discrete space) and unbatched if need be."""
        kind = action.dtype.kind  # the checks are inlined: this is the hot path of every backend
        if kind == "f":
            if not all_finite(action):
                raise non_finite_action()
        elif self._action_range is not None:
            if not (action.size == 1 and self._action_range[0] <= action.item() <= self._action_range[1]):
                self._check_discrete_action(action)
        elif kind not in "biu":
            raise ActionError(f"the policy computed actions of dtype {str(action.dtype)[:40]}; expected numbers")
        return action if vectorized else action[0]

    def _run(self, values: list[np.ndarray | None], deterministic: bool) -> Sequence[np.ndarray]:
        """Run the graph on its inputs (graph order); return ``(action, *next_states)``."""
        raise NotImplementedError

    def _check_discrete_action(self, action: np.ndarray) -> None:
        """Refuse an integer action outside the discrete action space."""
        low, high = self._action_range
        outside = (action < low) | (action > high)
        if outside.any():
            raise ActionError(
                f"the policy computed the action {shown(action[outside].reshape(-1)[0].item())}, outside its "
                f"action space's {low}..{high}; nothing was returned. The bundle's graph does not fit its action space"
            )

    def _feed(self, observation: Any, state: Any, episode_start: Any, action_masks: Any) -> tuple[list, bool]:
        """All graph inputs in order, and whether the observation had a batch axis."""
        values: list[Any] = [None] * len(self._inputs)
        if isinstance(self.observation_space, DictSpec) and not isinstance(observation, Mapping):
            raise ObservationError(
                f"the policy observes a dict space; pass a dict of arrays, found {type(observation).__name__}"
            )
        batches, vectorized = set(), False
        for index, key, feed in self._obs:
            values[index], vec = feed(observation_leaf(observation, key))
            batches.add(values[index].shape[0])
            vectorized = vectorized or vec
        if len(batches) != 1:
            raise ObservationError(f"the observation's keys have different batch sizes: {sorted(batches)}")
        batch = batches.pop()
        self._feed_state(state, batch, values)
        if self._start is not None:
            values[self._start] = episode_start_array(episode_start, batch)
        if self._mask is not None:
            shape = (batch, self._inputs[self._mask].size)
            if action_masks is not None:
                values[self._mask] = action_mask_array(action_masks, shape)
            elif self._fill_mask:
                values[self._mask] = np.ones(shape, bool)
        return values, vectorized

    def _feed_state(self, state: Any, batch: int, values: list) -> None:
        if not self._states:
            return  # SB3 hands a non-recurrent policy's state back untouched
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != len(self._states)):
            found = f"{len(state)} arrays" if isinstance(state, (tuple, list)) else type(state).__name__
            raise ObservationError(
                f"state: expected None or the tuple of {len(self._states)} arrays the previous predict "
                f"returned, found {found}"
            )
        for position, (index, spec) in enumerate(self._states):
            shape = list(spec.shape or ())
            shape.insert(spec.batch_axis, batch)
            if state is None:
                values[index] = np.zeros(shape, dtype=spec.dtype)
            else:
                values[index] = state_array(state[position], spec.dtype, tuple(shape), f"state[{position}]")

    def _dry_run(self) -> None:
        """Run the graph once on a dummy batch: shape errors surface at load, not in the field."""
        batch = 2
        obs = dry_run_observation(self.observation_space, batch)
        try:
            with np.errstate(all="ignore"):
                action, _ = self.predict(obs, deterministic=True)
        except MemoryError:
            raise GraphError("running the graph on a dummy batch needs more memory than there is") from None
        if isinstance(self.action_space, DictSpec):
            raise GraphError("dict action spaces are not supported (SB3 does not support them either)")
        expected = (batch, *self.action_space.shape)
        if np.shape(action) != expected:
            raise GraphError(
                f"the graph's output has shape {np.shape(action)} for a batch of {batch}, "
                f"but the action space needs {expected}"
            )
