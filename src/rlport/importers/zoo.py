"""Import an RL Zoo run folder (``ALGO/ENV_1/``): the model, its VecNormalize statistics, the
env wrappers from ``config.yml``, the env id (renamed ids mapped to today's) and the published
evaluation returns from ``evaluations.npz``.

Example:
    >>> bundle = rlport.import_zoo("rl-trained-agents/ppo/Walker2d-v3_1")   # doctest: +SKIP
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.envs import check_env_id
from rlport.errors import BundleError, EnvError, MissingDependencyError, RlportWarning, SpaceError
from rlport.importers.sb3_import import import_sb3, trusted_module
from rlport.importers.sb3_live import settings
from rlport.importers.zoo_files import (
    literal,
    plain_kwargs,
    published_returns,
    read_zoo_yaml,
    run_of_model,
    text_field,
    wrappers_from_config,
)
from rlport.verify.record import record_or_warn

__all__ = [
    "import_zoo",
    "read_zoo_yaml",
    "map_env_id",
    "wrappers_from_config",
    "published_returns",
    "config_settings",
    "run_of_model",
]

_ALGOS = {
    "a2c": "A2C", "ppo": "PPO", "dqn": "DQN", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "qrdqn": "QRDQN",
    "tqc": "TQC", "trpo": "TRPO", "ars": "ARS", "ppo_lstm": "RecurrentPPO", "ppo_mask": "MaskablePPO",
    "crossq": "CrossQ",
}  # fmt: skip
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
    normalize = literal(config.get("normalize", False), "config.yml normalize")
    if isinstance(normalize, dict):
        return bool(normalize.get("norm_obs", True))
    return bool(normalize)


def _versions(env_id: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"(.+)-v(\d+)", env_id)
    return (match.group(1), int(match.group(2))) if match else None


def map_env_id(env_id: str, bundle: Bundle, env_module: str | None = None) -> tuple[str, str | None]:
    """Today's id for ``env_id`` and a note: the id itself if it can be created here, else the lowest
    newer version (LunarLander-v2 -> v3, Walker2d-v3 -> v4) whose spaces match the policy's.

    ``env_id`` is checked with :func:`rlport.envs.check_env_id` (``env_module`` is the one module
    it may make gymnasium import) before anything looks it up.

    When the id cannot be made here and the lowest newer version whose spaces could be checked has
    other spaces (RL Zoo Ant-v3 agents observe 111 numbers, today's Ant-v4 27), the recorded id is
    kept, with an ``RlportWarning`` naming the newer id and the difference: an import never fails
    because of today's env.

    Raises:
        UnsafeFileError: ``env_id`` would import a module other than ``env_module``.
    """
    check_env_id(env_id, env_module)
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
    problem = _try_env(env_id, bundle, env_module)
    if problem is None:
        return env_id, None
    if not newer:
        return env_id, f"{env_id} cannot be created here ({problem}) and gymnasium knows no newer version"
    for candidate in (f"{name}-v{v}" for v in newer):
        trouble = _try_env(candidate, bundle, env_module)
        if trouble is None:
            return candidate, f"{env_id} is now {candidate} (observation and action spaces checked: they match)"
        if isinstance(trouble, SpaceError):
            note = (f"{env_id} was renamed {candidate}, but the spaces differ: {trouble}; the bundle keeps "
                    f"{env_id} and the file's spaces (rlport run and verify will report the difference)")  # fmt: skip
            warnings.warn(note, RlportWarning, stacklevel=2)
            return env_id, note
    candidate = f"{name}-v{newer[0]}"
    return candidate, f"{env_id} is now {candidate}; its spaces could not be checked here ({problem})"


def _try_env(env_id: str, bundle: Bundle, env_module: str | None) -> Exception | None:
    """None if ``env_id`` (with the bundle's wrappers) can be made here with matching spaces."""
    from rlport.envs import check_spaces, make_env

    spec = EnvSpec(env_id, dict(bundle.env.kwargs), bundle.env.wrappers, bundle.env.max_episode_steps)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = make_env(spec, env_module=env_module)
    except (EnvError, MissingDependencyError) as exc:
        return exc
    try:
        check_spaces(bundle, env, exact=False)  # the bundle's spaces: no policy built for a comparison
    except SpaceError as exc:
        return exc
    finally:
        env.close()
    return None


def _find_files(path: Path) -> tuple[Path, Path, Path]:
    """The run folder, its model .zip and its ``ENV/`` folder, from the run folder or from the model in it."""
    if path.is_file():
        run = run_of_model(path)
        if run is None:
            raise BundleError(f"{path} is not the model of an RL Zoo run (no folder {path.parent / path.stem} "
                              "beside it with config.yml, args.yml or vecnormalize.pkl); use import_sb3")  # fmt: skip
        return run, path, run / path.stem
    if not path.is_dir():
        raise BundleError(f"{path} is not a folder; pass an RL Zoo run folder such as ppo/CartPole-v1_1")
    zips = sorted(path.glob("*.zip"))
    if len(zips) != 1:
        raise BundleError(f"{path}: expected one model .zip in an RL Zoo run folder, found {len(zips)}; "
                          "pass the model itself (RUN/ENV.zip)")  # fmt: skip
    return path, zips[0], path / zips[0].stem


def _run_files(meta: Path, env_id: str | None, env_module: str | None) -> tuple[dict, str | None, str, dict]:
    """config.yml, the algorithm name, the env id (the caller's, else the run's, checked) and the env kwargs."""
    config = read_zoo_yaml(meta / "config.yml") if (meta / "config.yml").exists() else {}
    args_path = meta / "args.yml"
    args = read_zoo_yaml(args_path) if args_path.exists() else {}
    algo = (text_field(args, "algo", str(args_path)) or "").lower()
    env_kwargs = plain_kwargs(args.get("env_kwargs"), f"{args_path} env_kwargs")
    if env_id is None:  # from the files: it must not make gymnasium import a module the caller did not name
        recorded = text_field(args, "env", str(args_path))
        where = str(args_path) if recorded is not None else f"{meta.parent} (its folder name)"
        env_id = check_env_id(recorded if recorded is not None else meta.name, env_module, where)
    return config, _ALGOS.get(algo), env_id, env_kwargs


def import_zoo(
    folder: str | Path,
    env_id: str | None = None,
    probes: int = 256,
    include_critic: bool = False,
    fingerprint: bool = True,
    evaluate: int = 0,
    env_module: str | None = None,
    algorithm: str | None = None,
) -> Bundle:
    """Import an RL Zoo run folder (``ALGO/ENV_1/``) with everything needed to act and to be checked.

    Every file of the folder is untrusted: nothing in it is executed, and an env id it records
    that would make gymnasium import a module (``module:EnvName``) is refused unless
    ``env_module`` names that module.

    Args:
        folder: the run folder, holding ``ENV.zip``, ``ENV/config.yml``, ``ENV/args.yml``,
            ``ENV/vecnormalize.pkl`` (when normalised) and ``evaluations.npz``; or the model
            ``ENV.zip`` inside it (a run folder with several .zip files: the one to import).
        env_id: override the env id (default: the run's, renamed ids mapped to today's); the
            caller's own choice, trusted.
        probes: how many probes to record.
        include_critic: keep every tensor of the model.
        fingerprint: record the env's dynamics fingerprint for ``rlport verify``. When the env cannot be made
            here, or its spaces differ from the run's, the bundle is made all the same (weights and spaces
            come from the file), with an ``RlportWarning`` saying why nothing was recorded.
        evaluate: record the returns of this many episodes (0: none; the published returns are the reference).
        env_module: the one module a ``module:EnvName`` env id may make gymnasium import.
        algorithm: the algorithm name when the run's ``args.yml`` does not say.

    Raises:
        BundleError: a file is missing, malformed, over its size limit or of the wrong type.
        UnsafeFileError: a file asks to run code or to import a module (see ``env_module``).
    """
    folder, model_zip, meta = _find_files(Path(folder))
    env_module = trusted_module(env_id, env_module)
    config, recorded_algorithm, recorded_id, env_kwargs = _run_files(meta, env_id, env_module)
    algorithm = recorded_algorithm or algorithm
    vecnormalize = meta / "vecnormalize.pkl"
    if _uses_vecnormalize(config) and not vecnormalize.exists():
        raise BundleError(f"{folder}: the run used VecNormalize but {vecnormalize} is missing; without its "
                          "statistics the policy acts wrongly")  # fmt: skip
    env = EnvSpec(recorded_id, dict(env_kwargs), tuple(wrappers_from_config(config, str(meta / "config.yml"))))
    evaluations = folder / "evaluations.npz"
    published = published_returns(evaluations) if evaluations.exists() else {}
    bundle = import_sb3(
        model_zip,
        vecnormalize=vecnormalize if vecnormalize.exists() else None,
        probes=probes,
        include_critic=include_critic,
        algorithm=algorithm,
        env=env,
        fingerprint=False,
        evaluate=0,
        env_module=env_module,
    )
    bundle.source["hyperparameters"] = {**bundle.source.get("hyperparameters", {}), **config_settings(config)}
    note = None
    if env_id is None:
        new_id, note = map_env_id(recorded_id, bundle, env_module)
        if new_id != recorded_id:
            warnings.warn(f"{folder}: {note}", RlportWarning, stacklevel=2)
            bundle.env = EnvSpec(new_id, dict(env_kwargs), env.wrappers)
    bundle.provenance.update(published, zoo_run=f"{folder.parent.name}/{folder.name}", zoo_env_id=recorded_id)
    if note:
        bundle.provenance["env_id_note"] = note
    record_or_warn(bundle, str(folder), fingerprint=fingerprint, evaluate=evaluate, env_module=env_module)
    return bundle
