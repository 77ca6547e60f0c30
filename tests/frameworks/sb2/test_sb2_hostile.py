"""Hostile SB2 files: payloads in data, in params, in obs_rms.pkl, in the zip's data JSON, in config.yml, and
in function records, are refused or kept inert, never run; damaged and oversized files are bounded."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from sb2_files import Payload, a2c_model, by_name, running_mean_std, sb2_names, write_pkl, write_zip

from rlport.errors import BundleError, UnsafeFileError
from rlport.frameworks.sb2 import import_sb2
from rlport.frameworks.sb2.file_zip import MAX_DATA_SIZE
from rlport.frameworks.sb2.files import read_sb2
from rlport.frameworks.sb2.model import FUNCTION


@pytest.fixture
def marker(tmp_path):
    """A file a payload would create; each test asserts it never appears."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"


def _system(marker) -> Payload:
    return Payload(os.system, (f"touch {marker}",))


def _eval(marker) -> Payload:
    return Payload(eval, (f"open({str(marker)!r}, 'w')",))


@pytest.mark.parametrize("payload", [_system, _eval], ids=["os.system", "builtins.eval"])
def test_a_payload_in_data_is_refused(tmp_path, marker, payload):
    data, params = a2c_model()
    data["verbose"] = payload(marker)
    path = write_pkl(tmp_path / "a2c" / "M.pkl", (data, params))
    with pytest.raises(UnsafeFileError, match="refused global (posix.system|builtins.eval)"):
        read_sb2(path)


def test_a_payload_in_params_is_refused(tmp_path, marker):
    data, params = a2c_model()
    path = write_pkl(tmp_path / "a2c" / "M.pkl", (data, [*params[:-1], _system(marker)]))
    with pytest.raises(UnsafeFileError, match="refused global posix.system"):
        read_sb2(path)


def test_a_payload_in_the_zip_data_json_is_refused(tmp_path, marker):
    data, params = a2c_model()
    data["policy_kwargs"] = {"act_fun": _system(marker)}
    path = write_zip(tmp_path / "a2c" / "M.zip", data, by_name(params))
    with pytest.raises(UnsafeFileError, match=r"data\['policy_kwargs'\]: refused global posix.system"):
        read_sb2(path)


def test_a_payload_in_obs_rms_is_refused(tmp_path, marker):
    data, params = a2c_model()
    path = write_pkl(tmp_path / "a2c" / "CartPole-v1.pkl", (data, params))
    folder = tmp_path / "a2c" / "CartPole-v1"
    folder.mkdir()
    stats = running_mean_std(np.zeros(4), np.ones(4))
    stats.count = _system(marker)
    with sb2_names():
        import pickle

        (folder / "obs_rms.pkl").write_bytes(pickle.dumps(stats, protocol=3))
    with pytest.raises(UnsafeFileError, match="obs_rms.pkl: refused global posix.system"):
        import_sb2(path, probes=0, fingerprint=False)


def test_a_function_record_is_never_rebuilt_nor_called(tmp_path, marker):
    data, params = a2c_model()
    target = str(marker)
    data["learning_rate"] = lambda progress: open(target, "w")  # would create the marker if ever called
    model = read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))
    assert model.data["learning_rate"] == FUNCTION


def test_a_payload_among_a_functions_globals_is_refused(tmp_path, marker):
    data, params = a2c_model()
    hook = _system(marker)
    data["learning_rate"] = lambda progress: hook  # cloudpickle pickles the global `hook` by value
    with pytest.raises(UnsafeFileError, match="refused global posix.system"):
        read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))


def test_builtin_type_names_only_function_parts(tmp_path):
    from cloudpickle.cloudpickle import _builtin_type

    data, params = a2c_model()
    data["verbose"] = Payload(_builtin_type, ("ModuleType",))
    with pytest.raises(UnsafeFileError, match=r"refused cloudpickle._builtin_type\('ModuleType'\)"):
        read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))


def test_a_python_tag_in_config_yml_is_refused(tmp_path, marker):
    data, params = a2c_model()
    path = write_pkl(tmp_path / "a2c" / "CartPole-v1.pkl", (data, params))
    (tmp_path / "a2c" / "CartPole-v1").mkdir()
    (tmp_path / "a2c" / "CartPole-v1" / "config.yml").write_text(
        f"!!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(UnsafeFileError, match="refused YAML tag !!python/object/apply:os.system"):
        import_sb2(path, probes=0, fingerprint=False)


def test_a_truncated_pickle_is_a_bundle_error(tmp_path):
    data, params = a2c_model()
    path = write_pkl(tmp_path / "a2c" / "M.pkl", (data, params))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(BundleError, match="truncated or corrupt pickle"):
        read_sb2(path)


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    data, params = a2c_model()
    path = write_zip(tmp_path / "a2c" / "M.zip", data, by_name(params))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("parameters_extra", b"\0" * (80 << 20))  # 80 MiB of zeros in ~80 KiB
    with pytest.raises(BundleError, match="a zip bomb"):
        read_sb2(path)


def test_an_oversized_data_member_is_refused(tmp_path):
    data, params = a2c_model()
    path = write_zip(tmp_path / "a2c" / "M.zip", data, by_name(params), {"data": b" " * (MAX_DATA_SIZE + 1)})
    with pytest.raises(BundleError, match="member 'data' claims"):
        read_sb2(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_a_named_pipe_is_not_read(tmp_path):
    (tmp_path / "a2c").mkdir()
    os.mkfifo(tmp_path / "a2c" / "M.pkl")
    with pytest.raises(BundleError, match="neither an SB2 .pkl"):
        read_sb2(tmp_path / "a2c" / "M.pkl")
