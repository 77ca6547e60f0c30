"""Reading SB2 model files (both formats) into SB2Model: spaces, params, schedules, algorithm and policy class."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from sb2_files import (
    A2C_NAMES,
    a2c_model,
    by_name,
    her_model,
    old_cloudpickle_function,
    policy_class,
    write_pkl,
    write_zip,
)

from rlport.bundle.spaces import BoxSpec, DictSpec, DiscreteSpec
from rlport.errors import BundleError, UnsafeFileError, UnsupportedError
from rlport.frameworks.sb2 import is_sb2_file
from rlport.frameworks.sb2.file_algorithms import SIGNATURES, algorithm_from_keys
from rlport.frameworks.sb2.files import read_sb2
from rlport.frameworks.sb2.model import FUNCTION

DQN_KEYS = {"exploration_fraction": 0.1, "target_network_update_freq": 500, "prioritized_replay": True,
            "learning_starts": 1000, "gamma": 0.99}  # fmt: skip


def test_pkl_and_zip_of_one_model_read_the_same(tmp_path):
    data, params = a2c_model()
    pkl = read_sb2(write_pkl(tmp_path / "a2c" / "CartPole-v1.pkl", (data, params)))
    archive = read_sb2(write_zip(tmp_path / "a2c" / "CartPole-v1.zip", data, by_name(params)))
    for model in (pkl, archive):
        assert (model.algorithm, model.policy, model.policy_module) == (
            "a2c",
            "MlpPolicy",
            "stable_baselines.common.policies",
        )
        assert model.observation_space == BoxSpec.create(-10.0, 10.0, (4,))
        assert model.action_space == DiscreteSpec(2)
        assert model.policy_kwargs == {"net_arch": [{"pi": [8], "vf": [8]}]}
        assert model.data["gamma"] == 0.99 and model.version is None
    assert isinstance(pkl.params, list) and list(archive.params) == A2C_NAMES
    for ours, theirs in zip(pkl.params, archive.params.values(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
        assert ours.dtype == np.float32


def test_schedules_become_markers_never_functions(tmp_path):
    data, params = a2c_model()
    data.update(learning_rate=lambda progress: progress * 7e-4, cliprange=old_cloudpickle_function())
    model = read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))
    assert model.data["learning_rate"] == FUNCTION and model.data["cliprange"] == FUNCTION


def test_the_policy_class_is_a_name_and_data_is_inert(tmp_path):
    data, params = a2c_model()
    model = read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))
    assert model.data["policy"] == "stable_baselines.common.policies.MlpPolicy"
    assert model.data["observation_space"]["class"] == "gym.spaces.box.Box"

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool, np.ndarray))

    assert plain(model.data)


@pytest.mark.parametrize("algorithm", sorted(SIGNATURES))
def test_each_algorithm_is_told_by_its_own_saved_keys(algorithm):
    keys = dict.fromkeys(SIGNATURES[algorithm], 1)
    assert algorithm_from_keys({**keys, "gamma": 0.99, "verbose": 1}) == algorithm
    assert algorithm_from_keys({k: v for k, v in keys.items() if k != min(keys)}) is None  # one key short


def test_two_algorithms_keys_tell_nothing_and_gail_is_trpo_with_using_gail():
    both = {**dict.fromkeys(SIGNATURES["ppo2"]), **dict.fromkeys(SIGNATURES["td3"])}
    assert algorithm_from_keys(both) is None
    assert algorithm_from_keys({**dict.fromkeys(SIGNATURES["trpo"]), "using_gail": True}) == "gail"
    assert algorithm_from_keys({**dict.fromkeys(SIGNATURES["a2c"]), **dict.fromkeys(SIGNATURES["acktr"])}) == "acktr"


def test_folder_name_decides_when_the_keys_do_not(tmp_path):
    data, params = a2c_model()
    bare = {k: v for k, v in data.items() if k not in SIGNATURES["a2c"]}
    assert read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (bare, params))).algorithm == "a2c"
    with pytest.raises(BundleError, match="cannot tell which SB2 algorithm"):
        read_sb2(write_pkl(tmp_path / "models" / "M.pkl", (bare, params)))
    assert read_sb2(tmp_path / "models" / "M.pkl", algorithm="ppo2").algorithm == "ppo2"


def test_keys_and_folder_that_disagree_stop_the_import(tmp_path):
    data, params = a2c_model()
    with pytest.raises(BundleError, match="saved settings are A2C's but it sits in a folder named ppo2"):
        read_sb2(write_pkl(tmp_path / "ppo2" / "M.pkl", (data, params)))
    assert read_sb2(tmp_path / "ppo2" / "M.pkl", algorithm="a2c").algorithm == "a2c"
    with pytest.raises(UnsupportedError, match="not an SB2 algorithm"):
        read_sb2(tmp_path / "ppo2" / "M.pkl", algorithm="ppo3")


def test_her_model_is_its_wrapped_algorithm_with_the_goal_dict(tmp_path):
    model = read_sb2(write_pkl(tmp_path / "her" / "FetchReach-v1.pkl", her_model()))
    assert model.algorithm == "sac" and model.policy_module == "stable_baselines.sac.policies"
    assert isinstance(model.observation_space, DictSpec)
    assert sorted(k for k, _ in model.observation_space.spaces) == ["achieved_goal", "desired_goal", "observation"]
    her = model.data["_her"]
    assert her["observation_keys"] == ["observation", "achieved_goal", "desired_goal"]
    assert (her["goal_selection_strategy"], her["n_sampled_goal"], her["flat_observation_shape"]) == ("future", 4, [16])


def test_zoo_custom_policy_is_the_builtin_class_it_equals(tmp_path):
    _, params = a2c_model()
    spaces = {key: a2c_model()[0][key] for key in ("observation_space", "action_space")}
    data = {**DQN_KEYS, **spaces, "policy": policy_class("utils.CustomDQNPolicy"), "policy_kwargs": {"dueling": True}}
    model = read_sb2(write_pkl(tmp_path / "dqn" / "M.pkl", (data, params)))
    assert (model.algorithm, model.policy, model.policy_module) == (
        "dqn",
        "LnMlpPolicy",
        "stable_baselines.deepq.policies",
    )
    assert model.policy_kwargs == {"dueling": True, "layers": [64]}
    assert model.data["_policy_saved_as"] == "utils.CustomDQNPolicy"


def test_a_policy_of_another_algorithm_family_is_refused(tmp_path):
    data, params = a2c_model()
    data["policy"] = policy_class("stable_baselines.sac.policies.MlpPolicy")
    with pytest.raises(BundleError, match="belongs to sac, not to a2c"):
        read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))


def test_a_custom_policy_class_is_refused_by_name(tmp_path):
    data, params = a2c_model()
    data["policy"] = policy_class("my_project.policies.CustomPolicy")
    with pytest.raises(UnsafeFileError, match="refused global my_project.policies.CustomPolicy"):
        read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))


def test_params_of_the_wrong_kind_are_refused(tmp_path):
    data, params = a2c_model()
    with pytest.raises(BundleError, match="parameter 1 is str, not a numeric array"):
        read_sb2(write_pkl(tmp_path / "a2c" / "M.pkl", (data, [params[0], "weights"])))
    with pytest.raises(BundleError, match="expected the pair"):
        read_sb2(write_pkl(tmp_path / "a2c" / "N.pkl", ({"a": 1}, [], 3)))


def test_is_sb2_file_tells_sb2_from_sb3_and_others(tmp_path):
    data, params = a2c_model()
    assert is_sb2_file(write_pkl(tmp_path / "a2c" / "M.pkl", (data, params)))
    assert is_sb2_file(write_zip(tmp_path / "a2c" / "M.zip", data, by_name(params)))
    with zipfile.ZipFile(tmp_path / "sb3.zip", "w") as archive:
        archive.writestr("data", "{}")
        archive.writestr("policy.pth", b"")
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_sb2_file(tmp_path / "sb3.zip") and not is_sb2_file(tmp_path / "notes.txt")
    assert not is_sb2_file(tmp_path / "missing.pkl") and not is_sb2_file(tmp_path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"parameter_list": None}, "nor an SB2 .zip \\(data, parameters, parameter_list\\)"),
        ({"parameter_list": b'["model/pi_fc0/w:0", "model/missing:0"]'}, "which the archive does not hold"),
        ({"parameter_list": b'{"a": 1}'}, "should be a JSON list"),
        ({"data": b"not json"}, "'data' member is not JSON"),
    ],
)
def test_damaged_zip_members_are_refused(tmp_path, members, message):
    data, params = a2c_model()
    path = write_zip(tmp_path / "a2c" / "M.zip", data, by_name(params), members)
    with pytest.raises(BundleError, match=message):
        read_sb2(path)


def test_an_array_whose_header_lies_about_its_size_is_refused(tmp_path):
    import io

    data, params = a2c_model()
    buffer = io.BytesIO()
    np.savez(buffer, **by_name(params))
    inner = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    raw = {name: inner.read(name) for name in inner.namelist()}
    raw["model/pi_fc0/w:0.npy"] = raw["model/pi_fc0/w:0.npy"].replace(b"(4, 8)", b"(4000, 8000)")
    lying = io.BytesIO()
    with zipfile.ZipFile(lying, "w") as archive:
        for name, content in raw.items():
            archive.writestr(name, content)
    path = write_zip(tmp_path / "a2c" / "M.zip", data, by_name(params), {"parameters": lying.getvalue()})
    with pytest.raises(BundleError, match="its header claims shape"):
        read_sb2(path)
