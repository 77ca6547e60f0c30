"""The dynamics fingerprint: seeded random rollouts recorded at export and replayed by ``rlport verify``.

If the env here (its version, its physics engine, its kwargs) behaves as the one the policy was
exported from, replaying the recorded actions from the same seeded resets gives the same
observations and rewards. Format: ``docs/FORMAT.md`` section 9.

Example:
    >>> meta, tensors = record_fingerprint(EnvSpec("Pendulum-v1"), episodes=2, steps=50)  # doctest: +SKIP
    >>> replay_fingerprint(meta, tensors).status                                         # doctest: +SKIP
    'PASS'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.bundle.manifest import EnvSpec
from rlport.envs import make_env
from rlport.errors import EnvError, MissingDependencyError, RlportError
from rlport.verify.result import FAIL, PASS, WARN, CheckResult

__all__ = ["record_fingerprint", "replay_fingerprint"]

NAME = "dynamics"


def _flatten(obs: Any, space: Any, prefix: str) -> dict[str, np.ndarray]:
    """``{prefix: obs}`` as float64, or ``{prefix.key: ...}`` per key of a Dict space, in the space's order."""
    subspaces = getattr(space, "spaces", None)
    if isinstance(subspaces, dict):
        out: dict[str, np.ndarray] = {}
        for key, sub in subspaces.items():
            out.update(_flatten(obs[key], sub, f"{prefix}.{key}"))
        return out
    return {prefix: np.asarray(obs, dtype=np.float64)}


def record_fingerprint(
    env: EnvSpec, episodes: int = 3, steps: int = 100, seed: int = 0, env_module: str | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Roll out seeded random actions in ``env``; return ``(meta, tensors)`` (FORMAT.md section 9).

    ``meta`` (``{"env", "episodes", "steps", "seed"}``) goes to ``bundle.verification["fingerprint"]``,
    ``tensors`` to ``bundle.fingerprint``. Episode ``e`` resets with ``seed + e`` and takes actions
    sampled from the action space seeded with ``seed + e``, for ``steps`` steps or until it
    terminates or is truncated.

    ``env_module`` is the one module a ``module:EnvName`` id may import (see ``rlport.envs.check_env_id``).

    Raises:
        EnvError, MissingDependencyError: the env cannot be created here.
        ValueError: ``episodes`` or ``steps`` is not a positive integer.
    """
    if episodes < 1 or steps < 1:
        raise ValueError(f"episodes and steps must be >= 1, found {episodes} and {steps}")
    gym_env = make_env(env, env_module=env_module)
    rows: dict[str, list[np.ndarray]] = {}
    try:
        for e in range(episodes):
            obs, _ = gym_env.reset(seed=seed + e)
            for name, value in _flatten(obs, gym_env.observation_space, "reset_obs").items():
                rows.setdefault(name, []).append(value)
            gym_env.action_space.seed(seed + e)
            for _ in range(steps):
                action = gym_env.action_space.sample()
                obs, reward, terminated, truncated, _ = gym_env.step(action)
                done = bool(terminated or truncated)
                step = _flatten(obs, gym_env.observation_space, "obs")
                step.update(
                    action=np.asarray(action),
                    reward=np.float64(reward),
                    done=np.uint8(done),
                    episode=np.int64(e),
                )
                for name, value in step.items():
                    rows.setdefault(name, []).append(value)
                if done:
                    break
    finally:
        gym_env.close()
    meta = {"env": env.to_json(), "episodes": episodes, "steps": steps, "seed": seed}
    return meta, {name: np.stack(values) for name, values in sorted(rows.items())}


def _fail(detail: str, tolerance: str = "", diff: float | None = None, **where: int) -> CheckResult:
    measured = "diverged" if diff is None or not np.isfinite(diff) else f"max |Δ| = {diff:.3g} at the first divergence"
    return CheckResult(NAME, FAIL, measured, tolerance, detail, dict(where))


def _check_layout(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the recorded fingerprint, or None."""
    for key in ("episodes", "steps", "seed"):
        if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool):
            return f"fingerprint meta field {key!r} must be an integer, found {meta.get(key)!r}"
    names = ("reward", "action", "done", "episode")
    missing = [n for n in names if n not in tensors]
    if not any(n == "obs" or n.startswith("obs.") for n in tensors):
        missing.append("obs")
    if not any(n == "reset_obs" or n.startswith("reset_obs.") for n in tensors):
        missing.append("reset_obs")
    if missing:
        return f"fingerprint lacks tensor(s) {', '.join(missing)}; re-export the bundle to record it again"
    count = len(tensors["reward"]) if np.ndim(tensors["reward"]) else 0
    for name, value in sorted(tensors.items(), key=lambda item: item[0] != "reward"):
        want = meta["episodes"] if name.startswith("reset_obs") else count
        if np.ndim(value) == 0 or len(value) != want:
            return f"fingerprint tensor {name!r} has shape {np.shape(value)}, expected {want} rows"
    episode = np.asarray(tensors["episode"])
    if count and (np.any(np.diff(episode) < 0) or episode.min() < 0 or episode.max() >= meta["episodes"]):
        return f"fingerprint tensor 'episode' must be sorted indices below {meta['episodes']}"
    return None


def _compare(what: str, got: Any, want: np.ndarray, atol: float, rtol: float) -> tuple[float, str | None]:
    """(max |got - want|, why they differ or None), with ``np.isclose`` semantics."""
    try:
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return float("inf"), f"{what} cannot be read as numbers: {exc}"
    if got.shape != want.shape:
        return float("inf"), f"{what} has shape {got.shape}, recorded {want.shape}"
    if not np.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True).all():
        diff = float(np.max(np.abs(got - want)))  # NaN against a number: inf
        diff = float("inf") if np.isnan(diff) else diff
        return diff, f"{what} differs by {diff:.6g} (got {_short(got)}, recorded {_short(want)})"
    both_nan = np.isnan(got) & np.isnan(want)
    return (float(np.max(np.abs(got - want)[~both_nan])) if (~both_nan).any() else 0.0), None


def _compare_obs(
    what: str, got: dict[str, np.ndarray], tensors: dict, row: int, atol: float, rtol: float
) -> tuple[float, str | None]:
    """Compare the flattened observation ``got`` with row ``row`` of the recorded one(s)."""
    prefix = what.replace(" ", "_")
    names = sorted(n for n in tensors if n == prefix or n.startswith(prefix + "."))
    if sorted(got) != names:
        return float("inf"), f"{what} has parts {sorted(got)}, recorded {names}"
    worst = 0.0
    for name in names:
        label = what if name == prefix else f"{what} {name[len(prefix) + 1 :]!r}"
        diff, why = _compare(label, got[name], np.asarray(tensors[name][row]), atol, rtol)
        if why:
            return diff, why
        worst = max(worst, diff)
    return worst, None


def _short(x: np.ndarray) -> str:
    return np.array2string(x, precision=6, threshold=8)


def replay_fingerprint(
    meta: dict[str, Any],
    tensors: dict[str, np.ndarray],
    env: EnvSpec | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    env_module: str | None = None,
) -> CheckResult:
    """Replay the recorded actions from the same seeded resets and compare observations and rewards.

    ``env`` defaults to the recorded spec, ``EnvSpec.from_json(meta["env"])``. PASS when every
    observation, reward and episode end matches within ``|Δ| <= atol + rtol·|recorded|``;
    FAIL naming the first divergence (or a malformed fingerprint); WARN when the env cannot be
    created here.
    """
    tolerance = f"|Δ| <= {atol:g} + {rtol:g}·|x|"
    problem = _check_layout(meta, tensors)
    if problem is None and env is None:
        try:
            env = EnvSpec.from_json(meta.get("env"))
        except RlportError as exc:
            problem = f"fingerprint meta 'env' is invalid: {exc}"
    if problem is not None:
        return _fail(problem)
    try:
        gym_env = make_env(env, env_module=env_module)
    except (EnvError, MissingDependencyError) as exc:
        return CheckResult(NAME, WARN, "not run", tolerance, f"cannot create the env here: {exc}")
    try:
        return _replay(gym_env, meta, tensors, atol, rtol, tolerance)
    finally:
        gym_env.close()


def _replay(gym_env: Any, meta: dict, tensors: dict, atol: float, rtol: float, tolerance: str) -> CheckResult:
    max_obs = max_reward = 0.0
    episode, done = np.asarray(tensors["episode"]), np.asarray(tensors["done"])
    for e in range(meta["episodes"]):
        where = f"episode {e}, reset"
        try:
            obs, _ = gym_env.reset(seed=meta["seed"] + e)
            got = _flatten(obs, gym_env.observation_space, "reset_obs")
        except Exception as exc:  # any env failure is a divergence to report
            return _fail(f"{where}: the env raised {type(exc).__name__}: {exc}", tolerance, episode=e)
        diff, why = _compare_obs("reset obs", got, tensors, e, atol, rtol)
        if why:
            return _fail(f"{where}: {why}", tolerance, diff, episode=e)
        max_obs = max(max_obs, diff)
        rows = np.flatnonzero(episode == e)
        for t, i in enumerate(rows):
            where = f"episode {e}, step {t}"
            try:
                obs, reward, terminated, truncated, _ = gym_env.step(tensors["action"][i])
                got = _flatten(obs, gym_env.observation_space, "obs")
            except Exception as exc:
                return _fail(f"{where}: the env raised {type(exc).__name__}: {exc}", tolerance, episode=e, step=t)
            diff, why = _compare_obs("obs", got, tensors, i, atol, rtol)
            if why:
                return _fail(f"{where}: {why}", tolerance, diff, episode=e, step=t)
            max_obs = max(max_obs, diff)
            diff, why = _compare("reward", reward, np.asarray(tensors["reward"][i], dtype=np.float64), atol, rtol)
            if why:
                return _fail(f"{where}: {why}", tolerance, diff, episode=e, step=t)
            max_reward = max(max_reward, diff)
            if bool(terminated or truncated) != bool(done[i]):
                ended = "ended" if done[i] else "did not end"
                return _fail(
                    f"{where}: episode end differs (the recorded episode {ended} here)", tolerance, episode=e, step=t
                )
    measured = f"max |Δobs| = {max_obs:.3g}, max |Δreward| = {max_reward:.3g} over {len(episode)} steps"
    return CheckResult(NAME, PASS, measured, tolerance, f"{meta['episodes']} episodes replayed")
