"""``replay.gif``: one episode rendered as ``rgb_array`` frames, written with imageio (the ``report`` extra)."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np

from rlport.errors import require

__all__ = ["replay_gif", "MAX_FRAMES", "MAX_SIDE"]

MAX_FRAMES = 200
"""Most frames a replay keeps (longer episodes keep every k-th frame)."""
MAX_SIDE = 320
"""Largest width or height of a replay's frames, in pixels (larger renders are shrunk by striding)."""


def replay_gif(bundle: Any, policy: Any, seed: int, env_module: str | None) -> tuple[bytes | None, str]:
    """The GIF's bytes and a note, or ``(None, why not)`` when the env cannot render ``rgb_array`` here."""
    from rlport.envs import make_env, run_episodes

    imageio = require("imageio", "report", "rlport card --video")
    spec = replace(bundle.env, kwargs={**bundle.env.kwargs, "render_mode": "rgb_array"})
    frames: list[np.ndarray] = []
    try:
        env = make_env(spec, env_module=env_module)
        try:
            stats = run_episodes(policy, env, 1, seed=seed, on_step=lambda obs, action: frames.append(_frame(env)))
        finally:
            env.close()
    except Exception as exc:  # noqa: BLE001 - any renderer's failure (no OpenGL, no display) is a note, not an error
        return None, f"the env {bundle.env.id!r:.80} cannot render rgb_array frames here ({type(exc).__name__}: " \
                     f"{' '.join(str(exc).split())[:200]})"  # fmt: skip
    if not frames or any(frame is None for frame in frames):
        return None, f"the env {bundle.env.id!r:.80} renders no rgb_array frames"
    step = max(1, -(-len(frames) // MAX_FRAMES))
    kept = frames[::step]
    buffer = io.BytesIO()
    imageio.mimwrite(buffer, kept, format="GIF", duration=1000 * step / 30, loop=0)
    note = f"one episode (seed {seed}): return {stats.returns[0]:.1f} in {stats.lengths[0]} steps"
    return buffer.getvalue(), note + (f", 1 frame in {step}" if step > 1 else "")


def _frame(env: Any) -> np.ndarray | None:
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        return None
    stride = max(1, -(-max(frame.shape[:2]) // MAX_SIDE))
    return np.ascontiguousarray(frame[::stride, ::stride, :3]).astype(np.uint8)
