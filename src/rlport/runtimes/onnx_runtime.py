"""Run a bundle's policy with onnxruntime, following SB3's ``predict`` convention.

The bundle is exported to ONNX in memory (:func:`rlport.exporters.onnx_export.onnx_model`) and
run on the CPU. The ONNX graph acts deterministically; to sample (``deterministic=False``), a
second ONNX graph computes the distributions' parameters and the numpy runtime's ops draw from
them (:func:`rlport.exporters.onnx_export.sampling_split`), with the same seeded generator as
the numpy backend.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp", backend="onnx")            # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import DiscreteSpec, MultiDiscreteSpec, batch_observation
from rlport.errors import ObservationError, require
from rlport.runtimes.numpy_runtime import SamplingContext, bind_node
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


def _session(ort: Any, model: Any) -> Any:
    """An onnxruntime CPU session for ``model``, quiet below errors."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class OnnxPolicy(GraphPredictor):
    """A bundle's policy run by onnxruntime (CPU).

    ``predict`` (see :meth:`GraphPredictor.predict`) with ``deterministic=False`` runs the
    networks in onnxruntime and draws with numpy; with the same seed it draws what the numpy
    backend draws. Like the numpy backend it is not thread-safe when sampling.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        seed: seed of the generator used when ``deterministic=False``.

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
        self._session = _session(ort, model)
        self._ctx = SamplingContext(deterministic=False, rng=np.random.default_rng(seed))
        self._sampler: Callable[[dict[str, np.ndarray]], list[np.ndarray]] | None = None
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
        """Reseed the generator used for ``deterministic=False``."""
        self._ctx.rng = np.random.default_rng(seed)

    def _run(self, values: list, deterministic: bool) -> list[np.ndarray]:
        if self._mask is not None:
            self._check_mask(values[self._mask])
        feeds = {
            name: np.ascontiguousarray(value, dtype=dtype)
            for (name, dtype), value in zip(self._feeds, values, strict=True)
        }
        if deterministic:
            return self._session.run(self._outputs, feeds)
        if self._sampler is None:
            self._sampler = self._build_sampler()
        return self._sampler(feeds)

    def _build_sampler(self) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
        """ONNX up to the distributions' parameters, then the stochastic tail in numpy (built on first use)."""
        from rlport.exporters.onnx_export import onnx_model, sampling_split

        graph = self.bundle.graph
        tail, head_outputs = sampling_split(graph)
        ort = require("onnxruntime", "onnx", "the onnx backend")
        head = _session(ort, onnx_model(self.bundle, outputs=head_outputs)) if head_outputs else None
        steps = [(bind_node(node, self.bundle.tensors, self._ctx), node) for node in tail]
        results = [graph.output, *(i.output for i in graph.inputs_with_role("state"))]

        def sample(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            values = dict(feeds)
            if head is not None:  # None: the graph draws straight from its inputs
                values.update(zip(head_outputs, head.run(head_outputs, feeds), strict=True))
            for fn, node in steps:
                out = fn(*(values[name] for name in node.inputs))
                values.update(zip(node.outputs, [out] if len(node.outputs) == 1 else out, strict=True))
            return [values[name] for name in results]

        return sample

    def _check_mask(self, mask: np.ndarray) -> None:
        for sizes in self._mask_sizes:
            start = 0
            for size in sizes:
                if not mask[:, start : start + size].any(axis=1).all():
                    raise ObservationError("an action mask allows no action at all for some row; allow at least one")
                start += size
