"""What a student replaces in its teacher's graph, and the teacher's labels.

A policy graph is pre-processing, a network, an action op (a distribution, or none for a
deterministic actor) with what follows it, and post-processing. The student keeps all of it but
the network: :func:`split_teacher` finds the network's inputs (the pre-processed observation),
the value the student must produce in its place (logits, Q-values, a Gaussian's mean ...) and the
labels to train it on; :func:`teacher_labels` computes them with the numpy backend.

Example:
    >>> split = split_teacher(bundle)                                  # doctest: +SKIP
    >>> split.kind, split.inputs, split.head                           # doctest: +SKIP
    ('categorical', ('cast_1',), 'linear_7')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlport.backends.feed import dry_run_observation
from rlport.backends.numpy import NumpyPolicy, values_of
from rlport.bundle.bundle import Bundle
from rlport.errors import UnsupportedError, short
from rlport.graph.graph import Node
from rlport.graph.passes import live_nodes

__all__ = ["KINDS", "TeacherSplit", "split_teacher", "teacher_labels", "gsde_std"]

KINDS = {
    "categorical": "KL divergence between the teacher's and the student's action probabilities",
    "multi_categorical": "KL divergence per action dimension",
    "bernoulli": "KL divergence per binary action",
    "q_values": "KL divergence to the softmax of the teacher's Q-values (temperature 0.01, Rusu et al. 2015)",
    "gaussian_fixed": "Gaussian KL divergence with the teacher's log-std kept (a variance-weighted mean MSE)",
    "gaussian": "Gaussian KL divergence (mean and state-dependent log-std)",
    "gsde": "Gaussian KL divergence to the teacher's per-state gSDE std (the student learns one log-std)",
    "deterministic": "MSE on the action",
}
"""Each kind of teacher head -> the loss the student is trained with."""

_ACTION_OPS = {
    "categorical": "categorical",
    "multi_categorical": "multi_categorical",
    "bernoulli": "bernoulli",
    "greedy": "q_values",
    "gaussian": "gaussian",
    "gsde": "gsde",
}


@dataclass(frozen=True)
class TeacherSplit:
    """The parts of a teacher's graph, as the student sees them.

    Attributes:
        kind: a key of :data:`KINDS`.
        inputs: the values the teacher's network reads (its pre-processed observation), in order.
        head: the value the student computes in the network's place (the action op's first input,
            or for a deterministic actor the value before its final ``tanh``).
        log_std: for a ``gaussian`` kind, the state-dependent log-std value the student also computes.
        action: the action op node (None for a deterministic actor).
        tail: the policy-stage nodes after the network that are kept (a squashing ``tanh`` ...).
        labels: the values the teacher is asked for on every state.
        squash: a deterministic actor whose network ends in ``tanh`` (the loss is in the squashed space).
    """

    kind: str
    inputs: tuple[str, ...]
    head: str
    log_std: str | None
    action: Node | None
    tail: tuple[Node, ...]
    labels: tuple[str, ...]
    squash: bool


def _policy_range(bundle: Bundle) -> range:
    start = len(bundle.graph.preprocess)
    return range(start, start + len(bundle.graph.policy))


def split_teacher(bundle: Bundle) -> TeacherSplit:
    """Find the teacher's network, its inputs and the head the student replaces.

    Raises:
        UnsupportedError: a recurrent teacher, several action ops, or post-processing that reads
            the network's inner values (the student could not keep it).
    """
    graph = bundle.graph
    if graph.inputs_with_role("state"):
        raise UnsupportedError(
            "the teacher is recurrent (it carries an LSTM state); distilling into a recurrent student is not "
            "supported yet: distil a feed-forward teacher"
        )
    policy_stage = _policy_range(bundle)
    live = [step for step in live_nodes(graph, deterministic=False) if step.index in policy_stage]
    actions = [step for step in live if step.node.op in _ACTION_OPS]
    if len(actions) > 1:
        raise UnsupportedError(
            f"the teacher's graph has {len(actions)} action ops ({', '.join(s.node.op for s in actions)}); "
            "a student replaces a network with one action op"
        )
    if actions:
        step = actions[0]
        action, after = step.node, step.index
        kind = _ACTION_OPS[action.op]
        if kind == "gaussian" and len(action.inputs) == 1:
            kind = "gaussian_fixed"
        head = action.inputs[0]
        log_std = action.inputs[1] if kind == "gaussian" else None
        needed = [head] + ([action.inputs[1]] if kind in ("gaussian", "gsde") else [])
        tail = tuple(s.node for s in live if s.index > after)
        squash = False
        labels = tuple(needed)
    else:
        action, kind, log_std = None, "deterministic", None
        result = _policy_result(bundle, live)
        producer = next((s for s in live if result in s.node.outputs), None)
        squash = producer is not None and producer.node.op == "tanh"
        tail = (producer.node,) if squash else ()
        head = producer.node.inputs[0] if squash else result
        labels = (result,)
        needed = [head]
    network = [s for s in live_nodes(graph, False, needed=needed) if s.index in policy_stage]
    inputs = _network_inputs(bundle, network)
    _check_kept(bundle, network, set(needed))
    if not network:
        raise UnsupportedError("the teacher's graph has no network between its pre-processing and its action")
    return TeacherSplit(kind, inputs, head, log_std, action, tail, labels, squash)


def _policy_result(bundle: Bundle, live: list) -> str:
    """The one policy-stage value that the post-processing (or the graph's output) reads."""
    graph = bundle.graph
    produced = {name for step in live for name in step.node.outputs}
    read = {name for node in graph.postprocess for name in node.inputs} | {graph.output}
    results = sorted(produced & read)
    if len(results) != 1:
        raise UnsupportedError(
            f"the teacher's network hands {len(results)} values to its post-processing ({short(results)}); "
            "a student replaces a network with one result"
        )
    return results[0]


def _network_inputs(bundle: Bundle, network: list) -> tuple[str, ...]:
    """The values the network reads that it does not compute: graph inputs or pre-processing results."""
    graph = bundle.graph
    produced = {name for step in network for name in step.node.outputs}
    observation = {g.name for g in graph.inputs_with_role("observation")}
    pre = observation | {name for node in graph.preprocess for name in node.outputs}
    found: list[str] = []
    for step in network:
        for name in step.node.inputs:
            if name in produced or name in found:
                continue
            if name not in pre:
                raise UnsupportedError(
                    f"the teacher's network reads {short(name)}, which is not its pre-processed observation "
                    "(an action mask or a state inside the network); a student cannot replace it"
                )
            found.append(name)
    if not found:
        raise UnsupportedError("the teacher's network reads no observation")
    return tuple(found)


def _check_kept(bundle: Bundle, network: list, given: set[str]) -> None:
    """Every node the student keeps (the live ones outside the network) reads only what is kept or computed."""
    graph = bundle.graph
    removed = {step.index for step in network}
    available = {g.name for g in graph.inputs} | given
    for step in live_nodes(graph, deterministic=False):
        if step.index in removed:
            continue
        lacking = [name for name in step.node.inputs if name not in available]
        if lacking:
            raise UnsupportedError(
                f"the teacher's op {step.node.op!r} reads {short(lacking[0])} from inside the network, which the "
                "student replaces; only the action op and the post-processing of the action can be kept"
            )
        available.update(step.node.outputs)


def gsde_std(latent: np.ndarray, action: Node, tensors: dict[str, np.ndarray]) -> np.ndarray:
    """The per-state standard deviation of a gSDE action op: ``sqrt(latent**2 @ std**2)`` (as SB3 samples it)."""
    attrs = action.resolved_attrs()
    log_std = np.asarray(tensors[action.params["log_std"]], np.float64)
    if attrs["use_expln"]:
        std = np.where(
            log_std <= 0, np.exp(np.minimum(log_std, 0)), np.log1p(np.maximum(log_std, 0) + attrs["epsilon"]) + 1
        )
    else:
        std = np.exp(log_std)
    if not attrs["full_std"]:
        std = np.ones((latent.shape[1], std.shape[-1])) * std
    variance = (np.asarray(latent, np.float64) ** 2) @ (std**2)
    return np.sqrt(variance + attrs["epsilon"]).astype(np.float32)


def teacher_labels(
    policy: NumpyPolicy, split: TeacherSplit, observation: Any
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The student's input (the pre-processed observation, flat) and the teacher's labels for a batch.

    Labels: ``target`` (logits, Q-values, the mean, or the action), and for Gaussian kinds ``log_std``
    (per state, or the teacher's kept parameter).
    """
    values = values_of(policy, observation, [*split.inputs, *split.labels])
    x = np.concatenate([np.asarray(values[n], np.float32).reshape(len(values[n]), -1) for n in split.inputs], axis=1)
    labels = {"target": np.asarray(values[split.labels[0]], np.float32)}
    if split.kind == "gaussian":
        labels["log_std"] = np.asarray(values[split.log_std], np.float32)
    elif split.kind == "gsde":
        labels["log_std"] = np.log(gsde_std(values[split.labels[1]], split.action, policy.bundle.tensors))
    elif split.kind == "gaussian_fixed":
        log_std = np.asarray(policy.bundle.tensors[split.action.params["log_std"]], np.float32)
        labels["log_std"] = np.broadcast_to(log_std, labels["target"].shape).copy()
    return x, labels


def dry_labels(policy: NumpyPolicy, split: TeacherSplit) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`teacher_labels` on a dummy batch of 2: the widths of the student's input and output."""
    return teacher_labels(policy, split, dry_run_observation(policy.observation_space, 2))
