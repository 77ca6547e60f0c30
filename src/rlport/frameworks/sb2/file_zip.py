"""The ``.zip`` format of SB2 >= 2.7, read as untrusted input.

Members: ``data`` (JSON; a value JSON cannot hold is ``{":type:": ..., ":serialized:": <base64
cloudpickle>, ...}``, read through :func:`rlport.frameworks.sb2.file_pickle.loads`), ``parameters`` (an
``np.savez`` archive: one ``NAME.npy`` per TensorFlow variable, parsed here without numpy's loader and
never with pickle) and ``parameter_list`` (JSON: the names in ``get_parameter_list()`` order).

Example:
    >>> data, params = read_sb2_zip("acktr/Pendulum-v0.zip")   # doctest: +SKIP
    >>> list(params)[:2]                                       # doctest: +SKIP
    ['model/pi_fc0/w:0', 'model/pi_fc0/b:0']
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import zipfile
from typing import Any

import numpy as np

from rlport.errors import BundleError
from rlport.frameworks.sb2 import file_pickle
from rlport.readers.untrusted import ZipReader, check_nesting, echo, open_regular, zip_limit

__all__ = ["read_sb2_zip", "is_sb2_zip", "MAX_DATA_SIZE", "MAX_PARAMETERS", "MAX_ARRAY_DIMS"]

MAX_DATA_SIZE = 16 << 20
"""The largest ``data`` or ``parameter_list`` member read (16 MiB); real ones hold about 10 KiB."""
MAX_PARAMETERS = 4096
"""The most arrays an SB2 ``parameters`` archive may hold (real models: a few dozen)."""
MAX_ARRAY_DIMS = 8
"""The most dimensions a parameter array may have (TensorFlow conv kernels have 4)."""
_MEMBERS = ("data", "parameters", "parameter_list")
_MAX_NPY_HEADER = 10_000  # numpy's own limit


def _archive_members(path: str) -> dict[str, bytes]:
    """``data``, ``parameters`` and ``parameter_list``, within the archive's expansion budget."""
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise BundleError(f"{path}: not an SB2 model (a ZIP archive was expected: {echo(str(exc))})") from exc
        with archive:
            infos = {info.filename: info for info in archive.infolist()}
            for name in ("data", "parameter_list"):
                if name in infos and infos[name].file_size > MAX_DATA_SIZE:
                    raise BundleError(f"{path}: member {name!r} claims {infos[name].file_size} bytes, over "
                                      f"{MAX_DATA_SIZE}")  # fmt: skip
            reader = ZipReader(archive, zip_limit(size), path)
            members = {name: reader.read(infos[name]) for name in _MEMBERS if name in infos}
    missing = [name for name in _MEMBERS if name not in members]
    if missing:
        raise BundleError(f"{path}: no {', '.join(map(repr, missing))} member; an SB2 .zip (model.save() of "
                          "stable-baselines >= 2.7) has data, parameters and parameter_list")  # fmt: skip
    return members


def _json(raw: bytes, what: str) -> Any:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{what} is not JSON ({echo(str(exc) or type(exc).__name__)})") from exc
    check_nesting(value, what)
    return value


def _decode(entry: Any, what: str) -> Any:
    """A ``data`` value: plain JSON as is; a ``:serialized:`` one through the SB2 allow-list reader."""
    if not isinstance(entry, dict) or ":serialized:" not in entry:
        return entry
    try:
        raw = base64.b64decode(entry[":serialized:"], validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BundleError(f"{what}: its ':serialized:' field is not base64 ({echo(str(exc))})") from exc
    return file_pickle.loads(raw, what=what)


def _npy(raw: bytes, what: str) -> np.ndarray:
    """One ``.npy`` member: numbers in at most MAX_ARRAY_DIMS dimensions, exactly as many bytes as its header says."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream, max_header_size=_MAX_NPY_HEADER)
    except (ValueError, SyntaxError, TypeError, KeyError, UnicodeDecodeError, EOFError) as exc:
        raise BundleError(f"{what} is not a numeric .npy array ({echo(str(exc), 200)})") from exc
    if dtype.kind not in "biuf" or len(shape) > MAX_ARRAY_DIMS:
        raise BundleError(f"{what} holds a {dtype} array of shape {echo(shape)}; expected numbers in at most "
                          f"{MAX_ARRAY_DIMS} dimensions")  # fmt: skip
    count, offset = math.prod(shape), stream.tell()
    if len(raw) - offset != count * dtype.itemsize:
        raise BundleError(f"{what}: its header claims shape {echo(shape)} ({count * dtype.itemsize} bytes) but it "
                          f"holds {len(raw) - offset} bytes")  # fmt: skip
    return np.frombuffer(raw, dtype, count, offset).reshape(shape, order="F" if fortran else "C").copy()


def _parameters(raw: bytes, names: list[str], what: str) -> dict[str, np.ndarray]:
    """The ``parameters`` archive's arrays in ``parameter_list`` order; every listed name must be there."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(f"{what} is not an np.savez archive ({echo(str(exc))})") from exc
    with archive:
        members = set(archive.namelist())
        if len(members) > MAX_PARAMETERS:
            raise BundleError(f"{what} holds {len(members)} arrays, more than an SB2 model has ({MAX_PARAMETERS})")
        reader = ZipReader(archive, zip_limit(len(raw)), what)
        missing = [name for name in names if f"{name}.npy" not in members]
        if missing:
            raise BundleError(f"{what}: parameter_list names {echo(missing)}, which the archive does not hold")
        return {name: _npy(reader.read(f"{name}.npy"), f"{what}: {echo(name, 80)}") for name in names}


def _parameter_list(raw: bytes, what: str) -> list[str]:
    names = _json(raw, what)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) > MAX_PARAMETERS:
        raise BundleError(f"{what} should be a JSON list of at most {MAX_PARAMETERS} variable names")
    if len(set(names)) != len(names):
        raise BundleError(f"{what} names a variable twice; TensorFlow variable names are unique")
    return names


def read_sb2_zip(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(data, params)`` of an SB2 ``.zip``: data's serialized values as inert records, params by name.

    Raises:
        BundleError: not an SB2 .zip, a member missing, truncated, corrupt or over its limits.
        UnsafeFileError: a serialized value names something outside the allow-list.
    """
    members = _archive_members(path)
    data = _json(members["data"], f"{path}: its 'data' member")
    if not isinstance(data, dict):
        raise BundleError(f"{path}: its 'data' member is not a JSON object")
    decoded = {key: _decode(value, f"{path}: data[{echo(key, 60)}]") for key, value in data.items()}
    names = _parameter_list(members["parameter_list"], f"{path}: parameter_list")
    return decoded, _parameters(members["parameters"], names, f"{path}: parameters")


def is_sb2_zip(path: str) -> bool:
    """Whether ``path`` is a ZIP archive with SB2's members (``parameters`` and ``parameter_list``); an SB3 .zip
    has ``policy.pth`` instead. Reads only the archive's directory."""
    try:
        with open_regular(path) as file, zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except (BundleError, zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return False
    return {"parameters", "parameter_list"} <= names and not names & {"policy.pth", "pytorch_variables.pth"}
