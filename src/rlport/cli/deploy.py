"""The subcommands that take a bundle to another machine: fingerprint, verify, requirements, pack.

``fingerprint`` records the env's dynamics where the bundle was made; ``requirements`` and ``pack`` say and
bundle what the device needs; ``verify`` checks there that the bundle behaves as it did at the source.
"""

from __future__ import annotations

import argparse
from typing import Any

from rlport.cli.output import EXIT_CHECK_FAILED, EXIT_OK, emit, table

__all__ = ["cmd_fingerprint", "cmd_pack", "cmd_requirements", "cmd_verify"]


def _render_checks(r: dict[str, Any]) -> str:
    """The verify report as a table fitted to the terminal (100 columns when not a terminal), then the verdict."""
    import shutil

    from rlport.verify.render import render_report

    return render_report(r, shutil.get_terminal_size((100, 24)).columns)


def cmd_verify(args: argparse.Namespace) -> int:
    """``rlport verify``: check that a bundle behaves here as it did at the source (``verify.checks.verify``)."""
    from rlport.cli.fingerprint_file import load_fingerprint_file
    from rlport.cli.progress import Progress
    from rlport.verify import checks

    extra = load_fingerprint_file(args.fingerprint) if args.fingerprint else None
    with Progress(args.episodes, "episodes") as bar:
        report = checks.verify(args.bundle, env_id=args.env, env_kwargs=args.env_kwargs, episodes=args.episodes,
                               seed=args.seed, progress=lambda i, r: bar.update(note=f"return {r:.1f}"),
                               fingerprint=extra, env_module=args.env_module)  # fmt: skip
    emit(report.to_json(), args.json, _render_checks)
    return EXIT_CHECK_FAILED if report.failed else EXIT_OK


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """``rlport fingerprint``: record an env's dynamics to a JSON file (``record_fingerprint``), written atomically."""
    from pathlib import Path

    from rlport.bundle.container import check_destination, write_atomic
    from rlport.bundle.manifest import EnvSpec
    from rlport.cli.fingerprint_file import encode_fingerprint
    from rlport.verify.fingerprint import record_fingerprint

    output = Path(args.output)
    check_destination(output, "the fingerprint")  # before recording, not after
    typed_module = args.env.split(":", 1)[0] if ":" in args.env else None  # the user typed the id: theirs
    meta, tensors = record_fingerprint(EnvSpec(args.env, args.env_kwargs or {}), episodes=args.episodes,
                                       steps=args.steps, seed=args.seed, env_module=typed_module)  # fmt: skip
    write_atomic(output, encode_fingerprint(meta, tensors), what="the fingerprint")
    emit({"output": args.output, **meta}, args.json, lambda r: f"fingerprint of {args.env} written to {r['output']}")
    return EXIT_OK


def cmd_requirements(args: argparse.Namespace) -> int:
    """``rlport requirements``: print the pinned requirements to run a bundle (``deploy.pinned_requirements``).

    The text is a ``requirements.txt``: a comment line for each pin that differs from the version
    recorded at export (and why), then one requirement per line.
    """
    from rlport.bundle.bundle import Bundle
    from rlport.deploy import pinned_requirements

    needs = pinned_requirements(Bundle.load(args.bundle), backend=args.backend, with_env=not args.no_env,
                                python=args.python)  # fmt: skip
    result = {"requirements": list(needs.lines), "notes": list(needs.notes), "python": _python(needs.python)}
    emit(result, args.json, lambda r: needs.text().rstrip("\n"))
    return EXIT_OK


def cmd_pack(args: argparse.Namespace) -> int:
    """``rlport pack``: write a folder to copy to the device (``deploy.pack``), and say how to use it."""
    from rlport.bundle.bundle import Bundle
    from rlport.deploy import pack, pinned_requirements

    needs = pinned_requirements(Bundle.load(args.bundle), backend=args.backend, python=args.python)
    folder = pack(args.bundle, args.output, backend=args.backend, python=args.python, docker=args.docker)
    files = sorted(p.name for p in folder.iterdir())
    result = {"output": str(folder), "files": files, "python": _python(needs.python),
              "requirements": list(needs.lines), "notes": list(needs.notes)}  # fmt: skip
    emit(result, args.json, _render_pack)
    return EXIT_OK


def _python(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _render_pack(r: dict[str, Any]) -> str:
    run = "pip install -r requirements.txt && python run.py (in the copied folder)"
    rows = [
        ("packed", f"{r['output']}: {', '.join(r['files'])}"),
        ("requirements", f"{', '.join(r['requirements'])} (for Python {r['python']})"),
        *[("note", note) for note in r["notes"]],
        ("on the device", run),
    ]
    if "Dockerfile" in r["files"]:
        rows.append(("or with docker", "docker build -t policy . && docker run --rm policy (see the Dockerfile)"))
    return table(rows)
