"""Reading untrusted files within limits: regular files only, bounded reads and zip expansion, capped echoes.

Every importer reads model files through these helpers, so that a hostile file can neither hang
the reader (a FIFO, a device), nor make it allocate more than the file's real size allows (a zip
bomb, a member that lies about its size, a pickle or YAML whose shared references expand without
end), nor flood an error message with its content.

Example:
    >>> raw = read_regular("vecnormalize.pkl", limit=64 << 20, what="vecnormalize.pkl")  # doctest: +SKIP
    >>> echo("x" * 500)[-3:]
    '...'
"""

from __future__ import annotations

import os
import reprlib
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from rlport.errors import BundleError

__all__ = [
    "open_regular",
    "read_regular",
    "ZipReader",
    "zip_limit",
    "check_nesting",
    "echo",
    "ZIP_EXPANSION_FLOOR",
    "MAX_ZIP_EXPANSION",
    "MAX_ZIP_TOTAL",
    "ECHO_LENGTH",
    "MAX_NESTING",
    "MAX_ITEMS",
]

ZIP_EXPANSION_FLOOR = 64 << 20
"""Uncompressed bytes any zip archive may hold however small it is (64 MiB): the floor of :func:`zip_limit`."""
MAX_ZIP_EXPANSION = 32
"""Above the floor, a zip archive's members may hold at most this many times the archive's own size."""
MAX_ZIP_TOTAL = 2 << 30
"""The most uncompressed bytes read from one zip archive, however large it is (2 GiB)."""
ECHO_LENGTH = 100
"""The most characters of a value from a file that an error message repeats."""
MAX_NESTING = 32
"""How deeply a decoded JSON, pickle or YAML value may nest (real SB3 and zoo files: about 10)."""
MAX_ITEMS = 1 << 20
"""How many items a decoded value may hold, shared references counted each time they are met."""

_CHUNK = 1 << 20
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError)
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, ECHO_LENGTH, ECHO_LENGTH
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 8


def echo(value: Any, limit: int = ECHO_LENGTH) -> str:
    """``repr(value)`` for an error message: at most ``limit`` characters, safe on huge or deeply nested values."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a hostile object's repr: name its type instead
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike, what: str | None = None) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (checked before and after opening).

    A FIFO, device or folder is refused without being opened, so that it cannot block the reader
    or have side effects; the check is repeated on the open descriptor against a swap in between.

    Raises:
        BundleError: no such file, unreadable, or not a regular file.
    """
    name = what or str(path)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise BundleError(f"{name} is {_kind(before.st_mode)}, not a regular file; pass the file itself")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise BundleError(f"{name}: no such file") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {name}: {exc.strerror or exc}") from exc
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise BundleError(f"{name} was replaced while being opened; pass a regular file that does not change")
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, limit: int, what: str | None = None) -> bytes:
    """The bytes of the regular file ``path``, refused when it holds more than ``limit`` bytes.

    Raises:
        BundleError: not a regular file, unreadable, or larger than ``limit``.
    """
    name = what or str(path)
    with open_regular(path, name) as file:
        size = os.fstat(file.fileno()).st_size
        data = file.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise BundleError(f"{name} holds {max(size, len(data))} bytes, more than the {limit} such a file may hold; "
                          "it is not the file rlport expects")  # fmt: skip
    return data


def zip_limit(archive_size: int) -> int:
    """The most uncompressed bytes an archive of ``archive_size`` bytes may expand to.

    ``min(MAX_ZIP_TOTAL, max(ZIP_EXPANSION_FLOOR, MAX_ZIP_EXPANSION * archive_size))``: real SB3 and
    torch files are stored, not compressed (ratio about 1); a zip bomb compresses 1000 to 1.
    """
    return min(MAX_ZIP_TOTAL, max(ZIP_EXPANSION_FLOOR, MAX_ZIP_EXPANSION * archive_size))


class ZipReader:
    """Reads members of an open archive in chunks, within one budget of uncompressed bytes.

    The members' declared sizes are summed and checked against ``limit`` before anything is
    read; each read then stops at the limit and at the member's declared size, whatever the
    compressed data holds. Only stored and deflated members (what SB3, torch and numpy write)
    are read.

    Example:
        >>> with zipfile.ZipFile(file) as archive:                                   # doctest: +SKIP
        ...     data = ZipReader(archive, zip_limit(size), "model.zip").read("data")
    """

    def __init__(self, archive: zipfile.ZipFile, limit: int, what: str) -> None:
        self.archive, self.left, self.what = archive, limit, what
        infos = archive.infolist()
        declared = sum(info.file_size for info in infos)
        if declared > limit:
            raise BundleError(
                f"{what}: its {len(infos)} members claim {declared} uncompressed bytes, more than the {limit} "
                "allowed for an archive of its size (a zip bomb?); refused before reading"
            )

    def read(self, name: str | zipfile.ZipInfo) -> bytes:
        """One member's bytes; BundleError when it is damaged, encrypted, or holds more than it declares."""
        info = name if isinstance(name, zipfile.ZipInfo) else self.archive.getinfo(name)
        where = f"{self.what}: member {echo(info.filename)}"
        if info.compress_type not in _METHODS or info.flag_bits & 0x1:
            raise BundleError(f"{where} is encrypted or uses compression method {info.compress_type}; "
                              "only stored and deflated members are read")  # fmt: skip
        chunks, total = [], 0
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(min(_CHUNK, self.left - total + 1, info.file_size - total + 1)):
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > info.file_size or total > self.left:
                        raise BundleError(f"{where} holds more than the {info.file_size} bytes it declares")
        except _ZIP_ERRORS as exc:
            raise BundleError(f"{where} is damaged ({echo(str(exc), 200)})") from exc
        self.left -= total
        return b"".join(chunks)


def _children(value: Any) -> Iterable[Any] | None:
    if isinstance(value, dict):
        return [item for pair in value.items() for item in pair]
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return None


def check_nesting(
    value: Any,
    what: str,
    max_depth: int = MAX_NESTING,
    max_items: int = MAX_ITEMS,
    children: Callable[[Any], Iterable[Any] | None] = _children,
) -> None:
    """Refuse a decoded value nested deeper than ``max_depth`` or holding more than ``max_items`` items.

    Items are counted as a later walk over the value would meet them: an object that appears
    twice counts twice, so shared references that expand exponentially ("billion laughs") are
    refused, in time linear in the number of distinct objects. A value that contains itself is
    refused too.

    Raises:
        BundleError: too deep, too many items, or a cycle.
    """
    sizes: dict[int, tuple[int, int] | None] = {}

    def measure(node: Any, depth: int) -> tuple[int, int]:
        """(items, height) of ``node``, memoised by identity."""
        if depth > max_depth:
            raise BundleError(f"{what} is nested more than {max_depth} levels deep; no real file is")
        kids = children(node)
        if kids is None:
            return 1, 0
        if id(node) in sizes:
            known = sizes[id(node)]
            if known is None:
                raise BundleError(f"{what} contains itself (a reference cycle); no real file does")
            if depth + known[1] > max_depth:
                raise BundleError(f"{what} is nested more than {max_depth} levels deep; no real file is")
            return known
        sizes[id(node)] = None
        total, height = 1, 0
        for kid in kids:
            count, kid_height = measure(kid, depth + 1)
            total, height = total + count, max(height, kid_height + 1)
            if total > max_items:
                raise BundleError(f"{what} expands to more than {max_items} items (shared references?); "
                                  "no real file does")  # fmt: skip
        sizes[id(node)] = (total, height)
        return total, height

    measure(value, 0)
