"""``rlport distill`` (issue 15): train a small student of a policy and report how it compares.

Parsing and printing only: the work is :func:`rlport.distillation.distill`.
"""

from __future__ import annotations

import argparse
import re
import time
import warnings
from pathlib import Path
from typing import Any

from rlport.cli import args as types
from rlport.cli.output import EXIT_OK, emit, table, wrapped

__all__ = ["register", "cmd_distill", "hidden_widths", "MAX_DISTILL_STEPS"]

MAX_DISTILL_STEPS = 100_000_000
"""Most env steps ``rlport distill --steps`` takes."""
_WIDTHS = re.compile(r"[0-9]{1,6}(,[0-9]{1,6}){0,7}")


def hidden_widths(text: str) -> tuple[int, ...]:
    """An argparse type: hidden layer widths, ``64,64`` (1 to 8 layers of 1 to 4096 units).

    Example:
        >>> hidden_widths("64,32")
        (64, 32)
    """
    widths = tuple(int(w) for w in text.split(",")) if _WIDTHS.fullmatch(text.strip()) else ()
    if not widths or not all(1 <= w <= 4096 for w in widths):
        shown = repr(text[:100])
        raise argparse.ArgumentTypeError(
            f"takes 1 to 8 layer widths of 1 .. 4096, comma-separated (64,64), not {shown}"
        )
    return widths


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rlport distill`` to ``rlport``'s parser."""
    p = sub.add_parser("distill", help="train a small student of a policy (DAgger-style) and compare it with it")
    p.add_argument("teacher", help="the teacher bundle (.rlp)")
    p.add_argument("-o", "--output", required=True, help="the student bundle to write (.rlp)")
    p.add_argument("--hidden", type=hidden_widths, default=(64, 64), help="the student's hidden widths (64,64)")
    p.add_argument("--activation", choices=("tanh", "relu"), default="tanh", help="the student's activation")
    p.add_argument("--env", default=None, help="gymnasium env id to train in (default: the teacher's)")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs (default: the teacher's)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE",
                   help="allow a recorded env id MODULE:EnvName to import MODULE")  # fmt: skip
    p.add_argument("--steps", type=types.count(1, MAX_DISTILL_STEPS), default=50_000,
                   help="env steps the teacher labels (default 50,000)")  # fmt: skip
    p.add_argument("--episodes", type=types.count(1, 10_000), default=10,
                   help="paired evaluation episodes, teacher and student on the same seeds")  # fmt: skip
    p.add_argument("--seed", type=types.seed, default=0, help=f"random seed (0 .. {types.MAX_SEED:,})")
    p.add_argument("--int8", action="store_true", help="quantise the student's weights to int8 (rlport compress)")
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1, mps)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    """``rlport distill``: the student is written (atomically) only once it is trained, checked and evaluated."""
    from rlport.bundle.container import check_destination
    from rlport.cli.progress import Progress
    from rlport.distillation import distill
    from rlport.errors import RlportWarning

    check_destination(Path(args.output), "the student bundle")  # before the work, not after
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", RlportWarning)
        student, report = distill(
            args.teacher, hidden=args.hidden, activation=args.activation, env=args.env, env_kwargs=args.env_kwargs,
            steps=args.steps, seed=args.seed, int8=args.int8, device=args.device, progress=Progress,
            episodes=args.episodes, env_module=args.env_module,
        )  # fmt: skip
        began = time.perf_counter()
        student.save(args.output)
    report["output"] = args.output
    report["size_bytes"] = Path(args.output).stat().st_size
    report["seconds"] += time.perf_counter() - began
    report["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RlportWarning)]
    emit(report, args.json, _render)
    return EXIT_OK


def _render(r: dict[str, Any]) -> str:
    t, s, d, a = r["teacher"], r["student"], r["difference"], r["agreement"]
    ratio = s["bytes"] / t["bytes"] if t["bytes"] else float("nan")
    interval = f"[{d['low']:+.2f}, {d['high']:+.2f}]" if d["low"] is not None else "(one episode: no interval)"
    agree = (
        "no held-out states" if a["share"] is None else f"{100 * a['share']:.1f}% of {a['states']:,} held-out states"
    )
    if a.get("mean_error") is not None:
        agree += f" (mean error {100 * a['mean_error']:.2f}% of the action range)"
    rows = [
        ("", "teacher", "student", ""),
        ("parameters", f"{t['parameters']:,}", f"{s['parameters']:,}", ""),
        ("weight bytes", f"{t['bytes']:,}", f"{s['bytes']:,}", f"{100 * ratio:.1f}% of the teacher's"),
        (f"return ({d['episodes']} episodes)", f"{t['mean_return']:.2f}", f"{s['mean_return']:.2f}", "same seeds"),
        ("difference", "", f"{d['mean']:+.2f}", f"95% CI {interval}"),
    ]
    lines = [
        f"distilled {r['teacher_digest'][:12]} into {r['output']} ({r['size_bytes'] / 1024:.1f} KiB) "
        f"in {r['seconds']:.1f} s: {r['settings']['hidden']} {r['settings']['activation']}, {r['states']:,} states",
        table(rows),
        f"agreement: {agree}",
        f"loss: {r['settings']['loss']}",
    ]
    return "\n".join([*lines, *(wrapped(f"warning: {w}") for w in r["warnings"])])
