"""A table of crafted ``rlport`` calls: bad flags and values, and garbage files of every kind where a bundle,
an SB3 .zip, a zoo folder or a fingerprint is expected. Each ends in ``rlport <command>: <message>`` on
stderr and exit code 2 (``verify`` reports an unreadable bundle as a failed check: exit code 1), never
in a traceback or in the "internal error" report kept for bugs.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rlport.bundle import container
from rlport.cli import fingerprint_file
from rlport.cli.main import MAX_MESSAGE_CHARS, main
from rlport.errors import BundleError, RlportError

EPOCH = (1980, 1, 1, 0, 0, 0)


# ---- the files the calls get ------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_of(members: list[tuple[str, bytes]], comment: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=EPOCH), data)
        archive.comment = comment
    return buffer.getvalue()


def signed_bundle(manifest: dict | bytes, members: dict[str, bytes], fix_digests: bool = True) -> bytes:
    """A bundle of ``manifest`` and ``members``, its digests recomputed as a careful attacker would."""
    if isinstance(manifest, dict):
        if fix_digests:
            manifest["members"] = {name: {"sha256": sha256(d), "size": len(d)} for name, d in members.items()}
        manifest = (json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n").encode()
    comment = f"rlport-bundle 1.0 sha256:{sha256(manifest)}".encode()
    return zip_of([("manifest.json", manifest), *members.items()], comment)


class Kit:
    """The files of this module's calls, made once: a real bundle, an SB3 .zip, a zoo folder, garbage."""

    def __init__(self, folder: Path) -> None:
        from stable_baselines3 import PPO

        import rlport

        self.folder = folder
        model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
        self.bundle = folder / "cartpole.rlp"
        rlport.from_sb3(model, env_id="CartPole-v1", fingerprint=False, evaluate=0, probes=4).save(self.bundle)
        self.sb3_zip = folder / "cartpole_sb3.zip"
        model.save(self.sb3_zip)
        with zipfile.ZipFile(self.bundle) as archive:
            self.members = {info.filename: archive.read(info) for info in archive.infolist()}
        self.manifest = json.loads(self.members.pop("manifest.json"))
        self.fifo = folder / "fifo"
        os.mkfifo(self.fifo)
        self.paths = {
            "bundle": self.bundle,
            "sb3": self.sb3_zip,
            "fifo": self.fifo,
            "dir": self._dir("a-folder"),
            "devnull": Path("/dev/null"),
            "missing": folder / "missing.rlp",
            "nodir": folder / "no-such-folder" / "out.file",
            "loop": self._loop(),
            "empty": self._file("empty", b""),
            "random": self._file("random", os.urandom(4096)),
            "text": self._file("text.json", b'{"format": "rlport-bundle"}\n'),
            "truncated": self._file("truncated.rlp", self.bundle.read_bytes()[:-300]),
            "sb3-truncated": self._file("truncated.zip", self.sb3_zip.read_bytes()[:500]),
            "digits": self._digits_comment(),
            "existing": self._file("existing.txt", b"keep me"),
        }
        self.paths.update(self._zoo_folders())

    def _file(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def _dir(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir()
        return path

    def _loop(self) -> Path:
        path = self.folder / "loop"
        path.symlink_to(path)
        return path

    def _digits_comment(self) -> Path:
        """A bundle whose comment reads ``rlport-bundle 1<5000 digits>.0``: ``int()`` refuses over 4300 digits."""
        manifest = (json.dumps(self.manifest, sort_keys=True, separators=(",", ":")) + "\n").encode()
        comment = b"rlport-bundle 1" + b"0" * 5000 + b".0 sha256:" + sha256(manifest).encode()
        return self._file("digits.rlp", zip_of([("manifest.json", manifest), *self.members.items()], comment))

    def _zoo_folders(self) -> dict[str, Path]:
        model = self.sb3_zip.read_bytes()
        args = b"!!python/object/apply:collections.OrderedDict\n- - - algo\n    - ppo\n  - - env\n    - CartPole-v1\n"
        layouts = {
            "zoo-empty": {},
            "zoo-two-zips": {"a.zip": model, "b.zip": model},
            "zoo-garbage-zip": {"CartPole-v1.zip": os.urandom(2048)},
            "zoo-python-tag": {"CartPole-v1.zip": model, "CartPole-v1/args.yml": args,
                               "CartPole-v1/config.yml": b"!!python/object/apply:os.system ['echo pwned']\n"},
            "zoo-garbage-yaml": {"CartPole-v1.zip": model, "CartPole-v1/args.yml": b"\xff\xfe{{{[[[",
                                 "CartPole-v1/config.yml": b"- [\n"},
            "zoo-deep-yaml": {"CartPole-v1.zip": model, "CartPole-v1/args.yml": b"[" * 5000,
                              "CartPole-v1/config.yml": b"{}\n"},
        }  # fmt: skip
        folders = {}
        for name, files in layouts.items():
            folders[name] = self._dir(name)
            for relative, data in files.items():
                (folders[name] / relative).parent.mkdir(parents=True, exist_ok=True)
                (folders[name] / relative).write_bytes(data)
        fifo_zoo = self._dir("zoo-fifo-zip")
        os.mkfifo(fifo_zoo / "CartPole-v1.zip")
        folders["zoo-fifo-zip"] = fifo_zoo
        return folders

    def edited(self, tmp_path: Path, path: str, value: Any, fix_digests: bool = True) -> Path:
        """The real bundle with one manifest field (dotted ``path``) set to ``value`` and re-signed."""
        manifest = copy.deepcopy(self.manifest)
        keys = [int(k) if k.isdigit() else k for k in path.replace("weights.safetensors", "\0").split(".")]
        keys = ["weights.safetensors" if k == "\0" else k for k in keys]
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        target = tmp_path / "edited.rlp"
        target.write_bytes(signed_bundle(manifest, self.members, fix_digests=fix_digests))
        return target


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Kit:
    return Kit(tmp_path_factory.mktemp("hostile-cli"))


def resolve(argv: list[str], kit: Kit, tmp_path: Path) -> list[str]:
    """Replace ``{name}`` with the kit's path of that name, ``{out}`` with a fresh output path."""
    out = {"{out}": str(tmp_path / "out"), "{out.rlp}": str(tmp_path / "out.rlp")}
    return [out.get(a) or (str(kit.paths[a[1:-1]]) if a[1:-1] in kit.paths else a) for a in argv]


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_failure(argv: list[str], code: int, err: str, fragment: str, expected: int = 2) -> None:
    command = next((a for a in argv if not a.startswith("-")), "")
    shown = f"argv={[a[:60] for a in argv]}\nstderr={err[:1500]}"
    assert code == expected, shown
    assert "Traceback" not in err and "internal error" not in err, shown
    if expected == 2:
        assert f"rlport {command}" in err or "usage: rlport" in err, shown
    assert fragment in err, shown
    assert len(err) < MAX_MESSAGE_CHARS + 2_000, "an error message was not capped"


# ---- bad flags and values ------------------------------------------------------------------------------------

HUGE = "1" + "0" * 5000
BAD_FLAGS = {
    "seed-negative": (["run", "{bundle}", "--seed", "-1"], "argument --seed: takes a whole number 0 .."),
    "seed-too-large": (["run", "{bundle}", "--seed", str(2**32)], "argument --seed"),
    "seed-5000-digits": (["run", "{bundle}", "--seed", HUGE], "... (5,001 characters)"),
    "seed-not-a-number": (["verify", "{bundle}", "--seed", "abc"], "argument --seed"),
    "episodes-0": (["run", "{bundle}", "--episodes", "0"], "argument --episodes"),
    "episodes-huge": (["verify", "{bundle}", "--episodes", "1000000000"], "argument --episodes"),
    "env-kwargs-list": (["run", "{bundle}", "--env-kwargs", "[1,2]"], "not a JSON object: found a JSON list"),
    "env-kwargs-string": (["verify", "{bundle}", "--env-kwargs", '"x"'], "not a JSON object"),
    "env-kwargs-broken": (["run", "{bundle}", "--env-kwargs", "{not json"], "not a JSON object"),
    "env-kwargs-deep": (["run", "{bundle}", "--env-kwargs", "[" * 50_000], "not a JSON object"),
    "env-kwargs-huge-number": (["run", "{bundle}", "--env-kwargs", '{"a": ' + HUGE + "}"], "not a JSON object"),
    "env-kwargs-too-long": (["run", "{bundle}", "--env-kwargs", "x" * 70_000], "over the limit of 65,536"),
    "env-module-not-a-name": (["run", "{bundle}", "--env-module", "os; rm -rf /"], "a Python module name"),
    "env-module-empty": (["verify", "{bundle}", "--env-module", ""], "a Python module name"),
    "backend-unknown": (["run", "{bundle}", "--backend", "tflite"], "invalid choice"),
    "device-on-numpy": (["run", "{bundle}", "--device", "cuda"], "applies to the torch backend"),
    "env-unknown": (["run", "{bundle}", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    "env-kwargs-rejected": (["run", "{bundle}", "--env-kwargs", '{"nope": 1}'], "nope"),
    "fingerprint-steps-0": (["fingerprint", "--env", "CartPole-v1", "--steps", "0", "-o", "{out}"], "--steps"),
    "fingerprint-steps-huge": (["fingerprint", "--env", "CartPole-v1", "--steps", HUGE, "-o", "{out}"], "--steps"),
    "fingerprint-episodes-0": (["fingerprint", "--env", "CartPole-v1", "--episodes", "0", "-o", "{out}"], "--episodes"),
    "fingerprint-no-output": (["fingerprint", "--env", "CartPole-v1"], "required: -o/--output"),
    "fingerprint-into-dir": (["fingerprint", "--env", "CartPole-v1", "-o", "{dir}"], "is a directory"),
    "fingerprint-no-folder": (["fingerprint", "--env", "CartPole-v1", "-o", "{nodir}"], "does not exist"),
    "fingerprint-env-unknown": (["fingerprint", "--env", "NoSuchEnv-v0", "-o", "{out}"], "NoSuchEnv-v0"),
    "import-probes-negative": (["import", "{sb3}", "-o", "{out.rlp}", "--probes", "-5"], "argument --probes"),
    "import-evaluate-negative": (["import", "{sb3}", "-o", "{out.rlp}", "--evaluate", "-3"], "argument --evaluate"),
    "import-algorithm-unknown": (["import", "{sb3}", "-o", "{out.rlp}", "--algorithm", "Nope"], "known: A2C, PPO"),
    "import-all-three": (
        ["import", "{sb3}", "-o", "{out.rlp}", "--probes", "-5", "--evaluate", "-3", "--algorithm", "Nope"],
        "argument",
    ),
    "import-into-dir": (["import", "{sb3}", "-o", "{dir}"], "is a directory"),
    "import-no-folder": (["import", "{sb3}", "-o", "{nodir}"], "does not exist"),
    "import-zoo-algorithm": (["import", "{zoo-empty}", "-o", "{out.rlp}", "--algorithm", "PPO"], "drop the option"),
    "import-vecnormalize-fifo": (["import", "{sb3}", "-o", "{out.rlp}", "--vecnormalize", "{fifo}"], "FIFO"),
    "export-opset-0": (["export", "{bundle}", "-o", "{out}", "--opset", "0"], "argument --opset"),
    "export-opset-old": (["export", "{bundle}", "-o", "{out}", "--opset", "5"], "opset 5 is not supported"),
    "export-format-unknown": (["export", "{bundle}", "-o", "{out}", "--format", "tflite"], "invalid choice"),
    "export-into-dir": (["export", "{bundle}", "-o", "{dir}"], "is a directory"),
    "export-no-folder": (["export", "{bundle}", "-o", "{nodir}"], "does not exist"),
    "requirements-backend": (["requirements", "{bundle}", "--backend", "tflite"], "supported: numpy"),
    "pack-backend": (["pack", "{bundle}", "-o", "{out}", "--backend", "onnx"], "supported: numpy"),
    "pack-onto-a-file": (["pack", "{bundle}", "-o", "{existing}"], "not an empty folder"),
    "demo-timesteps-0": (["demo", "--timesteps", "0"], "argument --timesteps"),
    "demo-seed-negative": (["demo", "--seed", "-1"], "argument --seed"),
    "no-command": ([], "required: command"),
    "unknown-command": (["explode"], "invalid choice"),
    "unknown-flag": (["inspect", "{bundle}", "--nope"], "unrecognized arguments"),
}


@pytest.mark.parametrize(("argv", "fragment"), BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_and_values(kit, tmp_path, capsys, argv, fragment):
    argv = resolve(argv, kit, tmp_path)
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, fragment)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.rlp").exists()


def test_help_documents_exit_codes_and_rlport_debug(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "RLPORT_DEBUG=1" in out and "2 bad usage or input" in out


@pytest.mark.parametrize("command", ["run", "verify", "import"])
def test_env_module_is_documented(capsys, command):
    assert main([command, "--help"]) == 0
    assert "MODULE:EnvName" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")


# ---- garbage where a bundle is expected ----------------------------------------------------------------------

NOT_BUNDLES = {
    "empty": "too short",
    "random": "not a readable rlport bundle",
    "text": "not a readable rlport bundle",
    "fifo": "it is a FIFO (named pipe), not a regular file",
    "dir": "it is a directory, not a regular file",
    "devnull": "it is a character device",
    "missing": "No such file",
    "loop": "cannot read bundle",
    "truncated": "rlport",
    "digits": "has more than 6 digits",
    "sb3": "rlport import",
}
BUNDLE_COMMANDS = {
    "inspect": ["inspect", "{file}"],
    "run": ["run", "{file}", "--episodes", "1"],
    "requirements": ["requirements", "{file}"],
    "pack": ["pack", "{file}", "-o", "{out}"],
    "export-onnx": ["export", "{file}", "-o", "{out}"],
    "export-sb3": ["export", "{file}", "--format", "sb3", "-o", "{out}", "--allow-missing-critic"],
}


@pytest.mark.parametrize("command", BUNDLE_COMMANDS, ids=BUNDLE_COMMANDS.keys())
@pytest.mark.parametrize(("kind", "fragment"), NOT_BUNDLES.items(), ids=NOT_BUNDLES.keys())
def test_garbage_where_a_bundle_is_expected(kit, tmp_path, capsys, command, kind, fragment):
    argv = resolve([a.replace("{file}", f"{{{kind}}}") for a in BUNDLE_COMMANDS[command]], kit, tmp_path)
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["fifo", "dir", "digits", "random"])
def test_verify_reports_an_unreadable_bundle_as_a_failed_check(kit, tmp_path, capsys, kind):
    argv = resolve(["verify", f"{{{kind}}}", "--episodes", "1"], kit, tmp_path)
    code, out, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, "", expected=1)
    assert "integrity  FAIL    unreadable" in out


def test_a_bundle_larger_than_the_limit_is_refused_before_it_is_read(kit, monkeypatch, capsys):
    monkeypatch.setattr(container, "MAX_BUNDLE_SIZE", 1_000)
    code, _, err = run_main(["inspect", str(kit.bundle)], capsys)
    assert_clean_failure(["inspect"], code, err, "bytes is over the limit of 1,000 bytes")


def test_read_regular_file_reads_no_more_than_the_real_size(tmp_path, monkeypatch):
    path = tmp_path / "grows"
    path.write_bytes(b"1234")
    real_fstat = os.fstat

    class Shrunk:  # the file grows between the fstat and the read
        def __init__(self, info):
            self.st_mode, self.st_size = info.st_mode, 2

    monkeypatch.setattr(os, "fstat", lambda fd: Shrunk(real_fstat(fd)))
    with pytest.raises(BundleError, match="changed size while being read"):
        container.read_regular_file(path, "bundle grows", 100)


# ---- a real bundle, one manifest field edited and the digests recomputed ---------------------------------------

# dotted path in the manifest -> the value an attacker writes there (the file then loads nowhere)
EDITS: list[tuple[str, Any]] = [
    ("format", 1), ("format", None), ("format_version", 1.0), ("format_version", "1." + "9" * 5000),
    ("format_version", "2.0"), ("format_version", None),
    ("observation_space", None), ("observation_space", []), ("observation_space", {"type": 5}),
    ("observation_space", {"type": "dict", "spaces": "x"}),
    ("observation_space.shape", "4"), ("observation_space.shape", [4.5]), ("observation_space.shape", [-1]),
    ("observation_space.shape", [2**40]), ("observation_space.shape", [True] * 4), ("observation_space.shape", [[4]]),
    ("observation_space.shape", [10**30]), ("observation_space.shape", [1] * 100),
    ("observation_space.dtype", "object"), ("observation_space.dtype", 5), ("observation_space.dtype", "S10"),
    ("observation_space.dtype", "complex128"), ("observation_space.dtype", "M8"),
    ("observation_space.low", "abc"), ("observation_space.low", [1, 2, 3]), ("observation_space.low", None),
    ("observation_space.low", {"a": 1}), ("observation_space.low", "nan"), ("observation_space.high", [[1]] * 4),
    ("action_space.n", 0), ("action_space.n", "2"), ("action_space.n", 2.5), ("action_space.n", 10**30),
    ("action_space.n", True), ("action_space.start", 2**62), ("action_space.type", "box"),
    ("action_space", {"type": "dict", "spaces": [{"key": "a", "space": {"type": "discrete", "n": 2}}]}),
    ("graph", None), ("graph", []), ("graph.output", 5), ("graph.output", "nope"), ("graph.output", "obs"),
    ("graph.inputs", "x"), ("graph.inputs", []), ("graph.inputs", [5]), ("graph.inputs.0.role", "state"),
    ("graph.inputs.0.role", 5), ("graph.inputs.0.key", 5), ("graph.inputs.0.key", ["x"]),
    ("graph.inputs", [{"key": None, "name": "obs", "role": "observation"},
                      {"name": "h", "role": "state", "output": "h2", "shape": [10**9, 10**9], "batch_axis": 0}]),
    ("graph.inputs", [{"key": None, "name": "obs", "role": "observation"},
                      {"name": "m", "role": "action_mask", "size": 10**12}]),
    ("graph.policy", {}), ("graph.policy", [5]), ("graph.policy", []),
    ("graph.policy.0.op", 5), ("graph.policy.0.op", "nope"), ("graph.policy.0.op", "x" * 1_000_000),
    ("graph.policy.0.op", "__class__"), ("graph.policy.0.op", "lstm"), ("graph.policy.0.op", "reshape"),
    ("graph.policy.0.inputs", "cast_1"), ("graph.policy.0.inputs", [5]), ("graph.policy.0.inputs", ["undefined"]),
    ("graph.policy.0.outputs", ["obs"]), ("graph.policy.0.outputs", ["a", "b"]),
    ("graph.policy.1.params", []), ("graph.policy.1.params", {"weight": 5}),
    ("graph.policy.1.params", {"weight": "missing"}), ("graph.policy.1.params", {"weight": "action_net.bias"}),
    ("graph.policy.1.attrs", []), ("graph.policy.1.attrs", {"nope": 1}),
    ("graph.preprocess.0.attrs.dtype", "object"), ("graph.preprocess.0.attrs.dtype", 5),
    ("graph.preprocess.0.nope", 1), ("graph.postprocess.0.op", "gaussian"), ("graph.policy.4.op", "greedy"),
    ("env", None), ("env", "CartPole"), ("env.id", 5), ("env.kwargs", []), ("env.wrappers", [5]),
    ("env.wrappers", [{"name": 5}]), ("env.wrappers", [{"name": "time_feature", "kwargs": {"max_steps": "x"}}]),
    ("env.max_episode_steps", -1), ("env.max_episode_steps", 1.5), ("env.max_episode_steps", 10**30),
    ("provenance", []), ("provenance", None), ("probes", "x"), ("probes", {"count": -1}), ("source", []),
]  # fmt: skip
MEMBER_EDITS: list[tuple[str, Any]] = [
    ("members", []), ("members", {}), ("members.weights.safetensors", 5),
    ("members.weights.safetensors", {"sha256": 5, "size": "x"}), ("members.weights.safetensors.size", 10**30),
    ("members.weights.safetensors.size", -1), ("members.weights.safetensors.sha256", "0" * 64),
]  # fmt: skip


def _edit_id(path: str, value: Any) -> str:
    return f"{path}={json.dumps(value)[:30]}"


@pytest.mark.parametrize(
    ("path", "value", "fix"),
    [(p, v, True) for p, v in EDITS] + [(p, v, False) for p, v in MEMBER_EDITS],
    ids=[_edit_id(p, v) for p, v in EDITS + MEMBER_EDITS],
)
def test_edited_and_re_signed_bundle(kit, tmp_path, capsys, path, value, fix):
    bundle = kit.edited(tmp_path, path, value, fix_digests=fix)
    for argv in BUNDLE_COMMANDS.values():
        argv = resolve([str(bundle) if a == "{file}" else a for a in argv], kit, tmp_path)
        code, _, err = run_main(argv, capsys)
        assert_clean_failure(argv, code, err, str(bundle))
        assert not (tmp_path / "out").exists()
    code, out, err = run_main(["verify", str(bundle), "--episodes", "1"], capsys)
    assert code == 1 and "FAIL" in out and "Traceback" not in err and "internal error" not in err


# fields that load, but refuse to act outside what the user asked for when the env is made or the model rebuilt
LOADS_THEN_REFUSES = {
    "env-id-imports-a-module": ("env.id", "os:system", ["run", "verify"], "--env-module os"),
    "env-id-imports-evil": ("env.id", "evil_module:Env", ["run", "verify"], "would make gymnasium import"),
    "env-id-too-long": ("env.id", "x" * 10_000, ["run", "verify"], "is not a printable string"),
    "env-id-escape-codes": ("env.id", "\x1b[2J", ["run", "verify"], "is not a printable string"),
    "env-kwargs-unknown": ("env.kwargs", {"nope": 1}, ["run"], "rejected its kwargs"),
    "env-wrapper-unknown": ("env.wrappers", [{"name": "nope"}], ["run"], "unknown env wrapper 'nope'"),
    "source-algorithm": ("source.algorithm", "Nope", ["export-sb3"], "algorithm 'Nope' is not supported"),
    "source-policy-class": ("source.policy_class", "os.system", ["export-sb3"], "not part of torch"),
    "source-policy-kwargs": ("source.policy_kwargs", [], ["export-sb3"], "policy_kwargs must be a dict"),
    "source-hyperparameters": ("source.hyperparameters", [], ["export-sb3"], "hyperparameters must be a dict"),
}
COMMANDS = {
    **BUNDLE_COMMANDS,
    "verify": ["verify", "{file}", "--episodes", "1"],
}


@pytest.mark.parametrize(
    ("path", "value", "commands", "fragment"), LOADS_THEN_REFUSES.values(), ids=LOADS_THEN_REFUSES.keys()
)
def test_edited_bundle_that_loads_but_is_refused_later(kit, tmp_path, capsys, path, value, commands, fragment):
    bundle = kit.edited(tmp_path, path, value)
    for command in commands:
        argv = resolve([str(bundle) if a == "{file}" else a for a in COMMANDS[command]], kit, tmp_path)
        code, _, err = run_main(argv, capsys)
        assert_clean_failure(argv, code, err, fragment)
        assert not (tmp_path / "out").exists()


def test_a_named_module_is_passed_on(kit, tmp_path, capsys, monkeypatch):
    import rlport.envs

    seen = {}

    def make_env(spec, env_id=None, env_kwargs=None, env_module=None):
        seen.update(env_module=env_module, env_kwargs=env_kwargs)
        raise rlport.envs.EnvError("stop here")

    monkeypatch.setattr(rlport.envs, "make_env", make_env)
    bundle = kit.edited(tmp_path, "env.id", "my_envs:Walker")
    argv = ["run", str(bundle), "--env-module", "my_envs", "--env-kwargs", '{"g": 9.0}']
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, "stop here")
    assert seen == {"env_module": "my_envs", "env_kwargs": {"g": 9.0}}


def test_a_huge_op_name_makes_a_short_message(kit, tmp_path, capsys):
    bundle = kit.edited(tmp_path, "graph.policy.0.op", "x" * 10_000_000)
    code, _, err = run_main(["inspect", str(bundle)], capsys)
    assert code == 2 and "unknown op 'xxx" in err and len(err) < MAX_MESSAGE_CHARS + 200


# ---- garbage where an SB3 .zip or a zoo folder is expected ----------------------------------------------------

NOT_MODELS = {
    "empty": "rlport import",
    "random": "rlport import",
    "text": "rlport import",
    "fifo": "is not a regular file or a folder",
    "devnull": "is not a regular file or a folder",
    "missing": "missing.rlp",
    "sb3-truncated": "rlport import",
    "bundle": "rlport import",
    "zoo-empty": "found 0",
    "zoo-two-zips": "found 2",
    "zoo-garbage-zip": "rlport import",
    "zoo-python-tag": "rlport import",
    "zoo-garbage-yaml": "rlport import",
    "zoo-deep-yaml": "rlport import",
    "zoo-fifo-zip": "rlport import",
}


@pytest.mark.parametrize(("kind", "fragment"), NOT_MODELS.items(), ids=NOT_MODELS.keys())
def test_garbage_where_a_model_is_expected(kit, tmp_path, capsys, kind, fragment):
    argv = resolve(["import", f"{{{kind}}}", "-o", "{out.rlp}", "--no-fingerprint"], kit, tmp_path)
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["empty", "random", "dir", "devnull", "bundle"])
def test_garbage_where_vecnormalize_statistics_are_expected(kit, tmp_path, capsys, kind):
    argv = resolve(["import", "{sb3}", "--vecnormalize", f"{{{kind}}}", "-o", "{out.rlp}"], kit, tmp_path)
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, "rlport import")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- garbage where a fingerprint file is expected ------------------------------------------------------------


def _tensor(dtype: Any = "float64", shape: Any = (2,), data: Any = (0.5, 1.5)) -> dict:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data": list(data) if isinstance(data, tuple) else data}  # fmt: skip


def _fingerprint(**tensor) -> bytes:
    meta = {"episodes": 1, "steps": 2, "seed": 0}
    return json.dumps({"meta": meta, "tensors": {"reward": _tensor(**tensor)}}).encode()


NOT_FINGERPRINTS = {
    "empty": (b"", "is not JSON"),
    "random": (bytes(range(256)) * 4, "is not JSON"),
    "a-list": (b"[]", "expected a JSON object with a 'meta' and a 'tensors' object"),
    "tensors-a-list": (b'{"meta": {}, "tensors": []}', "expected a JSON object"),
    "deep": (b"[" * 100_000, "is not JSON (RecursionError"),
    "5000-digits": (b'{"meta": ' + HUGE.encode() + b"}", "is not JSON (ValueError"),
    "tensor-a-number": (b'{"meta": {}, "tensors": {"reward": 5}}', "expected an object with 'dtype'"),
    "dtype-object": (_fingerprint(dtype="object"), "dtype 'object' is not one of"),
    "dtype-number": (_fingerprint(dtype=5), "dtype 5 is not one of"),
    "dtype-bytes": (_fingerprint(dtype="S10"), "dtype 'S10' is not one of"),
    "shape-negative": (_fingerprint(shape=[-1]), "is not a list of at most 8 whole numbers"),
    "shape-text": (_fingerprint(shape="2"), "is not a list"),
    "shape-huge": (_fingerprint(shape=[2**70]), "holds 1,180,591,620,717,411,303,424 values, but 'data' has 2"),
    "shape-many-dims": (_fingerprint(shape=[1] * 9, data=[1.0]), "at most 8"),
    "shape-mismatch": (_fingerprint(shape=[3, 2]), "holds 6 values, but 'data' has 2"),
    "data-text": (_fingerprint(data="abc"), "flat list of numbers"),
    "data-strings": (_fingerprint(data=["1", "2"]), "flat list of numbers"),
    "data-nested": (_fingerprint(shape=[2], data=[[1], [2]]), "flat list of numbers"),
    "data-overflows": (_fingerprint(dtype="uint8", data=[300, 1]), "does not fit dtype uint8"),
    "data-nan-int": (_fingerprint(dtype="int64", data=[float("nan"), 1]), "does not fit dtype int64"),
    "data-huge-int": (_fingerprint(dtype="int64", data=[2**70, 1]), "does not fit dtype int64"),
}


@pytest.mark.parametrize(("content", "fragment"), NOT_FINGERPRINTS.values(), ids=NOT_FINGERPRINTS.keys())
def test_garbage_where_a_fingerprint_is_expected(kit, tmp_path, capsys, content, fragment):
    path = tmp_path / "fp.json"
    path.write_bytes(content)
    argv = ["verify", str(kit.bundle), "--episodes", "1", "--fingerprint", str(path)]
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, fragment)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [("fifo", "FIFO"), ("dir", "a directory"), ("devnull", "character device"), ("missing", "No such file")],
)
def test_special_files_where_a_fingerprint_is_expected(kit, tmp_path, capsys, kind, fragment):
    argv = resolve(["verify", "{bundle}", "--episodes", "1", "--fingerprint", f"{{{kind}}}"], kit, tmp_path)
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, fragment)


def test_a_fingerprint_file_over_the_limit_is_refused_unread(kit, tmp_path, capsys):
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:  # sparse: no disk used
        handle.truncate(fingerprint_file.MAX_FINGERPRINT_FILE_SIZE + 1)
    argv = ["verify", str(kit.bundle), "--fingerprint", str(path)]
    code, _, err = run_main(argv, capsys)
    assert_clean_failure(argv, code, err, "is over the limit of 67,108,864 bytes")


def test_a_recorded_fingerprint_reads_back_exactly(tmp_path):
    import numpy as np

    tensors = {"obs": np.arange(6, dtype=np.float32).reshape(3, 2), "done": np.array([0, 0, 1], np.uint8)}
    path = tmp_path / "fp.json"
    path.write_bytes(fingerprint_file.encode_fingerprint({"episodes": 1}, tensors))
    meta, back = fingerprint_file.load_fingerprint_file(path)
    assert meta == {"episodes": 1} and back.keys() == tensors.keys()
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value)


# ---- the last-resort handler ------------------------------------------------------------------------------------

UNEXPECTED = {
    "memory": MemoryError(),
    "recursion": RecursionError("maximum recursion depth exceeded"),
    "value": ValueError("x" * 10_000),
    "type": TypeError("'int' object is not iterable"),
    "multi-line": RuntimeError("[enforce fail at alloc_cpu.cpp:127]\nDefaultCPUAllocator: can't allocate memory"),
    "os": OSError(5, "Input/output error"),
}


@pytest.mark.parametrize("error", UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_an_unexpected_exception_is_one_line_and_exit_2(kit, capsys, monkeypatch, error):
    import rlport.cli.main

    def explode(args):
        raise error

    monkeypatch.delenv("RLPORT_DEBUG", raising=False)
    monkeypatch.setattr(rlport.cli.main, "cmd_inspect", explode)
    code, _, err = run_main(["inspect", str(kit.bundle)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"rlport inspect: internal error on this input ({type(error).__name__}: ")
    assert err.rstrip().endswith("please report it") and len(err) < 400


def test_rlport_debug_re_raises(kit, monkeypatch):
    import rlport.cli.main

    def explode(args):
        raise ValueError("the bug")

    monkeypatch.setattr(rlport.cli.main, "cmd_inspect", explode)
    monkeypatch.setenv("RLPORT_DEBUG", "1")
    with pytest.raises(ValueError, match="the bug"):
        main(["inspect", str(kit.bundle)])


def test_ctrl_c_exits_130_in_one_line(kit, capsys, monkeypatch):
    import rlport.cli.main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.delenv("RLPORT_DEBUG", raising=False)
    monkeypatch.setattr(rlport.cli.main, "cmd_inspect", interrupted)
    code, _, err = run_main(["inspect", str(kit.bundle)], capsys)
    assert code == 130 and err == "rlport inspect: interrupted\n"


class UncappedError(RlportError):
    """An error whose text escaped the cap at the source (``RlportError.__init__``)."""

    def __str__(self) -> str:
        return "op '\x1b]0;owned\x07" + "y" * 10_000_000 + "' is unknown"


def test_rlport_errors_are_capped_and_cannot_drive_the_terminal(kit, capsys, monkeypatch):
    import rlport.cli.main

    def long_error(args):
        raise UncappedError()

    monkeypatch.setattr(rlport.cli.main, "cmd_inspect", long_error)
    code, _, err = run_main(["inspect", str(kit.bundle)], capsys)
    assert code == 2 and "\x1b" not in err and "\\x1b]0;owned\\x07" in err
    assert len(err) < MAX_MESSAGE_CHARS + 100 and "... [9,998,0" in err


def test_names_from_a_file_cannot_drive_the_terminal_in_a_table(kit, tmp_path, capsys):
    bundle = kit.edited(tmp_path, "provenance.algorithm", "\x1b[2J\x1b[31mPPO\u202e")
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[2J\\x1b[31mPPO\\u202e" in out


# ---- through the console script ---------------------------------------------------------------------------------


def _console(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("rlport")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rlport"]
    env = {k: v for k, v in os.environ.items() if k != "RLPORT_DEBUG"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["inspect", "{fifo}"], "FIFO"), (["run", "{bundle}", "--seed", "-1"], "--seed"),
     (["inspect", "{digits}"], "more than 6 digits")],
    ids=["fifo", "negative-seed", "5000-digit-version"],
)  # fmt: skip
def test_console_script_fails_cleanly(kit, tmp_path, argv, fragment):
    done = _console(*resolve(argv, kit, tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr and fragment in done.stderr, done.stderr
