"""Class names a bundle records reach a class only through rlport's table (issue 10, item 2).

A bundle's ``source`` names classes (``policy_class``, ``policy_kwargs`` entries, ``*_class``
hyperparameters) and anyone can re-sign an edited manifest. ``to_sb3`` used to check only a
prefix and then follow attributes, so ``stable_baselines3.common.save_util.os.abort`` resolved to
``os.abort`` and SB3 called it. Now a name must be a key of
:data:`rlport.frameworks.sb3.classes.CLASSES` for its key's role, checked by name before anything
is imported. Every attack here runs for real: ``os.abort`` & co. are replaced by markers (so that
a regression shows as a recorded call, not a dead test process), and a module the hostile name
points into must stay out of ``sys.modules``.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import pytest

from isolation import BLOCKER
from rlport.errors import UnsupportedError
from rlport.frameworks.sb3.classes import (
    _TABLE,
    CLASSES,
    KEY_ROLES,
    MAX_CLASS_NAME_LENGTH,
    MAX_SETTINGS_DEPTH,
    check_class_name,
    check_recorded_classes,
)

SENTINEL = "stable_baselines3.common.env_checker"  # a real SB3 module that to_sb3 itself never imports
HOSTILE = [
    "stable_baselines3.common.save_util.os.abort",
    "stable_baselines3.common.save_util.os.system",
    "stable_baselines3.common.save_util.os.fork",
    f"{SENTINEL}.check_env",  # a function of SB3: refused before its module is imported
    "torch.nn.modules.activation.os.system",
    "torch.nn.modules.activation.ReLU.__init__",  # attribute walking beyond the class
    "torch.optim.adam.torch.load",
    "pickle.loads",
    "builtins.eval",
    "torch.nn.functional.relu",  # a function, not a class
    "torch.nn.Module",  # a class of the right base, but no activation: the table lists concrete classes only
    "stable_baselines3.common.policies.BasePolicy",  # abstract: no policy SB3 builds
    "stable_baselines3.common.nonexistent_mod.Foo",
    "",
]
NON_STRINGS = [5, 1.5, True, ["torch.nn.ReLU"], {"name": "torch.nn.ReLU"}]
KEYS = [*KEY_ROLES, "my_custom_class"]


def _short(value) -> str:
    """A readable test id for a hostile value (the 10 MB name included)."""
    if not isinstance(value, str):
        return type(value).__name__
    return (value.rsplit(".", 2)[-1][:30] + (f"-{len(value)}" if len(value) > 100 else "")) or "empty"


# ---- the by-name check on its own (no torch) ----------------------------------------------


def test_every_table_name_passes_for_its_role_and_no_name_has_two_roles():
    for role, modules in _TABLE.items():
        for module, names in modules.items():
            for name in names:
                assert CLASSES[f"{module}.{name}"] == role, f"{module}.{name} listed for two roles"
    for name, role in CLASSES.items():
        keys = [key for key, r in KEY_ROLES.items() if r == role]
        assert keys, f"no recorded key takes the role {role}"
        for key in [*keys, "my_custom_class"]:  # an unknown *_class key takes any class of the table
            assert check_class_name(name, key, "x") == name
        assert len(name) <= MAX_CLASS_NAME_LENGTH


def test_names_that_real_sb3_files_record_are_in_the_table():
    recorded = {
        "policy_class": [
            "stable_baselines3.common.policies.ActorCriticPolicy",  # PPO, A2C, TRPO (SB3 1.0 to 2.x)
            "stable_baselines3.td3.policies.TD3Policy",  # TD3, DDPG
            "stable_baselines3.sac.policies.MultiInputPolicy",  # HER (SB3 1.1)
            "sb3_contrib.qrdqn.policies.QRDQNPolicy",
            "sb3_contrib.ars.policies.ARSPolicy",
            "sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy",
            "sb3_contrib.common.maskable.policies.MaskableActorCriticPolicy",
            "stable_baselines3.ppo.policies.MlpPolicy",  # an alias, as users write it
        ],
        "activation_fn": ["torch.nn.modules.activation.ReLU", "torch.nn.modules.activation.Tanh", "torch.nn.ELU"],
        "optimizer_class": [
            "torch.optim.rmsprop.RMSprop",
            "torch.optim.adam.Adam",
            "stable_baselines3.common.sb2_compat.rmsprop_tf_like.RMSpropTFLike",
        ],  # fmt: skip
        "features_extractor_class": ["stable_baselines3.common.torch_layers.NatureCNN"],
        "replay_buffer_class": ["stable_baselines3.her.her_replay_buffer.HerReplayBuffer"],
        "rollout_buffer_class": ["stable_baselines3.common.buffers.RolloutBuffer"],
    }
    for key, names in recorded.items():
        for name in names:
            assert check_class_name(name, key, "x") == name


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("name", HOSTILE, ids=_short)
def test_hostile_names_are_refused_by_name(name, key):
    with pytest.raises(UnsupportedError, match=rf"x: {key} is ") as caught:
        check_class_name(name, key, "x")
    message = str(caught.value)
    assert "rlport imports only" in message
    assert "to_sb3" in message  # says how to pass the class instead


def test_a_table_class_in_another_role_is_refused():
    with pytest.raises(UnsupportedError, match=r"activation_fn is torch.optim.adam.Adam, a torch optimizer, not a"):
        check_class_name("torch.optim.adam.Adam", "activation_fn", "x")
    with pytest.raises(UnsupportedError, match="an SB3 replay buffer, not an SB3 / sb3-contrib rollout buffer"):
        check_class_name("stable_baselines3.common.buffers.ReplayBuffer", "rollout_buffer_class", "x")


@pytest.mark.parametrize("value", NON_STRINGS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("key", KEYS)
def test_values_that_are_not_names_are_refused(value, key):
    message = rf"{key} must be the dotted name of .*found a value of type {type(value).__name__}"
    with pytest.raises(UnsupportedError, match=message):
        check_class_name(value, key, "x")


def test_an_overlong_name_is_refused_with_a_short_message():
    name = "torch.nn." + "A" * 10_000_000
    with pytest.raises(UnsupportedError, match=r"a name of 10,000,009 characters") as caught:
        check_class_name(name, "activation_fn", "x")
    assert len(str(caught.value)) < 600
    with pytest.raises(UnsupportedError) as caught:
        check_recorded_classes({"net_arch": [], "x" * 1_000_000 + "_class": "os.system"}, {}, None, "x")
    assert len(str(caught.value)) < 800  # the hostile key is cut too


def test_recorded_classes_are_checked_in_every_field():
    good = {"activation_fn": "torch.nn.modules.activation.ReLU", "optimizer_class": "torch.optim.adam.Adam",
            "features_extractor_kwargs": {"features_dim": 8}, "net_arch": [{"pi": [8], "vf": [8]}]}  # fmt: skip
    hyper = {"rollout_buffer_class": "stable_baselines3.common.buffers.RolloutBuffer", "gamma": 0.9}
    check_recorded_classes(good, hyper, "stable_baselines3.common.policies.ActorCriticPolicy", "f.zip")
    check_recorded_classes(None, None, None, "f.zip")
    check_recorded_classes({"activation_fn": None}, {"replay_buffer_class": None}, None, "f.zip")  # "not set"
    cases = [
        ({**good, "activation_fn": "builtins.eval"}, hyper, None, r"f.zip \(policy_kwargs\): activation_fn is"),
        (
            {**good, "features_extractor_kwargs": {"activation_fn": "os.system"}},
            hyper,
            None,
            r"policy_kwargs\['features_extractor_kwargs'\]\): activation_fn is os.system.*"
            r"policy_kwargs=\{'features_extractor_kwargs': \.\.\.\}",
        ),
        (
            {**good, "net_arch": [{"pi": [8], "vf_class": "pickle.loads"}]},
            hyper,
            None,
            r"policy_kwargs\['net_arch'\]\[0\]\): vf_class is pickle.loads",
        ),
        (
            good,
            {**hyper, "rollout_buffer_class": "os.fork"},
            None,
            r"\(hyperparameters\): rollout_buffer_class is os.fork.*to_sb3\(bundle, rollout_buffer_class=YourClass\)",
        ),
        (good, {**hyper, "policy_class": "os.abort"}, None, r"\(hyperparameters\): policy_class is os.abort"),
        (good, hyper, "stable_baselines3.common.save_util.os.system", r"f.zip: policy_class is .*export the model"),
        ([("activation_fn", "os.system")], hyper, None, "policy_kwargs must be a dict, found a list"),
        (good, "gamma=0.9", None, "hyperparameters must be a dict, found a str"),
    ]
    for kwargs, hyperparameters, policy_class, message in cases:
        with pytest.raises(UnsupportedError, match=message):
            check_recorded_classes(kwargs, hyperparameters, policy_class, "f.zip")


def test_deep_nesting_is_refused_without_recursing_through_it():
    deep: dict = {}
    inner = deep
    for _ in range(100_000):  # far past Python's recursion limit
        inner["features_extractor_kwargs"] = inner = {}
    with pytest.raises(UnsupportedError, match=f"nest deeper than {MAX_SETTINGS_DEPTH} levels"):
        check_recorded_classes(deep, {}, None, "f.zip")
    nested: dict = {"activation_fn": "os.system"}
    for _ in range(MAX_SETTINGS_DEPTH):
        nested = {"features_extractor_kwargs": nested}
    with pytest.raises(UnsupportedError, match="activation_fn is os.system"):  # at the limit: walked and checked
        check_recorded_classes(nested, {}, None, "f.zip")
    with pytest.raises(UnsupportedError, match="nest deeper"):
        check_recorded_classes({"net_arch": [nested]}, {}, None, "f.zip")


def test_the_table_needs_neither_torch_nor_sb3():
    code = """
        import json, sys
        from rlport.frameworks.sb3.classes import check_class_name, check_recorded_classes
        from rlport.errors import UnsupportedError
        check_recorded_classes({"activation_fn": "torch.nn.Tanh"}, {}, "stable_baselines3.ppo.MlpPolicy", "x")
        try:
            check_class_name("stable_baselines3.common.save_util.os.system", "activation_fn", "x")
            refused = False
        except UnsupportedError:
            refused = True
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "stable_baselines3", "sb3_contrib"))
        print(json.dumps({"refused": refused, "loaded": loaded}))
    """
    proc = subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"refused": True, "loaded": []}


def test_every_class_the_zoo_sample_records_is_in_the_table(zoo_sample):
    from rlport.frameworks.sb3.importer import import_sb3

    zips = sorted(zoo_sample.glob("*/*/*.zip"))
    assert zips
    for path in zips:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = import_sb3(path, probes=0, fingerprint=False).source
        check_recorded_classes(source["policy_kwargs"], source["hyperparameters"], source["policy_class"], str(path))


# ---- to_sb3: refused before any import, nothing called -------------------------------------


@pytest.fixture(scope="module")
def ppo_bundle():
    import torch
    from stable_baselines3 import PPO

    import rlport

    torch.manual_seed(0)
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, n_steps=64, batch_size=64, device="cpu")
    return rlport.from_sb3(model, env_id="CartPole-v1", fingerprint=False, evaluate=0, probes=0, include_critic=True)


class Called(Exception):
    """What a marker raises: code a hostile name points to was run."""


@pytest.fixture
def markers(monkeypatch):
    """``os.abort`` & co. replaced by markers that record the call; SENTINEL removed from ``sys.modules``."""
    calls: list[str] = []

    def marker(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise Called(name)

        return called

    for module, attr in [(os, "abort"), (os, "system"), (os, "fork"), (pickle, "loads"), (builtins, "eval")]:
        monkeypatch.setattr(module, attr, marker(f"{module.__name__}.{attr}"))
    monkeypatch.delitem(sys.modules, SENTINEL, raising=False)
    return calls


def _edited(bundle, field: str, value):
    """A copy of ``bundle`` whose source records ``value`` in ``field`` (``"policy_kwargs.activation_fn"``...)."""
    source = copy.deepcopy(bundle.source)
    *parents, key = field.split(".")
    target = source
    for parent in parents:
        target = target.setdefault(parent, {})
    target[key] = value
    return dataclasses.replace(bundle, source=source)


FIELDS = [
    "policy_class",
    "policy_kwargs.activation_fn",
    "policy_kwargs.features_extractor_class",
    "policy_kwargs.optimizer_class",
    "policy_kwargs.features_extractor_kwargs.activation_fn",
    "hyperparameters.rollout_buffer_class",
    "hyperparameters.replay_buffer_class",
    "hyperparameters.policy_class",
    "hyperparameters.my_custom_class",
]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("name", [*HOSTILE, "torch.nn." + "A" * 10_000_000, *NON_STRINGS], ids=_short)
def test_to_sb3_refuses_hostile_names_in_every_field_before_importing_them(ppo_bundle, markers, field, name):
    import rlport

    with pytest.raises(UnsupportedError) as caught:
        rlport.to_sb3(_edited(ppo_bundle, field, name))
    message = str(caught.value)
    assert f"{field.rsplit('.', 1)[-1]} " in message, message  # names the key
    assert len(message) < 800
    assert markers == []
    assert SENTINEL not in sys.modules


def test_to_sb3_refuses_a_hostile_name_saved_in_a_file(ppo_bundle, markers, tmp_path):
    import rlport

    path = _edited(ppo_bundle, "policy_kwargs.activation_fn", HOSTILE[0]).save(tmp_path / "hostile.rlp")
    with pytest.raises(UnsupportedError, match=r"activation_fn is stable_baselines3.common.save_util.os.abort, which"):
        rlport.to_sb3(path)
    assert markers == []


def test_classes_the_caller_passes_replace_refused_names(ppo_bundle, markers):
    import torch
    from stable_baselines3.common.buffers import RolloutBuffer

    import rlport

    bundle = _edited(ppo_bundle, "policy_kwargs.activation_fn", "stable_baselines3.common.save_util.os.abort")
    bundle = _edited(bundle, "hyperparameters.rollout_buffer_class", "builtins.eval")
    model = rlport.to_sb3(bundle, policy_kwargs={"activation_fn": torch.nn.Tanh}, rollout_buffer_class=RolloutBuffer)
    assert model.policy.activation_fn is torch.nn.Tanh and model.rollout_buffer_class is RolloutBuffer
    assert markers == []


def test_table_names_resolve_to_classes_of_their_role():
    """Every entry exists in the installed torch / SB3 / sb3-contrib and derives from its role's base."""
    from rlport.frameworks.sb3.settings import resolve_class as _class

    for name, role in CLASSES.items():
        key = next(key for key, r in KEY_ROLES.items() if r == role)
        assert isinstance(_class(name, key), type), name


@pytest.mark.parametrize("replacement", [lambda: None, dict, 42], ids=["function", "class of another base", "int"])
def test_the_resolved_object_must_be_a_class_of_the_role(replacement, monkeypatch):
    import torch.nn.modules.activation

    from rlport.frameworks.sb3.settings import resolve_class as _class

    monkeypatch.setattr(torch.nn.modules.activation, "ReLU", replacement)
    with pytest.raises(UnsupportedError, match=r"activation_fn torch.nn.modules.activation.ReLU is .*not a subclass"):
        _class("torch.nn.modules.activation.ReLU", "activation_fn")
