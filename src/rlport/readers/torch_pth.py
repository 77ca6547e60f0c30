"""Read ``torch.save`` state_dicts into numpy arrays, without torch and without running pickle code.

Both layouts ``torch.save`` has written are read:

- zip (PyTorch >= 1.6): one top folder ``P`` holding ``P/data.pkl`` (the pickle; tensors refer to
  storages by persistent id ``('storage', StorageType, key, location, numel)``), ``P/data/<key>``
  (each storage's raw bytes), ``P/byteorder`` (``little``/``big``; absent means little) and
  ``P/version``.
- legacy (PyTorch < 1.6): five things in a row: a pickled magic number, the protocol version
  (1001), a sys-info dict, the main pickle (persistent ids add a sixth item, a storage view or
  None), a pickled list of storage keys; then for each key in that order an int64 little-endian
  element count and the storage's raw little-endian bytes.

Every pickle goes through :mod:`rlport.readers.safe_pickle` with only the tensor rebuilders
below added to its allow-list. Storage locations (``cuda:0``) are ignored: tensors load on CPU.
Tensors are views (offset, size, stride) of storages; each is checked against its storage and
copied out contiguous. bfloat16 is widened to float32.

Memory is bounded by the file's real size, never by what it declares: zip members are inflated
within :func:`~rlport.readers.untrusted.zip_limit`; a view has at most :data:`MAX_TENSOR_DIMS`
dimensions and must stay inside its storage's bytes; and since a stride-0 view repeats its data
for free, all tensors together hold at most ``max(TENSOR_EXPANSION_FLOOR, MAX_TENSOR_EXPANSION x
file size)`` bytes (and :data:`MAX_TENSOR_BYTES` each, :data:`MAX_TENSORS` in all).

Example:
    >>> state_dict = read_torch_file(zip_member_bytes, what="model.zip: policy.pth")   # doctest: +SKIP
    >>> state_dict["action_net.weight"].shape                                          # doctest: +SKIP
    (2, 64)
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.errors import BundleError, UnsupportedError
from rlport.readers import safe_pickle
from rlport.readers.untrusted import ZipReader, echo, zip_limit

__all__ = [
    "read_torch_file",
    "TORCH_GLOBALS",
    "MAX_TENSOR_BYTES",
    "MAX_TENSOR_DIMS",
    "MAX_TENSORS",
    "TENSOR_EXPANSION_FLOOR",
    "MAX_TENSOR_EXPANSION",
    "MAGIC_NUMBER",
]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_TENSOR_BYTES = 1 << 31
"""The largest tensor or storage read (2 GiB), whatever the file's size."""
MAX_TENSOR_DIMS = 32
"""The most dimensions a tensor may have (numpy 1's limit; real policy tensors have at most 4)."""
MAX_TENSORS = 1 << 16
"""The most tensors one file may hold (real policies hold tens, large networks thousands)."""
TENSOR_EXPANSION_FLOOR = 16 << 20
"""Bytes the tensors of any file may add up to however small it is (16 MiB): views may repeat their storage."""
MAX_TENSOR_EXPANSION = 16
"""Above the floor, a file's tensors may add up to at most this many times the file's size (stride-0 views)."""
_NUMPY = {"float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2", "int64": "i8", "int32": "i4",
          "int16": "i2", "int8": "i1", "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8", "bool": "u1",
          "complex64": "c8", "complex128": "c16"}  # fmt: skip
_STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "UntypedStorage": "untyped"}  # fmt: skip
_UNSUPPORTED = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "complex32")


@dataclass(eq=False)
class _Storage:
    key: str
    dtype: str  # a torch dtype name, or "untyped" (bytes)
    numel: int
    root: _Storage | None = None  # legacy storage views: the storage they slice
    offset: int = 0  # legacy storage views: where, in elements

    @property
    def itemsize(self) -> int:
        return 1 if self.dtype == "untyped" else np.dtype(_NUMPY[self.dtype]).itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


@dataclass(eq=False)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    metadata: Any = field(default=None)


def _ints(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise ValueError(f"a tensor size or stride is not a tuple of ints: {echo(value, 80)}")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _Tensor:
    """``torch._utils._rebuild_tensor``: a tensor record, checked against its storage later."""
    if not isinstance(storage, _Storage) or type(storage_offset) is not int:
        raise ValueError("a tensor does not refer to a storage")
    return _Tensor(storage, storage_offset, _ints(size), _ints(stride), storage.dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    tensor.metadata = metadata
    return tensor


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    """For dtypes without a legacy storage class (uint16...): untyped storage plus a dtype global."""
    tensor = _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, metadata)
    tensor.dtype = (safe_pickle.global_name(dtype) or "?").removeprefix("torch.")
    return tensor


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> _Tensor:
    if not isinstance(data, _Tensor):
        raise ValueError("a Parameter does not wrap a tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> _Tensor:
    """``torch._tensor._rebuild_from_type_v2``: a plain tensor or Parameter with Python attributes (dropped)."""
    if func not in _REBUILDERS or safe_pickle.global_name(new_type) not in _TENSOR_TYPES:
        raise ValueError(f"a tensor subclass {safe_pickle.global_name(new_type)} is not supported")
    return func(*args)


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)
_TENSOR_TYPES = ("torch.Tensor", "torch.nn.parameter.Parameter")
_REFS = [f"torch.{s}" for s in _STORAGES] + [f"torch.cuda.{s}" for s in _STORAGES if s != "UntypedStorage"]
_REFS += ["torch.storage.UntypedStorage", *_TENSOR_TYPES]
_REFS += [f"torch.{name}" for name in (*_NUMPY, *_UNSUPPORTED)]
TORCH_GLOBALS: dict[str, Any] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    **{name: safe_pickle.ref(name) for name in _REFS},
}
"""The globals a torch pickle may name on top of safe_pickle's allow-list (storage types, dtypes)."""


def _persistent_loader(storages: dict[str, _Storage]):
    """torch's persistent ids -> storage records (``storages`` collects them by key)."""

    def persistent_load(pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
            raise ValueError(f"unexpected persistent id {echo(pid)}; only tensor storages are read")
        _, storage_type, key, location, numel = pid[:5]
        dtype = _STORAGES.get((safe_pickle.global_name(storage_type) or "").rsplit(".", 1)[-1])
        if dtype is None or not isinstance(key, str) or not isinstance(location, (str, bytes)):
            raise ValueError(f"bad storage reference {echo(pid)}")
        if type(numel) is not int or not 0 <= numel <= MAX_TENSOR_BYTES:
            raise ValueError(f"storage {echo(key)} claims {echo(numel)} elements")
        storage = storages.setdefault(key, _Storage(key, dtype, numel))
        if (storage.dtype, storage.numel, storage.root) != (dtype, numel, None):
            raise ValueError(f"storage {echo(key)} is referred to with two types or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        view_key, offset, size = view
        if not isinstance(view_key, str) or type(offset) is not int or type(size) is not int or view_key == key:
            raise ValueError(f"bad storage view {echo(view)}")
        if not (0 <= offset <= numel and 0 <= size <= numel - offset):
            raise ValueError(f"storage view {echo(view_key)} (offset {offset}, {size} elements) is outside its "
                             f"storage of {numel} elements")  # fmt: skip
        view_storage = storages.setdefault(view_key, _Storage(view_key, dtype, size, storage, offset))
        if view_storage.root is not storage or (view_storage.offset, view_storage.numel) != (offset, size):
            raise ValueError(f"storage view {echo(view_key)} is referred to in two ways")
        return view_storage

    return persistent_load


def _load_main(stream: io.BytesIO, what: str) -> tuple[Any, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    obj = safe_pickle.load(stream, what=what, persistent_load=_persistent_loader(storages), extra_globals=TORCH_GLOBALS)
    return obj, {key: s for key, s in storages.items() if s.root is None}


# ---- the two layouts -----------------------------------------------------------------------


def _member(reader: ZipReader, name: str, what: str, size: int | None = None) -> bytes:
    try:
        info = reader.archive.getinfo(name)
    except KeyError:
        raise BundleError(f"{what}: the archive has no member {echo(name)}") from None
    if info.file_size > MAX_TENSOR_BYTES or (size is not None and info.file_size != size):
        raise BundleError(f"{what}: member {echo(name)} holds {info.file_size} bytes, expected {size}")
    return reader.read(info)


def _read_zip(data: bytes, what: str, size: int) -> tuple[Any, dict[str, bytes], bool]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(f"{what}: not a readable torch zip archive ({echo(str(exc))})") from exc
    for name in names:
        if name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name:
            raise BundleError(f"{what}: refused archive member {echo(name)}: not a safe relative path")
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1 or len(set(names)) != len(names):
        raise BundleError(f"{what}: expected one PREFIX/data.pkl and unique member names in a torch archive")
    reader = ZipReader(archive, zip_limit(size), what)
    prefix = pickles[0].split("/")[0]
    order = _member(reader, f"{prefix}/byteorder", what) if f"{prefix}/byteorder" in names else b"little"
    version = _member(reader, f"{prefix}/version", what).strip() if f"{prefix}/version" in names else b"1"
    if order not in (b"little", b"big") or not version.isdigit():
        raise BundleError(f"{what}: unknown byte order {order[:20]!r} or version {version[:20]!r}")
    obj, roots = _load_main(io.BytesIO(_member(reader, pickles[0], what)), f"{what}: {pickles[0]}")
    raws = {key: _member(reader, f"{prefix}/data/{key}", what, s.nbytes) for key, s in roots.items()}
    return obj, raws, order == b"big"


def _read_legacy(data: bytes, what: str) -> tuple[Any, dict[str, bytes], bool]:
    if not data.startswith(b"\x80"):  # legacy files begin with a pickle PROTO opcode (then the magic number)
        raise BundleError(f"{what}: not a PyTorch file (neither a zip archive nor the legacy format)")
    stream = io.BytesIO(data)
    try:
        magic = safe_pickle.load(stream, what=what)
    except BundleError:
        magic = None
    if magic != MAGIC_NUMBER:
        raise BundleError(f"{what}: not a PyTorch file (neither a zip archive nor the legacy format)")
    if (protocol := safe_pickle.load(stream, what=what)) != LEGACY_PROTOCOL:
        raise BundleError(
            f"{what}: legacy torch protocol {echo(protocol)} is not supported (expected {LEGACY_PROTOCOL})"
        )
    safe_pickle.load(stream, what=f"{what}: sys info")
    obj, roots = _load_main(stream, f"{what}: main pickle")
    keys = safe_pickle.load(stream, what=f"{what}: storage keys")
    if not isinstance(keys, list) or len(set(keys)) != len(keys) or set(keys) != set(roots):
        raise BundleError(f"{what}: its storage key list does not match the storages its tensors use")
    raws = {}
    for key in keys:
        header = stream.read(8)
        count = int.from_bytes(header, "little", signed=True)
        raws[key] = stream.read(roots[key].nbytes)
        if len(header) != 8 or count != roots[key].numel or len(raws[key]) != roots[key].nbytes:
            raise BundleError(
                f"{what}: storage {echo(key)} is truncated or has {count} elements, not {roots[key].numel}"
            )
    return obj, raws, False


# ---- tensors -------------------------------------------------------------------------------


def _decode(raw: bytes, dtype: str, big_endian: bool) -> np.ndarray:
    """Raw storage bytes as a 1-D native-order array (bfloat16 widened to float32)."""
    code = np.dtype(_NUMPY[dtype]).newbyteorder(">" if big_endian else "<")
    array = np.frombuffer(raw, code, count=len(raw) // code.itemsize)
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    if dtype == "bool":
        return array != 0
    return array.astype(code.newbyteorder("="))


def _storage_bytes(storage: _Storage, raws: dict[str, bytes], what: str) -> bytes:
    if storage.root is None:
        return raws[storage.key]
    start, nbytes = storage.offset * storage.itemsize, storage.nbytes
    raw = raws[storage.root.key]
    if storage.offset < 0 or start + nbytes > len(raw):
        raise BundleError(f"{what}: storage view {echo(storage.key)} reaches past its storage {echo(storage.root.key)}")
    return raw[start : start + nbytes]


def _check_view(tensor: _Tensor, base: np.ndarray, where: str, left: int) -> None:
    """Refuse a view outside its storage, or one needing more bytes than ``left`` (what the file may still add)."""
    size, stride, offset = tensor.size, tensor.stride, tensor.offset
    if len(size) != len(stride) or len(size) > MAX_TENSOR_DIMS or any(not 0 <= n <= MAX_TENSOR_BYTES for n in size):
        raise BundleError(
            f"{where} has size {echo(size)} and stride {echo(stride)}; expected at most {MAX_TENSOR_DIMS} "
            f"dimensions of 0 to {MAX_TENSOR_BYTES} each, one stride per size"
        )
    nbytes = math.prod(size) * base.itemsize
    if nbytes > min(MAX_TENSOR_BYTES, left):
        raise BundleError(f"{where} would need {nbytes} bytes, over the {min(MAX_TENSOR_BYTES, left)} this file may "
                          f"still expand to (at most {MAX_TENSOR_BYTES} a tensor, {MAX_TENSOR_EXPANSION} times the "
                          "file's size in all); its views repeat data far beyond what the file holds")  # fmt: skip
    if nbytes == 0:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or any(s < 0 for s in stride) or last >= base.size:
        raise BundleError(f"{where} (offset {offset}, size {echo(size)}, stride {echo(stride)}) reaches past its "
                          f"storage of {base.size} elements")  # fmt: skip


def _materialize(
    tensor: _Tensor, raws: dict[str, bytes], big_endian: bool, where: str, cache: dict, left: int
) -> np.ndarray:
    """The tensor as a C-contiguous array, checked against its storage and the bytes ``left`` to the file."""
    if tensor.dtype not in _NUMPY:
        raise UnsupportedError(f"{where} has dtype {echo(tensor.dtype)}; supported: {', '.join(_NUMPY)}")
    if tensor.storage.dtype not in (tensor.dtype, "untyped") or tensor.metadata:
        raise UnsupportedError(f"{where}: a {tensor.dtype} view of {tensor.storage.dtype} data or conj/neg bits")
    key = (tensor.storage.key, tensor.dtype)  # a storage many tensors share is decoded once
    if key not in cache:
        cache[key] = _decode(_storage_bytes(tensor.storage, raws, where), tensor.dtype, big_endian)
    base = cache[key]
    _check_view(tensor, base, where, left)
    if math.prod(tensor.size) == 0:
        return np.zeros(tensor.size, base.dtype)
    # a size-1 dimension's stride is never followed: 0 keeps numpy from overflowing on a hostile one
    strides = tuple(s * base.itemsize if n > 1 else 0 for n, s in zip(tensor.size, tensor.stride, strict=True))
    view = np.lib.stride_tricks.as_strided(base[tensor.offset :], tensor.size, strides, writeable=False)
    return np.array(view, order="C")


def _flatten(
    obj: Any, prefix: str, out: dict[str, _Tensor], what: str, depth: int = 0, skip_none: bool = False
) -> None:
    if isinstance(obj, _Tensor) and prefix:
        out[prefix] = obj
    elif obj is None and skip_none and prefix:
        return  # an unset variable (SB3's log_ent_coef with a fixed ent_coef): nothing to keep
    elif isinstance(obj, dict) and depth < 16:
        for key, value in obj.items():
            name = f"{prefix}.{key}" if prefix else key
            if not isinstance(key, str) or name in out:
                raise BundleError(f"{what}: state_dict key {echo(key)} is not a string or is repeated")
            _flatten(value, name, out, what, depth + 1, skip_none)
    else:
        found = safe_pickle.global_name(obj) or type(obj).__name__
        raise BundleError(f"{what}: expected a state_dict (tensors by name); {prefix or 'the top level'} is {found}")


def read_torch_file(
    data: bytes, *, what: str, file_size: int | None = None, skip_none: bool = False
) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``-d state_dict as numpy arrays; torch is not needed or imported.

    Args:
        data: the file's bytes (zip or legacy layout).
        what: what the file is, for error messages.
        file_size: the size on disk of the file ``data`` came from, when it was inflated out of
            another archive (an SB3 ``.zip``): the memory limits scale with it, not with ``data``.
        skip_none: leave out entries that are None instead of refusing them (SB3's ``pytorch_variables.pth``
            holds ``log_ent_coef = None`` when SAC/TQC ran with a fixed ``ent_coef``).

    Returns:
        Tensor name -> C-contiguous array, in the file's order; nested dicts are flattened
        with dots (``{"a": {"b": t}}`` -> ``"a.b"``).

    Raises:
        BundleError: not a torch file, truncated, corrupt, or not a dict of tensors.
        UnsafeFileError: a pickle inside asks for anything beyond tensors and containers.
        UnsupportedError: a dtype numpy cannot hold (float8...) or a tensor subclass.
    """
    size = len(data) if file_size is None else min(len(data), file_size)
    if data[:4] == b"PK\x03\x04":
        obj, raws, big_endian = _read_zip(data, what, size)
    elif data[257:262] == b"ustar":
        raise UnsupportedError(f"{what}: the tar-based torch format (PyTorch < 0.4) is not supported; re-save it")
    else:
        obj, raws, big_endian = _read_legacy(data, what)
    tensors: dict[str, _Tensor] = {}
    _flatten(obj, "", tensors, what, skip_none=skip_none)
    if len(tensors) > MAX_TENSORS:
        raise BundleError(f"{what} holds {len(tensors)} tensors, more than {MAX_TENSORS}; not a policy's state_dict")
    cache: dict[tuple[str, str], np.ndarray] = {}
    left = max(TENSOR_EXPANSION_FLOOR, MAX_TENSOR_EXPANSION * size)
    arrays = {}
    for name, tensor in tensors.items():
        arrays[name] = _materialize(tensor, raws, big_endian, f"{what}: tensor {echo(name)}", cache, left)
        left -= arrays[name].nbytes
    return arrays
