"""Files that appear whole or not at all: atomic saves, all-or-nothing groups, stale temporary files.

Every output rlport writes (bundles, SB3 files, fingerprints, packs, zoo folders) goes through
here: it is written to a temporary file beside its target and renamed into place; a group of
files is renamed in order and rolled back on failure; temporary files left by a killed save are
recognised by their name and removed by the next save to the same target. Only the standard
library is used.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from rlport.errors import BundleError

__all__ = [
    "STALE_TEMP_AGE",
    "check_destination",
    "remove_stale_temps",
    "temp_path",
    "write_atomic",
    "write_atomic_group",
]

STALE_TEMP_AGE = 24 * 3600
"""Seconds after which an interrupted save's temporary file is removed even when its writer may be alive."""
_TEMP_SUFFIX = ".rlport-tmp"
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})\.[0-9a-f]{16}\.rlport-tmp")


def write_atomic(target: Path, data: bytes, what: str = "the bundle") -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it over ``target``.

    Temporary files that earlier, interrupted saves to ``target`` left behind are removed first
    (see :func:`remove_stale_temps`).

    Raises:
        BundleError: the directory is missing, ``target`` is a directory, or the write failed
            (any previous file at ``target`` is left as it was).
    """
    write_atomic_group([(Path(target), data, what)])


def write_atomic_group(outputs: list[tuple[Path, bytes, str]]) -> None:
    """Write several files all-or-nothing: ``(target, data, what)`` each, renamed into place in order.

    Every destination is checked and every file written to a temporary file beside its target
    before the first rename. If a rename fails, the files already renamed are rolled back: the
    previous ones (kept by a hard link, or a copy) come back and new ones are removed.

    Raises:
        BundleError: a destination is unusable, the same target is given twice, or a write or
            rename failed (every target is then as it was before the call).

    Example:
        >>> write_atomic_group([(Path("m.zip"), zip_bytes, "the model"),
        ...                     (Path("vecnormalize.pkl"), pkl_bytes, "the statistics")])  # doctest: +SKIP
    """
    outputs = [(Path(target), data, what) for target, data, what in outputs]
    seen: set[str] = set()
    for target, _, what in outputs:
        check_destination(target, what)
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            raise BundleError(f"cannot save {what} to {str(target)!r}: another output of this save goes there too")
        seen.add(key)
    for target, _, _ in outputs:
        remove_stale_temps(target)
    temps: list[Path] = []
    try:
        for target, data, what in outputs:
            temps.append(_write_temp(target, data, what))
        _rename_all([(tmp, target, what) for tmp, (target, _, what) in zip(temps, outputs, strict=True)])
    finally:
        for tmp in temps:  # the ones not renamed into place
            _unlink_quietly(tmp)


def check_destination(target: Path, what: str) -> None:
    """Raise :class:`BundleError` unless ``target`` can be saved to: its folder exists and it is no folder itself."""
    target = Path(target)
    directory = target.parent
    if not directory.is_dir():
        raise BundleError(
            f"cannot save {what} to {str(target)!r}: the directory {str(directory)!r} does not exist; create it first"
        )
    if target.is_dir():
        raise BundleError(f"cannot save {what} to {str(target)!r}: it is a directory; give a file name")


def temp_path(target: Path) -> Path:
    """A fresh name beside ``target`` for a temporary file or folder: ``.NAME.<host>-<pid>.<hex>.rlport-tmp``.

    ``<host>`` (8 hex digits of the host name's digest) and ``<pid>`` let :func:`remove_stale_temps`
    tell a temporary file whose writer is gone from one still being written.
    """
    target = Path(target)
    return target.parent / f".{target.name}.{_host_tag()}-{os.getpid()}.{secrets.token_hex(8)}{_TEMP_SUFFIX}"


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files (and folders) that interrupted saves to ``target`` left beside it.

    Only names made by :func:`temp_path` for this ``target`` are considered, and of them only those
    written by a process of this machine that is no longer alive, or older than
    :data:`STALE_TEMP_AGE`. Never raises: what cannot be removed stays.

    Returns:
        The paths removed.
    """
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = os.scandir(target.parent)
    except OSError:
        return removed
    with entries:
        for entry in entries:
            match = _TEMP_NAME.fullmatch(entry.name)
            if match and match["name"] == target.name and _is_stale(entry, match) and _remove_entry(entry):
                removed.append(Path(entry.path))
    return removed


def _host_tag() -> str:
    if hasattr(os, "uname"):
        host = os.uname().nodename  # socket.gethostname() on POSIX, without importing socket (~2 ms)
    else:
        import socket

        host = socket.gethostname()
    return hashlib.sha256(host.encode("utf-8", "replace")).hexdigest()[:8]


def _is_stale(entry: os.DirEntry, match: re.Match) -> bool:
    try:
        age = time.time() - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if age > STALE_TEMP_AGE:
        return True
    pid = int(match["pid"])
    return match["host"] == _host_tag() and pid != os.getpid() and not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; True when that cannot be told."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def _remove_entry(entry: os.DirEntry) -> bool:
    try:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    except OSError:
        return False
    return True


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _save_error(what: str, target: Path, exc: OSError, note: str = "") -> BundleError:
    hints = {
        errno.ENOSPC: "free some disk space and try again",
        getattr(errno, "EDQUOT", errno.ENOSPC): "free some disk space and try again",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.EACCES: "choose a folder you can write to",
        errno.EPERM: "choose a folder you can write to",
    }
    hint = hints.get(exc.errno, "check the destination and try again")
    kept = note or "any previous file there is unchanged"
    return BundleError(f"cannot save {what} to {str(target)!r}: {exc.strerror or exc}; {hint} ({kept})")


def _write_temp(target: Path, data: bytes, what: str) -> Path:
    """``data`` in a new, fsynced temporary file beside ``target``; nothing is left behind on failure."""
    tmp = temp_path(target)
    try:
        # O_EXCL: never reuse a file; mode 0o666 less the umask, as a plain open() would give.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _save_error(what, target, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise _save_error(what, target, exc) from exc
        raise
    return tmp


def _rename_all(pairs: list[tuple[Path, Path, str]]) -> None:
    """Rename each temporary file over its target, in order; on a failure put back what was replaced."""
    done: list[tuple[Path, Path | None]] = []
    for i, (tmp, target, what) in enumerate(pairs):
        backup = None
        try:
            backup = None if i == len(pairs) - 1 else _backup(target)
            os.replace(tmp, target)
        except BaseException as exc:
            if backup is not None:
                _unlink_quietly(backup)
            problems = _roll_back(done)
            if isinstance(exc, OSError):
                note = "; ".join(problems) or ("the other outputs were put back as they were" if done else "")
                raise _save_error(what, target, exc, note) from exc
            raise
        done.append((target, backup))
    for _, backup in done:
        if backup is not None:
            _unlink_quietly(backup)


def _backup(target: Path) -> Path | None:
    """A second name for the file at ``target`` (a hard link, else a copy), or None when there is none."""
    if not os.path.lexists(target):
        return None
    backup = temp_path(target)
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:  # a file system without hard links
        try:
            shutil.copy2(target, backup, follow_symlinks=False)
        except BaseException:
            _unlink_quietly(backup)
            raise
    return backup


def _roll_back(done: list[tuple[Path, Path | None]]) -> list[str]:
    """Undo renames already done, last first; return what could not be undone."""
    problems = []
    for target, backup in reversed(done):
        try:
            if backup is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(backup, target)
        except OSError as exc:
            kept = f"; its previous content is in {str(backup)!r}" if backup is not None else ""
            problems.append(f"{str(target)!r} could not be rolled back ({exc.strerror or exc}){kept}")
    return problems
