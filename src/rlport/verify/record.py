"""What export records for ``rlport verify``: a dynamics fingerprint and a short evaluation."""

from __future__ import annotations

import warnings

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.errors import EnvError, MissingDependencyError, RlportWarning, SpaceError

__all__ = ["record_verification", "record_or_warn", "ENV_PACKAGES", "env_package", "platform_key"]

ENV_PACKAGES = ("box2d", "mujoco")
"""Physics packages whose version is recorded when the env needs one (they change what an env does)."""
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64", "armv7l": "armv7l",
             "armv6l": "armv6l", "i686": "i686", "i386": "i386", "ppc64le": "ppc64le", "s390x": "s390x",
             "riscv64": "riscv64"}  # fmt: skip
_SYSTEMS = {"macos": "Darwin", "darwin": "Darwin", "linux": "Linux", "windows": "Windows"}


def env_package(env_id: str | None) -> str | None:
    """The physics package of :data:`ENV_PACKAGES` that ``env_id`` needs (``"box2d"``, ``"mujoco"``), or None.

    Decided from the env's entry point module in gymnasium's registry (a table of names without gymnasium).

    Example:
        >>> env_package("LunarLander-v3"), env_package("Pendulum-v1")
        ('box2d', None)
    """
    from rlport.deploy_pins import env_extra

    extra = env_extra(env_id) if env_id else None
    return extra if extra in ENV_PACKAGES else None


def platform_key(text: str | None) -> str | None:
    """A platform as system and machine, ``"Linux-x86_64"``, from any form of it (None when unknown).

    SB3's ``system_info.txt`` records ``platform.platform()`` and the kernel build
    (``Linux-5.14.21-...-x86_64-with-glibc2.31 # 1 SMP ...``), rlport ``system-machine``;
    compared as written, the same machine would look like another one. Without a machine in the
    text (Windows' ``platform.platform()``), the system alone.

    Example:
        >>> platform_key("Linux-5.14.21-150400.24.100-default-x86_64-with-glibc2.31 # 1 SMP PREEMPT")
        'Linux-x86_64'
    """
    if not isinstance(text, str) or not text.split():
        return None
    parts = text.split()[0].split("-")
    system = _SYSTEMS.get(parts[0].lower(), parts[0])
    machine = next((_MACHINES[p.lower()] for p in parts[1:] if p.lower() in _MACHINES), None)
    return f"{system}-{machine}" if machine else system


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
    except (EnvError, MissingDependencyError) as exc:
        return f"verification records skipped: {exc}"
    try:
        check_spaces(bundle, env, exact=False)  # the bundle's spaces: no policy built for a comparison
    except SpaceError as exc:
        env.close()
        return f"verification records skipped: {exc}"
    verification = dict(bundle.verification or {})
    if fingerprint:
        meta, tensors = record_fingerprint(bundle.env, seed=seed, env_module=env_module)
        verification["fingerprint"], bundle.fingerprint = meta, tensors
    if evaluate > 0:
        stats = run_episodes(NumpyPolicy(bundle), env, evaluate, seed=seed)
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
    bundle.provenance["env_packages"] = _installed(env_package(bundle.env.id))
    return None


def record_or_warn(
    bundle: Bundle, what: str, fingerprint: bool = True, evaluate: int = 0, env_module: str | None = None
) -> str | None:
    """:func:`record_verification`, with an ``RlportWarning`` saying why nothing was recorded when it was asked.

    An import never fails because of today's env: when it cannot be made, or its spaces differ from
    the file's, the bundle keeps the file's weights and spaces, and ``rlport run`` / ``rlport verify``
    report the difference later. ``what`` names the source in the warning. A bundle without an env id
    is not warned about (there is no env to make; ``rlport run --env ID`` names one).

    Returns:
        None when recorded (or nothing was asked), else why nothing was recorded.
    """
    reason = record_verification(bundle, fingerprint=fingerprint, evaluate=evaluate, env_module=env_module)
    if reason is not None and bundle.env.id:
        asked = " and ".join(n for n, on in (("fingerprint", fingerprint), ("evaluation", evaluate > 0)) if on)
        warnings.warn(
            f"{what}: no {asked} recorded for rlport verify ({reason}); the bundle is written with the file's "
            "weights and spaces, and rlport run / verify report the difference (--no-fingerprint: do not try)",
            RlportWarning,
            stacklevel=3,
        )
    return reason


def _installed(package: str | None) -> dict[str, str]:
    """``{package: version}`` when ``package`` is given and installed, else empty."""
    from importlib import metadata

    try:
        return {package: metadata.version(package)} if package else {}
    except metadata.PackageNotFoundError:
        return {}
