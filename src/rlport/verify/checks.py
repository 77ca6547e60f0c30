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

from rlport.backends.numpy import NumpyPolicy
from rlport.backends.parity import compare_probes
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.bundle.probes import PARITY_ATOL
from rlport.errors import EnvError, MissingDependencyError, RlportError, SpaceError
from rlport.verify.record import env_package, platform_key
from rlport.verify.result import FAIL, PASS, WARN, CheckResult, Report

__all__ = [
    "verify",
    "check_integrity",
    "check_spaces",
    "check_parity",
    "check_returns",
    "check_dependencies",
    "returns_verdict",
    "reference_returns",
    "PARITY_ATOL",
]

Z_LIMIT, RELATIVE_LIMIT, MIN_EPISODES = 3.0, 0.05, 5


def check_integrity(path: str) -> tuple[CheckResult, Bundle | None]:
    """Everything the reader validates: container, digests, format version, graph, a dry run."""
    try:
        bundle = Bundle.load(path)
    except RlportError as exc:
        return CheckResult("integrity", FAIL, "unreadable", "all digests and structure valid", str(exc)), None
    members = 2 + (bundle.probes is not None) + (bundle.fingerprint is not None)
    return CheckResult("integrity", PASS, f"format 1.x, {members} members, digests match", "all valid"), bundle


_OTHER_BOUNDS = "the policy runs on this layout; another version of the env may have other bounds (see returns)"


def check_spaces(bundle: Bundle, env: Any) -> CheckResult:
    """The env's observation and action spaces against the bundle's; the first difference named.

    Differences of representation (float32 vs float64, float32's largest value for infinity)
    PASS, with a short note: it is the same env.
    """
    from rlport.envs import check_spaces as compare

    policy = NumpyPolicy(bundle)
    try:
        compare(policy, env, exact=False)
    except SpaceError as exc:
        return CheckResult("spaces", FAIL, "layout differs", "same types, shapes, sizes", str(exc))
    try:
        compare(policy, env, hint=_OTHER_BOUNDS)
    except SpaceError as exc:
        return CheckResult("spaces", WARN, "same layout, other bounds", "same bounds", str(exc))
    note = _representation(bundle, env)
    return CheckResult("spaces", PASS, f"same values: {note}" if note else "identical", "same values")


def _representation(bundle: Bundle, env: Any) -> str | None:
    """How the env writes the same spaces otherwise than the bundle (float width, bounds), or None."""
    from rlport.bundle.spaces import leaves
    from rlport.readers.gym_spaces import spec_from_space

    notes: list[str] = []
    for role in ("observation", "action"):
        ours, theirs = getattr(bundle, f"{role}_space"), spec_from_space(getattr(env, f"{role}_space"))
        for (_, a), (_, b) in zip(leaves(theirs), leaves(ours), strict=True):
            if a.to_json() == b.to_json():
                continue
            if getattr(a, "shape", None) != getattr(b, "shape", None):
                note = f"{role}s channel-last here, channel-first in the bundle"
            elif getattr(a, "dtype", None) != getattr(b, "dtype", None):
                note = f"{role}s {a.dtype} here, {b.dtype} in the bundle"
            else:
                note = f"{role} bounds equal up to representation (inf or float32's largest value, float width)"
            if note not in notes:
                notes.append(note)
    return "; ".join(notes) or None


def check_parity(bundle: Bundle) -> CheckResult:
    """The probes recorded at export through this machine's runtime (``rlport.backends.parity.compare_probes``)."""
    probes = bundle.probes
    if not probes or "action" not in probes:
        return CheckResult("parity", WARN, "no probes recorded", f"<= {PARITY_ATOL:g}", "re-export with probes > 0")
    result = compare_probes(bundle)
    status = PASS if result.mismatched == 0 else FAIL
    data = {"mismatched": result.mismatched, "probes": result.count}
    if result.shape_error:
        return CheckResult("parity", FAIL, result.shape_error, "the recorded shape", data=data)
    detail = f"first mismatch at probe {result.first}" if result.first is not None else ""
    if not result.continuous:
        return CheckResult("parity", status, f"{result.mismatched}/{result.count} probes differ",
                           "0 (discrete actions are exact)", detail, data)  # fmt: skip
    scaled = "" if result.tolerance == PARITY_ATOL else f" ({PARITY_ATOL:g} x the largest action bound)"
    return CheckResult("parity", status, f"max |Δaction| = {result.max_error:.3g} on {result.count} probes",
                       f"<= {result.tolerance:g}{scaled}", detail,
                       {**data, "max_abs_error": result.max_error, "tolerance": result.tolerance})  # fmt: skip


def returns_verdict(here: list[float], reference: list[float] | tuple[float, float, int]) -> CheckResult:
    """Compare episode returns with a reference (a list of returns, or mean, std, count).

    The rule, stated in the result: WARN when either side has fewer than MIN_EPISODES episodes
    (too few to decide, whatever the figures); else PASS when the difference of means is within
    Z_LIMIT standard errors of the difference (Welch) or within RELATIVE_LIMIT of the reference's
    magnitude, FAIL otherwise.
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
    if n < MIN_EPISODES or m < MIN_EPISODES:
        fix = f"run {MIN_EPISODES} or more (--episodes)" if n < MIN_EPISODES else "the reference has too few"
        return CheckResult("returns", WARN, measured, tolerance, f"too few episodes to decide: {fix}", data)
    if z <= Z_LIMIT or relative <= RELATIVE_LIMIT:
        return CheckResult("returns", PASS, measured, tolerance, data=data)
    return CheckResult("returns", FAIL, measured, tolerance, "the returns differ from the reference", data)


def reference_returns(bundle: Bundle) -> tuple[list[float] | tuple[float, float, int], str] | None:
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

    reference = reference_returns(bundle)
    if reference is None:
        return CheckResult("returns", WARN, "no reference", "", "the bundle records no evaluation to compare with")
    stats = run_episodes(NumpyPolicy(bundle), env, episodes, seed=seed, on_episode=progress)
    result = returns_verdict(stats.returns, reference[0])
    return replace(result, detail=(result.detail + "; " if result.detail else "") + f"reference: {reference[1]}")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


_DEPENDENCIES = [
    ("gymnasium", "env physics and spaces may differ (see the dynamics check)", WARN),
    ("box2d", "Box2D physics may differ", WARN),
    ("mujoco", "MuJoCo physics may differ", WARN),
    ("numpy", "the runtime's arithmetic library", WARN),
    ("python", "the bundle is pickle-free: only envs may care", PASS),
    ("torch", "not needed by the numpy runtime", PASS),
    ("framework_version", "SB3 is not needed by the numpy runtime", PASS),
    ("platform", "float results may differ in the last bits across CPUs and BLAS builds", PASS),
]
"""Each recorded version compared, why it may matter, and the grade when it differs."""
_GYM = "trained with gym, gymnasium's predecessor: env physics and spaces may differ (see the returns check)"


def check_dependencies(bundle: Bundle) -> CheckResult:
    """Versions recorded at export against this machine's, graded by how much each can matter.

    Only the physics package the bundle's env needs is compared (box2d for Box2D envs, mujoco for
    MuJoCo ones); platforms are compared as system and machine (``Linux-x86_64``), not kernel builds.
    """
    prov = bundle.provenance
    here = {
        "python": platform.python_version(), "numpy": np.__version__, "gymnasium": _version("gymnasium"),
        "box2d": _version("box2d"), "mujoco": _version("mujoco"), "torch": _version("torch"),
        "framework_version": _version("stable-baselines3"),
        "platform": f"{platform.system()}-{platform.machine()}",
    }  # fmt: skip
    needed = env_package(bundle.env.id) if isinstance(bundle.env.id, str) else None
    packages = prov.get("env_packages") if isinstance(prov.get("env_packages"), dict) else {}
    notes, worst = [], PASS
    if prov.get("gym") is not None and prov.get("gymnasium") is None:
        notes.append(f"gym {prov['gym']} -> gymnasium {here['gymnasium'] or 'not installed'} ({_GYM})")
        worst = WARN
    for key, why, grade in _DEPENDENCIES:
        then = (packages.get(key) if key == needed else None) if key in ("box2d", "mujoco") else prov.get(key)
        now = here[key]
        if then is None or _same(key, str(then), now):
            continue
        notes.append(f"{key} {then} -> {now or 'not installed'} ({why})")
        worst = WARN if grade == WARN else worst
    unknown = [key for key in ("python", "numpy") if prov.get(key) is None]
    unknown += [] if prov.get("gymnasium") or prov.get("gym") else ["gymnasium"]
    notes += [f"not recorded at export: {', '.join(unknown)}"] if unknown else []
    measured = "; ".join(notes) if notes else "same versions where recorded"
    return CheckResult("dependencies", worst, measured, "same gymnasium, env package, numpy major.minor")


def _same(key: str, then: str, now: str | None) -> bool:
    """Whether a recorded version (or platform) and this machine's count as the same."""
    if now is None:
        return False
    if key in ("numpy", "python"):
        return then.split(".")[:2] == now.split(".")[:2]
    if key == "platform":
        ours, theirs = platform_key(then), platform_key(now)
        return ours == theirs or (ours is not None and "-" not in ours and theirs.startswith(ours + "-"))
    return then == now


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
            source machine, replayed in the same env as the bundle's own (its row: ``dynamics (file)``).
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

            replayed = replay_fingerprint(fingerprint[0], fingerprint[1], spec, env_module=env_module)
            report.checks.append(replace(replayed, name="dynamics (file)"))  # the bundle's own row is "dynamics"
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
