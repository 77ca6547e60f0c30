"""Format 1.1: int8 bundles round trip byte for byte, 1.0 bundles stay 1.0, malformed encodings are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from quantised_models import cartpole_bundle, float_bundle
from rlport.bundle import safetensors
from rlport.bundle.bundle import WEIGHTS, Bundle
from rlport.bundle.container import read_container, sha256, write_container
from rlport.bundle.manifest import canonical_json, check_fields_known, parse_json
from rlport.compression import compress
from rlport.errors import BundleError, FormatVersionError
from rlport.graph.passes import dequantise

COMMENT_OFFSET = -89  # the archive comment is the file's last 89 bytes for 1.0 and 1.1


def _int8(tmp_path: Path, activations: str | None = None) -> Path:
    bundle = compress(float_bundle("mlp-discrete"), "int8", activations, calibrate=32)
    return bundle.save(tmp_path / "int8.rlp")


def test_an_int8_bundle_is_format_1_1_and_round_trips_byte_for_byte(tmp_path):
    path = _int8(tmp_path, activations="int8")
    data = path.read_bytes()
    assert data[COMMENT_OFFSET:].startswith(b"rlport-bundle 1.1 sha256:")
    loaded = Bundle.load(path)
    assert loaded.format_version == (1, 1) and loaded.encodings.tensors and loaded.encodings.values
    for name, encoding in loaded.encodings.tensors.items():
        assert loaded.encoded[name].dtype == np.int8
        assert np.array_equal(loaded.tensors[name], dequantise(loaded.encoded[name], loaded.tensors[encoding.scale], 0))
    assert loaded.save(tmp_path / "again.rlp").read_bytes() == data
    assert loaded.summary()["format_version"] == "1.1"


@pytest.mark.parametrize("weights", ["float", "fp16"])
def test_bundles_without_encodings_stay_format_1_0_byte_for_byte(tmp_path, weights):
    bundle = float_bundle("mlp-discrete") if weights == "float" else compress(float_bundle("mlp-discrete"), "fp16")
    data = bundle.save(tmp_path / "a.rlp").read_bytes()
    assert data[COMMENT_OFFSET:].startswith(b"rlport-bundle 1.0 sha256:")
    assert b'"encodings"' not in data
    assert Bundle.load(tmp_path / "a.rlp").save(tmp_path / "b.rlp").read_bytes() == data
    if weights == "fp16":  # float16 is kept as stored (1.0 widens at load, in the backends)
        assert any(t.dtype == np.float16 for t in Bundle.load(tmp_path / "a.rlp").tensors.values())


def test_a_1_0_reader_refuses_encodings_and_a_1_1_reader_reads_them(tmp_path):
    manifest_bytes, _, version = read_container(_int8(tmp_path))
    manifest = parse_json(manifest_bytes, "manifest")
    assert version == (1, 1)
    check_fields_known(manifest, version, reader=(1, 1), what="x.rlp")  # this rlport
    with pytest.raises(FormatVersionError, match=r"quantised tensor encodings \(format 1.1\).*upgrade rlport"):
        check_fields_known(manifest, version, reader=(1, 0), what="x.rlp")  # how a 1.0 reader behaves


# ---- crafted files ----------------------------------------------------------------------------------------


def _rewrite(
    path: Path,
    manifest_change: Callable[[dict], None] = lambda m: None,
    tensors_change: Callable[[dict], None] = lambda t: None,
    version: tuple[int, int] = (1, 1),
) -> Path:
    """Rewrite a bundle with a changed manifest and tensors, digests made right again (only the change is wrong)."""
    manifest_bytes, members, _ = read_container(path)
    manifest = parse_json(manifest_bytes, "manifest")
    tensors, _ = safetensors.loads(members[WEIGHTS])
    tensors_change(tensors)
    manifest_change(manifest)
    members[WEIGHTS] = safetensors.dumps(tensors)
    manifest["members"] = {name: {"sha256": sha256(data), "size": len(data)} for name, data in members.items()}
    out = path.with_name("crafted.rlp")
    write_container(out, canonical_json(manifest), members, version)
    return out


def _first(manifest: dict) -> tuple[str, dict]:
    name = sorted(manifest["encodings"]["tensors"])[0]
    return name, manifest["encodings"]["tensors"][name]


def _set_entry(key: str, value) -> Callable[[dict], None]:
    return lambda m: _first(m)[1].__setitem__(key, value)


def _change_tensor(suffix: str, change: Callable[[np.ndarray], np.ndarray | None]) -> Callable[[dict], None]:
    """Change the first tensor whose name ends with ``suffix`` (None from ``change``: remove it)."""

    def apply(tensors: dict) -> None:
        name = sorted(n for n in tensors if n.endswith(suffix))[0]
        result = change(tensors[name])
        if result is None:
            del tensors[name]
        else:
            tensors[name] = result

    return apply


def _value(name: str, scale) -> Callable[[dict], None]:
    return lambda m: m["encodings"].__setitem__("values", {name: {"scheme": "int8_symmetric", "scale": scale}})


MALFORMED = {
    "missing-scale": (None, _change_tensor(".scale", lambda a: None), "scale tensor .* missing"),
    "scale-wrong-shape": (None, _change_tensor(".scale", lambda a: np.ones(3, np.float32)), r"shape \(3,\), expected"),
    "scale-zero": (None, _change_tensor(".scale", lambda a: a * 0), "not finite and > 0"),
    "scale-negative": (None, _change_tensor(".scale", lambda a: -a), "not finite and > 0"),
    "scale-nan": (None, _change_tensor(".scale", lambda a: a * np.nan), "not finite and > 0"),
    "scale-float64": (None, _change_tensor(".scale", lambda a: a.astype(np.float64)), "must be F32, found float64"),
    "tensor-not-int8": (None, _change_tensor(".weight", lambda a: a.astype(np.int16)), "must be stored as I8"),
    "unknown-scheme": (_set_entry("scheme", "int4_blocked"), None, r"unknown scheme 'int4_blocked' .*int8_symmetric"),
    "axis-out-of-range": (_set_entry("axis", 2), None, "axis 2 does not exist"),
    "axis-not-int": (_set_entry("axis", "0"), None, "'axis' must be an integer"),
    "extra-key": (_set_entry("zero_point", 0), None, r"must be \{scheme, scale, axis\}"),
    "scale-names-nothing": (_set_entry("scale", "no.such.tensor"), None, "scale tensor 'no.such.tensor' is missing"),
    "encodings-unknown-key": (lambda m: m["encodings"].__setitem__("blocks", {}), None, "'tensors' and/or 'values'"),
    "value-not-read-by-linear": (_value("action", 0.1), None, "not an input of any conv2d or linear node"),
    "value-scale-zero": (_value("obs", 0), None, "number > 0"),
    "value-scale-underflows": (_value("obs", 1e-60), None, "float32 holds"),
    "value-scale-string": (_value("obs", "0.1"), None, "number > 0"),
}


@pytest.mark.parametrize(("manifest_change", "tensors_change", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_encodings_are_refused_at_load(tmp_path, manifest_change, tensors_change, message):
    crafted = _rewrite(_int8(tmp_path), manifest_change or (lambda m: None), tensors_change or (lambda t: None))
    with pytest.raises(BundleError, match=message):
        Bundle.load(crafted)


def test_the_crafting_itself_keeps_a_valid_bundle(tmp_path):
    """The twin of the malformed cases: rewritten without a change, the bundle loads."""
    assert Bundle.load(_rewrite(_int8(tmp_path))).encodings.tensors


def test_encodings_in_a_bundle_declaring_1_0_are_corrupt(tmp_path):
    def declare_1_0(manifest: dict) -> None:
        manifest["format_version"] = "1.0"

    crafted = _rewrite(_int8(tmp_path), declare_1_0, version=(1, 0))
    with pytest.raises(BundleError, match="declares format 1.0 but holds 'encodings'"):
        Bundle.load(crafted)


def test_a_tensor_changed_after_quantising_is_refused_on_save(tmp_path):
    bundle = compress(cartpole_bundle(), "int8")
    name = sorted(bundle.encoded)[0]
    bundle.tensors[name] = bundle.tensors[name] * 1.5
    with pytest.raises(BundleError, match="differs from its int8 encoding"):
        bundle.save(tmp_path / "x.rlp")
