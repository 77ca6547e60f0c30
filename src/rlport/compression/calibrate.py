"""Observations to calibrate and compare with, and the int8 scales of activations calibrated on them.

Observations come from the env (rollouts of the float policy, episode ``i`` reset with ``seed + i``),
else from the bundle's probes, else drawn from the observation space. The values a ``linear`` or
``conv2d`` reads are computed by the float graph itself (after the policy's own pre-processing),
recurrent state included, and each gets ``scale = max|value| / 127``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.spaces import sample_observations
from rlport.errors import EnvError, GraphError, MissingDependencyError
from rlport.graph.passes import QUANTISED_READERS, live_nodes, widen
from rlport.graph.reference import bind
from rlport.graph.schema import op_schema

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["Steps", "EnvChoice", "open_env", "rollout_steps", "probe_steps", "sampled_steps", "calibrate_scales"]

ACTIVATION_LEVELS = 127
"""A calibrated value's largest magnitude maps to 127 (QuantizeLinear saturates beyond)."""


@dataclass
class Steps:
    """A stream of single observations, with where episodes start, and where it came from."""

    observations: list[Any] = field(default_factory=list)
    starts: list[bool] = field(default_factory=list)
    source: str = "env"

    def __len__(self) -> int:
        return len(self.observations)


@dataclass(frozen=True)
class EnvChoice:
    """The env to use: the bundle's recorded one unless ``env_id``/``env_kwargs`` say otherwise."""

    env_id: str | None = None
    env_kwargs: dict[str, Any] | None = None
    env_module: str | None = None


def open_env(bundle: Bundle, choice: EnvChoice) -> tuple[Any, str | None]:
    """``(env, None)``, or ``(None, why)`` when the bundle's recorded env cannot be made here.

    An env the user named (``choice.env_id``) that cannot be made is an error, not a fallback.
    """
    from rlport.envs import check_spaces, make_env

    try:
        env = make_env(bundle.env, choice.env_id, choice.env_kwargs, choice.env_module)
    except (EnvError, MissingDependencyError) as exc:
        if choice.env_id is not None:
            raise
        return None, str(exc)
    check_spaces(NumpyPolicy(bundle), env, exact=False)
    return env, None


def rollout_steps(policy: Any, env: Any, steps: int, seed: int) -> Steps:
    """``steps`` observations of ``policy`` acting deterministically in ``env`` (episode ``i``: seed ``seed + i``)."""
    found, episode = Steps(source="env"), 0
    while len(found) < steps:
        obs, _ = env.reset(seed=seed + episode)
        state, start, done = None, True, False
        while not done and len(found) < steps:
            found.observations.append(obs)
            found.starts.append(start)
            action, state = policy.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
            obs, _, terminated, truncated, _ = env.step(action)
            done, start = terminated or truncated, False
        episode += 1
    return found


def probe_steps(bundle: Bundle) -> Steps | None:
    """The bundle's probe observations as a stream (``None`` when it has none)."""
    probes = bundle.probes
    if not probes or "action" not in probes:
        return None
    count = len(probes["action"])
    keyed = {name[4:]: array for name, array in probes.items() if name.startswith("obs.")}
    starts = probes.get("episode_start", np.ones(count))
    found = Steps(source="probes")
    for i in range(count):
        found.observations.append({k: v[i] for k, v in keyed.items()} if keyed else probes["obs"][i])
        found.starts.append(bool(starts[i]) or i == 0)
    return found


def sampled_steps(bundle: Bundle, steps: int, seed: int) -> Steps:
    """``steps`` observations drawn from the observation space (each its own episode)."""
    batch = sample_observations(bundle.observation_space, steps, np.random.default_rng(seed))
    keyed = isinstance(batch, dict)
    rows = [{k: v[i] for k, v in batch.items()} if keyed else batch[i] for i in range(steps)]
    return Steps(rows, [True] * steps, source="sampled from the observation space")


class _Recorder(NumpyPolicy):
    """The numpy policy, keeping every graph input it is fed (recurrent state included)."""

    def __init__(self, bundle: Bundle) -> None:
        self.fed: list[list[Any]] = []
        super().__init__(bundle)
        self._short = None  # every call through _feed and _run, which records
        self.fed.clear()  # (the dry run's dummy batch)

    def _run(self, values: list, deterministic: bool) -> tuple:
        self.fed.append(list(values))
        return super()._run(values, deterministic)


def fed_inputs(bundle: Bundle, steps: Steps) -> list[list[Any]]:
    """The graph inputs the float policy is fed along ``steps`` (carrying its state)."""
    recorder, state = _Recorder(bundle), None
    for obs, start in zip(steps.observations, steps.starts, strict=True):
        _, state = recorder.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
    return recorder.fed


def quantisable_values(bundle: Bundle) -> list[str]:
    """The float32 values ``linear``/``conv2d`` nodes read (candidates for int8 activations), in graph order."""
    values = bundle.values()
    found: list[str] = []
    for node in bundle.graph.nodes():
        if node.op in QUANTISED_READERS:
            name = node.inputs[0]
            if name not in found and values[name].dtype == np.float32:
                found.append(name)
    return found


def _tracer(bundle: Bundle, names: Sequence[str]) -> Callable[[list[Any]], dict[str, np.ndarray]]:
    """A function of the graph inputs giving the ``names`` values (deterministic; float tensors)."""
    graph = bundle.graph
    ctx = SimpleNamespace(deterministic=True, rng=np.random.default_rng(0))
    steps = []
    for step in live_nodes(graph, True, needed=list(names)):
        node = step.node
        params = {role: widen(bundle.tensors[name]) for role, name in node.params.items()}
        fn = None
        if step.passthrough is None:
            fn = bind(node.op, params, node.resolved_attrs(), ctx if op_schema(node.op).stochastic else None)
        steps.append((node, step.passthrough, fn))
    input_names = [graph_input.name for graph_input in graph.inputs]

    def trace(fed: list[Any]) -> dict[str, np.ndarray]:
        known = {name: value for name, value in zip(input_names, fed, strict=True) if value is not None}
        for node, passthrough, fn in steps:
            if passthrough is not None:
                known[node.outputs[0]] = known[node.inputs[passthrough]]
                continue
            result = fn(*(known.get(name) for name in node.inputs))
            known.update(zip(node.outputs, [result] if len(node.outputs) == 1 else result, strict=True))
        return {name: known[name] for name in names}

    return trace


def calibrate_scales(bundle: Bundle, steps: Steps, names: Sequence[str]) -> dict[str, float]:
    """``max|value| / 127`` of each of ``names`` over the float graph's values along ``steps``.

    Raises:
        GraphError: no observation to calibrate on.
    """
    if not len(steps):
        raise GraphError("no observation to calibrate the activations on; give --calibrate N with N >= 1")
    trace = _tracer(bundle, names)
    peaks = dict.fromkeys(names, 0.0)
    with np.errstate(all="ignore"):
        for fed in fed_inputs(bundle, steps):
            for name, value in trace(fed).items():
                peaks[name] = max(peaks[name], float(np.max(np.abs(value), initial=0.0)))
    tiny = float(np.finfo(np.float32).tiny)  # (a scale float32 holds as a normal number)
    return {name: max(peak / ACTIVATION_LEVELS, tiny) if np.isfinite(peak) and peak > 0 else 1.0
            for name, peak in peaks.items()}  # fmt: skip
