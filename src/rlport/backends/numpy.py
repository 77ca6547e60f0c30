"""Run a bundle's policy graph with numpy alone, following SB3's ``predict`` convention.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp")                      # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.predict import GraphPredictor
from rlport.bundle.spaces import DictSpec
from rlport.errors import GraphError, RlportError
from rlport.graph.passes import QUANTISED_READERS, fake_quantise, graph_results, live_nodes, noop_nodes, widen
from rlport.graph.reference import CLOSURES, IMPLEMENTATIONS, PREPARE, bind
from rlport.graph.schema import op_schema

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["NumpyPolicy", "SamplingContext", "bind_node", "values_of"]

_RUNTIME_ERRORS = (ValueError, TypeError, IndexError, ArithmeticError)


@dataclass
class SamplingContext:
    """What stochastic ops read: the deterministic flag and the seeded generator."""

    deterministic: bool = True
    rng: np.random.Generator = field(default_factory=np.random.default_rng)


_widen = widen  # stored tensors are decoded by graph/passes.py alone (int8 ones by Bundle.load)


def bind_node(node, tensors: Mapping[str, np.ndarray], ctx: SamplingContext, quantised: Mapping | None = None):
    """The node's op with its parameters and attributes bound: a function of its inputs only.

    ``quantised`` (a bundle's ``encodings.values``): the values a ``linear`` or ``conv2d`` reads fake-quantised.
    """
    return _bound(node, tensors, ctx, quantised)[0]


def _fake_quantised(fn: Callable[..., Any], scales: list[float | None]) -> Callable[..., Any]:
    """``fn`` reading its inputs fake-quantised where ``scales`` gives a scale (docs/FORMAT.md, encodings)."""

    def run(*inputs: Any) -> Any:
        return fn(*(x if s is None else fake_quantise(x, s) for x, s in zip(inputs, scales, strict=True)))

    return run


_INLINE: dict[str, Callable[[str, dict[str, str]], str]] = {
    "linear": lambda x, c: f"{x}.dot({c['weight_t']})" + (f" + {c['bias']}" if "bias" in c else ""),
    "clip_to_bounds": lambda x, c: f"_minimum(_maximum({x}, {c['low']}), {c['high']})",
}
"""Ops the single-observation program writes out as numpy expressions over their prepared arguments
(graph/reference.py's PREPARE), term for term as the reference computes them: a Python call less each."""


def _bound(
    node,
    tensors: Mapping[str, np.ndarray],
    ctx: SamplingContext,
    quantised: Mapping | None = None,
) -> tuple[Callable[..., Any], dict | None]:
    """:func:`bind_node`, and for an op in :data:`_INLINE` its prepared keyword arguments too."""
    scales = [quantised[n].scale if quantised and n in quantised else None for n in node.inputs]
    if node.op in QUANTISED_READERS and any(s is not None for s in scales):
        return _fake_quantised(_bound(node, tensors, ctx)[0], scales), None
    if node.op not in IMPLEMENTATIONS:
        raise GraphError(f"op {node.op!r} has no numpy implementation")
    attrs = node.resolved_attrs()
    params = {role: _widen(tensors[name]) for role, name in node.params.items()}
    try:
        if node.op in _INLINE:
            kwargs = PREPARE[node.op](params, attrs)
            fn = (
                CLOSURES[node.op](**kwargs)
                if node.op in CLOSURES
                else functools.partial(IMPLEMENTATIONS[node.op], **kwargs)
            )
            return fn, kwargs
        return bind(node.op, params, attrs, ctx if op_schema(node.op).stochastic else None), None
    except (ValueError, TypeError, KeyError, IndexError, MemoryError, ArithmeticError) as exc:
        raise GraphError(f"op {node.op!r} (outputs {list(node.outputs)}) cannot use its parameters: {exc}") from exc


def _argmax(logits: np.ndarray) -> np.ndarray:
    return logits.argmax(axis=-1)


_MODES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"categorical": _argmax}
"""The deterministic form of stochastic ops given their first input only (graph/reference.py's own
short path for them, bound once instead of tested on every call)."""


def _compile(
    graph, steps: list, deterministic: bool, noops: frozenset[int] = frozenset(), single: bool = False
) -> Callable[..., Any]:
    """Straight-line Python for the graph: one line per live node, values in local variables.

    The code returns ``(action, *next_states)``, or, when ``single`` (for one observation at a time:
    :data:`_INLINE` ops written out for a batch of one), the action alone.

    Value names never reach the generated code (variables are ``v<slot>``), so a manifest
    cannot inject code; the functions are the bound ops in ``steps``. ``noops`` (nodes that
    return their input, :func:`~rlport.graph.passes.noop_nodes`) are aliased, not run.
    """
    slot = {graph_input.name: k for k, graph_input in enumerate(graph.inputs)}
    lines = [f"def run({', '.join(f'v{k}' for k in range(len(graph.inputs)))}):"]
    namespace: dict[str, Any] = {"_minimum": np.minimum, "_maximum": np.maximum}
    for step in live_nodes(graph, deterministic, noops=noops):
        node, index = step.node, step.index
        if step.passthrough is not None:
            slot[node.outputs[0]] = slot[node.inputs[step.passthrough]]
            continue
        fn, inline = steps[index][0], steps[index][1]
        if deterministic and len(node.inputs) == 1 and node.op in _MODES:
            fn = _MODES[node.op]
        ins = ", ".join(f"v{slot[n]}" for n in node.inputs)
        for name in node.outputs:
            slot[name] = len(slot)
        outs = ", ".join(f"v{slot[n]}" for n in node.outputs)
        if single and inline is not None:  # one row: the op as an expression over its prepared arguments
            names = {}
            for key, value in inline.items():
                if value is not None:
                    names[key] = f"c{index}_{key}"
                    namespace[names[key]] = value
            lines.append(f"    {outs} = {_INLINE[node.op](ins, names)}")
            continue
        if single and fn is _argmax:
            lines.append(f"    {outs} = {ins}.argmax(axis=-1)")
            continue
        namespace[f"f{index}"] = fn
        lines.append(f"    {outs}{',' if len(node.outputs) > 1 else ''} = f{index}({ins})")
    results = [f"v{slot[n]}" for n in graph_results(graph)]
    lines.append(f"    return {results[0]}" if single else f"    return ({', '.join(results)},)")
    exec(compile("\n".join(lines), "<rlport graph>", "exec"), namespace)  # noqa: S102
    return namespace["run"]


def _noops(bundle: Bundle) -> frozenset[int]:
    """The nodes the inferred values show to be no-ops; none when the graph does not infer (it fails later)."""
    try:
        return noop_nodes(bundle.graph, bundle.values())
    except RlportError:
        return frozenset()


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
        quantised = bundle.encodings.values
        self._steps = [(*_bound(node, bundle.tensors, self._ctx, quantised), node) for node in graph.nodes()]
        noops = _noops(bundle)
        self._programs = {mode: _compile(graph, self._steps, mode, noops) for mode in (True, False)}
        self._bind_inputs(graph)
        roles = [graph_input.role for graph_input in graph.inputs]
        self._simple = roles == ["observation"] and not isinstance(self.observation_space, DictSpec)
        self._short = None  # the short path of predict: (observation, deterministic) -> action
        if self._simple:
            single = {mode: _compile(graph, self._steps, mode, noops, single=True) for mode in (True, False)}
            self._short = self._short_path(self._obs[0][2], single)
        self._dry_run()

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """:meth:`GraphPredictor.predict`, with a short path for a graph whose one input is an array observation.

        There, ``state``, ``episode_start`` and ``action_masks`` are ignored, as SB3 ignores them.
        """
        short = self._short
        if short is None or deterministic.__class__ is not bool:
            return super().predict(observation, state, episode_start, deterministic, action_masks)
        return short(observation, deterministic), state

    def _short_path(self, feed: Callable, single: dict[bool, Callable]) -> Callable[[Any, bool], np.ndarray]:
        """``predict`` for one array observation input, in one closure (locals, not attribute look-ups).

        One observation runs the ``single`` programs (ops written out for one row); a batch runs the
        general ones. The action is checked as every backend's is (:meth:`GraphPredictor._checked`);
        one discrete action inside its range, or one finite number, passes a short check first.
        """
        ctx, general, checked, diagnose = self._ctx, self._programs, self._checked, self._diagnose
        low, high = self._action_range or (1, 0)  # an empty range sends every action to the full check
        isfinite = math.isfinite

        def short(observation: Any, deterministic: bool) -> np.ndarray:
            value, vectorized = feed(observation)
            ctx.deterministic = deterministic
            try:
                if vectorized:
                    return checked(general[deterministic](value)[0], True)
                action = single[deterministic](value)
            except RlportError:
                raise
            except _RUNTIME_ERRORS as exc:
                raise diagnose([value]) from exc
            if action.size == 1:
                kind = action.dtype.kind
                if (kind == "i" and low <= action.item() <= high) or (kind == "f" and isfinite(action.item())):
                    return action[0]
            return checked(action, False)

        return short

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
        for fn, _, node in self._steps:
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


def values_of(policy: NumpyPolicy, observation: Any, names: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """The graph's values ``names`` for a batch of observations: what the graph computes on the way to the action.

    Only the nodes the names depend on run, acting deterministically (a stochastic op is not sampled
    unless its own output is asked for, and then gives its mode). Used to read a policy's
    distribution parameters (logits, Q-values, a Gaussian's mean) after its own pre-processing.

    Args:
        policy: the bundle's numpy policy (observations are fed as ``predict`` feeds them).
        observation: a batch of observations (a dict of arrays for dict spaces).
        names: graph input or node output names.

    Raises:
        GraphError: a name the graph does not define, or a graph that needs a recurrent state or a mask.
        ObservationError: the observation does not fit the policy's observation space.

    Example:
        >>> values_of(NumpyPolicy(bundle), obs_batch, ["linear_7"])["linear_7"].shape   # doctest: +SKIP
        (32, 2)
    """
    graph = policy.bundle.graph
    defined = {graph_input.name for graph_input in graph.inputs} | {o for n in graph.nodes() for o in n.outputs}
    unknown = [name for name in names if name not in defined]
    if unknown:
        raise GraphError(f"the graph defines no value(s) {unknown[:5]}")
    values, _ = policy._feed(observation, None, None, None)
    known = {g.name: v for g, v in zip(graph.inputs, values, strict=True) if v is not None}
    policy._ctx.deterministic = True
    for step in live_nodes(graph, True, needed=names):
        node = step.node
        if step.passthrough is not None:
            known[node.outputs[0]] = known[node.inputs[step.passthrough]]
            continue
        missing = [name for name in node.inputs if name not in known]
        if missing:
            raise GraphError(f"op {node.op!r} needs {missing}, which values_of does not feed (a state or a mask)")
        result = policy._steps[step.index][0](*(known[name] for name in node.inputs))
        known.update(zip(node.outputs, [result] if len(node.outputs) == 1 else result, strict=True))
    return {name: known[name] for name in names}
