"""Hostile bundles (issue 10): valid digests, crafted content. Each one must be refused at load with
rlport's own error, before it allocates what it claims or acts outside its action space.

Every bundle here is re-signed (digests recomputed), as anyone can do: the digests prove integrity,
not authorship. The files are made by the tests, from the hand-made bundles of conftest.py.
"""

from __future__ import annotations

import re
import sys
import tracemalloc

import numpy as np
import pytest

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.errors import MAX_MESSAGE, BundleError, GraphError, RlportError, SpaceError, UnsafeFileError
from rlport.graph import infer


def _write(crafter, manifest, members):
    return crafter.write(manifest, members)


def _load_peak(path) -> tuple[Exception | None, int]:
    """Load ``path``; return the error it raised and the peak of memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        Bundle.load(path)
        error = None
    except RlportError as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


# ---- memory bounded by the file, not by what it claims ------------------------------------------


def test_a_dict_space_of_many_huge_boxes_is_refused_before_allocating(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    box = {"type": "box", "shape": [4096, 4096], "dtype": "float32", "low": -1.0, "high": 1.0}
    manifest["observation_space"] = {"type": "dict", "spaces": [{"key": f"k{i}", "space": box} for i in range(40)]}
    error, peak = _load_peak(_write(crafter, manifest, members))
    assert isinstance(error, SpaceError) and "over the limits of 16777216 elements" in str(error)
    assert peak < 32 << 20  # the 40 boxes would take 5 GiB of bounds


def test_a_dict_space_with_too_many_leaves_or_levels_is_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    leaf = {"type": "discrete", "n": 2}
    manifest["observation_space"] = {"type": "dict", "spaces": [{"key": f"k{i}", "space": leaf} for i in range(1025)]}
    with pytest.raises(SpaceError, match="1025 leaves"):
        Bundle.load(_write(crafter, manifest, members))
    nested = leaf
    for _ in range(40):
        nested = {"type": "dict", "spaces": [{"key": "k", "space": nested}]}
    manifest["observation_space"] = nested
    with pytest.raises(SpaceError, match="nests more than 16"):
        Bundle.load(_write(crafter, manifest, members))


def test_concatenating_a_big_box_many_times_is_refused_before_running(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["observation_space"] = {"type": "box", "shape": [1 << 22], "dtype": "float32", "low": -1, "high": 1}
    manifest["graph"]["preprocess"] = [{"op": "concat", "inputs": ["obs"] * 8, "outputs": ["big"]}]
    manifest["graph"]["policy"][0]["inputs"] = ["big"]
    error, peak = _load_peak(_write(crafter, manifest, members))
    assert isinstance(error, GraphError), error
    assert "over the limit of 16777216 elements per batch row" in str(error)
    assert peak < 200 << 20  # the bounds themselves (2 x 16 MiB); running the concat would take 512 MiB


def test_one_hot_with_many_categories_needs_no_square_matrix(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("dict-concat"))
    n = 50_000
    mode = {"type": "discrete", "n": n}
    manifest["observation_space"]["spaces"][1]["space"] = mode
    manifest["graph"]["preprocess"][0]["attrs"]["n"] = n
    manifest["graph"]["preprocess"] = manifest["graph"]["preprocess"][:1] + [
        {"op": "concat", "inputs": ["obs.pos", "mode_1h"], "outputs": ["features"]}
    ]
    # the first linear layer takes the 2 + n features; only feature 2 + 7 (mode 7) and the position matter
    weights = np.zeros((4, 2 + n), np.float32)
    weights[:, :2] = 1.0
    weights[:, 2 + 7] = 5.0
    tensors = dict(Bundle.load(crafter.write(*crafter.members_of(make_bundle("dict-concat")))).tensors)
    tensors["pi.0.weight"] = weights
    members["weights.safetensors"] = crafter.safetensors_bytes(tensors)
    error, peak = _load_peak(_write(crafter, manifest, members))
    assert error is None, error
    assert peak < 64 << 20  # an n x n identity would be 9 GiB
    policy = NumpyPolicy(Bundle.load(crafter.write(manifest, members)))
    seven, _ = policy.predict({"pos": np.zeros(2, np.float32), "mode": 7}, deterministic=True)
    other, _ = policy.predict({"pos": np.zeros(2, np.float32), "mode": 8}, deterministic=True)
    assert seven.shape == () and seven in (0, 1) and other in (0, 1)
    with pytest.raises(RlportError, match=r"0\.\.49999"):
        policy.predict({"pos": np.zeros(2, np.float32), "mode": n}, deterministic=True)


def test_a_one_hot_wider_than_the_value_limit_is_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("dict-concat"))
    manifest["graph"]["preprocess"][0]["attrs"]["n"] = 1 << 25
    with pytest.raises(GraphError, match="attribute 'n' must be an integer in 1..16777216"):
        Bundle.load(_write(crafter, manifest, members))


def test_the_work_of_a_graph_is_bounded(make_bundle, crafter, monkeypatch):
    path = _write(crafter, *crafter.members_of(make_bundle("image-cnn")))
    Bundle.load(path)
    monkeypatch.setattr(infer, "MAX_GRAPH_FLOPS", 100)  # the cnn takes 2 x 4 x 4 x 27 + 32 x 4 = 560
    with pytest.raises(GraphError, match="multiply-adds per batch row"):
        Bundle.load(path)


# ---- the action stays in its space ------------------------------------------------------------


def _more_logits(manifest, members, crafter, make_bundle, width: int) -> None:
    tensors = dict(Bundle.load(crafter.write(*crafter.members_of(make_bundle("discrete-mlp")))).tensors)
    tensors["pi.2.weight"] = np.ones((width, 8), np.float32)
    tensors["pi.2.bias"] = np.arange(width, dtype=np.float32)  # argmax: the last
    members["weights.safetensors"] = crafter.safetensors_bytes(tensors)


def test_a_discrete_policy_with_more_logits_than_actions_is_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    _more_logits(manifest, members, crafter, make_bundle, 64)
    with pytest.raises(GraphError, match=r"can reach \[0, 63\], outside the action space's bounds \[0, 2\]"):
        Bundle.load(_write(crafter, manifest, members))


def test_a_discrete_start_the_graph_ignores_is_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["action_space"]["start"] = 5
    with pytest.raises(GraphError, match=r"can reach \[0, 2\], outside the action space's bounds \[5, 7\]"):
        Bundle.load(_write(crafter, manifest, members))


@pytest.mark.parametrize(("n", "epsilon", "ok"), [(3, 0.5, True), (1000, 0.5, False), (1000, 0.0, True)])
def test_greedy_exploration_must_stay_in_the_space(make_bundle, crafter, n, epsilon, ok):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["graph"]["policy"][-1] = {"op": "greedy", "inputs": ["logits"], "outputs": ["action"],
                                       "attrs": {"n": n, "epsilon": epsilon}}  # fmt: skip
    path = _write(crafter, manifest, members)
    if ok:
        Bundle.load(path)
    else:
        with pytest.raises(GraphError, match=r"can reach \[0, 999\]"):
            Bundle.load(path)


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        ("object", "cannot cast to 'object'"),
        ("complex128", "cannot cast to 'complex128'"),
        ("float32", "the action space needs an integer dtype"),
    ],
)
def test_a_final_cast_to_an_unusable_dtype_is_refused(make_bundle, crafter, dtype, message):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["graph"]["policy"][-1]["outputs"] = ["picked"]
    manifest["graph"]["postprocess"] = [{"op": "cast", "inputs": ["picked"], "outputs": ["action"],
                                         "attrs": {"dtype": dtype}}]  # fmt: skip
    with pytest.raises(GraphError, match=message):
        Bundle.load(_write(crafter, manifest, members))


def test_a_cast_that_wraps_around_is_refused_and_one_that_fits_is_not(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["graph"]["policy"][-1]["outputs"] = ["picked"]
    manifest["graph"]["postprocess"] = [{"op": "cast", "inputs": ["picked"], "outputs": ["action"],
                                         "attrs": {"dtype": "uint8"}}]  # fmt: skip
    Bundle.load(_write(crafter, manifest, members))  # 0..2 fits in uint8
    manifest["graph"]["postprocess"][0]["inputs"] = ["logits"]  # any float, cast: anything
    manifest["graph"]["policy"] = manifest["graph"]["policy"][:-1]
    with pytest.raises(GraphError, match=r"can reach \[0, 255\]|shape"):
        Bundle.load(_write(crafter, manifest, members))


def test_bound_tensors_wider_or_narrower_than_the_action_space_are_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("box-squashed"))
    tensors = dict(Bundle.load(crafter.write(manifest, members)).tensors)
    tensors["space.action.high"] = np.array([3.0, 1.0], np.float32)
    members["weights.safetensors"] = crafter.safetensors_bytes(tensors)
    with pytest.raises(GraphError, match="outside the action space's bounds"):
        Bundle.load(_write(crafter, manifest, members))
    tensors["space.action.high"] = np.array([1.0, 1.0], np.float32)
    members["weights.safetensors"] = crafter.safetensors_bytes(tensors)
    with pytest.raises(GraphError, match="bound 'high' .* differs from the action space's high"):
        Bundle.load(_write(crafter, manifest, members))


def test_a_box_with_low_above_high_is_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("box-squashed"))
    manifest["action_space"]["low"] = [3.0, 0.0]
    with pytest.raises(SpaceError, match="low <= high"):
        Bundle.load(_write(crafter, manifest, members))


# ---- finite numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_refused(make_bundle, crafter, value):
    manifest, members = crafter.members_of(make_bundle("box-squashed"))
    tensors = dict(Bundle.load(crafter.write(manifest, members)).tensors)
    tensors["mu.weight"] = tensors["mu.weight"].copy()
    tensors["mu.weight"][0, 0] = value
    members["weights.safetensors"] = crafter.safetensors_bytes(tensors)
    with pytest.raises(GraphError, match=r"tensor 'mu.weight' \(linear weight\) holds 1 NaN or infinite"):
        Bundle.load(_write(crafter, manifest, members))


def _normalized(make_bundle, crafter, var, epsilon=1e-8):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    tensors = dict(Bundle.load(crafter.write(manifest, members)).tensors)
    tensors["vecnormalize.obs.mean"] = np.zeros(4, np.float64)
    tensors["vecnormalize.obs.var"] = np.asarray(var, np.float64)
    members["weights.safetensors"] = crafter.safetensors_bytes(tensors)
    manifest["graph"]["preprocess"] = [{
        "op": "normalize", "inputs": ["obs"], "outputs": ["normed"],
        "params": {"mean": "vecnormalize.obs.mean", "var": "vecnormalize.obs.var"},
        "attrs": {"epsilon": epsilon, "clip": 10.0},
    }]  # fmt: skip
    manifest["graph"]["policy"][0]["inputs"] = ["normed"]
    return _write(crafter, manifest, members)


def test_healthy_normalisation_statistics_load(make_bundle, crafter):
    Bundle.load(_normalized(make_bundle, crafter, [1.0, 2.0, 0.0, 4.0]))


@pytest.mark.parametrize(
    ("var", "epsilon", "message"),
    [
        ([1.0, np.nan, 1.0, 1.0], 1e-8, "NaN or infinite"),
        ([1.0, -2.0, 1.0, 1.0], 1e-8, "variance must be >= 0"),
        ([1.0, 1.0, 1.0, 1.0], -1.0, r"'epsilon' must be a number in \[0.0, inf\]"),
        ([1.0, 0.0, 1.0, 1.0], 0.0, r"variance \+ epsilon > 0"),
    ],
)
def test_broken_normalisation_statistics_are_refused(make_bundle, crafter, var, epsilon, message):
    with pytest.raises(GraphError, match=message):
        Bundle.load(_normalized(make_bundle, crafter, var, epsilon))


def test_a_float_beyond_float64_in_the_manifest_is_refused(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("box-squashed"))
    text = crafter.canonical({**manifest, "members": {}}).replace(b'"provenance":{', b'"provenance":{"x":1e999,')
    members_entry = {n: {"sha256": crafter.sha256(d), "size": len(d)} for n, d in members.items()}
    manifest_bytes = crafter.canonical({**manifest, "members": members_entry})
    manifest_bytes = manifest_bytes.replace(b'"provenance":{', b'"provenance":{"x":1e999,')
    assert b"1e999" in text
    with pytest.raises(BundleError, match="too large for a float64"):
        Bundle.load(crafter.write(manifest_bytes, members))


# ---- messages and env wrappers ----------------------------------------------------------------


def test_a_huge_op_name_gives_a_short_message(make_bundle, crafter):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["graph"]["policy"][1]["op"] = "x" * 10_000_000
    with pytest.raises(GraphError) as info:
        Bundle.load(_write(crafter, manifest, members))
    assert len(str(info.value)) <= MAX_MESSAGE and "unknown op 'xxxx" in str(info.value)


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [
        ({"name": "frame_stack", "kwargs": {"n_stack": 1_000_000_000}}, r"n_stack must be an integer in 1..64"),
        ({"name": "frame_stack", "kwargs": {"n_stack": 0}}, r"n_stack must be an integer in 1..64"),
        ({"name": "frame_stack", "kwargs": {"n_stack": 4.5}}, r"n_stack must be an integer"),
        ({"name": "time_limit", "kwargs": {"max_episode_steps": "10"}}, "max_episode_steps must be an integer"),
        ({"name": "time_feature", "kwargs": {"max_steps": 100, "evil": 1}}, "takes .* not 'evil'"),
        ({"name": "x" * 1000, "kwargs": {}}, "a name of 1 to 256 characters"),
    ],
)
def test_wrapper_arguments_are_checked_at_load(make_bundle, crafter, wrapper, message):
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["env"]["wrappers"] = [wrapper]
    with pytest.raises(BundleError, match=message):
        Bundle.load(_write(crafter, manifest, members))


# ---- env ids never import modules --------------------------------------------------------------


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """A module on the path that writes a marker file when imported (what an attacker's module would do)."""
    name = "rlport_marker_module_for_tests"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name, marker


def test_an_env_id_from_a_file_never_imports_its_module(marker_module):
    pytest.importorskip("gymnasium")
    from rlport.envs import make_env

    name, marker = marker_module
    spec = EnvSpec(f"{name}:CartPole-v1")
    with pytest.raises(UnsafeFileError, match=f"--env-module {name}"):
        make_env(spec)
    with pytest.raises(UnsafeFileError, match="would make gymnasium import"):
        make_env(spec, env_module="some_other_module")
    assert not marker.exists()
    make_env(spec, env_module=name).close()  # named by the user: imported, then CartPole-v1 made
    assert marker.exists()


def test_an_env_id_the_user_types_is_theirs(marker_module):
    pytest.importorskip("gymnasium")
    from rlport.envs import make_env

    name, marker = marker_module
    make_env(EnvSpec("CartPole-v1"), env_id=f"{name}:CartPole-v1").close()
    assert marker.exists()


def test_run_and_verify_refuse_a_module_env_id(make_bundle, crafter, marker_module):
    pytest.importorskip("gymnasium")
    from rlport.cli.main import main
    from rlport.verify.checks import verify

    name, marker = marker_module
    manifest, members = crafter.members_of(make_bundle("discrete-mlp"))
    manifest["env"]["id"] = f"{name}:CartPole-v1"
    path = _write(crafter, manifest, members)
    with pytest.raises(UnsafeFileError):
        verify(str(path), episodes=1)
    assert main(["run", str(path), "--episodes", "1"]) == 2
    assert not marker.exists()
    # named: the module is imported and the env made (the hand-made policy has 3 actions, CartPole 2: exit 1)
    assert main(["run", str(path), "--episodes", "1", "--env-module", name]) == 1
    assert marker.exists()


def test_to_sb3_refuses_a_module_env_id_unless_named(tmp_path, marker_module):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    import rlport

    name, marker = marker_module
    bundle = rlport.from_sb3(PPO("MlpPolicy", "CartPole-v1", n_steps=64), env_id="CartPole-v1",
                             fingerprint=False, evaluate=0)  # fmt: skip
    bundle.env = EnvSpec(f"{name}:CartPole-v1")
    bundle.save(tmp_path / "b.rlp")
    with pytest.raises(UnsafeFileError, match=f"--env-module {name}"):
        rlport.to_sb3(tmp_path / "b.rlp")
    assert not marker.exists()
    model = rlport.to_sb3(tmp_path / "b.rlp", env_module=name, allow_missing_critic=True)
    assert marker.exists() and model.get_env() is not None


# ---- what FORMAT.md 4 says to reject (issue 12, item 10) -----------------------------------------


def _edit(crafter, kind, make_bundle, edit):
    manifest, members = crafter.members_of(make_bundle(kind))
    edit(manifest["graph"])
    return _write(crafter, manifest, members)


@pytest.mark.parametrize(
    ("kind", "where", "attrs", "message"),
    [
        ("image-cnn", ("preprocess", 0), {"divisor": "255"}, r"0 \(divide\): attribute 'divisor' must be a number"),
        ("dict-concat", ("preprocess", 0), {"n": 16.0}, r"attribute 'n' must be an integer, found 16\.0"),
        ("image-cnn", ("policy", 0), {"stride": [4, 4, 4]}, r"attribute 'stride' must be a list of 2 integers"),
        ("image-cnn", ("policy", 0), {"padding": [1.0, 1]}, r"attribute 'padding' must be a list of 2 integers"),
        ("recurrent-lstm", ("policy", 0), {"hidden_size": 4.0}, "'hidden_size' must be a positive integer"),
    ],
    ids=["divisor-string", "n-float", "stride-triple", "padding-float", "hidden-size-float"],
)
def test_a_required_or_list_attribute_of_the_wrong_json_type_is_refused(make_bundle, crafter, kind, where, attrs,
                                                                        message):  # fmt: skip
    def edit(graph):
        graph[where[0]][where[1]]["attrs"].update(attrs)

    with pytest.raises(GraphError, match=message):
        Bundle.load(_edit(crafter, kind, make_bundle, edit))


def test_a_gaussian_without_its_log_std_is_refused_at_load(make_bundle, crafter):
    def edit(graph):
        graph["policy"][1].pop("params")

    with pytest.raises(GraphError, match=r"node 1 \(gaussian\): a gaussian needs its log_std"):
        Bundle.load(_edit(crafter, "box-squashed", make_bundle, edit))


@pytest.mark.parametrize(
    ("index", "field", "message"),
    [
        (0, {"shape": [3]}, r"graph input 'obs': an input of role 'observation' takes no field\(s\) \['shape'\]"),
        (1, {"key": ["h"]}, r"graph input 'lstm_h': an input of role 'state' takes no field\(s\) \['key'\]"),
        (3, {"size": 2}, r"an input of role 'episode_start' takes no field\(s\) \['size'\] .*; it takes: none"),
    ],
    ids=["observation-with-shape", "state-with-key", "episode-start-with-size"],
)
def test_an_input_with_a_field_of_another_role_is_refused(make_bundle, crafter, index, field, message):
    def edit(graph):
        graph["inputs"][index].update(field)

    with pytest.raises(GraphError, match=message):
        Bundle.load(_edit(crafter, "recurrent-lstm", make_bundle, edit))


@pytest.mark.parametrize("alias", ["float", "<f4", "f4", "single", "float_"])
def test_dtype_names_are_the_exact_numpy_names(make_bundle, crafter, alias):
    def state(graph):
        graph["inputs"][1]["dtype"] = alias

    def cast(graph):
        graph["preprocess"] = [{"op": "cast", "inputs": ["obs"], "outputs": ["x"], "attrs": {"dtype": alias}}]
        graph["policy"][0]["inputs"][0] = "x"

    with pytest.raises(GraphError, match="a state's dtype must be float16, float32 or float64"):
        Bundle.load(_edit(crafter, "recurrent-lstm", make_bundle, state))
    with pytest.raises(GraphError, match=f"cannot cast to '{re.escape(alias)}'"):
        Bundle.load(_edit(crafter, "recurrent-lstm", make_bundle, cast))
    manifest, members = crafter.members_of(make_bundle("box-squashed"))
    manifest["action_space"]["dtype"] = alias
    with pytest.raises(SpaceError, match="is not the name of a numpy bool, integer or float dtype"):
        Bundle.load(_write(crafter, manifest, members))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_an_lstm_state_declared_other_than_float32_is_refused(make_bundle, crafter, dtype):
    def edit(graph):
        graph["inputs"][2]["dtype"] = dtype

    with pytest.raises(GraphError, match=rf"state 'lstm_c': its next value 'lstm_c_out' .* float32, but .* {dtype}"):
        Bundle.load(_edit(crafter, "recurrent-lstm", make_bundle, edit))
