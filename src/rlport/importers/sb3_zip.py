"""Read an SB3 ``.zip`` (any SB3 version from 1.0, sb3-contrib too) without executing its pickles.

``data`` is read as JSON. The few values only its ``:serialized:`` fields hold (spaces, the
policy class, class-valued ``policy_kwargs``) go through rlport's allow-list pickle reader, and
``policy.pth`` through its torch-free tensor reader. Nothing is imported from the file.

Example:
    >>> bundle = rlport.import_sb3("model.zip", vecnormalize="vecnormalize.pkl")   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlport.errors import BundleError, UnsupportedError
from rlport.importers import safe_pickle
from rlport.importers.sb3_skeleton import module
from rlport.importers.torch_pth import read_torch_file

__all__ = ["SB3File", "read_sb3_zip", "MAX_MEMBER_SIZE"]

MAX_MEMBER_SIZE = 1 << 30
MAX_MEMBERS = 64
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


def _members(path: str) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: no such file") from exc
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise BundleError(f"{path}: not an SB3 model (a ZIP archive was expected: {exc})") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BundleError(f"{path}: {len(infos)} members, more than an SB3 model has ({MAX_MEMBERS})")
        members = {}
        for info in infos:
            name = info.filename
            if name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name:
                raise BundleError(f"{path}: refused member {name!r}: not a safe relative path")
            if info.file_size > MAX_MEMBER_SIZE:
                raise BundleError(f"{path}: member {name!r} claims {info.file_size} bytes, over {MAX_MEMBER_SIZE}")
            try:
                members[name] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise BundleError(f"{path}: member {name!r} is damaged ({exc})") from exc
    for required in ("data", "policy.pth"):
        if required not in members:
            raise BundleError(f"{path}: no {required!r} member; is this an SB3 model saved with model.save()?")
    return members


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


def _space(obj: Any, what: str) -> Any:
    """An inert gym/gymnasium space record as a skeleton space (class name + attributes)."""
    name = (safe_pickle.global_name(obj) or "").rsplit(".", 1)[-1]
    attrs = _attrs(obj)
    try:
        if name == "Box":
            shape = tuple(int(v) for v in (attrs.get("_shape") or attrs.get("shape") or np.shape(attrs["low"])))
            low, high = np.asarray(attrs["low"]), np.asarray(attrs["high"])
            dtype = np.dtype(attrs.get("dtype", low.dtype))
            return module("Box", shape=shape, dtype=dtype, low=np.broadcast_to(low, shape).astype(dtype),
                          high=np.broadcast_to(high, shape).astype(dtype))  # fmt: skip
        if name == "Discrete":
            return module("Discrete", n=int(attrs["n"]), start=int(attrs.get("start", 0)), shape=())
        if name == "MultiDiscrete":
            nvec = np.asarray(attrs["nvec"])
            start = np.asarray(attrs.get("start", np.zeros_like(nvec)))
            return module("MultiDiscrete", nvec=nvec, start=start, shape=nvec.shape,
                          dtype=np.dtype(attrs.get("dtype", np.int64)))  # fmt: skip
        if name == "MultiBinary":
            n = attrs["n"]
            shape = tuple(int(v) for v in np.atleast_1d(n))
            return module("MultiBinary", n=n, shape=shape)
        if name == "Dict":
            spaces = attrs["spaces"]
            return module("Dict", spaces={str(k): _space(v, f"{what}[{k!r}]") for k, v in spaces.items()})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{what}: a {name} space record lacks what it needs ({exc})") from exc
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
    out, names = dict(kwargs), {}
    for key in ("activation_fn", "features_extractor_class"):
        if key in out:
            name = _class_name(out[key])
            if name is None:
                raise UnsupportedError(f"{what}: cannot tell which class {key} is ({out[key]!r})")
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


def _variables(members: dict[str, bytes], path: str) -> dict[str, np.ndarray]:
    for name in ("pytorch_variables.pth", "tensors.pth"):
        if name in members:
            return read_torch_file(members[name], what=f"{path}: {name}")
    return {}


def read_sb3_zip(path: str | Path) -> SB3File:
    """Read and decode an SB3 ``.zip``; never executes any of its pickles.

    Raises:
        BundleError: not an SB3 model, truncated or corrupt.
        UnsafeFileError: a pickle asks for something outside the allow-list (named in the message).
        UnsupportedError: a policy rlport cannot express (custom extractor, unknown space).
    """
    path = str(path)
    members = _members(path)
    try:
        data = json.loads(members["data"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: its 'data' member is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: its 'data' member is not a JSON object")
    for key in ("observation_space", "action_space", "policy_class"):
        if key not in data:
            raise BundleError(f"{path}: 'data' lacks {key!r}; is this an SB3 model?")
    policy_class = _class_name(decode_entry(data["policy_class"], f"{path}: data['policy_class']"))
    if not policy_class:
        raise BundleError(f"{path}: cannot tell the policy class from data['policy_class']")
    kwargs, class_names = _policy_kwargs(data.get("policy_kwargs"), f"{path}: data['policy_kwargs']")
    for key in ("use_sde",):
        if key in data and key not in kwargs:
            kwargs[key] = bool(data[key])
    version = members.get("_stable_baselines3_version", b"").decode("utf-8", "replace").strip() or None
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
        state_dict=read_torch_file(members["policy.pth"], what=f"{path}: policy.pth"),
        system_info=_system_info(members.get("system_info.txt", b"").decode("utf-8", "replace")),
        class_names=class_names,
        variables=_variables(members, path),
    )
