"""The on-policy data loop (DAgger-style) and the student's training.

Each round the envs are stepped with a mix of student and teacher: each step, each env acts with
the teacher with probability ``beta`` (1 in the first round, falling to 0 half way through), else
with the student; the teacher labels every visited state. The student is trained on everything
gathered so far, then acts in the next round. A share of the states is held out for the report.

Example:
    >>> data = Dataset()                                                        # doctest: +SKIP
    >>> collect(envs, teacher_policy, student_policy, split, beta, 5000, data, rng)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.backends.numpy import NumpyPolicy
from rlport.distillation.student import forward, loss_of
from rlport.distillation.teacher import TeacherSplit, teacher_labels
from rlport.errors import require

__all__ = ["Dataset", "EnvPool", "beta_of", "collect", "stack", "train", "HELD_OUT_SHARE", "MAX_HELD_OUT"]

HELD_OUT_SHARE = 0.1
"""The share of visited states kept out of training, for the agreement of the report."""
MAX_HELD_OUT = 2000
"""The most held-out states kept (their raw observations are kept too)."""


def beta_of(round_index: int, rounds: int) -> float:
    """The chance that the teacher acts: 1 in the first round, falling linearly to 0 half way through."""
    half = max(1, rounds // 2)
    return max(0.0, 1.0 - round_index / half)


def stack(observations: list[Any]) -> Any:
    """A batch from single observations (arrays, or dicts of arrays)."""
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack([np.asarray(o) for o in observations])


@dataclass
class Dataset:
    """The states gathered so far: the student's inputs and the teacher's labels; held-out raw observations."""

    inputs: list[np.ndarray] = field(default_factory=list)
    labels: list[dict[str, np.ndarray]] = field(default_factory=list)
    held_out: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(x) for x in self.inputs)

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = np.concatenate(self.inputs)
        return x, {key: np.concatenate([lab[key] for lab in self.labels]) for key in self.labels[0]}


class EnvPool:
    """A few envs stepped side by side (each reset on its own when its episode ends)."""

    def __init__(self, envs: list[Any], seed: int) -> None:
        self.envs = envs
        self.obs = [env.reset(seed=seed + k)[0] for k, env in enumerate(envs)]
        self.episodes = 0

    def step(self, actions: np.ndarray) -> None:
        for k, env in enumerate(self.envs):
            obs, _, terminated, truncated, _ = env.step(actions[k])
            if terminated or truncated:
                obs, _ = env.reset()
                self.episodes += 1
            self.obs[k] = obs


def collect(
    pool: EnvPool,
    teacher: NumpyPolicy,
    student: NumpyPolicy | None,
    split: TeacherSplit,
    beta: float,
    count: int,
    data: Dataset,
    rng: np.random.Generator,
    on_step: Callable[[int], None] = lambda n: None,
) -> None:
    """Step ``pool`` for ``count`` states (at least), the teacher labelling each; append them to ``data``."""
    done = 0
    while done < count:
        batch = stack(pool.obs)
        x, labels = teacher_labels(teacher, split, batch)
        teacher_action = np.asarray(teacher.predict(batch, deterministic=True)[0])
        action = teacher_action
        if student is not None and beta < 1.0:
            student_action = np.asarray(student.predict(batch, deterministic=True)[0])
            use_teacher = (rng.random(len(pool.envs)) < beta).reshape((-1,) + (1,) * (teacher_action.ndim - 1))
            action = np.where(use_teacher, teacher_action, student_action)
        held = rng.random(len(x)) < HELD_OUT_SHARE
        for k in np.flatnonzero(held):
            if len(data.held_out) < MAX_HELD_OUT:
                data.held_out.append(pool.obs[k])
        keep = ~held
        data.inputs.append(x[keep])
        data.labels.append({key: value[keep] for key, value in labels.items()})
        pool.step(action)
        done += len(x)
        on_step(len(x))


def train(
    module: Any,
    optimizer: Any,
    data: Dataset,
    updates: int,
    batch_size: int,
    split: TeacherSplit,
    sizes: list[int],
    generator: np.random.Generator,
    device: str,
    learning_rates: tuple[float, float] | None = None,
) -> float:
    """``updates`` minibatch steps on everything gathered; the mean loss of the last tenth of them.

    ``learning_rates`` (start, end) anneals the rate linearly over the updates (the final phase).
    """
    torch = require("torch", "torch", "distillation")
    x, labels = data.arrays()
    x_t = torch.as_tensor(x, device=device)
    labels_t = {key: torch.as_tensor(value, device=device) for key, value in labels.items()}
    losses = []
    module.train()
    for update in range(updates):
        if learning_rates is not None:
            start, end = learning_rates
            for group in optimizer.param_groups:
                group["lr"] = start + (end - start) * update / max(1, updates - 1)
        rows = torch.as_tensor(generator.integers(0, len(x), size=min(batch_size, len(x))), device=device)
        out, log_std = forward(module, x_t[rows])
        loss = loss_of(module, out, log_std, {k: v[rows] for k, v in labels_t.items()}, split.squash, sizes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if update >= updates - max(1, updates // 10):
            losses.append(float(loss.detach()))
    module.eval()
    return float(np.mean(losses)) if losses else float("nan")
