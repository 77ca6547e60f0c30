"""What export records for ``rlport verify``: a dynamics fingerprint and a short evaluation."""

from __future__ import annotations

from importlib import metadata

from rlport.bundle.bundle import Bundle
from rlport.errors import EnvError, MissingDependencyError, SpaceError

__all__ = ["record_verification", "ENV_PACKAGES"]

ENV_PACKAGES = ("box2d", "mujoco")
"""Physics packages whose versions are recorded when installed (they change what an env does)."""


def record_verification(
    bundle: Bundle, fingerprint: bool = True, evaluate: int = 10, seed: int = 0, env_module: str | None = None
) -> str | None:
    """Record the fingerprint and ``evaluate`` episode returns into ``bundle`` when its env can be made.

    ``env_module`` is the one module a ``module:EnvName`` id may import (``rlport.envs.check_env_id``).

    Returns:
        None when recorded (or nothing was asked), else why nothing was recorded.
    """
    if not (fingerprint or evaluate > 0):
        return None
    if not bundle.env.id:
        return "no env id recorded"
    from rlport.envs import check_spaces, make_env, run_episodes
    from rlport.verify.fingerprint import record_fingerprint

    try:
        env = make_env(bundle.env, env_module=env_module)
        check_spaces(bundle.policy(), env, exact=False)
    except (EnvError, MissingDependencyError, SpaceError) as exc:
        return f"verification records skipped: {exc}"
    verification = dict(bundle.verification or {})
    if fingerprint:
        meta, tensors = record_fingerprint(bundle.env, seed=seed, env_module=env_module)
        verification["fingerprint"], bundle.fingerprint = meta, tensors
    if evaluate > 0:
        stats = run_episodes(bundle.policy(), env, evaluate, seed=seed)
        returns = [float(r) for r in stats.returns]
        verification["evaluation"] = {
            "episodes": evaluate,
            "seed": seed,
            "deterministic": True,
            "returns": returns,
            "env": bundle.env.to_json(),
        }
    env.close()
    bundle.verification = verification
    packages = {}
    for name in ENV_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    bundle.provenance["env_packages"] = packages
    return None
