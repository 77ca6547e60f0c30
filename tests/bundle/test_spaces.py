"""Space specs: JSON round trip, equality, observation batching and every rejection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlport.bundle.manifest import canonical_json, parse_json
from rlport.bundle.spaces import (
    MAX_ELEMENTS,
    BoxSpec,
    DictSpec,
    DiscreteSpec,
    MultiBinarySpec,
    MultiDiscreteSpec,
    batch_observation,
    dummy_observation,
    is_image,
    item_shape,
    leaves,
    space_from_json,
)
from rlport.errors import ObservationError, SpaceError

INF = float("inf")

SPACES = {
    "box-uniform": BoxSpec.create(-1.0, 1.0, (3,)),
    "box-per-element": BoxSpec.create([[-1.0, 0.0], [-0.5, 2.0]], [[1.0, 0.25], [0.5, 3.0]], (2, 2)),
    "box-infinite": BoxSpec.create([-INF, 0.0], [INF, INF], (2,)),
    "box-all-infinite": BoxSpec.create(-INF, INF, (5,)),
    "box-float64": BoxSpec.create(0.1, 0.7, (2,), dtype="float64"),
    "box-float32-inexact": BoxSpec.create(0.1, 1 / 3, (2,), dtype="float32"),
    "box-scalar": BoxSpec.create(-2.0, 2.0, ()),
    "box-int": BoxSpec.create(-3, 7, (2,), dtype="int32"),
    "image-uint8": BoxSpec.create(0, 255, (3, 8, 6), dtype="uint8"),
    "box-bool": BoxSpec.create(False, True, (3,), dtype="bool"),
    "discrete": DiscreteSpec(4),
    "discrete-start": DiscreteSpec(3, start=-1),
    "multi-discrete": MultiDiscreteSpec((2, 3, 4), (3,), (0, 0, 0)),
    "multi-discrete-2d": MultiDiscreteSpec((2, 3, 4, 5), (2, 2), (0, 1, 0, -1), "int32"),
    "multi-binary": MultiBinarySpec((5,)),
    "multi-binary-2d": MultiBinarySpec((2, 3)),
    "dict-nested": DictSpec(
        (
            ("image", BoxSpec.create(0, 255, (1, 4, 4), dtype="uint8")),
            ("state", DictSpec((("pos", BoxSpec.create(-1.0, 1.0, (2,))), ("mode", DiscreteSpec(3))))),
            ("flags", MultiBinarySpec((2,))),
        )
    ),
}


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_json_round_trip(space):
    data = space.to_json()
    text = canonical_json(data)
    again = space_from_json(parse_json(text, "test"))
    assert again == space
    assert type(again) is type(space)
    assert canonical_json(again.to_json()) == text


@pytest.mark.parametrize("space", [s for s in SPACES.values() if isinstance(s, BoxSpec)], ids=lambda s: repr(s))
def test_box_round_trip_keeps_exact_bounds_and_dtype(space):
    again = space_from_json(json.loads(canonical_json(space.to_json())))
    assert again.dtype == space.dtype
    assert again.low.dtype == space.low.dtype and again.high.dtype == space.high.dtype
    np.testing.assert_array_equal(again.low, space.low)
    np.testing.assert_array_equal(again.high, space.high)


def test_box_json_encoding():
    assert SPACES["box-uniform"].to_json() == {
        "type": "box",
        "shape": [3],
        "dtype": "float32",
        "low": -1.0,
        "high": 1.0,
    }
    assert SPACES["box-infinite"].to_json()["low"] == ["-inf", 0.0]
    assert SPACES["box-all-infinite"].to_json()["high"] == "inf"
    assert SPACES["image-uint8"].to_json()["high"] == 255
    assert SPACES["box-per-element"].to_json()["low"] == [-1.0, 0.0, -0.5, 2.0]


def test_other_json_encodings():
    assert DiscreteSpec(3, 1).to_json() == {"type": "discrete", "n": 3, "start": 1}
    assert SPACES["multi-discrete-2d"].to_json() == {
        "type": "multi_discrete",
        "nvec": [2, 3, 4, 5],
        "shape": [2, 2],
        "start": [0, 1, 0, -1],
        "dtype": "int32",
    }
    assert MultiBinarySpec((2, 3)).to_json() == {"type": "multi_binary", "shape": [2, 3]}
    assert DictSpec((("a", DiscreteSpec(2)),)).to_json() == {
        "type": "dict",
        "spaces": [{"key": "a", "space": {"type": "discrete", "n": 2, "start": 0}}],
    }


def test_defaults_when_reading():
    assert space_from_json({"type": "discrete", "n": 3}) == DiscreteSpec(3, 0)
    assert space_from_json({"type": "multi_discrete", "nvec": [2, 3]}) == MultiDiscreteSpec((2, 3), (2,), (0, 0))


# ---- equality -------------------------------------------------------------------------------------


def test_equality():
    box = BoxSpec.create(-1.0, 1.0, (2,))
    assert box == BoxSpec.create(-1.0, 1.0, (2,))
    assert hash(box) == hash(BoxSpec.create(-1.0, 1.0, (2,)))
    assert box != BoxSpec.create(-1.0, 2.0, (2,))
    assert box != BoxSpec.create(-1.0, 1.0, (2,), dtype="float64")
    assert box != BoxSpec.create(-1.0, 1.0, (1, 2))
    assert box != DiscreteSpec(2)
    assert BoxSpec.create(-INF, INF, (2,)) == BoxSpec.create(-INF, INF, (2,))
    assert DiscreteSpec(3) != DiscreteSpec(3, start=1)
    assert MultiDiscreteSpec((2, 2), (2,), (0, 0)) != MultiDiscreteSpec((2, 2), (1, 2), (0, 0))
    a, b = DiscreteSpec(2), BoxSpec.create(0.0, 1.0, (1,))
    assert DictSpec((("a", a), ("b", b))) == DictSpec((("a", a), ("b", BoxSpec.create(0.0, 1.0, (1,)))))
    assert DictSpec((("a", a), ("b", b))) != DictSpec((("b", b), ("a", a))), "key order is significant"


# ---- rejections -------------------------------------------------------------------------------------

BAD_JSON = {
    "not-an-object": (["box"], "must be a JSON object"),
    "unknown-type": ({"type": "tuple"}, r"unknown space type 'tuple'; known: box, discrete"),
    "no-type": ({"shape": [2]}, "unknown space type None"),
    "box-missing-shape": ({"type": "box", "dtype": "float32", "low": 0, "high": 1}, "missing field 'shape'"),
    "box-missing-low": ({"type": "box", "shape": [2], "dtype": "float32", "high": 1}, "missing field 'low'"),
    "box-bad-dtype": (
        {"type": "box", "shape": [2], "dtype": "float33", "low": 0, "high": 1},
        "box dtype 'float33' is not the name of a numpy bool, integer or float dtype",
    ),
    "box-string-dtype": ({"type": "box", "shape": [2], "dtype": "str", "low": 0, "high": 1}, "'str' is not the name"),
    "box-record-dtype": ({"type": "box", "shape": [2], "dtype": [], "low": 0, "high": 1}, r"\[\] is not the name"),
    "box-huge": (
        {"type": "box", "shape": [4096, 4097], "dtype": "uint8", "low": 0, "high": 1},
        r"box space of shape \(4096, 4097\) has 16781312 elements, more than the limit of 16777216",
    ),
    "multi-binary-huge": ({"type": "multi_binary", "shape": [1 << 25]}, "more than the limit"),
    "box-nan-string": ({"type": "box", "shape": [1], "dtype": "float32", "low": "nan", "high": 1}, "found 'nan'"),
    "box-nan-float": ({"type": "box", "shape": [1], "dtype": "float32", "low": float("nan"), "high": 1}, "NaN"),
    "box-bool-bound": ({"type": "box", "shape": [1], "dtype": "float32", "low": True, "high": 1}, "found True"),
    "box-too-few-bounds": (
        {"type": "box", "shape": [2, 2], "dtype": "float32", "low": [0, 0, 0], "high": 1},
        r"expected 4 bounds for shape \(2, 2\), found 3",
    ),
    "box-too-many-bounds": (
        {"type": "box", "shape": [2], "dtype": "float32", "low": 0, "high": [1, 1, 1]},
        "expected 2 bounds",
    ),
    "box-negative-dim": ({"type": "box", "shape": [-1], "dtype": "float32", "low": 0, "high": 1}, ">= 0"),
    "box-float-dim": ({"type": "box", "shape": [2.0], "dtype": "float32", "low": 0, "high": 1}, "list of integers"),
    "box-uint8-out-of-range": (
        {"type": "box", "shape": [1], "dtype": "uint8", "low": 0, "high": 256},
        "256.0 is not a valid uint8 bound",
    ),
    "box-int-fraction": ({"type": "box", "shape": [1], "dtype": "int32", "low": 0.5, "high": 2}, "not a valid int32"),
    "box-int-infinite": (
        {"type": "box", "shape": [1], "dtype": "int64", "low": "-inf", "high": 2},
        "not a valid int64",
    ),
    "discrete-missing-n": ({"type": "discrete"}, "missing field 'n'"),
    "discrete-zero": ({"type": "discrete", "n": 0}, "positive integer"),
    "discrete-bool": ({"type": "discrete", "n": True}, "positive integer"),
    "discrete-float": ({"type": "discrete", "n": 3.0}, "positive integer"),
    "discrete-bad-start": ({"type": "discrete", "n": 3, "start": "0"}, "start must be an integer"),
    "multi-discrete-zero": ({"type": "multi_discrete", "nvec": [2, 0]}, ">= 1"),
    "multi-discrete-shape": ({"type": "multi_discrete", "nvec": [2, 3], "shape": [3]}, "do not agree"),
    "multi-discrete-start": ({"type": "multi_discrete", "nvec": [2, 3], "start": [0]}, "do not agree"),
    "multi-discrete-float-start": ({"type": "multi_discrete", "nvec": [2], "start": [0.5]}, "list of integers"),
    "multi-discrete-dtype": ({"type": "multi_discrete", "nvec": [2], "dtype": "float32"}, "integer dtype"),
    "multi-discrete-bad-dtype": ({"type": "multi_discrete", "nvec": [2], "dtype": None}, "None is not the name"),
    "multi-binary-zero": ({"type": "multi_binary", "shape": [0]}, ">= 1"),
    "multi-binary-missing": ({"type": "multi_binary"}, "missing field 'shape'"),
    "dict-not-a-list": ({"type": "dict", "spaces": {"a": {}}}, "'spaces' must be a list"),
    "dict-bad-entry": ({"type": "dict", "spaces": [{"key": "a"}]}, "needs 'key' and 'space'"),
    "dict-duplicate-key": (
        {"type": "dict", "spaces": [{"key": "a", "space": {"type": "discrete", "n": 2}}] * 2},
        "duplicate keys",
    ),
    "dict-key-not-string": (
        {"type": "dict", "spaces": [{"key": 1, "space": {"type": "discrete", "n": 2}}]},
        "non-empty strings",
    ),
    "dict-nested-bad": (
        {"type": "dict", "spaces": [{"key": "a", "space": {"type": "discrete", "n": -1}}]},
        "positive integer",
    ),
}


@pytest.mark.parametrize(("data", "message"), BAD_JSON.values(), ids=BAD_JSON.keys())
def test_from_json_rejects(data, message):
    with pytest.raises(SpaceError, match=message):
        space_from_json(data)


def test_element_limit_is_the_one_in_the_spec():
    assert MAX_ELEMENTS == 2**24
    BoxSpec.create(0, 1, (4096, 4096), dtype="uint8")  # exactly at the limit
    with pytest.raises(SpaceError, match="more than the limit"):
        MultiBinarySpec((4097, 4096))


def test_constructors_reject():
    with pytest.raises(SpaceError, match="NaN"):
        BoxSpec.create(np.nan, 1.0, (2,))
    with pytest.raises(SpaceError, match=r"low has shape \(3,\), expected \(2,\)"):
        BoxSpec((2,), "float32", np.zeros(3, np.float32), np.ones(2, np.float32))
    with pytest.raises(SpaceError, match="must be a numpy array"):
        BoxSpec((2,), "float32", [0.0, 0.0], np.ones(2, np.float32))
    with pytest.raises(SpaceError, match="no key 'c'"):
        DictSpec((("a", DiscreteSpec(2)),))["c"]


# ---- observations -------------------------------------------------------------------------------

IMAGE = BoxSpec.create(0, 255, (3, 8, 6), dtype="uint8")

# (space, one observation): batch_observation must add a batch axis to it, and keep a batch of them.
SINGLES = {
    "box": (SPACES["box-uniform"], np.zeros(3, np.float32)),
    "box-2d": (SPACES["box-per-element"], np.zeros((2, 2), np.float32)),
    "box-scalar": (SPACES["box-scalar"], np.float32(0.5)),
    "discrete": (DiscreteSpec(4), 2),
    "discrete-numpy": (DiscreteSpec(4), np.int64(3)),
    "multi-discrete": (SPACES["multi-discrete"], np.array([1, 2, 3])),
    "multi-discrete-2d": (SPACES["multi-discrete-2d"], np.array([[1, 2], [3, 4]])),
    "multi-binary": (MultiBinarySpec((5,)), np.array([0, 1, 0, 1, 1], np.int8)),
    "multi-binary-2d": (MultiBinarySpec((2, 3)), np.ones((2, 3), bool)),
    "image": (IMAGE, np.zeros((3, 8, 6), np.uint8)),
    "list": (SPACES["box-uniform"], [0.1, 0.2, 0.3]),
}


@pytest.mark.parametrize(("space", "obs"), SINGLES.values(), ids=SINGLES.keys())
def test_batch_observation_adds_a_batch_axis_to_one_observation(space, obs):
    array, vectorized = batch_observation(obs, space)
    assert not vectorized
    assert array.shape == (1, *item_shape(space))
    np.testing.assert_array_equal(array[0], np.asarray(obs))


@pytest.mark.parametrize(("space", "obs"), SINGLES.values(), ids=SINGLES.keys())
def test_batch_observation_keeps_a_batch(space, obs):
    batch = np.stack([np.asarray(obs)] * 3)
    array, vectorized = batch_observation(batch, space)
    assert vectorized
    assert array.shape == (3, *item_shape(space))
    np.testing.assert_array_equal(array, batch)


def test_discrete_batch_of_one_is_vectorized():
    array, vectorized = batch_observation(np.array([2]), DiscreteSpec(4))
    assert vectorized and array.shape == (1,)


def test_channel_last_image_is_transposed():
    obs = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    array, vectorized = batch_observation(obs, IMAGE)
    assert not vectorized
    np.testing.assert_array_equal(array[0], obs.transpose(2, 0, 1))
    batch = np.stack([obs, obs[::-1]])
    array, vectorized = batch_observation(batch, IMAGE)
    assert vectorized
    np.testing.assert_array_equal(array, batch.transpose(0, 3, 1, 2))


def test_channel_last_is_not_accepted_for_a_non_image_box():
    space = BoxSpec.create(0.0, 1.0, (3, 8, 6))
    assert not is_image(space)
    with pytest.raises(ObservationError):
        batch_observation(np.zeros((8, 6, 3), np.float32), space)


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (IMAGE, True),
        (BoxSpec.create(0, 255, (1, 84, 84), dtype="uint8"), True),
        (BoxSpec.create(0, 255, (84, 84), dtype="uint8"), False),
        (BoxSpec.create(0, 254, (3, 8, 8), dtype="uint8"), False),
        (BoxSpec.create(0.0, 255.0, (3, 8, 8)), False),
        (DiscreteSpec(3), False),
    ],
    ids=["chw", "one-channel", "2d", "bounds", "float", "discrete"],
)
def test_is_image(space, expected):
    assert is_image(space) is expected


WRONG = {
    "box-wrong-size": (SPACES["box-uniform"], np.zeros(4), r"shape \(4,\) does not fit"),
    "box-wrong-batch-item": (SPACES["box-uniform"], np.zeros((2, 4)), r"expected \(3,\) for one observation"),
    "box-too-many-axes": (SPACES["box-uniform"], np.zeros((1, 1, 3)), "does not fit"),
    "discrete-2d": (DiscreteSpec(3), np.zeros((2, 2)), "does not fit"),
    "multi-discrete": (SPACES["multi-discrete"], np.zeros(2), "does not fit"),
    "multi-discrete-2d-flat": (SPACES["multi-discrete-2d"], np.zeros((3, 3)), "does not fit"),
    "image-wrong": (IMAGE, np.zeros((8, 3, 6), np.uint8), "does not fit"),
    "string": (DiscreteSpec(3), "2", "expected a numeric array"),
    "object": (SPACES["box-uniform"], {"a": 1}, "expected a numeric array"),
    "ragged": (SPACES["box-uniform"], [[0.0, 1.0, 2.0], [0.0]], "numeric array"),
    "complex": (SPACES["box-uniform"], np.zeros(3, complex), "expected a numeric array"),
    "none": (SPACES["box-uniform"], None, "expected a numeric array"),
}


@pytest.mark.parametrize(("space", "obs", "message"), WRONG.values(), ids=WRONG.keys())
def test_batch_observation_rejects(space, obs, message):
    with pytest.raises(ObservationError, match=message):
        batch_observation(obs, space, what="observation['x']")


def test_rejection_names_the_observation():
    with pytest.raises(ObservationError, match=r"^observation\['pos'\]: shape"):
        batch_observation(np.zeros(5), SPACES["box-uniform"], what="observation['pos']")


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_dummy_observation_is_a_valid_batch(space):
    dummy = dummy_observation(space, 2)
    for key, leaf in leaves(space):
        value = dummy
        for part in key:
            value = value[part]
        array, vectorized = batch_observation(value, leaf)
        assert vectorized and array.shape[0] == 2
        if isinstance(leaf, BoxSpec):
            assert np.all(array >= leaf.low) and np.all(array <= leaf.high)


def test_leaves_follow_key_order_and_nesting():
    space = SPACES["dict-nested"]
    assert [key for key, _ in leaves(space)] == [("image",), ("state", "pos"), ("state", "mode"), ("flags",)]
    assert leaves(DiscreteSpec(2)) == [((), DiscreteSpec(2))]
