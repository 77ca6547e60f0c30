"""Run a bundle's policy with onnxruntime, following SB3's ``predict`` convention.

The bundle is exported to ONNX in memory (:func:`rlport.exporters.onnx_export.onnx_model`) and
run on the CPU. The ONNX graph acts deterministically only.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp", backend="onnx")            # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import DictSpec, DiscreteSpec, MultiDiscreteSpec, batch_observation
from rlport.errors import ObservationError, UnsupportedError, require

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["OnnxPolicy"]


def _leaf_space(space: Any, key: tuple[str, ...]) -> Any:
    for part in key:
        space = space[part]
    return space


def _bounds(space: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The valid integer range of a discrete leaf (the numpy runtime's one-hot check)."""
    if isinstance(space, DiscreteSpec):
        return np.int64(space.start), np.int64(space.start + space.n)
    if isinstance(space, MultiDiscreteSpec):
        start = np.asarray(space.start, dtype=np.int64).reshape(space.shape)
        return start, start + np.asarray(space.nvec, dtype=np.int64).reshape(space.shape)
    return None


class OnnxPolicy:
    """A bundle's policy run by onnxruntime (CPU). Acts deterministically only.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        seed: accepted for symmetry with the other backends; the ONNX graph draws nothing.

    Raises:
        MissingDependencyError: ``onnx`` or ``onnxruntime`` is not installed.
        UnsupportedError: the graph uses an op the ONNX exporter cannot express.
    """

    backend = "onnx"

    def __init__(self, bundle: Bundle, seed: int | None = None) -> None:
        from rlport.exporters.onnx_export import onnx_model

        ort = require("onnxruntime", "onnx", "the onnx backend")
        helper = require("onnx.helper", "onnx", "the onnx backend")
        self.bundle = bundle
        self.observation_space = bundle.observation_space
        self.action_space = bundle.action_space
        model = onnx_model(bundle)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._dtypes = {
            i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input
        }
        graph = bundle.graph
        self._outputs = [o.name for o in model.graph.output]
        self._obs = []
        for graph_input in graph.inputs_with_role("observation"):
            key = graph_input.key or ()
            space = _leaf_space(self.observation_space, key)
            what = f"observation[{'.'.join(key)!r}]" if key else "observation"
            self._obs.append((graph_input.name, key, space, what, _bounds(space)))
        self._states = graph.inputs_with_role("state")
        self._start = next(iter(graph.inputs_with_role("episode_start")), None)
        self._mask = next(iter(graph.inputs_with_role("action_mask")), None)
        self._mask_sizes: list[list[int]] = []
        for node in graph.nodes():
            if self._mask is not None and node.op in ("categorical", "multi_categorical") and len(node.inputs) > 1:
                sizes = node.attrs["sizes"] if node.op == "multi_categorical" else [self._mask.size]
                self._mask_sizes.append([int(size) for size in sizes])

    @property
    def is_recurrent(self) -> bool:
        """Whether ``predict`` carries a recurrent state."""
        return bool(self._states)

    def seed(self, seed: int | None) -> None:
        """Nothing to seed: the ONNX graph is deterministic."""

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Act on one observation or a batch, as SB3's ``model.predict(..., deterministic=True)``.

        Args:
            observation: one observation or a batch (a dict of arrays for dict spaces).
            state: recurrent state from the previous call (``None`` at the start).
            episode_start: per batch row, whether an episode starts (resets the state).
            deterministic: must be ``True``: the ONNX graph takes the distribution's mode.
            action_masks: booleans per action (MaskablePPO); ``None`` allows every action.

        Returns:
            The action (batch axis removed for a single observation) and the next state
            (``state`` unchanged for non-recurrent policies).

        Example:
            >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
        """
        if not deterministic:
            raise UnsupportedError("the onnx backend acts deterministically; use the numpy or torch backend to sample")
        feeds, batch, vectorized = self._feed_observation(observation)
        self._feed_state(state, batch, feeds)
        if self._start is not None:
            start = np.zeros(batch, np.float32) if episode_start is None else episode_start
            feeds[self._start.name] = _reshaped(start, np.float32, (batch,), "episode_start")
        if self._mask is not None:
            shape = (batch, self._mask.size)
            mask = (
                np.ones(shape, bool) if action_masks is None else _reshaped(action_masks, bool, shape, "action_masks")
            )
            self._check_mask(mask)
            feeds[self._mask.name] = mask
        results = self._session.run(self._outputs, feeds)
        action = results[0] if vectorized else results[0][0]
        if self._states:
            return action, tuple(results[1:])
        return action, state

    def _feed_observation(self, observation: Any) -> tuple[dict[str, np.ndarray], int, bool]:
        if isinstance(self.observation_space, DictSpec) and not isinstance(observation, Mapping):
            raise ObservationError(
                f"the policy observes a dict space; pass a dict of arrays, found {type(observation).__name__}"
            )
        feeds: dict[str, np.ndarray] = {}
        batches, vectorized = set(), False
        for name, key, space, what, bounds in self._obs:
            leaf = observation
            for part in key:
                if not isinstance(leaf, Mapping) or part not in leaf:
                    raise ObservationError(f"the observation lacks key {'.'.join(key)!r}")
                leaf = leaf[part]
            array, vec = batch_observation(leaf, space, what)
            if bounds is not None and array.size and ((array < bounds[0]).any() or (array >= bounds[1]).any()):
                raise ObservationError(f"{what}: a discrete observation is outside its space; found {array.tolist()}")
            feeds[name] = np.ascontiguousarray(array, dtype=self._dtypes[name])
            batches.add(array.shape[0])
            vectorized = vectorized or vec
        if len(batches) != 1:
            raise ObservationError(f"the observation's keys have different batch sizes: {sorted(batches)}")
        return feeds, batches.pop(), vectorized

    def _feed_state(self, state: Any, batch: int, feeds: dict[str, np.ndarray]) -> None:
        if state is not None and len(state) != len(self._states):
            raise ObservationError(f"expected a state of {len(self._states)} arrays, found {len(state)}")
        for position, spec in enumerate(self._states):
            shape = list(spec.shape or ())
            shape.insert(spec.batch_axis, batch)
            dtype = self._dtypes[spec.name]
            if state is None:
                feeds[spec.name] = np.zeros(shape, dtype=dtype)
            else:
                feeds[spec.name] = _reshaped(state[position], dtype, tuple(shape), f"state[{position}]", exact=True)

    def _check_mask(self, mask: np.ndarray) -> None:
        for sizes in self._mask_sizes:
            start = 0
            for size in sizes:
                if not mask[:, start : start + size].any(axis=1).all():
                    raise ObservationError("an action mask allows no action at all for some row; allow at least one")
                start += size


def _reshaped(value: Any, dtype: Any, shape: tuple[int, ...], what: str, exact: bool = False) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.shape == shape or (not exact and array.size == int(np.prod(shape))):
        return np.ascontiguousarray(array.reshape(shape))
    raise ObservationError(f"{what} has shape {array.shape}, expected {shape}")
