"""What a loose reader would take and FORMAT.md says to refuse: NUL in member names, version text
that ``int()`` accepts, activations over integer values."""

from __future__ import annotations

import dataclasses

import pytest

from rlport.bundle.bundle import Bundle
from rlport.errors import BundleError, GraphError
from rlport.graph.graph import Node


def test_a_member_name_cut_at_a_nul_is_refused(make_bundle, crafter):
    """zipfile shows ``weights.safetensors\\0exe`` as ``weights.safetensors``; the raw name is what counts."""
    manifest, members = crafter.members_of(make_bundle())
    stand_in = "weights.safetensorsZexe"  # as long as the NUL name: the bytes are swapped in place
    renamed = {stand_in if name == "weights.safetensors" else name: data for name, data in members.items()}
    path = crafter.write(manifest, renamed, fix_digests=False)
    path.write_bytes(path.read_bytes().replace(stand_in.encode(), b"weights.safetensors\x00exe"))
    with pytest.raises(BundleError, match="member name"):
        Bundle.load(path)


def test_the_same_bundle_with_a_plain_name_loads(make_bundle, crafter):
    """The check above fails on the NUL, not on how the file was put together."""
    manifest, members = crafter.members_of(make_bundle())
    stand_in = "weights.safetensorsZexe"
    renamed = {stand_in if name == "weights.safetensors" else name: data for name, data in members.items()}
    with pytest.raises(BundleError) as info:  # the name is not patched: an unknown member, named as it is
        Bundle.load(crafter.write(manifest, renamed, fix_digests=False))
    assert "member name" not in str(info.value)


@pytest.mark.parametrize("version", ["+1.0", " 1.0", "1_0.0", "1.0 ", "１.0"])
def test_a_format_version_that_is_not_digits_dot_digits_is_refused(make_bundle, crafter, version):
    manifest, members = crafter.members_of(make_bundle())
    manifest["format_version"] = version
    with pytest.raises(BundleError, match="format_version must be 'major.minor'"):
        Bundle.load(crafter.write(manifest, members))


def test_the_plain_version_loads(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    assert manifest["format_version"] == "1.0"
    Bundle.load(crafter.write(manifest, members))


@pytest.mark.parametrize("op", ["relu", "tanh", "sigmoid", "elu", "softplus"])
def test_an_activation_over_integers_is_refused_at_load(make_bundle, op):
    """The backends' functions disagree on integer inputs (int64, float64, float16 results): a cast comes first."""
    bundle = make_bundle()
    graph = bundle.graph
    obs = graph.inputs[0].name
    ints = Node("cast", (obs,), ("as_int",), attrs={"dtype": "int32"})
    act = Node(op, ("as_int",), ("unused",))
    changed = dataclasses.replace(graph, preprocess=(*graph.preprocess, ints, act))
    with pytest.raises(GraphError, match="takes a float input, found int32"):
        dataclasses.replace(bundle, graph=changed).validate()
    floats = Node("cast", (obs,), ("as_int",), attrs={"dtype": "float32"})
    dataclasses.replace(
        bundle, graph=dataclasses.replace(graph, preprocess=(*graph.preprocess, floats, act))
    ).validate()
