"""Import an RL Zoo run folder (``ALGO/ENV_1/``): the model, its VecNormalize statistics, the
env wrappers from ``config.yml``, the env id (renamed ids mapped to today's) and the published
evaluation returns from ``evaluations.npz``.

Example:
    >>> bundle = rlport.import_zoo("rl-trained-agents/ppo/Walker2d-v3_1")   # doctest: +SKIP
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec, WrapperSpec
from rlport.errors import BundleError, EnvError, MissingDependencyError, RlportWarning, SpaceError, UnsafeFileError
from rlport.importers.sb3_import import import_sb3
from rlport.importers.sb3_live import settings
from rlport.verify.record import record_verification

__all__ = ["import_zoo", "read_zoo_yaml", "map_env_id", "wrappers_from_config", "published_returns"]

_ALGOS = {
    "a2c": "A2C", "ppo": "PPO", "dqn": "DQN", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "qrdqn": "QRDQN",
    "tqc": "TQC", "trpo": "TRPO", "ars": "ARS", "ppo_lstm": "RecurrentPPO", "ppo_mask": "MaskablePPO",
    "crossq": "CrossQ",
}  # fmt: skip
_ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"


def read_zoo_yaml(path: Path) -> dict[str, Any]:
    """A zoo ``config.yml``/``args.yml``, read safely: only the OrderedDict tag the zoo writes is allowed."""
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError('reading RL Zoo folders needs PyYAML; pip install "rlport[sb3]"') from exc

    class ZooLoader(yaml.SafeLoader):
        """SafeLoader plus the one python tag the zoo writes; any other python tag is refused."""

    def ordered_dict(loader: Any, node: Any) -> dict[str, Any]:
        pairs = loader.construct_sequence(node.value[0], deep=True) if node.value else []
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise UnsafeFileError(f"{path}: an OrderedDict entry is not a [key, value] pair")
        return {str(k): v for k, v in pairs}

    def refuse(loader: Any, suffix: str, node: Any) -> None:
        raise UnsafeFileError(f"{path}: refused YAML tag !!python/{suffix}; rlport never runs code from model files")

    ZooLoader.add_constructor(_ORDERED_DICT_TAG, ordered_dict)
    ZooLoader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=ZooLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise BundleError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data


def _literal(value: Any, what: str) -> Any:
    """A Python-literal string from the zoo config, parsed without eval.

    Accepts literals (``"{'norm_obs': True}"``) and ``dict(key=literal, ...)`` calls, which the
    zoo also writes (``"dict(norm_obs=True, norm_reward=False)"``).
    """
    if not isinstance(value, str):
        return value
    try:
        tree = ast.parse(value.strip(), mode="eval").body
        if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "dict" and not tree.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords if kw.arg is not None}
        return ast.literal_eval(tree)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise BundleError(f"{what}: {value!r} is not a Python literal nor a dict(...) of literals") from exc


def wrappers_from_config(config: dict[str, Any]) -> list[WrapperSpec]:
    """``env_wrapper`` (a name, a {name: kwargs} dict, or a list of them) and ``frame_stack`` as entries."""
    raw = config.get("env_wrapper")
    entries = raw if isinstance(raw, list) else [raw] if raw else []
    wrappers = []
    for entry in entries:
        name, kwargs = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        kwargs = dict(kwargs or {})
        short = str(name).rsplit(".", 1)[-1]
        if short == "TimeFeatureWrapper":
            wrappers.append(WrapperSpec("time_feature", {"max_steps": int(kwargs.get("max_steps", 1000))}))
        elif short == "TimeLimit":
            wrappers.append(WrapperSpec("time_limit", {"max_episode_steps": int(kwargs["max_episode_steps"])}))
        else:
            wrappers.append(WrapperSpec(str(name), kwargs))  # recorded; `rlport run` refuses what it cannot build
    if config.get("frame_stack"):
        wrappers.append(WrapperSpec("frame_stack", {"n_stack": int(config["frame_stack"])}))
    return wrappers


# config.yml entries that are not constructor arguments (or are recorded elsewhere)
_NOT_HYPERPARAMETERS = {"n_timesteps", "policy", "normalize", "env_wrapper", "frame_stack", "n_envs", "policy_kwargs"}


def config_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The zoo's hyperparameters as plain values; ``lin_X`` schedules as their start value ``X``."""
    values = {}
    for key, value in config.items():
        if key in _NOT_HYPERPARAMETERS or key.endswith(("_class", "_kwargs")):  # objects, written as code
            continue
        if isinstance(value, str) and value.startswith("lin_"):
            try:
                value = float(value[4:])
            except ValueError:
                continue
        elif isinstance(value, str) and value.startswith(("[", "(", "{", "dict(")):
            continue  # a Python expression, not a plain value
        values[key] = value
    return settings(values)


def _uses_vecnormalize(config: dict[str, Any]) -> bool:
    normalize = _literal(config.get("normalize", False), "config.yml normalize")
    if isinstance(normalize, dict):
        return bool(normalize.get("norm_obs", True))
    return bool(normalize)


def published_returns(path: Path) -> dict[str, Any]:
    """The run's final published evaluation (the last row of ``evaluations.npz``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            results = np.asarray(data["results"], dtype=np.float64)
            timesteps = np.asarray(data["timesteps"])
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: cannot read the evaluation results ({exc})") from exc
    if results.ndim < 2 or results.shape[0] == 0:
        raise BundleError(f"{path}: 'results' should be one row per evaluation, found shape {results.shape}")
    results = results.reshape(results.shape[0], -1)  # some runs store (evaluations, episodes, 1)
    last = results[-1]
    return {
        "published_return_mean": float(last.mean()),
        "published_return_std": float(last.std()),
        "published_episodes": int(last.size),
        "published_at_timesteps": int(timesteps[-1]) if timesteps.size else None,
    }


def _versions(env_id: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"(.+)-v(\d+)", env_id)
    return (match.group(1), int(match.group(2))) if match else None


def map_env_id(env_id: str, bundle: Bundle) -> tuple[str, str | None]:
    """Today's id for ``env_id`` and a note: the id itself if it can be created here, else the lowest
    newer version (LunarLander-v2 -> v3, Walker2d-v3 -> v4) whose spaces match the policy's.

    Raises:
        EnvError: a newer version exists but its spaces differ (the difference is named).
    """
    try:
        import gymnasium
    except ImportError:
        return env_id, "gymnasium is not installed: the env id was not checked"
    parsed = _versions(env_id)
    if parsed is None:
        return env_id, None
    name, version = parsed
    newer = sorted(
        v[1] for v in (_versions(k) for k in gymnasium.envs.registry) if v and v[0] == name and v[1] > version
    )
    problem = _try_env(env_id, bundle)
    if problem is None:
        return env_id, None
    if not newer:
        return env_id, f"{env_id} cannot be created here ({problem}) and gymnasium knows no newer version"
    for candidate in (f"{name}-v{v}" for v in newer):
        trouble = _try_env(candidate, bundle)
        if trouble is None:
            return candidate, f"{env_id} is now {candidate} (observation and action spaces checked: they match)"
        if isinstance(trouble, SpaceError):
            raise EnvError(f"{env_id} was renamed {candidate}, but the spaces differ: {trouble}") from trouble
    candidate = f"{name}-v{newer[0]}"
    return candidate, f"{env_id} is now {candidate}; its spaces could not be checked here ({problem})"


def _try_env(env_id: str, bundle: Bundle) -> Exception | None:
    """None if ``env_id`` (with the bundle's wrappers) can be made here with matching spaces."""
    from rlport.envs import check_spaces, make_env

    spec = EnvSpec(env_id, dict(bundle.env.kwargs), bundle.env.wrappers, bundle.env.max_episode_steps)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = make_env(spec)
    except (EnvError, MissingDependencyError) as exc:
        return exc
    try:
        check_spaces(bundle.policy(), env, exact=False)
    except SpaceError as exc:
        return exc
    finally:
        env.close()
    return None


def _find_files(folder: Path) -> tuple[Path, Path]:
    zips = sorted(folder.glob("*.zip"))
    if len(zips) != 1:
        raise BundleError(f"{folder}: expected one model .zip in an RL Zoo run folder, found {len(zips)}")
    return zips[0], folder / zips[0].stem


def import_zoo(
    folder: str | Path,
    env_id: str | None = None,
    probes: int = 256,
    include_critic: bool = False,
    fingerprint: bool = True,
    evaluate: int = 0,
) -> Bundle:
    """Import an RL Zoo run folder (``ALGO/ENV_1/``) with everything needed to act and to be checked.

    Args:
        folder: the run folder, holding ``ENV.zip``, ``ENV/config.yml``, ``ENV/args.yml``,
            ``ENV/vecnormalize.pkl`` (when normalised) and ``evaluations.npz``.
        env_id: override the env id (default: the run's, renamed ids mapped to today's).
        probes: how many probes to record.
        include_critic: keep every tensor of the model.
        fingerprint: record the env's dynamics fingerprint for ``rlport verify`` (when the env can be made).
        evaluate: record the returns of this many episodes (0: none; the published returns are the reference).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder; pass an RL Zoo run folder such as ppo/CartPole-v1_1")
    model_zip, meta = _find_files(folder)
    config = read_zoo_yaml(meta / "config.yml") if (meta / "config.yml").exists() else {}
    args = read_zoo_yaml(meta / "args.yml") if (meta / "args.yml").exists() else {}
    vecnormalize = meta / "vecnormalize.pkl"
    if _uses_vecnormalize(config) and not vecnormalize.exists():
        raise BundleError(f"{folder}: the run used VecNormalize but {vecnormalize} is missing; without its "
                          "statistics the policy acts wrongly")  # fmt: skip
    algo = str(args.get("algo", "")).lower()
    env_kwargs = _literal(args.get("env_kwargs"), "args.yml env_kwargs") or {}
    recorded_id = env_id or args.get("env") or meta.name
    env = EnvSpec(recorded_id, dict(env_kwargs), tuple(wrappers_from_config(config)))
    bundle = import_sb3(
        model_zip,
        vecnormalize=vecnormalize if vecnormalize.exists() else None,
        probes=probes,
        include_critic=include_critic,
        algorithm=_ALGOS.get(algo),
        env=env,
        fingerprint=False,
        evaluate=0,
    )
    bundle.source["hyperparameters"] = {**bundle.source.get("hyperparameters", {}), **config_settings(config)}
    note = None
    if env_id is None:
        new_id, note = map_env_id(recorded_id, bundle)
        if new_id != recorded_id:
            warnings.warn(f"{folder}: {note}", RlportWarning, stacklevel=2)
            bundle.env = EnvSpec(new_id, dict(env_kwargs), env.wrappers)
    evaluations = folder / "evaluations.npz"
    published = published_returns(evaluations) if evaluations.exists() else {}
    bundle.provenance.update(published, zoo_run=f"{folder.parent.name}/{folder.name}", zoo_env_id=recorded_id)
    if note:
        bundle.provenance["env_id_note"] = note
    record_verification(bundle, fingerprint=fingerprint, evaluate=evaluate)
    return bundle
