"""The ``rlport`` command line: parsing and printing only; each subcommand calls one public function.

This module holds the argument parser and the dispatch; the subcommands live in ``commands.py`` (inspect, run,
demo, import, export) and ``deploy.py`` (verify, fingerprint, requirements, pack), the shared printing in
``output.py``.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 130 interrupted. Whatever the input, the
command ends with a one-line message, never a traceback (``RLPORT_DEBUG=1`` re-raises instead).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rlport.cli import args as types
from rlport.cli.commands import cmd_demo, cmd_export, cmd_import, cmd_inspect, cmd_run
from rlport.cli.deploy import cmd_fingerprint, cmd_pack, cmd_requirements, cmd_verify
from rlport.cli.output import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, printable
from rlport.errors import RlportError

__all__ = ["main", "MAX_MESSAGE_CHARS", "MAX_INTERNAL_MESSAGE_CHARS"]

MAX_MESSAGE_CHARS = 2_000
"""Longest error message the command prints; the rest is cut (a hostile file can make long ones)."""
MAX_INTERNAL_MESSAGE_CHARS = 200
"""Longest text of an unexpected exception that the one-line "internal error" report quotes."""

_EPILOG = """\
exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 130 interrupted.
Errors are one line on stderr; set RLPORT_DEBUG=1 to get the traceback instead (to report a bug)."""
_ENV_MODULE_HELP = (
    "allow env ids of the form MODULE:EnvName recorded in the file to import MODULE; "
    "ids from files are otherwise refused when they contain ':'"
)
_EPISODES = types.count(1, types.MAX_EPISODES)
_EPISODES_HELP = f"episodes to play (1 .. {types.MAX_EPISODES:,})"
_SEED_HELP = f"random seed (0 .. {types.MAX_SEED:,})"


def _parser() -> argparse.ArgumentParser:
    from rlport import __version__

    parser = argparse.ArgumentParser(
        prog="rlport",
        description="Portable, pickle-free RL policy bundles.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rlport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a bundle")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="run episodes with a bundle (the env recorded in it by default)")
    p.add_argument("bundle")
    p.add_argument("--episodes", type=_EPISODES, default=10, help=_EPISODES_HELP)
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
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
    p.add_argument(
        "--algorithm", type=types.algorithm, help="algorithm name when the file does not tell (A2C, PPO, TRPO...)"
    )
    p.add_argument("--probes", type=types.count(0, types.MAX_PROBES), default=256, help="parity probes to record")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--include-critic", action="store_true", help="keep every tensor of the model")
    p.add_argument("--no-fingerprint", action="store_true", help="do not record the env's dynamics for verify")
    p.add_argument(
        "--evaluate", type=types.count(0, types.MAX_EPISODES), default=0, help="record the returns of N episodes"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("verify", help="check that a bundle behaves here as it did where it was made")
    p.add_argument("bundle")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--episodes", type=_EPISODES, default=10, help=_EPISODES_HELP)
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("--fingerprint", default=None, help="also replay a fingerprint file from `rlport fingerprint`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fingerprint", help="record an env's dynamics fingerprint (on the source machine)")
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs")
    p.add_argument("--episodes", type=_EPISODES, default=3, help=_EPISODES_HELP)
    p.add_argument("--steps", type=types.count(1, types.MAX_STEPS), default=100, help="most steps per episode")
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser("export", help="export a bundle to another format (ONNX, or an SB3 .zip today's SB3 loads)")
    p.add_argument("bundle")
    p.add_argument("--format", default="onnx", choices=["onnx", "sb3"])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--opset", type=types.count(1, types.MAX_OPSET), default=17, help="onnx: the opset (17 or later)")
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
    p.add_argument("--timesteps", type=types.count(1, types.MAX_TIMESTEPS), default=30_000)
    p.add_argument("--episodes", type=_EPISODES, default=20, help=_EPISODES_HELP)
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlport`` command; returns the exit code (usage errors included)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: argparse has printed what to say
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; any failure becomes one line on stderr and an exit code, never a traceback."""
    debug = os.environ.get("RLPORT_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        _say(args.command, "interrupted")
        return EXIT_INTERRUPTED
    except RlportError as exc:
        if debug:
            raise
        _say(args.command, _text(exc))
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `rlport inspect x | head`: the reader has what it wanted
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except Exception as exc:  # MemoryError, RecursionError and every bug: reported in one line
        if debug:
            raise
        detail = _cap(" ".join(_text(exc).split()), MAX_INTERNAL_MESSAGE_CHARS)  # one line, even for torch's
        _say(args.command, f"internal error on this input ({type(exc).__name__}: {detail}); please report it")
        return EXIT_BAD_INPUT


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ fails
        return "(no message)"


def _cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit:,} more characters]"


def _say(command: str, message: str) -> None:
    """Print ``rlport COMMAND: MESSAGE`` (capped, control characters escaped) on stderr."""
    try:
        print(f"rlport {command}: {printable(_cap(message, MAX_MESSAGE_CHARS))}", file=sys.stderr)
    except (OSError, ValueError):  # stderr closed: nothing left to tell
        pass


if __name__ == "__main__":
    sys.exit(main())
