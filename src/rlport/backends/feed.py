"""Turning ``predict``'s arguments into graph inputs, validated once for every backend.

Observations (per leaf: dtype, shape, batch axis, channel order, discrete values inside their space),
recurrent states, episode starts and action masks are checked and converted here; the checks on the
action a backend returns (finite, inside a discrete space) too. :class:`~rlport.backends.predict.GraphPredictor`
uses them; a backend needs nothing else. Needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

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

__all__ = [
    "LeafFeeder",
    "action_mask_array",
    "all_finite",
    "discrete_range",
    "dry_run_observation",
    "episode_start_array",
    "fast_leaf_feeder",
    "leaf_space",
    "non_finite_action",
    "observation_leaf",
    "shown",
    "state_array",
]

LeafFeeder = Callable[[Any], tuple[np.ndarray, bool]]
"""One observation leaf in, ``(batch, *item_shape)`` array and whether it had a batch axis out."""

_I64 = np.iinfo(np.int64)
_NATIVE_NUMERIC = frozenset(np.dtype(code) for code in "?bBhHiIlLqQefdg")
"""Bool, integer and float dtypes in native byte order (a set lookup is the quickest dtype test)."""
_SMALL = 8  # up to this many action values, a Python loop checks them faster than numpy


def shown(value: Any, limit: int = 100) -> str:
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
                f"{what}: {shown(array[index].item())} in {_where(index)} is outside the space (expected "
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
                f"{what}: {shown(array[index].item())} in {_where(index)} does not fit the space's dtype {dtype} "
                f"(expected an integer in {low}..{high}); pass values from the observation space"
            )
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def dry_run_observation(space: Any, batch: int) -> Any:
    """:func:`~rlport.bundle.spaces.dummy_observation`, with each discrete leaf at its least usable value."""
    if isinstance(space, DictSpec):
        return {key: dry_run_observation(sub, batch) for key, sub in space.spaces}
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
        if obs.__class__ is np.ndarray:  # the usual case, without asarray's call
            array = obs
        else:
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


def leaf_space(space: Any, key: tuple[str, ...]) -> Any:
    """The sub-space of ``space`` at ``key`` (a path of dict keys; ``()`` for the space itself)."""
    for part in key:
        if not isinstance(space, DictSpec):
            raise GraphError(f"observation input key {list(key)} does not fit a {type(space).__name__} space")
        space = space[part]
    return space


def observation_leaf(observation: Any, key: tuple[str, ...]) -> Any:
    """The leaf of ``observation`` at ``key``, or an :class:`ObservationError` naming the missing key."""
    leaf = observation
    for part in key:
        if not isinstance(leaf, Mapping) or part not in leaf:
            raise ObservationError(f"the observation lacks key {shown('.'.join(key))}; pass a dict with every key")
        leaf = leaf[part]
    return leaf


# ---- states, episode starts, masks -------------------------------------------------------


def state_array(value: Any, dtype: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
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


def episode_start_array(value: Any, batch: int) -> np.ndarray:
    """``episode_start`` as float32 0/1 per batch row (all zeros when ``None``)."""
    if value is None:
        return np.zeros(batch, np.float32)
    expected = f"{batch} booleans (one per observation)"
    array = _numeric(value, "episode_start", expected)
    if array.size != batch:
        raise ObservationError(f"episode_start has shape {array.shape}, expected {expected}")
    if not ((array == 0) | (array == 1)).all():
        bad = array[(array != 0) & (array != 1)].reshape(-1)[0].item()
        raise ObservationError(f"episode_start: expected {expected}, found the value {shown(bad)}")
    return np.ascontiguousarray(array.reshape(batch), dtype=np.float32)


def action_mask_array(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """``action_masks`` as booleans of ``shape`` (nonzero allows the action, as in MaskablePPO)."""
    expected = f"booleans of shape {shape} (or {shape[1:]} for one observation)"
    array = _numeric(value, "action_masks", expected)
    if array.size != shape[0] * shape[1]:
        raise ObservationError(f"action_masks has shape {array.shape}, expected {expected}")
    return np.ascontiguousarray(array.reshape(shape), dtype=bool)


# ---- actions -----------------------------------------------------------------------------


def all_finite(array: np.ndarray) -> bool:
    if array.size == 1:
        return math.isfinite(array.item())
    if array.size <= _SMALL:
        return all(map(math.isfinite, array.ravel().tolist()))
    return bool(np.isfinite(array).all())


def non_finite_action() -> ActionError:
    return ActionError(
        "the policy computed a NaN or infinite action; nothing was returned. Check the observation "
        "(NaN, or far outside the space) and the bundle's weights (rlport verify)"
    )


def discrete_range(space: Any) -> tuple[int, int] | None:
    """A discrete action space's least and greatest action; ``None`` for other spaces.

    Multi-discrete actions are not checked at run time: for one observation that costs more
    than the budget of ``predict``'s hot path (the bundle's load checks the graph instead).
    """
    if isinstance(space, DiscreteSpec):
        return space.start, space.start + space.n - 1
    return None


# ---- the predictor -----------------------------------------------------------------------
