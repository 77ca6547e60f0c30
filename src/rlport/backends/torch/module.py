"""A policy graph as a plain ``nn.Module`` that torch's tools take as they take any module.

Each :class:`GraphModule` has its own ``forward`` with exactly the graph's inputs as plain
positional parameters, ``forward(self, obs)``, ``forward(self, obs, lstm_h, lstm_c,
episode_start=None)``, ``forward(self, obs, action_mask=None)``, and its own code object, so
that ``torch.compile`` caches each module apart (no recompile limit across modules). It returns
``(action, *next_states)``. Parameter names are the graph's input names reduced to ASCII
identifiers (``obs.vec`` -> ``obs_vec``; a keyword or an unusable name -> ``input<k>``): the
generated code holds only such identifiers, never a manifest string as it is.

How it acts is not an input: it acts deterministically (the distribution's mode) unless
``module.deterministic = False``, or ``module(obs, deterministic=False)`` in eager code (taken
as ``**options``, which has no default, so the classic ONNX exporter does not add it as an
input). Tools therefore see only tensors:

- ``torch.jit.trace(module, inputs)``, ``torch.onnx.export(module, inputs, ...)`` (classic or
  ``dynamo=True``), ``torch.export.export``, ``torch.compile(module, fullgraph=True)``.
- ``torch.jit.script(module)`` is refused with :class:`~rlport.errors.UnsupportedError`: the
  forward runs the graph op by op in Python, which TorchScript (deprecated by torch) cannot
  compile; ``torch.jit.trace`` gives a TorchScript module instead.
- Traced, exported or compiled, the module does not make the two checks that read values (a
  discrete observation outside its space, an action mask allowing nothing), as a bare ``.onnx``
  file does not: ``TorchPolicy.predict`` makes them.

``torch.export`` with a dynamic batch (example inputs from :meth:`TorchPolicy.example_inputs
<rlport.backends.torch.runtime.TorchPolicy.example_inputs>`, a batch of at least 2 so that torch
does not specialise it)::

    policy = rlport.load("model.rlp", backend="torch")
    module, inputs = policy.module, policy.example_inputs(batch=4)
    program = torch.export.export(module, inputs, dynamic_shapes=module.dynamic_shapes())
    action, *next_states = program.module()(*inputs)      # any batch size now

This module imports torch: import it lazily.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from rlport.backends.torch.ops import IMPLEMENTATIONS, RENAMED_PARAMS, torch_dtype
from rlport.errors import GraphError, RlportError, UnsupportedError
from rlport.graph.passes import INT8_MAX, INT8_MIN, QUANTISED_READERS, graph_results, live_nodes, widen
from rlport.graph.schema import op_schema

__all__ = ["GraphModule", "forward_parameter_names"]

_F32 = torch.float32
_RUNTIME_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, ArithmeticError)  # ArithmeticError: OverflowError
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TAKEN = frozenset({"self", "options"})  # the generated forward's own names
_OPTIONAL_ROLES = ("episode_start", "action_mask")  # trailing inputs of these roles default to None


def forward_parameter_names(graph) -> tuple[str, ...]:
    """The parameter names of ``graph``'s forward: its input names as plain, distinct ASCII identifiers.

    A name becomes an identifier by replacing every character outside ``[A-Za-z0-9_]`` with
    ``_``; one that is then not a short identifier, is a Python keyword or is taken becomes
    ``input<k>`` (``k`` its position). Duplicates get ``_`` appended.
    """
    names: list[str] = []
    for position, graph_input in enumerate(graph.inputs):
        name = re.sub(r"[^A-Za-z0-9_]", "_", str(graph_input.name))
        if not _IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or name in _TAKEN:
            name = f"input{position}"
        while name in names:
            name += "_"
        names.append(name)
    return tuple(names)


def _forward_source(graph, names: Sequence[str]) -> str:
    """``forward``'s source: ``names`` as parameters (trailing optional roles default to None), one call."""
    optional = 0
    for graph_input in reversed(graph.inputs):
        if graph_input.role not in _OPTIONAL_ROLES:
            break
        optional += 1
    params = [name if k < len(names) - optional else f"{name}=None" for k, name in enumerate(names)]
    return (
        f"def forward(self, {', '.join(params)}, **options):\n"
        f"    return self.run_graph(({', '.join(names)},), **options)\n"
    )


def _make_forward(graph, names: Sequence[str]) -> Callable[..., tuple]:
    """A new ``forward`` function (a new code object each time) taking exactly the graph's inputs."""
    namespace: dict[str, Any] = {}
    exec(compile(_forward_source(graph, names), "<rlport GraphModule.forward>", "exec"), namespace)  # noqa: S102
    forward = namespace["forward"]
    forward.__doc__ = (
        f"Run the policy graph on its inputs ({', '.join(names)}); return ``(action, *next_states)``.\n\n"
        "``deterministic=`` (eager code only) overrides :attr:`GraphModule.deterministic` for this call."
    )
    forward.__qualname__ = "GraphModule.forward"
    return forward


class GraphModule(nn.Module):
    """A policy graph as a plain ``nn.Module``: the bundle's tensors as parameters and buffers.

    float32 tensors become (frozen) parameters, float16/bfloat16 ones are widened to float32,
    and other dtypes (float64 normalisation statistics, integers) become buffers. Each instance
    is of its own subclass, whose ``forward`` takes the graph's inputs (see the module's doc).

    Args:
        graph: the bundle's :class:`~rlport.graph.graph.Graph`.
        tensors: the bundle's tensors by name.
        device: where the tensors and the random generator live.
        seed: seed of the generator used when acting stochastically.
        quantised: the bundle's ``encodings.values``: values a ``linear`` or ``conv2d`` reads fake-quantised.

    Attributes:
        policy_graph: the graph it runs.
        input_names: ``forward``'s parameter names, in graph order.
        deterministic: act with the distribution's mode (``True``, the default) or sample.
        tensor_names: attribute name -> the bundle's tensor name.

    Example:
        >>> module = GraphModule(bundle.graph, bundle.tensors)          # doctest: +SKIP
        >>> action, *next_states = module(obs_tensor)                   # doctest: +SKIP
    """

    def __new__(cls, graph=None, *args: Any, **kwargs: Any) -> GraphModule:
        if cls is GraphModule and graph is not None:  # not when copy/deepcopy rebuild an instance
            names = forward_parameter_names(graph)
            cls = type("GraphModule", (GraphModule,), {"forward": _make_forward(graph, names), "__module__": __name__})
        return super().__new__(cls)

    def __init__(
        self,
        graph,
        tensors: Mapping[str, np.ndarray],
        device: str | torch.device = "cpu",
        seed: int | None = None,
        quantised: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.policy_graph = graph
        self.input_names = forward_parameter_names(graph)
        self.deterministic = True
        attribute: dict[str, str] = {}
        self._steps = []
        for node in graph.nodes():
            if node.op not in IMPLEMENTATIONS:
                raise GraphError(f"op {node.op!r} has no torch implementation")
            params = {}
            for role, name in node.params.items():
                if name not in attribute:
                    attribute[name] = self._register(name, tensors[name], set(attribute.values()))
                params[RENAMED_PARAMS.get((node.op, role), role)] = attribute[name]
            attrs = node.resolved_attrs()
            if node.op == "cast":
                torch_dtype(attrs["dtype"])  # any other dtype name is refused here, by name
            self._steps.append((IMPLEMENTATIONS[node.op], params, attrs, op_schema(node.op).stochastic))
        self.tensor_names = {value: key for key, value in attribute.items()}
        self._fake = _fake_quantised_inputs(graph, quantised or {})
        self._plans = {
            mode: [(step.index, step.node, step.passthrough) for step in live_nodes(graph, mode)]
            for mode in (True, False)
        }
        self._input_names = [graph_input.name for graph_input in graph.inputs]
        self._results = graph_results(graph)
        # one context per mode, never mutated by forward(), so that torch.compile(fullgraph=True) can trace it
        self._ctxs = {mode: SimpleNamespace(deterministic=mode, generator=None) for mode in (True, False)}
        self.to(device)
        self.seed(seed)

    def _register(self, name: str, array: np.ndarray, used: set[str]) -> str:
        attr = re.sub(r"\W", "_", name)
        if not attr or attr[0].isdigit():
            attr = "t_" + attr
        while attr in used or hasattr(self, attr):
            attr += "_"
        tensor = torch.from_numpy(np.array(widen(array), copy=True))  # float16 widened by graph/passes.py
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.to(_F32)
        if tensor.dtype == _F32:
            self.register_parameter(attr, nn.Parameter(tensor, requires_grad=False))
        else:
            self.register_buffer(attr, tensor)
        return attr

    def seed(self, seed: int | None = None) -> None:
        """Reseed the generator used when acting stochastically (``None``: a random seed)."""
        device = next(iter(self.state_dict().values()), torch.empty(0)).device
        generator = torch.Generator(device=device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        for ctx in self._ctxs.values():
            ctx.generator = generator

    def dynamic_shapes(self, batch: Any = None) -> dict[str, dict[int, Any]]:
        """``torch.export``'s ``dynamic_shapes`` making the batch axis of every input dynamic (one shared dim).

        Args:
            batch: the dim to use (default ``torch.export.Dim("batch")``).

        Example:
            >>> torch.export.export(module, inputs, dynamic_shapes=module.dynamic_shapes())   # doctest: +SKIP
        """
        batch = torch.export.Dim("batch") if batch is None else batch
        inputs = self.policy_graph.inputs
        return {
            name: {graph_input.batch_axis if graph_input.role == "state" else 0: batch}
            for name, graph_input in zip(self.input_names, inputs, strict=True)
        }

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` calls this first: refuse, saying what to use instead."""
        raise UnsupportedError(
            "torch.jit.script cannot compile rlport's GraphModule (its forward runs the policy graph op by op "
            "in Python, which TorchScript cannot compile); use torch.jit.trace(module, policy.example_inputs()) "
            "for a TorchScript module, or torch.export.export, torch.compile or torch.onnx.export"
        )

    def run_graph(self, inputs: Sequence[torch.Tensor | None], deterministic: bool | None = None) -> tuple:
        """Run the graph on its inputs, in graph order; return ``(action, *next_states)``.

        Args:
            inputs: one tensor (or ``None`` for an optional input) per graph input.
            deterministic: act with the distribution's mode; ``None``: :attr:`deterministic`.
        """
        if len(inputs) != len(self._input_names):
            raise GraphError(
                f"the graph takes {len(self._input_names)} inputs {self._input_names}, found {len(inputs)}"
            )
        values = dict(zip(self._input_names, inputs, strict=True))
        mode = self.deterministic if deterministic is None else bool(deterministic)
        if not mode:
            self._follow_device(inputs[0].device)
        for index, node, passthrough in self._plans[mode]:
            if passthrough is not None:
                values[node.outputs[0]] = values[node.inputs[passthrough]]
                continue
            result = self._run(index, node, [values[name] for name in node.inputs], self._ctxs[mode])
            outputs = (result,) if len(node.outputs) == 1 else result
            values.update(zip(node.outputs, outputs, strict=True))
        return tuple(values[name] for name in self._results)

    def _run(self, index: int, node, args: list, ctx: SimpleNamespace) -> Any:
        fn, params, attrs, stochastic = self._steps[index]
        if index in self._fake:
            args = [x if s is None else _fake_quantise(x, s) for x, s in zip(args, self._fake[index], strict=True)]
        kwargs = {role: getattr(self, attr) for role, attr in params.items()}
        if stochastic:
            kwargs["ctx"] = ctx
        try:
            return fn(*args, **kwargs, **attrs)
        except RlportError:
            raise
        except _RUNTIME_ERRORS as exc:
            shapes = [tuple(a.shape) if a is not None else None for a in args]
            raise GraphError(
                f"op {node.op!r} (outputs {list(node.outputs)}) failed on inputs of shapes {shapes}: {exc}"
            ) from exc

    def _follow_device(self, device: torch.device) -> None:
        """After ``module.to(other)``, move the generator too (seeded from the old one)."""
        generator = self._ctxs[False].generator
        if generator.device.type != device.type or (device.index is not None and generator.device != device):
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            generator = torch.Generator(device=device).manual_seed(seed)
            for ctx in self._ctxs.values():
                ctx.generator = generator


def _fake_quantised_inputs(graph, quantised: Mapping[str, Any]) -> dict[int, list[float | None]]:
    """Node index -> the scale of each input it reads fake-quantised (None: as it is), for linear/conv2d nodes."""
    found = {}
    for index, node in enumerate(graph.nodes()):
        scales = [quantised[name].scale if name in quantised else None for name in node.inputs]
        if node.op in QUANTISED_READERS and any(s is not None for s in scales):
            found[index] = scales
    return found


def _fake_quantise(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``clip(round_half_even(x / scale), -128, 127) * scale``: as graph/passes.py's ``fake_quantise``."""
    return torch.clamp(torch.round(x / scale), INT8_MIN, INT8_MAX) * scale
