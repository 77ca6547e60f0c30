"""Tests for rlport.bundle.safetensors: round trips, byte-exact output, hostile inputs."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlport.bundle.safetensors import MAX_HEADER_SIZE, dumps, loads
from rlport.errors import BundleError

DTYPES = [
    np.float64, np.float32, np.float16,
    np.int64, np.int32, np.int16, np.int8,
    np.uint64, np.uint32, np.uint16, np.uint8,
    np.bool_,
]  # fmt: skip
DTYPE_IDS = [np.dtype(d).name for d in DTYPES]
SHAPES = {"scalar": (), "empty": (0,), "empty-2d": (3, 0), "vector": (5,), "3d": (2, 3, 4)}


def _sample(dtype: type, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) > 0.5)
    if dtype.kind == "f":
        return np.asarray(rng.standard_normal(shape) * 100, dtype=dtype)
    info = np.iinfo(dtype)
    return np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True))


def _file(header: dict | str, data: bytes = b"", length: int | None = None) -> bytes:
    """Build a safetensors file by hand from a header (dict or raw JSON text) and a buffer."""
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _entry(dtype: object = "F32", shape: object = (1,), offsets: object = (0, 4)) -> dict:
    """One header entry; tuples become JSON lists when the header is dumped."""
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


def _assert_same(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(loaded) == sorted(expected)
    for name, array in expected.items():
        assert loaded[name].dtype == array.dtype.newbyteorder("=")
        assert loaded[name].shape == array.shape
        np.testing.assert_array_equal(loaded[name], array)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_round_trip_every_dtype_and_shape(dtype, shape):
    tensors = {"t": _sample(dtype, shape)}
    loaded, metadata = loads(dumps(tensors))
    _assert_same(loaded, tensors)
    assert metadata == {}


def test_round_trip_many_tensors_with_metadata():
    tensors = {f"layer.{i}.{d}": _sample(d, (i, 2), seed=i) for i, d in enumerate(DTYPES)}
    meta = {"format": "rlport", "note": "ünïcode ✓", "": ""}
    loaded, metadata = loads(dumps(tensors, meta))
    _assert_same(loaded, tensors)
    assert metadata == meta


def test_empty_metadata_is_omitted():
    tensors = {"x": np.arange(3, dtype=np.int32)}
    assert dumps(tensors, {}) == dumps(tensors) == dumps(tensors, None)
    assert b"__metadata__" not in dumps(tensors, {})


def test_no_tensors_round_trips():
    assert loads(dumps({})) == ({}, {})
    assert loads(dumps({}, {"k": "v"})) == ({}, {"k": "v"})


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2],
        np.arange(12, dtype=np.int64).reshape(3, 4).T,
        np.arange(6, dtype=">f8").reshape(2, 3),
        np.arange(6, dtype=">u2"),
        np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
    ],
    ids=["strided", "transposed", "big-endian-f8", "big-endian-u2", "fortran"],
)
def test_non_contiguous_and_big_endian_arrays_are_converted(array):
    loaded, _ = loads(dumps({"a": array}))
    assert loaded["a"].dtype == array.dtype.newbyteorder("=")
    assert loaded["a"].dtype.isnative
    np.testing.assert_array_equal(loaded["a"], array)


def test_loaded_arrays_are_independent_writable_copies():
    source = bytearray(dumps({"a": np.zeros(3, np.float32), "b": np.zeros(2, np.int8)}))
    first, _ = loads(source)
    second, _ = loads(memoryview(source))
    source[-1] = 7  # changing the input afterwards changes nothing already loaded
    first["a"][0] = 1.0
    assert first["a"].flags.writeable and first["b"].flags.writeable
    assert second["a"].tolist() == [0.0, 0.0, 0.0] and second["b"].tolist() == [0, 0]
    assert first["b"].tolist() == [0, 0]


def test_loads_accepts_bytes_bytearray_and_memoryview():
    data = dumps({"a": np.arange(4, dtype=np.uint32)})
    for view in (data, bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        assert loads(view)[0]["a"].tolist() == [0, 1, 2, 3]


def test_bool_bytes_other_than_0_and_1_load_as_true():
    data = _file({"b": _entry("BOOL", (3,), (0, 3))}, b"\x00\x01\x02")
    assert loads(data)[0]["b"].tolist() == [False, True, True]


# ---------------------------------------------------------------- cross-check


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_our_bytes_load_in_safetensors(tmp_path, dtype):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {name: _sample(dtype, shape) for name, shape in SHAPES.items()}
    path = tmp_path / "ours.safetensors"
    path.write_bytes(dumps(tensors, {"by": "rlport"}))
    _assert_same(safetensors_numpy.load_file(str(path)), tensors)
    _assert_same(safetensors_numpy.load(path.read_bytes()), tensors)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_their_bytes_load_in_ours(tmp_path, dtype):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {name: _sample(dtype, shape, seed=1) for name, shape in SHAPES.items()}
    path = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "np"})
    loaded, metadata = loads(path.read_bytes(), what=path.name)
    _assert_same(loaded, tensors)
    assert metadata == {"format": "np"}
    assert loads(safetensors_numpy.save(tensors))[0].keys() == tensors.keys()


@pytest.mark.parametrize("shape", [(), (0,), (7,), (2, 3, 4)], ids=["scalar", "empty", "1d", "3d"])
def test_bf16_written_by_torch_is_widened_to_float32(shape):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    values = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 1000
    if values.numel() >= 7:
        values.view(-1)[:4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    tensor = values.to(torch.bfloat16)
    loaded, _ = loads(safetensors_torch.save({"w": tensor, "other": torch.ones(2)}))
    assert loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["w"], tensor.float().numpy())
    assert np.signbit(loaded["w"]).tolist() == np.signbit(tensor.float().numpy()).tolist()


# ---------------------------------------------------------------- byte-exact output


def test_same_tensors_in_any_insertion_order_give_identical_bytes():
    a, b, c = _sample(np.float32, (2, 2)), _sample(np.int8, (3,)), _sample(np.bool_, ())
    first = dumps({"c": c, "a": a, "b": b}, {"z": "1", "y": "2"})
    second = dumps({"b": b, "c": c, "a": a}, {"y": "2", "z": "1"})
    assert first == second == dumps({"a": a, "b": b, "c": c}, {"z": "1", "y": "2"})


def test_golden_bytes_written_from_the_spec():
    tensors = {"b": np.array([1, 2], dtype=">i2"), "a": np.array(1.5, dtype=np.float32)}
    header = (
        b'{"__metadata__":{"format":"pt"},'
        b'"a":{"data_offsets":[0,4],"dtype":"F32","shape":[]},'
        b'"b":{"data_offsets":[4,8],"dtype":"I16","shape":[2]}}'
    )
    assert len(header) == 137  # padded with 7 spaces to 144 = 0x90
    expected = (
        b"\x90\x00\x00\x00\x00\x00\x00\x00"  # header length, u64 little-endian
        + header
        + b"       "
        + b"\x00\x00\xc0\x3f"  # a: 1.5 as little-endian float32 (0x3fc00000)
        + b"\x01\x00\x02\x00"  # b: [1, 2] as little-endian int16
    )
    assert dumps(tensors, {"format": "pt"}) == expected


def test_golden_bytes_of_an_empty_file():
    assert dumps({}) == b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "


def test_header_is_ascii_json_padded_with_fewer_than_eight_spaces():
    for n in range(1, 12):
        data = dumps({"é" * n: np.zeros(n, np.uint8)})
        (size,) = struct.unpack("<Q", data[:8])
        header = data[8 : 8 + size]
        text = header.rstrip(b" ")
        assert size % 8 == 0 and size - len(text) < 8
        assert header.isascii()
        assert list(json.loads(text)) == ["é" * n]


# ---------------------------------------------------------------- writer rejections


@pytest.mark.parametrize(
    "array",
    [np.zeros(2, np.complex64), np.array([object()]), np.array(["ab"]), np.zeros(2, "M8[s]")],
    ids=["complex", "object", "str", "datetime"],
)
def test_dumps_rejects_unsupported_dtype(array):
    with pytest.raises(BundleError, match=r"tensor 'x' has dtype .* \(supported: BOOL, F16"):
        dumps({"x": array})


@pytest.mark.parametrize("name", ["", "__metadata__", 3, None], ids=repr)
def test_dumps_rejects_bad_name(name):
    with pytest.raises(BundleError, match="tensor name must be a non-empty str"):
        dumps({name: np.zeros(1)})


@pytest.mark.parametrize(
    "metadata",
    [{"k": 1}, {1: "v"}, {"k": None}, ["k"]],
    ids=["int-value", "int-key", "none", "list"],
)
def test_dumps_rejects_non_str_metadata(metadata):
    with pytest.raises(BundleError, match="metadata"):
        dumps({"x": np.zeros(1)}, metadata)


# ---------------------------------------------------------------- reader rejections

SMALL = dumps({"a": np.arange(3, dtype=np.int16), "b": np.ones((2, 2), np.float32)}, {"k": "v"})


def test_rejects_truncation_at_every_byte():
    for n in range(len(SMALL)):
        with pytest.raises(BundleError, match="truncated") as info:
            loads(SMALL[:n], what="w.safetensors")
        assert str(info.value).startswith("w.safetensors: ")


@pytest.mark.parametrize("data", [b"", b"\x00" * 7], ids=["empty", "seven-bytes"])
def test_rejects_data_shorter_than_the_length_prefix(data):
    with pytest.raises(BundleError, match="too short .* truncated"):
        loads(data)


@pytest.mark.parametrize("length", [2**64 - 1, 123456789, 9], ids=["u64-max", "large", "off-by-1"])
def test_rejects_header_length_larger_than_the_file(length):
    data = _file("{}", length=length)
    with pytest.raises(BundleError, match=rf"weights: header length {length} .* the file \(10"):
        loads(data, what="weights")


def test_rejects_header_length_over_the_limit_even_if_the_file_is_big_enough():
    data = struct.pack("<Q", MAX_HEADER_SIZE + 1) + b" " * (MAX_HEADER_SIZE + 1)
    with pytest.raises(BundleError, match="larger than the 100 MiB limit"):
        loads(data)


@pytest.mark.parametrize(
    "text",
    [
        b"\xff\xfe{}",
        b"not json",
        b"{",
        b'{"a": 1,}',
        b"\xef\xbb\xbf{}",
        b"[" * 100_000,
        b"1" * 5000,
    ],
    ids=["bad-utf8", "garbage", "unclosed", "trailing-comma", "bom", "deep-nesting", "huge-int"],
)
def test_rejects_header_that_is_not_json(text):
    with pytest.raises(BundleError, match="not valid UTF-8 JSON"):
        loads(struct.pack("<Q", len(text)) + text)


@pytest.mark.parametrize("text", ["[]", '"x"', "3", "null"], ids=["list", "str", "int", "null"])
def test_rejects_header_that_is_not_an_object(text):
    with pytest.raises(BundleError, match="must be a JSON object"):
        loads(_file(text))


@pytest.mark.parametrize(
    "text",
    [
        '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        '{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        '{"__metadata__":{"k":"1","k":"2"}}',
    ],
    ids=["tensor-name", "entry-key", "metadata-key"],
)
def test_rejects_duplicate_keys(text):
    with pytest.raises(BundleError, match="duplicate key"):
        loads(_file(text, b"\x00\x00"))


@pytest.mark.parametrize(
    "entry",
    [
        [],
        "F32",
        {"dtype": "F32", "shape": [1]},
        {**_entry(), "extra": 1},
    ],
    ids=["list", "str", "missing-offsets", "extra-key"],
)
def test_rejects_entry_that_is_not_dtype_shape_offsets(entry):
    with pytest.raises(BundleError, match="tensor 'x': entry must be an object with exactly"):
        loads(_file({"x": entry}, b"\x00" * 4))


@pytest.mark.parametrize("dtype", ["F8", "f32", "", 4, None, ["F32"]], ids=repr)
def test_rejects_unknown_dtype(dtype):
    with pytest.raises(BundleError, match=r"unknown dtype .*\(known: F64, F32, F16, BF16"):
        loads(_file({"x": _entry(dtype=dtype)}, b"\x00" * 4))


@pytest.mark.parametrize(
    "shape",
    [[-1], [1.0], [True], ["1"], [None], [[1]], 1, "1", {"0": 1}],
    ids=["negative", "float", "bool", "str-dim", "null-dim", "nested", "int", "str", "object"],
)
def test_rejects_shape_that_is_not_a_list_of_non_negative_ints(shape):
    with pytest.raises(BundleError, match="shape must be a list of non-negative ints"):
        loads(_file({"x": _entry(shape=shape)}, b"\x00" * 4))


@pytest.mark.parametrize(
    "offsets",
    [[0], [0, 4, 4], [0.0, 4], [False, 4], [0, "4"], "0,4", None],
    ids=["one", "three", "float", "bool", "str-end", "str", "null"],
)
def test_rejects_data_offsets_that_are_not_two_ints(offsets):
    with pytest.raises(BundleError, match="data_offsets must be two ints"):
        loads(_file({"x": _entry(offsets=offsets)}, b"\x00" * 4))


@pytest.mark.parametrize("offsets", [[4, 0], [-4, 0], [-1, 4]], ids=["reversed", "neg", "neg-begin"])
def test_rejects_data_offsets_out_of_order(offsets):
    with pytest.raises(BundleError, match=r"must satisfy 0 <= begin <= end"):
        loads(_file({"x": _entry(offsets=offsets)}, b"\x00" * 4))


def test_rejects_data_offsets_past_the_buffer():
    with pytest.raises(BundleError, match="end 8 runs past the data buffer .4 bytes.*truncated"):
        loads(_file({"x": _entry(shape=(2,), offsets=(0, 8))}, b"\x00" * 4))


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("F32", (2,)), ("F64", (1,)), ("U8", ()), ("F32", (0,)), ("BF16", (1,))],
    ids=["too-few-bytes", "wider-dtype", "scalar-u8", "zero-size", "bf16"],
)
def test_rejects_size_that_does_not_match_shape_and_dtype(dtype, shape):
    with pytest.raises(BundleError, match=r"data_offsets span 4 bytes but shape .* needs"):
        loads(_file({"x": _entry(dtype, shape, (0, 4))}, b"\x00" * 4))


@pytest.mark.parametrize(
    ("first", "second", "buffer", "cause"),
    [
        ((0, 4), (8, 12), 12, "offsets leave a gap"),
        ((4, 8), (8, 12), 12, "offsets leave a gap"),
        ((0, 4), (2, 6), 6, "offsets overlap"),
        ((0, 4), (0, 4), 4, "offsets overlap"),
        ((0, 4), (4, 8), 10, "cover 8 bytes but the data buffer has 10"),
    ],
    ids=["gap-between", "gap-at-start", "overlap", "same-range", "trailing-bytes"],
)
def test_rejects_offsets_that_do_not_tile_the_buffer(first, second, buffer, cause):
    header = {"a": _entry(offsets=first), "b": _entry(offsets=second)}
    with pytest.raises(BundleError, match=cause):
        loads(_file(header, b"\x00" * buffer))


def test_zero_size_tensors_may_share_an_offset():
    header = {
        "a": _entry(shape=(0,), offsets=(0, 0)),
        "b": _entry(shape=(1,), offsets=(0, 4)),
        "c": _entry(shape=(0, 3), offsets=(4, 4)),
        "d": _entry(shape=(2, 0), offsets=(4, 4)),
    }
    loaded, _ = loads(_file(header, b"\x00\x00\x80\x3f"))
    assert loaded["b"].tolist() == [1.0] and loaded["d"].shape == (2, 0)


@pytest.mark.parametrize("shape", [(0, 2**64), (0,) * 65], ids=["huge-dim", "too-many-dims"])
def test_rejects_shape_numpy_cannot_represent(shape):
    with pytest.raises(BundleError, match="shape .* is not supported"):
        loads(_file({"x": _entry(shape=shape, offsets=(0, 0))}))


@pytest.mark.parametrize(
    "metadata",
    [["k", "v"], "k=v", None, {"k": 1}, {"k": None}, {"k": {"nested": "v"}}],
    ids=["list", "str", "null", "int-value", "null-value", "nested"],
)
def test_rejects_metadata_that_is_not_str_to_str(metadata):
    with pytest.raises(BundleError, match=r"x\.safetensors: __metadata__ must map str to str"):
        loads(_file({"__metadata__": metadata}), what="x.safetensors")


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(SMALL) - 1),
            st.integers(0, 255) | st.sampled_from(b'0123456789-.eE[]{},:" '),
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 16),
)
def test_mutated_file_loads_or_raises_bundle_error(mutations, extra):
    data = bytearray(SMALL)
    for position, value in mutations:
        data[position] = value
    data += b"\x00" * extra
    try:
        tensors, metadata = loads(bytes(data))
    except BundleError:
        return
    assert all(isinstance(v, np.ndarray) for v in tensors.values())
    assert all(isinstance(v, str) for v in metadata.values())
