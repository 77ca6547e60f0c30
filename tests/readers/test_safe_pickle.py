"""The allow-list pickle reader: what it rebuilds, and every way a pickle could try to run code."""

from __future__ import annotations

import base64
import builtins
import collections
import copyreg
import json
import os
import pickle
import pickletools
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rlport.errors import BundleError, RlportError, UnsafeFileError
from rlport.readers import safe_pickle
from rlport.readers.safe_pickle import GlobalRef, Instance, global_name
from zoo import needs_zoo, zoo_files, zoo_params, zoo_sample_path

ZOO = zoo_sample_path()
PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class Reduce:
    """Pickles as ``func(*args)``: what a hostile file does."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def refused(payload: bytes, target: Path, name: str, **kwargs) -> UnsafeFileError:
    """Assert the payload is refused naming ``name`` and that it did not create ``target``."""
    with pytest.raises(UnsafeFileError, match=name.replace(".", r"\.")) as info:
        safe_pickle.loads(payload, what="hostile.pkl", **kwargs)
    assert str(info.value).startswith("hostile.pkl: ")
    assert not target.exists()
    return info.value


# ---- hostile pickles -----------------------------------------------------------------------


def _touch_code(path: Path) -> str:
    return f"open({str(path)!r}, 'w').close()"


HOSTILE = {
    "os.system": lambda p: Reduce(os.system, (f"touch '{p}'",)),
    "builtins.exec": lambda p: Reduce(exec, (_touch_code(p),)),
    "builtins.eval": lambda p: Reduce(eval, (f"__import__('builtins').{_touch_code(p)}",)),
    "subprocess.call": lambda p: Reduce(subprocess.call, ([sys.executable, "-c", _touch_code(p)],)),
    "subprocess.Popen": lambda p: Reduce(subprocess.Popen, ([sys.executable, "-c", _touch_code(p)],)),
    "builtins.getattr": lambda p: Reduce(getattr, ("text", "upper")),
    "importlib.import_module": lambda p: Reduce(__import__("importlib").import_module, ("os",)),
    "builtins.__import__": lambda p: Reduce(builtins.__import__, ("os",)),
    "in an OrderedDict": lambda p: collections.OrderedDict(ok=np.arange(3), bad=Reduce(exec, (_touch_code(p),))),
    "as BUILD state": lambda p: Reduce(collections.OrderedDict, (), {"x": Reduce(exec, (_touch_code(p),))}),
    "in an object array": lambda p: np.array([1, Reduce(exec, (_touch_code(p),))], dtype=object),
}
EXPECTED_NAME = {
    "os.system": f"{os.system.__module__}.system",
    "in an OrderedDict": "builtins.exec",
    "as BUILD state": "builtins.exec",
    "in an object array": "object",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_payloads_are_refused_and_nothing_runs(kind, protocol, tmp_path):
    target = tmp_path / "pwned"
    payload = pickle.dumps(HOSTILE[kind](target), protocol=protocol)
    refused(payload, target, EXPECTED_NAME.get(kind, kind))


@pytest.mark.parametrize("kind", ["builtins.exec", "subprocess.call"])
def test_the_payloads_are_real(kind, tmp_path):
    """Control: plain pickle runs the same payload and creates the file, so the refusals above matter."""
    target = tmp_path / "control"
    pickle.loads(pickle.dumps(HOSTILE[kind](target)))  # trusted: the test's own payload
    assert target.exists()


HANDMADE = {
    # protocol 0 GLOBAL + REDUCE
    "os.system": b"cos\nsystem\n(S'touch {p}'\ntR.",
    # INST and OBJ opcodes
    "posix.system": b"(S'touch {p}'\niposix\nsystem\n.",
    "builtins.exec": b'(c__builtin__\nexec\nS\'open("{p}", "w")\'\no.',
    # protocol 4 STACK_GLOBAL
    "nt.system": b"\x80\x04\x8c\x02nt\x8c\x06system\x93\x8c\x01x\x85R.",
    # copyreg._reconstructor with a hostile class or base
    "subprocess.Popen": b"ccopy_reg\n_reconstructor\n(csubprocess\nPopen\nc__builtin__\nobject\nNtR.",
    "_reconstructor": b"ccopy_reg\n_reconstructor\n(cgym.spaces.box\nBox\nc__builtin__\ndict\nNtR.",
    # NEWOBJ on a refused class, and on a global that may only be an argument
    "os._wrap_close": b"\x80\x02cos\n_wrap_close\n)\x81.",
    "refused to call numpy.ndarray": b"\x80\x02cnumpy\nndarray\n)\x81.",
    # REDUCE on something that is not an allowed callable (a dict made by the pickle)
    "refused to call dict": b"\x80\x02})R.",
    # BUILD on an allowed class itself (to plant a __setstate__), and on a numpy scalar
    "refused BUILD on gym.spaces.box.Box": b"cgym.spaces.box\nBox\n(dS'__setstate__'\nc_codecs\nencode\nsb.",
    "refused BUILD on float": b"\x80\x02G?\xf0\x00\x00\x00\x00\x00\x00}b.",
    # extension registry and persistent ids
    "extension-registry": b"\x80\x02\x82\x01.",
    "persistent id": b"\x80\x02X\x01\x00\x00\x00aQ.",
    # object dtypes, numpy subclasses, other codecs
    "object dtype": b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.",
    "numpy.ma.core.MaskedArray": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy.ma.core\nMaskedArray\n.",
    "codec 'rot13'": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.",
}


@pytest.mark.parametrize("name", list(HANDMADE))
def test_handmade_hostile_pickles(name, tmp_path):
    target = tmp_path / "pwned"
    refused(HANDMADE[name].replace(b"{p}", str(target).encode()), target, name)


def test_extension_opcode_is_refused_even_when_registered(tmp_path):
    copyreg.add_extension(os.system.__module__, "system", 0x7A11)
    try:
        payload = pickle.dumps(os.system, protocol=2)
        assert {op.name for op, _, _ in pickletools.genops(payload)} & {"EXT1", "EXT2", "EXT4"}
        refused(payload, tmp_path / "x", "extension-registry")
    finally:
        copyreg.remove_extension(os.system.__module__, "system", 0x7A11)


def test_globalref_classes_are_read_only():
    box = safe_pickle.loads(b"cgym.spaces.box\nBox\n.", what="t")
    assert isinstance(box, GlobalRef) and global_name(box) == "gym.spaces.box.Box"
    with pytest.raises(TypeError):
        box.__setstate__ = print


def test_dtype_flags_from_the_file_are_ignored():
    """A dtype BUILD with forged flags (63 = has objects) must not make raw bytes into pointers."""
    payload = pickle.dumps(Reduce(np.dtype, ("u8", False, True), (3, "<", None, None, None, -1, -1, 63)), 2)
    dtype = safe_pickle.loads(payload, what="t")
    assert dtype == np.dtype("u8") and not dtype.hasobject and dtype.flags == np.dtype("u8").flags
    assert np.dtype("u8").flags == 0  # the shared builtin dtype was not touched either


@pytest.mark.parametrize(
    "payload, message",
    [
        (Reduce(np.dtype, ("f4", False, True), (3, "<", None, ("a",), None, -1, -1, 0)), "structured"),
        (Reduce(np.dtype, ("f4", False, True), (3, "<", None, None, None, 64, -1, 0)), "does not match"),
        (Reduce(np.dtype, ([("a", "f4")], False, True)), "unsupported numpy dtype"),
        (Reduce(np.dtype, ("M8", False, True)), "unsupported numpy dtype"),
    ],
)
def test_dtype_tricks_are_refused(payload, message):
    with pytest.raises(BundleError, match=message):
        safe_pickle.loads(pickle.dumps(payload, 2), what="t")


def test_array_with_wrong_byte_count_is_corrupt():
    state = (1, (1000,), np.dtype("f8"), False, b"\x00" * 8)
    from numpy._core.multiarray import _reconstruct

    payload = pickle.dumps(Reduce(_reconstruct, (np.ndarray, (0,), b"b"), state), 2)
    with pytest.raises(BundleError, match="needs 8000"):
        safe_pickle.loads(payload, what="t")


def _doubling(levels: int) -> list:
    """Each level holds the one below twice: pickled once a level (the memo), 2 ** levels items when walked."""
    value: list = ["lol"]
    for _ in range(levels):
        value = [value, value]
    return value


def _self_containing() -> list:
    value: list = []
    value.append(value)
    return value


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "obj, message",
    [
        (_doubling(21), "expands to more than 1048576 items"),  # 4 million: about 100 MiB if this ever failed
        ({"spaces": {"a": _doubling(21)}}, "expands to more than"),
        (Reduce(collections.OrderedDict, ([("k", _doubling(21))],)), "expands to more than"),
        (_self_containing(), "contains itself"),
        (_nested(40), "nested more than 32 levels"),
        ([np.zeros(3)] * 1000, None),  # arrays are leaves; a thousand shared references are fine
    ],
    ids=["doubling-list", "doubling-in-dict", "doubling-in-ordered-dict", "cycle", "deep", "shared-arrays"],
)
def test_values_that_expand_or_nest_without_end_are_refused(obj, message):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        data = pickle.dumps(obj, protocol)
        assert len(data) < 20_000
        if message is None:
            assert len(safe_pickle.loads(data, what="t")) == 1000
            continue
        with pytest.raises(BundleError, match=message):
            safe_pickle.loads(data, what="t")


def test_truncated_pickles_are_bundle_errors():
    data = pickle.dumps({"a": np.arange(5.0), "b": [1, 2, (3, "x")]}, protocol=2)
    for end in range(len(data) - 1):
        with pytest.raises(BundleError, match="truncated or corrupt"):
            safe_pickle.loads(data[:end], what="t")


def test_random_corruption_raises_only_rlport_errors():
    import gymnasium as gym

    data = bytearray(pickle.dumps([gym.spaces.Box(-1, 1, (3,)), collections.OrderedDict(a=np.ones(4))], 2))
    rng = random.Random(0)
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            safe_pickle.loads(bytes(mutated), what="t")
        except RlportError:
            pass


# ---- what it rebuilds ----------------------------------------------------------------------

ARRAYS = {
    "float64": np.arange(6.0).reshape(2, 3),
    "big-endian": np.arange(4, dtype=">i4"),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "0-d": np.array(2.5),
    "empty": np.zeros((0, 3), np.float32),
    "bool": np.array([True, False]),
    "strings": np.array(["ab", "c"]),
    "complex": np.array([1 + 2j]),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(ARRAYS))
def test_numpy_arrays_are_rebuilt(name, protocol):
    array = ARRAYS[name]
    got = safe_pickle.loads(pickle.dumps(array, protocol=protocol), what="t")
    assert type(got) is np.ndarray and got.shape == array.shape and got.dtype.kind == array.dtype.kind
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scalars_and_containers(protocol):
    value = {
        "f": np.float32(1.5),
        "i": np.int64(-3),
        "b": np.bool_(True),
        "od": collections.OrderedDict(x=1),
        "dq": collections.deque([1, 2], maxlen=3),
        "bytes": b"\x00\xffab",
        "empty": b"",
        "ba": bytearray(b"xy"),
        "set": {1, 2},
        "fs": frozenset({"a"}),
        "c": 1 + 2j,
        "t": (1, None, "s", 2.5),
    }
    got = safe_pickle.loads(pickle.dumps(value, protocol=protocol), what="t")
    assert got["f"] == np.float32(1.5) and type(got["f"]) is np.float32
    assert type(got["i"]) is np.int64 and type(got["b"]) is np.bool_ and got["b"]
    assert got["od"] == {"x": 1} and got["dq"] == [1, 2]
    assert (got["bytes"], got["empty"], got["ba"]) == (b"\x00\xffab", b"", bytearray(b"xy"))
    assert got["set"] == {1, 2} and got["fs"] == frozenset({"a"}) and got["c"] == 1 + 2j
    assert got["t"] == (1, None, "s", 2.5)


def test_numpy1_and_gym_spellings_are_accepted():
    import gymnasium as gym

    data = pickle.dumps([np.arange(3.0), gym.spaces.Discrete(4)], protocol=2)
    assert b"numpy._core.multiarray" in data and b"gymnasium.spaces.discrete" in data
    old = data.replace(b"numpy._core.", b"numpy.core.").replace(b"gymnasium.spaces.", b"gym.spaces.")
    array, space = safe_pickle.loads(old, what="t")
    np.testing.assert_array_equal(array, np.arange(3.0))
    assert global_name(space) == "gym.spaces.discrete.Discrete" and int(space.attributes()["n"]) == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gymnasium_spaces_become_inert_records(protocol):
    import gymnasium as gym

    spaces = gym.spaces
    space = spaces.Dict(
        {
            "box": spaces.Box(-np.ones(3, np.float32), np.arange(3, dtype=np.float32)),
            "disc": spaces.Discrete(5, start=1),
            "multi": spaces.MultiDiscrete([2, 3]),
            "bin": spaces.MultiBinary(4),
            "tup": spaces.Tuple([spaces.Discrete(2)]),
        },
        seed=3,
    )
    space.sample()  # a live random generator gets pickled too
    got = safe_pickle.loads(pickle.dumps(space, protocol=protocol), what="t")
    assert isinstance(got, Instance) and global_name(got) == "gymnasium.spaces.dict.Dict"
    sub = got.attributes()["spaces"]
    assert list(sub) == sorted(["box", "disc", "multi", "bin", "tup"])  # gymnasium sorts a plain dict
    np.testing.assert_array_equal(sub["box"].attributes()["high"], np.arange(3, dtype=np.float32))
    assert sub["box"].attributes()["dtype"] == np.float32
    assert int(sub["disc"].attributes()["start"]) == 1
    np.testing.assert_array_equal(sub["multi"].attributes()["nvec"], [2, 3])
    assert global_name(sub["tup"]) == "gymnasium.spaces.tuple.Tuple"


def test_class_references_are_inert_and_callable():
    import torch
    from stable_baselines3 import PPO

    kwargs = {"activation_fn": torch.nn.ReLU, "optimizer_class": torch.optim.Adam, "device": torch.device("cuda", 0)}
    got = safe_pickle.loads(pickle.dumps([PPO.policy_aliases["MlpPolicy"], kwargs], protocol=4), what="t")
    policy, kw = got
    assert global_name(policy) == "stable_baselines3.common.policies.ActorCriticPolicy"
    assert global_name(kw["activation_fn"]) == "torch.nn.modules.activation.ReLU"
    assert global_name(kw["optimizer_class"]) == "torch.optim.adam.Adam"
    assert global_name(kw["device"]) == "torch.device" and kw["device"].args == ("cuda", 0)
    record = policy(1, key=2)
    assert isinstance(record, Instance) and record.args == (1,) and record.kwargs == {"key": 2}
    assert global_name(object()) is None and global_name(Instance) is None


def test_copyreg_reconstructor_on_object_makes_a_record():
    data = b"ccopy_reg\n_reconstructor\n(cgym.spaces.box\nBox\nc__builtin__\nobject\nNtR(dS'n'\nI3\nsb."
    got = safe_pickle.loads(data, what="t")
    assert global_name(got) == "gym.spaces.box.Box" and got.attributes() == {"n": 3}


def test_nothing_is_imported(tmp_path):
    """In a process where torch, SB3 and gym cannot be imported, their pickled names still read."""
    import gymnasium as gym
    from stable_baselines3 import SAC

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([SAC.policy_aliases["MlpPolicy"], gym.spaces.Box(-1, 1, (2,))], protocol=2))
    code = (
        "import sys\n"
        "for m in ('torch', 'stable_baselines3', 'gymnasium', 'gym', 'cloudpickle'): sys.modules[m] = None\n"
        "from rlport.readers import safe_pickle\n"
        f"ref, box = safe_pickle.loads(open({str(path)!r}, 'rb').read(), what='t')\n"
        "print(safe_pickle.global_name(ref), safe_pickle.global_name(box))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["stable_baselines3.sac.policies.SACPolicy", "gymnasium.spaces.box.Box"]


# ---- real files ----------------------------------------------------------------------------


def _serialized_fields():
    for path in zoo_files("*/*/*.zip"):
        data = json.loads(zipfile.ZipFile(path).read("data"))
        for key, value in data.items():
            if isinstance(value, dict) and ":serialized:" in value:
                yield pytest.param(path, key, base64.b64decode(value[":serialized:"]), id=f"{path.parent.name}-{key}")


CODE_FIELDS = {"learning_rate", "lr_schedule", "clip_range", "exploration_schedule", "delta_std_schedule"}


@needs_zoo
@pytest.mark.parametrize("path, key, raw", zoo_params(list(_serialized_fields()), width=3))
def test_zoo_data_fields(path, key, raw):
    """Every non-code field of every zoo model decodes; schedules (cloudpickled functions) are refused."""
    if key in CODE_FIELDS:
        with pytest.raises(UnsafeFileError, match="refused global cloudpickle"):
            safe_pickle.loads(raw, what=key)
    elif key == "weights":  # ARS keeps torch tensors here; data fields may never build tensors
        with pytest.raises(UnsafeFileError, match=r"torch\._utils\._rebuild_tensor_v2"):
            safe_pickle.loads(raw, what=key)
    else:
        value = safe_pickle.loads(raw, what=key)
        if key.endswith("_space"):
            assert global_name(value).split(".")[-1] in {"Box", "Discrete", "Dict"}
        if key == "policy_class":
            assert isinstance(value, GlobalRef) and global_name(value).split(".")[-1].endswith("Policy")


def test_pickletools_agrees_the_handmade_payloads_parse():
    """The handmade payloads are well-formed pickles: the refusals above are not parse errors."""
    for name, payload in HANDMADE.items():
        list(pickletools.genops(payload.replace(b"{p}", b"x")))  # raises on malformed input
        assert name
