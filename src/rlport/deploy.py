"""Ship a bundle to another machine: its pinned requirements, and a self-contained folder.

The version policy (which numpy and gymnasium install on the target Python, which package provides a
third-party env) is in :mod:`rlport.deploy_pins`.

Example:
    >>> bundle = rlport.Bundle.load("cartpole.rlp")                       # doctest: +SKIP
    >>> requirements(bundle)                                              # doctest: +SKIP
    ['numpy==2.4.6', 'gymnasium[classic-control]==1.4.0']
    >>> pack("cartpole.rlp", "cartpole-pack", docker=True)                # doctest: +SKIP
    PosixPath('cartpole-pack')
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rlport.backends.registry import packable_backends
from rlport.bundle.bundle import Bundle
from rlport.bundle.container import remove_stale_temps, temp_path
from rlport.deploy_pins import (
    env_extra,
    env_package,
    gymnasium_pin,
    gymnasium_runs_on,
    numpy_pin,
    parse_python,
    release,
    target_python,
)
from rlport.errors import BundleError, RlportError, UnsupportedError, short

__all__ = ["requirements", "pinned_requirements", "Requirements", "pack", "env_extra", "BACKENDS"]

BACKENDS = packable_backends()
"""Runtimes a pack can target (``packable`` in :mod:`rlport.backends.registry`); each needs only what
:func:`requirements` lists."""

_PACK_FILES = ("run.py", "requirements.txt", "README.md", "rlport/__init__.py")


@dataclass(frozen=True)
class Requirements:
    """What a target machine installs to run a bundle: requirement lines, and why a pin differs from the record.

    Attributes:
        lines: pip requirement lines (``numpy==1.24.4``).
        notes: one sentence per pin that is not the version recorded at export, or per package not named.
        python: the target Python (major, minor) the pins install on.
    """

    lines: tuple[str, ...]
    notes: tuple[str, ...]
    python: tuple[int, int]

    def text(self) -> str:
        """The ``requirements.txt`` text: a comment line per note, then one requirement per line."""
        comments = [f"# {_one_line(note)}" for note in self.notes]
        if comments:
            comments.insert(0, f"# pinned for Python {self.python[0]}.{self.python[1]} by rlport")
        return "".join(f"{line}\n" for line in [*comments, *self.lines])


def _one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped: a note can never start a new line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def pinned_requirements(
    bundle: Bundle, backend: str = "numpy", with_env: bool = True, python: str | None = None
) -> Requirements:
    """The smallest pinned requirements that run ``bundle`` on a target machine, with notes.

    numpy and gymnasium (with the extra the env needs) are pinned to the versions recorded in the
    bundle's provenance where those install on the target Python and satisfy rlport; otherwise to
    the nearest release that does (:mod:`rlport.deploy_pins`), and a note says so. A third-party
    env's package (``panda-gym``) is listed too; one rlport does not know is named in a note. Never
    torch, stable-baselines3 or sb3-contrib: the env wrappers a bundle names are implemented in rlport.

    Args:
        bundle: the bundle to run.
        backend: the runtime (``"numpy"``).
        with_env: also list what creating the bundle's env needs.
        python: the target Python (``"3.11"``); default: the one recorded at export, at least 3.10.

    Raises:
        UnsupportedError: ``backend`` is not one of :data:`BACKENDS`, or ``python`` is not one rlport runs on.

    Example:
        >>> pinned_requirements(rlport.Bundle.load("walker.rlp"), python="3.11").lines   # doctest: +SKIP
        ('numpy==1.24.4', 'gymnasium[mujoco]==1.4.0')
    """
    if backend not in BACKENDS:
        raise UnsupportedError(f"backend {backend!r} cannot be packed (supported: {', '.join(BACKENDS)})")
    recorded = bundle.provenance
    target = parse_python(python) if python is not None else target_python(recorded.get("python"))
    gym, gym_note = gymnasium_pin(recorded) if with_env and bundle.env.id else (None, None)
    below_2 = gym is not None and not gymnasium_runs_on(gym, "2.0")  # keep gymnasium 0.x on numpy 1 where possible
    numpy, numpy_note = numpy_pin(recorded.get("numpy"), target, below_2=below_2)
    notes = [note for note in (numpy_note, gym_note) if note]
    lines = [f"numpy=={numpy}"]
    if gym is None:
        return Requirements(tuple(lines), tuple(notes), target)
    if not gymnasium_runs_on(gym, numpy):
        notes.append(f"gymnasium {gym} does not run on numpy {numpy} (numpy 2 removed names it uses): pinned 1.0.0")
        gym = "1.0.0"
    extra = env_extra(bundle.env.id)
    lines.append(f"gymnasium[{extra}]=={gym}" if extra else f"gymnasium=={gym}")
    line, note = _env_package_line(bundle.env.id, recorded.get("env_packages"))
    lines += [line] if line else []
    notes += [note] if note else []
    return Requirements(tuple(lines), tuple(notes), target)


def requirements(bundle: Bundle, backend: str = "numpy", with_env: bool = True, python: str | None = None) -> list[str]:
    """The requirement lines of :func:`pinned_requirements` (same arguments), without the notes.

    Example:
        >>> requirements(rlport.Bundle.load("cartpole.rlp"))              # doctest: +SKIP
        ['numpy==2.4.6', 'gymnasium[classic-control]==1.4.0']
    """
    return list(pinned_requirements(bundle, backend=backend, with_env=with_env, python=python).lines)


def _env_package_line(env_id: str, packages: object) -> tuple[str | None, str | None]:
    """The requirement line of a third-party env's package (pinned when recorded), or a note naming what is missing."""
    package, third_party = env_package(env_id)
    if not third_party:
        return None, None
    if package is None:
        return None, (
            f"env {short(env_id)} is not one of gymnasium's and rlport does not know which package provides it: "
            "add that package to this file"
        )
    recorded = packages if isinstance(packages, dict) else {}
    names = {str(key).lower().replace("_", "-"): value for key, value in recorded.items()}
    version = release(names.get(package))
    if version:
        return f"{package}=={version}", None
    return package, (
        f"{package} provides {short(env_id)}; its version was not recorded: pin the release that registers that id"
    )


def pack(
    bundle_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    backend: str = "numpy",
    python: str | None = None,
    docker: bool = False,
) -> Path:
    """Write a folder that runs the bundle anywhere with ``pip install -r requirements.txt``.

    The folder holds the bundle (same file name), ``requirements.txt`` (:func:`pinned_requirements`,
    its notes as comments), a vendored copy of rlport's source, ``run.py`` and ``README.md``; with
    ``docker``, also a ``Dockerfile`` (a ``python:X.Y-slim`` base for the target Python, the pinned
    requirements, a non-root user, ``run.py`` as the entry point). It is built in a staging folder
    beside ``out_dir`` and renamed into place: all or nothing. A previous pack there is replaced, and
    comes back if the swap fails; staging folders of interrupted packs are removed.

    Args:
        bundle_path: the bundle.
        out_dir: the folder to write.
        backend: the runtime (``"numpy"``).
        python: the target Python (``"3.11"``); default: the one recorded at export, at least 3.10.
        docker: also write a ``Dockerfile``.

    Raises:
        BundleError: the bundle does not load, or the folder cannot be written (full disk,
            read-only folder): nothing is written and any previous pack is left as it was.
        UnsupportedError: unknown ``backend``, or a Python rlport does not run on.
        RlportError: ``out_dir`` exists, is not empty and is not a previous pack.

    Example:
        >>> pack("cartpole.rlp", "cartpole-pack", docker=True)            # doctest: +SKIP
        >>> # on the target: pip install -r requirements.txt && python run.py --episodes 10
        >>> # or: docker build -t cartpole cartpole-pack && docker run --rm cartpole
    """
    bundle_path, out = Path(bundle_path), Path(out_dir)
    bundle = Bundle.load(bundle_path)
    needs = pinned_requirements(bundle, backend=backend, python=python)
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
        _fill(staging, bundle_path, needs, docker)
        _swap_into_place(staging, out)
    except OSError as exc:
        raise _pack_error(out, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed into place
    return out


def _fill(staging: Path, bundle_path: Path, needs: Requirements, docker: bool) -> None:
    """Write the pack's files into ``staging``."""
    shutil.copyfile(bundle_path, staging / bundle_path.name)
    (staging / "requirements.txt").write_text(needs.text())
    package = Path(__file__).resolve().parent
    shutil.copytree(package, staging / "rlport", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (staging / "run.py").write_text(_RUN_PY.replace("{BUNDLE}", repr(bundle_path.name)))
    python = f"{needs.python[0]}.{needs.python[1]}"
    readme = _README.replace("{BUNDLE}", bundle_path.name).replace("{PYTHON}", python)
    (staging / "README.md").write_text(readme + (_README_DOCKER if docker else ""))
    if docker:
        (staging / "Dockerfile").write_text(dockerfile(python, bundle_path.stem))


def dockerfile(python: str, name: str) -> str:
    """The pack's ``Dockerfile`` for target Python ``python`` (``"3.11"``); ``name`` tags the image in its comments."""
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-.") or "policy"
    return _DOCKERFILE.replace("{PYTHON}", python).replace("{TAG}", tag)


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


_RUN_PY = '''"""Run the packed rlport bundle: python run.py [--episodes N] [--seed S] (numpy only, no torch).

Checks the actions recorded at export (the probes), then plays episodes in the bundle's env when
it can be made here; see rlport/cli/packed.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the vendored rlport next to this file

from rlport.cli.packed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(os.path.join(HERE, {BUNDLE})))
'''

_README = """# {BUNDLE}, packed by rlport

Install: `pip install -r requirements.txt` (numpy, and gymnasium to run episodes; no torch). The
pins are for Python {PYTHON}; `rlport requirements {BUNDLE} --python X.Y` gives them for another.
Run: `python run.py [--episodes N] [--seed S]` checks the actions recorded at export (exit code 1
if they differ), then prints the mean return in the bundle's env, when that env can be made here.
"""

_README_DOCKER = """
Docker: `docker build -t policy . && docker run --rm policy --episodes 5`. For an arm64 board
(Raspberry Pi, Jetson) from another machine: `docker buildx build --platform linux/arm64 -t policy .`
"""

_DOCKERFILE = """\
# Runs the packed rlport bundle with numpy only (no torch): docker build -t {TAG} . && docker run --rm {TAG}
# Arguments after the image name go to run.py: docker run --rm {TAG} --episodes 5 --seed 1
# For an arm64 board (Raspberry Pi, Jetson) from an x86 machine (needs buildx and QEMU):
#   docker buildx build --platform linux/arm64 -t {TAG} --load .
FROM python:{PYTHON}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
RUN useradd --create-home --uid 10001 rlport
COPY --chown=rlport . .
USER rlport
ENTRYPOINT ["python", "run.py"]
CMD ["--episodes", "10"]
"""
