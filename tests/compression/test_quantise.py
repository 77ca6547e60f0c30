"""The quantisers: int8 per output channel within half a step, float16 of the network only, what stays float."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from isolation import BLOCKER
from quantised_models import balancer, float_bundle
from rlport.compression import compress
from rlport.compression.quantise import quantise_int8
from rlport.errors import UnsupportedError


@pytest.mark.parametrize("shape", [(16, 5), (8, 3, 4, 4)], ids=["linear", "conv2d"])
def test_int8_is_within_half_a_step_of_each_output_channel(shape):
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal(shape) * rng.uniform(0.01, 10, (shape[0],) + (1,) * (len(shape) - 1))).astype(
        np.float32
    )
    weight[3] = 0.0  # a channel of zeros
    q, scale = quantise_int8(weight)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (shape[0],)
    assert q.min() >= -127 and q.max() <= 127  # symmetric: -128 is never written
    rows = weight.reshape(shape[0], -1)
    peak = np.abs(rows).max(axis=1)
    assert np.array_equal(np.abs(q.reshape(shape[0], -1)).max(axis=1)[peak > 0], np.full((peak > 0).sum(), 127))
    assert scale[3] == 1.0 and not q[3].any()
    error = np.abs(q.astype(np.float64) * scale.reshape((-1,) + (1,) * (len(shape) - 1)) - weight)
    assert np.all(error.reshape(shape[0], -1) <= scale[:, None] * 0.5 * (1 + 1e-6))


def test_int8_keeps_biases_statistics_and_bounds_as_they_were():
    original = float_bundle("sac-continuous")  # bounds tensors in its post-processing
    small = compress(original, "int8")
    for name, tensor in original.tensors.items():
        if name in small.encodings.tensors:
            assert small.encoded[name].dtype == np.int8 and name.endswith("weight")
        else:
            assert small.tensors[name] is tensor  # untouched
    assert any(name.startswith("space.action") for name in original.tensors)


def test_fp16_narrows_the_network_but_its_output_layer_and_leaves_pre_and_post_processing_alone():
    original = float_bundle("sac-continuous")
    small = compress(original, "fp16")
    network = {name for node in original.graph.policy for name in node.params.values()}
    head = {name for name in network if name.startswith("actor.mu.")}  # the mean's layer (log-std: sampling only)
    assert head and network - head
    for name, tensor in small.tensors.items():
        narrowed = name in network - head and original.tensors[name].dtype == np.float32
        assert tensor.dtype == (np.float16 if narrowed else original.tensors[name].dtype), name


def test_fp16_narrows_a_network_of_one_layer_all_the_same():
    from dataclasses import replace

    from rlport.graph.graph import Graph, GraphInput, Node

    bundle = balancer()
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            Node("linear", ("obs",), ("logits",), params={"weight": "w", "bias": "b"}),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    one = replace(bundle, graph=graph, tensors={"w": bundle.tensors["pi.2.weight"][:, :4].copy(),
                                                 "b": bundle.tensors["pi.2.bias"]})  # fmt: skip
    assert {t.dtype for t in compress(one, "fp16").tensors.values()} == {np.dtype(np.float16)}


def test_fp16_refuses_a_weight_beyond_its_range():
    bundle = balancer()
    bundle.tensors["pi.0.weight"] = bundle.tensors["pi.0.weight"] * 1e5  # 3e5 > 65504
    with pytest.raises(UnsupportedError, match="'pi.0.weight' holds 3e\\+05, beyond float16's range"):
        compress(bundle, "fp16")
    bundle.tensors["pi.0.weight"] = bundle.tensors["pi.0.weight"] / 10  # 3e4: the twin, within range
    assert compress(bundle, "fp16").tensors["pi.0.weight"].dtype == np.float16


@pytest.mark.parametrize(("weights", "activations", "message"), [
    ("int4", None, "unknown weight format 'int4'"),
    ("int8", "fp8", "unknown activation format 'fp8'"),
])  # fmt: skip
def test_unknown_schemes_are_refused_by_name(weights, activations, message):
    with pytest.raises(UnsupportedError, match=message):
        compress(balancer(), weights, activations)


def test_an_int8_bundle_runs_with_numpy_alone(tmp_path):
    path = compress(balancer(), "int8", "int8", calibrate=100).save(tmp_path / "b.rlp")
    code = BLOCKER + textwrap.dedent(f"""
        import numpy as np, rlport
        policy = rlport.load({str(path)!r})
        print(policy.predict(np.array([0.0, 0.0, 0.1, 0.0], np.float32), deterministic=True)[0])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # pole falling right: push right


def test_rlport_compress_is_the_function_before_and_after_the_package_is_imported(tmp_path):
    """``rlport.compress(...)`` (the root's function) keeps its name when :mod:`rlport.compression` is imported."""
    path = balancer().save(tmp_path / "b.rlp")
    code = textwrap.dedent(f"""
        import rlport
        first = rlport.compress({str(path)!r}, weights="int8")       # the root's function
        import rlport.compression                                    # the package has another name...
        second = rlport.compress({str(path)!r}, weights="fp16")      # ...so this is still the function
        report = rlport.compression_report({str(path)!r}, first, episodes=2)
        print(first.format_version, second.format_version, report.returns["episodes"])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(1,", "1)", "(1,", "0)", "2"]
