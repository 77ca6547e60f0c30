"""Read an SB3 ``.zip`` (any SB3 version from 1.0, sb3-contrib too) without executing its pickles.

``data`` is read as JSON. The few values only its ``:serialized:`` fields hold (spaces, the
policy class, class-valued ``policy_kwargs``) go through rlport's allow-list pickle reader, and
``policy.pth`` through its torch-free tensor reader. Nothing is imported from the file.

Every byte is untrusted: the file must be a regular file; only the members rlport uses are
inflated (never the optimizer states), in chunks, each within its declared size and
:data:`MAX_MEMBER_SIZE`, all within :func:`~rlport.readers.untrusted.zip_limit` of the file's
size; ``data`` is at most :data:`MAX_DATA_SIZE` and nests at most ``MAX_NESTING`` deep; every
field read is type-checked (a wrong one is a BundleError naming it).

Example:
    >>> bundle = rlport.import_sb3("model.zip", vecnormalize="vecnormalize.pkl")   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlport.bundle.spaces import MAX_ELEMENTS
from rlport.errors import BundleError, SpaceError, UnsupportedError
from rlport.frameworks.sb3.skeleton import module
from rlport.readers import safe_pickle
from rlport.readers.torch_pth import read_torch_file
from rlport.readers.untrusted import ZipReader, check_nesting, echo, open_regular, zip_limit

__all__ = ["SB3File", "read_sb3_zip", "MAX_MEMBER_SIZE", "MAX_MEMBERS", "MAX_DATA_SIZE", "MAX_SPACE_DIMS"]

MAX_MEMBER_SIZE = 1 << 30
"""The largest member an SB3 ``.zip`` may declare (1 GiB); the whole archive is bounded by ``untrusted.zip_limit``."""
MAX_MEMBERS = 64
"""The most members an SB3 ``.zip`` may have (SB3 writes at most about ten)."""
MAX_DATA_SIZE = 16 << 20
"""The largest ``data`` member (SB3's JSON) read (16 MiB): real ones hold a few KiB, more with image spaces."""
MAX_SPACE_DIMS = 32
"""The most dimensions a space in ``data`` may have (numpy 1's limit; real spaces have at most 3)."""
_READ = {"data", "policy.pth", "pytorch_variables.pth", "tensors.pth", "_stable_baselines3_version", "system_info.txt"}
_CLASS_TEXT = re.compile(r"<class '([\w.]+)'>")
_EXTRACTORS = {"FlattenExtractor", "NatureCNN", "CombinedExtractor"}


@dataclass
class SB3File:
    """What an SB3 ``.zip`` holds, decoded into inert data."""

    path: str
    data: dict[str, Any]
    sb3_version: str | None
    policy_class: str
    observation_space: Any
    action_space: Any
    policy_kwargs: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    system_info: dict[str, str] = field(default_factory=dict)
    class_names: dict[str, str] = field(default_factory=dict)
    """Full dotted names of the class-valued ``policy_kwargs`` (which hold short names)."""
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    """SB3's torch variables (``pytorch_variables.pth``; ``tensors.pth`` before 1.0): SAC's ``log_ent_coef``..."""


def _safe_name(name: str) -> bool:
    return not (name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name)


def _check_infos(infos: list[zipfile.ZipInfo], path: str) -> None:
    if len(infos) > MAX_MEMBERS:
        raise BundleError(f"{path}: {len(infos)} members, more than an SB3 model has ({MAX_MEMBERS})")
    if len({info.filename for info in infos}) != len(infos):
        raise BundleError(f"{path}: two members have the same name; an SB3 model's names are unique")
    for info in infos:
        name = info.filename
        if not _safe_name(name):
            raise BundleError(f"{path}: refused member {echo(name)}: not a safe relative path")
        limit = MAX_DATA_SIZE if name == "data" else MAX_MEMBER_SIZE
        if info.file_size > limit:
            raise BundleError(f"{path}: member {echo(name)} claims {info.file_size} bytes, over {limit}")


def _members(path: str) -> tuple[dict[str, bytes], int]:
    """The members rlport reads (never the optimizer states) within the archive's budget, and its size."""
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise BundleError(f"{path}: not an SB3 model (a ZIP archive was expected: {echo(str(exc))})") from exc
        with archive:
            infos = archive.infolist()
            _check_infos(infos, path)
            reader = ZipReader(archive, zip_limit(size), path)
            members = {info.filename: reader.read(info) for info in infos if info.filename in _READ}
    for required in ("data", "policy.pth"):
        if required not in members:
            raise BundleError(f"{path}: no {required!r} member; is this an SB3 model saved with model.save()?")
    return members, size


def decode_entry(entry: Any, what: str) -> Any:
    """A ``data`` value: plain JSON as is; a ``:serialized:`` one through the allow-list reader."""
    if not isinstance(entry, dict) or ":serialized:" not in entry:
        return entry
    try:
        raw = base64.b64decode(entry[":serialized:"], validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BundleError(f"{what}: its ':serialized:' field is not base64 ({exc})") from exc
    return safe_pickle.loads(raw, what=what)


def _attrs(obj: Any) -> dict[str, Any]:
    return obj.attributes() if isinstance(obj, safe_pickle.Instance) else {}


def _shape(value: Any, what: str) -> tuple[int, ...]:
    """A space's shape from the file: at most MAX_SPACE_DIMS non-negative sizes, MAX_ELEMENTS elements in all."""
    items = list(value) if isinstance(value, (tuple, list)) else np.asarray(value).reshape(-1).tolist()
    shape = tuple(int(v) for v in items) if len(items) <= MAX_SPACE_DIMS else None
    if shape is None or any(n < 0 for n in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise SpaceError(f"{what}: shape {echo(value)} is not at most {MAX_SPACE_DIMS} non-negative sizes with at most "
                         f"{MAX_ELEMENTS} elements in all")  # fmt: skip
    return shape


def _number_dtype(value: Any) -> np.dtype:
    dtype = np.dtype(value)
    if dtype.kind not in "biuf":
        raise ValueError(f"dtype {dtype} is not a number type")
    return dtype


def _space(obj: Any, what: str) -> Any:
    """An inert gym/gymnasium space record as a skeleton space (class name + attributes)."""
    name = (safe_pickle.global_name(obj) or "").rsplit(".", 1)[-1]
    attrs = _attrs(obj)
    try:
        if name == "Box":
            low, high = np.asarray(attrs["low"]), np.asarray(attrs["high"])
            shape = _shape(attrs.get("_shape") or attrs.get("shape") or low.shape, what)
            dtype = _number_dtype(attrs.get("dtype", low.dtype))
            return module("Box", shape=shape, dtype=dtype, low=np.broadcast_to(low, shape).astype(dtype),
                          high=np.broadcast_to(high, shape).astype(dtype))  # fmt: skip
        if name == "Discrete":
            return module("Discrete", n=int(attrs["n"]), start=int(attrs.get("start", 0)), shape=())
        if name == "MultiDiscrete":
            nvec = np.asarray(attrs["nvec"])
            _shape(nvec.shape, what)
            start = np.asarray(attrs.get("start", np.zeros_like(nvec)))
            return module("MultiDiscrete", nvec=nvec, start=start, shape=nvec.shape,
                          dtype=_number_dtype(attrs.get("dtype", np.int64)))  # fmt: skip
        if name == "MultiBinary":
            n = attrs["n"]
            return module("MultiBinary", n=n, shape=_shape(np.atleast_1d(n), what))
        if name == "Dict":
            spaces = attrs["spaces"]
            if not all(isinstance(k, str) for k in spaces):
                raise SpaceError(f"{what}: a Dict space's keys should be strings, found {echo(list(spaces))}")
            return module("Dict", spaces={k: _space(v, f"{what}[{echo(k, 60)}]") for k, v in spaces.items()})
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BundleError(f"{what}: a {name} space record lacks what it needs ({echo(str(exc), 200)})") from exc
    raise UnsupportedError(f"{what}: space {name or type(obj).__name__} is not supported")


def _class_name(value: Any) -> str | None:
    """The dotted name of a class reference: an inert GlobalRef or SB3's ``"<class '...'>"`` text."""
    name = safe_pickle.global_name(value)
    if name:
        return name
    if isinstance(value, str):
        match = _CLASS_TEXT.fullmatch(value.strip())
        return match.group(1) if match else None
    return None


def _policy_kwargs(raw: Any, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The kwargs (classes by short name, as the skeleton builder takes them) and the full class names."""
    kwargs = decode_entry(raw, what) if raw is not None else {}
    if not isinstance(kwargs, dict):
        raise BundleError(f"{what}: expected a dict, found {type(kwargs).__name__}")
    if not all(isinstance(key, str) for key in kwargs):
        raise BundleError(f"{what}: its keys should be argument names, found {echo(list(kwargs))}")
    out, names = dict(kwargs), {}
    for key in ("activation_fn", "features_extractor_class"):
        if key in out:
            name = _class_name(out[key])
            if name is None:
                raise UnsupportedError(f"{what}: cannot tell which class {key} is ({echo(out[key])})")
            names[key] = name
            out[key] = name.rsplit(".", 1)[-1]
    for key, value in out.items():
        if key.endswith("_class") and key not in names and _class_name(value):
            names[key] = _class_name(value)  # optimizer_class ...: a GlobalRef or "<class '...'>" text
    extractor = out.get("features_extractor_class")
    if extractor is not None and extractor not in _EXTRACTORS:
        raise UnsupportedError(
            f"the policy uses a custom features extractor {extractor}; supported: {', '.join(sorted(_EXTRACTORS))}"
        )
    return out, names


def _system_info(text: str) -> dict[str, str]:
    """SB3's ``system_info.txt`` ("- OS: ...", "- PyTorch: 1.13.0", ...) as a dict."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.strip().lstrip("-").partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _variables(members: dict[str, bytes], path: str, size: int) -> dict[str, np.ndarray]:
    for name in ("pytorch_variables.pth", "tensors.pth"):
        if name in members:
            # None: a variable SB3 did not use (log_ent_coef with a fixed ent_coef, which to_sb3 then restores)
            return read_torch_file(members[name], what=f"{path}: {name}", file_size=size, skip_none=True)
    return {}


def _data(raw: bytes, path: str) -> dict[str, Any]:
    """The ``data`` member: a JSON object, nested at most MAX_NESTING deep, with the entries every SB3 file has."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{path}: its 'data' member is not JSON ({echo(str(exc) or type(exc).__name__)})") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: its 'data' member is not a JSON object")
    check_nesting(data, f"{path}: its 'data' member")
    for key in ("observation_space", "action_space", "policy_class"):
        if key not in data:
            raise BundleError(f"{path}: 'data' lacks {key!r}; is this an SB3 model?")
    return data


def read_sb3_zip(path: str | Path) -> SB3File:
    """Read and decode an SB3 ``.zip``; never executes any of its pickles.

    Raises:
        BundleError: not an SB3 model, truncated or corrupt.
        UnsafeFileError: a pickle asks for something outside the allow-list (named in the message).
        UnsupportedError: a policy rlport cannot express (custom extractor, unknown space).
    """
    path = str(path)
    members, size = _members(path)  # nested archives (policy.pth) are bounded by this file's size too
    data = _data(members["data"], path)
    policy_class = _class_name(decode_entry(data["policy_class"], f"{path}: data['policy_class']"))
    if not policy_class:
        raise BundleError(f"{path}: cannot tell the policy class from data['policy_class']")
    kwargs, class_names = _policy_kwargs(data.get("policy_kwargs"), f"{path}: data['policy_kwargs']")
    use_sde = kwargs.get("use_sde", data.get("use_sde", False))
    if not isinstance(use_sde, (bool, np.bool_)):
        raise BundleError(f"{path}: use_sde should be true or false, found {echo(use_sde)}")
    if "use_sde" in kwargs or "use_sde" in data:
        kwargs["use_sde"] = bool(use_sde)
    version = members.get("_stable_baselines3_version", b"").decode("utf-8", "replace").strip() or None
    if version is not None and (len(version) > 64 or not version.isprintable()):
        raise BundleError(f"{path}: _stable_baselines3_version holds {echo(version)}, not a version number")
    return SB3File(
        path=path,
        data=data,
        sb3_version=version,
        policy_class=policy_class,
        observation_space=_space(
            decode_entry(data["observation_space"], f"{path}: observation_space"), "observation_space"
        ),
        action_space=_space(decode_entry(data["action_space"], f"{path}: action_space"), "action_space"),
        policy_kwargs=kwargs,
        state_dict=read_torch_file(members["policy.pth"], what=f"{path}: policy.pth", file_size=size),
        system_info=_system_info(members.get("system_info.txt", b"").decode("utf-8", "replace")),
        class_names=class_names,
        variables=_variables(members, path, size),
    )
