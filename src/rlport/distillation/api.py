"""``rlport.distillation``: train a small student on its teacher's decisions, in the states the student visits.

Example:
    >>> student, report = distill("walker.rlp", hidden=(64, 64), steps=200_000)   # doctest: +SKIP
    >>> student.save("walker-small.rlp")                                          # doctest: +SKIP
    >>> report["returns"]["difference"]                                           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from typing import Any

import numpy as np

from rlport.assemble import Reference, assemble
from rlport.backends.numpy import NumpyPolicy, SamplingContext, bind_node, values_of
from rlport.bundle.bundle import Bundle
from rlport.bundle.container import sha256
from rlport.bundle.manifest import EnvSpec, canonical_json
from rlport.distillation import evaluate, loop
from rlport.distillation import student as mlp
from rlport.distillation import teacher as parts
from rlport.envs import check_spaces, make_env, run_episodes
from rlport.errors import EnvError, MissingDependencyError, RlportWarning, UnsupportedError, require, short

__all__ = ["distill", "MAX_STEPS", "MAX_EPISODES", "ROUNDS", "BATCH_SIZE", "EVAL_SEED_OFFSET"]

MAX_STEPS = 100_000_000
"""The most env steps one distillation takes."""
MAX_EPISODES = 10_000
"""The most paired evaluation episodes."""
ROUNDS = 10
"""Rounds of the data loop (the teacher's share falls to 0 over the first half)."""
BATCH_SIZE = 256
"""Minibatch size of the student's training."""
LEARNING_RATE = 1e-3
"""Adam's learning rate (annealed to a tenth of it in the final phase)."""
EPOCHS_PER_ROUND = 3
"""Passes over everything gathered after each round (between 200 and 3000 updates)."""
FINAL_EPOCHS = 10
"""Passes over everything gathered at the end (at most 20000 updates)."""
ENVS = 8
"""Envs stepped side by side (the teacher and the student label and act on them in one batch)."""
EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episode ``i`` resets with seed ``seed + EVAL_SEED_OFFSET + i``: never a training episode's seed."""


class _Silent:
    def update(self, n: int = 1, note: str = "") -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def teacher_digest(bundle: Bundle) -> str:
    """The sha256 of the teacher's manifest: the digest its file's archive comment carries."""
    return sha256(canonical_json(bundle.manifest()))


def distill(
    teacher: Bundle | str | os.PathLike,
    hidden: tuple[int, ...] = (64, 64),
    activation: str = "tanh",
    env: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    steps: int = 50_000,
    seed: int = 0,
    int8: bool = False,
    device: str = "cpu",
    progress: Any = None,
    episodes: int = 10,
    env_module: str | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Distil a policy into a small MLP student that keeps the teacher's spaces, pre- and post-processing and env.

    The teacher runs through the numpy backend; the student trains in torch (the ``torch`` extra),
    DAgger-style: it acts (the teacher too, early on), the teacher labels every visited state with
    its distribution parameters, and the student learns them (see ``rlport.distillation.parts.KINDS``).

    Args:
        teacher: the teacher, a :class:`Bundle` or the path of one.
        hidden: the student's hidden layer widths.
        activation: ``"tanh"`` or ``"relu"``.
        env, env_kwargs: the env to train and evaluate in (default: the teacher's recorded one).
        steps: env steps of the data loop (states the teacher labels).
        seed: seeds the envs, the student's initialisation and its minibatches.
        int8: quantise the student's weights with ``rlport.compress``.
        device: torch device of the training (``"cuda"`` where there is a GPU).
        progress: a factory ``(total, label) -> bar`` with ``update(n, note)`` (``rlport.cli.progress.Progress``).
        episodes: paired evaluation episodes (teacher and student on the same seeds).
        env_module: the one module a recorded ``module:EnvName`` env id may import.

    Returns:
        The student bundle (not saved) and the report: sizes, agreement on held-out states,
        paired returns and their difference with its 95% interval, wall time.

    Raises:
        UnsupportedError: a recurrent teacher, a head the student cannot replace, bad settings,
            or ``int8`` where ``rlport.compress`` is not available.
        EnvError: the teacher's env cannot be made here (the message says what to install), or none is recorded.
        MissingDependencyError: torch or gymnasium is not installed.

    Example:
        >>> student, report = rlport.distill("cartpole.rlp", hidden=(32, 32))   # doctest: +SKIP
    """
    began = time.perf_counter()
    hidden = mlp.check_architecture(hidden, activation)
    _check_settings(steps, seed, episodes)
    compress = _compressor() if int8 else None
    torch = require("torch", "torch", "distillation")
    torch_device = _device(torch, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP: one thread is fastest, and several contend on a busy machine
    try:
        return _distill(teacher, hidden, activation, env, env_kwargs, steps, seed, int8, torch_device, progress,
                        episodes, env_module, compress, began)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _distill(teacher: Any, hidden: tuple[int, ...], activation: str, env: str | None, env_kwargs: dict | None,
             steps: int, seed: int, int8: bool, torch_device: Any, progress: Any, episodes: int,
             env_module: str | None, compress: Any, began: float) -> tuple[Bundle, dict[str, Any]]:  # fmt: skip
    """:func:`distill` once its settings are checked."""
    import torch

    device = str(torch_device)
    source_path = None
    if isinstance(teacher, Bundle):
        teacher_bundle = teacher
    else:
        source_path = str(teacher)
        teacher_bundle = Bundle.load(teacher)
    split = parts.split_teacher(teacher_bundle)
    teacher_policy = NumpyPolicy(teacher_bundle)
    envs = _envs(teacher_bundle, env, env_kwargs, env_module, teacher_policy)
    bar = progress or (lambda total, label: _Silent())
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x0, labels0 = parts.dry_labels(teacher_policy, split)
    sizes = list(split.action.resolved_attrs()["sizes"]) if split.kind == "multi_categorical" else []
    module = mlp.make_student(x0.shape[1], labels0["target"].shape[1], hidden, activation, split.kind,
                                  labels0.get("log_std", [None])[0] if split.kind == "gsde" else None)  # fmt: skip
    module.to(torch_device)
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
    data, pool, student_policy, losses = loop.Dataset(), loop.EnvPool(envs, seed), None, []
    per_round = max(1, math.ceil(steps / ROUNDS))
    with bar(steps, "distilling") as progress_bar:
        for round_index in range(ROUNDS):
            beta = loop.beta_of(round_index, ROUNDS)
            note = f"round {round_index + 1}/{ROUNDS}" + (f" loss {losses[-1]:.3g}" if losses else "")
            loop.collect(pool, teacher_policy, student_policy, split, beta, per_round, data, rng,
                         on_step=lambda n, note=note: progress_bar.update(n, note))  # fmt: skip
            if round_index == 0:
                _set_standardisation(torch, module, data, torch_device)
            epochs = len(data) * EPOCHS_PER_ROUND // BATCH_SIZE
            losses.append(loop.train(module, optimizer, data, min(max(200, epochs), 3000), BATCH_SIZE, split,
                                     sizes, rng, torch_device))  # fmt: skip
            student_policy = NumpyPolicy(_bare_student(teacher_bundle, split, module))
        final = min(max(500, len(data) * FINAL_EPOCHS // BATCH_SIZE), 20_000)
        losses.append(loop.train(module, optimizer, data, final, BATCH_SIZE, split, sizes, rng, torch_device,
                                 learning_rates=(LEARNING_RATE, LEARNING_RATE / 10)))  # fmt: skip
    module.cpu()
    mlp.fold_standardisation(module)
    settings = {"hidden": list(hidden), "activation": activation, "steps": steps, "seed": seed, "int8": int8,
                "device": device, "rounds": ROUNDS, "loss": parts.KINDS[split.kind],
                "env": env or teacher_bundle.env.id, "episodes": episodes}  # fmt: skip
    built = _assemble(teacher_bundle, split, module, data, teacher_policy, env, env_kwargs, settings, source_path)
    if compress is not None:
        built = compress(built, weights="int8", seed=seed, env_id=env, env_kwargs=env_kwargs, env_module=env_module)
    report = _report(teacher_bundle, built, teacher_policy, data, envs[0], seed, episodes, bar)
    report.update(settings=settings, kind=split.kind, final_loss=losses[-1], states=len(data),
                  teacher_digest=built.provenance["distilled_from"]["manifest_sha256"])  # fmt: skip
    report["seconds"] = time.perf_counter() - began
    built.provenance["distillation"]["results"] = _results(report)
    _warn_size(report)
    for made in envs:
        made.close()
    return built, report


def _check_settings(steps: Any, seed: Any, episodes: Any) -> None:
    for name, value, low, high in (("steps", steps, 1, MAX_STEPS), ("seed", seed, 0, 2**32 - 1),
                                   ("episodes", episodes, 1, MAX_EPISODES)):  # fmt: skip
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UnsupportedError(f"{name} must be a whole number {low:,} .. {high:,}, found {short(value)}")


def _compressor() -> Any:
    """``rlport.compression.compress`` (int8 weights), or a clear refusal where that feature is not there yet."""
    try:
        from rlport.compression import compress
    except ImportError:
        raise UnsupportedError(
            "int8 students need rlport.compress, which this rlport does not have yet; distil without int8 "
            "(--int8) and quantise the student later"
        ) from None
    return compress


def _device(torch: Any, device: Any) -> Any:
    try:
        chosen = torch.device(device)
        torch.zeros(1, device=chosen)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise UnsupportedError(
            f"torch cannot train on device {short(device)} here ({short(str(exc), 200)}); use cpu, or cuda where "
            "torch sees a GPU"
        ) from None
    return chosen


def _envs(bundle: Bundle, env_id: str | None, env_kwargs: dict | None, env_module: str | None, policy: Any) -> list:
    """:data:`ENVS` envs for the teacher, whose spaces must fit it."""
    name = env_id or bundle.env.id
    if not name:
        raise EnvError("the teacher records no env; distillation runs the teacher in one: pass --env ID (env=)")
    envs = []
    try:
        for _ in range(ENVS):
            envs.append(make_env(bundle.env, env_id=env_id, env_kwargs=env_kwargs, env_module=env_module))
    except (EnvError, MissingDependencyError) as exc:
        raise EnvError(
            f"distillation runs the teacher in its env {short(name)}, which cannot be made here: {exc}. "
            'Install it (pip install "rlport[envs]" brings classic-control, Box2D and MuJoCo) '
            "or pass --env ID (env=) naming an env with the same spaces"
        ) from exc
    check_spaces(policy, envs[0], exact=False, hint="pass --env ID (env=) naming an env with the teacher's spaces")
    return envs


def _set_standardisation(torch: Any, module: Any, data: loop.Dataset, device: Any) -> None:
    x, _ = data.arrays()
    std = x.std(axis=0)
    module.in_mean.copy_(torch.as_tensor(x.mean(axis=0), device=device))
    module.in_std.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0), device=device))


def _bare_student(teacher_bundle: Bundle, split: parts.TeacherSplit, module: Any) -> Bundle:
    """The current student as a bundle (no checks, no probes): how it acts in the next round."""
    folded = _folded_copy(module)
    graph, tensors, _ = mlp.student_graph(teacher_bundle, split, folded)
    return Bundle(teacher_bundle.observation_space, teacher_bundle.action_space, graph, tensors)


def _folded_copy(module: Any) -> Any:
    import copy

    folded = copy.deepcopy(module).cpu()
    mlp.fold_standardisation(folded)
    return folded


def _assemble(teacher_bundle: Bundle, split: parts.TeacherSplit, module: Any, data: loop.Dataset,
              teacher_policy: NumpyPolicy, env_id: str | None, env_kwargs: dict | None,
              settings: dict[str, Any], source_path: str | None) -> Bundle:  # fmt: skip
    """The student bundle, checked against the trained torch module on held-out visited states."""
    graph, tensors, after = mlp.student_graph(teacher_bundle, split, module)
    reference = _reference(split, module, teacher_policy, after, tensors, data)
    env_spec = teacher_bundle.env
    if env_id is not None:
        env_spec = dataclasses.replace(env_spec, id=env_id, kwargs=dict(env_kwargs or {}))
    elif env_kwargs is not None:
        env_spec = dataclasses.replace(env_spec, kwargs=dict(env_kwargs))
    digest = teacher_digest(teacher_bundle)
    prov = teacher_bundle.provenance
    provenance = {
        "algorithm": "distillation",
        "framework": "rlport.distillation",
        "distilled_from": {
            "manifest_sha256": digest,
            "algorithm": prov.get("algorithm"),
            "file": os.path.basename(source_path) if source_path else None,
        },  # fmt: skip
        "distillation": {"settings": settings, "results": {}},
    }
    source = {"framework": "rlport.distillation", "teacher_manifest_sha256": digest, "includes_critic": False}
    return assemble(graph, tensors, teacher_bundle.observation_space, teacher_bundle.action_space,
                    env_spec if isinstance(env_spec, EnvSpec) else EnvSpec(), source, provenance,
                    reference=reference, what="the distilled student")  # fmt: skip


def _reference(split: parts.TeacherSplit, module: Any, teacher_policy: NumpyPolicy, after: list,
               tensors: dict, data: loop.Dataset) -> Reference:  # fmt: skip
    """The trained torch module (after the teacher's pre-processing, before the kept action op) as the source."""
    import torch

    ctx = SamplingContext(deterministic=True)
    bound = [(bind_node(node, tensors, ctx), node) for node in after]
    inputs = [g.name for g in teacher_policy.bundle.graph.inputs_with_role("observation")]
    held = list(data.held_out)

    def predict(obs: Any, state: Any, episode_start: Any) -> tuple[np.ndarray, Any]:
        known = values_of(teacher_policy, obs, [*split.inputs, *inputs])
        x = np.concatenate([np.asarray(known[n], np.float32).reshape(len(known[n]), -1) for n in split.inputs], 1)
        with torch.no_grad():
            out, log_std = mlp.forward(module, torch.as_tensor(x))
        known[split.head] = out.numpy()
        if split.log_std is not None:
            known[split.log_std] = log_std.numpy()
        for fn, node in bound:
            args = [known.get(name) for name in node.inputs]
            result = fn(*args)
            known.update(zip(node.outputs, [result] if len(node.outputs) == 1 else result, strict=True))
        return known[teacher_policy.bundle.graph.output], state

    def observations(count: int) -> Any:
        rows = [held[i % len(held)] for i in range(count)] if held else []
        return loop.stack(rows)

    return Reference("the trained student (torch)", predict, observations, False,
                     f"torch {torch.__version__} student, deterministic")  # fmt: skip


def _report(teacher_bundle: Bundle, built: Bundle, teacher_policy: NumpyPolicy, data: loop.Dataset, env: Any,
            seed: int, episodes: int, bar: Any) -> dict[str, Any]:  # fmt: skip
    student_policy = NumpyPolicy(built)
    held = loop.stack(data.held_out) if data.held_out else None
    if held is not None:
        teacher_actions = teacher_policy.predict(held, deterministic=True)[0]
        student_actions = student_policy.predict(held, deterministic=True)[0]
        agreement = evaluate.agreement(teacher_actions, student_actions, teacher_bundle.action_space)
    else:
        agreement = evaluate.agreement(np.zeros((0,)), np.zeros((0,)), teacher_bundle.action_space)
    start = seed + EVAL_SEED_OFFSET
    with bar(2 * episodes, "evaluating") as progress_bar:
        update = lambda i, r: progress_bar.update(note=f"return {r:.1f}")  # noqa: E731
        ours = run_episodes(teacher_policy, env, episodes, seed=start, on_episode=update)
        theirs = run_episodes(student_policy, env, episodes, seed=start, on_episode=update)
    return {
        "teacher": {**evaluate.weights(teacher_bundle), "mean_return": ours.mean_return, "returns": ours.returns},
        "student": {**evaluate.weights(built), "mean_return": theirs.mean_return, "returns": theirs.returns},
        "agreement": agreement,
        "difference": evaluate.paired_difference(ours.returns, theirs.returns),
    }


def _results(report: dict[str, Any]) -> dict[str, Any]:
    """What the student's provenance records of its report."""
    return {
        "teacher_return": report["teacher"]["mean_return"],
        "student_return": report["student"]["mean_return"],
        "difference": report["difference"],
        "agreement": report["agreement"]["share"],
        "held_out_states": report["agreement"]["states"],
        "teacher_weight_bytes": report["teacher"]["bytes"],
        "student_weight_bytes": report["student"]["bytes"],
        "states": report["states"],
        "seconds": round(report["seconds"], 3),
    }


def _warn_size(report: dict[str, Any]) -> None:
    t, s = report["teacher"]["parameters"], report["student"]["parameters"]
    if s >= t:
        warnings.warn(
            f"the student has {s:,} parameters, at least as many as its teacher's {t:,}: it is no smaller; "
            "choose smaller hidden layers (--hidden 32,32)",
            RlportWarning,
            stacklevel=3,
        )
