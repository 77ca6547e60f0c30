"""Read and write the safetensors format with numpy and the standard library only.

The layout (docs/FORMAT.md section 5): 8 bytes little-endian header length ``N``, ``N`` bytes
of UTF-8 JSON mapping names to ``{"dtype", "shape", "data_offsets"}`` plus an optional
``"__metadata__"`` of str to str, then the data buffer that the offsets index into.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping

import numpy as np

from rlport.errors import BundleError

__all__ = ["MAX_HEADER_SIZE", "dumps", "loads"]

MAX_HEADER_SIZE = 100 * 1024 * 1024

# safetensors dtype name -> little-endian numpy dtype of the stored bytes.
_STORED = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1",
}  # fmt: skip
# (numpy kind, itemsize) -> safetensors dtype name, for writing. BF16 is read-only.
_WRITABLE = {
    (np.dtype(code).kind, np.dtype(code).itemsize): name
    for name, code in _STORED.items()
    if name not in ("BF16", "BOOL")
} | {("b", 1): "BOOL"}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise named arrays to safetensors bytes, deterministically.

    Tensors are stored sorted by name, contiguous from offset 0, little-endian and in C order;
    the header is compact, key-sorted ASCII JSON padded with spaces to a multiple of 8 bytes.

    Args:
        tensors: Names mapped to arrays. Names must be non-empty and not ``"__metadata__"``.
        metadata: Optional str to str mapping stored as ``"__metadata__"`` (omitted if empty).

    Returns:
        The complete file contents.

    Raises:
        BundleError: A name, a dtype or the metadata cannot be stored.

    Example:
        >>> data = dumps({"w": np.ones(2, np.float32)}, {"by": "rlport"})
        >>> loads(data)[0]["w"].tolist()
        [1.0, 1.0]
    """
    header: dict[str, object] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors, key=_checked_name):
        array = np.asarray(tensors[name])
        dtype_name, raw = _encode(name, array)
        offsets = [offset, offset + len(raw)]
        header[name] = {"dtype": dtype_name, "shape": list(array.shape), "data_offsets": offsets}
        chunks.append(raw)
        offset += len(raw)
    if metadata is not None and _metadata(metadata, "metadata"):
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _checked_name(name: object) -> str:
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise BundleError(
            f"tensor name must be a non-empty str other than '__metadata__', found {name!r}; rename the tensor"
        )
    return name


def _encode(name: str, array: np.ndarray) -> tuple[str, bytes]:
    dtype_name = _WRITABLE.get((array.dtype.kind, array.dtype.itemsize))
    if dtype_name is None:
        supported = ", ".join(sorted(set(_WRITABLE.values())))
        raise BundleError(
            f"tensor {name!r} has dtype {array.dtype} which safetensors cannot store "
            f"(supported: {supported}); cast it to one of those first"
        )
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return dtype_name, little.tobytes(order="C")


class _DuplicateKeyError(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def loads(
    data: bytes | bytearray | memoryview, *, what: str = "safetensors data"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse and fully validate safetensors bytes.

    Args:
        data: The complete file contents.
        what: How to name the data in error messages, e.g. ``"weights.safetensors"``.

    Returns:
        ``(tensors, metadata)``: independent, writable native-endian arrays by name (BF16 is
        widened to float32) and the ``"__metadata__"`` mapping (empty if absent).

    Raises:
        BundleError: The data is truncated, malformed or inconsistent; the message says how.

    Example:
        >>> tensors, meta = loads(dumps({"b": np.arange(3)}), what="probes.safetensors")
        >>> tensors["b"].tolist(), meta
        ([0, 1, 2], {})
    """
    view = memoryview(data)
    view = (view if view.c_contiguous else memoryview(view.tobytes())).cast("B")
    if len(view) < 8:
        raise BundleError(
            f"{what}: {len(view)} bytes is too short for the 8-byte header length; "
            "the file is truncated or not safetensors"
        )
    (size,) = struct.unpack("<Q", view[:8])
    if size > MAX_HEADER_SIZE or size > len(view) - 8:
        limit = f"the file ({len(view)} bytes)" if size > len(view) - 8 else "the 100 MiB limit"
        raise BundleError(
            f"{what}: header length {size} is larger than {limit}; the file is truncated or not safetensors"
        )
    header = _parse_header(bytes(view[8 : 8 + size]), what)
    metadata = _metadata(header.pop("__metadata__", {}), what)
    buffer = view[8 + size :]
    entries = {name: _entry(name, entry, len(buffer), what) for name, entry in header.items()}
    _check_layout(entries, len(buffer), what)
    tensors = {name: _decode(name, *entry, buffer, what) for name, entry in entries.items()}
    return tensors, metadata


def _parse_header(raw: bytes, what: str) -> dict[str, object]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_pairs)
    except _DuplicateKeyError as exc:
        raise BundleError(f"{what}: header has duplicate key {exc.args[0]!r}; each name must appear once") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(
            f"{what}: header is not valid UTF-8 JSON ({exc}); the file is corrupt or not safetensors"
        ) from None
    if not isinstance(header, dict):
        raise BundleError(
            f"{what}: header must be a JSON object, found {type(header).__name__}; "
            "the file is corrupt or not safetensors"
        )
    return header


def _metadata(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BundleError(f"{what}: __metadata__ must map str to str, found {value!r}; store only str values")
    return dict(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(name: str, entry: object, buffer_len: int, what: str) -> tuple[str, list, int, int]:
    where = f"{what}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise BundleError(f"{where}: entry must be an object with exactly {sorted(_ENTRY_KEYS)}, found {found}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _STORED:
        raise BundleError(f"{where}: unknown dtype {dtype!r} (known: {', '.join(_STORED)})")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise BundleError(f"{where}: shape must be a list of non-negative ints, found {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise BundleError(f"{where}: data_offsets must be two ints, found {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise BundleError(f"{where}: data_offsets {offsets} must satisfy 0 <= begin <= end")
    if end > buffer_len:
        raise BundleError(
            f"{where}: data_offsets end {end} runs past the data buffer ({buffer_len} bytes); the file is truncated"
        )
    expected = math.prod(shape) * np.dtype(_STORED[dtype]).itemsize
    if end - begin != expected:
        raise BundleError(
            f"{where}: data_offsets span {end - begin} bytes but shape {shape} of {dtype} "
            f"needs {expected}; the file is corrupt"
        )
    return dtype, shape, begin, end


def _check_layout(entries: Mapping[str, tuple[str, list, int, int]], size: int, what: str) -> None:
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != position:
            kind = "overlap" if begin < position else "leave a gap"
            raise BundleError(
                f"{what}: tensor {name!r} data_offsets begin at {begin} but the previous tensor "
                f"ends at {position}; offsets {kind}; the file is corrupt"
            )
        position = end
    if position != size:
        raise BundleError(
            f"{what}: tensors cover {position} bytes but the data buffer has {size}; "
            "offsets leave a gap of unused trailing bytes; the file is corrupt"
        )


def _decode(name: str, dtype: str, shape: list, begin: int, end: int, buffer: memoryview, what: str) -> np.ndarray:
    raw = np.frombuffer(buffer[begin:end], dtype=_STORED[dtype])
    if dtype == "BOOL":
        values = raw != 0
    elif dtype == "BF16":
        values = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        values = raw.astype(raw.dtype.newbyteorder("="))
    try:
        return values.reshape(shape)
    except ValueError as exc:
        raise BundleError(f"{what}: tensor {name!r}: shape {shape} is not supported ({exc})") from None
