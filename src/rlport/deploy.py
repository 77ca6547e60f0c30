"""Ship a bundle to another machine: its pinned requirements, and a self-contained folder.

Example:
    >>> bundle = rlport.Bundle.load("cartpole.rlp")                       # doctest: +SKIP
    >>> requirements(bundle)                                              # doctest: +SKIP
    ['numpy==2.4.6', 'gymnasium[classic-control]==1.4.0']
    >>> pack("cartpole.rlp", "cartpole-pack")                             # doctest: +SKIP
    PosixPath('cartpole-pack')
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from importlib import metadata
from pathlib import Path

from rlport.bundle.bundle import Bundle
from rlport.bundle.container import remove_stale_temps, temp_path
from rlport.errors import BundleError, RlportError, UnsupportedError

__all__ = ["requirements", "pack", "BACKENDS"]

BACKENDS = ("numpy",)
"""Runtimes a pack can target; each needs only the packages :func:`requirements` lists."""

_EXTRA_BY_MODULE = {
    "gymnasium.envs.classic_control": "classic-control",
    "gymnasium.envs.box2d": "box2d",
    "gymnasium.envs.mujoco": "mujoco",
}
_EXTRA_BY_PREFIX = {
    "classic-control": ("CartPole", "Pendulum", "Acrobot", "MountainCar"),
    "box2d": ("LunarLander", "BipedalWalker", "CarRacing"),
    "mujoco": ("Humanoid",),
}
_MUJOCO_NAMES = {
    "Ant", "HalfCheetah", "Hopper", "InvertedPendulum", "InvertedDoublePendulum",
    "Pusher", "Reacher", "Swimmer", "Walker2d",
}  # fmt: skip
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc|\.post|\.dev)[0-9]+)*$")
_PACK_FILES = ("run.py", "requirements.txt", "README.md", "rlport/__init__.py")


def requirements(bundle: Bundle, backend: str = "numpy", with_env: bool = True) -> list[str]:
    """The smallest pinned requirement lines that run ``bundle`` on a target machine.

    numpy (and gymnasium, with the extra the env needs) are pinned to the versions recorded in
    the bundle's provenance, else to this machine's. Never torch, stable-baselines3 or
    sb3-contrib: the env wrappers a bundle names are implemented in rlport itself.

    Args:
        bundle: the bundle to run.
        backend: the runtime (``"numpy"``).
        with_env: also list what creating the bundle's env needs.

    Raises:
        UnsupportedError: ``backend`` is not one of :data:`BACKENDS`.

    Example:
        >>> requirements(rlport.Bundle.load("cartpole.rlp"))              # doctest: +SKIP
        ['numpy==2.4.6', 'gymnasium[classic-control]==1.4.0']
    """
    if backend not in BACKENDS:
        raise UnsupportedError(f"backend {backend!r} cannot be packed (supported: {', '.join(BACKENDS)})")
    recorded = bundle.provenance
    lines = [_pin("numpy", recorded.get("numpy"))]
    if not with_env or not bundle.env.id:
        return lines
    gym_version = recorded.get("gymnasium")
    if not _is_gymnasium_version(gym_version):
        gym_version = None  # recorded by old gym (< 0.26), which has no gymnasium release of that number
    extra = env_extra(bundle.env.id)
    lines.append(_pin(f"gymnasium[{extra}]" if extra else "gymnasium", gym_version, dist="gymnasium"))
    return lines


def env_extra(env_id: str) -> str | None:
    """gymnasium's extra that ``env_id`` needs (``"box2d"``...), or ``None`` when none or unknown.

    Looks up the id's entry point in gymnasium's registry when gymnasium is importable, else
    (or for ids this gymnasium does not register) matches the name against a table.
    """
    try:
        import gymnasium

        entry_point = gymnasium.spec(env_id).entry_point
    except Exception:  # no gymnasium, an unregistered id or namespace: use the table
        entry_point = None
    if isinstance(entry_point, str):
        module = entry_point.split(":")[0]
        for prefix, extra in _EXTRA_BY_MODULE.items():
            if module == prefix or module.startswith(prefix + "."):
                return extra
        return None
    name = re.sub(r"-v\d+$", "", env_id.rsplit("/", 1)[-1])
    if name in _MUJOCO_NAMES:
        return "mujoco"
    for extra, prefixes in _EXTRA_BY_PREFIX.items():
        if name.startswith(prefixes):
            return extra
    return None


def _pin(requirement: str, recorded: object, dist: str | None = None) -> str:
    """``requirement==version``: the recorded version if it is a plain release, else the installed one."""
    version = recorded if isinstance(recorded, str) and _VERSION.match(recorded.strip()) else None
    if version is None:
        try:
            version = metadata.version(dist or requirement)
        except metadata.PackageNotFoundError:
            return requirement
    return f"{requirement}=={version.strip()}"


def _is_gymnasium_version(version: object) -> bool:
    if not isinstance(version, str) or not _VERSION.match(version.strip()):
        return False
    major, minor = (int(part) for part in (version.split(".") + ["0"])[:2])
    return (major, minor) >= (0, 26)


def pack(bundle_path: str | os.PathLike, out_dir: str | os.PathLike, backend: str = "numpy") -> Path:
    """Write a folder that runs the bundle anywhere with ``pip install -r requirements.txt``.

    The folder holds the bundle (same file name), ``requirements.txt``, a vendored copy of
    rlport's source, ``run.py`` and ``README.md``. It is built in a staging folder beside
    ``out_dir`` and renamed into place: all or nothing. A previous pack there is replaced, and
    comes back if the swap fails; staging folders of interrupted packs are removed.

    Raises:
        BundleError: the bundle does not load, or the folder cannot be written (full disk,
            read-only folder): nothing is written and any previous pack is left as it was.
        UnsupportedError: unknown ``backend``.
        RlportError: ``out_dir`` exists, is not empty and is not a previous pack.

    Example:
        >>> pack("cartpole.rlp", "cartpole-pack")                         # doctest: +SKIP
        >>> # on the target: pip install -r requirements.txt && python run.py --episodes 10
    """
    bundle_path, out = Path(bundle_path), Path(out_dir)
    bundle = Bundle.load(bundle_path)
    lines = requirements(bundle, backend=backend)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_pack(out))):
        raise RlportError(
            f"{out} exists and is not an empty folder or a previous rlport pack; "
            "choose another output folder or remove it"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        staging = temp_path(out)
        staging.mkdir()
    except OSError as exc:
        raise _pack_error(out, exc) from exc
    try:
        _fill(staging, bundle_path, lines)
        _swap_into_place(staging, out)
    except OSError as exc:
        raise _pack_error(out, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed into place
    return out


def _fill(staging: Path, bundle_path: Path, lines: list[str]) -> None:
    """Write the pack's files into ``staging``."""
    shutil.copyfile(bundle_path, staging / bundle_path.name)
    (staging / "requirements.txt").write_text("".join(f"{line}\n" for line in lines))
    package = Path(__file__).resolve().parent
    shutil.copytree(package, staging / "rlport", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (staging / "run.py").write_text(_RUN_PY.replace("{BUNDLE}", repr(bundle_path.name)))
    (staging / "README.md").write_text(_README.replace("{BUNDLE}", bundle_path.name))


def _pack_error(out: Path, exc: OSError) -> BundleError:
    hints = {
        errno.ENOSPC: "free some disk space and try again",
        errno.EROFS: "the file system is read-only; choose another output folder",
        errno.EACCES: "choose an output folder you can write to",
        errno.EPERM: "choose an output folder you can write to",
    }
    hint = hints.get(exc.errno, "check the output folder and try again")
    where = f" ({exc.filename})" if exc.filename else ""
    return BundleError(
        f"cannot write the pack {str(out)!r}: {exc.strerror or exc}{where}; {hint}. "
        "Nothing was written: any previous pack there is unchanged"
    )


def _is_pack(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _PACK_FILES)


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; a previous ``out`` is moved aside first and comes back if that fails."""
    if not out.exists():
        staging.rename(out)
        return
    old = temp_path(out)
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


_RUN_PY = '''"""Run the packed rlport bundle: python run.py [--episodes N] [--seed S]."""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the vendored rlport next to this file

import numpy as np  # noqa: E402

import rlport  # noqa: E402

BUNDLE = os.path.join(HERE, {BUNDLE})


def probe_error(policy):
    probes = policy.bundle.probes
    if not probes or "action" not in probes:
        return None
    obs = probes["obs"] if "obs" in probes else {k[4:]: v for k, v in probes.items() if k.startswith("obs.")}
    expected = probes["action"]
    if "episode_start" not in probes:
        actions = policy.predict(obs, deterministic=True)[0]
    else:
        state, actions = None, []
        for i, start in enumerate(probes["episode_start"]):
            step = {k: v[i : i + 1] for k, v in obs.items()} if isinstance(obs, dict) else obs[i : i + 1]
            action, state = policy.predict(step, state=state, episode_start=start[None] > 0, deterministic=True)
            actions.append(np.asarray(action)[0])
    diff = np.asarray(actions, dtype=np.float64).reshape(expected.shape) - expected.astype(np.float64)
    return float(np.max(np.abs(diff))) if diff.size else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    policy = rlport.load(BUNDLE, seed=args.seed)
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        gymnasium = None
    if gymnasium is not None and policy.bundle.env.id:
        from rlport.envs import make_env, run_episodes

        stats = run_episodes(policy, make_env(policy.bundle.env), episodes=args.episodes, seed=args.seed)
        print(f"{policy.bundle.env.id}: mean return {stats.mean_return:.2f} over {args.episodes} episodes")
    else:
        error = probe_error(policy)
        print("no probes recorded" if error is None else f"max probe error {error:.3g}")


if __name__ == "__main__":
    main()
'''

_README = """# {BUNDLE}, packed by rlport

Install: `pip install -r requirements.txt` (numpy, and gymnasium to run episodes; no torch).
Run: `python run.py [--episodes N] [--seed S]` prints the mean return in the bundle's env,
or, without gymnasium, the largest difference from the actions recorded at export.
"""
