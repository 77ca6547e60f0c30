"""The bundle's ZIP container: deterministic, atomic writing and a reader that trusts nothing.

See docs/FORMAT.md section 1. Only the standard library is used.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import secrets
import shutil
import socket
import stat
import struct
import time
import zipfile
from pathlib import Path

from rlport.errors import BundleError, FormatVersionError, IntegrityError

__all__ = [
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MANIFEST",
    "MAX_BUNDLE_SIZE",
    "MAX_MANIFEST_SIZE",
    "MAX_MEMBERS",
    "MAX_VERSION_DIGITS",
    "STALE_TEMP_AGE",
    "check_destination",
    "read_container",
    "read_regular_file",
    "remove_stale_temps",
    "sha256",
    "temp_path",
    "write_atomic",
    "write_atomic_group",
    "write_container",
]

FORMAT_MAJOR = 1
FORMAT_MINOR = 0
MANIFEST = "manifest.json"
MAX_MEMBERS = 64
"""Most members a bundle may hold (manifest included)."""
MAX_MANIFEST_SIZE = 16 * 1024 * 1024
"""Largest ``manifest.json`` a reader accepts, in bytes (16 MiB)."""
MAX_BUNDLE_SIZE = 4 * 1024**3
"""Largest bundle file :func:`read_container` reads, in bytes (4 GiB): the whole file is held in memory."""
MAX_VERSION_DIGITS = 6
"""Most digits in each part of the format version of the archive comment (Python's ``int`` refuses > 4300)."""
STALE_TEMP_AGE = 24 * 3600
"""Seconds after which an interrupted save's temporary file is removed even when its writer may be alive."""
_COMMENT = re.compile(rb"rlport-bundle (\d+)\.(\d+) sha256:([0-9a-f]{64})")
_TEMP_SUFFIX = ".rlport-tmp"
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})\.[0-9a-f]{16}\.rlport-tmp")
_EPOCH = (1980, 1, 1, 0, 0, 0)
# What zipfile raises on hostile input besides BadZipFile (e.g. NotImplementedError for a
# "version needed to extract" it does not know, struct.error for short records).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
    struct.error,
    IndexError,
    KeyError,
    OverflowError,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(name: str) -> None:
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"^[A-Za-z]:", name)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise BundleError(f"member name {name!r} is not a safe relative path; the bundle is hostile or corrupt")


def write_container(path: str | os.PathLike, manifest: bytes, members: dict[str, bytes]) -> None:
    """Write ``manifest.json`` then ``members`` (in the given order) to ``path`` atomically.

    The archive comment carries the magic, the format version and the manifest digest. The
    file appears at ``path`` only once complete: a crash leaves any previous file untouched.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in [(MANIFEST, manifest), *members.items()]:
            _check_name(name)
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
        archive.comment = f"rlport-bundle {FORMAT_MAJOR}.{FORMAT_MINOR} sha256:{sha256(manifest)}".encode()
    write_atomic(Path(path), buffer.getvalue())


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
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


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


def read_regular_file(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, read at most once and never more than its real size.

    FIFOs, devices, sockets and directories are refused before anything is read (a FIFO would
    block, a device never end), as is a file larger than ``limit`` bytes.

    Args:
        path: the file.
        what: how messages name it, e.g. ``"bundle x.rlp"``.
        limit: the largest size accepted, in bytes.

    Raises:
        BundleError: the file is missing, unreadable, not a regular file, too large, or changed
            size while being read.
    """
    try:
        _require_regular(os.stat(path).st_mode, what)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise BundleError(f"cannot read {what}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        _require_regular(info.st_mode, what)  # it may have been swapped since the stat
        if info.st_size > limit:
            raise BundleError(f"cannot read {what}: {info.st_size:,} bytes is over the limit of {limit:,} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(info.st_size + 1)
    except OSError as exc:
        raise BundleError(f"cannot read {what}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) != info.st_size:
        raise BundleError(f"cannot read {what}: it changed size while being read; try again once it is complete")
    return data


def _require_regular(mode: int, what: str) -> None:
    if stat.S_ISREG(mode):
        return
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise BundleError(f"cannot read {what}: it is {kind}, not a regular file; pass the file itself")


def _open(data: bytes, what: str) -> zipfile.ZipFile:
    if len(data) < 22:
        raise BundleError(f"{what}: {len(data)} bytes is too short to be an rlport bundle (truncated?)")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise BundleError(
            f"{what}: not a readable rlport bundle (a ZIP archive was expected: {exc}); "
            "the file is truncated, corrupt or of another kind"
        ) from exc


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    try:
        return archive.read(info)
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{what}: member {info.filename!r} is damaged ({exc}); get a fresh copy") from exc
    except (*_ZIP_ERRORS, RuntimeError) as exc:
        raise BundleError(f"{what}: member {info.filename!r} cannot be read ({exc})") from exc


def _version(match: re.Match, what: str) -> tuple[int, int]:
    major, minor = match.group(1), match.group(2)
    if max(len(major), len(minor)) > MAX_VERSION_DIGITS:
        shown = (major + b"." + minor)[:40]
        raise BundleError(
            f"{what}: the format version in the archive comment ({shown!r}...) has more than "
            f"{MAX_VERSION_DIGITS} digits in a part; the bundle is corrupt"
        )
    return int(major), int(minor)


def read_container(path: str | os.PathLike) -> tuple[bytes, dict[str, bytes], tuple[int, int]]:
    """Read and check a bundle's container.

    Returns:
        The manifest bytes (digest verified), the other members' bytes by name (not yet
        verified against the manifest: the caller does that once the manifest is parsed) and
        the format version from the archive comment.
    """
    what = str(path)
    data = read_regular_file(path, f"bundle {what}", MAX_BUNDLE_SIZE)
    archive = _open(data, what)
    match = _COMMENT.fullmatch(archive.comment)
    if not match and archive.comment.startswith(b"rlport-bundle "):
        raise BundleError(
            f"{what}: the archive comment {archive.comment[:100]!r} is not 'rlport-bundle <major>.<minor> "
            "sha256:<64 hex digits>'; the bundle is corrupt"
        )
    if not match:
        raise BundleError(
            f"{what}: not an rlport bundle (its ZIP comment {archive.comment[:40]!r} lacks the "
            "'rlport-bundle' magic). To convert an SB3 .zip, use `rlport import` instead"
        )
    version = _version(match, what)
    if version[0] > FORMAT_MAJOR:
        raise FormatVersionError(
            f"{what}: written in bundle format {version[0]}.{version[1]}; this rlport reads format "
            f"{FORMAT_MAJOR}.x. Upgrade rlport (pip install -U rlport)"
        )
    if version[0] < FORMAT_MAJOR:
        raise BundleError(f"{what}: bundle format {version[0]}.{version[1]} does not exist; the bundle is corrupt")
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BundleError(f"{what}: {len(infos)} members is more than the limit of {MAX_MEMBERS}")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise BundleError(f"{what}: duplicate member names {sorted({n for n in names if names.count(n) > 1})}")
    if not names or names[0] != MANIFEST:
        raise BundleError(f"{what}: the first member must be {MANIFEST!r}, found {names[:1]}")
    members: dict[str, bytes] = {}
    for info in infos:
        _check_name(info.filename)
        if info.compress_type != zipfile.ZIP_STORED:
            raise BundleError(f"{what}: member {info.filename!r} is compressed; bundle members must be stored")
        limit = MAX_MANIFEST_SIZE if info.filename == MANIFEST else len(data)
        if info.file_size > limit:
            raise BundleError(
                f"{what}: member {info.filename!r} claims {info.file_size} bytes, over the limit of {limit}"
            )
        members[info.filename] = _read_member(archive, info, what)
    manifest = members.pop(MANIFEST)
    if sha256(manifest) != match.group(3).decode():
        raise IntegrityError(
            f"{what}: manifest.json does not match the digest in the archive comment; the bundle "
            "was modified or damaged after it was written"
        )
    return manifest, members, version
