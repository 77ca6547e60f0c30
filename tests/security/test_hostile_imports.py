"""Hostile SB3 files, vecnormalize.pkl and RL Zoo folders: every attack ends in rlport's own error.

Each file is crafted here, most from a real model saved by SB3 and then edited: zip bombs and
members that lie about their size, FIFOs and devices passed as files, ``data`` fields of the wrong
type or nested without end, pickles whose shared references expand exponentially, YAML billion
laughs, env ids that would make gymnasium import a module, garbage ``evaluations.npz``. Attacks
that would allocate gigabytes if a limit failed run in a subprocess whose address space is capped,
so that a failure shows as a wrong error, never as an exhausted machine.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import rlport
from rlport.errors import BundleError, SpaceError, UnsafeFileError
from rlport.frameworks.sb3.vecnormalize import MAX_VECNORMALIZE_SIZE
from rlport.frameworks.sb3.zip import read_sb3_zip
from rlport.frameworks.zoo.files import MAX_EVALUATIONS_SIZE, MAX_YAML_SIZE
from rlport.frameworks.zoo.run import published_returns

ZOO_ARGS = "!!python/object/apply:collections.OrderedDict\n- - - algo\n    - ppo\n  - - env\n    - CartPole-v1\n"


# ---- crafting ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_zip(tmp_path_factory) -> Path:
    """A real SB3 file: a tiny PPO on CartPole, saved by SB3 itself."""
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, policy_kwargs={"net_arch": [8]}, device="cpu")
    path = tmp_path_factory.mktemp("sb3") / "model.zip"
    model.save(path)
    return path


@pytest.fixture
def saved(model_zip, tmp_path) -> Path:
    copy = tmp_path / "model.zip"
    shutil.copy(model_zip, copy)
    return copy


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite(path: Path, compression: int = zipfile.ZIP_STORED, **changes: bytes | None) -> Path:
    """Replace (or, with None, drop) members of the SB3 file ``path``."""
    content = {**members(path), **changes}
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in content.items():
            if data is not None:
                archive.writestr(name, data)
    return path


def serialized(obj) -> dict:
    return {":type:": "<class 'x'>", ":serialized:": base64.b64encode(pickle.dumps(obj, protocol=4)).decode()}


def deflated_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 16 MiB), built without holding them."""
    block_size = min(size, 16 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(block_size)) + compressor.flush(zlib.Z_FULL_FLUSH)  # self-contained
    return block * (size // block_size) + compressor.flush(zlib.Z_FINISH)


def raw_zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A zip written byte by byte: (name, deflated data, declared uncompressed size) per member (CRC left 0)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, data, size in entries:
        offset, encoded = out.tell(), name.encode()
        fields = (8, 0, 0x21, 0, len(data), size, len(encoded))  # deflated, 1980-01-01, crc 0
        out.write(struct.pack("<4s2H2H H 3L 2H", b"PK\x03\x04", 20, 0, *fields, 0) + encoded + data)
        central.write(struct.pack("<4s4H2H 3L 5H 2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, offset))
        central.write(encoded)
    start, directory = out.tell(), central.getvalue()
    out.write(directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory),
                                      start, 0))  # fmt: skip
    return out.getvalue()


def guarded(call: str, address_space: int = 1 << 30) -> str:
    """Run ``call`` in a Python whose address space is capped; what it raised, as 'Type: message'."""
    pytest.importorskip("resource", reason="address-space limits need POSIX")
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))
        try:
            {call}
        except BaseException as exc:
            print(f"{{type(exc).__name__}}: {{exc}}")
        else:
            print("no error")
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    return result.stdout.strip() or result.stderr.strip()[-500:]


def fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(path)
    return path


def within(seconds: int, call: Callable[[], object]) -> None:
    """Run ``call``; fail (instead of hanging) if it blocks longer than ``seconds``."""

    def alarm(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s: the reader opened something it should have refused")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (all zeros)."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


# ---- the SB3 zip: size, kind of file ---------------------------------------------------------


def test_zip_bomb_is_refused_before_reading(tmp_path):
    """Four deflated 1 GiB members in a 4 MB file: refused from the declared sizes, nothing inflated."""
    stream = deflated_zeros(1 << 30)
    names = ("policy.pth", "pytorch_variables.pth", "policy.optimizer.pth", "system_info.txt")
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(raw_zip([(name, stream, 1 << 30) for name in names]))
    assert bomb.stat().st_size < 5 << 20
    outcome = guarded(f"from rlport.frameworks.sb3.zip import read_sb3_zip; read_sb3_zip({str(bomb)!r})")
    assert outcome.startswith("BundleError:") and "uncompressed bytes" in outcome, outcome


def test_a_member_that_lies_about_its_size_is_stopped_at_its_declared_size(saved, tmp_path):
    """``data`` declares 100 bytes but inflates to 64 MiB: the read stops at 100 (a damaged member)."""
    content = members(saved)
    entries = [(name, zlib.compress(data)[2:-4], len(data)) for name, data in content.items() if name != "data"]
    liar = tmp_path / "liar.zip"
    liar.write_bytes(raw_zip([("data", deflated_zeros(64 << 20), 100), *entries]))
    outcome = guarded(f"from rlport.frameworks.sb3.zip import read_sb3_zip; read_sb3_zip({str(liar)!r})")
    assert outcome.startswith("BundleError:") and "'data'" in outcome, outcome


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda tmp: fifo(tmp / "model.zip"), "named pipe"),
        (lambda tmp: tmp, "a folder"),
        (lambda tmp: tmp / "absent.zip", "no such file"),
    ],
    ids=["fifo", "folder", "absent"],
)
def test_only_regular_files_are_opened(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(BundleError, match=fragment):
        within(5, lambda: rlport.import_sb3(path))


def test_a_device_is_refused_unread():
    """/dev/zero never ends: a reader that opened it would fill memory (capped here: a wrong error instead)."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    outcome = guarded("from rlport.frameworks.sb3.zip import read_sb3_zip; read_sb3_zip('/dev/zero')")
    assert outcome.startswith("BundleError:") and "character device" in outcome, outcome
    outcome = guarded("from rlport.readers.untrusted import read_regular; read_regular('/dev/zero', 1 << 40)")
    assert outcome.startswith("BundleError:") and "character device" in outcome, outcome


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda s: rewrite(s, zipfile.ZIP_BZIP2), "compression method 12"),
        (lambda s: _append(s, "data", "{}"), "same name"),
        (lambda s: _append(s, "x" * 300 + "/../escape", "x"), "not a safe relative path"),
        (lambda s: rewrite(s, _stable_baselines3_version=b"2" * 5000), "not a version number"),
    ],
    ids=["bzip2", "duplicate", "long-escaping-name", "long-version"],
)
def test_archive_tricks(saved, change, fragment):
    change(saved)
    with pytest.raises(BundleError, match=fragment) as info:
        read_sb3_zip(saved)
    assert len(str(info.value)) < 600, "a name from the file is echoed in full"


def _append(path: Path, name: str, data: str) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name we write on purpose
        archive.writestr(name, data)
    return path


# ---- the SB3 zip: the data JSON and its pickles ----------------------------------------------


def _laughs(depth: int):
    """A list whose expansion doubles at each of ``depth`` levels (pickled once per level via the memo).

    ``_laughs(21)`` expands to 4 million items: over the limit, yet only about 100 MiB if it ever failed.
    """
    value: list = ["lol"]
    for _ in range(depth):
        value = [value, value]
    return value


def _cycle():
    value: list = []
    value.append(value)
    return value


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# fmt: off
DATA_ATTACKS = [
    ("exploration-rate-text", {"exploration_rate": "abc"}, BundleError, "exploration_rate"),
    ("exploration-rate-list", {"exploration_rate": [1]}, BundleError, "exploration_rate"),
    ("num-timesteps-text", {"num_timesteps": "x"}, BundleError, "num_timesteps"),
    ("num-timesteps-1e400", {"num_timesteps": "1e400"}, BundleError, "num_timesteps"),
    ("num-timesteps-bool", {"num_timesteps": True}, BundleError, "num_timesteps"),
    ("use-sde-dict", {"use_sde": {"a": 1}}, BundleError, "use_sde"),
    ("deep-json", {"extra": "DEEP"}, BundleError, "not JSON"),
    ("policy-kwargs-nested", {"policy_kwargs": _nested(40)}, BundleError, "nested more than 32"),
    ("policy-kwargs-pickle-nested", {"policy_kwargs": serialized({"a": _nested(40)})}, BundleError, "nested more"),
    ("policy-kwargs-laughs", {"policy_kwargs": serialized({"net_arch": _laughs(21)})}, BundleError, "expands to"),
    ("policy-kwargs-cycle", {"policy_kwargs": serialized({"net_arch": _cycle()})}, BundleError, "contains itself"),
    ("policy-kwargs-int-key", {"policy_kwargs": serialized({1: 2})}, BundleError, "argument names"),
    ("policy-kwargs-list", {"policy_kwargs": [1, 2]}, BundleError, "expected a dict"),
    ("space-laughs", {"observation_space": serialized(_laughs(21))}, BundleError, "expands to"),
]
# fmt: on


def _data_text(saved: Path, changes: dict) -> bytes:
    """The model's ``data`` JSON with ``changes``; the values "1e400" and "DEEP" are spliced in as raw JSON text."""
    raw = {"1e400": "1e400", "DEEP": "[" * 100_000 + "]" * 100_000}
    data = json.loads(members(saved)["data"])
    for key in changes:
        data.pop(key, None)
    data.update({k: v for k, v in changes.items() if not isinstance(v, str) or v not in raw})
    text = json.dumps(data)
    for key, value in changes.items():
        if isinstance(value, str) and value in raw:
            text = text.replace("{", f'{{"{key}": {raw[value]}, ', 1)
    return text.encode()


@pytest.mark.parametrize(
    "changes, error, fragment", [case[1:] for case in DATA_ATTACKS], ids=[case[0] for case in DATA_ATTACKS]
)
def test_hostile_data_fields(saved, changes, error, fragment):
    rewrite(saved, data=_data_text(saved, changes))
    with pytest.raises(error, match=fragment) as info:
        rlport.import_sb3(saved, probes=0, fingerprint=False)
    assert len(str(info.value)) < 600


def _edited_space(saved: Path, **attributes) -> dict:
    """The model's observation space (a gymnasium Box, unpickled from our own file) with attributes changed."""
    entry = json.loads(members(saved)["data"])["observation_space"]
    space = pickle.loads(base64.b64decode(entry[":serialized:"]))  # noqa: S301 - our own, just-saved file
    space.__dict__.update(attributes)
    return serialized(space)


@pytest.mark.parametrize(
    "attributes, error, fragment",
    [
        ({"_shape": (10**12,)}, SpaceError, "elements"),
        ({"_shape": (1,) * 40}, SpaceError, "at most 32"),
        ({"_shape": (-4,)}, SpaceError, "non-negative"),
        ({"_shape": (float("inf"),)}, BundleError, "Box space record"),
        ({"dtype": np.dtype("U3")}, BundleError, "not a number type"),
    ],
    ids=["huge", "too-many-dims", "negative", "infinite", "string-dtype"],
)
def test_hostile_space_records(saved, attributes, error, fragment):
    rewrite(saved, data=_data_text(saved, {"observation_space": _edited_space(saved, **attributes)}))
    with pytest.raises(error, match=fragment):
        read_sb3_zip(saved)


class _StorageRef:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorRef:
    def __init__(self, storage: _StorageRef, size: tuple, stride: tuple) -> None:
        self.args = (storage, 0, size, stride, False, {})

    def __reduce__(self):
        import torch

        return torch._utils._rebuild_tensor_v2, self.args


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            import torch

            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def test_a_tiny_policy_pth_of_stride_0_tensors_is_refused(saved):
    """Under 1 KiB of pickle asking for 4 x 256 MiB (each under the 2 GiB per-tensor limit)."""
    storage, pickled, out = _StorageRef("0", 1), io.BytesIO(), io.BytesIO()
    _TorchPickler(pickled, protocol=2).dump({f"w{i}": _TensorRef(storage, (1 << 26,), (0,)) for i in range(4)})
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        archive.writestr("archive/data/0", b"\x00" * 4)
    assert len(out.getvalue()) < 1024
    rewrite(saved, **{"policy.pth": out.getvalue()})
    outcome = guarded(f"from rlport.frameworks.sb3.zip import read_sb3_zip; read_sb3_zip({str(saved)!r})")
    assert outcome.startswith("BundleError:") and "would need" in outcome, outcome


def test_a_nested_archive_is_bounded_by_the_outer_file_size(saved):
    """policy.pth (a zip) holding 48 MiB of zeros, deflated into a file of about 100 KiB: its tensors may
    not add up to 16 times the 48 MiB it inflated to, only to what the real file allows (16 MiB)."""
    numel, pickled, inner = 12 << 20, io.BytesIO(), io.BytesIO()
    _TorchPickler(pickled, protocol=2).dump({"w": _TensorRef(_StorageRef("0", numel), (numel,), (1,))})
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        archive.writestr("archive/data/0", bytes(4 * numel))
    rewrite(saved, zipfile.ZIP_DEFLATED, **{"policy.pth": inner.getvalue()})
    assert saved.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match=r"'w' would need 50331648 bytes, over the 16777216"):
        read_sb3_zip(saved)


# ---- vecnormalize.pkl ------------------------------------------------------------------------


def vecnormalize(**changes) -> bytes:
    """A real VecNormalize pickle, attributes changed before pickling (test-only: trusted pickle.dumps)."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    wrapper = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]))
    for key, value in changes.items():
        target, _, name = key.rpartition("__")
        setattr(getattr(wrapper, target) if target else wrapper, name, value)
    return pickle.dumps(wrapper)


# fmt: off
VECNORMALIZE_ATTACKS = [
    ("obs-rms-none", {"obs_rms": None}, "norm_obs is true but the file has no observation statistics"),
    ("clip-obs-text", {"clip_obs": "abc"}, "clip_obs should be a number"),
    ("gamma-nan", {"gamma": float("nan")}, "gamma should be a number"),
    ("epsilon-huge-int", {"epsilon": 10**400}, "epsilon should be a number"),
    ("norm-obs-text", {"norm_obs": "yes"}, "norm_obs should be true or false"),
    ("training-list", {"training": [True]}, "training should be true or false"),
    ("negative-variance", {"obs_rms__var": -np.ones(4)}, "negative"),
    ("nan-mean", {"obs_rms__mean": np.full(4, np.nan)}, "NaN"),
    ("huge-count", {"obs_rms__count": 10**400}, "numeric"),
    ("norm-obs-keys-laughs", {"norm_obs_keys": _laughs(21)}, "expands to"),
]
# fmt: on


@pytest.mark.parametrize(
    "changes, fragment", [case[1:] for case in VECNORMALIZE_ATTACKS], ids=[case[0] for case in VECNORMALIZE_ATTACKS]
)
def test_hostile_vecnormalize(saved, tmp_path, changes, fragment):
    pkl = tmp_path / "vecnormalize.pkl"
    pkl.write_bytes(vecnormalize(**changes))
    with pytest.raises(BundleError, match=fragment):
        rlport.import_sb3(saved, vecnormalize=pkl, probes=0, fingerprint=False)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda tmp: fifo(tmp / "vecnormalize.pkl"), "named pipe"),
        (lambda tmp: sparse(tmp / "vecnormalize.pkl", MAX_VECNORMALIZE_SIZE + 1), "more than"),
    ],
    ids=["fifo", "oversized"],
)
def test_vecnormalize_must_be_a_small_regular_file(saved, tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(BundleError, match=fragment):
        within(5, lambda: rlport.import_sb3(saved, vecnormalize=path, probes=0, fingerprint=False))


# ---- RL Zoo folders --------------------------------------------------------------------------


def zoo_run(saved: Path, tmp_path: Path, env: str = "CartPole-v1", **files: str | bytes) -> Path:
    """An RL Zoo run folder around the SB3 file: ``ENV.zip`` and ``ENV/args.yml`` (+ ``files``)."""
    run = tmp_path / "ppo" / f"{env}_1"
    (run / env).mkdir(parents=True)
    shutil.copy(saved, run / f"{env}.zip")
    files = {"args.yml": ZOO_ARGS, **files}
    for name, content in files.items():
        target = run / name if name.endswith(".npz") else run / env / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run


# fmt: off
LAUGHS_YAML = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" if previous else f'{name}: &{name} ["lol"]\n'
    for previous, name in zip([None, *"abcdefg"], "abcdefgh", strict=True)
) + "algo: *h\n"  # 9 ** 7 (4.8 million) items: over the limit, yet a few MiB if the limit ever failed
_WRAPPER = "env_wrapper:\n  - sb3_contrib.common.wrappers.TimeFeatureWrapper: {max_steps: %s}\n"
YAML_ATTACKS = [
    ("billion-laughs-algo", "args.yml", LAUGHS_YAML, BundleError, "expands to more than"),
    ("deep-nesting", "config.yml", "a: " + "[" * 10_000 + "]" * 10_000 + "\n", BundleError, "nested more than"),
    ("huge-integer", "config.yml", "n_timesteps: " + "9" * 5000 + "\n", BundleError, "cannot be read"),
    ("bad-date", "config.yml", "seed: 2001-02-30\n", BundleError, "cannot be read"),
    ("not-utf8", "config.yml", b"policy: \xff\xfe\n", BundleError, "not UTF-8"),
    ("top-level-list", "config.yml", "- 1\n", BundleError, "expected a mapping"),
    ("int-key", "config.yml", "1: 2\n", BundleError, "string keys"),
    ("recursive-alias", "config.yml", "a: &a [*a]\n", BundleError, "contains itself"),
    ("env-not-string", "args.yml", "algo: ppo\nenv: [1, 2]\n", BundleError, "env should be a string"),
    ("algo-not-string", "args.yml", "algo: {a: 1}\nenv: CartPole-v1\n", BundleError, "algo should be a string"),
    ("ordered-dict-mapping", "args.yml", "!!python/object/apply:collections.OrderedDict {algo: ppo}\n",
     BundleError, "one sequence of"),
    ("ordered-dict-int-key", "args.yml", "!!python/object/apply:collections.OrderedDict\n- - - 1\n    - ppo\n",
     UnsafeFileError, "string key"),
    ("env-kwargs-list", "args.yml", ZOO_ARGS + "  - - env_kwargs\n    - '[1, 2]'\n", BundleError, "expected a dict"),
    ("env-kwargs-deep-literal", "args.yml", ZOO_ARGS + "  - - env_kwargs\n    - '" + "[" * 300 + "]" * 300 + "'\n",
     BundleError, "not a Python literal"),
    ("env-kwargs-date", "args.yml", ZOO_ARGS + "  - - env_kwargs\n    - {when: 2001-12-14}\n",
     BundleError, "plain values"),
    ("frame-stack-text", "config.yml", "frame_stack: four\n", BundleError, "frame_stack should be an integer"),
    ("frame-stack-1e9-float", "config.yml", "frame_stack: 1.0e+9\n", BundleError, "frame_stack should be"),
    ("frame-stack-1e9-int", "config.yml", "frame_stack: 1000000000\n", BundleError, "frame_stack should be"),
    ("frame-stack-zero", "config.yml", "frame_stack: 0\n", BundleError, "frame_stack should be"),
    ("frame-stack-negative", "config.yml", "frame_stack: -2\n", BundleError, "frame_stack should be"),
    ("frame-stack-bool", "config.yml", "frame_stack: true\n", BundleError, "frame_stack should be"),
    ("time-feature-text", "config.yml", _WRAPPER % "x", BundleError, "max_steps should be an integer"),
    ("time-feature-negative", "config.yml", _WRAPPER % "-5", BundleError, "max_steps should be an integer"),
    ("time-feature-float", "config.yml", _WRAPPER % "1.5", BundleError, "max_steps should be an integer"),
    ("time-limit-without-steps", "config.yml", "env_wrapper: gymnasium.wrappers.TimeLimit\n",
     BundleError, "max_episode_steps should be"),
    ("wrapper-two-names", "config.yml", "env_wrapper:\n  - {a.B: {}, c.D: {}}\n", BundleError, "an entry should"),
    ("wrapper-empty", "config.yml", "env_wrapper:\n  - {}\n", BundleError, "an entry should"),
    ("wrapper-number", "config.yml", "env_wrapper: 7\n", BundleError, "an entry should"),
    ("wrapper-kwargs-list", "config.yml", "env_wrapper:\n  - a.B: [1]\n", BundleError, "expected a dict"),
]
# fmt: on


@pytest.mark.parametrize(
    "name, content, error, fragment", [case[1:] for case in YAML_ATTACKS], ids=[case[0] for case in YAML_ATTACKS]
)
def test_hostile_zoo_yaml(saved, tmp_path, name, content, error, fragment):
    run = zoo_run(saved, tmp_path, **{name: content})
    with pytest.raises(error, match=fragment) as info:
        rlport.import_zoo(run, probes=0, fingerprint=False)
    assert len(str(info.value)) < 800


@pytest.mark.parametrize(
    "make, fragment",
    [(lambda path: fifo(path), "named pipe"), (lambda path: sparse(path, MAX_YAML_SIZE + 1), "more than")],
    ids=["fifo", "oversized"],
)
def test_zoo_yaml_must_be_a_small_regular_file(saved, tmp_path, make, fragment):
    run = zoo_run(saved, tmp_path)
    make(run / "CartPole-v1" / "config.yml")
    with pytest.raises(BundleError, match=fragment):
        within(5, lambda: rlport.import_zoo(run, probes=0, fingerprint=False))


def test_small_aliases_still_read(saved, tmp_path):
    from rlport.frameworks.zoo.run import read_zoo_yaml, wrappers_from_config

    config = "policy: &p MlpPolicy\nnormalize: false\nnote: [*p, *p]\n"
    run = zoo_run(saved, tmp_path, **{"config.yml": config})
    assert rlport.import_zoo(run, probes=0, fingerprint=False).env.id == "CartPole-v1"
    (run / "CartPole-v1" / "config.yml").write_text(config + "frame_stack: 4\n")
    read = read_zoo_yaml(run / "CartPole-v1" / "config.yml")
    assert read["note"] == ["MlpPolicy", "MlpPolicy"]
    assert [(w.name, w.kwargs) for w in wrappers_from_config(read)] == [("frame_stack", {"n_stack": 4})]


# ---- env ids that would import modules -------------------------------------------------------


@pytest.fixture
def probe_module(tmp_path, monkeypatch) -> tuple[str, Path]:
    """A module on sys.path that leaves a marker file when imported."""
    name, marker = "rlport_hostile_probe_module", tmp_path / "imported"
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name, marker


def test_an_env_id_in_args_yml_never_imports_a_module(saved, tmp_path, probe_module):
    name, marker = probe_module
    run = zoo_run(saved, tmp_path, **{"args.yml": f"algo: ppo\nenv: '{name}:Evil-v0'\n"})
    with pytest.raises(UnsafeFileError, match=f"would make gymnasium import the module '{name}'.*--env-module"):
        rlport.import_zoo(run, probes=0)
    assert not marker.exists() and name not in sys.modules


def test_an_env_id_in_the_folder_name_never_imports_a_module(saved, tmp_path, probe_module):
    name, marker = probe_module
    run = zoo_run(saved, tmp_path, env=f"{name}:Evil-v0", **{"args.yml": "algo: ppo\n"})
    with pytest.raises(UnsafeFileError, match="folder name"):
        rlport.import_zoo(run, probes=0)
    assert not marker.exists() and name not in sys.modules


def test_env_module_lets_the_named_module_be_imported(saved, tmp_path, probe_module):
    name, marker = probe_module
    run = zoo_run(saved, tmp_path, **{"args.yml": f"algo: ppo\nenv: '{name}:Evil-v0'\n"})
    with pytest.warns(rlport.RlportWarning, match="no fingerprint recorded"):  # the env is made to record one
        bundle = rlport.import_zoo(run, probes=0, env_module=name)
    assert bundle.env.id == f"{name}:Evil-v0" and marker.exists()  # looked up (and not found) by gymnasium
    assert "cannot be created" in bundle.provenance["env_id_note"]


def test_without_verification_the_env_module_is_not_even_imported(saved, tmp_path, probe_module):
    name, marker = probe_module
    run = zoo_run(saved, tmp_path, **{"args.yml": f"algo: ppo\nenv: '{name}:Evil-v0'\n"})
    bundle = rlport.import_zoo(run, probes=0, fingerprint=False, env_module=name)  # no env made: nothing looked up
    assert bundle.env.id == f"{name}:Evil-v0" and not marker.exists() and name not in sys.modules


def test_an_env_id_the_caller_passes_is_theirs(saved, tmp_path, probe_module):
    name, _ = probe_module
    run = zoo_run(saved, tmp_path, **{"args.yml": "algo: ppo\nenv: 'other_module:Evil-v0'\n"})
    bundle = rlport.import_zoo(run, env_id=f"{name}:Mine-v0", probes=0, fingerprint=False)
    assert bundle.env.id == f"{name}:Mine-v0"


# ---- evaluations.npz -------------------------------------------------------------------------


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_claiming(shape: tuple, data: bytes) -> bytes:
    """A .npy whose header claims ``shape`` (float64) but which holds only ``data``."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def npz_members(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


TIMESTEPS = np.array([1000, 2000])
GOOD_RESULTS = np.ones((2, 5))
# fmt: off
NPZ_ATTACKS = [
    ("not-a-zip", b"garbage", "not an .npz"),
    ("object-array", npz(results=np.array([{"a": 1}, None], dtype=object), timesteps=TIMESTEPS), "expected numbers"),
    ("strings", npz(results=np.array([["a"]]), timesteps=TIMESTEPS), "expected numbers"),
    ("complex", npz(results=np.ones((2, 5), complex), timesteps=TIMESTEPS), "expected numbers"),
    ("four-dims", npz(results=np.ones((2, 5, 1, 1)), timesteps=TIMESTEPS), "at most 3 dims"),
    ("results-1d", npz(results=np.ones(5), timesteps=TIMESTEPS), "one row of returns"),
    ("no-episodes", npz(results=np.ones((2, 0)), timesteps=TIMESTEPS), "one row of returns"),
    ("no-results", npz(timesteps=TIMESTEPS), "no 'results'"),
    ("nan-returns", npz(results=np.full((2, 5), np.nan), timesteps=TIMESTEPS), "not all finite"),
    ("nan-timesteps", npz(results=GOOD_RESULTS, timesteps=np.array([np.nan])), "count steps"),
    ("huge-shape-header", npz_members(**{"results.npy": npy_claiming((10**12, 5), bytes(8)),
                                         "timesteps.npy": npy_claiming((1,), bytes(8))}), "header claims"),
    ("bad-header", npz_members(**{"results.npy": b"\x93NUMPY\x01\x00\x04\x00{{{\n", "timesteps.npy": b""}),
     "not a numeric .npy"),
    ("bomb", raw_zip([("results.npy", deflated_zeros(256 << 20), 256 << 20)]), "uncompressed bytes"),
]
# fmt: on


@pytest.mark.parametrize("content, fragment", [case[1:] for case in NPZ_ATTACKS], ids=[case[0] for case in NPZ_ATTACKS])
def test_hostile_evaluations_npz(tmp_path, content, fragment):
    path = tmp_path / "evaluations.npz"
    path.write_bytes(content)
    with pytest.raises(BundleError, match=fragment):
        published_returns(path)


def test_evaluations_npz_is_read_before_the_model_and_must_be_a_small_regular_file(saved, tmp_path):
    run = zoo_run(saved, tmp_path)
    sparse(run / "evaluations.npz", MAX_EVALUATIONS_SIZE + 1)
    with pytest.raises(BundleError, match="more than"):
        rlport.import_zoo(run, probes=0, fingerprint=False)
    (run / "evaluations.npz").unlink()
    fifo(run / "evaluations.npz")
    with pytest.raises(BundleError, match="named pipe"):
        within(5, lambda: rlport.import_zoo(run, probes=0, fingerprint=False))


def test_a_clean_run_with_evaluations_still_imports(saved, tmp_path):
    run = zoo_run(saved, tmp_path, **{"evaluations.npz": npz(results=GOOD_RESULTS, timesteps=TIMESTEPS)})
    bundle = rlport.import_zoo(run, probes=0, fingerprint=False)
    assert bundle.provenance["published_return_mean"] == 1.0
    assert bundle.provenance["published_at_timesteps"] == 2000
