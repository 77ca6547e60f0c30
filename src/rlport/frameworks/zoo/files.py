"""The files of an RL Zoo run folder, read as untrusted input.

``config.yml`` and ``args.yml`` (YAML: size, nesting, alias expansion and the one python tag the
zoo writes are checked; every field rlport uses is type-checked), the wrappers they name, and
``evaluations.npz`` (numeric arrays only, parsed without numpy's loader).

Example:
    >>> args = read_zoo_yaml(Path("ppo/CartPole-v1_1/CartPole-v1/args.yml"))   # doctest: +SKIP
    >>> args["env"]                                                            # doctest: +SKIP
    'CartPole-v1'
"""

from __future__ import annotations

import ast
import io
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rlport.bundle.manifest import MAX_FRAME_STACK, MAX_STEPS, WrapperSpec
from rlport.errors import BundleError, MissingDependencyError, UnsafeFileError
from rlport.readers.untrusted import ECHO_LENGTH, MAX_NESTING, ZipReader, check_nesting, echo, read_regular, zip_limit

__all__ = [
    "read_zoo_yaml",
    "literal",
    "text_field",
    "plain_kwargs",
    "wrappers_from_config",
    "published_returns",
    "run_of_model",
    "RUN_FILES",
    "MAX_YAML_SIZE",
    "MAX_EVALUATIONS_SIZE",
]

MAX_YAML_SIZE = 1 << 20
"""The largest zoo ``config.yml`` or ``args.yml`` read (1 MiB); real ones hold about 1 KiB."""
MAX_EVALUATIONS_SIZE = 64 << 20
"""The largest ``evaluations.npz`` read (64 MiB); real ones hold a few KiB."""

_MAX_NPY_HEADER = 10_000  # numpy's own limit on a .npy header
_ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"
_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"


def _parser(yaml: Any) -> type:
    """libyaml's parser when PyYAML has it (ten times faster), else PyYAML's reader, scanner and parser."""
    try:
        from yaml.cyaml import CParser
    except ImportError:
        return yaml.SafeLoader

    class CSafeParser(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml's events, composed in Python (so that :func:`_loader` bounds the nesting), then SafeLoader's
        constructor and resolver; CParser's own composer, which no depth bounds, is never used."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)

    return CSafeParser


def _loader(yaml: Any, path: Path, tuples: bool = False) -> type:
    """SafeLoader plus the python tag the zoo writes (OrderedDict; with ``tuples``, also ``!!python/tuple``,
    read as a list, which the SB2 zoo writes), nesting bounded while composing."""

    class ZooLoader(_parser(yaml)):
        """Any python tag but the zoo's OrderedDict is refused; nodes nest at most MAX_NESTING deep."""

        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > MAX_NESTING:
                    raise BundleError(f"{path}: YAML nested more than {MAX_NESTING} levels deep; no zoo file is")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    def ordered_dict(loader: Any, node: Any) -> dict[str, Any]:
        if not isinstance(node, yaml.SequenceNode) or len(node.value) > 1:
            raise BundleError(f"{path}: an OrderedDict is written as the zoo writes it, one sequence of "
                              f"[key, value] pairs; found a {type(node).__name__}")  # fmt: skip
        if not node.value:
            return {}
        if not isinstance(node.value[0], yaml.SequenceNode):
            raise BundleError(f"{path}: an OrderedDict's argument should be a sequence of [key, value] pairs")
        pairs = loader.construct_sequence(node.value[0], deep=True)
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise UnsafeFileError(f"{path}: an OrderedDict entry is not a [key, value] pair with a string key")
        return dict(pairs)

    def refuse(loader: Any, suffix: str, node: Any) -> None:
        raise UnsafeFileError(
            f"{path}: refused YAML tag !!python/{suffix[:ECHO_LENGTH]}; rlport never runs code from model files"
        )

    ZooLoader.add_constructor(_ORDERED_DICT_TAG, ordered_dict)
    if tuples:
        ZooLoader.add_constructor(_TUPLE_TAG, lambda loader, node: loader.construct_sequence(node, deep=True))
    ZooLoader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    return ZooLoader


def read_zoo_yaml(path: Path, tuples: bool = False) -> dict[str, Any]:
    """A zoo ``config.yml``/``args.yml``, read safely: a mapping with string keys, nothing executed.

    ``tuples``: also read ``!!python/tuple`` (as a list), as SB2 zoo files hold them.

    Raises:
        BundleError: not a regular file, over MAX_YAML_SIZE, not YAML, nested or expanding beyond
            the limits (aliases of aliases), or not a mapping with string keys.
        UnsafeFileError: a python tag other than the zoo's OrderedDict (and tuple, with ``tuples``).
    """
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError('reading RL Zoo folders needs PyYAML; pip install "rlport[yaml]"') from exc
    raw = read_regular(path, MAX_YAML_SIZE, str(path))
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_loader(yaml, path, tuples))  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise BundleError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        if getattr(exc, "problem", None) == "exceeded maximum nesting depth":  # libyaml's own bound (1000)
            raise BundleError(f"{path}: YAML nested more than {MAX_NESTING} levels deep; no zoo file is") from exc
        raise BundleError(f"{path} is not valid YAML: {echo(str(exc), 300)}") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # int('9' * 5000), a bad date...
        raise BundleError(f"{path}: a YAML value cannot be read ({echo(str(exc) or type(exc).__name__)})") from exc
    check_nesting(data, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise BundleError(f"{path}: expected a mapping with string keys, found {echo(data)}")
    return data


def text_field(mapping: dict[str, Any], key: str, what: str) -> str | None:
    """``mapping[key]``: a string, or None when absent or null."""
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise BundleError(f"{what}: {key} should be a string, found {echo(value)}")
    return value


def literal(value: Any, what: str) -> Any:
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
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as exc:
        raise BundleError(f"{what}: {echo(value)} is not a Python literal nor a dict(...) of literals") from exc


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))


def plain_kwargs(value: Any, what: str) -> dict[str, Any]:
    """Keyword arguments from a zoo file: a dict with string keys and JSON-able values (None -> {})."""
    value = literal(value, what)
    if value is None:
        return {}
    check_nesting(value, what)
    if not isinstance(value, dict) or not _plain(value):
        raise BundleError(f"{what}: expected a dict of plain values (strings, numbers, lists), found {echo(value)}")
    return dict(value)


def _count(kwargs: dict[str, Any], key: str, high: int, what: str, default: int | None = None) -> int:
    value = kwargs.get(key, default)
    if type(value) is not int or not 1 <= value <= high:
        raise BundleError(f"{what}: {key} should be an integer from 1 to {high}, found {echo(value)}")
    return value


def _wrapper_entry(entry: Any, what: str) -> tuple[str, dict[str, Any]]:
    """One ``env_wrapper`` entry: a class name, or ``{name: kwargs}`` with exactly one name."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1 and isinstance(next(iter(entry)), str):
        name, kwargs = next(iter(entry.items()))
        return name, plain_kwargs(kwargs, f"{what} {echo(name, 60)}")
    raise BundleError(f"{what}: an entry should be a wrapper name or {{name: kwargs}}, found {echo(entry)}")


def wrappers_from_config(config: dict[str, Any], what: str = "config.yml") -> list[WrapperSpec]:
    """``env_wrapper`` (a name, a {name: kwargs} dict, or a list of them) and ``frame_stack`` as entries.

    Raises:
        BundleError: an entry of the wrong shape, or an argument of the wrong type or out of range
            (TimeLimit without ``max_episode_steps``, ``frame_stack`` outside 1..MAX_FRAME_STACK...).
    """
    raw = config.get("env_wrapper")
    entries = raw if isinstance(raw, list) else [raw] if raw is not None else []
    wrappers = []
    for entry in entries:
        name, kwargs = _wrapper_entry(entry, f"{what} env_wrapper")
        short = name.rsplit(".", 1)[-1]
        if short == "TimeFeatureWrapper":
            steps = _count(kwargs, "max_steps", MAX_STEPS, f"{what} TimeFeatureWrapper", default=1000)
            wrappers.append(WrapperSpec("time_feature", {"max_steps": steps}))
        elif short == "TimeLimit":
            steps = _count(kwargs, "max_episode_steps", MAX_STEPS, f"{what} TimeLimit")
            wrappers.append(WrapperSpec("time_limit", {"max_episode_steps": steps}))
        else:
            wrappers.append(WrapperSpec(name, kwargs))  # recorded; `rlport run` refuses what it cannot build
    if config.get("frame_stack") is not None:
        n_stack = _count(config, "frame_stack", MAX_FRAME_STACK, what)
        wrappers.append(WrapperSpec("frame_stack", {"n_stack": n_stack}))
    return wrappers


def _npy_header(raw: bytes, what: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """shape, Fortran order, dtype and data offset of a ``.npy`` (format 1 to 3), parsed without numpy's loader."""
    size = {1: 2, 2: 4, 3: 4}.get(raw[6]) if raw[:6] == b"\x93NUMPY" and len(raw) >= 8 else None
    length = int.from_bytes(raw[8 : 8 + size], "little") if size else 0
    header = raw[8 + (size or 0) : 8 + (size or 0) + length]
    try:
        if not size or length > _MAX_NPY_HEADER or len(header) != length:
            raise ValueError("no .npy magic or header")
        meta = ast.literal_eval(header.decode("utf-8"))
        shape, fortran = meta["shape"], meta["fortran_order"]
        if not isinstance(meta["descr"], str) or not isinstance(fortran, bool) or not isinstance(shape, tuple):
            raise ValueError(f"unexpected header {echo(meta)}")
        dtype = np.dtype(meta["descr"])
    except (ValueError, SyntaxError, TypeError, KeyError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise BundleError(f"{what} is not a numeric .npy array ({echo(str(exc), 200)})") from exc
    if dtype.kind not in "biuf" or len(shape) > 3 or not all(type(n) is int and n >= 0 for n in shape):
        raise BundleError(f"{what} holds a {dtype} array of shape {echo(shape)}; expected numbers in at most 3 dims")
    return shape, fortran, dtype, 8 + size + length


def _npy(raw: bytes, what: str) -> np.ndarray:
    """A ``.npy`` member: a numeric array of at most 3 dimensions whose data is exactly what its header says."""
    shape, fortran, dtype, offset = _npy_header(raw, what)
    count = math.prod(shape)
    if len(raw) - offset != count * dtype.itemsize:
        raise BundleError(f"{what}: its header claims shape {echo(shape)} ({count * dtype.itemsize} bytes) but it "
                          f"holds {len(raw) - offset} bytes")  # fmt: skip
    return np.frombuffer(raw, dtype, count, offset).reshape(shape, order="F" if fortran else "C")


def _npz(path: Path) -> dict[str, np.ndarray]:
    """``results`` and ``timesteps`` of an ``evaluations.npz``, within the archive's expansion budget."""
    raw = read_regular(path, MAX_EVALUATIONS_SIZE, str(path))
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(f"{path}: not an .npz archive ({echo(str(exc))})") from exc
    with archive:
        reader = ZipReader(archive, zip_limit(len(raw)), str(path))
        names = set(archive.namelist())
        arrays = {}
        for key in ("results", "timesteps"):
            if f"{key}.npy" not in names:
                raise BundleError(f"{path}: no {key!r} array; is this the zoo's evaluations.npz?")
            arrays[key] = _npy(reader.read(f"{key}.npy"), f"{path}: {key}")
    return arrays


def published_returns(path: Path) -> dict[str, Any]:
    """The run's final published evaluation (the last row of ``evaluations.npz``).

    Raises:
        BundleError: not a regular file, over MAX_EVALUATIONS_SIZE, not an .npz of numeric arrays,
            or arrays of the wrong shape or with non-finite values.
    """
    arrays = _npz(path)
    results, timesteps = arrays["results"].astype(np.float64), arrays["timesteps"]
    if results.ndim < 2 or results.shape[0] == 0 or results[0].size == 0:
        raise BundleError(f"{path}: 'results' should be one row of returns per evaluation, found shape "
                          f"{results.shape}")  # fmt: skip
    last = results.reshape(results.shape[0], -1)[-1]  # some runs store (evaluations, episodes, 1)
    if not np.all(np.isfinite(last)):
        raise BundleError(f"{path}: the last evaluation's returns are not all finite numbers")
    step = timesteps.reshape(-1)[-1].item() if timesteps.size else None
    if step is not None and not (float(step).is_integer() and 0 <= step < 1 << 62):
        raise BundleError(f"{path}: 'timesteps' should count steps, found {echo(step)}")
    return {
        "published_return_mean": float(last.mean()),
        "published_return_std": float(last.std()),
        "published_episodes": int(last.size),
        "published_at_timesteps": int(step) if step is not None else None,
    }


RUN_FILES = ("config.yml", "args.yml", "vecnormalize.pkl")
"""What the zoo writes into ``RUN/ENV/`` beside the model ``RUN/ENV.zip``: any one marks a run folder."""


def run_of_model(model_zip: str | Path) -> Path | None:
    """The RL Zoo run folder ``RUN`` when ``model_zip`` is its model ``RUN/ENV.zip``, else None.

    A model sits in a run when the folder beside it named after it (``RUN/ENV/``) holds one of
    :data:`RUN_FILES`; the model alone then acts without the run's statistics and wrappers.

    Example:
        >>> run_of_model("logs/a2c/Pendulum-v1_1/Pendulum-v1.zip")          # doctest: +SKIP
        PosixPath('logs/a2c/Pendulum-v1_1')
    """
    path = Path(model_zip)
    meta = path.parent / path.stem
    if path.suffix != ".zip" or not meta.is_dir():
        return None
    return path.parent if any((meta / name).is_file() for name in RUN_FILES) else None
