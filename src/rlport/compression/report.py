"""How a compressed bundle compares with its float original: size, action agreement, paired returns.

Agreement is measured on the float policy's own rollouts (the compressed policy acts on the same
observations, carrying its own recurrent state), or on the probes when no env can be made. Returns
are compared on paired episodes: episode ``i`` of each policy resets the env with ``seed + i``, and
the mean of the differences gets a 95% confidence interval (Student's t).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.spaces import BoxSpec
from rlport.compression.calibrate import EnvChoice, Steps, open_env, probe_steps, sampled_steps
from rlport.compression.quantise import weight_bytes

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["CompressionReport", "compare", "paired_interval", "t_quantile_95"]

MIN_RELEVANT_DROP = 0.01
"""A return drop warns when its 95% interval lies below 0 and it is more than this share of the float return
(a drop of 0.01% that identical seeds make significant is reported, in ``significant_drop``, without a warning)."""
PROBE_FALLBACK_STEPS = 256
"""Observations drawn from the space to compare on when there is neither an env nor probes."""
_T95 = tuple(
    float(t)
    for t in "12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 "
    "2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042".split()
)
"""Student's t, two-sided 95%, for 1 to 30 degrees of freedom."""


def t_quantile_95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (table to 30, then Cornish-Fisher).

    Example:
        >>> t_quantile_95(9), round(t_quantile_95(1000), 3)
        (2.262, 1.962)
    """
    if df < 1:
        return math.inf
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_interval(differences: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean difference and its 95% confidence interval (infinite for one pair)."""
    d = np.asarray(differences, np.float64)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, -math.inf, math.inf
    half = t_quantile_95(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return mean, mean - half, mean + half


@dataclass
class CompressionReport:
    """What ``rlport compress`` reports (``to_json`` is its ``--json`` output)."""

    weights: str
    activations: str | None
    sizes: dict[str, Any]
    agreement: dict[str, Any] | None = None
    returns: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "activations": self.activations,
            "sizes": self.sizes,
            "agreement": self.agreement,
            "returns": self.returns,
            "calibration": self.calibration,
            "warnings": list(self.warnings),
        }


def _sizes(original: Bundle, compressed: Bundle) -> dict[str, Any]:
    before = {"file_bytes": len(original.to_bytes()), "weight_bytes": weight_bytes(original)}
    after = {"file_bytes": len(compressed.to_bytes()), "weight_bytes": weight_bytes(compressed)}
    ratio = {key: after[key] / before[key] if before[key] else None for key in before}
    return {"float": before, "compressed": after, "ratio": ratio}


class _Agreement:
    """Pairs of actions (float, compressed) on the same observations."""

    def __init__(self, action_space: Any) -> None:
        self.space = action_space
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, a: Any, b: Any) -> None:
        self.pairs.append((np.asarray(a), np.asarray(b)))

    def to_json(self, source: str) -> dict[str, Any]:
        a = np.stack([p[0] for p in self.pairs]).astype(np.float64)
        b = np.stack([p[1] for p in self.pairs]).astype(np.float64)
        result: dict[str, Any] = {"source": source, "steps": len(self.pairs)}
        if not isinstance(self.space, BoxSpec):
            same = np.all((a == b).reshape(len(a), -1), axis=1)
            return result | {"kind": "discrete", "identical": float(same.mean())}
        span = (self.space.high - self.space.low).astype(np.float64)
        bounded = bool(np.all(np.isfinite(span)) and np.all(span > 0))
        error = np.abs(a - b) / span if bounded else np.abs(a - b)
        return result | {
            "kind": "continuous",
            "max_error": float(error.max(initial=0.0)),
            "mean_error": float(error.mean()) if error.size else 0.0,
            "error_unit": "fraction of the action range" if bounded else "absolute (the action space is unbounded)",
        }


def _shadow_episodes(
    driver: NumpyPolicy, shadow: NumpyPolicy, env: Any, episodes: int, seed: int, agreement: _Agreement,
    on_episode: Callable[[str, int, float], None] | None,
) -> list[float]:  # fmt: skip
    """The driver's episode returns; the shadow acts on every observation too (its actions only compared)."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        states, start, total, done = [None, None], np.ones(1, bool), 0.0, False
        while not done:
            action, states[0] = driver.predict(obs, state=states[0], episode_start=start, deterministic=True)
            other, states[1] = shadow.predict(obs, state=states[1], episode_start=start, deterministic=True)
            agreement.add(action, other)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done, start = total + float(reward), terminated or truncated, np.zeros(1, bool)
        returns.append(total)
        if on_episode is not None:
            on_episode("float", episode, total)
    return returns


def _on_steps(original: Bundle, compressed: Bundle, steps: Steps) -> dict[str, Any]:
    agreement = _Agreement(original.action_space)
    policies, states = (NumpyPolicy(original), NumpyPolicy(compressed)), [None, None]
    for obs, start in zip(steps.observations, steps.starts, strict=True):
        begin = np.array([start])
        action, states[0] = policies[0].predict(obs, state=states[0], episode_start=begin, deterministic=True)
        other, states[1] = policies[1].predict(obs, state=states[1], episode_start=begin, deterministic=True)
        agreement.add(action, other)
    return agreement.to_json(steps.source)


def compare(
    original: Bundle,
    compressed: Bundle,
    episodes: int = 10,
    seed: int = 0,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    env_module: str | None = None,
    on_episode: Callable[[str, int, float], None] | None = None,
) -> CompressionReport:
    """Compare ``compressed`` with its float ``original``: sizes, action agreement, paired returns.

    Args:
        original: the float bundle.
        compressed: the bundle :func:`rlport.compress` made from it.
        episodes: paired episodes to play with each (0: agreement on probes only, no returns).
        seed: episode ``i`` resets the env with ``seed + i``, for both policies.
        env_id: the env to play in (default: the one the bundle records; one that cannot be made here
            is then a warning, and actions are compared on the probes).
        env_kwargs: its kwargs (default: the recorded ones).
        env_module: the one module a recorded ``module:EnvName`` id may import.
        on_episode: called with ``("float" | "compressed", episode, return)`` after each episode.

    Returns:
        The report; its ``warnings`` say when returns drop beyond the interval or were not compared.
    """
    from rlport.envs import run_episodes

    report = CompressionReport(_scheme(compressed, "weights"), _scheme(compressed, "activations"),
                               _sizes(original, compressed))  # fmt: skip
    choice = EnvChoice(env_id, env_kwargs, env_module)
    made, why = open_env(original, choice) if episodes > 0 else (None, "no episodes were asked for")
    if made is None:
        steps = probe_steps(original) or sampled_steps(original, PROBE_FALLBACK_STEPS, seed)
        report.agreement = _on_steps(original, compressed, steps)
        report.warnings.append(f"returns were not compared ({why}); actions were compared on {steps.source} only")
        return report
    agreement = _Agreement(original.action_space)
    float_returns = _shadow_episodes(
        NumpyPolicy(original), NumpyPolicy(compressed), made, episodes, seed, agreement, on_episode
    )
    report.agreement = agreement.to_json(f"the float policy's rollouts, {episodes} episodes")
    callback = None if on_episode is None else (lambda i, r: on_episode("compressed", i, r))
    stats = run_episodes(NumpyPolicy(compressed), made, episodes, seed=seed, on_episode=callback)
    report.returns = _returns(float_returns, stats.returns, seed)
    report.warnings.extend(_return_warnings(report.returns))
    return report


def _returns(float_returns: list[float], compressed_returns: list[float], seed: int) -> dict[str, Any]:
    differences = [b - a for a, b in zip(float_returns, compressed_returns, strict=True)]
    mean, low, high = paired_interval(differences)
    float_mean = float(np.mean(float_returns))
    significant = math.isfinite(high) and high < 0
    return {
        "episodes": len(differences),
        "seed": seed,
        "float_mean": float(np.mean(float_returns)),
        "compressed_mean": float(np.mean(compressed_returns)),
        "difference": mean,
        "ci95": [low if math.isfinite(low) else None, high if math.isfinite(high) else None],
        "relative_difference": mean / abs(float_mean) if float_mean else None,
        "significant_drop": significant,
        "dropped": significant and (not float_mean or -mean > MIN_RELEVANT_DROP * abs(float_mean)),
        "float": [float(r) for r in float_returns],
        "compressed": [float(r) for r in compressed_returns],
    }


def _return_warnings(returns: dict[str, Any]) -> list[str]:
    low, high = returns["ci95"]
    if high is None:
        return ["one paired episode gives no confidence interval; use --episodes 10 or more"]
    if returns["dropped"]:
        relative = returns["relative_difference"]
        share = "" if relative is None else f" ({100 * relative:+.2f}% of the float return)"
        return [
            f"the compressed policy's return is lower than the float one's: {returns['difference']:+.2f} on "
            f"average{share}, 95% CI [{low:+.2f}, {high:+.2f}] over {returns['episodes']} paired episodes"
        ]
    return []


def _scheme(bundle: Bundle, what: str) -> str | None:
    compressed = bundle.provenance.get("compressed", {})
    return compressed.get(what) if isinstance(compressed, dict) else None
