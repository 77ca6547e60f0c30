"""The bundle container (docs/FORMAT.md section 1): golden bytes, determinism, atomic save and
every malformed ZIP a reader must reject with its own error."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from rlport.bundle import container
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.bundle.spaces import BoxSpec, DiscreteSpec
from rlport.errors import BundleError, IntegrityError, RlportError
from rlport.graph.graph import Graph, GraphInput, Node

DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1  # year - 1980, month, day
DOS_TIME_MIDNIGHT = 0


def tiny() -> Bundle:
    """The smallest useful bundle: one linear layer and an argmax over two actions."""
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            Node("linear", ("obs",), ("logits",), params={"weight": "w", "bias": "b"}),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    return Bundle(
        observation_space=BoxSpec.create(-1.0, 1.0, (2,)),
        action_space=DiscreteSpec(2),
        graph=graph,
        tensors={"w": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "b": np.array([0.5, -0.5], np.float32)},
        env=EnvSpec(id="Tiny-v0"),
        provenance={"exporter": "tests", "note": "caf\u00e9"},
    )


def expected_manifest(weights: bytes) -> dict:
    """The manifest of ``tiny()``, written out by hand from the spec."""
    return {
        "format": "rlport-bundle",
        "format_version": "1.0",
        "observation_space": {"type": "box", "shape": [2], "dtype": "float32", "low": -1.0, "high": 1.0},
        "action_space": {"type": "discrete", "n": 2, "start": 0},
        "graph": {
            "inputs": [{"name": "obs", "role": "observation", "key": None}],
            "preprocess": [],
            "policy": [
                {"op": "linear", "inputs": ["obs"], "outputs": ["logits"], "params": {"weight": "w", "bias": "b"}},
                {"op": "categorical", "inputs": ["logits"], "outputs": ["action"]},
            ],
            "postprocess": [],
            "output": "action",
        },
        "env": {"id": "Tiny-v0", "kwargs": {}, "wrappers": [], "max_episode_steps": None},
        "provenance": {"exporter": "tests", "note": "caf\u00e9"},
        "probes": None,
        "source": {},
        "members": {"weights.safetensors": {"sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights)}},
    }


# ---- a ZIP reader written from APPNOTE, independent of zipfile -------------------------------------

LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
END = struct.Struct("<4sHHHHIIH")  # 22 bytes


def parse_zip(data: bytes) -> dict:
    local, pos = [], 0
    while data[pos : pos + 4] == b"PK\x03\x04":
        _, need, flags, method, mtime, mdate, crc, csize, size, nlen, xlen = LOCAL.unpack_from(data, pos)
        start = pos + LOCAL.size + nlen + xlen
        local.append(
            {
                "offset": pos,
                "flags": flags,
                "method": method,
                "time": mtime,
                "date": mdate,
                "crc": crc,
                "csize": csize,
                "size": size,
                "name": data[pos + LOCAL.size : pos + LOCAL.size + nlen].decode("ascii"),
                "extra": xlen,
                "data_offset": start,
                "data": data[start : start + csize],
            }
        )
        pos = start + csize
    central = []
    cd_start = pos
    while data[pos : pos + 4] == b"PK\x01\x02":
        fields = CENTRAL.unpack_from(data, pos)
        nlen, xlen, clen = fields[10], fields[11], fields[12]
        central.append(
            {
                "offset_in_file": pos,
                "made_by": fields[1],
                "flags": fields[3],
                "method": fields[4],
                "time": fields[5],
                "date": fields[6],
                "crc": fields[7],
                "csize": fields[8],
                "size": fields[9],
                "extra": xlen,
                "comment": clen,
                "external_attr": fields[15],
                "local_offset": fields[16],
                "name": data[pos + CENTRAL.size : pos + CENTRAL.size + nlen].decode("ascii"),
            }
        )
        pos += CENTRAL.size + nlen + xlen + clen
    sig, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = END.unpack_from(data, pos)
    assert sig == b"PK\x05\x06"
    return {
        "local": local,
        "central": central,
        "cd_offset": cd_offset,
        "cd_start": cd_start,
        "cd_size": cd_size,
        "entries": (n_disk, n_total),
        "comment": data[pos + END.size : pos + END.size + comment_len],
        "end": pos + END.size + comment_len,
    }


# ---- golden bytes ------------------------------------------------------------------------------------


@pytest.fixture
def golden(tmp_path: Path) -> bytes:
    path = tiny().save(tmp_path / "tiny.rlp")
    return path.read_bytes()


def test_golden_starts_with_a_local_header_for_the_manifest(golden):
    assert golden.startswith(b"PK\x03\x04")
    assert parse_zip(golden)["local"][0]["name"] == "manifest.json"
    assert [m["name"] for m in parse_zip(golden)["local"]] == ["manifest.json", "weights.safetensors"]


def test_golden_members_are_stored_plain_and_timeless(golden):
    archive = parse_zip(golden)
    for member in archive["local"]:
        assert member["method"] == 0, f"{member['name']} is not STORED"
        assert member["flags"] & 0x1 == 0, "encrypted"
        assert member["flags"] & 0x8 == 0, "data descriptor"
        assert (member["date"], member["time"]) == (DOS_DATE_1980_01_01, DOS_TIME_MIDNIGHT)
        assert member["extra"] == 0
        assert member["csize"] == member["size"] == len(member["data"])
        assert member["crc"] == zlib.crc32(member["data"])
    for entry, member in zip(archive["central"], archive["local"], strict=True):
        assert entry["name"] == member["name"]
        assert entry["local_offset"] == member["offset"]
        assert (entry["method"], entry["date"], entry["time"], entry["crc"]) == (
            0,
            DOS_DATE_1980_01_01,
            DOS_TIME_MIDNIGHT,
            member["crc"],
        )
        assert entry["extra"] == 0 and entry["comment"] == 0
        assert entry["external_attr"] == 0o100644 << 16, "not a 0o644 regular file"
    assert archive["entries"] == (2, 2)
    assert archive["cd_offset"] == archive["cd_start"]
    assert archive["end"] == len(golden), "bytes after the archive comment"


def test_golden_comment_is_the_magic_with_the_manifest_digest(golden):
    archive = parse_zip(golden)
    manifest = archive["local"][0]["data"]
    assert archive["comment"] == b"rlport-bundle 1.0 sha256:" + hashlib.sha256(manifest).hexdigest().encode()


def test_golden_manifest_is_the_canonical_json_of_the_spec(golden):
    archive = parse_zip(golden)
    weights = archive["local"][1]["data"]
    expected = expected_manifest(weights)
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    assert archive["local"][0]["data"] == text.encode("ascii")
    assert b"caf\\u00e9" in archive["local"][0]["data"], "non-ASCII must be escaped"


def test_golden_weights_are_safetensors_the_reference_reader_accepts(golden):
    weights = parse_zip(golden)["local"][1]["data"]
    tensors = safetensors.numpy.load(weights)
    assert sorted(tensors) == ["b", "w"]
    np.testing.assert_array_equal(tensors["w"], tiny().tensors["w"])
    (header_len,) = struct.unpack("<Q", weights[:8])
    assert header_len % 8 == 0
    header = json.loads(weights[8 : 8 + header_len])
    assert header["b"]["data_offsets"] == [0, 8] and header["w"]["data_offsets"] == [8, 24], "sorted, from 0"


def test_probes_member_follows_the_weights(tmp_path, make_bundle):
    path = make_bundle("with-probes").save(tmp_path / "p.rlp")
    names = [m["name"] for m in parse_zip(path.read_bytes())["local"]]
    assert names == ["manifest.json", "weights.safetensors", "probes.safetensors"]


# ---- determinism --------------------------------------------------------------------------------------


def test_saving_twice_gives_identical_bytes(tmp_path, any_bundle):
    first = any_bundle.save(tmp_path / "a.rlp").read_bytes()
    second = any_bundle.save(tmp_path / "b.rlp").read_bytes()
    assert first == second


def test_load_then_save_gives_identical_bytes(tmp_path, any_bundle):
    original = any_bundle.save(tmp_path / "a.rlp")
    again = Bundle.load(original).save(tmp_path / "b.rlp")
    assert again.read_bytes() == original.read_bytes()


def test_insertion_order_does_not_change_the_bytes(tmp_path, any_bundle):
    any_bundle.provenance = {"a": 1, "b": {"y": 2, "x": 3}}
    any_bundle.source = {"state_dict": ["z", "a"], "kwargs": {"q": 1, "p": 2}}
    first = any_bundle.save(tmp_path / "a.rlp").read_bytes()
    any_bundle.tensors = dict(reversed(list(any_bundle.tensors.items())))
    if any_bundle.probes is not None:
        any_bundle.probes = dict(reversed(list(any_bundle.probes.items())))
    any_bundle.provenance = {"b": {"x": 3, "y": 2}, "a": 1}
    any_bundle.source = {"kwargs": {"p": 2, "q": 1}, "state_dict": ["z", "a"]}
    assert any_bundle.save(tmp_path / "b.rlp").read_bytes() == first


def test_tensor_order_alone_does_not_change_the_bytes(tmp_path, make_bundle):
    bundle = make_bundle("recurrent-lstm")
    first = bundle.save(tmp_path / "a.rlp").read_bytes()
    bundle.tensors = dict(reversed(list(bundle.tensors.items())))
    assert bundle.save(tmp_path / "b.rlp").read_bytes() == first


@pytest.mark.parametrize("epoch", [None, "0", "1700000000"], ids=["unset", "epoch-0", "epoch-2023"])
def test_no_clock_leaks_into_the_bytes(tmp_path, monkeypatch, epoch, golden):
    if epoch is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    fake_now = 2_000_000_000.0 + (0 if epoch is None else int(epoch))
    monkeypatch.setattr(time, "time", lambda: fake_now)
    monkeypatch.setattr(time, "localtime", lambda secs=None: time.gmtime(fake_now if secs is None else secs))
    assert tiny().save(tmp_path / "t.rlp").read_bytes() == golden


# ---- atomic save -----------------------------------------------------------------------------------


def _boom(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["replace", "fsync", "write"])
def test_interrupted_save_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, where):
    path = tmp_path / "policy.rlp"
    tiny().save(path)
    before = path.read_bytes()
    if where == "write":
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                raise KeyboardInterrupt  # the process is interrupted half way

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
        expected = KeyboardInterrupt
    else:
        monkeypatch.setattr(os, where, _boom)
        expected = BundleError
    bundle = tiny()
    bundle.env = EnvSpec(id="Other-v0")
    with pytest.raises(expected):
        bundle.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.rlp"], "a temporary file was left behind"


def test_failed_save_error_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _boom)
    with pytest.raises(BundleError, match=r"cannot save the bundle to .*policy.rlp.*No space left on device"):
        tiny().save(tmp_path / "policy.rlp")


def test_invalid_bundle_is_not_written(tmp_path):
    path = tmp_path / "policy.rlp"
    tiny().save(path)
    before = path.read_bytes()
    broken = tiny()
    broken.tensors = {"w": broken.tensors["w"]}
    with pytest.raises(RlportError, match="lacks"):
        broken.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["policy.rlp"]


def test_unwritable_directory_is_a_clear_error(tmp_path, monkeypatch):
    def refuse(path, flags, mode=0o777):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(BundleError, match=r"cannot save the bundle to .*policy.rlp.*Permission denied"):
        tiny().save(tmp_path / "policy.rlp")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [float("nan"), np.float32(1.0), {1, 2}], ids=["nan", "numpy-float32", "set"])
def test_manifest_value_json_cannot_hold_is_a_clear_error(tmp_path, value):
    path = tiny().save(tmp_path / "policy.rlp")
    before = path.read_bytes()
    bundle = tiny()
    bundle.provenance = {"bad": value}
    with pytest.raises(BundleError, match="the manifest holds a value JSON cannot represent"):
        bundle.save(path)
    assert path.read_bytes() == before


def test_save_into_a_missing_directory_is_a_clear_error(tmp_path):
    target = tmp_path / "missing" / "policy.rlp"
    with pytest.raises(BundleError, match=r"directory .*missing' does not exist"):
        tiny().save(target)
    assert not (tmp_path / "missing").exists()


def test_save_onto_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "policy.rlp").mkdir()
    with pytest.raises(BundleError, match="is a directory"):
        tiny().save(tmp_path / "policy.rlp")


def test_saved_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tiny().save(tmp_path / "policy.rlp")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_accepts_str_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tiny().save("relative.rlp") == Path("relative.rlp")
    assert Bundle.load(str(tmp_path / "relative.rlp")).env.id == "Tiny-v0"


# ---- not a bundle ------------------------------------------------------------------------------------


def _sb3_like_zip() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data", json.dumps({"policy_class": {":type:": "<class 'abc.ABCMeta'>"}}))
        archive.writestr("policy.pth", b"PK\x03\x04 torch zip")
        archive.writestr("pytorch_variables.pth", b"")
        archive.writestr("_stable_baselines3_version", "2.9.2")
        archive.writestr("system_info.txt", "OS: Linux")
    return buffer.getvalue()


NOT_BUNDLES = {
    "empty": (b"", "too short"),
    "random-bytes": (np.random.default_rng(0).bytes(4096), "not a readable rlport bundle"),
    "text": (b'{"format": "rlport-bundle"}\n' * 10, "not a readable rlport bundle"),
    "sb3-zip": (_sb3_like_zip(), "lacks the 'rlport-bundle' magic.*rlport import"),
}


@pytest.mark.parametrize(("content", "message"), NOT_BUNDLES.values(), ids=NOT_BUNDLES.keys())
def test_not_a_bundle(tmp_path, content, message):
    path = tmp_path / "file.rlp"
    path.write_bytes(content)
    with pytest.raises(BundleError, match=message) as info:
        Bundle.load(path)
    assert type(info.value) is BundleError
    assert str(path) in str(info.value), "the message names the file"


def _digest(comment: bytes) -> bytes:
    return comment.rsplit(b":", 1)[1]


# comment of a good bundle -> a bad comment, and what the error says
BAD_COMMENTS = {
    "none": (lambda c: b"", "lacks the 'rlport-bundle' magic"),
    "other-tool": (lambda c: b"created by zip 3.0", "lacks the 'rlport-bundle' magic"),
    "trailing-newline": (lambda c: c + b"\n", "is not 'rlport-bundle <major>.<minor> sha256"),
    "short-digest": (lambda c: c[:-1], "is not 'rlport-bundle <major>.<minor> sha256"),
    "upper-case-hex": (lambda c: b"rlport-bundle 1.0 sha256:" + _digest(c).upper(), "is not 'rlport-bundle"),
    "no-version": (lambda c: b"rlport-bundle sha256:" + _digest(c), "is not 'rlport-bundle"),
    "major-0": (lambda c: b"rlport-bundle 0.9 sha256:" + _digest(c), "format 0.9 does not exist"),
}


@pytest.mark.parametrize(("change", "message"), BAD_COMMENTS.values(), ids=BAD_COMMENTS.keys())
def test_bad_archive_comment(tmp_path, golden, change, message):
    comment = parse_zip(golden)["comment"]
    new = change(comment)
    path = tmp_path / "file.rlp"
    path.write_bytes(golden[: len(golden) - len(comment) - 2] + struct.pack("<H", len(new)) + new)
    with pytest.raises(BundleError, match=message) as info:
        Bundle.load(path)
    assert type(info.value) is BundleError


def test_missing_path(tmp_path):
    with pytest.raises(BundleError, match=r"cannot read bundle .*nope.rlp: No such file"):
        Bundle.load(tmp_path / "nope.rlp")


def test_directory_path(tmp_path):
    with pytest.raises(BundleError, match="cannot read bundle"):
        Bundle.load(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_special_files_are_refused_before_reading(tmp_path, kind):
    path = {"fifo": tmp_path / "pipe.rlp", "directory": tmp_path, "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # no writer: reading it would block for ever
    with pytest.raises(BundleError, match=r"cannot read bundle .*: it is a .*, not a regular file"):
        Bundle.load(path)


def test_version_with_thousands_of_digits_is_a_bundle_error(tmp_path, golden):
    comment = parse_zip(golden)["comment"]
    new = b"rlport-bundle 1" + b"0" * 5000 + b".0 sha256:" + _digest(comment)
    path = tmp_path / "file.rlp"
    path.write_bytes(golden[: len(golden) - len(comment) - 2] + struct.pack("<H", len(new)) + new)
    with pytest.raises(BundleError, match=r"has more than 6 digits in a part; the bundle is corrupt"):
        Bundle.load(path)


# ---- truncation and damage --------------------------------------------------------------------------


def test_every_truncation_is_a_bundle_error(tmp_path, golden):
    path = tmp_path / "cut.rlp"
    for size in range(0, len(golden), 7):
        path.write_bytes(golden[:size])
        with pytest.raises(BundleError) as info:
            Bundle.load(path)
        assert str(path) in str(info.value), f"cut at {size}: {info.value}"
    path.write_bytes(golden[:-1])
    with pytest.raises(BundleError, match="comment"):
        Bundle.load(path)


def test_every_flipped_byte_is_caught_or_harmless(tmp_path, golden):
    """A flip either raises rlport's own error or hits a field no content depends on."""
    path, resaved = tmp_path / "flip.rlp", tmp_path / "resaved.rlp"
    caught = 0
    for position in range(0, len(golden), 7):
        damaged = bytearray(golden)
        damaged[position] ^= 0x55
        path.write_bytes(bytes(damaged))
        try:
            bundle = Bundle.load(path)
        except RlportError:
            caught += 1
            continue
        bundle.save(resaved)
        assert resaved.read_bytes() == golden, f"flip at {position} changed the content silently"
    assert caught > len(golden) // 7 * 0.8


def _flip_in_member(data: bytes, name: str, offset: int = 20) -> bytes:
    member = next(m for m in parse_zip(data)["local"] if m["name"] == name)
    damaged = bytearray(data)
    damaged[member["data_offset"] + offset] ^= 0x01
    return bytes(damaged)


@pytest.mark.parametrize("member", ["weights.safetensors", "manifest.json"])
def test_flipped_byte_inside_a_member_is_an_integrity_error(tmp_path, golden, member):
    path = tmp_path / "damaged.rlp"
    path.write_bytes(_flip_in_member(golden, member))
    with pytest.raises(IntegrityError, match=f"{member}.*damaged"):
        Bundle.load(path)


def _parts(golden: bytes) -> tuple[bytes, bytes, bytes]:
    archive = parse_zip(golden)
    return archive["local"][0]["data"], archive["local"][1]["data"], archive["comment"]


def test_member_changed_with_a_valid_crc_is_an_integrity_error(tmp_path, golden, crafter):
    manifest, weights, comment = _parts(golden)
    weights = weights[:-1] + bytes([weights[-1] ^ 0x01])
    path = crafter.file(crafter.zip_bytes([("manifest.json", manifest), ("weights.safetensors", weights)], comment))
    with pytest.raises(IntegrityError, match="'weights.safetensors' does not match its recorded digest"):
        Bundle.load(path)


def test_manifest_changed_without_the_comment_is_an_integrity_error(tmp_path, golden, crafter):
    manifest, weights, comment = _parts(golden)
    manifest = manifest.replace(b"Tiny-v0", b"Evil-v0")
    path = crafter.file(crafter.zip_bytes([("manifest.json", manifest), ("weights.safetensors", weights)], comment))
    with pytest.raises(IntegrityError, match="manifest.json does not match the digest in the archive comment"):
        Bundle.load(path)


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_manifest_with_a_recomputed_comment_but_wrong_member_digest(tmp_path, golden, crafter, field):
    manifest, weights, _ = _parts(golden)
    data = json.loads(manifest)
    entry = data["members"]["weights.safetensors"]
    entry[field] = "0" * 64 if field == "sha256" else entry["size"] + 1
    path = crafter.file(
        crafter.zip_bytes([("manifest.json", crafter.canonical(data)), ("weights.safetensors", weights)])
    )
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        Bundle.load(path)


# ---- structural rules ----------------------------------------------------------------------------------

HOSTILE_NAMES = ["../evil", "a/../../evil", "/etc/passwd", "C:/evil", "c:evil", "a\\b", "./x", "a//b", "dir/"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_unsafe_member_names_are_rejected(golden, crafter, name):
    manifest, weights, _ = _parts(golden)
    members = [("manifest.json", manifest), ("weights.safetensors", weights), (name, b"x")]
    path = crafter.file(crafter.zip_bytes(members))
    with pytest.raises(BundleError, match="is not a safe relative path"):
        Bundle.load(path)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_unsafe_member_names_are_never_written(tmp_path, name):
    with pytest.raises(BundleError, match="is not a safe relative path"):
        container.write_container(tmp_path / "x.rlp", b"{}\n", {name: b""})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("duplicate", ["manifest.json", "weights.safetensors"])
def test_duplicate_member_names_are_rejected(golden, crafter, duplicate):
    manifest, weights, _ = _parts(golden)
    members = [("manifest.json", manifest), ("weights.safetensors", weights), (duplicate, b"second")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        path = crafter.file(crafter.zip_bytes(members))
    with pytest.raises(BundleError, match=f"duplicate member names \\['{duplicate}'\\]"):
        Bundle.load(path)


def test_manifest_must_be_the_first_member(golden, crafter):
    manifest, weights, _ = _parts(golden)
    members = [("weights.safetensors", weights), ("manifest.json", manifest)]
    comment = b"rlport-bundle 1.0 sha256:" + crafter.sha256(manifest).encode()
    path = crafter.file(crafter.zip_bytes(members, comment))
    with pytest.raises(
        BundleError, match="the first member must be 'manifest.json', found \\['weights.safetensors'\\]"
    ):
        Bundle.load(path)


def test_compressed_member_is_rejected(golden, crafter):
    manifest, weights, _ = _parts(golden)
    members = [("manifest.json", manifest), ("weights.safetensors", weights)]
    path = crafter.file(crafter.zip_bytes(members, compression=zipfile.ZIP_DEFLATED))
    with pytest.raises(BundleError, match="'manifest.json' is compressed; bundle members must be stored"):
        Bundle.load(path)


@pytest.mark.parametrize(("extra", "accepted"), [(62, True), (63, False)], ids=["64-members", "65-members"])
def test_member_count_limit(make_bundle, crafter, extra, accepted):
    manifest, members = crafter.members_of(make_bundle())
    members |= {f"extra/{k:02d}.txt": b"" for k in range(extra)}
    path = crafter.write(manifest, members)
    if accepted:
        assert Bundle.load(path).env.id == "CartPole-v1"
    else:
        with pytest.raises(BundleError, match="65 members is more than the limit of 64"):
            Bundle.load(path)


@pytest.mark.parametrize(
    ("member", "size", "message"),
    [
        ("weights.safetensors", 0x7FFFFFFF, r"'weights.safetensors' claims 2147483647 bytes, over the limit of \d+"),
        ("manifest.json", 16 * 1024 * 1024 + 1, "'manifest.json' claims 16777217 bytes, over the limit of 16777216"),
    ],
    ids=["member-larger-than-file", "manifest-over-16MiB"],
)
def test_absurd_declared_size_is_rejected(tmp_path, golden, member, size, message):
    entry = next(e for e in parse_zip(golden)["central"] if e["name"] == member)
    damaged = bytearray(golden)
    struct.pack_into("<I", damaged, entry["offset_in_file"] + 24, size)  # uncompressed size
    path = tmp_path / "absurd.rlp"
    path.write_bytes(bytes(damaged))
    with pytest.raises(BundleError, match=message):
        Bundle.load(path)


def test_encrypted_member_is_rejected(tmp_path, golden):
    archive = parse_zip(golden)
    damaged = bytearray(golden)
    for entry in archive["central"]:
        if entry["name"] == "weights.safetensors":
            struct.pack_into("<H", damaged, entry["offset_in_file"] + 8, entry["flags"] | 0x1)
    for member in archive["local"]:
        if member["name"] == "weights.safetensors":
            struct.pack_into("<H", damaged, member["offset"] + 6, member["flags"] | 0x1)
    path = tmp_path / "encrypted.rlp"
    path.write_bytes(bytes(damaged))
    with pytest.raises(BundleError, match="member 'weights.safetensors' cannot be read .*encrypted"):
        Bundle.load(path)


def test_read_container_returns_verified_manifest_and_members(tmp_path, golden):
    path = tmp_path / "t.rlp"
    path.write_bytes(golden)
    manifest, members, version = container.read_container(path)
    assert version == (1, 0)
    assert list(members) == ["weights.safetensors"]
    assert manifest == parse_zip(golden)["local"][0]["data"]
