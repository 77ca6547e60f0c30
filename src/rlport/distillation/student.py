"""The student: a small torch MLP in the teacher's network's place, its losses, and its graph.

The MLP reads the teacher's pre-processed observation (flattened, concatenated), standardised
by statistics of the visited states (folded into the first layer before export), and computes
the value the teacher's network computed: logits, Q-values' stand-in, a Gaussian's mean (and
log-std) or a deterministic actor's action before its ``tanh``. The student graph is the
teacher's graph with the network replaced by the MLP's ops.

Example:
    >>> module = make_student(4, 2, (64, 64), "tanh", "categorical")       # doctest: +SKIP
    >>> graph, tensors, reference_nodes = student_graph(teacher, split, module, dims)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.distillation.teacher import TeacherSplit
from rlport.errors import UnsupportedError, require, short
from rlport.graph.builder import GraphBuilder
from rlport.graph.graph import Graph, Node
from rlport.graph.passes import live_nodes

__all__ = [
    "ACTIVATIONS",
    "MAX_HIDDEN_LAYERS",
    "MAX_HIDDEN_WIDTH",
    "LOG_STD_RANGE",
    "Q_TEMPERATURE",
    "check_architecture",
    "make_student",
    "forward",
    "loss_of",
    "fold_standardisation",
    "student_graph",
]

ACTIVATIONS = ("tanh", "relu")
"""The student's hidden activations (ops of the graph and torch modules alike)."""
MAX_HIDDEN_LAYERS = 8
"""The most hidden layers a student may have."""
MAX_HIDDEN_WIDTH = 4096
"""The widest hidden layer a student may have."""
LOG_STD_RANGE = (-20.0, 2.0)
"""Where a state-dependent log-std is clipped (SB3's SAC clips its actor's log-std to the same range)."""
Q_TEMPERATURE = 0.01
"""Temperature of the softmax over a DQN-style teacher's Q-values (Rusu et al. 2015 found 0.01 best)."""


def check_architecture(hidden: Any, activation: Any) -> tuple[int, ...]:
    """``hidden`` as a tuple of widths, or :class:`UnsupportedError` saying what is accepted."""
    if activation not in ACTIVATIONS:
        raise UnsupportedError(f"activation {short(activation)} is not offered; choose one of {', '.join(ACTIVATIONS)}")
    try:
        widths = tuple(hidden)
    except TypeError:
        widths = None
    if (
        widths is None
        or not 1 <= len(widths) <= MAX_HIDDEN_LAYERS
        or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_HIDDEN_WIDTH for w in widths)
    ):
        raise UnsupportedError(
            f"hidden must be 1 to {MAX_HIDDEN_LAYERS} layer widths of 1 to {MAX_HIDDEN_WIDTH} (e.g. (64, 64)), "
            f"found {short(hidden)}"
        )
    return widths


def make_student(
    in_size: int, out_size: int, hidden: tuple[int, ...], activation: str, kind: str, log_std: np.ndarray | None = None
) -> Any:
    """A torch module: ``trunk`` (Linear + activation per hidden layer), ``head``, and for Gaussian kinds a log-std.

    ``log_std`` starts the learned state-independent log-std of a ``gsde`` student.
    """
    torch = require("torch", "torch", "distillation")
    nn = torch.nn
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[Any] = []
    width = in_size
    for size in hidden:
        layers += [nn.Linear(width, size), act()]
        width = size
    module = nn.Module()
    module.kind = kind
    module.trunk = nn.Sequential(*layers)
    module.head = nn.Linear(width, out_size)
    with torch.no_grad():
        module.head.weight.mul_(0.1)
        module.head.bias.zero_()
    if kind == "gaussian":
        module.log_std_head = nn.Linear(width, out_size)
    if kind == "gsde":
        start = np.zeros(out_size, np.float32) if log_std is None else np.asarray(log_std, np.float32)
        module.log_std = nn.Parameter(torch.as_tensor(start))
    module.register_buffer("in_mean", torch.zeros(in_size))
    module.register_buffer("in_std", torch.ones(in_size))
    return module


def forward(module: Any, x: Any) -> tuple[Any, Any]:
    """``(head, log_std)`` of the student for a batch ``x`` (``log_std`` None for kinds without one)."""
    hidden = module.trunk((x - module.in_mean) / module.in_std)
    out = module.head(hidden)
    if module.kind == "gaussian":
        return out, module.log_std_head(hidden).clamp(*LOG_STD_RANGE)
    if module.kind == "gsde":
        return out, module.log_std.expand_as(out)
    return out, None


def _kl_categorical(teacher_log: Any, student_logits: Any) -> Any:
    torch = require("torch", "torch", "distillation")
    student_log = torch.log_softmax(student_logits, dim=-1)
    return (teacher_log.exp() * (teacher_log - student_log)).sum(-1)


def loss_of(module: Any, out: Any, log_std: Any, labels: dict[str, Any], squash: bool, sizes: list[int]) -> Any:
    """The distillation loss of a batch (mean over the batch), by the kind of the teacher's head (``KINDS``)."""
    torch = require("torch", "torch", "distillation")
    kind, target = module.kind, labels["target"]
    if kind == "categorical":
        per_state = _kl_categorical(torch.log_softmax(target, dim=-1), out)
    elif kind == "q_values":
        per_state = _kl_categorical(torch.log_softmax(target / Q_TEMPERATURE, dim=-1), out)
    elif kind == "multi_categorical":
        parts = zip(torch.split(target, sizes, dim=-1), torch.split(out, sizes, dim=-1), strict=True)
        per_state = sum(_kl_categorical(torch.log_softmax(t, dim=-1), s) for t, s in parts)
    elif kind == "bernoulli":
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        per_state = bce(out, torch.sigmoid(target), reduction="none").sum(-1)
    elif kind == "gaussian_fixed":
        per_state = ((out - target) ** 2 / (2 * torch.exp(2 * labels["log_std"]))).sum(-1)
    elif kind in ("gaussian", "gsde"):
        teacher_log_std = labels["log_std"]
        variance = torch.exp(2 * log_std)
        per_state = (
            log_std - teacher_log_std + (torch.exp(2 * teacher_log_std) + (target - out) ** 2) / (2 * variance) - 0.5
        ).sum(-1)
    else:  # deterministic: the action, in the squashed space when the teacher squashes
        action = torch.tanh(out) if squash else out
        per_state = ((action - target) ** 2).sum(-1)
    return per_state.mean()


def fold_standardisation(module: Any) -> None:
    """Fold the input standardisation into the first layer(s), in place: the module then reads raw inputs."""
    torch = require("torch", "torch", "distillation")
    firsts = (
        [module.trunk[0]]
        if len(module.trunk)
        else [module.head, *([module.log_std_head] * (module.kind == "gaussian"))]
    )
    with torch.no_grad():
        for layer in firsts:
            weight = layer.weight / module.in_std
            layer.bias.sub_(weight @ module.in_mean)
            layer.weight.copy_(weight)
        module.in_mean.zero_()
        module.in_std.fill_(1.0)


def _prefix(teacher: Bundle) -> str:
    """``student`` (or ``student2`` ...): a prefix no kept tensor or value name of the teacher starts with."""
    names = set(teacher.tensors) | {n for node in teacher.graph.nodes() for n in node.outputs}
    names |= {g.name for g in teacher.graph.inputs}
    prefix, count = "student", 1
    while any(name == prefix or name.startswith(prefix + ".") for name in names):
        count += 1
        prefix = f"student{count}"
    return prefix


def _array(parameter: Any) -> np.ndarray:
    return parameter.detach().cpu().numpy().astype(np.float32)


def student_graph(teacher: Bundle, split: TeacherSplit, module: Any) -> tuple[Graph, dict[str, np.ndarray], list[Node]]:
    """The student's graph and tensors, and the nodes after its network (what :func:`reference_action` runs).

    The teacher's live nodes are kept, in their stages, but the network's; a gSDE action op becomes
    a ``gaussian`` with the student's learned log-std.
    """
    graph, prefix = teacher.graph, _prefix(teacher)
    policy_start = len(graph.preprocess)
    network = _network_indices(teacher, split)
    kept = [s for s in live_nodes(graph, deterministic=False) if s.index not in network]
    builder = GraphBuilder()
    builder.inputs = list(graph.inputs)
    builder.stage = "preprocess"
    for step in kept:
        if step.index < policy_start:
            builder.stages["preprocess"].append(step.node)
    builder.stage = "policy"
    _network_nodes(builder, prefix, split, module)
    after: list[Node] = []
    for step in kept:
        if step.index < policy_start:
            continue
        node = step.node
        if split.kind == "gsde" and node is split.action:
            builder.tensor(f"{prefix}.log_std", module.log_std)
            node = Node("gaussian", (split.head,), node.outputs, {"log_std": f"{prefix}.log_std"})
        stage = "policy" if step.index < policy_start + len(graph.policy) else "postprocess"
        builder.stages[stage].append(node)
        after.append(node)
    tensors = dict(builder.tensors)
    for node in [*builder.stages["preprocess"], *after]:
        for name in node.params.values():
            if name not in tensors:
                tensors[name] = np.array(teacher.tensors[name])
    return builder.build(graph.output), tensors, after


def _network_indices(teacher: Bundle, split: TeacherSplit) -> set[int]:
    needed = [split.head] + ([split.action.inputs[1]] if split.kind in ("gaussian", "gsde") else [])
    start = len(teacher.graph.preprocess)
    stop = start + len(teacher.graph.policy)
    return {s.index for s in live_nodes(teacher.graph, False, needed=needed) if start <= s.index < stop}


def _network_nodes(builder: GraphBuilder, prefix: str, split: TeacherSplit, module: Any) -> None:
    """flatten (each input) -> concat -> (linear -> activation) per hidden layer -> linear head(s)."""
    flat = [builder.add("flatten", [name], name=f"{prefix}.flat{i}") for i, name in enumerate(split.inputs)]
    value = flat[0] if len(flat) == 1 else builder.add("concat", flat, name=f"{prefix}.input")
    linears = [layer for layer in module.trunk if hasattr(layer, "weight")]
    activation = "tanh" if any(type(layer).__name__ == "Tanh" for layer in module.trunk) else "relu"
    for i, layer in enumerate(linears):
        value = _linear(builder, f"{prefix}.{i}", value, layer, f"{prefix}.linear{i}")
        value = builder.add(activation, [value], name=f"{prefix}.{activation}{i}")
    _linear(builder, f"{prefix}.head", value, module.head, split.head)
    if split.kind == "gaussian":
        raw = _linear(builder, f"{prefix}.log_std_head", value, module.log_std_head, f"{prefix}.log_std_raw")
        low, high = LOG_STD_RANGE
        builder.add("clip", [raw], attrs={"min": low, "max": high}, name=split.log_std)


def _linear(builder: GraphBuilder, tensor: str, value: str, layer: Any, name: str) -> str:
    weight = builder.tensor(f"{tensor}.weight", _array(layer.weight))
    bias = builder.tensor(f"{tensor}.bias", _array(layer.bias))
    return builder.add("linear", [value], params={"weight": weight, "bias": bias}, name=name)
