"""ATen ops captured by from_torch: each translation gives the module's own output (numpy and torch runtimes)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rlport
from rlport.errors import UnsupportedError
from rlport.frameworks.torch.export import from_torch

VEC = gym.spaces.Box(-3.0, 3.0, (6,), np.float32)
IMAGE = gym.spaces.Box(-1.0, 1.0, (4, 6, 6), np.float32)
OUT = gym.spaces.Box(-1e3, 1e3, (3,), np.float32)


class Fn(nn.Module):
    """``fn(self, x)`` as forward, with submodules ``a`` (6 -> 6) and ``b`` (6 -> 3) to compute with."""

    def __init__(self, fn, n_in: int = 6):
        super().__init__()
        self.fn = fn
        self.a = nn.Linear(n_in, 6)
        self.b = nn.Linear(6, 3)
        self.w = nn.Parameter(torch.randn(6, 3))
        self.scale = nn.Parameter(torch.rand(6) + 0.5)

    def forward(self, x):
        return self.fn(self, x)


def fn(f):
    return lambda: Fn(f)


ACTIVATIONS = [
    nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.2), nn.ELU(0.7), nn.CELU(1.3), nn.SELU(), nn.GELU(), nn.GELU("tanh"),
    nn.SiLU(), nn.Mish(), nn.Sigmoid(), nn.LogSigmoid(), nn.Hardsigmoid(), nn.Hardswish(), nn.Hardtanh(-0.5, 0.7),
    nn.Tanh(), nn.Softplus(2.0, 10.0), nn.Softmax(-1), nn.LogSoftmax(1), nn.Hardshrink(0.3), nn.Softshrink(0.3),
    nn.Threshold(0.1, -2.0), nn.PReLU(), nn.RReLU(), nn.Tanhshrink(), nn.Dropout(0.5), nn.Identity(),
]  # fmt: skip


def chain(layers: list[nn.Module]):
    """Linear layers with one activation after each: one capture checks several activations."""
    return lambda: nn.Sequential(*[m for a in layers for m in (nn.Linear(6, 6), a)], nn.Linear(6, 3))


def _name(a: nn.Module) -> str:
    return type(a).__name__ + ("-tanh" if getattr(a, "approximate", "") == "tanh" else "")


CASES = [pytest.param(chain(ACTIVATIONS[k : k + 4]), VEC, id="+".join(map(_name, ACTIVATIONS[k : k + 4])))
         for k in range(0, len(ACTIVATIONS), 4)]  # fmt: skip
CASES += [
    pytest.param(fn(lambda m, x: m.b(m.a(x) + x)), VEC, id="residual-add"),
    pytest.param(fn(lambda m, x: m.b(x - 0.5 * m.a(x))), VEC, id="residual-sub-scaled"),
    pytest.param(fn(lambda m, x: m.b(x * 2.0 + 1.0)), VEC, id="mul-add-constants"),
    pytest.param(fn(lambda m, x: m.b(x / 3.0)), VEC, id="div-constant"),
    pytest.param(fn(lambda m, x: m.b(1.0 - x)), VEC, id="rsub"),
    pytest.param(fn(lambda m, x: m.b(-x)), VEC, id="neg"),
    pytest.param(fn(lambda m, x: m.b(x * m.scale - m.scale)), VEC, id="parameter-vector-arithmetic"),
    pytest.param(fn(lambda m, x: m.b(x / m.scale)), VEC, id="div-parameter-vector"),
    pytest.param(fn(lambda m, x: torch.cat([m.a(x)[:, :2], x[:, 3:]], dim=-1)[:, :3] + x[:, 1:4]), VEC, id="cat-slice"),
    pytest.param(fn(lambda m, x: m.a(x).chunk(2, dim=-1)[1]), VEC, id="chunk"),
    pytest.param(fn(lambda m, x: torch.split(m.a(x), [1, 3, 2], dim=1)[1]), VEC, id="split-sizes"),
    pytest.param(fn(lambda m, x: torch.stack([x[:, 0], x[:, 4], x[:, 2]], dim=-1)), VEC, id="select-stack"),
    pytest.param(fn(lambda m, x: m.b(x.view(-1, 2, 3).flatten(1))), VEC, id="view-flatten"),
    pytest.param(
        fn(lambda m, x: m.b(x.reshape(x.shape[0], 3, 2).unsqueeze(1).squeeze(1).reshape(-1, 6))),
        VEC,
        id="reshape-unsqueeze-squeeze",
    ),  # fmt: skip
    pytest.param(fn(lambda m, x: x.view(-1, 2, 3).mean(1)), VEC, id="mean"),
    pytest.param(fn(lambda m, x: x.view(-1, 3, 2).mean(-1, keepdim=True).flatten(1)), VEC, id="mean-keepdim"),
    pytest.param(fn(lambda m, x: m.b(m.a(x).clamp(min=0.0))), VEC, id="clamp-min-zero"),
    pytest.param(fn(lambda m, x: m.b(m.a(x).clamp(-0.5, 0.5))), VEC, id="clamp"),
    pytest.param(fn(lambda m, x: m.b(torch.clamp_max(m.a(x), 0.3))), VEC, id="clamp-max"),
    pytest.param(fn(lambda m, x: x @ m.w), VEC, id="matmul-parameter"),
    pytest.param(fn(lambda m, x: torch.addmm(m.b.bias, x, m.w)), VEC, id="addmm"),
    pytest.param(fn(lambda m, x: torch.mm(x, m.w.t().t())), VEC, id="mm-transposed-twice"),
    pytest.param(lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)), VEC, id="batch-norm-1d"),
    pytest.param(lambda: nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3)), VEC, id="layer-norm"),
    pytest.param(
        lambda: nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 6, 2, dilation=2, groups=3),
            nn.Flatten(),
            nn.Linear(6, 3),
        ),
        IMAGE,
        id="conv-batch-norm-2d",
    ),  # fmt: skip
    pytest.param(
        lambda: nn.Sequential(nn.Conv2d(4, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)),
        IMAGE,
        id="adaptive-avg-pool",
    ),  # fmt: skip
    pytest.param(
        lambda: nn.Sequential(nn.Conv2d(4, 3, 1), nn.Flatten(), nn.LayerNorm(108), nn.Linear(108, 3)),
        IMAGE,
        id="conv-flatten-layer-norm",
    ),  # fmt: skip
]


class Image(nn.Module):
    def __init__(self, body, residual: bool = False):
        super().__init__()
        self.body, self.residual = body, residual
        self.per_channel = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        if self.residual:
            return self.body(x + torch.relu(self.conv(x)))
        return self.body(x * self.per_channel + 0.25)


CASES.append(pytest.param(lambda: Image(nn.Sequential(nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(32, 3))), IMAGE,
                          id="per-channel-affine-on-images"))  # fmt: skip


@pytest.mark.parametrize(("make", "space"), CASES)
def test_translation_equals_the_module(make, space):
    torch.manual_seed(0)
    module = make()
    for m in module.modules():  # non-trivial running statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    module.eval()
    bundle = from_torch(module, space, OUT, head="deterministic", probes=16)
    space.seed(3)
    obs = np.stack([space.sample() for _ in range(20)])
    with torch.no_grad():
        want = module(torch.as_tensor(obs)).numpy()
    for backend in ("numpy", "torch", "onnx"):
        got = rlport.load(bundle, backend=backend).predict(obs, deterministic=True)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=backend)


def test_literals_are_fixed_constants_and_parameters_keep_their_names():
    """``x * 0.5`` makes a constant rlport lists (fixed in training); ``x * self.scale`` keeps the name ``scale``."""
    bundle = from_torch(Fn(lambda m, x: m.b(x * 0.5 + x * m.scale)), VEC, OUT, head="deterministic", probes=16)
    (literal,) = bundle.source["constants"]
    assert bundle.tensors[literal].tolist() == 0.5
    others = [n.params.get("other") for n in bundle.graph.policy if n.op == "mul"]
    assert sorted(others) == sorted([literal, "scale"])


REFUSED = [
    pytest.param(fn(lambda m, x: m.b(1.0 / m.a(x))), VEC, ["aten.reciprocal"], id="constant-over-value"),
    pytest.param(fn(lambda m, x: torch.cat([x.view(-1, 2, 3)] * 2, dim=1).flatten(1)[:, :3]), VEC,
                 ["aten.cat", "dim 1"], id="cat-not-last-axis"),
    pytest.param(fn(lambda m, x: torch.div(m.b(x), 2.0, rounding_mode="floor")), VEC, ["rounding_mode='floor'"],
                 id="floor-division"),
    pytest.param(fn(lambda m, x: nn.functional.softsign(m.b(x))), VEC, ["aten.abs"], id="abs"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(4, 4, 3), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                                       nn.Linear(16, 3)), IMAGE, ["aten.max_pool2d", "'1'", "ceil_mode=True"],
                 id="max-pool-ceil-mode"),
    pytest.param(fn(lambda m, x: torch.softmax(m.b(x), dim=0)), VEC, ["aten.softmax", "the batch axis"],
                 id="softmax-over-the-batch"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "space", "names"), REFUSED)
def test_untranslatable_ops_are_refused_by_name(make, space, names):
    with pytest.raises(UnsupportedError) as info:
        from_torch(make(), space, OUT, head="deterministic", probes=16)
    for name in names:
        assert name in str(info.value)
