"""Every backend (numpy, torch, onnx) runs float16 and int8 bundles of every family, alike and close to the float one.

Backends must agree with each other as they do on float bundles (discrete actions identical,
continuous within 1e-5); against the float bundle, the agreement must be what the quantisation
allows (tolerances about 3x what these tiny random-weight policies show). A bundle quantised
wrongly on purpose (scales 4x too large, activation scales 1000x too small) fails those checks.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

import rlport
from quantised_models import FAMILIES, float_bundle
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.onnx.export import onnx_model
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec
from rlport.compression import compress
from rlport.graph.passes import Encodings, ValueEncoding, dequantise
from sb3_models import OBS_SPACES, assert_same_actions, sample_obs

SCHEMES = {"fp16": ("fp16", None), "int8": ("int8", None), "int8-activations": ("int8", "int8")}
TOLERANCE = {  # (largest continuous error, mean continuous error, both as fractions of the range; least % identical)
    "fp16": (0.005, 0.001, 0.98),
    "int8": (0.05, 0.01, 0.90),
    "int8-activations": (0.3, 0.02, 0.90),
}


@functools.cache
def compressed(family: str, scheme: str) -> Bundle:
    weights, activations = SCHEMES[scheme]
    return compress(float_bundle(family), weights, activations, calibrate=64)


def _inputs(family: str, n: int = 64) -> tuple:
    obs = sample_obs(OBS_SPACES[FAMILIES[family].obs], n, seed=11)
    starts = np.zeros(n, bool) if FAMILIES[family].algo == "RecurrentPPO" else None
    return obs, starts


def _act(policy, family: str) -> np.ndarray:
    obs, starts = _inputs(family)
    return np.asarray(policy.predict(obs, episode_start=starts, deterministic=True)[0])


def check_close_to_float(ours: np.ndarray, theirs: np.ndarray, space, scheme: str) -> None:
    """``ours`` agrees with the float bundle's actions ``theirs`` as well as ``scheme`` allows."""
    largest, mean, identical = TOLERANCE[scheme]
    if isinstance(space, BoxSpec):
        error = np.abs(ours.astype(np.float64) - theirs) / (space.high - space.low)
        assert error.max() <= largest and error.mean() <= mean, f"error max {error.max():.3g}, mean {error.mean():.3g}"
    else:
        same = np.all((ours == theirs).reshape(len(ours), -1), axis=1).mean()
        assert same >= identical, f"{100 * same:.1f}% identical actions, expected at least {100 * identical:.0f}%"


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_backend_runs_a_compressed_bundle_like_numpy(tmp_path, family, scheme):
    path = compressed(family, scheme).save(tmp_path / f"{scheme}.rlp")
    reference = _act(NumpyPolicy(float_bundle(family)), family)
    ours = _act(rlport.load(path), family)
    check_close_to_float(ours, reference, float_bundle(family).action_space, scheme)
    for backend in ("torch", "onnx"):
        assert_same_actions(_act(rlport.load(path, backend=backend), family), ours, f"{backend} on {scheme}")


def _scaled(bundle: Bundle, factor: float) -> Bundle:
    """The same int8 values with every scale ``factor`` times larger (a wrong quantisation that still loads)."""
    tensors = dict(bundle.tensors)
    for name, encoding in bundle.encodings.tensors.items():
        tensors[encoding.scale] = tensors[encoding.scale] * np.float32(factor)
        tensors[name] = dequantise(bundle.encoded[name], tensors[encoding.scale], encoding.axis)
    return replace(bundle, tensors=tensors)


def test_scales_4x_too_large_fail_the_agreement_check(family):
    wrong = NumpyPolicy(_scaled(compressed(family, "int8"), 4.0))
    with pytest.raises(AssertionError):
        check_close_to_float(_act(wrong, family), _act(NumpyPolicy(float_bundle(family)), family),
                             float_bundle(family).action_space, "int8")  # fmt: skip


def test_activation_scales_1000x_too_small_fail_the_agreement_check(family):
    right = compressed(family, "int8-activations")
    values = {name: ValueEncoding(enc.scheme, enc.scale / 1000) for name, enc in right.encodings.values.items()}
    wrong = NumpyPolicy(replace(right, encodings=Encodings(right.encodings.tensors, values)))
    with pytest.raises(AssertionError):
        check_close_to_float(_act(wrong, family), _act(NumpyPolicy(float_bundle(family)), family),
                             float_bundle(family).action_space, "int8-activations")  # fmt: skip


def test_the_torch_module_fake_quantises_like_numpy(family):
    """GraphModule given the bundle's encoded values computes what numpy computes (activations included)."""
    from rlport.backends.torch.module import GraphModule
    from rlport.backends.torch.runtime import TorchPolicy

    bundle = compressed(family, "int8-activations")
    policy = TorchPolicy(bundle)
    policy.module = GraphModule(bundle.graph, bundle.tensors, quantised=bundle.encodings.values).eval()
    assert_same_actions(_act(policy, family), _act(NumpyPolicy(bundle), family), "torch module")
    policy.module = GraphModule(bundle.graph, bundle.tensors).eval()  # the twin: without them it differs
    if FAMILIES[family].action == "box":
        assert not np.allclose(_act(policy, family), _act(NumpyPolicy(bundle), family), rtol=0, atol=1e-6)


def _op_types(bundle: Bundle) -> list[str]:
    return [node.op_type for node in onnx_model(bundle).graph.node]


def test_onnx_keeps_int8_weights_as_dequantize_linear():
    bundle = compressed("cnn", "int8")
    model = onnx_model(bundle)
    int8 = [t for t in model.graph.initializer if t.data_type == 3]  # TensorProto.INT8
    assert _op_types(bundle).count("DequantizeLinear") == len(bundle.encodings.tensors) == len(int8) // 2
    assert "QuantizeLinear" not in _op_types(bundle)
    assert "DequantizeLinear" not in _op_types(float_bundle("cnn"))  # the twin: a float bundle has none


def test_onnx_reads_int8_activations_through_quantize_dequantize():
    bundle = compressed("mlp-discrete", "int8-activations")
    ops = _op_types(bundle)
    assert ops.count("QuantizeLinear") == len(bundle.encodings.values) > 0
    assert ops.count("DequantizeLinear") == len(bundle.encodings.values) + len(bundle.encodings.tensors)
