"""The checks of ``rlport verify``: integrity, spaces, parity, dynamics, returns, dependencies.

Each check returns a :class:`~rlport.verify.result.CheckResult` with the figure it measured and
the tolerance it applied. ``verify`` runs them all and never raises for a failed check.

Example:
    >>> report = verify("model.rlp", episodes=10)      # doctest: +SKIP
    >>> report.failed                                   # doctest: +SKIP
    False
"""

from __future__ import annotations

import math
import platform
from dataclasses import replace
from importlib import metadata
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.errors import EnvError, MissingDependencyError, RlportError, SpaceError
from rlport.verify.result import FAIL, PASS, WARN, CheckResult, Report

__all__ = [
    "verify",
    "check_integrity",
    "check_spaces",
    "check_parity",
    "check_returns",
    "check_dependencies",
    "returns_verdict",
    "PARITY_ATOL",
]

PARITY_ATOL = 1e-5
"""Largest absolute difference allowed between continuous probe actions and the runtime's."""
Z_LIMIT, RELATIVE_LIMIT, MIN_EPISODES = 3.0, 0.05, 5


def check_integrity(path: str) -> tuple[CheckResult, Bundle | None]:
    """Everything the reader validates: container, digests, format version, graph, a dry run."""
    try:
        bundle = Bundle.load(path)
    except RlportError as exc:
        return CheckResult("integrity", FAIL, "unreadable", "all digests and structure valid", str(exc)), None
    members = 2 + (bundle.probes is not None) + (bundle.fingerprint is not None)
    return CheckResult("integrity", PASS, f"format 1.x, {members} members, digests match", "all valid"), bundle


def check_spaces(bundle: Bundle, env: Any) -> CheckResult:
    """The env's observation and action spaces against the bundle's; the first difference named."""
    from rlport.envs import check_spaces as compare

    policy = bundle.policy()
    try:
        compare(policy, env, exact=False)
    except SpaceError as exc:
        return CheckResult("spaces", FAIL, "layout differs", "same types, shapes, sizes", str(exc))
    try:
        compare(policy, env)
    except SpaceError as exc:
        return CheckResult("spaces", WARN, "same layout, other bounds or float width", "identical", str(exc))
    return CheckResult("spaces", PASS, "identical", "identical")


def _probe_obs(probes: dict[str, np.ndarray]) -> Any:
    if "obs" in probes:
        return probes["obs"]
    return {name[4:]: value for name, value in probes.items() if name.startswith("obs.")}


def check_parity(bundle: Bundle) -> CheckResult:
    """The probes recorded at export through this machine's runtime."""
    probes = bundle.probes
    if not probes or "action" not in probes:
        return CheckResult("parity", WARN, "no probes recorded", f"<= {PARITY_ATOL:g}", "re-export with probes > 0")
    policy, obs, expected = bundle.policy(), _probe_obs(probes), probes["action"]
    if policy.is_recurrent:
        starts, state, actions = probes.get("episode_start"), None, []
        for i in range(len(expected)):
            step = {k: v[i : i + 1] for k, v in obs.items()} if isinstance(obs, dict) else obs[i : i + 1]
            start = None if starts is None else starts[i : i + 1]
            action, state = policy.predict(step, state=state, episode_start=start, deterministic=True)
            actions.append(action[0])
        actual = np.stack(actions)
    else:
        actual, _ = policy.predict(obs, deterministic=True)
    if np.shape(actual) != np.shape(expected):
        return CheckResult("parity", FAIL, f"action shape {np.shape(actual)}", f"shape {np.shape(expected)}")
    if expected.dtype.kind == "f":
        error = float(np.max(np.abs(actual.astype(np.float64) - expected))) if expected.size else 0.0
        status = PASS if error <= PARITY_ATOL else FAIL
        return CheckResult("parity", status, f"max |Δaction| = {error:.3g} on {len(expected)} probes",
                           f"<= {PARITY_ATOL:g}", data={"max_abs_error": error})  # fmt: skip
    rows = np.asarray(actual != expected).reshape(len(expected), -1).any(axis=1)
    wrong = int(rows.sum())
    detail = f"first mismatch at probe {int(np.argmax(rows))}" if wrong else ""
    return CheckResult("parity", PASS if wrong == 0 else FAIL, f"{wrong}/{len(expected)} probes differ",
                       "0 (discrete actions are exact)", detail, {"mismatched": wrong})  # fmt: skip


def returns_verdict(here: list[float], reference: list[float] | tuple[float, float, int]) -> CheckResult:
    """Compare episode returns with a reference (a list of returns, or mean, std, count).

    The rule, stated in the result: PASS when the difference of means is within Z_LIMIT standard
    errors of the difference (Welch) or within RELATIVE_LIMIT of the reference's magnitude; FAIL
    otherwise; WARN instead of FAIL when either side has fewer than MIN_EPISODES episodes.
    """
    n = len(here)
    mean, std = float(np.mean(here)), float(np.std(here, ddof=1)) if n > 1 else 0.0
    if isinstance(reference, tuple):
        ref_mean, ref_std, m = reference
    else:
        ref_mean, m = float(np.mean(reference)), len(reference)
        ref_std = float(np.std(reference, ddof=1)) if m > 1 else 0.0
    diff = mean - ref_mean
    se = math.sqrt(std**2 / max(n, 1) + ref_std**2 / max(m, 1))
    z = abs(diff) / se if se > 0 else (0.0 if diff == 0 else math.inf)
    relative = abs(diff) / max(abs(ref_mean), 1.0)
    measured = (
        f"{mean:.2f} ± {std:.2f} (n={n}) vs {ref_mean:.2f} ± {ref_std:.2f} (n={m}): z = {z:.2f}, Δ = {relative:.1%}"
    )
    tolerance = f"z <= {Z_LIMIT:g} or |Δ| <= {RELATIVE_LIMIT:.0%}; fewer than {MIN_EPISODES} episodes: WARN"
    data = {"mean": mean, "std": std, "episodes": n, "reference_mean": ref_mean, "z": z, "relative": relative}
    if z <= Z_LIMIT or relative <= RELATIVE_LIMIT:
        return CheckResult("returns", PASS, measured, tolerance, data=data)
    if n < MIN_EPISODES or m < MIN_EPISODES:
        return CheckResult("returns", WARN, measured, tolerance, "too few episodes to decide", data)
    return CheckResult("returns", FAIL, measured, tolerance, "the returns differ from the reference", data)


def _reference(bundle: Bundle) -> tuple[list[float] | tuple[float, float, int], str] | None:
    evaluation = (bundle.verification or {}).get("evaluation")
    if evaluation and evaluation.get("returns"):
        return [float(r) for r in evaluation["returns"]], "recorded at export"
    prov = bundle.provenance
    if prov.get("published_return_mean") is not None:
        ref = (float(prov["published_return_mean"]), float(prov.get("published_return_std") or 0.0),
               int(prov.get("published_episodes") or 1))  # fmt: skip
        return ref, "published RL Zoo evaluation"
    return None


def check_returns(bundle: Bundle, env: Any, episodes: int, seed: int, progress: Any = None) -> CheckResult:
    """Run ``episodes`` episodes here and compare with the returns recorded at export (or published)."""
    from rlport.envs import run_episodes

    reference = _reference(bundle)
    if reference is None:
        return CheckResult("returns", WARN, "no reference", "", "the bundle records no evaluation to compare with")
    stats = run_episodes(bundle.policy(), env, episodes, seed=seed, on_episode=progress)
    result = returns_verdict(stats.returns, reference[0])
    return replace(result, detail=(result.detail + "; " if result.detail else "") + f"reference: {reference[1]}")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_dependencies(bundle: Bundle) -> CheckResult:
    """Versions recorded at export against this machine's, graded by how much each can matter."""
    prov = bundle.provenance
    here = {
        "python": platform.python_version(), "numpy": np.__version__, "gymnasium": _version("gymnasium"),
        "box2d": _version("box2d"), "mujoco": _version("mujoco"), "torch": _version("torch"),
        "framework_version": _version("stable-baselines3"),
        "platform": f"{platform.system()}-{platform.machine()}",
    }  # fmt: skip
    packages = prov.get("env_packages") or {}
    notes, worst = [], PASS
    for key, why, grade in [
        ("gymnasium", "env physics and spaces may differ (see the dynamics check)", WARN),
        ("box2d", "Box2D physics may differ", WARN),
        ("mujoco", "MuJoCo physics may differ", WARN),
        ("numpy", "the runtime's arithmetic library", WARN),
        ("python", "the bundle is pickle-free: only envs may care", PASS),
        ("torch", "not needed by the numpy runtime", PASS),
        ("framework_version", "SB3 is not needed by the numpy runtime", PASS),
        ("platform", "float results may differ in the last bits across CPUs and BLAS builds", PASS),
    ]:
        then = packages.get(key) if key in ("box2d", "mujoco") else prov.get(key)
        now = here[key]
        if then is None or then == now:
            continue
        if key in ("numpy", "python") and now and then.split(".")[:2] == now.split(".")[:2]:
            continue
        notes.append(f"{key} {then} -> {now or 'not installed'} ({why})")
        worst = WARN if grade == WARN else worst
    measured = "; ".join(notes) if notes else "same versions where recorded"
    return CheckResult("dependencies", worst, measured, "same gymnasium, env package, numpy major.minor")


def _env_or_warn(bundle: Bundle, env_spec: EnvSpec, env_module: str | None) -> tuple[Any, CheckResult | None]:
    from rlport.envs import make_env

    try:
        return make_env(env_spec, env_module=env_module), None
    except (EnvError, MissingDependencyError) as exc:
        return None, CheckResult("env", WARN, "cannot create the env here", "", str(exc))


def verify(path: str, env_id: str | None = None, env_kwargs: dict[str, Any] | None = None, episodes: int = 10,
           seed: int = 0, progress: Any = None, fingerprint: tuple[dict, dict] | None = None,
           env_module: str | None = None) -> Report:  # fmt: skip
    """Run every check on the bundle at ``path`` (env checks in ``env_id`` or the bundle's env).

    Args:
        env_id: an env id the user chose (a ``module:EnvName`` id typed by the user may import its module).
        fingerprint: an extra (meta, tensors) fingerprint, e.g. from ``rlport fingerprint`` on the
            source machine, replayed in the same env as the bundle's own.
        env_module: the one module a recorded ``module:EnvName`` id may import (``rlport.envs.check_env_id``).
    """
    if env_id is not None and ":" in env_id and env_module is None:
        env_module = env_id.split(":", 1)[0]  # the user typed it
    report = Report()
    integrity, bundle = check_integrity(path)
    report.checks.append(integrity)
    if bundle is None:
        return report
    report.checks.append(check_parity(bundle))
    spec = bundle.env
    if env_id is not None:
        spec = replace(spec, id=env_id)
    if env_kwargs is not None:
        spec = replace(spec, kwargs=dict(env_kwargs))
    if spec.id:
        env, problem = _env_or_warn(bundle, spec, env_module)
    else:
        env, problem = None, CheckResult("env", WARN, "no env id", "", "pass --env ID")
    if problem is not None:
        report.checks.append(problem)
    else:
        spaces = check_spaces(bundle, env)
        report.checks.append(spaces)
        report.checks.append(_dynamics(bundle, spec, env_module))
        if fingerprint is not None:
            from rlport.verify.fingerprint import replay_fingerprint

            report.checks.append(replay_fingerprint(fingerprint[0], fingerprint[1], spec, env_module=env_module))
        if spaces.status != FAIL:
            report.checks.append(check_returns(bundle, env, episodes, seed, progress))
    report.checks.append(check_dependencies(bundle))
    return report


def _dynamics(bundle: Bundle, spec: EnvSpec, env_module: str | None) -> CheckResult:
    from rlport.verify.fingerprint import replay_fingerprint

    meta = (bundle.verification or {}).get("fingerprint")
    if not meta or bundle.fingerprint is None:
        return CheckResult("dynamics", WARN, "no fingerprint recorded", "",
                           "export with the env available to record one")  # fmt: skip
    return replay_fingerprint(meta, bundle.fingerprint, spec, env_module=env_module)
