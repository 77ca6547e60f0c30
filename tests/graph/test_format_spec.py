"""docs/FORMAT.md's exact statements against the code: each test reads the spec's words and checks what rlport does.

A reader written from FORMAT.md alone must match rlport, so the statements a reader needs (the ZIP
bytes, the archive comment, the member-name rule, digests, provenance, probe tolerance, the gsde
formula, dtypes, limits) are parsed out of the document where they are written and compared with
the bytes rlport writes and the checks it makes. A test fails when the spec and the code drift.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from rlport.bundle import container, manifest, safetensors, spaces
from rlport.bundle.bundle import Bundle
from rlport.bundle.container import FORMAT_MAJOR, FORMAT_MINOR, MANIFEST, sha256, write_container
from rlport.bundle.manifest import canonical_json
from rlport.bundle.probes import PARITY_ATOL, action_tolerance
from rlport.bundle.spaces import BoxSpec, DiscreteSpec
from rlport.errors import BundleError, FormatVersionError, IntegrityError
from rlport.graph import infer
from rlport.graph.graph import Graph, GraphInput, Node
from rlport.graph.reference import bind

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def spec_text() -> str:
    """FORMAT.md with its line breaks and indentation folded to single spaces."""
    return " ".join(FORMAT_MD.read_text(encoding="utf-8").split())


def section(number: str) -> str:
    text = FORMAT_MD.read_text(encoding="utf-8")
    return text.split(f"\n## {number}. ", 1)[1].split("\n## ", 1)[0]


def small_bundle(provenance: dict | None = None) -> Bundle:
    """Box(3) -> linear -> tanh: an action in [-1, 1]^2."""
    rng = np.random.default_rng(0)
    tensors = {"w": rng.standard_normal((2, 3)).astype(np.float32), "b": np.zeros(2, np.float32)}
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            Node("linear", ("obs",), ("h",), params={"weight": "w", "bias": "b"}),
            Node("tanh", ("h",), ("action",)),
        ),
        output="action",
    )
    return Bundle(
        observation_space=BoxSpec.create(-1.0, 1.0, (3,)),
        action_space=BoxSpec.create(-1.0, 1.0, (2,)),
        graph=graph,
        tensors=tensors,
        provenance=provenance or {},
        probes={"obs": np.zeros((1, 3), np.float32), "action": np.zeros((1, 2), np.float32)},
    )


# ---- section 1: the ZIP bytes ----------------------------------------------------------------

_LOCAL = "<IHHHHHIIIHH"
_CENTRAL = "<IHHHHHHIIIHHHHHII"
_END = "<IHHHHIIH"
_FIELDS = {
    "local file header": [
        "signature", "version needed to extract", "general purpose bit flag", "compression method",
        "last mod file time", "last mod file date", "crc-32", "compressed size", "uncompressed size",
        "file name length", "extra field length",
    ],
    "central directory header": [
        "signature", "version made by", "version needed to extract", "general purpose bit flag",
        "compression method", "last mod file time", "last mod file date", "crc-32", "compressed size",
        "uncompressed size", "file name length", "extra field length", "file comment length", "disk number start",
        "internal file attributes", "external file attributes", "relative offset of local header",
    ],
    "end of central directory record": [
        "signature", "number of this disk", "disk where central directory starts", "entries on this disk",
        "total entries", "size of the central directory", "offset of start of central directory",
        ".ZIP file comment length",
    ],
}  # fmt: skip
"""The APPNOTE's fields of each record, in their byte order (section 4.3 of the APPNOTE)."""


def parse_zip(data: bytes) -> dict:
    """Every record of a ZIP written without ZIP64, by the APPNOTE alone (no ``zipfile``)."""
    records: dict = {"local file header": [], "central directory header": [], "names": [], "data": []}
    offset = 0
    while data[offset : offset + 4] == b"PK\x03\x04":
        fields = dict(zip(_FIELDS["local file header"], struct.unpack_from(_LOCAL, data, offset), strict=True))
        fields["at"] = offset
        start = offset + 30 + fields["file name length"] + fields["extra field length"]
        records["local file header"].append(fields)
        records["names"].append(data[offset + 30 : offset + 30 + fields["file name length"]])
        records["data"].append(data[start : start + fields["compressed size"]])
        offset = start + fields["compressed size"]
    records["central directory start"] = offset
    while data[offset : offset + 4] == b"PK\x01\x02":
        fields = dict(zip(_FIELDS["central directory header"], struct.unpack_from(_CENTRAL, data, offset), strict=True))
        records["central directory header"].append(fields)
        offset += 46 + fields["file name length"] + fields["extra field length"] + fields["file comment length"]
    records["central directory end"] = offset
    end = dict(zip(_FIELDS["end of central directory record"], struct.unpack_from(_END, data, offset), strict=True))
    records["end of central directory record"] = [end]
    records["comment"] = data[offset + 22 :]
    return records


def header_table() -> list[tuple[str, str, str]]:
    """The (record, field, value) rows of section 1's table of ZIP fields."""
    rows = []
    for line in section("1").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in _FIELDS:
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def _stated_number(value: str) -> int | None:
    """The integer a value cell states first (`` `0x0314` ``, `` `20` ``), or None for a description."""
    match = re.match(r"`(0x[0-9a-f]+|\d+)`", value)
    return None if match is None else int(match.group(1), 0)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[bytes, dict]:
    path = small_bundle().save(tmp_path_factory.mktemp("spec") / "b.rlp")
    data = path.read_bytes()
    return data, parse_zip(data)


COMPUTED = {"crc-32", "file name length", "compressed size", "uncompressed size", "relative offset of local header"}
"""Fields whose value depends on the member: stated in words, checked by ``test_the_computed_fields_are_as_stated``."""


def test_the_table_states_every_field_of_the_three_records():
    stated = [(record, field) for record, field, _ in header_table()]
    assert len(set(stated)) == len(stated), "a field is stated twice"
    for record, fields in _FIELDS.items():
        missing = set(fields) - COMPUTED - {field for r, field in stated if r == record}
        assert not missing, f"{record}: FORMAT.md does not state {sorted(missing)}"


def test_every_stated_header_value_is_the_one_written(written):
    data, records = written
    checked = 0
    for record, field, value in header_table():
        number = _stated_number(value)
        if number is None or value.startswith("`0` (`0x0800`"):  # the flag: checked below, for both name kinds
            continue
        for fields in records[record]:
            assert fields[field] == number, f"{record} {field}: FORMAT.md says {value}, rlport wrote {fields[field]}"
        checked += 1
    assert checked >= 20, "the table parser found too few stated values"


def test_the_computed_fields_are_as_stated(written):
    data, records = written
    locals_, centrals = records["local file header"], records["central directory header"]
    assert [n.decode() for n in records["names"]] == [MANIFEST, "weights.safetensors", "probes.safetensors"]
    assert locals_[0]["at"] == 0  # from offset 0, back to back, nothing between
    for local, central, name, member in zip(locals_, centrals, records["names"], records["data"], strict=True):
        assert local["crc-32"] == zlib.crc32(member) and local["compressed size"] == local["uncompressed size"]
        assert local["uncompressed size"] == len(member) and local["file name length"] == len(name)
        for field in ("crc-32", "compressed size", "uncompressed size", "file name length"):
            assert central[field] == local[field], field  # "those of the local header"
        assert central["relative offset of local header"] == local["at"]
    ends = [local["at"] for local in locals_[1:]] + [records["central directory start"]]
    assert all(a == b["at"] + 30 + len(n) + len(d) for a, b, n, d in zip(ends, locals_, records["names"],
                                                                          records["data"], strict=True))  # fmt: skip
    (end,) = records["end of central directory record"]
    assert end["entries on this disk"] == end["total entries"] == len(locals_)
    assert end["offset of start of central directory"] == records["central directory start"]
    assert end["size of the central directory"] == records["central directory end"] - records["central directory start"]
    assert len(data) == records["central directory end"] + 22 + end[".ZIP file comment length"]  # nothing after


def test_the_flag_is_0_for_ascii_names_and_0x0800_for_others(tmp_path):
    assert any(value.startswith("`0` (`0x0800` for a non-ASCII name)") for _, _, value in header_table())
    write_container(tmp_path / "n.rlp", b"{}\n", {"weights.safetensors": b"", "caf\u00e9": b"x"})
    records = parse_zip((tmp_path / "n.rlp").read_bytes())
    flags = [fields["general purpose bit flag"] for fields in records["local file header"]]
    assert flags == [0, 0, 0x0800]
    assert [f["general purpose bit flag"] for f in records["central directory header"]] == flags
    assert records["names"][2] == "caf\u00e9".encode()


def test_zip64_is_written_by_the_stated_rule(tmp_path, monkeypatch):
    """The rule is Python's ``zipfile``'s, at its limit of 2^31 - 1 bytes; checked here with the limit scaled down."""
    assert "a member whose length times 1.05 exceeds 2^31 - 1 has version needed" in spec_text()
    assert zipfile.ZIP64_LIMIT == 2**31 - 1
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    write_container(tmp_path / "z.rlp", b"{}\n", {"weights.safetensors": b"a" * 960, "big": b"b" * 952})
    data = (tmp_path / "z.rlp").read_bytes()
    versions, extras, offset = [], [], 0
    while data[offset : offset + 4] == b"PK\x03\x04":
        fields = struct.unpack_from(_LOCAL, data, offset)
        versions.append(fields[1])
        extra = data[offset + 30 + fields[9] : offset + 30 + fields[9] + fields[10]]
        extras.append(extra)
        offset += 30 + fields[9] + fields[10] + (len(extra) and struct.unpack_from("<Q", extra, 4)[0] or fields[7])
    assert versions == [20, 45, 20]  # 960 * 1.05 > 1000; 952 * 1.05 is not
    assert extras[0] == extras[2] == b"" and extras[1] == struct.pack("<HHQQ", 1, 16, 960, 960)
    assert fields[8] == 952 and data.find(b"PK\x06\x06") > 0  # central directory beyond the limit: ZIP64 end record


# ---- section 1: the archive comment ------------------------------------------------------------


def test_the_comment_is_exactly_the_stated_text(written):
    data, records = written
    title_version = re.match(r"# The rlport bundle format, version (\d+)\.(\d+)", FORMAT_MD.read_text()).groups()
    assert (int(title_version[0]), int(title_version[1])) == (FORMAT_MAJOR, FORMAT_MINOR)
    prefix = f"rlport-bundle {FORMAT_MAJOR}.{FORMAT_MINOR} sha256:"
    assert f"rlport writes `{prefix}`" in spec_text()
    manifest_bytes = records["data"][0]
    assert records["comment"] == f"{prefix}{sha256(manifest_bytes)}".encode("ascii")
    stated_length = int(re.search(r"\((\d+) bytes in all for 1\.0\)", spec_text()).group(1))
    assert len(records["comment"]) == stated_length
    assert re.fullmatch(rb"[0-9a-f]{64}", records["comment"][len(prefix) :])


def _with_comment(data: bytes, comment: bytes) -> bytes:
    end = data.rindex(b"PK\x05\x06")
    return data[: end + 20] + struct.pack("<H", len(comment)) + comment


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda c: c.replace(b"rlport-bundle", b"RLPORT-bundle"), BundleError, "lacks the 'rlport-bundle' magic"),
        (lambda c: c[:25] + c[25:].upper(), BundleError, "is not 'rlport-bundle <major>.<minor>"),
        (lambda c: c.replace(b" 1.0 ", b" 1234567.0 "), BundleError, "more than 6 digits"),
        (lambda c: c.replace(b" 1.0 ", b" 123456.0 "), FormatVersionError, "Upgrade rlport"),
        (lambda c: c.replace(b" 1.0 ", b" 0.0 "), BundleError, "does not exist; the bundle is corrupt"),
        (lambda c: c + b"\n", BundleError, "is not 'rlport-bundle <major>.<minor>"),
        (lambda c: c[:-1] + (b"0" if c[-1:] != b"0" else b"1"), IntegrityError, "does not match the digest"),
    ],
    ids=["no-magic", "uppercase-hex", "seven-digits", "newer-major", "major-0", "newline", "other-digest"],
)
def test_a_comment_other_than_the_stated_form_is_refused(written, tmp_path, make, error, message):
    assert "each of `<major>` and `<minor>` 1 to 6 ASCII digits" in spec_text()
    assert container.MAX_VERSION_DIGITS == 6
    data, records = written
    path = tmp_path / "c.rlp"
    path.write_bytes(_with_comment(data, make(records["comment"])))
    with pytest.raises(error, match=message):
        Bundle.load(path)


# ---- section 1: member names ------------------------------------------------------------------


def stated_names() -> tuple[list[str], list[str]]:
    """The examples of the member-name rule: (rejected, accepted)."""
    match = re.search(
        r"\(so ((?:`[^`]+`,? ?(?:and )?)+) are rejected, ((?:`[^`]+`,? ?(?:and )?)+) are not\)", spec_text()
    )
    assert match, "the member-name examples in FORMAT.md section 1"
    return re.findall(r"`([^`]+)`", match.group(1)), re.findall(r"`([^`]+)`", match.group(2))


NAMES_REJECTED_BY_THE_WORDS = ["", "/abs", "C:evil", "z:x", "a\\b", "a\x00b"]
"""One name for each other clause: empty, starting with /, with a letter and :, a backslash, a NUL."""


def test_the_member_name_examples_are_what_the_writer_and_reader_do(tmp_path):
    rejected, accepted = stated_names()
    assert rejected == ["a/../b", "./a", "a//b", "a/"] and accepted == ["a..b", ".a"]
    for name in rejected + NAMES_REJECTED_BY_THE_WORDS:
        with pytest.raises(BundleError, match="is not a safe relative path"):
            write_container(tmp_path / "x.rlp", b"{}\n", {"weights.safetensors": b"", name: b""})
    for name in accepted:
        write_container(tmp_path / "x.rlp", b"{}\n", {"weights.safetensors": b"", name: b""})


# ---- section 2: digests -------------------------------------------------------------------------


def test_a_member_digest_in_uppercase_does_not_match(tmp_path):
    assert "a digest in uppercase does not match" in spec_text()
    bundle = small_bundle()
    members = bundle._members()
    manifest_json = bundle.manifest(members)
    entry = manifest_json["members"]["weights.safetensors"]
    entry["sha256"] = entry["sha256"].upper()
    assert entry["sha256"] != entry["sha256"].lower()
    write_container(tmp_path / "u.rlp", canonical_json(manifest_json), members)
    with pytest.raises(IntegrityError, match="'weights.safetensors' does not match its recorded digest"):
        Bundle.load(tmp_path / "u.rlp")


# ---- section 6: provenance ----------------------------------------------------------------------


def _nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value  # type: ignore[return-value]


def test_provenance_values_of_every_json_type_nested_16_levels_load(tmp_path):
    assert "A reader MUST accept nesting at least 16 levels deep below `provenance`" in spec_text()
    provenance = {"s": "x", "n": 1.5, "i": 3, "b": True, "z": None, "list": [1, "a", [None]], "deep": _nested(16)}
    loaded = Bundle.load(small_bundle(provenance).save(tmp_path / "p.rlp"))
    assert loaded.provenance["deep"] == _nested(16) and loaded.provenance["list"] == [1, "a", [None]]


def test_provenance_nested_beyond_the_parser_is_refused_as_corrupt(tmp_path):
    assert "rejects as corrupt a manifest nested deeper than its JSON parser allows" in spec_text()
    bundle = small_bundle()
    members = bundle._members()
    text = canonical_json(bundle.manifest(members)).decode()
    deep = '{"k":' * 5000 + "1" + "}" * 5000
    write_container(
        tmp_path / "d.rlp", text.replace('"provenance":{', '"provenance":{"d":' + deep + ",").encode(), members
    )
    with pytest.raises(BundleError, match="is not valid JSON"):
        Bundle.load(tmp_path / "d.rlp")


# ---- section 7: probe tolerance -----------------------------------------------------------------


def test_the_probe_tolerance_is_the_stated_formula():
    match = re.search(r"`(\S+) \* max\(1, largest finite \|bound\| of a box action space\)`", spec_text())
    assert match and float(match.group(1)) == PARITY_ATOL
    assert f"; {match.group(1)} for any other action space;" in spec_text()
    assert action_tolerance(DiscreteSpec(3)) == PARITY_ATOL
    assert action_tolerance(BoxSpec.create(-0.5, 0.5, (2,))) == PARITY_ATOL  # max(1, 0.5)
    assert action_tolerance(BoxSpec.create(-400.0, 2.0, (2,))) == pytest.approx(400 * PARITY_ATOL)
    infinite = BoxSpec.create(np.array([-np.inf, -3.0]), np.array([np.inf, 7.0]), (2,))
    assert action_tolerance(infinite) == pytest.approx(7 * PARITY_ATOL)  # finite bounds only


# ---- section 4.1: gsde --------------------------------------------------------------------------


class _Ctx:
    def __init__(self, deterministic: bool, seed: int = 7) -> None:
        self.deterministic, self.rng = deterministic, np.random.default_rng(seed)


def _stated_std(log_std: np.ndarray, use_expln: bool, epsilon: float) -> np.ndarray:
    """The spec's words: exp(log_std); with use_expln, log1p(log_std + epsilon) + 1 where log_std > 0."""
    if not use_expln:
        return np.exp(log_std)
    return np.where(log_std <= 0, np.exp(log_std), np.log1p(np.maximum(log_std, 0) + epsilon) + 1.0)


@pytest.mark.parametrize(("use_expln", "full_std"), [(False, True), (True, True), (True, False)])
def test_gsde_samples_as_stated(use_expln, full_std):
    assert "`N` is drawn anew at every run of the graph (each `predict` call) and shared by all rows" in spec_text()
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((4, 2)).astype(np.float32)
    latent = rng.standard_normal((4, 3)).astype(np.float32)
    log_std = rng.standard_normal((3, 2 if full_std else 1)).astype(np.float32)
    attrs = {"use_expln": use_expln, "full_std": full_std, "epsilon": 1e-6}
    std = np.broadcast_to(_stated_std(log_std, use_expln, 1e-6), (3, 2))
    ctx = _Ctx(deterministic=False)
    gsde = bind("gsde", {"log_std": log_std}, attrs, ctx)
    draws = np.random.default_rng(7)  # the runtime's generator, seeded alike
    for _ in range(2):  # a new matrix at each run
        expected = mean + latent @ (draws.standard_normal((3, 2)).astype(np.float32) * std)
        np.testing.assert_allclose(gsde(mean, latent), expected, rtol=1e-6, atol=1e-6)
    deterministic = bind("gsde", {"log_std": log_std}, attrs, _Ctx(deterministic=True))
    assert deterministic(mean, latent) is mean


# ---- section 4: dtypes --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("leaky_relu", {"negative_slope": 0.01}),
        ("elu", {"alpha": 1.0}),
        ("hardtanh", {"min_val": -0.5, "max_val": 0.5}),
        ("softplus", {"beta": 2.0, "threshold": 20.0}),
        ("threshold", {"threshold": 0.1, "value": 20.0}),
        ("clip", {"min": -1.0, "max": 1.0}),
    ],
)
def test_attribute_numbers_never_widen_a_value(op, attrs, dtype):
    assert "Attribute numbers never take part: `x * alpha` for a float32 `x` is float32" in spec_text()
    x = np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)
    assert bind(op, {}, attrs)(x).dtype == np.dtype(dtype)


# ---- limits -------------------------------------------------------------------------------------


LIMITS = [
    ("at most 64 members", container.MAX_MEMBERS, 64),
    ("`manifest.json` at most 16 MiB", container.MAX_MANIFEST_SIZE, 16 * 2**20),
    ("a safetensors header at most 100 MiB", safetensors.MAX_HEADER_SIZE, 100 * 2**20),
    ("rlport reads bundle files of at most 4 GiB", container.MAX_BUNDLE_SIZE, 4 * 2**30),
    ("at most 2^24 (16,777,216) elements in a space", spaces.MAX_ELEMENTS, 2**24),
    ("at most 1024 leaves and 16 nested levels in a `dict` space", (spaces.MAX_LEAVES, spaces.MAX_DEPTH), (1024, 16)),
    ("the absolute value of every `start` of a discrete space at most 2^31", spaces.MAX_DISCRETE, 2**31),
    ("a value has more than 2^24 elements per batch row", infer.MAX_VALUE_ELEMENTS, 2**24),
    ("or more than 8 axes, all values together", infer.MAX_RANK, 8),
    ("all values together more than 2^26 elements per batch row", infer.MAX_GRAPH_ELEMENTS, 2**26),
    ("more than 2^34 multiply-adds per batch row", infer.MAX_GRAPH_FLOPS, 2**34),
    ("`n_stack` an integer in `1..64`", manifest.MAX_FRAME_STACK, 64),
    ("step counts integers in `1..2^31`", manifest.MAX_STEPS, 2**31),
    ("a wrapper name longer than 256 characters", manifest.MAX_NAME_LENGTH, 256),
]  # fmt: skip


@pytest.mark.parametrize(("words", "constant", "stated"), LIMITS, ids=[words[:40] for words, _, _ in LIMITS])
def test_each_stated_limit_is_the_codes(words, constant, stated):
    assert words in spec_text(), f"FORMAT.md no longer says: {words}"
    assert constant == stated
