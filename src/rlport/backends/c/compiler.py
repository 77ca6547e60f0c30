"""Build an export into a shared library with the system C compiler, cached by the export's digest.

The compiler is ``$CC`` (a command, possibly with options) or the first of ``cc``, ``gcc``,
``clang`` on ``PATH``. A library is cached under ``$XDG_CACHE_HOME/rlport/c`` (default
``~/.cache/rlport/c``; ``RLPORT_C_CACHE`` overrides the folder), in a folder named by the SHA-256 of
the two source files, the compiler's identity and the flags: a second load of the same bundle
compiles nothing. The library is built in a temporary folder beside its cache entry and renamed
into place, so a killed build leaves no half-written library; a cached library that another user
or group could have written is refused, since loading it runs its code. Standard library only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from rlport.errors import MissingDependencyError, UnsupportedError

__all__ = ["BUILD_FLAGS", "COMPILE_TIMEOUT", "CompilerError", "build_library", "cache_root", "find_compiler"]

BUILD_FLAGS = ("-std=c99", "-O3", "-fPIC", "-shared")
"""Flags of the cached library (no -march=native: a cache folder may be shared between machines)."""
COMPILE_TIMEOUT = 900
"""Seconds a compilation may take before it is abandoned (a large CNN's weights compile in seconds)."""
_CANDIDATES = ("cc", "gcc", "clang")
_LIBRARY = "librlport_policy.so"


class CompilerError(UnsupportedError):
    """The C compiler could not build an export."""


def find_compiler() -> list[str]:
    """The compiler command: ``$CC`` split as a shell would, or the first of cc, gcc, clang on PATH.

    Raises:
        MissingDependencyError: no compiler was found; the message says how to install one.
    """
    named = os.environ.get("CC", "").strip()
    if named:
        command = shlex.split(named)
        if shutil.which(command[0]):
            return command
        raise MissingDependencyError(
            f"the c backend uses the C compiler $CC={named!r:.100}, which is not on PATH; "
            "set CC to an installed compiler (gcc, clang) or unset it"
        )
    for name in _CANDIDATES:
        if shutil.which(name):
            return [name]
    raise MissingDependencyError(
        "the c backend needs a C compiler and none was found (cc, gcc, clang on PATH, or $CC); install one "
        "(Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; macOS: xcode-select --install), "
        "or use backend='numpy'"
    )


@functools.lru_cache(maxsize=8)
def _identity(command: tuple[str, ...]) -> str:
    """The compiler's path and the first line of its ``--version`` (a new compiler is a new cache entry)."""
    try:
        result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=False)
        version = (result.stdout.splitlines() or [""])[0]
    except (OSError, subprocess.SubprocessError):
        version = "unknown"
    return f"{shutil.which(command[0])} {' '.join(command[1:])} {version}"


def cache_root() -> Path:
    """``$RLPORT_C_CACHE``, else ``$XDG_CACHE_HOME/rlport/c``, else ``~/.cache/rlport/c``."""
    if os.environ.get("RLPORT_C_CACHE", "").strip():
        return Path(os.environ["RLPORT_C_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "rlport" / "c"


def build_library(header: str, source: str) -> Path:
    """The shared library of this export: from the cache, or compiled now (``rlport_policy.h`` + ``.c``).

    Raises:
        MissingDependencyError: no C compiler.
        CompilerError: the compiler failed or timed out (the message quotes its first error).
    """
    command = find_compiler()
    digest = hashlib.sha256()
    for part in (header, source, _identity(tuple(command)), " ".join(BUILD_FLAGS), platform.machine()):
        digest.update(part.encode("utf-8") + b"\0")
    entry = cache_root() / digest.hexdigest()[:32]
    library = entry / _LIBRARY
    if library.is_file():
        return _owned(library)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as exc:
        raise CompilerError(f"cannot create the C backend's cache folder {str(entry.parent)!r}: {exc}; "
                            "set RLPORT_C_CACHE or XDG_CACHE_HOME to a writable folder") from None  # fmt: skip
    try:
        (work / "rlport_policy.h").write_text(header, encoding="utf-8")
        (work / "rlport_policy.c").write_text(source, encoding="utf-8")
        _compile(command, work)
        (work / _LIBRARY).chmod(0o755)  # whatever the umask: _owned refuses what others may write
        try:
            work.rename(entry)
        except OSError:  # another process built the same entry meanwhile: use theirs
            if not library.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _owned(library)


def _owned(library: Path) -> Path:
    """``library``, unless someone else could have written it (it is loaded into this process: it runs code).

    On POSIX, the library and its folder must belong to this user and be writable by nobody else.
    """
    if not hasattr(os, "getuid"):
        return library
    for path in (library, library.parent):
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CompilerError(
                f"refusing to load {str(library)!r}: {str(path)!r} belongs to another user or others may write it; "
                "remove it, or set RLPORT_C_CACHE to a folder of your own"
            )
    return library


def _compile(command: list[str], work: Path) -> None:
    args = [*command, *BUILD_FLAGS, "rlport_policy.c", "-o", _LIBRARY, "-lm"]
    try:
        result = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise CompilerError(f"the C compiler took more than {COMPILE_TIMEOUT} s on the export; "
                            "use backend='numpy' or 'onnx' for this bundle") from None  # fmt: skip
    except OSError as exc:
        raise CompilerError(f"the C compiler {command[0]!r:.100} could not be run: {exc}") from None
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines() or [""]
        raise CompilerError(
            f"the C compiler {command[0]!r:.100} could not build the export (exit {result.returncode}): "
            f"{errors[0][:300]}; please report this, and use backend='numpy' meanwhile"
        )
