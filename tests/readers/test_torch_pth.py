"""The torch-free ``torch.save`` reader, checked against ``torch.load(weights_only=True)``."""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from rlport.errors import BundleError, RlportError, UnsafeFileError, UnsupportedError
from rlport.readers.torch_pth import read_torch_file
from zoo import needs_zoo, zoo_files, zoo_params, zoo_sample_path

ZOO = zoo_sample_path()
LEGACY_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int16, torch.int32,
                 torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128]  # fmt: skip
ZIP_DTYPES = [*LEGACY_DTYPES, torch.uint16, torch.uint32, torch.uint64]  # torch's legacy writer cannot save these


def state_dict(dtypes) -> collections.OrderedDict:
    """Every dtype plus the awkward cases: views, a shared storage, 0-d, empty, stride 0, a Parameter."""
    gen = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    for dtype in dtypes:
        values = torch.randn(3, 4, generator=gen, dtype=torch.complex64 if dtype.is_complex else torch.float32)
        sd[str(dtype).removeprefix("torch.")] = (values * 50).to(dtype)
    base = torch.arange(24.0).reshape(4, 6)
    sd["transposed"] = base.t()  # non-contiguous
    sd["rows"] = base[1:3]  # same storage, offset
    sd["cols"] = base[:, 2:5]  # same storage, offset and strides
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 5)
    sd["expanded"] = torch.tensor([1.0, 2.0]).expand(3, 2)  # stride 0
    sd["param"] = torch.nn.Parameter(torch.ones(2, 2))
    sd["nested"] = {"inner": torch.arange(3)}
    return sd


def save(obj, zip_format: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def flat(d, prefix=""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def assert_matches_torch(data: bytes, got: dict[str, np.ndarray], **load_kwargs) -> None:
    expected = dict(flat(torch.load(io.BytesIO(data), weights_only=True, map_location="cpu", **load_kwargs)))
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        tensor = tensor.detach()
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        assert got[name].flags.c_contiguous and got[name].flags.writeable


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_every_dtype_and_view_matches_torch_load(zip_format):
    data = save(state_dict(ZIP_DTYPES if zip_format else LEGACY_DTYPES), zip_format)
    got = read_torch_file(data, what="t.pth")
    assert_matches_torch(data, got)
    assert got["bfloat16"].dtype == np.float32 and got["bool"].dtype == np.bool_
    assert got["scalar"].shape == () and got["empty"].shape == (0, 5) and "nested.inner" in got


def test_empty_state_dict():
    assert read_torch_file(save({}), what="t") == {}


# ---- rewriting saved files -----------------------------------------------------------------


def rewrite_strings(pickled: bytes, old: str, new: str) -> bytes:
    """Replace every string constant ``old`` in a protocol-2 pickle, fixing its length prefix."""
    out, last = bytearray(), 0
    ops = list(pickletools.genops(pickled))
    for (op, arg, pos), (_, _, end) in zip(ops, [*ops[1:], (None, None, len(pickled))], strict=True):
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE") and arg == old:
            encoded = new.encode()
            out += pickled[last:pos] + b"X" + struct.pack("<I", len(encoded)) + encoded
            last = end
    return bytes(out + pickled[last:])


def pickle_end(data: bytes, start: int) -> int:
    """Where the pickle starting at ``start`` ends (just after its STOP)."""
    for op, _, pos in pickletools.genops(io.BytesIO(data[start:])):
        if op.name == "STOP":
            return start + pos + 1
    raise AssertionError("no STOP")


def legacy_parts(data: bytes) -> list[bytes]:
    """magic, protocol, sys_info, main pickle, keys pickle, raw storages."""
    parts, pos = [], 0
    for _ in range(5):
        end = pickle_end(data, pos)
        parts.append(data[pos:end])
        pos = end
    return [*parts, data[pos:]]


def rewrite_zip(data: bytes, change) -> bytes:
    """A copy of a torch zip whose members pass through ``change(name, bytes) -> (name, bytes) | None``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            changed = change(info.filename, src.read(info))
            if changed is not None:
                dst.writestr(changed[0], changed[1])
    return out.getvalue()


def edit_data_pkl(data: bytes, edit) -> bytes:
    return rewrite_zip(data, lambda n, b: (n, edit(b) if n.endswith("/data.pkl") else b))


def edit_legacy_main(data: bytes, edit) -> bytes:
    parts = legacy_parts(data)
    parts[3] = edit(parts[3])
    return b"".join(parts)


EDITORS = {"zip": (True, edit_data_pkl), "legacy": (False, edit_legacy_main)}


@pytest.mark.parametrize("layout", list(EDITORS))
def test_cuda_locations_load_on_cpu(layout):
    zip_format, edit = EDITORS[layout]
    data = save(state_dict([torch.float32, torch.int64]), zip_format)
    cuda = edit(data, lambda p: rewrite_strings(p, "cpu", "cuda:0"))
    assert b"cuda:0" in cuda
    got = read_torch_file(cuda, what="t")
    assert_matches_torch(cuda, got)


@pytest.mark.parametrize("layout", list(EDITORS))
def test_typed_cuda_storage_classes_load_on_cpu(layout):
    zip_format, edit = EDITORS[layout]
    data = save({"w": torch.randn(3, 2), "b": torch.randn(2)}, zip_format)
    cuda = edit(
        data,
        lambda p: rewrite_strings(p, "cpu", "cuda:1").replace(
            b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n"
        ),
    )
    assert b"torch.cuda\nFloatStorage" in cuda
    got = read_torch_file(cuda, what="t")
    np.testing.assert_array_equal(got["w"], read_torch_file(data, what="t")["w"])


def test_big_endian_archive():
    data = save({"w": torch.randn(3, 2), "b": torch.arange(4, dtype=torch.float32)})

    def swap(name, raw):
        if name.endswith("/byteorder"):
            return name, b"big"
        if "/data/" in name:
            return name, np.frombuffer(raw, "<f4").astype(">f4").tobytes()
        return name, raw

    big = rewrite_zip(data, swap)
    assert_matches_torch(big, read_torch_file(big, what="t"))


def test_torch_is_not_imported(tmp_path):
    path = tmp_path / "sd.pth"
    path.write_bytes(save({"w": torch.ones(2, 3)}, zip_format=False))
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rlport.readers.torch_pth import read_torch_file\n"
        f"print(read_torch_file(open({str(path)!r}, 'rb').read(), what='t')['w'].sum())\n"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "6.0"
    )


# ---- real files ----------------------------------------------------------------------------


def _zoo_pth():
    for path in zoo_files("*/*/*.zip"):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".pth"):
                    yield pytest.param(path, name, id=f"{path.parent.name}-{name}")


@needs_zoo
@pytest.mark.parametrize("path, member", zoo_params(list(_zoo_pth()), width=2))
def test_zoo_files(path, member):
    """Every policy.pth (zip and legacy, CPU and CUDA) equals torch.load; optimizer states are refused clearly."""
    data = zipfile.ZipFile(path).read(member)
    if "optimizer" in member:
        with pytest.raises(BundleError, match="expected a state_dict|not a string"):
            read_torch_file(data, what=member)
        return
    assert_matches_torch(data, read_torch_file(data, what=member))


@needs_zoo
def test_zoo_has_both_layouts_and_cuda_tags():
    sac = zipfile.ZipFile(ZOO / "sac/Pendulum-v1_1/Pendulum-v1.zip").read("policy.pth")
    assert not sac.startswith(b"PK") and len(read_torch_file(sac, what="sac")) > 0
    her = zipfile.ZipFile(ZOO / "her/PandaReach-v1_1/PandaReach-v1.zip").read("policy.pth")
    assert her.startswith(b"PK") and b"cuda" in her


# ---- hostile and damaged files -------------------------------------------------------------


class Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("layout", list(EDITORS))
def test_hostile_pickle_inside_is_refused(layout, tmp_path):
    zip_format, edit = EDITORS[layout]
    target = tmp_path / "pwned"
    payload = pickle.dumps({"w": Reduce(os.system, (f"touch '{target}'",))}, protocol=2)
    data = edit(save({"w": torch.ones(2)}, zip_format), lambda _: payload)
    with pytest.raises(UnsafeFileError, match=rf"{os.system.__module__}\.system"):
        read_torch_file(data, what="t")
    assert not target.exists()


class StorageRef:
    def __init__(self, key, numel, location="cpu", storage_type=torch.FloatStorage):
        self.key, self.numel, self.location, self.storage_type = key, numel, location, storage_type


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", obj.storage_type, obj.key, obj.location, obj.numel)
        return None


def handmade_zip(tensors: dict, storages: dict[str, bytes], names: dict[str, str] | None = None) -> bytes:
    """A torch zip written by hand: ``tensors`` pickled with torch's persistent ids, raw ``storages``."""
    pickled = io.BytesIO()
    TorchPickler(pickled, protocol=2).dump(tensors)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
        for name, text in (names or {}).items():
            archive.writestr(name, text)
    return out.getvalue()


FOUR = np.arange(4, dtype="<f4").tobytes()


def test_handmade_zip_reads():
    data = handmade_zip({"a": TensorRef(StorageRef("0", 4), 1, (3,), (1,))}, {"0": FOUR})
    np.testing.assert_array_equal(read_torch_file(data, what="t")["a"], [1, 2, 3])


@pytest.mark.parametrize(
    "tensor, storages, message",
    [
        (TensorRef(StorageRef("0", 4), 2, (3,), (1,)), {"0": FOUR}, "reaches past its storage"),
        (TensorRef(StorageRef("0", 4), 0, (2, 2), (3, 1)), {"0": FOUR}, "reaches past its storage"),
        (TensorRef(StorageRef("0", 4), -1, (1,), (1,)), {"0": FOUR}, "reaches past its storage"),
        (TensorRef(StorageRef("0", 4), 3, (2,), (-1,)), {"0": FOUR}, "reaches past its storage"),
        (TensorRef(StorageRef("0", 4), 0, (2,), (1, 1)), {"0": FOUR}, "size"),
        (TensorRef(StorageRef("0", 4), 0, (10**6, 10**6), (0, 0)), {"0": FOUR}, "would need"),
        (TensorRef(StorageRef("0", 5), 0, (4,), (1,)), {"0": FOUR}, "expected 20"),
        (TensorRef(StorageRef("0", 2**40), 0, (4,), (1,)), {"0": FOUR}, "claims"),
        (TensorRef(StorageRef("1", 4), 0, (4,), (1,)), {"0": FOUR}, "no member 'archive/data/1'"),
        (TensorRef(StorageRef("0", 4), 0, "4", (1,)), {"0": FOUR}, "not a tuple of ints"),
        (TensorRef(StorageRef(7, 4), 0, (4,), (1,)), {"0": FOUR}, "bad storage reference"),
        (TensorRef(StorageRef("0", 4, storage_type=torch.nn.ReLU), 0, (4,), (1,)), {"0": FOUR}, "bad storage"),
        ([TensorRef(StorageRef("0", 4), 0, (4,), (1,))], {"0": FOUR}, "expected a state_dict"),
    ],
)
def test_damaged_tensors_are_bundle_errors(tensor, storages, message):
    tensors = tensor if isinstance(tensor, list) else {"a": tensor}
    with pytest.raises(BundleError, match=message):
        read_torch_file(handmade_zip(tensors, storages), what="t")


def test_stride_0_views_are_bounded_by_the_file_size():
    """A 4-byte storage viewed as 12 MiB four times: each under the per-tensor limit, together over the budget."""
    storage = StorageRef("0", 1)
    tensors = {f"w{i}": TensorRef(storage, 0, (3 << 20,), (0,)) for i in range(4)}
    data = handmade_zip(tensors, {"0": FOUR[:4]})
    assert len(data) < 1024
    with pytest.raises(BundleError, match=r"'w1' would need 12582912 bytes, over the 4194304 this file may still"):
        read_torch_file(data, what="t")


@pytest.mark.parametrize(
    "offset, size, stride, message",
    [
        (0, (1,) * 40, (0,) * 40, "at most 32 dimensions"),
        (0, (0, 10**30), (1, 1), "dimensions of 0 to"),
        (0, (2,), (2**70,), "reaches past"),
        (0, (2, 2), (1, -(2**70)), "reaches past"),
        (2**70, (1,), (1,), "reaches past"),
        (-(2**70), (1,), (1,), "reaches past"),
    ],
    ids=["40-dims", "huge-empty", "huge-stride", "huge-negative-stride", "huge-offset", "huge-negative-offset"],
)
def test_hostile_sizes_strides_and_offsets(offset, size, stride, message):
    data = handmade_zip({"a": TensorRef(StorageRef("0", 4), offset, size, stride)}, {"0": FOUR})
    with pytest.raises(BundleError, match=message):
        read_torch_file(data, what="t")


def test_a_huge_stride_on_a_size_1_dimension_is_never_followed():
    data = handmade_zip({"a": TensorRef(StorageRef("0", 4), 1, (1, 3), (2**70, 1))}, {"0": FOUR})
    np.testing.assert_array_equal(read_torch_file(data, what="t")["a"], [[1, 2, 3]])


def test_a_deflated_storage_bomb_is_refused_before_inflating():
    """256 MiB of zeros deflated into about 1 MiB: over what a file of that size may expand to."""
    numel = 1 << 26
    pickled, out = io.BytesIO(), io.BytesIO()
    TorchPickler(pickled, protocol=2).dump({"a": TensorRef(StorageRef("0", numel), 0, (numel,), (1,))})
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        with archive.open("archive/data/0", "w") as member:
            for _ in range(16):
                member.write(bytes(16 << 20))
    with pytest.raises(BundleError, match=r"claim 268435\d+ uncompressed bytes, more than the 67108864"):
        read_torch_file(out.getvalue(), what="t")


def test_too_many_tensors_are_refused():
    shared = TensorRef(StorageRef("0", 4), 0, (4,), (1,))  # one pickled tensor, named 65537 times (the memo)
    data = handmade_zip({f"t{i}": shared for i in range(65537)}, {"0": FOUR})
    with pytest.raises(BundleError, match="65537 tensors, more than 65536"):
        read_torch_file(data, what="t")


class ViewPickler(pickle.Pickler):
    """torch's legacy persistent ids with a chosen storage view (key, offset, size)."""

    def __init__(self, file, view):
        super().__init__(file, protocol=2)
        self.view = view

    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", obj.storage_type, "root", obj.location, obj.numel, self.view)
        return None


@pytest.mark.parametrize("view", [("v", -1, 2), ("v", 3, 5), ("v", 0, -1), ("v", 2**70, 1)])
def test_legacy_storage_views_outside_their_storage(view):
    parts = legacy_parts(save({"w": torch.ones(3)}, zip_format=False))
    main = io.BytesIO()
    ViewPickler(main, view).dump({"v": TensorRef(StorageRef("root", 4), 0, (1,), (1,))})
    data = b"".join(parts[:3]) + main.getvalue() + pickle.dumps(["root"], 2) + struct.pack("<q", 4) + FOUR
    with pytest.raises(BundleError, match="outside its storage"):
        read_torch_file(data, what="t")


def test_one_storage_with_two_dtypes_is_refused():
    tensors = {"a": TensorRef(StorageRef("0", 4), 0, (4,), (1,)),
               "b": TensorRef(StorageRef("0", 2, storage_type=torch.DoubleStorage), 0, (2,), (1,))}  # fmt: skip
    with pytest.raises(BundleError, match="two types or sizes"):
        read_torch_file(handmade_zip(tensors, {"0": FOUR}), what="t")


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "archive/../../x", "archive\\x"])
def test_unsafe_member_names_are_refused(name):
    data = handmade_zip({"a": TensorRef(StorageRef("0", 4), 0, (4,), (1,))}, {"0": FOUR}, {name: "x"})
    with pytest.raises(BundleError, match="not a safe relative path"):
        read_torch_file(data, what="t")


def test_layout_errors():
    good = {"a": TensorRef(StorageRef("0", 4), 0, (4,), (1,))}
    with pytest.raises(BundleError, match="one PREFIX/data.pkl"):
        read_torch_file(handmade_zip(good, {"0": FOUR}, {"other/data.pkl": "x"}), what="t")
    with pytest.raises(BundleError, match="byte order"):
        read_torch_file(handmade_zip(good, {"0": FOUR}, {"archive/byteorder": "middle"}), what="t")
    with pytest.raises(BundleError, match="not a PyTorch file"):
        read_torch_file(b"\x00" * 100, what="t")
    with pytest.raises(BundleError, match="not a PyTorch file"):
        read_torch_file(b"", what="t")
    with pytest.raises(UnsupportedError, match="tar"):
        read_torch_file(b"\x00" * 257 + b"ustar" + b"\x00" * 300, what="t")


def test_unsupported_dtype():
    data = save({"f8": torch.zeros(2, dtype=torch.float8_e4m3fn)})
    with pytest.raises(UnsupportedError, match="float8_e4m3fn"):
        read_torch_file(data, what="t")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_files_are_bundle_errors(zip_format):
    data = save(state_dict([torch.float32, torch.int64]), zip_format)
    for end in range(len(data)):  # every position: legacy files differ run to run (storage keys are addresses)
        with pytest.raises(BundleError):
            read_torch_file(data[:end], what="t")


def test_legacy_storage_errors():
    parts = legacy_parts(save({"w": torch.ones(3)}, zip_format=False))
    raw = parts[5]
    wrong_count = struct.pack("<q", 5) + raw[8:]
    with pytest.raises(BundleError, match="has 5 elements"):
        read_torch_file(b"".join(parts[:5]) + wrong_count, what="t")
    with pytest.raises(BundleError, match="storage key list"):
        read_torch_file(b"".join(parts[:4]) + pickle.dumps(["nope"], 2) + raw, what="t")
    with pytest.raises(BundleError, match="protocol"):
        read_torch_file(parts[0] + pickle.dumps(999, 2) + b"".join(parts[2:]), what="t")


def test_random_corruption_raises_only_rlport_errors():
    import random

    rng = random.Random(1)
    for zip_format in (True, False):
        data = save({"w": torch.randn(3, 2), "b": torch.arange(3)}, zip_format)
        for _ in range(150):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                read_torch_file(bytes(mutated), what="t")
            except RlportError:
                pass


class LegacyPickler(pickle.Pickler):
    """torch's legacy persistent ids: a sixth item, the storage view (key, offset, size)."""

    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            view = ("view0", 1, 2) if obj.key == "root-view" else None
            return ("storage", obj.storage_type, "root", obj.location, obj.numel, view)
        return None


def test_legacy_storage_views():
    parts = legacy_parts(save({"w": torch.ones(3)}, zip_format=False))
    main = io.BytesIO()
    LegacyPickler(main, protocol=2).dump({"v": TensorRef(StorageRef("root-view", 4), 0, (2,), (1,))})
    raw = struct.pack("<q", 4) + FOUR
    data = b"".join(parts[:3]) + main.getvalue() + pickle.dumps(["root"], 2) + raw
    np.testing.assert_array_equal(read_torch_file(data, what="t")["v"], [1.0, 2.0])


def test_old_rebuild_functions_and_tensor_attributes():
    tensor = torch.arange(4.0)
    tensor.note = "python attributes make torch use _rebuild_from_type_v2"
    data = save({"t": tensor})
    assert b"_rebuild_from_type_v2" in zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
    np.testing.assert_array_equal(read_torch_file(data, what="t")["t"], [0, 1, 2, 3])

    class OldTensorRef(TensorRef):
        def __reduce__(self):
            return torch._utils._rebuild_tensor, self.args[:4]

    old = handmade_zip({"a": OldTensorRef(StorageRef("0", 4), 2, (2,), (1,))}, {"0": FOUR})
    np.testing.assert_array_equal(read_torch_file(old, what="t")["a"], [2, 3])
