"""Bundle.load: round trips of every representative bundle, and every malformed manifest, member,
space or graph a reader must reject with its own error (docs/FORMAT.md sections 2 to 5)."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest
import safetensors.numpy

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import DictSpec, dummy_observation
from rlport.errors import BundleError, FormatVersionError, GraphError, IntegrityError, RlportError, SpaceError

# ---- round trips ------------------------------------------------------------------------------------


def _actions(bundle: Bundle, seed: int = 0):
    policy = NumpyPolicy(bundle, seed=seed)
    obs = dummy_observation(bundle.observation_space, 5)
    rng = np.random.default_rng(seed)
    if not isinstance(bundle.observation_space, DictSpec) and obs.dtype.kind == "f":
        obs = (obs + rng.uniform(-1, 1, obs.shape)).clip(bundle.observation_space.low, bundle.observation_space.high)
        obs = obs.astype(bundle.observation_space.dtype)
    return [policy.predict(obs, deterministic=d)[0] for d in (True, False)]


def test_round_trip_keeps_everything(tmp_path, any_bundle):
    path = any_bundle.save(tmp_path / "policy.rlp")
    loaded = Bundle.load(path)
    assert loaded.observation_space == any_bundle.observation_space
    assert loaded.action_space == any_bundle.action_space
    assert loaded.graph == any_bundle.graph
    assert loaded.env == any_bundle.env
    assert loaded.provenance == any_bundle.provenance
    assert loaded.source == any_bundle.source
    assert loaded.probe_info == any_bundle.probe_info
    assert sorted(loaded.tensors) == sorted(any_bundle.tensors)
    for name, array in any_bundle.tensors.items():
        assert loaded.tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded.tensors[name], array)
    if any_bundle.probes is not None:
        for name, array in any_bundle.probes.items():
            np.testing.assert_array_equal(loaded.probes[name], array)
    for before, after in zip(_actions(any_bundle), _actions(loaded), strict=True):
        np.testing.assert_array_equal(before, after)


def test_probes_replay_after_loading(tmp_path, make_bundle):
    loaded = Bundle.load(make_bundle("with-probes").save(tmp_path / "p.rlp"))
    action, _ = NumpyPolicy(loaded).predict(loaded.probes["obs"], deterministic=True)
    np.testing.assert_array_equal(action, loaded.probes["action"])
    assert loaded.probe_info.count == len(loaded.probes["obs"])


def test_rlport_load_gives_a_policy(tmp_path, make_bundle):
    path = make_bundle("recurrent-lstm").save(tmp_path / "r.rlp")
    policy = rlport.load(path, seed=1)
    action, state = policy.predict(np.zeros(3, np.float32), deterministic=True)
    assert np.shape(action) == () and len(state) == 2 and state[0].shape == (1, 1, 4)


def test_predict_batches_like_sb3(any_bundle):
    policy = NumpyPolicy(any_bundle)
    batch = dummy_observation(any_bundle.observation_space, 3)
    one = {k: v[0] for k, v in batch.items()} if isinstance(batch, dict) else batch[0]
    shape = any_bundle.action_space.shape
    assert np.shape(policy.predict(one, deterministic=True)[0]) == shape
    assert np.shape(policy.predict(batch, deterministic=True)[0]) == (3, *shape)


def test_channel_last_image_gives_the_same_action(make_bundle):
    bundle = make_bundle("image-cnn")
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    policy = NumpyPolicy(bundle)
    first, _ = policy.predict(images, deterministic=True)
    last, _ = policy.predict(images.transpose(0, 2, 3, 1), deterministic=True)
    np.testing.assert_array_equal(first, last)
    single, _ = policy.predict(images[1].transpose(1, 2, 0), deterministic=True)
    assert single == first[1]


def test_summary(make_bundle):
    summary = make_bundle("recurrent-lstm").summary()
    assert summary["ops"] == {"lstm": 1, "linear": 1, "categorical": 1}
    assert summary["parameters"] == 16 * 3 + 16 * 4 + 16 + 16 + 2 * 4 + 2
    assert summary["recurrent"] is True and summary["probes"] is None
    assert make_bundle("with-probes").summary()["probes"]["count"] == 5


def test_validate_builds_no_runtime(make_bundle, monkeypatch):
    bundle = make_bundle()

    def built(*args, **kwargs):
        raise AssertionError("validate built a runtime")

    monkeypatch.setattr("rlport.backends.numpy.NumpyPolicy.__init__", built)
    bundle.validate()  # static checks only


def test_a_runtime_turns_running_out_of_memory_into_a_graph_error(make_bundle, monkeypatch):
    from rlport.backends.numpy import NumpyPolicy

    bundle = make_bundle()

    def huge(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(NumpyPolicy, "predict", huge)
    with pytest.raises(GraphError, match="needs more memory than there is"):
        NumpyPolicy(bundle)


def test_newer_minor_version_is_read(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    manifest["format_version"] = "1.7"
    manifest["a_field_from_1_7"] = {"ignored": True}
    path = crafter.write(manifest, members, comment=None)
    path = _with_comment_version(crafter, path, b"1.7")
    assert Bundle.load(path).env.id == "CartPole-v1"


def _with_comment_version(crafter, path, version: bytes):
    """Rewrite a crafted file's comment to another version, keeping the digest."""
    data = path.read_bytes()
    digest = data[-64:]
    comment = b"rlport-bundle " + version + b" sha256:" + digest
    old_len = struct.unpack("<H", data[-(64 + 25 + 2) : -(64 + 25)])[0]
    assert old_len == 89
    return crafter.file(data[: -(old_len + 2)] + struct.pack("<H", len(comment)) + comment)


# ---- malformed manifests ------------------------------------------------------------------------------


def _write_manifest_bytes(crafter, make_bundle, text: bytes):
    _, members = crafter.members_of(make_bundle())
    return crafter.write(text, members)


NOT_JSON = {
    "garbage": (b"{not json", "manifest.json is not valid JSON"),
    "not-utf8": (b'{"format": "\xff"}', "manifest.json is not valid JSON"),
    "nan": (b'{"format": "rlport-bundle", "x": NaN}', "NaN is not allowed"),
    "infinity": (b'{"format": "rlport-bundle", "x": -Infinity}', "-Infinity is not allowed"),
    "duplicate-keys": (b'{"format": "rlport-bundle", "env": {}, "env": {}}', r"duplicate keys \['env'\]"),
    "json-list": (b'["rlport-bundle"]', "does not describe an rlport bundle"),
    "json-string": (b'"rlport-bundle"', "does not describe an rlport bundle"),
    "deeply-nested": (b"[" * 100000 + b"]" * 100000, "is not valid JSON"),
}


@pytest.mark.parametrize(("text", "message"), NOT_JSON.values(), ids=NOT_JSON.keys())
def test_manifest_that_is_not_strict_json_object(crafter, make_bundle, text, message):
    path = _write_manifest_bytes(crafter, make_bundle, text)
    with pytest.raises(BundleError, match=message) as info:
        Bundle.load(path)
    assert type(info.value) is BundleError
    assert str(info.value).startswith(str(path))


def _drop(key):
    return lambda m, members, *_: m.pop(key)


def _set(*path, value):
    def change(manifest, members, *_):
        node = manifest
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


def _node(stage: str, index: int, **changes):
    def change(manifest, members, *_):
        manifest["graph"][stage][index].update(changes)

    return change


def _weights(**tensors):
    """Replace (or, with None, remove) tensors in weights.safetensors, re-encoded independently."""

    def change(manifest, members, crafter):
        current = safetensors.numpy.load(members["weights.safetensors"])
        for name, value in tensors.items():
            if value is None:
                current.pop(name)
            else:
                current[name] = value
        members["weights.safetensors"] = crafter.safetensors_bytes(current)

    return change


MALFORMED = {
    # -- top-level fields
    "format-wrong": ("discrete-mlp", _set("format", value="rlport"), BundleError, "does not describe an rlport"),
    "format-version-missing": (
        "discrete-mlp",
        _drop("format_version"),
        BundleError,
        "format_version must be 'major.minor', found None",
    ),
    "format-version-garbage": ("discrete-mlp", _set("format_version", value="1.x"), BundleError, "'1.x'"),
    "format-version-number": ("discrete-mlp", _set("format_version", value=1.0), BundleError, "found 1.0"),
    "newer-major-in-manifest": (
        "discrete-mlp",
        _set("format_version", value="2.0"),
        FormatVersionError,
        r"bundle format 2.0; this rlport reads 1.x. Upgrade rlport",
    ),
    "version-disagrees-with-comment": (
        "discrete-mlp",
        _set("format_version", value="1.1"),
        BundleError,
        "manifest says format 1.1 but the archive comment says 1.0",
    ),
    "encodings": (
        "discrete-mlp",
        _set("encodings", value={"pi.0.weight": {"scheme": "int8_symmetric", "scale": "s", "axis": 0}}),
        BundleError,
        r"declares format 1.0 but holds 'encodings', a field of format 1.1; the bundle is corrupt",
    ),
    "missing-observation-space": ("discrete-mlp", _drop("observation_space"), BundleError, "'observation_space'"),
    "missing-action-space": ("discrete-mlp", _drop("action_space"), BundleError, "required field 'action_space'"),
    "missing-graph": ("discrete-mlp", _drop("graph"), BundleError, "required field 'graph'"),
    "missing-env": ("discrete-mlp", _drop("env"), BundleError, "required field 'env'"),
    "provenance-not-object": ("discrete-mlp", _set("provenance", value=[]), BundleError, "'provenance' must be an"),
    "source-not-object": ("discrete-mlp", _set("source", value="sb3"), BundleError, "'source' must be an object"),
    "probes-summary-malformed": ("with-probes", _set("probes", value={"count": "5"}), BundleError, "'probes' must be"),
    "probes-summary-not-object": ("with-probes", _set("probes", value=0), BundleError, "'probes' must be"),
    "probes-summary-bool-count": (
        "with-probes",
        _set("probes", "count", value=True),
        BundleError,
        "'probes' must be",
    ),
    "env-not-object": ("discrete-mlp", _set("env", value="CartPole-v1"), BundleError, "'env' must be an object"),
    "env-bad-steps": ("discrete-mlp", _set("env", "max_episode_steps", value=-1), BundleError, "max_episode_steps"),
    "env-bad-id": ("discrete-mlp", _set("env", "id", value=3), BundleError, "env id must be a string or null"),
    "env-wrapper-without-name": (
        "discrete-mlp",
        _set("env", "wrappers", value=[{"kwargs": {}}]),
        BundleError,
        "wrapper must be an object with a 'name'",
    ),
    # -- members
    "header-too-large": (
        "discrete-mlp",
        lambda m, members, *_: members.update({"weights.safetensors": struct.pack("<Q", 1 << 40) + b"{}"}),
        BundleError,
        "weights.safetensors: header length 1099511627776 is larger than",
    ),
    "weights-not-safetensors": (
        "discrete-mlp",
        lambda m, members, *_: members.update({"weights.safetensors": b"\x00" * 3}),
        BundleError,
        "weights.safetensors: 3 bytes is too short",
    ),
    "probes-not-safetensors": (
        "with-probes",
        lambda m, members, *_: members.update({"probes.safetensors": b"{}" * 8}),
        BundleError,
        "probes.safetensors: header length",
    ),
    "no-weights-member": (
        "discrete-mlp",
        lambda m, members, *_: members.pop("weights.safetensors"),
        BundleError,
        "has no weights.safetensors member",
    ),
    # -- spaces
    "space-nan-bound": ("discrete-mlp", _set("observation_space", "low", value="nan"), SpaceError, "found 'nan'"),
    "space-unknown-type": ("discrete-mlp", _set("action_space", "type", value="tuple"), SpaceError, "'tuple'"),
    "space-type-not-a-string": ("discrete-mlp", _set("action_space", "type", value=[]), SpaceError, "space type"),
    "space-bounds-length": (
        "box-squashed",
        _set("action_space", "high", value=[1.0, 2.0, 3.0]),
        SpaceError,
        r"box high: expected 2 bounds for shape \(2,\), found 3",
    ),
    "space-dtype-not-numeric": ("discrete-mlp", _set("observation_space", "dtype", value="str"), SpaceError, "dtype"),
    "space-huge": (
        "discrete-mlp",
        _set("observation_space", "shape", value=[1 << 20, 1 << 20]),
        SpaceError,
        "more than the limit of 16777216",
    ),
    "space-not-object": ("discrete-mlp", _set("observation_space", value=None), SpaceError, "must be a JSON object"),
    # -- graph against tensors
    "missing-tensor": (
        "discrete-mlp",
        _node("policy", 0, params={"weight": "ghost", "bias": "pi.0.bias"}),
        GraphError,
        r"node 0 \(linear\): parameter 'weight' names tensor 'ghost', which the bundle lacks",
    ),
    "tensor-missing-from-weights": (
        "discrete-mlp",
        _weights(**{"pi.2.bias": None}),
        GraphError,
        "names tensor 'pi.2.bias', which the bundle lacks",
    ),
    "wrong-in-features": (
        "discrete-mlp",
        _weights(**{"pi.0.weight": np.zeros((8, 5), np.float32)}),
        GraphError,
        r"node 0 \(linear\): a weight of shape \(8, 5\) cannot take inputs of shape \(None, 4\)",
    ),
    "wrong-out-features": (
        "discrete-mlp",
        _weights(**{"pi.2.weight": np.zeros((4, 8), np.float32)}),
        GraphError,
        r"node 2 \(linear\): a bias of shape \(3,\) does not fit",
    ),
    "wrong-conv-channels": (
        "image-cnn",
        _weights(**{"cnn.0.weight": np.zeros((2, 4, 3, 3), np.float32)}),
        GraphError,
        r"\(conv2d\): a weight of shape \(2, 4, 3, 3\) with groups=1 does not fit 3 input channels",
    ),
    "wrong-rank": (
        "discrete-mlp",
        _weights(**{"pi.0.bias": np.zeros((1, 8), np.float32)}),
        GraphError,
        r"parameter 'bias' \('pi.0.bias'\) must have rank 1, found 2",
    ),
    "unknown-op": (
        "discrete-mlp",
        _node("policy", 1, op="swish"),
        GraphError,
        r"unknown op 'swish'; format 1.0 supports: .*categorical.*linear.*tanh",
    ),
    "value-used-before-defined": (
        "discrete-mlp",
        _node("policy", 1, inputs=["logits"]),
        GraphError,
        r"node 1 \(tanh\): input 'logits' is used before it is defined",
    ),
    "value-redefined": ("discrete-mlp", _node("policy", 1, outputs=["h0"]), GraphError, "value 'h0' is defined twice"),
    "output-never-computed": (
        "discrete-mlp",
        _set("graph", "output", value="act"),
        GraphError,
        "the graph's output 'act' is never computed",
    ),
    "state-output-never-computed": (
        "recurrent-lstm",
        _set("graph", "inputs", 2, "output", value="cell_next"),
        GraphError,
        "state 'lstm_c': its output 'cell_next' is never computed",
    ),
    "unknown-attr": (
        "discrete-mlp",
        _node("policy", 1, attrs={"inplace": True}),
        GraphError,
        r"op 'tanh' has no attribute\(s\) \['inplace'\]; it takes: none",
    ),
    "missing-required-attr": (
        "dict-concat",
        _node("preprocess", 0, attrs={}),
        GraphError,
        r"op 'one_hot' needs attribute\(s\) \['n'\]",
    ),
    "unusable-attr": (
        "dict-concat",
        _node("preprocess", 0, attrs={"n": "three"}),
        GraphError,
        r"\(one_hot\): attribute 'n' must be an integer",
    ),
    "missing-lstm-param": (
        "recurrent-lstm",
        lambda m, members, *_: m["graph"]["policy"][0]["params"].pop("weight_hh.0"),
        GraphError,
        "missing parameter 'weight_hh.0'",
    ),
    "action-shape-mismatch": (
        "discrete-mlp",
        _set("graph", "output", value="logits"),
        GraphError,
        r"action has shape \(3,\) per row, but the action space needs \(\)",
    ),
    "action-space-shape-mismatch": (
        "box-squashed",
        _set("action_space", value={"type": "box", "shape": [3], "dtype": "float32", "low": -1, "high": 1}),
        GraphError,
        r"action has shape \(2,\) per row, but the action space needs \(3,\)",
    ),
    "observation-input-key-mismatch": (
        "dict-concat",
        _set("graph", "inputs", 0, "key", value=["position"]),
        GraphError,
        r"observation inputs have keys \[\['mode'\], \['position'\]\] but the observation space has leaves",
    ),
    "observation-input-missing-leaf": (
        "dict-concat",
        _set("observation_space", "spaces", 1, "key", value="extra"),
        GraphError,
        "one input per leaf",
    ),
    "observation-key-for-a-box": (
        "discrete-mlp",
        _set("graph", "inputs", 0, "key", value=["obs"]),
        GraphError,
        "observation inputs have keys",
    ),
    "state-bad-dtype": (
        "recurrent-lstm",
        _set("graph", "inputs", 1, "dtype", value="int8"),
        GraphError,
        "dtype must be float16, float32 or float64",
    ),
    "state-huge": (
        "recurrent-lstm",
        _set("graph", "inputs", 1, "shape", value=[1 << 20, 1 << 20]),
        GraphError,
        "larger than the limit",
    ),
    "graph-not-object": ("discrete-mlp", _set("graph", value=[]), GraphError, "must be a JSON object"),
    "node-not-object": ("discrete-mlp", _set("graph", "policy", 0, value="linear"), GraphError, "an 'op' name"),
}


@pytest.mark.parametrize(("kind", "change", "error", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bundle_is_rejected(make_bundle, crafter, kind, change, error, message):
    manifest, members = crafter.members_of(make_bundle(kind))
    change(manifest, members, crafter)
    path = crafter.write(manifest, members)
    with pytest.raises(RlportError, match=message) as info:
        Bundle.load(path)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert str(info.value).startswith(f"{path}: "), "the message names the file"


def test_newer_major_in_comment_and_manifest(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    manifest["format_version"] = "2.0"
    manifest["graph"] = {"something": "new"}
    path = _with_comment_version(crafter, crafter.write(manifest, members), b"2.0")
    with pytest.raises(FormatVersionError, match=r"format 2.0; this rlport reads format 1.x. Upgrade rlport"):
        Bundle.load(path)


def test_comment_newer_minor_than_manifest(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    path = _with_comment_version(crafter, crafter.write(manifest, members), b"1.1")
    with pytest.raises(BundleError, match="manifest says format 1.0 but the archive comment says 1.1") as info:
        Bundle.load(path)
    assert type(info.value) is BundleError


def test_encodings_in_a_1_1_bundle_are_read_and_checked(make_bundle, crafter):
    """This rlport reads format 1.1 (more in tests/compress): empty encodings decode nothing; bad ones are refused."""
    manifest, members = crafter.members_of(make_bundle())
    manifest["format_version"] = "1.1"
    manifest["encodings"] = {}
    path = _with_comment_version(crafter, crafter.write(manifest, members), b"1.1")
    assert Bundle.load(path).format_version == (1, 0)  # nothing encoded: saved again, it is a 1.0 bundle
    manifest["encodings"] = {"tensors": {"nope": {"scheme": "int8_symmetric", "scale": "s", "axis": 0}}}
    path = _with_comment_version(crafter, crafter.write(manifest, members), b"1.1")
    with pytest.raises(BundleError, match="encoded tensor 'nope' is not in weights.safetensors"):
        Bundle.load(path)


# ---- members against the manifest ----------------------------------------------------------------------


@pytest.mark.parametrize("members_field", ["<missing>", [], None], ids=["missing", "list", "null"])
def test_manifest_needs_a_members_object(make_bundle, crafter, members_field):
    manifest, members = crafter.members_of(make_bundle())
    if members_field == "<missing>":
        del manifest["members"]
    else:
        manifest["members"] = members_field
    path = crafter.write(manifest, members, fix_digests=False)
    with pytest.raises(BundleError, match="lacks a 'members' object"):
        Bundle.load(path)


def test_member_not_listed_in_the_manifest(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    path = crafter.write(manifest, members, fix_digests=False, extra=[("model_card.md", b"# card")])
    with pytest.raises(BundleError, match=r"members listed in the manifest \['weights.safetensors'\] differ"):
        Bundle.load(path)


def test_member_listed_but_absent(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    manifest["members"]["model_card.md"] = {"sha256": "0" * 64, "size": 0}
    path = crafter.write(manifest, members, fix_digests=False)
    with pytest.raises(BundleError, match=r"differ from those in the archive \['weights.safetensors'\]"):
        Bundle.load(path)


def test_extra_listed_member_is_allowed(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    members["model_card.md"] = b"# A policy\n"
    assert Bundle.load(crafter.write(manifest, members)).env.id == "CartPole-v1"


@pytest.mark.parametrize("entry", [{"sha256": "0" * 64}, {"size": 3}, "digest"], ids=["no-size", "no-sha", "string"])
def test_member_entry_needs_digest_and_size(make_bundle, crafter, entry):
    manifest, members = crafter.members_of(make_bundle())
    manifest["members"]["weights.safetensors"] = entry
    path = crafter.write(manifest, members, fix_digests=False)
    with pytest.raises(BundleError, match="needs 'sha256' and 'size'"):
        Bundle.load(path)


def test_stale_member_digest_is_an_integrity_error(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle())
    members["weights.safetensors"] = members["weights.safetensors"][:-4] + b"\x00\x00\x80\x7f"
    path = crafter.write(manifest, members, fix_digests=False)
    with pytest.raises(IntegrityError, match="'weights.safetensors' does not match its recorded digest"):
        Bundle.load(path)


# ---- hostile manifests: nothing but rlport's own errors ----------------------------------------------

WRONG_VALUES = [None, -1, 1 << 40, 0.5, "x", [], {}, True, ["x"]]


def _paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key))


def test_any_wrong_value_anywhere_in_the_manifest_gives_an_rlport_error(any_bundle, crafter):
    manifest, members = crafter.members_of(any_bundle)
    for path in list(_paths(manifest))[1:]:
        if path[0] == "members":
            continue
        for value in [*WRONG_VALUES, "<delete>"]:
            changed = copy.deepcopy(manifest)
            parent = changed
            for part in path[:-1]:
                parent = parent[part]
            if value == "<delete>":
                parent.pop(path[-1])
            else:
                parent[path[-1]] = value
            file = crafter.write(changed, members)
            try:
                Bundle.load(file)
            except RlportError:
                pass
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"{path} = {value!r}: {type(exc).__name__}: {exc}")
            file.unlink()


def test_crafter_writes_loadable_bundles(make_bundle, crafter):
    """The helper the tests above rely on: an unchanged manifest loads."""
    manifest, members = crafter.members_of(make_bundle("dict-concat"))
    assert json.loads(json.dumps(manifest))["format"] == "rlport-bundle"
    assert Bundle.load(crafter.write(manifest, members)).graph.output == "action"
