"""from_torch: each head, each observation space, and every refusal (op, path, head, probes)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rlport
from rlport.bundle.bundle import Bundle
from rlport.errors import UnsupportedError
from rlport.frameworks.torch.export import from_torch, observation_tensor

BOX = gym.spaces.Box(-2.0, 2.0, (5,), np.float32)
ACT_BOX = gym.spaces.Box(np.array([-1.0, -2.0, 0.0], np.float32), np.array([1.0, 3.0, 0.5], np.float32))


def observations(space: gym.Space, count: int = 32, seed: int = 7):
    """Fresh observations (not the probes' seed)."""
    space = gym.spaces.Dict(space.spaces) if isinstance(space, gym.spaces.Dict) else space
    space.seed(seed)
    samples = [space.sample() for _ in range(count)]
    if isinstance(samples[0], dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return np.stack(samples)


def round_trip(bundle: Bundle, tmp_path) -> Bundle:
    path = tmp_path / "policy.rlp"
    bundle.save(path)
    return Bundle.load(path)


def act(bundle: Bundle, obs, backend: str = "numpy") -> np.ndarray:
    return rlport.load(bundle, backend=backend).predict(obs, deterministic=True)[0]


class StateDependent(nn.Module):
    """Returns (mean, log_std), both computed from the observation."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, 16), nn.Tanh())
        self.mean, self.log_std = nn.Linear(16, n_out), nn.Linear(16, n_out)

    def forward(self, x):
        h = self.body(x)
        return self.mean(h) * 3.0, self.log_std(h).clamp(-5.0, 1.0)


class ParamLogStd(nn.Module):
    """Returns (mean, log_std), log_std a parameter broadcast over the batch."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Linear(n_in, n_out)
        self.log_std = nn.Parameter(torch.linspace(-1.0, 0.5, n_out))

    def forward(self, x):
        mean = self.net(x) * 3.0
        return mean, self.log_std.expand_as(mean)


def mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, n_out))


def expected(head: str, outputs, space) -> np.ndarray:
    """The head's deterministic action computed here from the module's outputs, in numpy."""
    first = (outputs[0] if isinstance(outputs, tuple) else outputs).detach().numpy().astype(np.float64)
    if head in ("categorical", "argmax"):
        if isinstance(space, gym.spaces.MultiDiscrete):
            splits = np.split(first, np.cumsum(space.nvec)[:-1], axis=-1)
            return np.stack([s.argmax(-1) for s in splits], axis=-1)
        return first.argmax(-1)
    if head in ("squashed_gaussian", "tanh"):
        squashed = np.tanh(first) if head == "squashed_gaussian" else first
        return space.low + 0.5 * (squashed + 1.0) * (space.high - space.low)
    return np.clip(first, space.low, space.high)


HEADS = [
    pytest.param("categorical", lambda: mlp(5, 4), gym.spaces.Discrete(4), id="categorical"),
    pytest.param("categorical", lambda: mlp(5, 7), gym.spaces.MultiDiscrete([3, 4]), id="categorical-multidiscrete"),
    pytest.param("argmax", lambda: mlp(5, 3), gym.spaces.Discrete(3), id="argmax"),
    pytest.param("gaussian", lambda: StateDependent(5, 3), ACT_BOX, id="gaussian-state-log-std"),
    pytest.param("gaussian", lambda: ParamLogStd(5, 3), ACT_BOX, id="gaussian-param-log-std"),
    pytest.param("squashed_gaussian", lambda: StateDependent(5, 3), ACT_BOX, id="squashed-gaussian"),
    pytest.param("deterministic", lambda: nn.Sequential(mlp(5, 3), nn.Hardtanh(-4, 4)), ACT_BOX, id="deterministic"),
    pytest.param("tanh", lambda: nn.Sequential(mlp(5, 3), nn.Tanh()), ACT_BOX, id="tanh"),
]


@pytest.mark.parametrize(("head", "make", "action_space"), HEADS)
def test_head_acts_as_the_module(head, make, action_space, tmp_path):
    torch.manual_seed(0)
    module = make()
    bundle = round_trip(from_torch(module, BOX, action_space, head=head), tmp_path)
    obs = observations(BOX)
    with torch.no_grad():
        want = expected(head, module(torch.as_tensor(obs)), action_space)
    for backend in ("numpy", "torch"):
        got = act(bundle, obs, backend)
        if head in ("categorical", "argmax"):
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert bundle.source["head"] == head and bundle.probes is not None


def test_sampling_uses_the_state_independent_log_std(tmp_path):
    """A parameter log_std becomes the gaussian op's parameter, with the module's own name and values."""
    module = ParamLogStd(5, 3)
    bundle = from_torch(module, BOX, ACT_BOX, head="gaussian")
    (node,) = [n for n in bundle.graph.nodes() if n.op == "gaussian"]
    np.testing.assert_array_equal(bundle.tensors[node.params["log_std"]], module.log_std.detach().numpy())
    assert node.params["log_std"] == "log_std"


def test_dict_and_discrete_observations(tmp_path):
    """A Dict space: each key flattened (Discrete one-hot) and concatenated in the space's key order."""
    space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2, 2), np.float32), "mode": gym.spaces.Discrete(3)})
    torch.manual_seed(1)
    module = mlp(7, 4)
    bundle = round_trip(from_torch(module, space, gym.spaces.Discrete(4), head="categorical"), tmp_path)
    obs = observations(space)
    pos = obs["pos"].reshape(len(obs["mode"]), -1)
    by_hand = np.concatenate([np.eye(3, dtype=np.float32)[obs["mode"]], pos], axis=1)  # gymnasium sorts keys
    np.testing.assert_array_equal(observation_tensor(space, obs).numpy(), by_hand)
    with torch.no_grad():
        want = module(torch.as_tensor(by_hand)).argmax(-1).numpy()
    np.testing.assert_array_equal(act(bundle, obs), want)


def test_images_as_stored_with_scaling_inside_the_module(tmp_path):
    space = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    torch.manual_seed(2)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(36, 2))

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x / 255.0)

    bundle = round_trip(from_torch(Scaled(), space, gym.spaces.Discrete(2), head="categorical"), tmp_path)
    assert [n.op for n in bundle.graph.preprocess] == ["cast"]
    assert "div" in [n.op for n in bundle.graph.policy]
    obs = observations(space)
    with torch.no_grad():
        want = conv(torch.as_tensor(obs).float() / 255.0).argmax(-1).numpy()
    np.testing.assert_array_equal(act(bundle, obs), want)


def test_obs_normalization_runs_before_the_module(tmp_path):
    norm = {"mean": np.linspace(-1, 1, 5), "var": np.linspace(0.5, 2.0, 5), "clip": 3.0}
    module = nn.Sequential(nn.Linear(5, 3), nn.Tanh())
    bundle = round_trip(from_torch(module, BOX, ACT_BOX, head="tanh", obs_normalization=norm), tmp_path)
    assert bundle.graph.preprocess[0].op == "normalize"
    obs = observations(BOX)
    normalised = np.clip((obs - norm["mean"]) / np.sqrt(norm["var"] + 1e-8), -3.0, 3.0).astype(np.float32)
    with torch.no_grad():
        want = expected("tanh", module(torch.as_tensor(normalised)), ACT_BOX)
    np.testing.assert_allclose(act(bundle, obs), want, atol=1e-5)
    with pytest.raises(UnsupportedError, match="unknown keys"):
        from_torch(module, BOX, ACT_BOX, head="tanh", obs_normalization={**norm, "scale": 2})
    with pytest.raises(UnsupportedError, match="'mean' and 'var'"):
        from_torch(module, BOX, ACT_BOX, head="tanh", obs_normalization={"mean": 0})


def test_training_mode_and_batch_norm_are_captured_in_eval_mode():
    module = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    module[1].running_mean.uniform_(-1, 1)
    module[1].running_var.uniform_(0.5, 2)
    module.train()
    bundle = from_torch(module, BOX, gym.spaces.Discrete(2), head="categorical")
    assert module.training  # given back as it was
    module.eval()
    obs = observations(BOX)
    with torch.no_grad():
        np.testing.assert_array_equal(act(bundle, obs), module(torch.as_tensor(obs)).argmax(-1).numpy())


# ---- refusals --------------------------------------------------------------------------------


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 4), Abs())

    def forward(self, x):
        return self.body(x)


def test_unsupported_aten_op_is_named_with_its_module_path():
    with pytest.raises(UnsupportedError) as info:
        from_torch(Nested(), BOX, gym.spaces.Discrete(4), head="categorical")
    message = str(info.value)
    assert "aten.abs" in message and "'body.1'" in message and "Abs" in message
    assert "linear" in message  # the supported ops are listed


def test_recurrent_modules_are_refused():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.core = nn.GRU(5, 4, batch_first=True)

        def forward(self, x):
            return self.core(x[:, None])[0][:, 0]

    with pytest.raises(UnsupportedError, match="GRU at 'core' is recurrent"):
        from_torch(Recurrent(), BOX, gym.spaces.Discrete(4), head="categorical")


def test_data_dependent_branching_is_refused_with_torch_reason():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(5, 2)

        def forward(self, x):
            return self.net(x) if x.sum() > 0 else -self.net(x)

    with pytest.raises(UnsupportedError, match="torch.export cannot capture it"):
        from_torch(Branchy(), BOX, gym.spaces.Discrete(2), head="categorical")


def test_a_bundle_that_acts_otherwise_than_the_module_is_refused():
    """The module acts differently when exported than when run: the probes catch it."""

    class TwoFaced(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(5, 3)

        def forward(self, x):
            return self.net(x) if torch.compiler.is_exporting() else -self.net(x)

    with pytest.raises(UnsupportedError, match="does not act as the torch module"):
        from_torch(TwoFaced(), BOX, gym.spaces.Discrete(3), head="categorical")


@pytest.mark.parametrize(
    ("head", "module", "action_space", "match"),
    [
        ("softmax", mlp(5, 2), gym.spaces.Discrete(2), "head 'softmax' is not known"),
        ("categorical", mlp(5, 3), ACT_BOX, "acts in a Discrete or MultiDiscrete action space, not Box"),
        ("gaussian", mlp(5, 3), gym.spaces.Discrete(3), "acts in a Box action space"),
        ("gaussian", mlp(5, 3), ACT_BOX, "needs the module to return 2 tensor"),
        ("categorical", mlp(5, 3), gym.spaces.Discrete(4), r"the action space needs \(batch, 4\)"),
        ("tanh", mlp(5, 2), gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), "must be finite"),
    ],
    ids=["unknown-head", "categorical-on-box", "gaussian-on-discrete", "one-output", "wrong-width", "infinite-bounds"],
)
def test_heads_that_do_not_fit_are_refused(head, module, action_space, match):
    with pytest.raises(UnsupportedError, match=match):
        from_torch(module, BOX, action_space, head=head)


def test_not_a_module_is_refused():
    with pytest.raises(UnsupportedError, match="needs a torch.nn.Module"):
        from_torch(lambda x: x, BOX, gym.spaces.Discrete(2), head="categorical")


def test_constant_output_is_refused():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(torch.zeros(2))

        def forward(self, x):
            return self.logits.expand(x.shape[0], 2)

    with pytest.raises(UnsupportedError, match="does not depend on the observation"):
        from_torch(Constant(), BOX, gym.spaces.Discrete(2), head="categorical")
