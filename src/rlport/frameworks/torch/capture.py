"""Capture a torch module with ``torch.export`` and translate its ATen ops into graph ops.

The module is exported non-strict with a dynamic batch axis; ops that :mod:`aten` does not
translate are decomposed (torch's core-ATen decompositions, only for those ops) and tried again;
anything left is an :class:`~rlport.errors.UnsupportedError` naming the ATen op and the module
path it came from. Constants (parameters, buffers and what is computed from them alone) are
folded; parameters keep their ``state_dict`` names. This module imports torch: import it lazily.

Example:
    >>> e = Emitter(GraphBuilder())                                          # doctest: +SKIP
    >>> (logits,) = emit_captured(e, module, Var("obs_f32", (4,)), torch.zeros(2, 4))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.fx.node import map_arg

from rlport.errors import UnsupportedError
from rlport.frameworks.torch.aten import HANDLERS, IDENTITY_OPS, IGNORED_OPS, Call, supported_ops
from rlport.frameworks.torch.values import BATCH, Const, Emitter, Var

__all__ = ["capture", "emit_captured", "translate", "MethodModule"]

MAX_DECOMPOSITION_ROUNDS = 4
"""How many times ops without a translation are decomposed before they are refused."""
_RECURRENT = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")
_TRANSPOSES = ("t", "permute", "transpose", "numpy_T")
_KEEP_NAME = ("detach", "clone", "alias", "lift_fresh_copy", "contiguous", "_to_copy", "to", "expand")


def _op_name(target: Any) -> str | None:
    """``"linear"`` for ``aten.linear.default``; None for what is not an ATen op."""
    packet = getattr(target, "_overloadpacket", None)
    return getattr(packet, "__name__", None) if packet is not None else None


@contextlib.contextmanager
def _capturing(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no distribution argument validation while exporting (it branches on values)."""
    training = module.training
    validate = torch.distributions.Distribution._validate_args
    module.eval()
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
        module.train(training)


def capture(module: torch.nn.Module, example: torch.Tensor | dict[str, torch.Tensor], what: str) -> Any:
    """``torch.export`` of ``module(example)`` with a dynamic batch axis, in eval mode.

    Raises:
        UnsupportedError: a recurrent layer (give it explicit state; not supported yet), or
            ``torch.export`` fails (the message gives torch's reason).
    """
    for name, sub in module.named_modules():
        if type(sub).__name__ in _RECURRENT:
            raise UnsupportedError(
                f"{what}: {type(sub).__name__} at {name or 'the top level'!r} is recurrent; from_torch captures "
                "feed-forward modules (recurrent ones with explicit state are not supported yet): export the "
                "policy through from_sb3 (RecurrentPPO) or without the recurrent layer"
            )
    batch = torch.export.Dim("batch", min=1, max=2**20)
    dims = ({key: {0: batch} for key in example} if isinstance(example, dict) else {0: batch},)
    with _capturing(module), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations while exporting
        try:
            return torch.export.export(module, (example,), dynamic_shapes=dims, strict=False)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds; each is reported the same way
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UnsupportedError(
                f"{what}: torch.export cannot capture it ({type(exc).__name__}: {reason}); make forward() a "
                "plain function of the observation batch (no Python branching on values, no distributions: "
                "return the head's inputs and choose the head with from_torch's head=)"
            ) from exc


def _untranslated(program: Any) -> set[Any]:
    found = set()
    for node in program.graph.nodes:
        name = _op_name(node.target) if node.op == "call_function" else None
        if name is not None and name not in HANDLERS and name not in IDENTITY_OPS and name not in IGNORED_OPS:
            found.add(node.target)
    return found


def _decomposed(program: Any) -> Any:
    """Decompose the ops without a translation (only those), a few rounds at most."""
    for _ in range(MAX_DECOMPOSITION_ROUNDS):
        unknown = _untranslated(program)
        table = torch.export.default_decompositions()
        for op in list(table.keys()):
            if op not in unknown:
                del table[op]
        if not unknown or not list(table.keys()):
            return program
        program = program.run_decompositions(table)
    return program


class MethodModule(torch.nn.Module):
    """``inner.METHOD(x)`` as a module's forward (SB3's ``mlp_extractor.forward_actor``), for capture."""

    def __init__(self, inner: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.inner = inner
        self.method = method

    def forward(self, x: Any) -> Any:
        return getattr(self.inner, self.method)(x)


def emit_captured(
    e: Emitter, module: torch.nn.Module, inputs: str | dict[str, str], example: Any, method: str | None = None
) -> str:
    """Capture ``module`` (or its ``method``) on ``example`` and append its ops; return its one output's name.

    ``inputs`` names the graph value fed to it (one per key for a dict input). Parameters are
    named ``e.prefix + state_dict name``.

    Raises:
        UnsupportedError: capture or translation fails, or the module does not return one tensor.
    """
    target = module if method is None else MethodModule(module, method)
    e.strip = "" if method is None else "inner."
    if isinstance(example, dict):
        values = [Var(inputs[key], tuple(int(s) for s in example[key].shape[1:])) for key in example]
    else:
        values = [Var(inputs, tuple(int(s) for s in example.shape[1:]))]
    where = f"{type(module).__name__} at {e.prefix.rstrip('.') or 'the top level'!r}"
    outputs = translate(capture(target, example, where), e, values)
    if len(outputs) != 1 or not isinstance(outputs[0], Var):
        raise UnsupportedError(f"{where}: returns {len(outputs)} values; one tensor computed from its input expected")
    return outputs[0].name


def translate(program: Any, e: Emitter, inputs: list[Var]) -> list[Any]:
    """Append the graph ops of an exported program; ``inputs`` are its user inputs. Return its outputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations while decomposing
        program = _decomposed(program)
    specs = program.graph_signature.input_specs
    tensors = {**program.state_dict, **program.constants}
    env: dict[str, Any] = {}
    user = iter(inputs)
    for spec in specs:
        kind = spec.kind.name
        if kind == "USER_INPUT":
            env[spec.arg.name] = next(user)
        elif kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            env[spec.arg.name] = Const(tensors[spec.target].detach(), name=spec.target)
        else:
            raise UnsupportedError(f"the captured module has an input of kind {kind}; supported: tensors")
    batch = str(next(n for n in program.graph.nodes if n.op == "placeholder" and n.name in env
                     and isinstance(env[n.name], Var)).meta["val"].shape[0])  # fmt: skip
    for node in program.graph.nodes:
        if node.op == "call_function":
            env[node.name] = _call(e, node, env, batch)
        elif node.op == "output":
            outputs = map_arg(node.args[0], lambda n: env[n.name])
            return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        elif node.op != "placeholder":
            raise UnsupportedError(f"a captured node of kind {node.op!r} ({node.target}) is not supported")
    raise UnsupportedError("the captured program has no output")


def _where(e: Emitter, node: Any) -> str:
    """The module path (and class) a node came from, for messages."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return f"in {e.prefix.rstrip('.') or 'the module'}'s own forward()"
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    return f"at module path {e.prefix + path if path else e.prefix.rstrip('.') or 'the top level'!r} ({cls})"


def _has_var(value: Any) -> bool:
    if isinstance(value, Var):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_var(v) for v in value)
    if isinstance(value, dict):
        return any(_has_var(v) for v in value.values())
    return False


def _call(e: Emitter, node: Any, env: dict[str, Any], batch: str) -> Any:
    args = map_arg(node.args, lambda n: env[n.name])
    kwargs = map_arg(node.kwargs, lambda n: env[n.name])
    if node.target is operator.getitem:
        return args[0][args[1]]
    name = _op_name(node.target)
    if name == "sym_size":
        x, dim = args
        return BATCH if int(dim) == 0 else (x.shape[int(dim) - 1] if isinstance(x, Var) else int(x.tensor.shape[dim]))
    if name in IGNORED_OPS:
        return None
    if not _has_var((args, kwargs)):
        return _fold(e, node, name, args, kwargs)
    if name in IDENTITY_OPS:
        return args[0]
    handler = HANDLERS.get(name) if name else None
    if handler is None:
        shown = f"aten.{name}" if name else getattr(node.target, "__name__", str(node.target))
        raise UnsupportedError(
            f"ATen op {shown} ({node.target}) {_where(e, node)} has no graph equivalent; translated ATen ops: "
            f"{', '.join(supported_ops())}. Rewrite that part with these, or open an issue"
        )
    try:
        return handler(e, Call(name, _out_shape(node, batch)), *args, **kwargs)
    except UnsupportedError as exc:
        raise UnsupportedError(f"ATen op aten.{name} {_where(e, node)}: {exc}") from exc
    except (TypeError, ValueError, IndexError) as exc:
        raise UnsupportedError(
            f"ATen op aten.{name} {_where(e, node)} has arguments rlport does not follow: {exc}"
        ) from exc


def _out_shape(node: Any, batch: str) -> Any:
    """The output's shape without the batch axis (a list of them for several outputs); the batch axis checked."""
    val = node.meta.get("val")
    if isinstance(val, (list, tuple)):
        return [_out_shape_of(v, batch) for v in val]
    return _out_shape_of(val, batch)


def _out_shape_of(val: Any, batch: str) -> tuple[int, ...] | None:
    shape = getattr(val, "shape", None)
    if shape is None:
        return None
    if len(shape) == 0 or str(shape[0]) != batch or any(not isinstance(s, int) for s in shape[1:]):
        raise UnsupportedError(
            f"an output of shape {tuple(shape)} does not keep the batch axis first (batch = {batch})"
        )
    return tuple(int(s) for s in shape[1:])


def _fold(e: Emitter, node: Any, name: str | None, args: Any, kwargs: Any) -> Any:
    """Compute a node whose inputs are all constants; a batch size becomes 1 (broadcast over the batch)."""
    batched = [False]

    def concrete(value: Any) -> Any:
        if isinstance(value, Const):
            batched[0] |= value.batched
            return value.tensor
        if value is BATCH:
            batched[0] = True
            return 1
        if isinstance(value, (list, tuple)):
            return type(value)(concrete(v) for v in value)
        return value

    try:
        with torch.no_grad():
            result = node.target(*concrete(args), **{k: concrete(v) for k, v in kwargs.items()})
    except Exception as exc:  # noqa: BLE001 - reported with the op and where it is
        raise UnsupportedError(f"{node.target} {_where(e, node)} cannot be computed at capture: {exc}") from exc
    first = args[0] if args else None
    keep = first.name if isinstance(first, Const) and name in _KEEP_NAME else None
    transposed = first.name if isinstance(first, Const) and name in _TRANSPOSES and first.tensor.ndim == 2 else None
    if isinstance(result, torch.Tensor):
        return Const(result, name=keep, batched=batched[0], transposed_of=transposed)
    if isinstance(result, (list, tuple)):
        return tuple(Const(r, batched=batched[0]) if isinstance(r, torch.Tensor) else r for r in result)
    if batched[0] and isinstance(result, int):
        return BATCH if result == 1 else result  # the batch size, or a size computed from it
    return result
