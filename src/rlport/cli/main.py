"""The ``rlport`` command line: parsing and printing only; each subcommand calls one public function.

This module holds the argument parser and the dispatch; the subcommands live in ``commands.py`` (inspect, run,
demo, import, export) and ``deploy.py`` (verify, fingerprint, requirements, pack), the shared printing in
``output.py``.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 130 interrupted. Whatever the input, the
command ends with a one-line message, never a traceback (``RLPORT_DEBUG=1`` re-raises instead). With
``--json`` a failure also prints ``{"error": {"type", "message", "exit_code"}}`` on stdout, so that a
script reads one JSON document whatever happened; the one-line message stays on stderr for people.
A missing optional package is named with the smallest extra that brings it. Warnings are shown once
each, plainly (see ``output.py``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from rlport.backends.registry import backend_names, export_format_names
from rlport.cli import args as types
from rlport.cli.commands import cmd_demo, cmd_export, cmd_import, cmd_inspect, cmd_run
from rlport.cli.deploy import cmd_fingerprint, cmd_pack, cmd_requirements, cmd_verify
from rlport.cli.output import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, emit_error, plain_warnings, printable
from rlport.errors import RlportError

__all__ = ["main", "MAX_MESSAGE_CHARS", "MAX_INTERNAL_MESSAGE_CHARS"]

MAX_MESSAGE_CHARS = 2_000
"""Longest error message the command prints; the rest is cut (a hostile file can make long ones)."""
MAX_INTERNAL_MESSAGE_CHARS = 200
"""Longest text of an unexpected exception that the one-line "internal error" report quotes."""

_EPILOG = """\
exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 130 interrupted.
Errors are one line on stderr (with --json, also {"error": {...}} on stdout); set RLPORT_DEBUG=1 to get
the traceback instead (to report a bug). Warnings are shown once each; library deprecation notices are
hidden (python -W default -m rlport ... shows them)."""
_JSON_HELP = 'print the result as JSON on stdout (on failure: {"error": {"type", "message", "exit_code"}})'
_BUNDLE_HELP = "the bundle (.rlp)"
_PYTHON_HELP = (
    "the target's Python, 3.10 to 3.14 (default: the one recorded at export, at least 3.10); "
    "numpy and gymnasium are pinned to releases that install on it"
)
_PACK_BACKEND_HELP = "the runtime on the target (numpy: the only one a pack holds; it needs no torch)"
# optional packages rlport imports lazily -> the smallest extra that installs them
_EXTRA_OF_MODULE = {
    "torch": "torch",
    "stable_baselines3": "sb3",
    "sb3_contrib": "sb3",
    "gymnasium": "envs",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "yaml": "yaml",
    "matplotlib": "report",
    "imageio": "report",
    "ray": "ray",
}
_ENV_MODULE_HELP = (
    "allow env ids of the form MODULE:EnvName recorded in the file to import MODULE; "
    "ids from files are otherwise refused when they contain ':'"
)
_EPISODES = types.count(1, types.MAX_EPISODES)
_EPISODES_HELP = f"episodes to play (1 .. {types.MAX_EPISODES:,})"
_SEED_HELP = f"random seed (0 .. {types.MAX_SEED:,})"


_COMMAND_MODULES = ("rlport.cli.compress", "rlport.cli.distill", "rlport.cli.card", "rlport.cli.fleet")
"""Modules of subcommands that register their own parsers (``register(sub)``), imported with the parser."""


def _parser() -> argparse.ArgumentParser:
    from rlport import __version__

    parser = _Parser(
        prog="rlport",
        description="Portable, pickle-free RL policy bundles.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rlport {__version__}", help="print the version, exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a bundle")
    p.add_argument("bundle", help=_BUNDLE_HELP)
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="run episodes with a bundle (the env recorded in it by default)")
    p.add_argument("bundle")
    p.add_argument("--episodes", type=_EPISODES, default=10, help=_EPISODES_HELP)
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mode")
    p.add_argument("--backend", default="numpy", choices=backend_names(), help="the runtime to act with")
    p.add_argument("--device", default="cpu", help="torch backend: the torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "import",
        help="convert an SB3 .zip, bare SB3 weights (.pth), an SB2 .pkl/.zip or an RL Zoo run folder (no pickle run)",
    )
    p.add_argument(
        "source",
        help="an SB3 model .zip, bare weights (.pth, with --algorithm), an SB2 .pkl/.zip, or an RL Zoo run folder",
    )
    p.add_argument("-o", "--output", required=True, help="the bundle to write (.rlp)")
    p.add_argument(
        "--vecnormalize",
        default=None,
        help="the model's vecnormalize.pkl (a .zip inside an RL Zoo run folder, RUN/ENV.zip, imports the whole run)",
    )
    p.add_argument(
        "--no-vecnormalize",
        action="store_true",
        help="import a .zip alone, even inside an RL Zoo run folder: without the run's statistics and wrappers",
    )
    p.add_argument(
        "--best",
        action="store_true",
        help="from an RL Zoo run folder, import best_model.zip (as the zoo's enjoy --load-best) instead of ENV.zip",
    )
    p.add_argument("--env", default=None, help="gymnasium env id to record (default: the run's)")
    p.add_argument(
        "--algorithm", type=types.algorithm, help="algorithm name when the file does not tell (A2C, PPO, TRPO...)"
    )
    p.add_argument(
        "--policy-kwargs",
        type=types.env_kwargs,
        metavar="JSON",
        help='bare weights (.pth): the policy_kwargs the model was built with, e.g. \'{"activation_fn": "ReLU"}\'',
    )
    p.add_argument("--policy", default=None, help="bare weights (.pth): the policy alias when the tensors do not tell")
    p.add_argument(
        "--observation-space",
        type=types.env_kwargs,
        metavar="JSON",
        help="bare weights (.pth) without --env: the observation space as a JSON space spec (docs/FORMAT.md)",
    )
    p.add_argument("--action-space", type=types.env_kwargs, metavar="JSON", help="the same for the action space")
    p.add_argument("--probes", type=types.count(0, types.MAX_PROBES), default=256, help="parity probes to record")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--include-critic", action="store_true", help="keep every tensor of the model")
    p.add_argument("--no-fingerprint", action="store_true", help="do not record the env's dynamics for verify")
    p.add_argument(
        "--evaluate", type=types.count(0, types.MAX_EPISODES), default=0, help="record the returns of N episodes"
    )
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("verify", help="check that a bundle behaves here as it did where it was made")
    p.add_argument("bundle")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--episodes", type=_EPISODES, default=10, help=_EPISODES_HELP)
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("--fingerprint", default=None, help="also replay a fingerprint file from `rlport fingerprint`")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fingerprint", help="record an env's dynamics fingerprint (on the source machine)")
    p.add_argument("--env", required=True, help="gymnasium env id whose dynamics to record")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs")
    p.add_argument("--episodes", type=_EPISODES, default=3, help=_EPISODES_HELP)
    p.add_argument("--steps", type=types.count(1, types.MAX_STEPS), default=100, help="most steps per episode")
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("-o", "--output", required=True, help="the fingerprint file to write (.json)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser(
        "export", help="export a bundle to another format (ONNX, an SB3 .zip, an RL Zoo run folder, C99 source)"
    )
    p.add_argument("bundle")
    p.add_argument(
        "--format",
        default="onnx",
        choices=export_format_names(),
        help="onnx: one .onnx file; sb3: a .zip for ALGO.load (+ its VecNormalize statistics); "
        "zoo: an RL Zoo run folder (ENV.zip, ENV/config.yml, ENV/args.yml, ENV/vecnormalize.pkl) for rl_zoo3.enjoy; "
        "c: C99 source (rlport_policy.h, rlport_policy.c, README.md) for microcontrollers and C programs",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the file to write (zoo: the run folder, e.g. logs/a2c/ENV_1; c: a folder)",
    )
    p.add_argument("--opset", type=types.count(1, types.MAX_OPSET), default=17, help="onnx: the opset (17 or later)")
    p.add_argument(
        "--vecnormalize",
        help="sb3: where to write the VecNormalize statistics (default: OUTPUT with .vecnormalize.pkl for .zip)",
    )
    p.add_argument("--force", action="store_true", help="sb3, zoo: replace files that exist (default: refuse)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument(
        "--allow-missing-critic",
        action="store_true",
        help="sb3, zoo: write a model whose value/Q networks start afresh when the bundle does not keep them",
    )
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("requirements", help="the smallest pinned requirements to run a bundle (requirements.txt)")
    p.add_argument("bundle", help=_BUNDLE_HELP)
    p.add_argument("--backend", default="numpy", help=_PACK_BACKEND_HELP)
    p.add_argument("--python", metavar="X.Y", help=_PYTHON_HELP)
    p.add_argument("--no-env", action="store_true", help="leave out the env's packages")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_requirements)

    p = sub.add_parser("pack", help="write a folder to copy to the device: bundle, requirements, run.py")
    p.add_argument("bundle", help=_BUNDLE_HELP)
    p.add_argument("-o", "--output", required=True, help="the folder to write (replaced if it is a previous pack)")
    p.add_argument("--backend", default="numpy", help=_PACK_BACKEND_HELP)
    p.add_argument("--python", metavar="X.Y", help=_PYTHON_HELP)
    p.add_argument("--docker", action="store_true", help="also write a Dockerfile (python:X.Y-slim, non-root)")
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("demo", help="train PPO on CartPole, export, reload in a fresh process, compare with SB3")
    p.add_argument("--out", default="rlport-demo", help="folder for the SB3 .zip and the bundle")
    p.add_argument("--timesteps", type=types.count(1, types.MAX_TIMESTEPS), default=30_000, help="PPO training steps")
    p.add_argument("--episodes", type=_EPISODES, default=20, help=_EPISODES_HELP)
    p.add_argument("--seed", type=types.seed, default=0, help=_SEED_HELP)
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_demo)
    for name in _COMMAND_MODULES:  # each module adds its subcommands: register(sub)
        importlib.import_module(name).register(sub)
    return parser


class _UsageError(Exception):
    """A command line argparse refused; its message is argparse's ``PROG: error: ...`` line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (so that ``--json`` can answer it too), not a ``sys.exit``."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: error: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlport`` command; returns the exit code (usage errors included)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        _print(printable(str(exc)), sys.stderr)
        if "--json" in argv:
            emit_error("UsageError", str(exc), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help and --version: argparse has printed what to say
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; any failure becomes one line on stderr and an exit code, never a traceback."""
    debug = os.environ.get("RLPORT_DEBUG", "") not in ("", "0")
    try:
        with plain_warnings(f"rlport {args.command}"):
            return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        return _fail(args, "Interrupted", "interrupted", EXIT_INTERRUPTED)
    except RlportError as exc:
        if debug:
            raise
        return _fail(args, type(exc).__name__, _text(exc), EXIT_BAD_INPUT)
    except BrokenPipeError:  # `rlport inspect x | head`: the reader has what it wanted
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except Exception as exc:  # MemoryError, RecursionError and every bug: reported in one line
        if debug:
            raise
        missing = _missing_package(exc)
        if missing is not None:
            return _fail(args, "MissingDependencyError", missing, EXIT_BAD_INPUT)
        detail = _cap(" ".join(_text(exc).split()), MAX_INTERNAL_MESSAGE_CHARS)  # one line, even for torch's
        message = f"internal error on this input ({type(exc).__name__}: {detail}); please report it"
        return _fail(args, "InternalError", message, EXIT_BAD_INPUT)


def _fail(args: argparse.Namespace, error_type: str, message: str, code: int) -> int:
    """Say why the command failed (stderr; with ``--json`` also a JSON error on stdout) and return ``code``."""
    _say(args.command, message)
    if getattr(args, "json", False):
        emit_error(error_type, _cap(message, MAX_MESSAGE_CHARS), code)
    return code


def _missing_package(exc: BaseException) -> str | None:
    """For an optional package that is not installed, one line naming the extra that installs it; else ``None``."""
    if not isinstance(exc, ModuleNotFoundError) or not isinstance(exc.name, str):
        return None
    root = exc.name.split(".")[0]
    extra = _EXTRA_OF_MODULE.get(root)
    if extra is None:
        return None
    package = "PyYAML" if root == "yaml" else root.replace("_", "-")
    return f'this needs {package}, which is not installed; pip install "rlport[{extra}]"'


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
    _print(f"rlport {command}: {printable(_cap(message, MAX_MESSAGE_CHARS))}", sys.stderr)


def _print(text: str, stream) -> None:
    try:
        print(text, file=stream)
    except (OSError, ValueError):  # the stream is closed: nothing left to tell
        pass


if __name__ == "__main__":
    sys.exit(main())
