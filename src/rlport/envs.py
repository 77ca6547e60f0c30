"""Create a bundle's environment from its declarative spec and run episodes with a policy.

gymnasium is imported here, lazily: loading and running a bundle on observations you supply
does not need it.

Example:
    >>> policy = rlport.load("cartpole.rlp")                                   # doctest: +SKIP
    >>> env = make_env(policy.bundle.env)                                      # doctest: +SKIP
    >>> stats = run_episodes(policy, env, episodes=10, seed=0)                 # doctest: +SKIP
    >>> stats.mean_return                                                      # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rlport.bundle.manifest import EnvSpec, WrapperSpec
from rlport.errors import EnvError, MissingDependencyError, SpaceError, UnsafeFileError, short

__all__ = ["make_env", "check_env_id", "check_spaces", "run_episodes", "EpisodeStats", "MAX_ENV_ID_LENGTH"]

MAX_ENV_ID_LENGTH = 256
"""The longest env id rlport passes to gymnasium (real ids are a few dozen characters)."""


def _gymnasium():
    try:
        import gymnasium
    except ImportError as exc:
        raise MissingDependencyError(
            'running episodes needs gymnasium; pip install "rlport[envs]" (or gymnasium and the env\'s package)'
        ) from exc
    return gymnasium


def _frame_stack(env: Any, n_stack: int) -> Any:
    """SB3's VecFrameStack for one env: the last ``n_stack`` observations concatenated on the last axis."""
    gym = _gymnasium()
    from collections import deque

    class FrameStack(gym.ObservationWrapper):
        def __init__(self, inner: Any) -> None:
            super().__init__(inner)
            space = inner.observation_space
            low = np.concatenate([space.low] * n_stack, axis=-1)
            high = np.concatenate([space.high] * n_stack, axis=-1)
            self.observation_space = gym.spaces.Box(low=low, high=high, dtype=space.dtype)
            self._frames: deque = deque(maxlen=n_stack)

        def reset(self, **kwargs: Any):
            obs, info = self.env.reset(**kwargs)
            self._frames.extend([np.zeros_like(obs)] * n_stack)
            self._frames.append(obs)
            return self.observation(obs), info

        def observation(self, observation: Any) -> np.ndarray:
            if self._frames and self._frames[-1] is not observation:
                self._frames.append(observation)
            return np.concatenate(list(self._frames), axis=-1)

    return FrameStack(env)


def _time_feature(env: Any, max_steps: int = 1000, test_mode: bool = False) -> Any:
    """sb3-contrib's TimeFeatureWrapper, in numpy: the remaining-time feature ``1 - t / max_steps``
    appended to the observation (to its ``"observation"`` key for dict spaces). ``max_steps`` is
    the env's own ``max_episode_steps`` when it has one, as in sb3-contrib."""
    gym = _gymnasium()
    spaces = gym.spaces

    class TimeFeature(gym.Wrapper):
        def __init__(self, inner: Any) -> None:
            super().__init__(inner)
            space = inner.observation_space
            box = space.spaces["observation"] if isinstance(space, spaces.Dict) else space
            if not isinstance(box, spaces.Box) or len(box.shape) != 1:
                raise EnvError("the time_feature wrapper needs a 1-d Box observation (or a dict with one)")
            self._dtype = box.dtype
            low = np.concatenate((box.low, [0.0])).astype(self._dtype)
            high = np.concatenate((box.high, [1.0])).astype(self._dtype)
            new_box = spaces.Box(low=low, high=high, dtype=self._dtype)
            if isinstance(space, spaces.Dict):
                self.observation_space = spaces.Dict({**space.spaces, "observation": new_box})
            else:
                self.observation_space = new_box
            spec = getattr(inner, "spec", None)
            self._max_steps = getattr(spec, "max_episode_steps", None) or max_steps
            self._step = 0

        def reset(self, **kwargs: Any):
            self._step = 0
            obs, info = self.env.reset(**kwargs)
            return self._with_time(obs), info

        def step(self, action: Any):
            self._step += 1
            obs, reward, terminated, truncated, info = self.env.step(action)
            return self._with_time(obs), reward, terminated, truncated, info

        def _with_time(self, obs: Any) -> Any:
            feature = np.array(1.0 if test_mode else 1 - (self._step / self._max_steps), dtype=self._dtype)
            if isinstance(obs, dict):
                return {**obs, "observation": np.append(obs["observation"], feature)}
            return np.append(obs, feature)

    return TimeFeature(env)


def _time_limit(env: Any, max_episode_steps: int) -> Any:
    return _gymnasium().wrappers.TimeLimit(env, max_episode_steps=max_episode_steps)


_WRAPPERS: dict[str, Callable[..., Any]] = {
    "time_limit": _time_limit,
    "time_feature": _time_feature,
    "frame_stack": _frame_stack,
}


def _apply(env: Any, wrapper: WrapperSpec) -> Any:
    if wrapper.name not in _WRAPPERS:
        raise EnvError(f"unknown env wrapper {wrapper.name!r}; known: {', '.join(sorted(_WRAPPERS))}")
    try:
        return _WRAPPERS[wrapper.name](env, **wrapper.kwargs)
    except TypeError as exc:
        raise EnvError(f"wrapper {wrapper.name!r} got bad arguments {wrapper.kwargs}: {exc}") from exc


def check_env_id(env_id: Any, env_module: str | None = None, where: str = "the bundle") -> str:
    """``env_id`` if it is safe to hand to ``gymnasium.make``, read from a file.

    gymnasium's ``make("module:EnvName")`` imports ``module`` before it looks the name up, so an id
    from a file could import any module on the path. Such an id is accepted only when the user
    named that very module (``--env-module MODULE``, ``env_module=``); ids the user types are
    theirs and are not checked here.

    Raises:
        UnsafeFileError: the id names a module the user did not name, or is not a plain short string.

    Example:
        >>> check_env_id("CartPole-v1")
        'CartPole-v1'
    """
    if not isinstance(env_id, str) or not env_id or len(env_id) > MAX_ENV_ID_LENGTH or not env_id.isprintable():
        raise UnsafeFileError(
            f"{where}: the env id {short(env_id)} is not a printable string of 1 to {MAX_ENV_ID_LENGTH} characters"
        )
    if ":" in env_id:
        module = env_id.split(":", 1)[0]
        if env_module is None or module != env_module:
            raise UnsafeFileError(
                f"{where}: the env id {short(env_id)} would make gymnasium import the module {short(module)}; "
                "ids from files never import modules. If you trust that module, name it: "
                f"--env-module {short(module, 60)[1:-1]} (env_module={short(module, 60)} in Python)"
            )
    return env_id


RECORDED_RENDER_MODES = (None, "rgb_array", "ansi", "rgb_array_list", "depth_array")
"""The render modes a file may ask for: none opens a window (``"human"`` is the user's choice alone)."""


def _check_recorded_kwargs(kwargs: dict[str, Any]) -> None:
    mode = kwargs.get("render_mode")
    if not (mode is None or isinstance(mode, str)) or mode not in RECORDED_RENDER_MODES:
        raise EnvError(
            f"the recorded env kwargs ask for render_mode {short(mode)}; a file may ask only for "
            f"{', '.join(map(str, RECORDED_RENDER_MODES))}. Pass --env-kwargs (env_kwargs=) to choose yourself"
        )


def make_env(
    spec: EnvSpec,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    env_module: str | None = None,
) -> Any:
    """A gymnasium env for ``spec`` (``env_id``/``env_kwargs`` override the recorded ones).

    Args:
        spec: the env spec, usually read from a bundle (untrusted: see :func:`check_env_id`).
        env_id: an id the user chose, used instead of the recorded one (trusted as the user's own).
        env_kwargs: kwargs the user chose, used instead of the recorded ones.
        env_module: the one module a recorded ``module:EnvName`` id may import.

    Raises:
        EnvError: no env id is known, gymnasium does not know it, or a wrapper is unknown.
        UnsafeFileError: the recorded id would import a module the user did not name.
    """
    gym = _gymnasium()
    if env_id is not None:
        if not isinstance(env_id, str) or not env_id:
            raise EnvError(f"the env id must be a non-empty string, found {short(env_id)}")
        spec = replace(spec, id=env_id)
    elif spec.id:
        check_env_id(spec.id, env_module)
    if env_kwargs is not None:
        if not isinstance(env_kwargs, dict):
            raise EnvError(f"env kwargs must be a JSON object (a dict), found {short(env_kwargs)}")
        spec = replace(spec, kwargs=dict(env_kwargs))
    else:
        _check_recorded_kwargs(spec.kwargs)
    if not spec.id:
        raise EnvError("the bundle records no environment id; pass one with --env ID")
    try:
        env = gym.make(spec.id, **spec.kwargs)
    except gym.error.Error as exc:
        missing = _missing_package(spec.id)
        if missing is not None:
            raise EnvError(f"cannot create env {short(spec.id)}: it needs {missing}") from exc
        raise EnvError(f"cannot create env {short(spec.id)}: {short(str(exc), 300)}") from exc
    except ImportError as exc:
        raise EnvError(f"env {short(spec.id)} needs a package that is not installed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any env constructor's refusal of its kwargs
        raise EnvError(
            f"env {short(spec.id)} rejected its kwargs {short(spec.kwargs, 300)}: "
            f"{type(exc).__name__}: {short(str(exc), 300)}"
        ) from exc
    if spec.max_episode_steps is not None:
        env = _time_limit(env, spec.max_episode_steps)
    for wrapper in spec.wrappers:
        env = _apply(env, wrapper)
    return env


def check_spaces(
    policy: Any, env: Any, exact: bool = True, hint: str = "pass the env the policy was trained on (--env ID)"
) -> None:
    """Raise :class:`SpaceError` naming the first difference between the env's and the bundle's spaces.

    Differences of representation only are not differences: float32 and float64 observations,
    bounds that are equal once cast to the narrower float type, and float32's largest value
    where the other side has infinity (older gym releases wrote ``3.4e38`` for unbounded).

    Args:
        policy: a loaded policy (its ``observation_space`` and ``action_space`` specs).
        env: a gymnasium env.
        exact: also compare Box bounds (up to representation); when False, only types, shapes,
            sizes and dtype kinds (bounds may differ: the graph casts observations anyway).
        hint: what the message tells the user to do.
    """
    from rlport.bundle.spaces import is_image
    from rlport.readers.gym_spaces import spec_from_space

    for role, ours in (("observation", policy.observation_space), ("action", policy.action_space)):
        theirs = spec_from_space(getattr(env, f"{role}_space"))
        if (
            role == "observation"
            and is_image(ours)
            and getattr(theirs, "shape", None) == tuple(ours.shape[i] for i in (1, 2, 0))
        ):
            continue  # channel-last env, channel-first policy: predict transposes, as SB3 does
        if _layout_json(theirs.to_json()) != _layout_json(ours.to_json()):
            raise SpaceError(
                f"the env's {role} space {_describe(theirs)} differs from the bundle's {_describe(ours)}; {hint}"
            )
        if exact:
            _check_bounds(role, theirs, ours, hint)


def _check_bounds(role: str, theirs: Any, ours: Any, hint: str) -> None:
    """Raise :class:`SpaceError` at the first Box (of two spaces of one layout) whose bounds differ in value."""
    from rlport.bundle.spaces import BoxSpec, leaves

    for (key, a), (_, b) in zip(leaves(theirs), leaves(ours), strict=True):
        if isinstance(a, BoxSpec) and isinstance(b, BoxSpec) and not _same_bounds(a, b):
            where = f"{role} space" + (f" {'.'.join(key)}" if key else "")
            raise SpaceError(
                f"the env's {where} bounds {_describe_bounds(a)} differ from the bundle's {_describe_bounds(b)}; {hint}"
            )


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _same_bounds(a: Any, b: Any) -> bool:
    """Box bounds equal in value: compared in the narrower float type, ``+-float32 max`` read as ``+-inf``."""
    kinds = {np.dtype(a.dtype).kind, np.dtype(b.dtype).kind}
    if kinds != {"f"}:
        return np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)
    narrow = min(np.dtype(a.dtype), np.dtype(b.dtype), key=lambda d: d.itemsize)
    pairs = ((a.low, b.low), (a.high, b.high))
    return all(np.array_equal(_as_value(x, narrow), _as_value(y, narrow)) for x, y in pairs)


def _as_value(bound: np.ndarray, dtype: np.dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        cast = bound.astype(dtype)
    return np.where(np.abs(cast) >= FLOAT32_MAX, np.copysign(np.inf, cast), cast)


def _shown(value: Any) -> str:
    """A bound or list of bounds for a message: floats to 6 significant digits."""
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _describe_bounds(spec: Any) -> str:
    data = spec.to_json()
    return ", ".join(f"{k}={_shown(data[k])}" if not isinstance(data[k], list) or len(data[k]) <= 8 else f"{k}=[...]"
                     for k in ("low", "high"))  # fmt: skip


def _layout_json(data: dict) -> Any:
    if data["type"] == "dict":
        return [(e["key"], _layout_json(e["space"])) for e in data["spaces"]]
    loose = {k: v for k, v in data.items() if k not in ("low", "high")}
    if str(loose.get("dtype", "")).startswith("float"):
        loose["dtype"] = "float"
    return loose


def _describe(spec: Any) -> str:
    data = spec.to_json()
    return ", ".join(f"{k}={_shown(v)}" for k, v in data.items() if not isinstance(v, list) or len(v) <= 8)


@dataclass
class EpisodeStats:
    """Returns and lengths of the episodes run, and how long ``predict`` took."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    predict_ns: list[int] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns)) if self.returns else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "episodes": len(self.returns),
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "returns": [float(r) for r in self.returns],
            "lengths": [int(n) for n in self.lengths],
            "median_predict_us": float(np.median(self.predict_ns) / 1000) if self.predict_ns else None,
        }


def run_episodes(
    policy: Any,
    env: Any,
    episodes: int,
    seed: int | None = 0,
    deterministic: bool = True,
    on_episode: Callable[[int, float], None] | None = None,
    on_step: Callable[[Any, Any], None] | None = None,
) -> EpisodeStats:
    """Run whole episodes; episode ``i`` resets the env with ``seed + i`` (when a seed is given).

    Recurrent policies carry their state and get ``episode_start`` as in SB3.
    """
    stats = EpisodeStats()
    clock = time.perf_counter_ns
    for episode in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + episode)
        state, start, total, length, done = None, np.ones(1, dtype=bool), 0.0, 0, False
        while not done:
            began = clock()
            action, state = policy.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            stats.predict_ns.append(clock() - began)
            if on_step is not None:
                on_step(obs, action)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            start = np.zeros(1, dtype=bool)
        stats.returns.append(total)
        stats.lengths.append(length)
        if on_episode is not None:
            on_episode(episode, total)
    return stats


def _missing_package(env_id: str) -> str | None:
    """What to install for a third-party env id whose package is not installed (None: installed, or unknown)."""
    import importlib.util

    from rlport.deploy_pins import env_package

    package, _ = env_package(env_id)
    if package is None or importlib.util.find_spec(package.replace("-", "_")) is not None:
        return None
    if package == "pybullet":
        return "pybullet (pip install pybullet; its pybullet_envs register with gym, not gymnasium)"
    return f"{package} (pip install {package})"
