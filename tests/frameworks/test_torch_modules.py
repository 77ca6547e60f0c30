"""Each torch layer the importer translates computes what torch computes (numpy runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec
from rlport.frameworks.torch.modules import SUPPORTED_LAYERS, emit_module
from rlport.graph.builder import GraphBuilder, to_numpy


def _run_both(module: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``module(x)`` with torch, and through a one-module bundle with the numpy runtime."""
    module.eval()
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    out = emit_module(b, module, obs, "net")
    out = b.add("identity", [out], name="action")
    bundle = Bundle(
        observation_space=BoxSpec.create(-np.inf, np.inf, x.shape[1:]),
        action_space=BoxSpec.create(-np.inf, np.inf, expected.shape[1:]),
        graph=b.build(out),
        tensors=b.tensors,
    )
    actual, _ = NumpyPolicy(bundle).predict(x, deterministic=True)
    return actual, expected


def _perturbed(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.add_(torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=gen) + 0.3)
    return module


ACTIVATIONS = [
    nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.2), nn.ELU(0.5), nn.CELU(2.0), nn.SELU(), nn.GELU(),
    nn.GELU(approximate="tanh"), nn.SiLU(), nn.Mish(), nn.Sigmoid(), nn.LogSigmoid(), nn.Hardsigmoid(),
    nn.Hardswish(), nn.Hardtanh(-0.5, 2.0), nn.Tanh(), nn.Tanhshrink(), nn.Softplus(beta=2.0, threshold=5.0),
    nn.Softsign(), nn.Softmax(dim=-1), nn.LogSoftmax(dim=1), nn.PReLU(), nn.PReLU(num_parameters=8),
    nn.Hardshrink(0.3), nn.Softshrink(0.3), nn.Threshold(0.1, -2.0), nn.RReLU(0.1, 0.3), nn.Identity(),
    nn.Dropout(0.5),
]  # fmt: skip


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=repr)
def test_activations(activation):
    x = np.random.default_rng(0).normal(0.0, 3.0, (500, 8)).astype(np.float32)
    x[:5] = [[0.0] * 8, [0.1] * 8, [-0.1] * 8, [20.0] * 8, [-20.0] * 8]
    actual, expected = _run_both(nn.Sequential(nn.Linear(8, 8), _perturbed(activation)), x)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


LAYER_STACKS = {
    "batch-norm": lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.BatchNorm1d(8, affine=False)),
    "layer-norm": lambda: nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Tanh(), nn.LayerNorm(8, bias=False)),
    "no-bias": lambda: nn.Sequential(nn.Linear(6, 8, bias=False), nn.ELU(), nn.Linear(8, 3, bias=False)),
    "empty": lambda: nn.Sequential(),
}  # fmt: skip


@pytest.mark.parametrize("name", LAYER_STACKS)
def test_layer_stacks(name):
    x = np.random.default_rng(1).normal(0.0, 2.0, (300, 6)).astype(np.float32)
    actual, expected = _run_both(_perturbed(LAYER_STACKS[name]()), x)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


CONVOLUTIONS = {
    "plain": lambda: nn.Conv2d(4, 6, 3),
    "stride-padding": lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2)),
    "dilation-no-bias": lambda: nn.Conv2d(4, 5, 3, dilation=2, bias=False),
    "groups": lambda: nn.Conv2d(4, 6, 3, groups=2, stride=2),
}


@pytest.mark.parametrize("name", CONVOLUTIONS)
def test_convolutions(name):
    x = np.random.default_rng(2).random((50, 4, 11, 9)).astype(np.float32)
    actual, expected = _run_both(nn.Sequential(_perturbed(CONVOLUTIONS[name]()), nn.ReLU(), nn.Flatten()), x)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.Conv2d(2, 2, 3, padding="same"), "padding='same'"),
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.BatchNorm1d(4, track_running_stats=False), "running statistics"),
        (nn.Flatten(start_dim=2), "start_dim=2"),
        (nn.GRU(4, 4), "layer GRU"),
        (nn.Softmin(dim=1), "layer Softmin"),
    ],
    ids=["conv-same", "conv-reflect", "bn-no-stats", "flatten-dim", "gru", "softmin"],
)
def test_unsupported_modules(module, message):
    with pytest.raises(rlport.UnsupportedError, match=message.replace("(", r"\(")):
        emit_module(GraphBuilder(), module, "obs", "net")


def test_supported_layers_are_listed():
    with pytest.raises(rlport.UnsupportedError) as info:
        emit_module(GraphBuilder(), nn.GRU(4, 4), "obs", "features_extractor")
    assert all(layer in str(info.value) for layer in SUPPORTED_LAYERS)


def test_to_numpy_copies_and_keeps_shape():
    scalar = torch.tensor(3)
    assert to_numpy(scalar).shape == ()
    weight = torch.ones(2, 3)
    array = to_numpy(weight.T)
    weight.mul_(2.0)
    assert array.flags.c_contiguous and np.all(array == 1.0)
    assert to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
