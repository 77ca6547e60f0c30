"""Hostile SB3 files and zoo folders are refused, name what they tried, and run none of their code.

Each payload would create a file if it were executed; every test checks that the file does not
exist afterwards.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

import rlport
from rlport.cli.main import main
from sb3_models import ModelSpec, make_model


class Payload:
    """Pickles to ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def saved(tmp_path) -> Path:
    model = make_model(ModelSpec("PPO", action="discrete"))
    model.save(tmp_path / "model.zip")
    return tmp_path / "model.zip"


def _rewrite(path: Path, **members: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        content = {name: archive.read(name) for name in archive.namelist()}
    content.update(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in content.items():
            archive.writestr(name, data)


def _assert_refused(call, marker: Path, *names: str) -> None:
    with pytest.raises(rlport.UnsafeFileError) as info:
        call()
    assert any(name in str(info.value) for name in names), str(info.value)
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("field", ["observation_space", "action_space", "policy_class", "policy_kwargs"])
def test_hostile_serialized_data_field(saved, tmp_path, field):
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(saved) as archive:
        data = json.loads(archive.read("data"))
    data[field] = {":type:": "<class 'x'>", ":serialized:": base64.b64encode(pickle.dumps(Payload(marker))).decode()}
    _rewrite(saved, data=json.dumps(data).encode())
    _assert_refused(lambda: rlport.import_sb3(saved), marker, "posix.system", "os.system")


@pytest.mark.parametrize("member", ["policy.pth", "pytorch_variables.pth"])
def test_hostile_torch_member(saved, tmp_path, member):
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Payload(marker)}))
        archive.writestr("archive/version", b"3\n")
    _rewrite(saved, **{member: inner.getvalue()})
    _assert_refused(lambda: rlport.import_sb3(saved), marker, "posix.system", "os.system")


def test_hostile_vecnormalize(saved, tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "vecnormalize.pkl"
    pkl.write_bytes(pickle.dumps(Payload(marker)))
    _assert_refused(lambda: rlport.import_sb3(saved, vecnormalize=pkl), marker, "posix.system", "os.system")


def _zoo_run(saved: Path, tmp_path: Path) -> Path:
    run = tmp_path / "ppo" / "CartPole-v1_1"
    (run / "CartPole-v1").mkdir(parents=True)
    shutil.copy(saved, run / "CartPole-v1.zip")
    (run / "CartPole-v1" / "args.yml").write_text(
        "!!python/object/apply:collections.OrderedDict\n- - - algo\n    - ppo\n  - - env\n    - CartPole-v1\n"
    )
    return run


def test_a_clean_zoo_folder_imports(saved, tmp_path):
    bundle = rlport.import_zoo(_zoo_run(saved, tmp_path), probes=0)
    assert bundle.env.id == "CartPole-v1" and bundle.provenance["algorithm"] == "PPO"


def test_hostile_config_yml(saved, tmp_path):
    marker = tmp_path / "pwned"
    run = _zoo_run(saved, tmp_path)
    (run / "CartPole-v1" / "config.yml").write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    _assert_refused(lambda: rlport.import_zoo(run), marker, "python/object/apply:os.system")


def test_hostile_yaml_inside_an_ordered_dict(saved, tmp_path):
    marker = tmp_path / "pwned"
    run = _zoo_run(saved, tmp_path)
    (run / "CartPole-v1" / "config.yml").write_text(
        "!!python/object/apply:collections.OrderedDict\n"
        f'- - - normalize\n    - !!python/object/apply:subprocess.call [["touch", "{marker}"]]\n'
    )
    _assert_refused(lambda: rlport.import_zoo(run), marker, "subprocess.call")


def test_member_with_parent_path_is_refused(saved):
    with zipfile.ZipFile(saved, "a") as archive:
        archive.writestr("../escape", b"x")
    with pytest.raises(rlport.BundleError, match=r"\.\./escape"):
        rlport.import_sb3(saved)


def test_absurd_declared_member_size_is_refused(saved):
    raw = bytearray(saved.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the last central directory entry
    struct.pack_into("<I", raw, central + 24, 0xFFFFFFF0)  # its uncompressed size
    saved.write_bytes(bytes(raw))
    with pytest.raises(rlport.BundleError, match="claims"):
        rlport.import_sb3(saved)


@pytest.mark.parametrize(
    "content, message",
    [(b"not a zip at all", "not an SB3 model"), (None, "no 'policy.pth' member")],
    ids=["not-a-zip", "no-policy"],
)
def test_not_an_sb3_file(saved, content, message):
    if content is None:
        with zipfile.ZipFile(saved) as archive:
            data = archive.read("data")
        with zipfile.ZipFile(saved, "w") as archive:
            archive.writestr("data", data)
    else:
        saved.write_bytes(content)
    with pytest.raises(rlport.BundleError, match=message):
        rlport.import_sb3(saved)


def test_cli_import_of_a_hostile_file_exits_2_and_writes_nothing(saved, tmp_path, capsys):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "vecnormalize.pkl"
    pkl.write_bytes(pickle.dumps(Payload(marker)))
    out = tmp_path / "out.rlp"
    assert main(["import", str(saved), "--vecnormalize", str(pkl), "-o", str(out)]) == 2
    assert "refused global" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


def test_cli_import_of_a_zip_and_a_folder(saved, tmp_path, capsys):
    out = tmp_path / "cartpole.rlp"
    assert main(["import", str(saved), "-o", str(out), "--env", "CartPole-v1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["env"]["id"] == "CartPole-v1" and out.exists()
    run = _zoo_run(saved, tmp_path)
    assert main(["import", str(run), "-o", str(tmp_path / "zoo.rlp")]) == 0
    assert "PPO" in capsys.readouterr().out


def test_a_renamed_env_whose_spaces_differ_is_a_clear_warning(tmp_path):
    from gymnasium import spaces
    from stable_baselines3 import DQN

    from sb3_models import SpacesEnv

    # A model observing 5 numbers, recorded as LunarLander-v2 (today's v3 observes 8).
    model = DQN("MlpPolicy", SpacesEnv(spaces.Box(-1, 1, (5,), "float32"), spaces.Discrete(4)), device="cpu")
    run = tmp_path / "dqn" / "LunarLander-v2_1"
    (run / "LunarLander-v2").mkdir(parents=True)
    model.save(run / "LunarLander-v2.zip")
    (run / "LunarLander-v2" / "args.yml").write_text(
        "!!python/object/apply:collections.OrderedDict\n- - - algo\n    - dqn\n  - - env\n    - LunarLander-v2\n"
    )
    # issue 12 item 5: an import never fails because of the env; the recorded id is kept, with the reason
    renamed = r"LunarLander-v2 was renamed LunarLander-v3, but the spaces differ.*shape"
    with pytest.warns(rlport.RlportWarning, match=renamed):
        bundle = rlport.import_zoo(run)
    assert bundle.env.id == "LunarLander-v2" and "spaces differ" in bundle.provenance["env_id_note"]


def _policy_kwargs_as_text(saved: Path, **entries: str) -> None:
    """Rewrite ``data["policy_kwargs"]`` as plain JSON with class names as SB3 shows them (``<class '...'>``)."""
    with zipfile.ZipFile(saved) as archive:
        data = json.loads(archive.read("data"))
    plain = {k: v for k, v in data["policy_kwargs"].items() if not k.startswith(":")}  # net_arch ...
    data["policy_kwargs"] = {**plain, **{key: f"<class '{name}'>" for key, name in entries.items()}}
    _rewrite(saved, data=json.dumps(data).encode())


def test_a_policy_class_name_outside_the_table_is_refused_at_import(saved):
    # resolves (by attributes) to torch's own Tanh; no real SB3 file names it so, and to_sb3 would follow it
    _policy_kwargs_as_text(saved, activation_fn="stable_baselines3.common.save_util.th.nn.Tanh")
    with pytest.raises(rlport.UnsupportedError, match="stable_baselines3.common.save_util.th.nn.Tanh"):
        rlport.import_sb3(saved, probes=0, fingerprint=False)


def test_a_training_class_outside_the_table_is_set_aside_at_import_and_asked_for_by_to_sb3(saved, tmp_path):
    pytest.importorskip("stable_baselines3")
    import torch

    _policy_kwargs_as_text(saved, activation_fn="torch.nn.modules.activation.Tanh",
                           optimizer_class="stable_baselines3.common.save_util.os.system")  # fmt: skip
    with pytest.warns(rlport.RlportWarning, match="optimizer_class=stable_baselines3.common.save_util.os.system"):
        bundle = rlport.import_sb3(saved, probes=0, fingerprint=False)
    assert "optimizer_class" not in bundle.source["policy_kwargs"]
    assert bundle.source["refused_classes"] == {"optimizer_class": "stable_baselines3.common.save_util.os.system"}
    bundle.save(tmp_path / "b.rlp")
    with pytest.raises(rlport.UnsupportedError, match=r"policy_kwargs=\{'optimizer_class': YourClass\}"):
        rlport.to_sb3(tmp_path / "b.rlp", allow_missing_critic=True)
    model = rlport.to_sb3(tmp_path / "b.rlp", allow_missing_critic=True,
                          policy_kwargs={"optimizer_class": torch.optim.SGD})  # fmt: skip
    assert isinstance(model.policy.optimizer, torch.optim.SGD)
