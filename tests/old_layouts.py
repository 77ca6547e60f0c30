"""Turn a model saved by today's SB3 into the layouts older SB3 versions wrote.

The rewrites work on the bytes (pickle opcodes re-emitted with other strings), never by
unpickling: gym module names instead of gymnasium, NumPy 1 module names, CUDA storage tags,
torch's legacy (pre-1.6) file format, SB3 1.x keys and extractor layout.
"""

from __future__ import annotations

import base64
import io
import json
import pickletools
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

GYM_NAMES = {"gymnasium": "gym", "numpy._core": "numpy.core"}


def _swap(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        if text == old or text.startswith(old + "."):
            return new + text[len(old) :]
    return text


def _unicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def rewrite_pickle(data: bytes, mapping: dict[str, str]) -> bytes:
    """Re-emit a pickle with string arguments (module names, locations) mapped; frames dropped."""
    ops = list(pickletools.genops(data))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        raw = data[pos:end]
        if op.name == "FRAME":
            continue
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8") and _swap(arg, mapping) != arg:
            raw = _unicode(_swap(arg, mapping))
        elif op.name == "GLOBAL":
            module, name = arg.split(" ", 1)
            raw = b"c" + f"{_swap(module, mapping)}\n{name}\n".encode()
        out += raw
    return bytes(out)


def _rewrite_zip(path: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> Path:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members = change(members)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def gym_era_data(path: Path) -> Path:
    """``data``'s pickled spaces and classes name gym and NumPy 1 modules, as SB3 1.x files do."""

    def change(members: dict[str, bytes]) -> dict[str, bytes]:
        data = json.loads(members["data"])
        for value in data.values():
            if isinstance(value, dict) and ":serialized:" in value:
                raw = rewrite_pickle(base64.b64decode(value[":serialized:"]), GYM_NAMES)
                value[":serialized:"] = base64.b64encode(raw).decode()
                value[":type:"] = value[":type:"].replace("gymnasium.", "gym.")
        members["data"] = json.dumps(data, indent=4).encode()
        members["_stable_baselines3_version"] = b"1.1.0"
        members.pop("system_info.txt", None)
        return members

    return _rewrite_zip(path, change)


def _torch_zip_pickle(raw: bytes, mapping: dict[str, str]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as inner:
        members = {name: inner.read(name) for name in inner.namelist()}
    for name in members:
        if name.endswith("data.pkl"):
            members[name] = rewrite_pickle(members[name], mapping)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as inner:
        for name, data in members.items():
            inner.writestr(name, data)
    return buffer.getvalue()


def cuda_tensors(path: Path) -> Path:
    """``policy.pth`` storages tagged ``cuda:0``, as on a model trained on a GPU."""

    def change(members: dict[str, bytes]) -> dict[str, bytes]:
        members["policy.pth"] = _torch_zip_pickle(members["policy.pth"], {"cpu": "cuda:0"})
        return members

    return _rewrite_zip(path, change)


def _state_dict(raw: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def _save(state: dict[str, torch.Tensor], legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def legacy_torch_format(path: Path) -> Path:
    """``policy.pth`` in torch's pre-1.6 (non-zip) format."""

    def change(members: dict[str, bytes]) -> dict[str, bytes]:
        members["policy.pth"] = _save(_state_dict(members["policy.pth"]), legacy=True)
        return members

    return _rewrite_zip(path, change)


def shared_net_layout(path: Path) -> Path:
    """SB3 < 1.8's MlpExtractor: the first policy layer moved into ``shared_net``."""

    def rename(key: str) -> str:
        head = "mlp_extractor.policy_net."
        if not key.startswith(head):
            return key
        index, rest = key[len(head) :].split(".", 1)
        if int(index) < 2:
            return f"mlp_extractor.shared_net.{index}.{rest}"
        return f"{head}{int(index) - 2}.{rest}"

    def change(members: dict[str, bytes]) -> dict[str, bytes]:
        state = _state_dict(members["policy.pth"])
        members["policy.pth"] = _save({rename(k): v for k, v in state.items()})
        return members

    return _rewrite_zip(path, change)


def text_policy_kwargs(path: Path) -> Path:
    """``policy_kwargs`` written as JSON with classes as text, as when SB3 could not pickle them."""

    def change(members: dict[str, bytes]) -> dict[str, bytes]:
        data = json.loads(members["data"])
        kwargs = data.get("policy_kwargs")
        if isinstance(kwargs, dict) and ":serialized:" in kwargs:
            plain = {k: v for k, v in kwargs.items() if not k.startswith(":")}
            data["policy_kwargs"] = plain
        members["data"] = json.dumps(data).encode()
        return members

    return _rewrite_zip(path, change)


LAYOUTS: dict[str, Callable[[Path], Path]] = {
    "gym-era-data": gym_era_data,
    "cuda-tensors": cuda_tensors,
    "legacy-torch-format": legacy_torch_format,
    "text-policy-kwargs": text_policy_kwargs,
}
