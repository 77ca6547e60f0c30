"""The subcommands that take a bundle to another machine: fingerprint, verify, requirements, pack.

``fingerprint`` records the env's dynamics where the bundle was made; ``requirements`` and ``pack`` say and
bundle what the device needs; ``verify`` checks there that the bundle behaves as it did at the source.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rlport.cli.output import EXIT_CHECK_FAILED, EXIT_OK, emit, table

__all__ = ["cmd_fingerprint", "cmd_pack", "cmd_requirements", "cmd_verify"]


def _render_checks(r: dict[str, Any]) -> str:
    rows = [("check", "result", "measured", "tolerance", "detail")]
    rows += [(c["name"], c["status"], c["measured"], c["tolerance"], c["detail"][:120]) for c in r["checks"]]
    return table(rows) + "\n\n" + ("OK: no check failed" if r["ok"] else "FAILED: see the FAIL rows")


def _load_fingerprint_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    from rlport.errors import BundleError

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        tensors = {
            name: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"]) for name, t in data["tensors"].items()
        }
        return data["meta"], tensors
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path} is not a fingerprint written by `rlport fingerprint`: {exc}") from exc


def cmd_verify(args: argparse.Namespace) -> int:
    """``rlport verify``: check that a bundle behaves here as it did at the source (``verify.checks.verify``)."""
    from rlport.cli.progress import Progress
    from rlport.verify import checks

    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else None
    extra = _load_fingerprint_file(args.fingerprint) if args.fingerprint else None
    with Progress(args.episodes, "episodes") as bar:
        report = checks.verify(args.bundle, env_id=args.env, env_kwargs=env_kwargs, episodes=args.episodes,
                               seed=args.seed, progress=lambda i, r: bar.update(note=f"return {r:.1f}"),
                               fingerprint=extra)  # fmt: skip
    emit(report.to_json(), args.json, _render_checks)
    return EXIT_CHECK_FAILED if report.failed else EXIT_OK


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """``rlport fingerprint``: record an env's dynamics to a JSON file (``record_fingerprint``)."""
    from rlport.bundle.manifest import EnvSpec
    from rlport.verify.fingerprint import record_fingerprint

    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    meta, tensors = record_fingerprint(EnvSpec(args.env, env_kwargs), episodes=args.episodes, steps=args.steps,
                                       seed=args.seed)  # fmt: skip
    encoded = {name: {"dtype": t.dtype.name, "shape": list(t.shape), "data": t.reshape(-1).tolist()}
               for name, t in tensors.items()}  # fmt: skip
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"meta": meta, "tensors": encoded}, handle)
    emit({"output": args.output, **meta}, args.json, lambda r: f"fingerprint of {args.env} written to {r['output']}")
    return EXIT_OK


def cmd_requirements(args: argparse.Namespace) -> int:
    """``rlport requirements``: print the pinned requirements to run a bundle (``deploy.requirements``)."""
    from rlport.bundle.bundle import Bundle
    from rlport.deploy import requirements

    lines = requirements(Bundle.load(args.bundle), backend=args.backend, with_env=not args.no_env)
    emit({"requirements": lines}, args.json, lambda r: "\n".join(r["requirements"]))
    return EXIT_OK


def cmd_pack(args: argparse.Namespace) -> int:
    """``rlport pack``: write a folder to copy to the device (``deploy.pack``)."""
    from rlport.deploy import pack

    folder = pack(args.bundle, args.output, backend=args.backend)
    files = sorted(p.name for p in folder.iterdir())
    emit({"output": str(folder), "files": files}, args.json, lambda r: f"packed into {r['output']}: {', '.join(files)}")
    return EXIT_OK
