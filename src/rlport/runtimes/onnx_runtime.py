"""Run a bundle's policy with onnxruntime, following SB3's ``predict`` convention.

The bundle is exported to ONNX in memory (:func:`rlport.exporters.onnx_export.onnx_model`) and
run on the CPU. The ONNX graph acts deterministically only.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp", backend="onnx")            # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)         # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import DiscreteSpec, MultiDiscreteSpec, batch_observation
from rlport.errors import ObservationError, require
from rlport.runtimes.predict import GraphPredictor, LeafFeeder

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["OnnxPolicy"]


def _bounds(space: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The valid integer range of a discrete leaf (the numpy runtime's one-hot check)."""
    if isinstance(space, DiscreteSpec):
        return np.int64(space.start), np.int64(space.start + space.n)
    if isinstance(space, MultiDiscreteSpec):
        start = np.asarray(space.start, dtype=np.int64).reshape(space.shape)
        return start, start + np.asarray(space.nvec, dtype=np.int64).reshape(space.shape)
    return None


def _checked_leaf_feeder(space: Any, what: str) -> LeafFeeder:
    """:func:`~rlport.bundle.spaces.batch_observation`, then the range check the ONNX graph lacks."""
    bounds = _bounds(space)

    def feed(obs: Any) -> tuple[np.ndarray, bool]:
        array, vectorized = batch_observation(obs, space, what)
        if bounds is not None and array.size and ((array < bounds[0]).any() or (array >= bounds[1]).any()):
            raise ObservationError(f"{what}: a discrete observation is outside its space; found {array.tolist()}")
        return array, vectorized

    return feed


class OnnxPolicy(GraphPredictor):
    """A bundle's policy run by onnxruntime (CPU). Acts deterministically only.

    ``predict`` (see :meth:`GraphPredictor.predict`) raises :class:`UnsupportedError` unless
    ``deterministic=True``.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        seed: accepted for symmetry with the other backends; the ONNX graph draws nothing.

    Raises:
        MissingDependencyError: ``onnx`` or ``onnxruntime`` is not installed.
        UnsupportedError: the graph uses an op the ONNX exporter cannot express.
    """

    backend = "onnx"
    deterministic_only = True

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
        dtypes = {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input}
        graph = bundle.graph
        self._feeds = [(graph_input.name, dtypes[graph_input.name]) for graph_input in graph.inputs]
        self._outputs = [o.name for o in model.graph.output]
        self._bind_inputs(graph, leaf_feeder=_checked_leaf_feeder, fill_mask=True)
        self._mask_sizes: list[list[int]] = []
        for node in graph.nodes():
            if self._mask is not None and node.op in ("categorical", "multi_categorical") and len(node.inputs) > 1:
                sizes = node.attrs["sizes"] if node.op == "multi_categorical" else [self._inputs[self._mask].size]
                self._mask_sizes.append([int(size) for size in sizes])

    def seed(self, seed: int | None) -> None:
        """Nothing to seed: the ONNX graph is deterministic."""

    def _run(self, values: list, deterministic: bool) -> list[np.ndarray]:
        if self._mask is not None:
            self._check_mask(values[self._mask])
        feeds = {
            name: np.ascontiguousarray(value, dtype=dtype)
            for (name, dtype), value in zip(self._feeds, values, strict=True)
        }
        return self._session.run(self._outputs, feeds)

    def _check_mask(self, mask: np.ndarray) -> None:
        for sizes in self._mask_sizes:
            start = 0
            for size in sizes:
                if not mask[:, start : start + size].any(axis=1).all():
                    raise ObservationError("an action mask allows no action at all for some row; allow at least one")
                start += size
