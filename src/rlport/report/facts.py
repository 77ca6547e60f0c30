"""What a card shows, measured: identity, returns against the reference, parity and latency per backend, size.

Everything here is data (JSON-able dicts); :mod:`rlport.report.page` and :mod:`rlport.report.modelcard`
only lay it out. Values read from the bundle are untrusted: they are kept as text here and escaped
where they are shown.
"""

from __future__ import annotations

import math
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rlport.backends.parity import compare_probes
from rlport.backends.registry import BACKENDS, make_policy
from rlport.bundle.bundle import Bundle
from rlport.bundle.container import MAX_BUNDLE_SIZE, read_regular_file, sha256
from rlport.errors import EnvError, MissingDependencyError, RlportError, SpaceError, UnsupportedError
from rlport.verify.checks import check_dependencies, reference_returns, returns_verdict

__all__ = ["identity", "returns", "parity", "latency", "size", "dependencies", "confidence_interval",
           "LATENCY_CALLS", "MAX_TEXT"]  # fmt: skip

LATENCY_CALLS = 300
"""Timed single-observation calls per backend (in rounds, interleaved: the card's timing stays under ~1 s)."""
MAX_TEXT = 300
"""Longest text taken from a bundle's fields into a card; longer values are cut."""
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip
"""Student's t, 97.5% quantile, by degrees of freedom (between rows: the next lower row, a wider interval)."""


def text(value: Any) -> str:
    """A field of the bundle as one line of at most :data:`MAX_TEXT` characters."""
    shown = " ".join(str(value).split())
    return shown if len(shown) <= MAX_TEXT else shown[: MAX_TEXT - 3] + "..."


def identity(path: str, bundle: Bundle) -> dict[str, Any]:
    """What the policy is: algorithm, source framework, env and wrappers, spaces, provenance and digest."""
    prov = bundle.provenance
    data = read_regular_file(path, f"bundle {path}", MAX_BUNDLE_SIZE)
    env = bundle.env
    wrappers = [" ".join([w.name, *(f"{k}={v}" for k, v in w.kwargs.items())]) for w in env.wrappers]
    return {
        "file": Path(path).name, "sha256": sha256(data), "algorithm": text(prov.get("algorithm") or "?"),
        "framework": text(f"{prov.get('framework') or '?'} {prov.get('framework_version') or ''}".strip()),
        "policy_class": text(prov.get("policy_class") or ""), "env_id": text(env.id or ""),
        "env_kwargs": text(env.kwargs) if env.kwargs else "", "max_episode_steps": env.max_episode_steps,
        "wrappers": [text(w) for w in wrappers], "observation_space": _space(bundle.observation_space.to_json()),
        "action_space": _space(bundle.action_space.to_json()),
        "provenance": {text(k): text(v) for k, v in sorted(prov.items()) if v is not None and k != "os"},
        "recurrent": bool(bundle.graph.inputs_with_role("state")),
    }  # fmt: skip


def _space(space: dict[str, Any]) -> str:
    kind = space["type"]
    if kind == "box":
        return f"Box{tuple(space['shape'])} {space['dtype']}"
    if kind == "discrete":
        return f"Discrete({space['n']})"
    if kind == "dict":
        return "Dict(" + ", ".join(f"{e['key']}: {_space(e['space'])}" for e in space["spaces"]) + ")"
    return text({k: v for k, v in space.items() if k not in ("low", "high")})


def confidence_interval(values: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean (Student's t); a single value gives (value, value).

    Example:
        >>> confidence_interval([1.0, 2.0, 3.0])
        (-0.484, 4.484)
    """
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, mean
    t = _T975[max(k for k in _T975 if k <= n - 1)] if n - 1 <= 120 else 1.96
    half = t * float(np.std(values, ddof=1)) / math.sqrt(n)
    return round(mean - half, 3), round(mean + half, 3)


def returns(bundle: Bundle, policy: Any, episodes: int, seed: int, env_module: str | None,
            video: bool = False) -> dict[str, Any]:  # fmt: skip
    """Episodes in the bundle's env (episode ``i`` seeded ``seed + i``), against the reference.

    Returns ``{"available": False, "reason": ...}`` when the env cannot be made or its spaces differ.
    """
    from rlport.envs import check_spaces, make_env, run_episodes

    try:
        env = make_env(bundle.env, env_module=env_module)
    except (EnvError, MissingDependencyError, RlportError) as exc:
        return {"available": False, "reason": text(exc)}
    try:
        check_spaces(policy, env, exact=False)
        stats = run_episodes(policy, env, episodes, seed=seed)
    except SpaceError as exc:
        return {"available": False, "reason": text(exc)}
    finally:
        env.close()
    values = [float(r) for r in stats.returns]
    result: dict[str, Any] = {
        "available": True, "env_id": bundle.env.id, "episodes": episodes, "seed": seed, "deterministic": True,
        "returns": values, "lengths": [int(n) for n in stats.lengths], "mean": float(np.mean(values)),
        "std": float(np.std(values)), "ci95": confidence_interval(values), "reference": None, "verdict": None,
    }  # fmt: skip
    reference = reference_returns(bundle)
    if reference is not None:
        ref, source = reference
        if isinstance(ref, tuple):
            result["reference"] = {"mean": ref[0], "std": ref[1], "episodes": ref[2], "source": source, "returns": None}
        else:
            result["reference"] = {"mean": float(np.mean(ref)), "std": float(np.std(ref)), "episodes": len(ref),
                                   "source": source, "returns": ref}  # fmt: skip
        result["verdict"] = returns_verdict(values, ref).to_json()
    return result


def parity(bundle: Bundle) -> list[dict[str, Any]]:
    """The recorded probes replayed through every backend: mismatches, largest difference, or why it cannot run."""
    rows = []
    for name, entry in BACKENDS.items():
        if not bundle.probes or "action" not in bundle.probes:
            rows.append({"backend": name, "status": "no probes", "detail": "the bundle records no probes"})
            continue
        try:
            policy = make_policy(entry, bundle)
        except (MissingDependencyError, UnsupportedError) as exc:
            rows.append({"backend": name, "status": "unavailable", "detail": text(exc)})
            continue
        result = compare_probes(bundle, policy=policy)
        status = "ok" if result.mismatched == 0 and not result.shape_error else "mismatch"
        rows.append({"backend": name, "status": status, "probes": result.count, "mismatched": result.mismatched,
                     "max_abs_error": result.max_error if result.continuous else None,
                     "detail": result.shape_error or ""})  # fmt: skip
    return rows


def latency(bundle: Bundle, calls: int = LATENCY_CALLS) -> list[dict[str, Any]]:
    """Median single-observation ``predict`` time per available backend (the probes' observations as inputs)."""
    from rlport.backends.parity import probe_observations

    if not bundle.probes:
        return []
    obs = probe_observations(bundle.probes)
    count = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
    inputs = [{k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i] for i in range(min(count, 32))]
    policies = {}
    for name, entry in BACKENDS.items():
        try:
            policies[name] = make_policy(entry, bundle)
        except (MissingDependencyError, UnsupportedError):
            continue
    samples: dict[str, list[int]] = {name: [] for name in policies}
    rounds, clock = 5, time.perf_counter_ns
    for policy in policies.values():  # warm-up
        for x in inputs[:10]:
            policy.predict(x, deterministic=True)
    for r in range(rounds):
        for name, policy in policies.items():
            for j in range(calls // rounds):
                x = inputs[(r + j) % len(inputs)]
                began = clock()
                policy.predict(x, deterministic=True)
                samples[name].append(clock() - began)
    return [{"backend": name, "median_us": float(np.median(values)) / 1000,
             "p90_us": float(np.percentile(values, 90)) / 1000, "calls": len(values)}
            for name, values in samples.items()]  # fmt: skip


def size(path: str, bundle: Bundle) -> dict[str, Any]:
    """The file's size, the graph's parameters and the weights' bytes."""
    names = {name for node in bundle.graph.nodes() for name in node.params.values()}
    return {"bytes": Path(path).stat().st_size, "parameters": int(sum(bundle.tensors[n].size for n in names)),
            "weights_bytes": int(sum(t.nbytes for t in bundle.tensors.values())),
            "dtypes": sorted({str(t.dtype) for t in bundle.tensors.values()})}  # fmt: skip


def dependencies(bundle: Bundle) -> dict[str, Any]:
    """Versions recorded at export against this machine's (``rlport verify``'s dependencies check)."""
    here = {}
    for package in ("numpy", "gymnasium", "rlport"):
        try:
            here[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            here[package] = None
    return {"check": check_dependencies(bundle).to_json(), "here": here}
