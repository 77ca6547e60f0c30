"""Read an SB2 (Stable Baselines 2, TensorFlow 1) model file into an :class:`SB2Model`, without
TensorFlow and without running any of its pickles.

Two formats, told apart by their first bytes: the ``.pkl`` of stable-baselines <= 2.7 (a
cloudpickle of ``(data, params)``; ``params`` a list in ``get_parameter_list()`` order in older
files, a TensorFlow-name -> array mapping in newer ones) and the ``.zip`` of >= 2.7
(:mod:`rlport.frameworks.sb2.file_zip`). Pickles go through the allow-list reader with SB2's names
(:mod:`~rlport.frameworks.sb2.file_pickle`): a schedule or other cloudpickled function becomes the
marker ``"<function>"``, never rebuilt. Every byte is untrusted: regular files only, read within
:data:`MAX_PICKLE_SIZE` (the zip within its expansion budget), every field used type-checked.

Example:
    >>> model = read_sb2("rl-baselines-zoo/trained_agents/ppo2/CartPole-v1.pkl")   # doctest: +SKIP
    >>> model.algorithm, model.policy                                              # doctest: +SKIP
    ('ppo2', 'MlpPolicy')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlport.errors import BundleError
from rlport.frameworks.sb2 import file_pickle
from rlport.frameworks.sb2.file_algorithms import choose_algorithm, is_her, resolve_policy
from rlport.frameworks.sb2.file_spaces import space_spec
from rlport.frameworks.sb2.file_zip import MAX_PARAMETERS, is_sb2_zip, read_sb2_zip
from rlport.frameworks.sb2.model import SB2Model
from rlport.readers.safe_pickle import Instance
from rlport.readers.untrusted import echo, open_regular, read_regular

__all__ = ["read_sb2", "sniff_format", "MAX_PICKLE_SIZE", "HER_KEY_ORDER", "GOAL_STRATEGIES"]

MAX_PICKLE_SIZE = 1 << 30
"""The largest SB2 ``.pkl`` read (1 GiB); real ones hold 10 KiB to 20 MiB (Atari CNNs)."""
HER_KEY_ORDER = ("observation", "achieved_goal", "desired_goal")
"""How SB2's ``HERGoalEnvWrapper.convert_dict_to_obs`` concatenates a goal env's observation (her/utils.py)."""
GOAL_STRATEGIES = {0: "future", 1: "final", 2: "episode", 3: "random"}
"""SB2's ``GoalSelectionStrategy`` enum values."""
_ZIP_MAGIC, _PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def sniff_format(path: str | Path) -> str | None:
    """``"zip"`` for an SB2 .zip, ``"pkl"`` for a binary pickle (protocol 2 or later), else None; reads 4 bytes
    (and a zip's directory)."""
    try:
        with open_regular(path) as file:
            head = file.read(4)
    except BundleError:
        return None
    if head.startswith(_ZIP_MAGIC):
        return "zip" if is_sb2_zip(str(path)) else None
    return "pkl" if head.startswith(_PICKLE_MAGIC) else None


def _read_pickle(path: str) -> tuple[dict[str, Any], Any]:
    """``(data, params)`` of a ``.pkl``: the pickle must be that pair, data a dict with string keys."""
    value = file_pickle.loads(read_regular(path, MAX_PICKLE_SIZE, path), what=path)
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], dict)):
        raise BundleError(f"{path}: expected the pair (data, params) SB2's save() pickles, found {echo(value, 80)}")
    return value


def _params(params: Any, what: str) -> dict[str, np.ndarray] | list[np.ndarray]:
    """The parameters: a list of numeric arrays, or a mapping of TensorFlow names to them."""
    items = list(params.items()) if isinstance(params, dict) else list(enumerate(params or []))
    if not isinstance(params, (dict, list)) or len(items) > MAX_PARAMETERS:
        raise BundleError(
            f"{what}: params should be a list or mapping of at most {MAX_PARAMETERS} arrays, found "
            f"{type(params).__name__}{f' of {len(items)}' if isinstance(params, (dict, list)) else ''}"
        )
    arrays = []
    for key, array in items:
        if isinstance(params, dict) and not isinstance(key, str):
            raise BundleError(f"{what}: a parameter is named {echo(key, 60)}, not a TensorFlow variable name")
        if not isinstance(array, (np.ndarray, np.generic)) or array.dtype.kind not in "biuf":
            raise BundleError(f"{what}: parameter {echo(key, 80)} is {type(array).__name__}, not a numeric array")
        arrays.append((key, np.asarray(array)))  # a scalar variable may be pickled as a numpy scalar
    return dict(arrays) if isinstance(params, dict) else [array for _, array in arrays]


def _kwargs(value: Any, what: str) -> dict[str, Any]:
    kwargs = file_pickle.inert(value) if value is not None else {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise BundleError(f"{what}: policy_kwargs should be a dict of argument names, found {echo(kwargs, 80)}")
    return kwargs


def _her_info(data: dict[str, Any], flat: Any, what: str) -> dict[str, Any]:
    """What the graph needs of a HER model: the key order of the flattened observation and the saved settings."""
    strategy = data.get("goal_selection_strategy")
    if isinstance(strategy, Instance) and len(strategy.args) == 1:
        strategy = GOAL_STRATEGIES.get(strategy.args[0], strategy.args[0])
    return {
        "her": True,
        "observation_keys": list(HER_KEY_ORDER),
        "model_class": file_pickle.inert(data["model_class"]),
        "n_sampled_goal": file_pickle.inert(data.get("n_sampled_goal")),
        "goal_selection_strategy": file_pickle.inert(strategy),
        "flat_observation_shape": list(space_spec(flat, f"{what}: observation_space").shape),
    }


def _check_her_space(observation_space: Any, what: str) -> None:
    keys = [key for key, _ in getattr(observation_space, "spaces", ())]
    if sorted(keys) != sorted(HER_KEY_ORDER):
        raise BundleError(f"{what}: her_obs_space should be a Dict of {', '.join(HER_KEY_ORDER)}, found "
                          f"{echo(keys)}")  # fmt: skip


def read_sb2(path: str | Path, algorithm: str | None = None) -> SB2Model:
    """Read an SB2 ``.pkl`` or ``.zip`` model; nothing of it is executed.

    Args:
        path: the model file. In the RL Zoo layout (``ALGO/ENV.pkl``) the folder names the algorithm.
        algorithm: the SB2 algorithm (``"ppo2"``...), when neither the file's settings nor its folder tell.

    Raises:
        BundleError: not an SB2 model, truncated, corrupt, inconsistent, or over a size limit.
        UnsafeFileError: a pickle names something outside the allow-list (named in the message).
        UnsupportedError: a policy class or space rlport cannot express.
    """
    path = str(path)
    kind = sniff_format(path)
    if kind is None:
        raise BundleError(f"{path} is neither an SB2 .pkl (a pickle) nor an SB2 .zip (data, parameters, "
                          "parameter_list); is it an SB2 model saved with model.save()?")  # fmt: skip
    raw_data, raw_params = read_sb2_zip(path) if kind == "zip" else _read_pickle(path)
    for key in ("policy", "observation_space", "action_space"):
        if key not in raw_data:
            raise BundleError(f"{path}: data lacks {key!r}; is this an SB2 model?")
    chosen = choose_algorithm(raw_data, Path(path).parent.name.lower() or None, algorithm, path)
    name, module, fixed, saved = resolve_policy(raw_data["policy"], chosen, f"{path}: data['policy']")
    data = file_pickle.inert(raw_data)
    observation_space = space_spec(raw_data["observation_space"], f"{path}: observation_space")
    if is_her(raw_data):
        data["_her"] = _her_info(raw_data, raw_data["observation_space"], path)
        observation_space = space_spec(raw_data["her_obs_space"], f"{path}: her_obs_space")
        _check_her_space(observation_space, path)
    if saved != f"{module}.{name}":
        data["_policy_saved_as"] = saved
    return SB2Model(
        algorithm=chosen,
        policy=name,
        policy_module=module,
        data=data,
        params=_params(raw_params, f"{path}: params"),
        observation_space=observation_space,
        action_space=space_spec(raw_data["action_space"], f"{path}: action_space"),
        policy_kwargs={**_kwargs(raw_data.get("policy_kwargs"), path), **fixed},
        version=None,  # SB2 files do not record the library's version
        path=path,
    )
