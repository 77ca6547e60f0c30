"""Hostile and odd arguments to ``predict``: every backend refuses them alike, or acts alike (issue 10).

The numpy, onnx and torch backends share one validation (:class:`rlport.backends.predict.GraphPredictor`).
The differential test runs a table of odd inputs (NaN / infinite / fractional / out-of-range
discrete values, wrong dtypes, byte orders, layouts, ranks, empty batches, Python lists, dicts
with missing keys, bad masks, episode starts, states and ``deterministic`` flags) through all
three backends on a few small SB3 policy families and asserts that, for each input, either all
three give the same action or all raise the same rlport error.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "importers"))  # the shared SB3 model builders

import rlport  # noqa: E402
from rlport.backends.numpy import NumpyPolicy  # noqa: E402
from rlport.backends.onnx.export import export_onnx, onnx_model  # noqa: E402
from rlport.backends.onnx.runtime import OnnxPolicy  # noqa: E402
from rlport.backends.registry import BACKENDS, make_policy  # noqa: E402
from rlport.backends.torch.runtime import TorchPolicy  # noqa: E402
from rlport.bundle.bundle import Bundle  # noqa: E402
from rlport.bundle.spaces import BoxSpec, DiscreteSpec  # noqa: E402
from rlport.errors import ActionError, GraphError, ObservationError, RlportError, UnsupportedError  # noqa: E402
from rlport.graph.graph import Graph, GraphInput, Node  # noqa: E402
from sb3_models import OBS_SPACES, ModelSpec, SpacesEnv, make_model, sample_obs  # noqa: E402

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

BATCH = 3


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks: torch's thread pool only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- policy families ---------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A small SB3 model to export: how to build it, what it observes, and the space its bundle declares."""

    name: str
    build: Callable[[], Any]
    observation_space: spaces.Space
    declared: Any = None

    def __str__(self) -> str:
        return self.name


def _on(env: gym.Env | SpacesEnv, spec: ModelSpec) -> Callable[[], Any]:
    return lambda: make_model(spec, env=env)


_DICT_OBS = spaces.Dict(
    {"bits": spaces.MultiBinary(3), "choice": spaces.MultiDiscrete([2, 4]), "pos": spaces.Box(-2, 2, (2,))}
)

FAMILIES = [
    Family("ppo-cartpole", _on(gym.make("CartPole-v1"), ModelSpec("PPO", action="discrete")), spaces.Box(-4, 4, (4,))),
    Family("ppo-frozenlake", _on(gym.make("FrozenLake-v1"), ModelSpec("PPO", obs="discrete")), spaces.Discrete(16)),
    # SB3 cannot train on a start (it one-hot encodes the raw value): a Discrete(7) model, declared Discrete(7, start=2)
    Family(
        "ppo-discrete-start",
        _on(SpacesEnv(spaces.Discrete(7), spaces.Discrete(3)), ModelSpec("PPO")),
        spaces.Discrete(5, start=2),
        declared=DiscreteSpec(7, start=2),
    ),
    Family(
        "a2c-dict",
        _on(SpacesEnv(_DICT_OBS, spaces.Discrete(3)), ModelSpec("A2C", "MultiInputPolicy")),
        _DICT_OBS,
    ),
    Family(
        "recurrent-ppo",
        lambda: make_model(ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete")),
        spaces.Box(-3, 3, (6,)),
    ),
    Family(
        "maskable-ppo",
        lambda: make_model(ModelSpec("MaskablePPO", action="multidiscrete")),
        spaces.Box(-3, 3, (6,)),
    ),
    Family("sac", lambda: make_model(ModelSpec("SAC")), spaces.Box(-3, 3, (6,))),
    Family("ppo-cnn", lambda: make_model(ModelSpec("PPO", "CnnPolicy", obs="gray")), OBS_SPACES["gray"]),
]

FAMILY = {family.name: family for family in FAMILIES}
_POLICIES: dict[str, dict[str, Any]] = {}


def policies(family: Family) -> dict[str, Any]:
    """The family's bundle on every backend (built once per test session)."""
    if family.name not in _POLICIES:
        bundle = rlport.from_sb3(family.build(), probes=0, fingerprint=False, evaluate=0)
        if family.declared is not None:
            bundle = dataclasses.replace(bundle, observation_space=family.declared)
        _POLICIES[family.name] = {backend: _policy(backend, bundle) for backend in rlport.BACKENDS}
    return _POLICIES[family.name]


# ---- the table of odd inputs -------------------------------------------------------------


def _set_first(array: np.ndarray, value: Any, dtype: Any = None) -> np.ndarray:
    out = np.array(array, dtype=dtype if dtype is not None else array.dtype)
    out.reshape(-1)[0] = value
    return out


def _read_only(array: np.ndarray) -> np.ndarray:
    out = np.array(array)
    out.setflags(write=False)
    return out


def _strided(array: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous view."""
    return np.stack([array, array], axis=-1)[..., 0]


def _ragged(array: np.ndarray) -> Any:
    rows = array.tolist()
    return [rows, rows[:1]] if isinstance(rows, list) else [rows, [rows]]


LEAF_INPUTS: dict[str, Callable[[np.ndarray], Any]] = {
    "valid": lambda a: a,
    "python-list": lambda a: a.tolist(),
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "big-endian-float64": lambda a: a.astype(">f8"),
    "non-contiguous": _strided,
    "read-only": _read_only,
    "float64": lambda a: a.astype(np.float64),
    "float32": lambda a: a.astype(np.float32),
    "bool": lambda a: a.astype(bool),
    "uint8": lambda a: a.astype(np.uint8),
    "int32": lambda a: a.astype(np.int32),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "complex": lambda a: a.astype(np.complex64),
    "nan": lambda a: _set_first(a, np.nan, np.float64),
    "inf": lambda a: _set_first(a, np.inf, np.float64),
    "-inf": lambda a: _set_first(a, -np.inf, np.float32),
    "plus-half": lambda a: a.astype(np.float64) + 0.5,
    "minus-one": lambda a: _set_first(a, -1, np.int64),
    "too-large": lambda a: _set_first(a, 16, np.int64),
    "beyond-uint8": lambda a: _set_first(a, 300, np.int64),
    "huge-int": lambda a: _set_first(a, 2**62, np.int64),
    "uint64-huge": lambda a: _set_first(a, 2**64 - 1, np.uint64),
    "huge-float": lambda a: _set_first(a, 1e39, np.float64),
    "wrong-rank": lambda a: a[None, None],
    "empty-batch": lambda a: np.zeros((0, *np.shape(a)), dtype=a.dtype),
    "ragged": _ragged,
    "string": lambda a: "observation",
    "none": lambda a: None,
    "a-dict": lambda a: {"obs": a},
}


def _leaves(obs: Any) -> list[str | None]:
    return list(obs) if isinstance(obs, dict) else [None]


def _replace(obs: Any, key: str | None, value: Any) -> Any:
    if key is None:
        return value
    return {**obs, key: value}


def _observation_cases(family: Family) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each leaf input, on one observation and on a batch, one leaf at a time."""
    batch = sample_obs(family.observation_space, BATCH, seed=3)
    single = {k: v[0] for k, v in batch.items()} if isinstance(batch, dict) else batch[0]
    for what, obs in (("single", single), ("batch", batch)):
        for key in _leaves(obs):
            leaf = obs if key is None else obs[key]
            for name, make in LEAF_INPUTS.items():
                yield f"{what}:{key or 'obs'}:{name}", {"observation": _replace(obs, key, make(np.asarray(leaf)))}
    if isinstance(batch, dict):
        for key in batch:
            yield f"missing-key:{key}", {"observation": {k: v for k, v in batch.items() if k != key}}
        yield "extra-key", {"observation": {**batch, "extra": np.zeros(BATCH)}}
        yield "uneven-batches", {"observation": {**batch, next(iter(batch)): next(iter(batch.values()))[:1]}}
        yield "not-a-dict", {"observation": np.zeros(BATCH)}


ARGUMENT_INPUTS: dict[str, dict[str, Any]] = {
    "episode_start=yes": {"episode_start": "yes"},
    "episode_start=5": {"episode_start": 5},
    "episode_start=0.5": {"episode_start": np.full(BATCH, 0.5)},
    "episode_start=nan": {"episode_start": np.full(BATCH, np.nan)},
    "episode_start-short": {"episode_start": np.ones(BATCH - 1, bool)},
    "episode_start-2d": {"episode_start": np.ones((1, BATCH), bool)},
    "episode_start-big-endian": {"episode_start": np.ones(BATCH, ">i4")},
    "episode_start-object": {"episode_start": np.ones(BATCH, object)},
    "episode_start-complex": {"episode_start": np.ones(BATCH, complex)},
    "episode_start-list": {"episode_start": [True] * BATCH},
    "state=5": {"state": 5},
    "state=string": {"state": "state"},
    "state-one-array": {"state": (np.zeros(3),)},
    "state-three-arrays": {"state": (np.zeros(3),) * 3},
    "state-dict": {"state": {"h": 1}},
    "mask-too-long": {"action_masks": np.ones((BATCH, 10), bool)},
    "mask-too-short": {"action_masks": np.ones(5, bool)},
    "mask-str": {"action_masks": np.full((BATCH, 9), "yes")},
    "mask-object": {"action_masks": np.ones((BATCH, 9), object)},
    "mask-complex": {"action_masks": np.ones((BATCH, 9), complex)},
    "mask-ragged": {"action_masks": [[True] * 9, [True]]},
    "mask-float": {"action_masks": np.ones((BATCH, 9), np.float32)},
    "mask-big-endian": {"action_masks": np.ones((BATCH, 9), ">i2")},
    "mask-flat": {"action_masks": np.ones(BATCH * 9, bool)},
    "mask-blocks-all": {"action_masks": np.zeros((BATCH, 9), bool)},
    "deterministic=yes": {"deterministic": "yes"},
    "deterministic-array": {"deterministic": np.array([1])},
    "deterministic-ambiguous": {"deterministic": np.array([1, 1])},
}


def _state_cases(state: tuple[np.ndarray, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    h, c = state
    yield "state-valid", {"state": state}
    yield "state-list", {"state": [h, c]}
    yield "state-float64", {"state": (h.astype(np.float64), c)}
    yield "state-big-endian", {"state": (h.astype(">f4"), c.astype(">f8"))}
    yield "state-non-contiguous", {"state": (_strided(h), c)}
    yield "state-read-only", {"state": (_read_only(h), _read_only(c))}
    yield "state-nested-lists", {"state": (h.tolist(), c.tolist())}
    yield "state-nan", {"state": (_set_first(h, np.nan), c)}
    yield "state-overflows-float32", {"state": (_set_first(h, 1e300, np.float64), c)}
    yield "state-strings", {"state": (h.astype(str), c)}
    yield "state-objects", {"state": (h.astype(object), c)}
    yield "state-complex", {"state": (h.astype(complex), c)}
    yield "state-wrong-shape", {"state": (h[:, :1], c)}
    yield "state-transposed", {"state": (h.T, c)}
    yield "state-flat", {"state": (h.reshape(-1), c)}
    yield "state-none-inside", {"state": (None, c)}
    yield "state-ragged", {"state": ([[1.0], [1.0, 2.0]], c)}


def _cases(family: Family) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from _observation_cases(family)
    batch = sample_obs(family.observation_space, BATCH, seed=4)
    for name, kwargs in ARGUMENT_INPUTS.items():
        yield name, {"observation": batch, **kwargs}
    numpy_policy = policies(family)["numpy"]
    if numpy_policy.is_recurrent:
        _, state = numpy_policy.predict(batch, deterministic=True)
        for name, kwargs in _state_cases(state):
            yield name, {"observation": batch, **kwargs}


# ---- the differential test ---------------------------------------------------------------


def _outcome(policy: Any, kwargs: dict[str, Any]) -> Any:
    """``(action, state)`` from ``predict`` (deterministic unless told), or the rlport error it raised."""
    kwargs = {"deterministic": True, **kwargs}
    try:
        with np.errstate(all="ignore"):
            return policy.predict(**kwargs)
    except RlportError as exc:
        return exc


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind == "f":
        return bool(np.allclose(a, b, rtol=0, atol=1e-5, equal_nan=True))
    return bool(np.array_equal(a, b))


def _disagreement(outcomes: dict[str, Any], recurrent: bool) -> str | None:
    """Why the backends' outcomes differ, or None when they agree."""
    reference = outcomes["numpy"]
    for backend, outcome in outcomes.items():
        if isinstance(reference, RlportError) or isinstance(outcome, RlportError):
            if type(outcome) is not type(reference):
                return f"{backend} gave {outcome!r}, numpy gave {reference!r}"
            continue
        action, state = outcome
        if not _same(action, reference[0]):
            return f"{backend} acted {np.asarray(action).tolist()}, numpy {np.asarray(reference[0]).tolist()}"
        if recurrent and not all(map(_same, state, reference[1])):
            return f"{backend}'s next state differs from numpy's"
    return None


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_every_backend_refuses_or_accepts_each_odd_input_alike(family):
    backends = policies(family)
    disagreements, refused, accepted = [], set(), 0
    for name, kwargs in _cases(family):
        outcomes = {backend: _outcome(policy, kwargs) for backend, policy in backends.items()}
        why = _disagreement(outcomes, backends["numpy"].is_recurrent)
        if why is not None:
            disagreements.append(f"{name}: {why}")
        elif isinstance(outcomes["numpy"], RlportError):
            refused.add(type(outcomes["numpy"]).__name__)
        else:
            accepted += 1
    assert not disagreements, "\n".join(disagreements)
    assert accepted and "ObservationError" in refused  # the table exercises both outcomes


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_every_backend_refuses_the_same_odd_inputs_when_sampling(family):
    """Draws differ between torch and numpy; the refusals must not."""
    backends = policies(family)
    disagreements = []
    for name, kwargs in _cases(family):
        if "deterministic" in kwargs:
            continue
        errors = {backend: _outcome(policy, {**kwargs, "deterministic": False}) for backend, policy in backends.items()}
        kinds = {
            backend: type(e).__name__ if isinstance(e, RlportError) else "an action" for backend, e in errors.items()
        }
        if len(set(kinds.values())) > 1:
            disagreements.append(f"{name}: {kinds}")
    assert not disagreements, "\n".join(disagreements)


# ---- one argument at a time, with the message ----------------------------------------------


@pytest.fixture(scope="module", params=["numpy", "onnx", "torch"])
def recurrent(request):
    return policies(FAMILY["recurrent-ppo"])[request.param]


@pytest.fixture(scope="module", params=["numpy", "onnx", "torch"])
def maskable(request):
    return policies(FAMILY["maskable-ppo"])[request.param]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"episode_start": "yes"}, r"episode_start: expected 3 booleans .*found str of dtype <U3"),
        ({"episode_start": [0.5, 0, 1]}, r"episode_start: expected 3 booleans .*found the value 0\.5"),
        ({"episode_start": np.ones(2)}, r"episode_start has shape \(2,\), expected 3 booleans"),
        ({"state": 5}, r"state: expected None or the tuple of 2 arrays .*found int"),
        ({"state": (np.zeros((1, 3, 8)),)}, r"state: expected None or the tuple of 2 arrays .*found 1 arrays"),
        ({"state": (np.zeros((1, 3, 8)), np.zeros((1, 2, 8)))}, r"state\[1\] has shape \(1, 2, 8\), expected \(1, 3, "),
        ({"state": (np.full((1, 3, 8), "x"), np.zeros((1, 3, 8)))}, r"state\[0\]: expected an array .*dtype <U1"),
        ({"state": (np.full((1, 3, 8), np.nan), np.zeros((1, 3, 8)))}, r"state\[0\] holds NaN or infinity"),
        ({"deterministic": np.ones(2)}, r"deterministic: expected a bool, found ndarray"),
    ],
    ids=[
        "start-str",
        "start-half",
        "start-short",
        "state-int",
        "state-one",
        "state-shape",
        "state-str",
        "state-nan",
        "d",
    ],
)
def test_a_bad_recurrent_argument_is_an_observation_error_naming_it(recurrent, kwargs, message):
    obs = sample_obs(FAMILY["recurrent-ppo"].observation_space, 3, seed=5)
    with pytest.raises(ObservationError, match=message):
        recurrent.predict(obs, **kwargs)


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        (np.ones((3, 8), bool), r"action_masks has shape \(3, 8\), expected booleans of shape \(3, 9\)"),
        (np.full((3, 9), "yes"), r"action_masks: expected booleans .*dtype <U3"),
        (np.ones((3, 9), object), r"action_masks: expected booleans .*dtype object"),
        (np.ones((3, 9), complex), r"action_masks: expected booleans .*dtype complex128"),
        ([[True] * 9, [True]], r"action_masks: expected booleans .*not one numeric array"),
    ],
    ids=["shape", "str", "object", "complex", "ragged"],
)
def test_a_bad_mask_is_an_observation_error_naming_it(maskable, masks, message):
    obs = sample_obs(FAMILY["maskable-ppo"].observation_space, 3, seed=6)
    with pytest.raises(ObservationError, match=message):
        maskable.predict(obs, action_masks=masks, deterministic=True)


def test_deterministic_is_read_as_a_bool_as_sb3_does(recurrent):
    obs = sample_obs(FAMILY["recurrent-ppo"].observation_space, 3, seed=7)
    expected, _ = recurrent.predict(obs, deterministic=True)
    for flag in ("yes", 1, np.array([1]), [0]):
        action, _ = recurrent.predict(obs, deterministic=flag)
        if bool(flag):
            np.testing.assert_array_equal(action, expected)


# ---- observations of discrete leaves ---------------------------------------------------------


@pytest.mark.parametrize("backend", rlport.BACKENDS)
@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (np.nan, r"observation: nan in row 0 is outside the space \(expected an integer in 0\.\.15\)"),
        (1.5, r"1\.5 in row 0 is outside the space"),
        (-1, r"-1 in row 0 is outside the space"),
        (16, r"16 in row 0 is outside the space"),
        (np.array([3, 16]), r"16 in row 1 is outside the space"),
        (np.inf, r"inf in row 0 is outside"),
        ("3", r"observation: expected a numeric array, found str of dtype <U1"),
        (3 + 0j, r"found complex of dtype complex128"),
        (np.array([], np.int64), r"observation: found an empty batch \(0,\)"),
    ],
    ids=["nan", "half", "negative", "n", "batch", "inf", "str", "complex", "empty"],
)
def test_a_discrete_observation_outside_its_space_is_refused_on_every_backend(backend, obs, message):
    policy = policies(FAMILY["ppo-frozenlake"])[backend]
    with pytest.raises(ObservationError, match=message):
        policy.predict(obs, deterministic=True)


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_integral_floats_and_bools_are_valid_discrete_observations(backend):
    policy = policies(FAMILY["ppo-frozenlake"])[backend]
    expected, _ = policy.predict(np.array([0, 1, 15]), deterministic=True)
    actions, _ = policy.predict(np.array([0.0, 1.0, 15.0]), deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert policy.predict(True, deterministic=True)[0] == expected[1]


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_a_discrete_space_with_a_start_takes_only_the_values_sb3_can_encode(backend):
    """Discrete(7, start=2): SB3 one-hot encodes 0..6 as is, so only 2..6 are in the space and encodable."""
    policy = policies(FAMILY["ppo-discrete-start"])[backend]
    actions, _ = policy.predict(np.arange(2, 7), deterministic=True)
    assert actions.shape == (5,)
    for value in (1, 7, 8):
        with pytest.raises(ObservationError, match=rf"{value} in row 0 is outside the space .*2\.\.6.*ignoring"):
            policy.predict(value, deterministic=True)


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_a_multi_discrete_or_multi_binary_leaf_is_checked_per_column(backend):
    policy = policies(FAMILY["a2c-dict"])[backend]
    obs = sample_obs(FAMILY["a2c-dict"].observation_space, 2, seed=8)
    policy.predict(obs, deterministic=True)
    choice = obs["choice"].copy()
    choice[1, 1] = 4  # column 1 takes 0..3
    with pytest.raises(ObservationError, match=r"observation\['choice'\]: 4 in row 1 column \[1\] .*0\.\.3"):
        policy.predict({**obs, "choice": choice}, deterministic=True)
    with pytest.raises(ObservationError, match=r"observation\['bits'\]: 2 in row 0 column \[2\] .*0\.\.1"):
        policy.predict({**obs, "bits": np.array([[0, 1, 2], [0, 0, 0]])}, deterministic=True)
    with pytest.raises(ObservationError, match=r"lacks key 'pos'"):
        policy.predict({"bits": obs["bits"], "choice": obs["choice"]}, deterministic=True)


# ---- byte order, layout -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_big_endian_observations_act_as_native_ones(backend):
    policy = policies(FAMILY["ppo-cartpole"])[backend]
    obs = sample_obs(FAMILY["ppo-cartpole"].observation_space, 4, seed=9).astype(np.float32)
    expected, _ = policy.predict(obs, deterministic=True)
    for dtype in (">f4", ">f8"):
        np.testing.assert_array_equal(policy.predict(obs.astype(dtype), deterministic=True)[0], expected)
        assert policy.predict(obs[0].astype(dtype), deterministic=True)[0] == expected[0]


# ---- non-finite actions -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_a_nan_observation_into_a_box_policy_never_returns_a_nan_action(backend):
    policy = policies(FAMILY["sac"])[backend]
    obs = np.full(6, np.nan, np.float32)
    with pytest.raises(ActionError, match="NaN or infinite action; nothing was returned"):
        policy.predict(obs, deterministic=True)
    with pytest.raises(ActionError):
        policy.predict(np.stack([np.zeros(6, np.float32), obs]), deterministic=True)


def _linear_bundle(weight: np.ndarray, action_space: Any, op: str = "identity") -> Bundle:
    """obs (2,) -> linear -> ``op``: a tiny hand-made graph."""
    nodes = (Node("linear", ("obs",), ("y",), {"weight": "w"}), Node(op, ("y",), ("action",)))
    graph = Graph((GraphInput("obs", "observation"),), "action", policy=nodes)
    return Bundle(BoxSpec.create(-1.0, 1.0, (2,)), action_space, graph, {"w": weight})


def _policy(backend: str, bundle: Bundle) -> Any:
    """The bundle on ``backend``, built as ``rlport.load(..., backend=)`` builds it (every registered backend)."""
    return make_policy(BACKENDS[backend], bundle)


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_nan_weights_never_give_a_nan_action(backend):
    weight = np.array([[1.0, 0.0], [np.nan, 0.0]], np.float32)
    with pytest.raises(ActionError, match="NaN or infinite action"):
        _policy(backend, _linear_bundle(weight, BoxSpec.create(-1.0, 1.0, (2,)))).predict(np.ones(2, np.float32))


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_an_infinite_action_is_refused_for_one_observation_and_for_a_batch(backend):
    weight = np.array([[3e38, 3e38], [0.0, 1.0]], np.float32)  # 3e38 + 3e38 overflows float32
    policy = _policy(backend, _linear_bundle(weight, BoxSpec.create(-1.0, 1.0, (2,))))
    obs = np.zeros((20, 2), np.float32)
    assert policy.predict(obs, deterministic=True)[0].shape == (20, 2)
    obs[7] = 1.0
    with np.errstate(over="ignore"), pytest.raises(ActionError):
        policy.predict(obs, deterministic=True)
    with np.errstate(over="ignore"), pytest.raises(ActionError):
        policy.predict(obs[7], deterministic=True)


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_a_discrete_action_outside_the_action_space_is_refused(backend):
    """A graph whose argmax spans 3 actions for a Discrete(2) space: action 2 is never returned."""
    weight = np.eye(3, 2, dtype=np.float32)[::-1].copy()  # obs (a, b) -> logits (0, b, a)
    policy = _policy(backend, _linear_bundle(weight, DiscreteSpec(2), op="categorical"))
    assert policy.predict(np.array([0.0, 1.0], np.float32), deterministic=True)[0] == 1
    for obs in (np.array([1.0, 0.0], np.float32), np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)):
        with pytest.raises(ActionError, match=r"the action 2, outside its action space's 0\.\.1"):
            policy.predict(obs, deterministic=True)


def test_an_action_space_start_is_part_of_the_discrete_range():
    """Discrete(3, start=1) and an argmax over 3 logits: action 0 is outside the space."""
    weight = np.eye(3, 2, dtype=np.float32)[::-1].copy()
    with pytest.raises(ActionError, match=r"the action 0, outside its action space's 1\.\.3"):
        NumpyPolicy(_linear_bundle(weight, DiscreteSpec(3, start=1), op="categorical"))  # refused by the dry run


# ---- hostile graphs: ONNX export and the torch backend ------------------------------------------

NUMERIC_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
NUMERIC_DTYPES += ["float16", "float32", "float64"]


def _graph_bundle(nodes: tuple[Node, ...], tensors: dict[str, np.ndarray] | None = None) -> Bundle:
    """obs (4,) -> ``nodes`` (ending in value ``y``) -> linear (2 outputs) -> clip to [-1, 1]."""
    tail = (
        Node("linear", ("y",), ("z",), {"weight": "w"}),
        Node("clip_to_bounds", ("z",), ("action",), {"low": "lo", "high": "hi"}),
    )
    graph = Graph((GraphInput("obs", "observation"),), "action", policy=nodes + tail)
    weights = {
        "w": np.arange(8, dtype=np.float32).reshape(2, 4) / 8,
        "lo": -np.ones(2, np.float32),
        "hi": np.ones(2, np.float32),
    }
    return Bundle(
        BoxSpec.create(-1.0, 1.0, (4,)), BoxSpec.create(-1.0, 1.0, (2,)), graph, {**weights, **(tensors or {})}
    )


def _cast_bundle(dtype: Any) -> Bundle:
    cast = (
        Node("cast", ("obs",), ("c",), attrs={"dtype": dtype}),
        Node("cast", ("c",), ("y",), attrs={"dtype": "float32"}),
    )
    return _graph_bundle(cast)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_a_cast_to_every_numeric_dtype_runs_alike_on_every_backend(dtype):
    bundle = _cast_bundle(dtype)
    obs = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0]], np.float32)  # exact in every dtype
    expected, _ = NumpyPolicy(bundle).predict(obs, deterministic=True)
    for backend in ("onnx", "torch"):
        np.testing.assert_allclose(_policy(backend, bundle).predict(obs, deterministic=True)[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    "dtype", ["complex64", "U5", "object", "bfloat16", "datetime64", "foo", 5, None, ["f4"], "f4,f4", "x" * 500]
)
def test_a_cast_to_any_other_dtype_is_an_unsupported_error_naming_it(dtype):
    bundle = _cast_bundle(dtype)
    shown = repr(dtype)[:100]
    # a dtype name that is no string is refused by the graph's attribute types, before either backend looks
    typed = r"op 'cast': attribute 'dtype' must be a dtype name"
    with pytest.raises(
        (UnsupportedError, GraphError), match=rf"op 'cast' .*cannot be written to ONNX; supported: bool, int8|{typed}"
    ) as info:
        onnx_model(bundle)
    assert shown in str(info.value) and len(str(info.value)) < 600
    with pytest.raises(
        (UnsupportedError, GraphError), match=rf"dtype .* has no torch equivalent here; supported: bool, int8|{typed}"
    ) as info:
        TorchPolicy(bundle)
    assert shown in str(info.value) and len(str(info.value)) < 600


def _node(op: str, **attrs: Any) -> tuple[Node, ...]:
    return (Node(op, ("obs",), ("y",), attrs=attrs),)


HOSTILE_ATTRIBUTES = {
    "leaky-relu-huge-slope": _node("leaky_relu", negative_slope=10**400),
    "softmax-huge-axis": _node("softmax", axis=10**30),
    "softmax-axis-out-of-range": _node("softmax", axis=5),
    "clip-to-a-string": _node("clip", min="a", max=1),
    "clip-huge": _node("clip", min=-(10**400), max=1),
    "divide-by-a-string": _node("divide", divisor="x"),
    "threshold-dict": _node("threshold", threshold=0.0, value={"a": 1}),
    "hardtanh-huge": _node("hardtanh", min_val=-(10**400), max_val=1.0),
    "reshape-strings": _node("reshape", shape=["a"]),
    "reshape-huge": _node("reshape", shape=[10**30]),
    "reshape-floats": _node("reshape", shape=[4.0]),
    "reshape-nested": _node("reshape", shape=[[4]]),
    "reshape-not-a-list": _node("reshape", shape=4),
    "mean-axis-string": _node("mean", axis="x"),
    "mean-huge-axis": _node("mean", axis=10**30),
}


@pytest.mark.parametrize("nodes", HOSTILE_ATTRIBUTES.values(), ids=HOSTILE_ATTRIBUTES.keys())
def test_hostile_attributes_are_rlport_errors_in_onnx_export_and_on_torch(nodes):
    """Never a bare OverflowError / TypeError / numpy AxisError from onnx_model, onnxruntime or torch."""
    bundle = _graph_bundle(nodes)
    op = nodes[0].op
    typed = rf"op '{op}': attribute '\w+' must be"  # a value of the wrong JSON type: refused by the graph itself
    with pytest.raises(GraphError, match=rf"op '{op}' \(outputs \['y'\]\) cannot run on a dummy batch|{typed}"):
        onnx_model(bundle)
    with pytest.raises((GraphError, UnsupportedError)):
        OnnxPolicy(bundle)
    with pytest.raises(GraphError, match=rf"op '{op}' \(outputs \['y'\]\) failed|{typed}"):
        TorchPolicy(bundle)


def test_a_graph_onnxruntime_refuses_is_a_graph_error(tmp_path):
    bundle = _graph_bundle(_node("reshape", shape=[-5]))  # numpy reads -5 as "the rest"; ONNX refuses it
    with pytest.raises(GraphError, match="onnxruntime refuses the graph exported from the bundle"):
        OnnxPolicy(bundle)
    with pytest.raises(GraphError, match="not valid ONNX"):
        export_onnx(bundle, tmp_path / "policy.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_a_graph_that_fails_only_on_some_batch_sizes_is_a_graph_error(backend):
    """Statistics of shape (2, 4) broadcast against a batch of 2 (the dry run) but not of 3."""
    nodes = (Node("normalize", ("obs",), ("y",), {"mean": "m", "var": "v"}),)
    bundle = _graph_bundle(nodes, {"m": np.zeros((2, 4)), "v": np.ones((2, 4))})
    if backend == "c":  # compiled from the statically inferred shapes: refused before anything runs
        with pytest.raises(GraphError, match="does not broadcast"):
            _policy(backend, bundle)
        return
    policy = _policy(backend, bundle)
    assert policy.predict(np.zeros((2, 4), np.float32), deterministic=True)[0].shape == (2, 2)
    with pytest.raises(GraphError, match="failed on inputs of shapes"):
        policy.predict(np.zeros((3, 4), np.float32), deterministic=True)
