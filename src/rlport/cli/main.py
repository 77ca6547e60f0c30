"""The ``rlport`` command line: parsing and printing only; each subcommand calls one public function.

This module holds the argument parser and the dispatch; the subcommands live in ``commands.py`` (inspect, run,
demo, import, export) and ``deploy.py`` (verify, fingerprint, requirements, pack), the shared printing in
``output.py``.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rlport.cli.commands import cmd_demo, cmd_export, cmd_import, cmd_inspect, cmd_run
from rlport.cli.deploy import cmd_fingerprint, cmd_pack, cmd_requirements, cmd_verify
from rlport.cli.output import EXIT_BAD_INPUT
from rlport.errors import RlportError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from rlport import __version__

    parser = argparse.ArgumentParser(prog="rlport", description="Portable, pickle-free RL policy bundles.")
    parser.add_argument("--version", action="version", version=f"rlport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a bundle")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="run episodes with a bundle (the env recorded in it by default)")
    p.add_argument("bundle")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", default=None, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mode")
    p.add_argument("--backend", default="numpy", choices=["numpy", "torch", "onnx"])
    p.add_argument("--device", default="cpu", help="torch backend: the torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("import", help="convert an SB3 .zip or an RL Zoo run folder, without running its pickles")
    p.add_argument("source", help="an SB3 model .zip, or an RL Zoo run folder (ALGO/ENV_1)")
    p.add_argument("-o", "--output", required=True, help="the bundle to write (.rlp)")
    p.add_argument("--vecnormalize", default=None, help="the run's vecnormalize.pkl (for a bare .zip)")
    p.add_argument("--env", default=None, help="gymnasium env id to record (default: the run's)")
    p.add_argument("--algorithm", default=None, help="algorithm name when the file does not tell (A2C, PPO, TRPO)")
    p.add_argument("--probes", type=int, default=256)
    p.add_argument("--include-critic", action="store_true", help="keep every tensor of the model")
    p.add_argument("--no-fingerprint", action="store_true", help="do not record the env's dynamics for verify")
    p.add_argument("--evaluate", type=int, default=0, help="record the returns of N episodes for verify")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("verify", help="check that a bundle behaves here as it did where it was made")
    p.add_argument("bundle")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", default=None, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fingerprint", default=None, help="also replay a fingerprint file from `rlport fingerprint`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fingerprint", help="record an env's dynamics fingerprint (on the source machine)")
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", default=None)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser("export", help="export a bundle to another format (ONNX, or an SB3 .zip today's SB3 loads)")
    p.add_argument("bundle")
    p.add_argument("--format", default="onnx", choices=["onnx", "sb3"])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--opset", type=int, default=17, help="onnx: the ONNX opset (17 or later)")
    p.add_argument("--vecnormalize", help="sb3: where to write VecNormalize statistics (default: beside the .zip)")
    p.add_argument(
        "--allow-missing-critic",
        action="store_true",
        help="sb3: write a model whose value/Q networks start afresh when the bundle does not keep them",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("requirements", help="the smallest pinned requirements to run a bundle")
    p.add_argument("bundle")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--no-env", action="store_true", help="leave out the env's packages")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_requirements)

    p = sub.add_parser("pack", help="write a folder to copy to the device: bundle, requirements, run.py")
    p.add_argument("bundle")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("demo", help="train PPO on CartPole, export, reload in a fresh process, compare with SB3")
    p.add_argument("--out", default="rlport-demo", help="folder for the SB3 .zip and the bundle")
    p.add_argument("--timesteps", type=int, default=30_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlport`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("episodes", "timesteps"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        return args.func(args)
    except json.JSONDecodeError as exc:
        print(f"rlport {args.command}: --env-kwargs is not a JSON object: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RlportError as exc:
        print(f"rlport {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
