"""Write synthetic SB2 model files as stable-baselines 2.x wrote them, without SB2, gym or TensorFlow.

Stand-in classes are registered under SB2's and gym's module names while pickling (:func:`sb2_names`), so
the standard pickler writes the very opcodes SB2 files hold: the policy class and ``RunningMeanStd`` as
globals, gym spaces as ``NEWOBJ`` + ``BUILD`` of their ``__dict__``, numpy arrays through ``_reconstruct``.
Schedules are pickled by value with the installed cloudpickle (modern function records); the older
records of the RL Zoo's files (``_fill_function``/``_make_skel_func``) come from :func:`old_cloudpickle_function`.

Example:
    >>> path = write_pkl(tmp_path / "a2c" / "CartPole-v1.pkl", a2c_model())   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import pickle
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "sb2_names", "stand_in", "box", "discrete", "dict_space", "policy_class", "running_mean_std", "a2c_model",
    "sac_model", "her_model", "write_pkl", "write_zip", "write_obs_rms", "old_cloudpickle_function", "Payload",
    "A2C_KEYS", "A2C_NAMES", "by_name", "sac_model",
]  # fmt: skip

_CLASSES: dict[str, type] = {}


def stand_in(dotted: str) -> type:
    """A class named ``dotted`` (``"gym.spaces.box.Box"``), picklable by that name inside :func:`sb2_names`."""
    if dotted not in _CLASSES:
        module, name = dotted.rsplit(".", 1)
        _CLASSES[dotted] = type(name, (), {"__module__": module, "__qualname__": name})
    return _CLASSES[dotted]


@contextlib.contextmanager
def sb2_names():
    """Make the stand-ins findable by their names while pickling: in a new module (parents too) where the
    module does not exist, as a temporary attribute where it does (``cloudpickle.cloudpickle``); then undo it."""
    with contextlib.suppress(ImportError):
        import cloudpickle  # noqa: F401 - a real module, to add to rather than to shadow
    added_modules: list[str] = []
    added_attributes: list[tuple[types.ModuleType, str]] = []
    for dotted, cls in _CLASSES.items():
        module = dotted.rsplit(".", 1)[0]
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added_modules.append(name)
        if not hasattr(sys.modules[module], cls.__name__):
            setattr(sys.modules[module], cls.__name__, cls)
            added_attributes.append((sys.modules[module], cls.__name__))
    try:
        yield
    finally:
        for module, name in added_attributes:
            delattr(module, name)
        for name in added_modules:
            sys.modules.pop(name, None)


def _instance(dotted: str, **state: Any) -> Any:
    obj = object.__new__(stand_in(dotted))
    obj.__dict__.update(state)
    return obj


def box(low: Any, high: Any, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    """A gym 0.1x Box as SB2 pickled it (``low``, ``high``, ``shape``, ``dtype`` in its ``__dict__``)."""
    dtype = np.dtype(dtype)
    return _instance("gym.spaces.box.Box", low=np.full(shape, low, dtype), high=np.full(shape, high, dtype),
                     shape=tuple(shape), dtype=dtype)  # fmt: skip


def discrete(n: int) -> Any:
    """A gym 0.1x Discrete."""
    return _instance("gym.spaces.discrete.Discrete", n=n, shape=(), dtype=np.dtype(np.int64))


def dict_space(**spaces: Any) -> Any:
    """A gym 0.1x Dict (keys sorted, as gym sorted them)."""
    return _instance("gym.spaces.dict.Dict", spaces=dict(sorted(spaces.items())), shape=None, dtype=None)


def policy_class(dotted: str = "stable_baselines.common.policies.MlpPolicy") -> type:
    """An SB2 policy class, pickled as a global by its name."""
    return stand_in(dotted)


def running_mean_std(mean: Any, var: Any, count: float = 1000.0) -> Any:
    """``stable_baselines.common.running_mean_std.RunningMeanStd`` with its statistics."""
    return _instance("stable_baselines.common.running_mean_std.RunningMeanStd", mean=np.asarray(mean, np.float64),
                     var=np.asarray(var, np.float64), count=count)  # fmt: skip


A2C_KEYS = {"gamma": 0.99, "n_steps": 5, "vf_coef": 0.25, "ent_coef": 0.0, "max_grad_norm": 0.5,
            "learning_rate": 0.0007, "alpha": 0.99, "epsilon": 1e-05, "lr_schedule": "linear",
            "verbose": 0}  # fmt: skip
"""What SB2's ``A2C.save`` writes besides the policy and spaces (stable_baselines/a2c/a2c.py)."""


def a2c_model(obs_dim: int = 4, n_actions: int = 2, hidden: int = 8, seed: int = 0) -> tuple[dict, list]:
    """``(data, params)`` of an A2C MlpPolicy with ``net_arch=[dict(pi=[hidden], vf=[hidden])]``: params in
    ``get_parameter_list()`` order (pi_fc0, vf_fc0, vf, pi, q; kernels (in, out))."""
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> list[np.ndarray]:
        return [rng.normal(0, 0.5, (n_in, n_out)).astype(np.float32), rng.normal(0, 0.1, n_out).astype(np.float32)]

    data = {**A2C_KEYS, "policy": policy_class(), "observation_space": box(-10.0, 10.0, (obs_dim,)),
            "action_space": discrete(n_actions), "n_envs": 8, "_vectorize_action": False,
            "policy_kwargs": {"net_arch": [{"pi": [hidden], "vf": [hidden]}]}}  # fmt: skip
    params = [*dense(obs_dim, hidden), *dense(obs_dim, hidden), *dense(hidden, 1), *dense(hidden, n_actions),
              *dense(hidden, n_actions)]  # fmt: skip
    return data, params


def by_name(params: list[np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`a2c_model`'s params keyed by :data:`A2C_NAMES` (the .zip form)."""
    return dict(zip(A2C_NAMES, params, strict=True))


A2C_NAMES = ["model/pi_fc0/w:0", "model/pi_fc0/b:0", "model/vf_fc0/w:0", "model/vf_fc0/b:0", "model/vf/w:0",
             "model/vf/b:0", "model/pi/w:0", "model/pi/b:0", "model/q/w:0", "model/q/b:0"]  # fmt: skip
"""TensorFlow variable names of :func:`a2c_model`'s params, in order."""


def sac_model(obs: Any = None, act_dim: int = 2) -> tuple[dict, dict]:
    """``(data, params)`` of a SAC MlpPolicy, params keyed by TensorFlow variable names (newer .pkl files)."""
    data = {"learning_rate": 0.0003, "buffer_size": 1000, "learning_starts": 100, "train_freq": 1, "batch_size": 64,
            "tau": 0.005, "ent_coef": "auto", "target_entropy": -2.0, "gamma": 0.99, "verbose": 0,
            "observation_space": obs if obs is not None else box(-1.0, 1.0, (3,)),
            "action_space": box(-1.0, 1.0, (act_dim,)),
            "policy": policy_class("stable_baselines.sac.policies.MlpPolicy"),
            "n_envs": 1, "action_noise": None, "random_exploration": 0.0, "_vectorize_action": False,
            "policy_kwargs": {}}  # fmt: skip
    width = 16 if obs is not None else 3
    shapes = {"model/pi/fc0/kernel:0": (width, 64), "model/pi/fc0/bias:0": (64,),
              "model/pi/fc1/kernel:0": (64, 64), "model/pi/fc1/bias:0": (64,),
              "model/pi/dense/kernel:0": (64, act_dim), "model/pi/dense/bias:0": (act_dim,),
              "model/pi/dense_1/kernel:0": (64, act_dim), "model/pi/dense_1/bias:0": (act_dim,)}  # fmt: skip
    rng = np.random.default_rng(1)
    return data, {name: rng.normal(0, 0.2, shape).astype(np.float32) for name, shape in shapes.items()}


def her_model() -> tuple[dict, dict]:
    """A HER(SAC) model as SB2's ``HER.save`` writes it: the SAC model's data plus ``model_class``,
    ``her_obs_space`` (the goal env's Dict), ``her_action_space``, ``n_sampled_goal``, ``goal_selection_strategy``."""
    goal = {"observation": box(-np.inf, np.inf, (10,)), "achieved_goal": box(-np.inf, np.inf, (3,)),
            "desired_goal": box(-np.inf, np.inf, (3,))}  # fmt: skip
    data, params = sac_model(obs=box(-np.inf, np.inf, (16,)), act_dim=4)
    strategy = stand_in("stable_baselines.her.replay_buffer.GoalSelectionStrategy")
    strategy.__reduce__ = lambda self: (type(self), (0,))
    data.update(model_class=stand_in("stable_baselines.sac.sac.SAC"), her_obs_space=dict_space(**goal),
                her_action_space=data["action_space"], n_sampled_goal=4,
                goal_selection_strategy=object.__new__(strategy))  # fmt: skip
    return data, params


def old_cloudpickle_function() -> Any:
    """A function record as cloudpickle 0.5-1.2 wrote it (the RL Zoo's schedules): ``_fill_function(
    _make_skel_func(_builtin_type('CodeType')(...), ...), ...)``; nothing in it can run."""
    try:
        from cloudpickle.cloudpickle import _builtin_type as builtin_type  # the same name in every version
    except ImportError:
        builtin_type = stand_in("cloudpickle.cloudpickle._builtin_type")
    skel = stand_in("cloudpickle.cloudpickle._make_skel_func")
    fill = stand_in("cloudpickle.cloudpickle._fill_function")
    code_args = (1, 0, 1, 1, 19, b"\x88\x00S\x00", (None,), (), ("_",), "ppo2.py", "func", 104, b"\x00\x01",
                 ("val",), ())  # fmt: skip
    code = _Reduce(_Reduce(builtin_type, ("CodeType",)), code_args)
    return _Reduce(fill, (_Reduce(skel, (code, 1, {})), {"globals": {}, "defaults": None, "dict": {},
                                                          "module": "stable_baselines.ppo2.ppo2"}))  # fmt: skip


class _Reduce:
    """An object pickled as ``func(*args)`` (REDUCE); ``func`` a stand-in class or another ``_Reduce``."""

    def __init__(self, func: Any, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)

    def __call__(self, *args: Any) -> Any:  # pickle requires the callable of a REDUCE to be callable
        raise TypeError("never called")


class Payload:
    """Pickles as ``func(*args)`` for any real function: ``Payload(os.system, ("touch x",))``."""

    def __init__(self, func: Any, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)


def _dumps(value: Any, protocol: int = 4) -> bytes:
    with sb2_names():
        try:
            import cloudpickle
        except ImportError:
            return pickle.dumps(value, protocol=protocol)
        return cloudpickle.dumps(value, protocol=protocol)


def write_pkl(path: Path, model: tuple[dict, Any], protocol: int = 4) -> Path:
    """``(data, params)`` as SB2 <= 2.7's ``_save_to_file_cloudpickle`` wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_dumps(tuple(model), protocol))
    return path


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _entry(value: Any) -> Any:
    """``save_util.data_to_json``'s form of one value: itself, or its cloudpickle with a readable summary."""
    if _jsonable(value):
        return value
    entry = {":type:": str(type(value)), ":serialized:": base64.b64encode(_dumps(value)).decode()}
    items = value.items() if isinstance(value, dict) else getattr(value, "__dict__", {}).items()
    entry.update({k: v if _jsonable(v) else str(v) for k, v in items})
    return entry


def write_zip(path: Path, data: dict, params: dict[str, np.ndarray], members: dict[str, bytes] | None = None) -> Path:
    """An SB2 >= 2.7 ``.zip``: ``data`` JSON, ``parameters`` (``np.savez``), ``parameter_list``; ``members``
    replace or add raw members (for damaged files)."""
    buffer = io.BytesIO()
    np.savez(buffer, **params)
    raw = {"data": json.dumps({k: _entry(v) for k, v in data.items()}, indent=4).encode(),
           "parameters": buffer.getvalue(), "parameter_list": json.dumps(list(params), indent=4).encode(),
           **(members or {})}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in raw.items():
            if content is not None:
                archive.writestr(name, content)
    return path


def write_obs_rms(folder: Path, mean: Any, var: Any, name: str = "obs_rms.pkl") -> Path:
    """``obs_rms.pkl`` as SB2's ``VecNormalize.save_running_average`` pickled it (protocol 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = running_mean_std(mean, var)
    with sb2_names():
        (folder / name).write_bytes(pickle.dumps(stats, protocol=3))
    return folder / name
