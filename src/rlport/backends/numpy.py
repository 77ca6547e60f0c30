"""Run a bundle's policy graph with numpy alone, following SB3's ``predict`` convention.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp")                      # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.predict import GraphPredictor
from rlport.bundle.spaces import DictSpec
from rlport.errors import GraphError, RlportError
from rlport.graph.passes import graph_results, live_nodes
from rlport.graph.reference import IMPLEMENTATIONS, bind
from rlport.graph.schema import op_schema

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["NumpyPolicy", "SamplingContext", "bind_node"]

_RUNTIME_ERRORS = (ValueError, TypeError, IndexError, ArithmeticError)


@dataclass
class SamplingContext:
    """What stochastic ops read: the deterministic flag and the seeded generator."""

    deterministic: bool = True
    rng: np.random.Generator = field(default_factory=np.random.default_rng)


def _widen(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def bind_node(node, tensors: Mapping[str, np.ndarray], ctx: SamplingContext):
    """The node's op with its parameters and attributes bound: a function of its inputs only."""
    if node.op not in IMPLEMENTATIONS:
        raise GraphError(f"op {node.op!r} has no numpy implementation")
    attrs = node.resolved_attrs()
    params = {role: _widen(tensors[name]) for role, name in node.params.items()}
    try:
        return bind(node.op, params, attrs, ctx if op_schema(node.op).stochastic else None)
    except (ValueError, TypeError, KeyError, IndexError, MemoryError, ArithmeticError) as exc:
        raise GraphError(f"op {node.op!r} (outputs {list(node.outputs)}) cannot use its parameters: {exc}") from exc


def _compile(graph, steps: list, deterministic: bool) -> Callable[..., tuple]:
    """Straight-line Python for the graph: one line per live node, values in local variables.

    Value names never reach the generated code (variables are ``v<slot>``), so a manifest
    cannot inject code; the functions are the bound ops in ``steps``.
    """
    slot = {graph_input.name: k for k, graph_input in enumerate(graph.inputs)}
    lines = [f"def run({', '.join(f'v{k}' for k in range(len(graph.inputs)))}):"]
    namespace: dict[str, Any] = {}
    for step in live_nodes(graph, deterministic):
        node, index = step.node, step.index
        if step.passthrough is not None:
            slot[node.outputs[0]] = slot[node.inputs[step.passthrough]]
            continue
        fn = steps[index][0]
        for name in node.outputs:
            slot[name] = len(slot)
        namespace[f"f{index}"] = fn
        outs = ", ".join(f"v{slot[n]}" for n in node.outputs)
        ins = ", ".join(f"v{slot[n]}" for n in node.inputs)
        lines.append(f"    {outs}{',' if len(node.outputs) > 1 else ''} = f{index}({ins})")
    lines.append(f"    return ({', '.join(f'v{slot[n]}' for n in graph_results(graph))},)")
    exec(compile("\n".join(lines), "<rlport graph>", "exec"), namespace)  # noqa: S102
    return namespace["run"]


class NumpyPolicy(GraphPredictor):
    """A bundle's policy, ready to act. Needs numpy only.

    The graph is compiled once, at construction, into straight-line code over bound ops.
    ``predict`` (see :meth:`GraphPredictor.predict`) is not thread-safe (the deterministic flag
    and generator are shared); give each thread its own policy.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        seed: seed of the generator used when ``deterministic=False``.
    """

    backend = "numpy"

    def __init__(self, bundle: Bundle, seed: int | None = None) -> None:
        self.bundle = bundle
        self.observation_space = bundle.observation_space
        self.action_space = bundle.action_space
        graph = bundle.graph
        self._ctx = SamplingContext(rng=np.random.default_rng(seed))
        self._steps = [(bind_node(node, bundle.tensors, self._ctx), node) for node in graph.nodes()]
        self._programs = {mode: _compile(graph, self._steps, mode) for mode in (True, False)}
        self._bind_inputs(graph)
        roles = [graph_input.role for graph_input in graph.inputs]
        self._simple = roles == ["observation"] and not isinstance(self.observation_space, DictSpec)
        self._dry_run()

    def seed(self, seed: int | None) -> None:
        """Reseed the generator used for ``deterministic=False``."""
        self._ctx.rng = np.random.default_rng(seed)

    def _feed(self, observation: Any, state: Any, episode_start: Any, action_masks: Any) -> tuple[list, bool]:
        """A graph whose one input is an array observation takes a short path.

        There, ``state``, ``episode_start`` and ``action_masks`` are ignored, as SB3 ignores them.
        """
        if self._simple:
            value, vectorized = self._obs[0][2](observation)
            return [value], vectorized
        return super()._feed(observation, state, episode_start, action_masks)

    def _run(self, values: list, deterministic: bool) -> tuple:
        self._ctx.deterministic = deterministic
        try:
            return self._programs[deterministic](*values)
        except RlportError:
            raise
        except _RUNTIME_ERRORS as exc:
            raise self._diagnose(list(values)) from exc

    def _diagnose(self, inputs: list) -> GraphError:
        """Re-run node by node to name the op that failed (only on the error path)."""
        values = dict(zip((g.name for g in self._inputs), inputs, strict=True))
        for fn, node in self._steps:
            args = [values[name] for name in node.inputs]
            try:
                result = fn(*args)
            except _RUNTIME_ERRORS as exc:
                shapes = [getattr(a, "shape", None) for a in args]
                return GraphError(
                    f"op {node.op!r} (outputs {list(node.outputs)}) failed on inputs of shapes {shapes}: {exc}"
                )
            outputs = [result] if len(node.outputs) == 1 else list(result)
            values.update(zip(node.outputs, outputs, strict=True))
        return GraphError("the graph failed, but not when run node by node; please report this")
