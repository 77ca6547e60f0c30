"""The bundle's ZIP container: deterministic bytes, and a reader that trusts nothing (writing: ``atomic.py``).

See docs/FORMAT.md section 1. Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import zipfile
from pathlib import Path

from rlport.bundle.atomic import (  # re-exported: writing was part of this module
    STALE_TEMP_AGE,
    check_destination,
    remove_stale_temps,
    temp_path,
    write_atomic,
    write_atomic_group,
)
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
    "READ_MINOR",
    "check_destination",
    "container_bytes",
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
"""The format version of a bundle without ``encodings`` (what rlport writes for one: byte for byte as before 1.1)."""
READ_MINOR = 1
"""The newest minor version this rlport reads and writes: 1.1 adds ``encodings`` (quantised tensors)."""
MANIFEST = "manifest.json"
MAX_MEMBERS = 64
"""Most members a bundle may hold (manifest included)."""
MAX_MANIFEST_SIZE = 16 * 1024 * 1024
"""Largest ``manifest.json`` a reader accepts, in bytes (16 MiB)."""
MAX_BUNDLE_SIZE = 4 * 1024**3
"""Largest bundle file :func:`read_container` reads, in bytes (4 GiB): the whole file is held in memory."""
MAX_VERSION_DIGITS = 6
"""Most digits in each part of the format version of the archive comment (Python's ``int`` refuses > 4300)."""
_COMMENT = re.compile(rb"rlport-bundle (\d+)\.(\d+) sha256:([0-9a-f]{64})")
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


def write_container(
    path: str | os.PathLike, manifest: bytes, members: dict[str, bytes], version: tuple[int, int] = (1, 0)
) -> None:
    """Write ``manifest.json`` then ``members`` (in the given order) to ``path`` atomically.

    The archive comment carries the magic, the format ``version`` (1.0, or 1.1 for a bundle with
    ``encodings``) and the manifest digest. The file appears at ``path`` only once complete: a
    crash leaves any previous file untouched.
    """
    write_atomic(Path(path), container_bytes(manifest, members, version))


def container_bytes(manifest: bytes, members: dict[str, bytes], version: tuple[int, int] = (1, 0)) -> bytes:
    """The bytes :func:`write_container` writes (a bundle's file, in memory)."""
    if version[0] != FORMAT_MAJOR or not 0 <= version[1] <= READ_MINOR:
        raise BundleError(f"this rlport writes bundle formats {FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{READ_MINOR}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in [(MANIFEST, manifest), *members.items()]:
            _check_name(name)
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
        archive.comment = f"rlport-bundle {version[0]}.{version[1]} sha256:{sha256(manifest)}".encode()
    return buffer.getvalue()


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
    names = [info.orig_filename for info in infos]  # zipfile cuts a name at a NUL; the raw one is checked
    if len(set(names)) != len(names):
        raise BundleError(f"{what}: duplicate member names {sorted({n for n in names if names.count(n) > 1})}")
    if not names or names[0] != MANIFEST:
        raise BundleError(f"{what}: the first member must be {MANIFEST!r}, found {names[:1]}")
    members: dict[str, bytes] = {}
    for info in infos:
        _check_name(info.orig_filename)
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
