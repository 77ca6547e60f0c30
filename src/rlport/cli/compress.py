"""`rlport compress` (issue 14: float16 / int8 bundles): its parser and command.

``rlport compress in.rlp -o out.rlp --weights fp16|int8 [--activations int8 --calibrate N]
[--episodes N] [--json]`` writes the smaller bundle and reports, beside the float one: file size and
weight bytes, action agreement on rollouts, and returns on paired episodes with the 95% confidence
interval of their difference. Exit 0; 1 when the return drops beyond that interval, by more than 1% of
the float return (the bundle is written all the same); 2 for bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlport.cli import args as types
from rlport.cli.output import EXIT_CHECK_FAILED, EXIT_OK, emit, table

__all__ = ["register", "cmd_compress", "MAX_CALIBRATION_STEPS"]

MAX_CALIBRATION_STEPS = 1_000_000
"""The most observations ``--calibrate`` may ask for."""
_JSON_HELP = 'print the result as JSON on stdout (on failure: {"error": {"type", "message", "exit_code"}})'
_ENV_MODULE_HELP = (
    "allow env ids of the form MODULE:EnvName recorded in the file to import MODULE; "
    "ids from files are otherwise refused when they contain ':'"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rlport compress`` to ``rlport``'s parser."""
    p = sub.add_parser(
        "compress",
        help="write a smaller bundle (float16 or int8 weights, int8 activations) and compare it with the float one",
    )
    p.add_argument("bundle", help="the float bundle (.rlp)")
    p.add_argument("-o", "--output", required=True, help="the compressed bundle to write (.rlp)")
    p.add_argument(
        "--weights",
        choices=("fp16", "int8"),
        default="int8",
        help="int8: one scale per output channel of each linear/conv2d weight (format 1.1, about 0.25x the bytes); "
        "fp16: the network's float32 tensors as float16 (format 1.0, 0.5x)",
    )
    p.add_argument(
        "--activations",
        choices=("int8",),
        default=None,
        help="also fake-quantise what each linear/conv2d reads, with scales calibrated on env rollouts",
    )
    p.add_argument(
        "--calibrate",
        type=types.count(1, MAX_CALIBRATION_STEPS),
        default=None,
        metavar="N",
        help="with --activations int8: observations to calibrate on (default 1000)",
    )
    p.add_argument(
        "--episodes",
        type=types.count(0, types.MAX_EPISODES),
        default=10,
        help="paired episodes for the comparison of returns (0: compare actions on the probes only)",
    )
    p.add_argument("--seed", type=types.seed, default=0, help="episode i resets the env with seed + i")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", type=types.env_kwargs, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE", help=_ENV_MODULE_HELP)
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    """``rlport compress``: :func:`rlport.compression.compress`, then :func:`rlport.compression.compare`, then save."""
    from rlport.bundle.bundle import Bundle
    from rlport.bundle.container import check_destination
    from rlport.cli.progress import Progress
    from rlport.compression import DEFAULT_CALIBRATION_STEPS, compare, compress
    from rlport.errors import UnsupportedError

    if args.calibrate is not None and args.activations is None:
        raise UnsupportedError("--calibrate sets how activations are calibrated; add --activations int8 or drop it")
    check_destination(Path(args.output), "the compressed bundle")  # before the work, not after
    original = Bundle.load(args.bundle)
    env = {"env_id": args.env, "env_kwargs": args.env_kwargs, "env_module": args.env_module}
    calibrate = DEFAULT_CALIBRATION_STEPS if args.calibrate is None else args.calibrate
    compressed = compress(original, args.weights, args.activations, calibrate, seed=args.seed, **env)
    with Progress(2 * args.episodes, "episodes") as bar:
        report = compare(
            original, compressed, args.episodes, args.seed, **env,
            on_episode=lambda who, i, r: bar.update(note=f"{who} {r:.1f}"),
        )  # fmt: skip
    compressed.save(args.output)
    version = "{}.{}".format(*compressed.format_version)
    result = {"bundle": args.bundle, "output": args.output, "format_version": version, **report.to_json()}
    result["calibration"] = compressed.provenance["compressed"].get("calibration")
    emit(result, args.json, _render)
    return EXIT_CHECK_FAILED if report.returns is not None and report.returns["dropped"] else EXIT_OK


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _render(r: dict[str, Any]) -> str:
    sizes = r["sizes"]
    before, after, ratio = sizes["float"], sizes["compressed"], sizes["ratio"]
    scheme = r["weights"] + (f" weights, {r['activations']} activations" if r["activations"] else " weights")
    rows = [
        ("", "float", scheme),
        ("file", _size(before["file_bytes"]), f"{_size(after['file_bytes'])} ({ratio['file_bytes']:.2f}x)"),
        ("weights", _size(before["weight_bytes"]), f"{_size(after['weight_bytes'])} ({ratio['weight_bytes']:.2f}x)"),
    ]
    agreement = r["agreement"]
    if agreement is not None:
        if agreement["kind"] == "discrete":
            text = f"{100 * agreement['identical']:.2f}% identical actions"
        else:
            unit = "of the action range" if agreement["error_unit"].startswith("fraction") else "(absolute)"
            text = f"error max {agreement['max_error']:.2e}, mean {agreement['mean_error']:.2e} {unit}"
        rows.append(("agreement", "", f"{text} over {agreement['steps']} steps ({agreement['source']})"))
    returns = r["returns"]
    if returns is not None:
        low, high = returns["ci95"]
        ci = "no interval (one episode)" if high is None else f"95% CI [{low:+.2f}, {high:+.2f}]"
        rows.append(("return", f"{returns['float_mean']:.2f}", f"{returns['compressed_mean']:.2f}"))
        rows.append(("difference", "", f"{returns['difference']:+.2f}, {ci}, {returns['episodes']} paired episodes"))
        if returns["significant_drop"] and not returns["dropped"]:
            rows.append(("", "", "(a drop the interval shows, but within 1% of the float return: no warning)"))
    if r.get("calibration"):
        c = r["calibration"]
        plural = "s" if c["observations"] != 1 else ""
        rows.append(("calibration", "", f"{c['observations']} observation{plural} ({c['source']})"))
    rows.append(("written", "", f"{r['output']} (bundle format {r['format_version']})"))
    rows += [("WARN", "", text) for text in r["warnings"]]
    return table(rows)
