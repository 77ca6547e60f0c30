"""``rlport.report.card``: a folder a person reads (index.html), a Hugging Face model card, results.json.

Example:
    >>> card("cartpole.rlp", "card/", episodes=10)           # doctest: +SKIP
    {'output': 'card', 'files': ['README.md', 'index.html', 'results.json'], ...}
"""

from __future__ import annotations

import base64
import json
import platform
import time
from pathlib import Path
from typing import Any

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.atomic import write_atomic_group
from rlport.bundle.bundle import Bundle
from rlport.errors import BundleError, require
from rlport.report import facts
from rlport.report.modelcard import model_card, results_json
from rlport.report.page import render_page

__all__ = ["card"]


def card(path: str | Path, output: str | Path, episodes: int = 10, seed: int = 0, compare: list[str] | None = None,
         video: bool = False, env_module: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Write ``index.html``, ``README.md``, ``results.json`` (and ``replay.gif`` with ``video``) into ``output``.

    Args:
        path: the bundle.
        output: the folder to write (made if missing; its parent must exist). Files of a previous card are replaced.
        episodes: episodes played in the bundle's env (episode ``i`` seeded ``seed + i``), as ``rlport run``.
        compare: other bundles (e.g. fp16, int8 or student versions) shown in a size-vs-return plot and table,
            each played on the same seeds.
        video: also render one episode as ``replay.gif`` (a note says why not when the env cannot render).
        env_module: the module a recorded ``module:EnvName`` id may import.

    Returns:
        ``{"output", "files", "card"}``: the folder, the files written and every figure shown.

    Raises:
        RlportError: a bundle cannot be read, or the folder cannot be written.
        MissingDependencyError: matplotlib (or imageio for ``video``) is not installed: ``rlport[report]``.
    """
    path, folder = str(path), Path(output)
    require("matplotlib", "report", "rlport card")
    if video:
        require("imageio", "report", "rlport card --video")
    if folder.exists() and not folder.is_dir():
        raise BundleError(f"cannot write the card to {str(folder)!r}: it is a file; give a folder")
    if not folder.parent.is_dir():
        raise BundleError(f"cannot write the card to {str(folder)!r}: {str(folder.parent)!r} does not exist")
    bundle = Bundle.load(path)
    others = [(other, Bundle.load(other)) for other in compare or []]  # every input read before any work
    data = _measure(path, bundle, episodes, seed, env_module, others, video)
    plots = _plots(data)
    files = {
        "index.html": render_page(data, plots).encode("utf-8"),
        "README.md": model_card(data).encode("utf-8"),
        "results.json": (json.dumps(results_json(data), indent=2, sort_keys=True) + "\n").encode("utf-8"),
    }
    if data.get("video", {}).get("bytes"):
        files["replay.gif"] = data["video"].pop("bytes")
    data.get("video", {}).pop("bytes", None)
    data.get("video", {}).pop("uri", None)
    folder.mkdir(exist_ok=True)
    write_atomic_group([(folder / name, content, f"the card's {name}") for name, content in files.items()])
    return {"output": str(folder), "files": sorted(files), "card": data}


def _measure(path: str, bundle: Bundle, episodes: int, seed: int, env_module: str | None,
             others: list[tuple[str, Bundle]], video: bool) -> dict[str, Any]:  # fmt: skip
    policy = NumpyPolicy(bundle)
    prov = bundle.provenance
    recorded = ", ".join(f"{k} {facts.text(prov[k])}" for k in ("python", "numpy", "gymnasium", "gym", "torch",
                                                                  "framework_version") if prov.get(k))  # fmt: skip
    data: dict[str, Any] = {
        "identity": facts.identity(path, bundle), "returns": facts.returns(bundle, policy, episodes, seed, env_module),
        "parity": facts.parity(bundle), "latency": facts.latency(bundle), "size": facts.size(path, bundle),
        "dependencies": facts.dependencies(bundle), "recorded_versions": recorded or "none recorded",
        "made_by": f"rlport {_version()} (Python {platform.python_version()})",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "spaces": _spaces(bundle, env_module),
    }  # fmt: skip
    if others:
        data["compare"] = [_point(path, bundle, data["returns"], data["size"], main=True)]
        for other_path, other in others:
            ret = facts.returns(other, NumpyPolicy(other), episodes, seed, env_module)
            data["compare"].append(_point(other_path, other, ret, facts.size(other_path, other), main=False))
    if video:
        gif, note = _video(bundle, policy, seed, env_module)
        data["video"] = {
            "file": "replay.gif" if gif else None,
            "note": note,
            "bytes": gif,
            "uri": "data:image/gif;base64," + base64.b64encode(gif).decode("ascii") if gif else None,
        }
    return data


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rlport")
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def _video(bundle: Bundle, policy: Any, seed: int, env_module: str | None) -> tuple[bytes | None, str]:
    from rlport.report.video import replay_gif

    return replay_gif(bundle, policy, seed, env_module)


def _spaces(bundle: Bundle, env_module: str | None) -> dict[str, Any] | None:
    """``rlport verify``'s spaces check against the env made here (None when it cannot be made)."""
    from rlport.envs import make_env
    from rlport.verify.checks import check_spaces

    try:
        env = make_env(bundle.env, env_module=env_module)
    except Exception:  # noqa: BLE001 - the returns section already says why the env is not available
        return None
    try:
        return check_spaces(bundle, env).to_json()
    finally:
        env.close()


def _point(path: str, bundle: Bundle, ret: dict[str, Any], size: dict[str, Any], main: bool) -> dict[str, Any]:
    available = ret.get("available")
    return {"label": Path(path).name, "main": main, "bytes": size["bytes"], "parameters": size["parameters"],
            "dtypes": size["dtypes"], "mean": ret["mean"] if available else None,
            "std": ret["std"] if available else None, "note": None if available else ret.get("reason")}  # fmt: skip


def _plots(data: dict[str, Any]) -> dict[str, str]:
    from rlport.report.plots import latency_plot, returns_plot, tradeoff_plot

    plots = {}
    if data["returns"].get("available"):
        plots["returns"] = returns_plot(data["returns"])
    if data["latency"]:
        plots["latency"] = latency_plot(data["latency"])
    if len(data.get("compare") or []) >= 2:
        plots["tradeoff"] = tradeoff_plot(data["compare"])
    return plots
