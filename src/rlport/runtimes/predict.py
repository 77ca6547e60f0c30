"""SB3's ``predict`` convention, shared by every runtime: arguments in, graph inputs, action out.

A runtime subclasses :class:`GraphPredictor`, calls :meth:`GraphPredictor._bind_inputs` in its
constructor and implements ``_run``. The predictor feeds observations, recurrent states, episode
starts and action masks as the graph's inputs (in graph order, as numpy arrays) and turns the
graph's results back into SB3's ``(action, state)``. Needs numpy only.

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

from rlport.bundle.spaces import DictSpec, batch_observation, dummy_observation, item_shape
from rlport.errors import GraphError, ObservationError

if TYPE_CHECKING:
    from rlport.graph.graph import Graph

__all__ = ["GraphPredictor", "LeafFeeder", "fast_leaf_feeder"]

LeafFeeder = Callable[[Any], tuple[np.ndarray, bool]]
"""One observation leaf in, ``(batch, *item_shape)`` array and whether it had a batch axis out."""


def fast_leaf_feeder(space: Any, what: str) -> LeafFeeder:
    """A fast :func:`~rlport.bundle.spaces.batch_observation` for one leaf; unusual inputs take the full path."""
    shape = item_shape(space)
    rank = len(shape)

    def feed(obs: Any) -> tuple[np.ndarray, bool]:
        try:
            array = np.asarray(obs)
        except ValueError:  # ragged nested lists: the full path names the problem
            return batch_observation(obs, space, what)
        if array.dtype.kind in "biuf":
            if array.shape == shape:
                return array[None], False
            if array.ndim == rank + 1 and array.shape[1:] == shape:
                return array, True
        return batch_observation(obs, space, what)

    return feed


def _leaf_space(space: Any, key: tuple[str, ...]) -> Any:
    """The sub-space of ``space`` at ``key`` (a path of dict keys; ``()`` for the space itself)."""
    for part in key:
        if not isinstance(space, DictSpec):
            raise GraphError(f"observation input key {list(key)} does not fit a {type(space).__name__} space")
        space = space[part]
    return space


def _observation_leaf(observation: Any, key: tuple[str, ...]) -> Any:
    """The leaf of ``observation`` at ``key``, or an :class:`ObservationError` naming the missing key."""
    leaf = observation
    for part in key:
        if not isinstance(leaf, Mapping) or part not in leaf:
            raise ObservationError(f"the observation lacks key {'.'.join(key)!r}")
        leaf = leaf[part]
    return leaf


def _reshaped(value: Any, dtype: Any, shape: tuple[int, ...], what: str, exact: bool = False) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` and ``shape``.

    Args:
        value: anything :func:`numpy.asarray` reads.
        dtype: the dtype to convert to.
        shape: the shape wanted.
        what: how error messages name the value (``"episode_start"``, ``"state[0]"``).
        exact: require ``shape`` itself; otherwise any shape with as many elements is reshaped.

    Raises:
        ObservationError: the value does not have the shape (or, unless ``exact``, the size).
    """
    array = np.asarray(value, dtype=dtype)
    if array.shape == shape or (not exact and array.size == int(np.prod(shape))):
        return np.ascontiguousarray(array.reshape(shape))
    raise ObservationError(f"{what} has shape {array.shape}, expected {shape}")


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
                self._obs.append((index, key, leaf_feeder(_leaf_space(self.observation_space, key), what)))
        self._states = [(index, spec) for index, spec in enumerate(graph.inputs) if spec.role == "state"]
        roles = [graph_input.role for graph_input in graph.inputs]
        self._start = roles.index("episode_start") if "episode_start" in roles else None
        self._mask = roles.index("action_mask") if "action_mask" in roles else None
        self._fill_mask = fill_mask

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
            deterministic: take the distribution's mode instead of sampling.
            action_masks: booleans per action (MaskablePPO); ``None`` allows every action.

        Returns:
            The action as a numpy array (batch axis removed for a single observation) and the
            next state (``state`` unchanged for non-recurrent policies).

        Raises:
            ObservationError: an argument does not fit the policy (shape, keys, batch size).

        Example:
            >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
        """
        values, vectorized = self._feed(observation, state, episode_start, action_masks)
        results = self._run(values, bool(deterministic))
        action = results[0] if vectorized else results[0][0]
        if self._states:
            return action, tuple(results[1:])
        return action, state

    def _run(self, values: list[np.ndarray | None], deterministic: bool) -> Sequence[np.ndarray]:
        """Run the graph on its inputs (graph order); return ``(action, *next_states)``."""
        raise NotImplementedError

    def _feed(self, observation: Any, state: Any, episode_start: Any, action_masks: Any) -> tuple[list, bool]:
        """All graph inputs in order, and whether the observation had a batch axis."""
        values: list[Any] = [None] * len(self._inputs)
        if isinstance(self.observation_space, DictSpec) and not isinstance(observation, Mapping):
            raise ObservationError(
                f"the policy observes a dict space; pass a dict of arrays, found {type(observation).__name__}"
            )
        batches, vectorized = set(), False
        for index, key, feed in self._obs:
            values[index], vec = feed(_observation_leaf(observation, key))
            batches.add(values[index].shape[0])
            vectorized = vectorized or vec
        if len(batches) != 1:
            raise ObservationError(f"the observation's keys have different batch sizes: {sorted(batches)}")
        batch = batches.pop()
        self._feed_state(state, batch, values)
        if self._start is not None:
            start = np.zeros(batch, np.float32) if episode_start is None else episode_start
            values[self._start] = _reshaped(start, np.float32, (batch,), "episode_start")
        if self._mask is not None:
            shape = (batch, self._inputs[self._mask].size)
            if action_masks is not None:
                values[self._mask] = _reshaped(action_masks, bool, shape, "action_masks")
            elif self._fill_mask:
                values[self._mask] = np.ones(shape, bool)
        return values, vectorized

    def _feed_state(self, state: Any, batch: int, values: list) -> None:
        if not self._states:
            return  # SB3 hands a non-recurrent policy's state back untouched
        if state is not None and len(state) != len(self._states):
            raise ObservationError(f"expected a state of {len(self._states)} arrays, found {len(state)}")
        for position, (index, spec) in enumerate(self._states):
            shape = list(spec.shape or ())
            shape.insert(spec.batch_axis, batch)
            if state is None:
                values[index] = np.zeros(shape, dtype=spec.dtype)
            else:
                values[index] = _reshaped(state[position], spec.dtype, tuple(shape), f"state[{position}]", exact=True)

    def _dry_run(self) -> None:
        """Run the graph once on a dummy batch: shape errors surface at load, not in the field."""
        batch = 2
        obs = dummy_observation(self.observation_space, batch)
        with np.errstate(all="ignore"):
            action, _ = self.predict(obs, deterministic=True)
        if isinstance(self.action_space, DictSpec):
            raise GraphError("dict action spaces are not supported (SB3 does not support them either)")
        expected = (batch, *self.action_space.shape)
        if np.shape(action) != expected:
            raise GraphError(
                f"the graph's output has shape {np.shape(action)} for a batch of {batch}, "
                f"but the action space needs {expected}"
            )
