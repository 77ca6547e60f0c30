"""``rlport card``: a page, a Hugging Face model card and results.json for a bundle (``rlport.report.card``)."""

from __future__ import annotations

import argparse
from typing import Any

from rlport.cli import args as types
from rlport.cli.output import EXIT_OK, emit, table

__all__ = ["register", "cmd_card"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rlport card`` to ``rlport``'s parser."""
    p = sub.add_parser("card", help="write a report page (index.html), a Hugging Face model card and results.json")
    p.add_argument("bundle", help="the bundle (.rlp)")
    p.add_argument("-o", "--output", required=True, help="the folder to write (made if missing)")
    p.add_argument("--episodes", type=types.count(1, types.MAX_EPISODES), default=10, help="episodes to play")
    p.add_argument("--seed", type=types.seed, default=0, help="seed of the first episode (episode i: SEED + i)")
    p.add_argument("--compare", nargs="+", metavar="BUNDLE", default=[],
                   help="other versions of the policy (fp16, int8, a student) for a size-vs-return plot")  # fmt: skip
    p.add_argument("--video", action="store_true", help="also write replay.gif of one episode (rgb_array envs)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE",
                   help="allow a recorded env id MODULE:EnvName to import MODULE")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print what the card shows as JSON")
    p.set_defaults(func=cmd_card)


def cmd_card(args: argparse.Namespace) -> int:
    """``rlport card``: measure and write the card's files; say where they are."""
    from rlport.report import card

    result = card(args.bundle, args.output, episodes=args.episodes, seed=args.seed, compare=args.compare,
                  video=args.video, env_module=args.env_module)  # fmt: skip
    emit(result, args.json, _render)
    return EXIT_OK


def _render(r: dict[str, Any]) -> str:
    data = r["card"]
    ret = data["returns"]
    rows = [("card", f"{r['output']}: {', '.join(r['files'])}")]
    if ret.get("available"):
        verdict = (ret.get("verdict") or {}).get("status", "no reference")
        rows.append(("return", f"{ret['mean']:.2f} ± {ret['std']:.2f} over {ret['episodes']} episodes ({verdict})"))
    else:
        rows.append(("return", f"not measured: {ret.get('reason')}"))
    if data.get("video"):
        rows.append(("replay", data["video"]["note"]))
    rows.append(("open", f"{r['output']}/index.html in a browser"))
    return table(rows)
