"""The ops added for captured torch modules (add, sub, mul, div, max_pool2d, avg_pool2d, slice, exp):
every backend agrees with torch, and each static check refuses what it must."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import rlport
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec
from rlport.errors import GraphError
from rlport.graph.builder import GraphBuilder
from rlport.graph.infer import Value, infer

IMAGE = (3, 7, 7)


def bundle_of(op: str, shape: tuple[int, ...], attrs=None, other=None, two_inputs: bool = False) -> Bundle:
    """One op on a float32 observation (and, with ``two_inputs``, on its sigmoid), flattened, clipped to wide bounds."""
    width = values(op, shape, attrs, other, two_inputs).elements
    b = GraphBuilder()
    x = b.input("obs", "observation", key=None)
    inputs = [x, b.add("sigmoid", [x])] if two_inputs else [x]
    params = {"other": b.tensor("other", other)} if other is not None else None
    out = b.add("flatten", [b.add(op, inputs, params, attrs)])
    b.stage = "postprocess"
    bounds = np.full(width, 1e6, np.float32)
    b.add("clip_to_bounds", [out], {"low": b.tensor("low", -bounds), "high": b.tensor("high", bounds)}, name="action")
    box = BoxSpec(shape, "float32", np.full(shape, -3.0, np.float32), np.full(shape, 3.0, np.float32))
    bundle = Bundle(box, BoxSpec((width,), "float32", -bounds, bounds), b.build("action"), dict(b.tensors))
    bundle.validate()
    return bundle


def values(op: str, shape, attrs=None, other=None, two_inputs=False):
    """Infer the op alone: its output Value (or the GraphError)."""
    b = GraphBuilder()
    x = b.input("obs", "observation", key=None)
    inputs = [x, b.add("sigmoid", [x])] if two_inputs else [x]
    params = {"other": b.tensor("other", other)} if other is not None else None
    y = b.add(op, inputs, params, attrs)
    graph = b.build(y)
    return infer(graph, b.tensors, {(): Value.of((None, *shape), "float32", -3.0, 3.0)})[y]


def torch_of(op: str, x: torch.Tensor, attrs=None, other=None, two_inputs=False) -> torch.Tensor:
    a = attrs or {}
    if op in ("add", "sub", "mul", "div"):
        second = torch.sigmoid(x) if two_inputs else torch.as_tensor(other)
        return {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op](x, second)
    if op == "exp":
        return torch.exp(x)
    if op == "max_pool2d":
        return F.max_pool2d(x, a["kernel"], a["stride"], a.get("padding", 0), a.get("dilation", 1))
    if op == "avg_pool2d":
        return F.avg_pool2d(x, a["kernel"], a["stride"], a.get("padding", 0),
                            count_include_pad=a.get("count_include_pad", True))  # fmt: skip
    index = (slice(None),) * (a["axis"] % x.ndim) + (slice(a["start"], a["end"], a.get("step", 1)),)
    return x[index]


CASES = [
    pytest.param("add", (4,), None, np.float32([1, -2, 3, 0.5]), False, id="add-parameter"),
    pytest.param("sub", (4,), None, np.float32(0.25), False, id="sub-scalar"),
    pytest.param(
        "mul", IMAGE, None, np.linspace(0.5, 2, 3, dtype=np.float32).reshape(3, 1, 1), False, id="mul-per-channel"
    ),  # fmt: skip
    pytest.param("div", (4,), None, np.float32([1, -2, 4, 8]), False, id="div-parameter"),
    pytest.param("add", IMAGE, None, None, True, id="add-two-inputs"),
    pytest.param("mul", (4,), None, None, True, id="mul-two-inputs"),
    pytest.param("div", (4,), None, None, True, id="div-two-inputs"),
    pytest.param("exp", (4,), None, None, False, id="exp"),
    pytest.param(
        "max_pool2d",
        IMAGE,
        {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 1], "dilation": [1, 2]},
        None,
        False,
        id="max-pool",
    ),  # fmt: skip
    pytest.param(
        "avg_pool2d",
        IMAGE,
        {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]},
        None,
        False,
        id="avg-pool-count-pad",
    ),  # fmt: skip
    pytest.param(
        "avg_pool2d",
        IMAGE,
        {"kernel": [2, 3], "stride": [1, 2], "padding": [1, 1], "count_include_pad": False},
        None,
        False,
        id="avg-pool-exclude-pad",
    ),  # fmt: skip
    pytest.param("slice", IMAGE, {"axis": 2, "start": 1, "end": -1, "step": 2}, None, False, id="slice-middle-axis"),
    pytest.param("slice", (6,), {"axis": -1, "start": -4, "end": 1 << 40}, None, False, id="slice-to-the-end"),
]


@pytest.mark.parametrize(("op", "shape", "attrs", "other", "two"), CASES)
def test_every_backend_equals_torch(op, shape, attrs, other, two):
    bundle = bundle_of(op, shape, attrs, other, two)
    obs = np.random.default_rng(0).uniform(-3, 3, (5, *shape)).astype(np.float32)
    full = torch_of(op, torch.as_tensor(obs), attrs, other, two).numpy()
    inferred = values(op, shape, attrs, other, two)
    assert inferred.row == full.shape[1:]
    assert np.all(full >= inferred.low - 1e-6) and np.all(full <= inferred.high + 1e-6)  # the bounds hold
    want = full.reshape(5, -1)
    for backend in ("numpy", "torch", "onnx"):
        got = rlport.load(bundle, backend=backend).predict(obs, deterministic=True)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=backend)


def test_division_by_zero_is_ieee_in_every_backend():
    bundle = bundle_of("div", (4,), None, np.float32([0, 1, 1, 1]))
    obs = np.float32([[1, 1, 1, 1], [0, 2, 2, 2]])
    for backend in ("numpy", "torch", "onnx"):
        with pytest.raises(rlport.ActionError):  # inf and nan are refused as actions, by every backend alike
            rlport.load(bundle, backend=backend).predict(obs, deterministic=True)


@pytest.mark.parametrize(
    ("op", "shape", "attrs", "other", "two", "match"),
    [
        ("add", (4,), None, None, False, "exactly one of them"),
        ("add", (4,), None, np.float32(1), True, "exactly one of them"),
        ("mul", (4,), None, np.ones((2, 4), np.float32), False, "more axes than a row"),
        ("mul", (4,), None, np.ones((3,), np.float32), False, "do not broadcast"),
        ("add", (1,), None, np.ones((4,), np.float32), False, "would grow a row"),
        ("add", (4,), None, np.ones((4,), np.int64), False, "takes float operands"),
        ("max_pool2d", IMAGE, {"kernel": [2, 2], "stride": [1, 1], "padding": [2, 0]}, None, False, "at most half"),
        ("avg_pool2d", IMAGE, {"kernel": [9, 2], "stride": [1, 1]}, None, False, "does not fit inputs"),
        ("max_pool2d", (4,), {"kernel": [2, 2], "stride": [1, 1]}, None, False, "expected rank 4"),
        ("slice", (6,), {"axis": 1, "start": 4, "end": 2}, None, False, "select nothing"),
        ("slice", (6,), {"axis": 0, "start": 0, "end": 2}, None, False, "must not be the batch axis"),
        ("slice", (6,), {"axis": 1, "start": 0, "end": 2, "step": 0}, None, False, "'step' must be an integer"),
    ],
    ids=["no-operand", "two-operands", "other-with-batch-rank", "no-broadcast", "grows-row", "integer-other",
         "pool-padding", "pool-window-too-big", "pool-rank", "empty-slice", "slice-batch", "slice-step-0"],
)  # fmt: skip
def test_static_checks_refuse(op, shape, attrs, other, two, match):
    with pytest.raises(GraphError, match=match):
        values(op, shape, attrs, other, two)
