"""Run a bundle's policy with onnxruntime, following SB3's ``predict`` convention.

The bundle is exported to ONNX in memory (:func:`rlport.backends.onnx.export.onnx_model`) and
run on the CPU. The ONNX graph acts deterministically; to sample (``deterministic=False``), a
second ONNX graph computes the distributions' parameters and the numpy runtime's ops draw from
them (:func:`rlport.backends.onnx.export.sampling_split`), with the same seeded generator as
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

from rlport.backends.numpy import SamplingContext, bind_node
from rlport.backends.predict import GraphPredictor
from rlport.errors import GraphError, ObservationError, require

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["OnnxPolicy"]


_ORT_ERRORS = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NotImplemented", "RuntimeException")
_NUMPY_ERRORS = (ValueError, TypeError, IndexError, ArithmeticError)  # from the sampling tail's numpy ops


def _ort_errors(ort: Any) -> tuple[type[Exception], ...]:
    """The exceptions onnxruntime raises on a graph it refuses or cannot run (they derive from Exception only)."""
    state = ort.capi.onnxruntime_pybind11_state
    return (RuntimeError, ValueError, *(getattr(state, name) for name in _ORT_ERRORS if hasattr(state, name)))


def _reason(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _session(ort: Any, model: Any) -> Any:
    """An onnxruntime CPU session for ``model``, quiet below errors; a :class:`GraphError` if it refuses it."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # run the graph as written: onnxruntime's QDQ fusions (int8 weights into MatMulNBits, whose default accuracy
    # level quantises activations per block) would compute otherwise than every other backend
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except _ort_errors(ort) as exc:
        raise GraphError(
            f"onnxruntime refuses the graph exported from the bundle ({_reason(exc)}); use the numpy backend"
        ) from exc


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
        from rlport.backends.onnx.export import onnx_model

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
        self._bind_inputs(graph, fill_mask=True)
        self._errors = (*_ort_errors(ort), *_NUMPY_ERRORS)
        self._mask_sizes = _mask_sizes(graph, None if self._mask is None else self._inputs[self._mask].size)

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
        if self._sampler is None and not deterministic:
            self._sampler = self._build_sampler()
        try:
            return self._session.run(self._outputs, feeds) if deterministic else self._sampler(feeds)
        except self._errors as exc:  # the graph passed its dry run, but not these shapes (or a sampling op failed)
            shapes = {name: value.shape for name, value in feeds.items()}
            raise GraphError(f"the graph failed on inputs of shapes {shapes}: {_reason(exc)}") from exc

    def _build_sampler(self) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
        """ONNX up to the distributions' parameters, then the stochastic tail in numpy (built on first use)."""
        from rlport.backends.onnx.export import onnx_model, sampling_split

        graph = self.bundle.graph
        tail, head_outputs = sampling_split(graph)
        ort = require("onnxruntime", "onnx", "the onnx backend")
        head = _session(ort, onnx_model(self.bundle, outputs=head_outputs)) if head_outputs else None
        quantised = self.bundle.encodings.values
        steps = [(bind_node(node, self.bundle.tensors, self._ctx, quantised), node) for node in tail]
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
        """The check the ONNX graph lacks: each row of each categorical's mask allows some action."""
        for sizes in self._mask_sizes:
            start = 0
            for size in sizes:
                if not mask[:, start : start + size].any(axis=1).all():
                    raise ObservationError("an action mask allows no action at all for some row; allow at least one")
                start += size


def _mask_sizes(graph: Any, mask_size: int | None) -> list[list[int]]:
    """For each categorical node that reads the action mask, the sizes of its mask's blocks."""
    found = []
    for node in graph.nodes():
        if mask_size is not None and node.op in ("categorical", "multi_categorical") and len(node.inputs) > 1:
            sizes = node.resolved_attrs()["sizes"] if node.op == "multi_categorical" else [mask_size]
            if not isinstance(sizes, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
                raise GraphError(f"op {node.op!r}: attribute 'sizes' must be a list of integers, found {sizes!r:.100}")
            found.append(sizes)
    return found
