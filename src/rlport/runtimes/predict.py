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

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import (
    BoxSpec,
    DictSpec,
    DiscreteSpec,
    MultiBinarySpec,
    MultiDiscreteSpec,
    batch_observation,
    dummy_observation,
    item_shape,
)
from rlport.errors import ActionError, GraphError, ObservationError

if TYPE_CHECKING:
    from rlport.graph.graph import Graph

__all__ = ["GraphPredictor", "LeafFeeder", "fast_leaf_feeder"]

LeafFeeder = Callable[[Any], tuple[np.ndarray, bool]]
"""One observation leaf in, ``(batch, *item_shape)`` array and whether it had a batch axis out."""

_I64 = np.iinfo(np.int64)
_NATIVE_NUMERIC = frozenset(np.dtype(code) for code in "?bBhHiIlLqQefdg")
"""Bool, integer and float dtypes in native byte order (a set lookup is the quickest dtype test)."""
_SMALL = 8  # up to this many action values, a Python loop checks them faster than numpy


def _shown(value: Any, limit: int = 100) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _numeric(value: Any, what: str, expected: str) -> np.ndarray:
    """``value`` as a bool, integer or float array in native byte order, or an :class:`ObservationError`."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, objects numpy cannot read
        raise ObservationError(
            f"{what}: expected {expected}, found {type(value).__name__} that is not one numeric array "
            f"({str(exc)[:100]})"
        ) from None
    if array.dtype.kind not in "biuf":
        raise ObservationError(
            f"{what}: expected {expected}, found {type(value).__name__} of dtype {str(array.dtype)[:40]}"
        )
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


# ---- observations ------------------------------------------------------------------------


def _encodable(space: Any) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Per element of a discrete leaf, the least and greatest value it may take, and a note; ``None`` for a box.

    SB3 one-hot encodes a (multi-)discrete value as is, ignoring the space's ``start`` (SB3 does
    not support a non-zero start), so a value must lie in the space *and* in ``0 .. n-1``.
    """
    if isinstance(space, MultiBinarySpec):
        return np.zeros(space.shape, np.int64), np.ones(space.shape, np.int64), ""
    if isinstance(space, DiscreteSpec):
        starts, sizes, shape = [space.start], [space.n], ()
    elif isinstance(space, MultiDiscreteSpec):
        starts, sizes, shape = list(space.start), list(space.nvec), space.shape
    else:
        return None
    low = [min(max(start, 0), _I64.max) for start in starts]
    high = [max(min(start + n, n) - 1, _I64.min) for start, n in zip(starts, sizes, strict=True)]
    note = "" if not any(starts) else " (SB3 one-hot encodes the value as is, ignoring the space's start)"
    return np.array(low, np.int64).reshape(shape), np.array(high, np.int64).reshape(shape), note


def _first_outside(array: np.ndarray, low: Any, high: Any) -> tuple[int, ...] | None:
    """The index of the first value of ``array`` that is not an integer in ``low .. high``; ``None`` if none."""
    inside = (array >= low) & (array <= high)  # NaN compares false
    if array.dtype.kind == "f":
        inside &= np.trunc(array) == array
    if inside.all():
        return None
    return tuple(int(i) for i in np.argwhere(~inside)[0])


def _where(index: tuple[int, ...]) -> str:
    return f"row {index[0]}" + (f" column {list(index[1:])}" if len(index) > 1 else "")


def _value_check(space: Any, what: str) -> Callable[[np.ndarray], None] | None:
    """A check that a batched discrete leaf holds finite integers inside its space; ``None`` for a box."""
    bounds = _encodable(space)
    if bounds is None:
        return None
    low, high, note = bounds
    scalar = (int(low.flat[0]), int(high.flat[0])) if low.size == 1 else None

    def check(array: np.ndarray) -> None:
        if scalar is not None and array.size == 1:  # one discrete observation: Python is quicker
            value = array.item()
            if scalar[0] <= value <= scalar[1] and (not isinstance(value, float) or value.is_integer()):
                return
        index = _first_outside(array, low, high)
        if index is not None:
            lo, hi = low[index[1:]], high[index[1:]]
            expected = f"an integer in {lo}..{hi}" if lo <= hi else "nothing (no value is in the space and in 0..n-1)"
            raise ObservationError(
                f"{what}: {_shown(array[index].item())} in {_where(index)} is outside the space (expected "
                f"{expected}{note}); pass values from the observation space"
            )

    return check


def _in_box_dtype(array: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """A box observation in its space's dtype, as every backend then sees it.

    A bool or integer dtype takes only the values it holds exactly (not 300, -1, 0.5 or NaN for
    ``uint8`` images); a float dtype takes any number (too large ones become infinite).
    """
    if dtype.kind in "iub" and array.dtype.kind != "b":
        low, high = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
        index = _first_outside(array, low, high)
        if index is not None:
            raise ObservationError(
                f"{what}: {_shown(array[index].item())} in {_where(index)} does not fit the space's dtype {dtype} "
                f"(expected an integer in {low}..{high}); pass values from the observation space"
            )
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _dry_run_observation(space: Any, batch: int) -> Any:
    """:func:`~rlport.bundle.spaces.dummy_observation`, with each discrete leaf at its least usable value."""
    if isinstance(space, DictSpec):
        return {key: _dry_run_observation(sub, batch) for key, sub in space.spaces}
    bounds = _encodable(space)
    if bounds is None:
        return dummy_observation(space, batch)
    return np.broadcast_to(bounds[0], (batch, *bounds[0].shape)).copy()


def fast_leaf_feeder(space: Any, what: str) -> LeafFeeder:
    """Batch one observation leaf as :func:`~rlport.bundle.spaces.batch_observation` does, then check its values.

    A box leaf in its space's dtype and shape (with or without a batch axis) takes a short path;
    in another numeric dtype it is converted to the space's dtype (:func:`_in_box_dtype`). A
    discrete, multi-discrete or multi-binary leaf must hold finite integers inside its space.
    Anything else takes the full path, which names the problem.
    """
    shape = item_shape(space)
    rank = len(shape)
    check = _value_check(space, what)
    box_dtype = np.dtype(space.dtype) if isinstance(space, BoxSpec) else None
    fast_dtypes = _NATIVE_NUMERIC if box_dtype is None else frozenset({box_dtype})

    def full(obs: Any) -> tuple[np.ndarray, bool]:
        array, vectorized = batch_observation(_numeric(obs, what, "a numeric array"), space, what)
        if not len(array):
            raise ObservationError(f"{what}: found an empty batch {array.shape}; pass at least one observation")
        if box_dtype is not None and array.dtype != box_dtype:
            array = _in_box_dtype(array, box_dtype, what)
        return array, vectorized

    def feed(obs: Any) -> tuple[np.ndarray, bool]:
        try:
            array = np.asarray(obs)
        except (ValueError, TypeError):  # ragged nested lists: the full path names the problem
            return full(obs)
        if array.dtype in fast_dtypes:
            if array.shape == shape:
                return array[None], False
            if array.ndim == rank + 1 and array.shape[1:] == shape and len(array):
                return array, True
        return full(obs)

    if check is None:
        return feed

    def checked(obs: Any) -> tuple[np.ndarray, bool]:
        array, vectorized = feed(obs)
        check(array)
        return array, vectorized

    return checked


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
            raise ObservationError(f"the observation lacks key {_shown('.'.join(key))}; pass a dict with every key")
        leaf = leaf[part]
    return leaf


# ---- states, episode starts, masks -------------------------------------------------------


def _state(value: Any, dtype: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """One recurrent state array: numeric, of exactly ``shape``, finite once in ``dtype``."""
    array = _numeric(value, what, f"an array of shape {shape} (the state the previous predict returned)")
    if array.shape != shape:
        raise ObservationError(
            f"{what} has shape {array.shape}, expected {shape}; pass the state the previous predict returned, or None"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        array = np.ascontiguousarray(array, dtype=dtype)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ObservationError(f"{what} holds NaN or infinity (in {array.dtype}); pass finite values, or None")
    return array


def _episode_start(value: Any, batch: int) -> np.ndarray:
    """``episode_start`` as float32 0/1 per batch row (all zeros when ``None``)."""
    if value is None:
        return np.zeros(batch, np.float32)
    expected = f"{batch} booleans (one per observation)"
    array = _numeric(value, "episode_start", expected)
    if array.size != batch:
        raise ObservationError(f"episode_start has shape {array.shape}, expected {expected}")
    if not ((array == 0) | (array == 1)).all():
        bad = array[(array != 0) & (array != 1)].reshape(-1)[0].item()
        raise ObservationError(f"episode_start: expected {expected}, found the value {_shown(bad)}")
    return np.ascontiguousarray(array.reshape(batch), dtype=np.float32)


def _action_mask(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """``action_masks`` as booleans of ``shape`` (nonzero allows the action, as in MaskablePPO)."""
    expected = f"booleans of shape {shape} (or {shape[1:]} for one observation)"
    array = _numeric(value, "action_masks", expected)
    if array.size != shape[0] * shape[1]:
        raise ObservationError(f"action_masks has shape {array.shape}, expected {expected}")
    return np.ascontiguousarray(array.reshape(shape), dtype=bool)


# ---- actions -----------------------------------------------------------------------------


def _all_finite(array: np.ndarray) -> bool:
    if array.size == 1:
        return math.isfinite(array.item())
    if array.size <= _SMALL:
        return all(map(math.isfinite, array.ravel().tolist()))
    return bool(np.isfinite(array).all())


def _non_finite_action() -> ActionError:
    return ActionError(
        "the policy computed a NaN or infinite action; nothing was returned. Check the observation "
        "(NaN, or far outside the space) and the bundle's weights (rlport verify)"
    )


def _discrete_range(space: Any) -> tuple[int, int] | None:
    """A discrete action space's least and greatest action; ``None`` for other spaces.

    Multi-discrete actions are not checked at run time: for one observation that costs more
    than the budget of ``predict``'s hot path (the bundle's load checks the graph instead).
    """
    if isinstance(space, DiscreteSpec):
        return space.start, space.start + space.n - 1
    return None


# ---- the predictor -----------------------------------------------------------------------


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
        self._action_range = _discrete_range(self.action_space)

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
        action = results[0]
        kind = action.dtype.kind  # the checks are inlined: this is the hot path of every backend
        if kind == "f":
            if not _all_finite(action):
                raise _non_finite_action()
        elif self._action_range is not None:
            if not (action.size == 1 and self._action_range[0] <= action.item() <= self._action_range[1]):
                self._check_discrete_action(action)
        elif kind not in "biu":
            raise ActionError(f"the policy computed actions of dtype {str(action.dtype)[:40]}; expected numbers")
        action = action if vectorized else action[0]
        if self._states:
            return action, tuple(results[1:])
        return action, state

    def _run(self, values: list[np.ndarray | None], deterministic: bool) -> Sequence[np.ndarray]:
        """Run the graph on its inputs (graph order); return ``(action, *next_states)``."""
        raise NotImplementedError

    def _check_discrete_action(self, action: np.ndarray) -> None:
        """Refuse an integer action outside the discrete action space."""
        low, high = self._action_range
        outside = (action < low) | (action > high)
        if outside.any():
            raise ActionError(
                f"the policy computed the action {_shown(action[outside].reshape(-1)[0].item())}, outside its "
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
            values[index], vec = feed(_observation_leaf(observation, key))
            batches.add(values[index].shape[0])
            vectorized = vectorized or vec
        if len(batches) != 1:
            raise ObservationError(f"the observation's keys have different batch sizes: {sorted(batches)}")
        batch = batches.pop()
        self._feed_state(state, batch, values)
        if self._start is not None:
            values[self._start] = _episode_start(episode_start, batch)
        if self._mask is not None:
            shape = (batch, self._inputs[self._mask].size)
            if action_masks is not None:
                values[self._mask] = _action_mask(action_masks, shape)
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
                values[index] = _state(state[position], spec.dtype, tuple(shape), f"state[{position}]")

    def _dry_run(self) -> None:
        """Run the graph once on a dummy batch: shape errors surface at load, not in the field."""
        batch = 2
        obs = _dry_run_observation(self.observation_space, batch)
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
