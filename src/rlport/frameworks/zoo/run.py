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
from rlport.frameworks.sb3.importer import import_sb3, trusted_module
from rlport.frameworks.sb3.live import settings
from rlport.frameworks.zoo.files import (
    RUN_FILES,
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
    "migrate_env",
    "ENV_MIGRATIONS",
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


Migration = tuple[str, dict[str, Any]]
"""A candidate for an old env id: today's id and the kwargs that reproduce the old observation."""


def _mujoco(name: str, *candidates: Migration) -> dict[str, tuple[Migration, ...]]:
    """mujoco-py ``NAME-v2``/``-v3`` -> the candidates given, else ``NAME-v4`` and ``NAME-v5`` as they are."""
    found = candidates or ((f"{name}-v4", {}), (f"{name}-v5", {}))
    return {f"{name}-v2": found, f"{name}-v3": found}


ENV_MIGRATIONS: dict[str, tuple[Migration, ...]] = {
    # Ant-v2/v3 observe 111 numbers (84 contact forces); Ant-v4 only with use_contact_forces=True, Ant-v5 105 at most
    **_mujoco("Ant", ("Ant-v4", {"use_contact_forces": True}), ("Ant-v5", {"include_cfrc_ext_in_observation": True}),
              ("Ant-v4", {}), ("Ant-v5", {"include_cfrc_ext_in_observation": False})),
    **_mujoco("HalfCheetah"), **_mujoco("Hopper"), **_mujoco("Walker2d"), **_mujoco("Swimmer"),
    **_mujoco("Humanoid"),  # 376 numbers in v2/v3/v4; v5 drops the worldbody's always-zero entries (348)
    **_mujoco("HumanoidStandup"), **_mujoco("Reacher"), **_mujoco("Pusher"), **_mujoco("InvertedPendulum"),
    **_mujoco("InvertedDoublePendulum"),  # v5 drops 2 always-zero constraint forces (11 -> 9)
    "LunarLander-v2": (("LunarLander-v3", {}),),
    "LunarLanderContinuous-v2": (("LunarLanderContinuous-v3", {}), ("LunarLander-v3", {"continuous": True})),
    "BipedalWalker-v2": (("BipedalWalker-v3", {}),),
    "BipedalWalkerHardcore-v2": (("BipedalWalkerHardcore-v3", {}), ("BipedalWalker-v3", {"hardcore": True})),
    "BipedalWalkerHardcore-v3": (("BipedalWalker-v3", {"hardcore": True}),),
    "CarRacing-v0": (("CarRacing-v3", {}),), "CarRacing-v1": (("CarRacing-v3", {}),),
    "CarRacing-v2": (("CarRacing-v3", {}),),
    "Pendulum-v0": (("Pendulum-v1", {}),),
}  # fmt: skip
"""Old env id -> today's (id, kwargs) candidates, tried in order: the first whose spaces match the policy's is
kept. An old id not listed falls back on its newer versions without kwargs."""


def _candidates(env_id: str, registry: Any) -> list[Migration]:
    """The listed migrations of ``env_id`` that gymnasium knows, else its newer versions, lowest first."""
    if env_id in ENV_MIGRATIONS:
        return [(new, dict(kwargs)) for new, kwargs in ENV_MIGRATIONS[env_id] if new in registry]
    parsed = _versions(env_id)
    if parsed is None:
        return []
    name, version = parsed
    newer = sorted(v[1] for v in (_versions(k) for k in registry) if v and v[0] == name and v[1] > version)
    return [(f"{name}-v{v}", {}) for v in newer]


def _shown(candidate: Migration) -> str:
    new, kwargs = candidate
    return new + (f" with {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}" if kwargs else "")


def migrate_env(env_id: str, bundle: Bundle, env_module: str | None = None) -> tuple[str, dict[str, Any], str | None]:
    """Today's id for ``env_id``, the kwargs to add to the run's, and a note (see :func:`map_env_id`).

    ``env_id`` itself when it can be made here with the policy's spaces; else the first candidate of
    :data:`ENV_MIGRATIONS` (or, for an id not listed there, the lowest newer version) whose spaces match.
    When none matches but one could be made (RL Zoo ``Pusher-v2``...), the recorded id is kept with an
    ``RlportWarning``: an import never fails because of today's env.
    """
    check_env_id(env_id, env_module)
    try:
        import gymnasium
    except ImportError:
        return env_id, {}, "gymnasium is not installed: the env id was not checked"
    problem = _try_env(env_id, bundle, env_module, {})
    if problem is None:
        return env_id, {}, None
    candidates = _candidates(env_id, gymnasium.envs.registry)
    if not candidates:
        return env_id, {}, f"{env_id} cannot be created here ({problem}) and gymnasium knows no newer version"
    mismatches = []
    for candidate in candidates:
        trouble = _try_env(candidate[0], bundle, env_module, candidate[1])
        if trouble is None:
            return (*candidate, f"{env_id} is now {_shown(candidate)} (observation and action spaces checked: "
                                "they match)")  # fmt: skip
        if isinstance(trouble, SpaceError):
            first = f"{env_id} was renamed {_shown(candidate)}, but the spaces differ"
            mismatches.append(f"{first if not mismatches else f'with {_shown(candidate)} they differ too'}: {trouble}")
    if mismatches:
        note = (f"{'; '.join(mismatches)}; the bundle keeps {env_id} and the file's spaces (rlport run and verify "
                "will report the difference)")  # fmt: skip
        warnings.warn(note, RlportWarning, stacklevel=2)
        return env_id, {}, note
    return (*candidates[0], f"{env_id} is now {_shown(candidates[0])}; its spaces could not be checked here "
                            f"({problem})")  # fmt: skip


def map_env_id(env_id: str, bundle: Bundle, env_module: str | None = None) -> tuple[str, str | None]:
    """Today's id for ``env_id`` and a note: :func:`migrate_env` without the kwargs.

    ``env_id`` is checked with :func:`rlport.envs.check_env_id` (``env_module`` is the one module
    it may make gymnasium import) before anything looks it up.

    Raises:
        UnsafeFileError: ``env_id`` would import a module other than ``env_module``.
    """
    new_id, _, note = migrate_env(env_id, bundle, env_module)
    return new_id, note


def _todays_env(
    env_id: str, bundle: Bundle, env_module: str | None, make_env: bool
) -> tuple[str, dict[str, Any], str | None]:
    """:func:`migrate_env` when an env is made anyway (``make_env``: verification is recorded) or ``env_id`` is a
    renamed one (:data:`ENV_MIGRATIONS`: today's id is chosen by its spaces); else ``env_id`` as recorded, without
    gymnasium: an import that records no verification makes no env for an id that was not renamed."""
    if make_env or env_id in ENV_MIGRATIONS:
        return migrate_env(env_id, bundle, env_module)
    return env_id, {}, None


def _try_env(env_id: str, bundle: Bundle, env_module: str | None, kwargs: dict[str, Any]) -> Exception | None:
    """None if ``env_id`` (with ``kwargs``, the run's kwargs and the bundle's wrappers) can be made here with
    matching spaces."""
    from rlport.envs import check_spaces, make_env

    merged = {**kwargs, **bundle.env.kwargs}
    spec = EnvSpec(env_id, merged, bundle.env.wrappers, bundle.env.max_episode_steps)
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


def _model_in_run(path: Path, best: bool) -> Path:
    """The model .zip of run folder ``path``: ``ENV.zip`` (the final model) or, with ``best``, ``best_model.zip``.

    The zoo writes ``best_model.zip`` beside ``ENV.zip`` when it ran an EvalCallback; its ``enjoy --load-best``
    takes the best one. Any other set of .zip files is refused with their names.
    """
    zips = sorted(path.glob("*.zip"))
    names = [z.name for z in zips]
    finals = [z for z in zips if z.name != "best_model.zip" and (path / z.stem).is_dir()]
    if best:
        if "best_model.zip" not in names:
            raise BundleError(f"{path}: no best_model.zip (found {', '.join(names) or 'no .zip'}); the run kept no "
                              "best model (it ran no EvalCallback): drop --best")  # fmt: skip
        return path / "best_model.zip"
    if len(finals) == 1 and len(zips) <= 2 and set(names) <= {finals[0].name, "best_model.zip"}:
        return finals[0]
    if len(zips) == 1:
        return zips[0]
    listed = f" ({', '.join(names)})" if names else ""
    raise BundleError(f"{path}: expected one model .zip in an RL Zoo run folder (ENV.zip, and best_model.zip "
                      f"beside it), found {len(zips)}{listed}; pass the model itself (RUN/ENV.zip)")  # fmt: skip


def _find_files(path: Path, best: bool = False) -> tuple[Path, Path, Path]:
    """The run folder, its model .zip and its ``ENV/`` folder, from the run folder or from the model in it."""
    if path.is_file():
        run = run_of_model(path)
        if run is None:
            raise BundleError(f"{path} is not the model of an RL Zoo run (no folder {path.parent / path.stem} "
                              "beside it with config.yml, args.yml or vecnormalize.pkl); use import_sb3")  # fmt: skip
        return run, path, run / path.stem
    if not path.is_dir():
        raise BundleError(f"{path} is not a folder; pass an RL Zoo run folder such as ppo/CartPole-v1_1")
    model = _model_in_run(path, best)
    if model.name != "best_model.zip":
        return path, model, path / model.stem
    metas = [d for d in sorted(path.iterdir()) if d.is_dir() and any((d / n).is_file() for n in RUN_FILES)]
    if len(metas) != 1:
        raise BundleError(f"{path}: best_model.zip needs the run's one ENV/ folder (config.yml, args.yml), found "
                          f"{len(metas)}")  # fmt: skip
    return path, model, metas[0]


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
    best: bool = False,
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
            come from the file), with an ``RlportWarning`` saying why nothing was recorded. Without a fingerprint
            nor an evaluation no env is made (gymnasium is not even imported) unless the run's env id is a renamed
            one of :data:`ENV_MIGRATIONS`, whose replacement is chosen by its spaces; the run's id is kept as
            recorded otherwise.
        evaluate: record the returns of this many episodes (0: none; the published returns are the reference).
        env_module: the one module a ``module:EnvName`` env id may make gymnasium import.
        algorithm: the algorithm name when the run's ``args.yml`` does not say.
        best: import the run's ``best_model.zip`` (saved by the zoo's EvalCallback, what ``enjoy --load-best``
            runs) instead of its final ``ENV.zip``; the bundle's provenance ``zoo_model`` says which.

    Raises:
        BundleError: a file is missing, malformed, over its size limit or of the wrong type.
        UnsafeFileError: a file asks to run code or to import a module (see ``env_module``).
    """
    folder, model_zip, meta = _find_files(Path(folder), best)
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
        new_id, extra, note = _todays_env(recorded_id, bundle, env_module, make_env=fingerprint or evaluate > 0)
        if new_id != recorded_id or extra:
            warnings.warn(f"{folder}: {note}", RlportWarning, stacklevel=2)
            bundle.env = EnvSpec(new_id, {**extra, **env_kwargs}, env.wrappers)
    bundle.provenance.update(published, zoo_run=f"{folder.parent.name}/{folder.name}", zoo_env_id=recorded_id,
                             zoo_model=model_zip.name)  # fmt: skip
    if note:
        bundle.provenance["env_id_note"] = note
    record_or_warn(bundle, str(folder), fingerprint=fingerprint, evaluate=evaluate, env_module=env_module)
    return bundle
