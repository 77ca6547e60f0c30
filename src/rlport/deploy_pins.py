"""Which package versions a target machine installs to run a bundle: the version policy of ``rlport requirements``.

The versions recorded at export are kept where they install on the target Python and satisfy rlport's
own requirements; otherwise the nearest release that does is pinned, with a note saying why. The
target Python is the one recorded at export (this machine's when none was), raised to the oldest Python
rlport supports (3.10), unless the caller names one.

numpy (the wheels on PyPI, checked with ``pip install --dry-run --python-version``):

=========  ==============  ===========
series     Python          pinned when the recorded version cannot be
=========  ==============  ===========
1.24       3.8 .. 3.11     1.24.4
1.25       3.9 .. 3.11     1.25.2
1.26       3.9 .. 3.12     1.26.4
2.0        3.9 .. 3.12     2.0.2
2.1, 2.2   3.10 .. 3.13    2.1.3, 2.2.6
2.3, 2.4   3.11 .. 3.14    2.3.5, 2.4.6
=========  ==============  ===========

The rule: keep the recorded version if it is at least 1.24 (rlport's ``numpy>=1.24``) and its series
has wheels for the target Python; else the newest series not newer than the recorded one that has
them, else the oldest newer one. So ``numpy==1.21.3`` (the zoo's Walker2d) becomes 1.24.4 on Python
3.10 and 3.11, 1.26.4 on 3.12, 2.1.3 on 3.13 and 2.3.5 on 3.14; ``2.4.6`` becomes 2.2.6 on 3.10.

gymnasium: the recorded version when gymnasium (0.26 or later) recorded it; gym-era runs (gym < 0.26,
recorded under ``gym`` or as a gymnasium version below 0.26) get the gymnasium installed here (the
one their env id was checked against at import), else :data:`GYMNASIUM_DEFAULT`. gymnasium before 1.0
does not run on numpy 2 (``np.float_``), so a gymnasium 0.x pin keeps numpy below 2 where the target
Python allows it, and is raised to 1.0.0 where it does not (Python 3.13 and later).

Example:
    >>> numpy_pin("1.21.3", (3, 11))
    ('1.24.4', 'numpy 1.21.3 was recorded at export; it is older than rlport needs (numpy>=1.24): pinned 1.24.4')
    >>> numpy_pin("2.4.6", (3, 11))
    ('2.4.6', None)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

from rlport.errors import UnsupportedError

__all__ = [
    "GYMNASIUM_DEFAULT",
    "NUMPY_FLOOR",
    "PYTHONS",
    "env_extra",
    "env_package",
    "gymnasium_pin",
    "numpy_pin",
    "parse_python",
    "target_python",
]

Version = tuple[int, ...]

NUMPY_FLOOR = (1, 24)
"""rlport's own ``numpy>=1.24`` (pyproject.toml)."""
PYTHONS = ((3, 10), (3, 14))
"""The oldest and newest Python a pack targets: rlport's ``requires-python`` and the newest in the numpy table."""
GYMNASIUM_DEFAULT = "1.4.0"
"""The gymnasium pinned for gym-era runs when none is installed here: the one rlport is tested with."""

_NUMPY_SERIES: tuple[tuple[Version, str, Version, Version], ...] = (
    # (series, release pinned when a recorded version cannot be, oldest Python, newest Python with wheels)
    ((1, 24), "1.24.4", (3, 8), (3, 11)),
    ((1, 25), "1.25.2", (3, 9), (3, 11)),
    ((1, 26), "1.26.4", (3, 9), (3, 12)),
    ((2, 0), "2.0.2", (3, 9), (3, 12)),
    ((2, 1), "2.1.3", (3, 10), (3, 13)),
    ((2, 2), "2.2.6", (3, 10), (3, 13)),
    ((2, 3), "2.3.5", (3, 11), (3, 14)),
    ((2, 4), "2.4.6", (3, 11), (3, 14)),
)
_RELEASE = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc|\.post|\.dev)[0-9]+)*$")

# Env ids outside gymnasium: (pattern on the id, PyPI package). Ids of the form ``module:Env`` go by module.
_ENV_PACKAGES: tuple[tuple[str, str], ...] = (
    (r"^Panda", "panda-gym"),
    (r"^(Fetch|HandManipulate|HandReach|Adroit|AntMaze|PointMaze|FrankaKitchen)", "gymnasium-robotics"),
    (r"^(highway|merge|roundabout|parking|intersection|racetrack|exit|two-way|u-turn|lane-keeping)(-|$)",
     "highway-env"),
    (r"BulletEnv-v\d+$", "pybullet"),
    (r"^(MiniGrid|BabyAI)-", "minigrid"),
    (r"^ALE/|NoFrameskip-v\d+$", "ale-py"),
)  # fmt: skip
_MODULE_PACKAGES = {
    "panda_gym": "panda-gym",
    "gymnasium_robotics": "gymnasium-robotics",
    "highway_env": "highway-env",
    "pybullet_envs": "pybullet",
    "minigrid": "minigrid",
    "ale_py": "ale-py",
}


def parse_python(text: str) -> tuple[int, int]:
    """``"3.11"`` -> ``(3, 11)``, refusing Pythons a pack cannot target.

    Raises:
        UnsupportedError: not ``3.N``, or outside :data:`PYTHONS`.
    """
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    if not match:
        raise UnsupportedError(f"Python version {text!r} is not of the form 3.N (e.g. 3.11)")
    version = (int(match[1]), int(match[2]))
    (low, high) = PYTHONS
    if not low <= version <= high:
        raise UnsupportedError(
            f"a pack cannot target Python {version[0]}.{version[1]}: rlport runs on Python "
            f"{low[0]}.{low[1]} to {high[0]}.{high[1]}; pass --python with one of those"
        )
    return version


def target_python(recorded: object) -> tuple[int, int]:
    """The Python a pack targets by default: the recorded major.minor (else this one's), kept inside :data:`PYTHONS`."""
    match = re.match(r"^\s*(\d+)\.(\d+)", recorded) if isinstance(recorded, str) else None
    version = (int(match[1]), int(match[2])) if match else tuple(sys.version_info[:2])
    return min(max(version, PYTHONS[0]), PYTHONS[1])


def release(version: object) -> str | None:
    """``version`` stripped, if it is a plain release number (``1.26.4``, ``2.0.0rc1``), else ``None``."""
    if isinstance(version, str) and _RELEASE.match(version.strip()):
        return version.strip()
    return None


def _series(version: str) -> Version:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def _wheels_for(series: Version, python: tuple[int, int]) -> bool | None:
    """Whether numpy ``series`` has wheels for ``python``; ``None`` for a series newer than the table."""
    for known, _, oldest, newest in _NUMPY_SERIES:
        if known == series:
            return oldest <= python <= newest
    return None if series > _NUMPY_SERIES[-1][0] else False


def numpy_pin(recorded: object, python: tuple[int, int], below_2: bool = False) -> tuple[str, str | None]:
    """The numpy release to pin for ``python`` and, when it is not ``recorded``, a note saying why.

    Args:
        recorded: the version recorded at export (``None``: this machine's numpy is the starting point).
        python: the target Python (major, minor).
        below_2: prefer numpy 1.x when a release must be chosen (gymnasium 0.x runs on numpy 1 only).
    """
    version = release(recorded)
    start = version or metadata.version("numpy")
    wheels = _wheels_for(_series(start), python)
    if _series(start) >= NUMPY_FLOOR and wheels is not False:
        return start, None
    fits = [(series, pinned) for series, pinned, oldest, newest in _NUMPY_SERIES if oldest <= python <= newest]
    if below_2 and any(series < (2,) for series, _ in fits):
        fits = [(series, pinned) for series, pinned in fits if series < (2,)]
    older = [pinned for series, pinned in fits if series <= _series(start)]
    pinned = older[-1] if older else fits[0][1]
    where = "recorded at export" if version else "installed here"
    reason = (
        "it is older than rlport needs (numpy>=1.24)"
        if _series(start) < NUMPY_FLOOR
        else f"it has no wheels for Python {python[0]}.{python[1]}"
    )
    return pinned, f"numpy {start} was {where}; {reason}: pinned {pinned}"


def gymnasium_pin(provenance: dict) -> tuple[str | None, str | None]:
    """The gymnasium release to pin (``None``: leave unpinned) and, when it is not the recorded one, a note."""
    version = release(provenance.get("gymnasium"))
    if version is not None and _series(version) >= (0, 26):
        return version, None
    gym = release(provenance.get("gym")) or version
    try:
        here, where = metadata.version("gymnasium"), "installed here"
    except metadata.PackageNotFoundError:
        here, where = GYMNASIUM_DEFAULT, "the one rlport is tested with"
    if gym is None:
        return here, None  # nothing recorded: this machine's, as for numpy
    return here, f"gym {gym} was recorded at export (gym, before gymnasium): pinned gymnasium {here}, {where}"


def gymnasium_runs_on(gymnasium: str, numpy: str) -> bool:
    """gymnasium before 1.0 uses numpy 1 names removed in numpy 2 (``np.float_`` in Acrobot)."""
    return _series(gymnasium) >= (1, 0) or _series(numpy) < (2,)


def env_package(env_id: str) -> tuple[str | None, bool]:
    """The PyPI package that provides a third-party env id, and whether the id is third-party at all.

    Returns ``(package, True)`` for a known third-party id, ``(None, True)`` for an id that gymnasium
    does not provide and this table does not know, ``(None, False)`` for one of gymnasium's own envs.
    """
    if ":" in env_id:
        module = env_id.split(":", 1)[0].split(".")[0]
        return _MODULE_PACKAGES.get(module), module != "gymnasium"
    name = env_id.rsplit("/", 1)[-1] if not env_id.startswith("ALE/") else env_id
    for pattern, package in _ENV_PACKAGES:
        if re.search(pattern, name):
            return package, True
    return None, not _is_gymnasium_env(env_id)


def _is_gymnasium_env(env_id: str) -> bool:
    """Whether gymnasium itself provides ``env_id``: its registry here, else the names of its env families."""
    try:
        import gymnasium

        entry_point = gymnasium.spec(env_id).entry_point
        if isinstance(entry_point, str):
            return entry_point.startswith("gymnasium.")
    except Exception:  # no gymnasium, or an id this gymnasium does not register: the name tables decide
        pass
    name = re.sub(r"-v\d+$", "", env_id)
    return env_extra(env_id) is not None or name in _TOY_TEXT


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
_TOY_TEXT = frozenset({"FrozenLake", "FrozenLake8x8", "Taxi", "CliffWalking", "Blackjack"})
