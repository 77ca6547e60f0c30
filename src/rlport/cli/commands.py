"""The subcommands that read, run and convert a bundle: inspect, run, demo, import, export.

Each calls one public function of rlport and prints its result (see ``output.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rlport.cli.output import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, emit, printable, table
from rlport.errors import RlportError

__all__ = ["cmd_demo", "cmd_export", "cmd_import", "cmd_inspect", "cmd_run"]


def _space_text(space: dict[str, Any]) -> str:
    kind = space["type"]
    if kind == "box":
        return f"Box{tuple(space['shape'])} {space['dtype']} [{_bound(space['low'])}, {_bound(space['high'])}]"
    if kind == "discrete":
        return f"Discrete({space['n']})" + (f" start={space['start']}" if space.get("start") else "")
    if kind == "multi_discrete":
        return f"MultiDiscrete({space['nvec']})"
    if kind == "multi_binary":
        return f"MultiBinary({space['shape']})"
    return "Dict(" + ", ".join(f"{e['key']}: {_space_text(e['space'])}" for e in space["spaces"]) + ")"


def _bound(value: Any) -> str:
    if isinstance(value, list):
        return f"{min(map(float, value)):g}..{max(map(float, value)):g}" if value else "-"
    return str(value)


def _render_inspect(s: dict[str, Any]) -> str:
    prov = {key: value for key, value in s["provenance"].items() if value is not None}
    framework = f"{prov.get('framework', '?')} {prov.get('framework_version', '')}".strip()
    trained = f"{prov.get('num_timesteps', '?')} steps on {prov.get('device', '?')}"
    critic = "kept" if s["includes_critic"] else "not kept"
    rows = [
        ("format", s["format_version"]),
        ("algorithm", f"{prov.get('algorithm', '?')} ({framework})"),
        ("trained", f"{trained}, exported {prov.get('created', '?')}"),
        ("env", f"{s['env']['id']}" + (f" {s['env']['kwargs']}" if s["env"]["kwargs"] else "")),
        ("observation", _space_text(s["observation_space"])),
        ("action", _space_text(s["action_space"])),
        ("preprocess", " -> ".join(s["graph"]["preprocess"]) or "-"),
        ("policy", " -> ".join(s["graph"]["policy"])),
        ("postprocess", " -> ".join(s["graph"]["postprocess"]) or "-"),
        ("parameters", f"{s['parameters']:,} in the graph, {s['tensors']} tensors, critic {critic}"),
        ("recurrent", "yes" if s["recurrent"] else "no"),
        ("probes", f"{s['probes']['count']} ({s['probes']['source']})" if s["probes"] else "none"),
    ]  # fmt: skip
    return table(rows)


def cmd_inspect(args: argparse.Namespace) -> int:
    """``rlport inspect``: describe a bundle (``Bundle.summary``)."""
    from rlport.bundle.bundle import Bundle

    emit(Bundle.load(args.bundle).summary(), args.json, _render_inspect)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``rlport run``: run episodes with a bundle (``rlport.envs.run_episodes``)."""
    import rlport
    from rlport.cli.progress import Progress
    from rlport.envs import check_spaces, make_env, run_episodes

    policy = rlport.load(args.bundle, backend=args.backend, seed=args.seed, device=args.device)
    env = make_env(policy.bundle.env, env_id=args.env, env_kwargs=args.env_kwargs, env_module=args.env_module)
    try:
        check_spaces(policy, env, exact=False)
    except RlportError as exc:
        print(f"rlport run: {printable(str(exc))}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    try:
        check_spaces(policy, env)
    except RlportError as exc:  # same layout, other bounds or float width (an older env version)
        print(f"rlport run: note: {printable(str(exc))}", file=sys.stderr)
    with Progress(args.episodes, "episodes") as bar:
        stats = run_episodes(
            policy, env, args.episodes, seed=args.seed, deterministic=not args.stochastic,
            on_episode=lambda i, r: bar.update(note=f"return {r:.1f}"),
        )  # fmt: skip
    env_id = args.env or policy.bundle.env.id
    result = {"bundle": args.bundle, "env": env_id, "seed": args.seed, **stats.to_json()}

    def render(r: dict[str, Any]) -> str:
        spread = f"min {min(r['returns']):.2f}, max {max(r['returns']):.2f}"
        return table([
            ("env", str(r["env"])),
            ("episodes", str(r["episodes"])),
            ("return", f"{r['mean_return']:.2f} ± {r['std_return']:.2f} ({spread})"),
            ("length", f"{sum(r['lengths']) / len(r['lengths']):.1f} steps on average"),
            ("predict", f"{r['median_predict_us']:.1f} µs median per step"),
        ])  # fmt: skip

    emit(result, args.json, render)
    return EXIT_OK


def _render_demo(r: dict[str, Any]) -> str:
    ours, sb3, parity, size = r["rlport"], r["sb3"], r["parity"], r["size_bytes"]
    e_ours, e_sb3 = ours["episodes"], sb3["episodes"]
    imported = [name for name, present in ours["imported"].items() if present]
    rows = [
        ("", "rlport bundle (fresh process)", "SB3", ""),
        (f"return ({e_ours['episodes']} episodes)", f"{e_ours['mean_return']:.1f} ± {e_ours['std_return']:.1f}",
         f"{e_sb3['mean_return']:.1f} ± {e_sb3['std_return']:.1f}", "same seeds"),
        ("parity with SB3", f"{parity['identical']}/{parity['steps']} steps identical",
         f"{parity['count'] - parity['mismatched']}/{parity['count']} probes", "deterministic actions"),
        ("file size", f"{size['rlport'] / 1024:.1f} KiB", f"{size['sb3'] / 1024:.1f} KiB",
         f"{size['sb3'] / size['rlport']:.1f}x smaller"),
        ("predict latency (1 obs)", f"{ours['latency_us']:.1f} µs", f"{sb3['latency_us']:.1f} µs",
         f"{sb3['latency_us'] / ours['latency_us']:.1f}x faster"),
        ("load time", f"{ours['load_ms']:.0f} ms", "", ""),
        ("imported torch/SB3", ", ".join(imported) or "neither", "both", ""),
    ]  # fmt: skip
    head = (
        f"rlport demo: {r['algorithm']} on {r['env']}, {r['timesteps']:,} steps trained in {r['train_seconds']:.0f} s"
    )
    verdict = "OK: the bundle acts exactly as SB3 does" if r["ok"] else "FAILED: the bundle's actions differ from SB3's"
    return f"{head}\n\n{table(rows)}\n\n{verdict}\nbundle: {r['paths']['bundle']}"


def cmd_demo(args: argparse.Namespace) -> int:
    """``rlport demo``: train, export, reload and compare with SB3 (``rlport.demo.run_demo``)."""
    from rlport.cli.progress import Progress
    from rlport.demo import run_demo

    result = run_demo(args.out, timesteps=args.timesteps, episodes=args.episodes, seed=args.seed, progress=Progress)
    emit(result, args.json, _render_demo)
    return EXIT_OK if result["ok"] else EXIT_CHECK_FAILED


def cmd_import(args: argparse.Namespace) -> int:
    """``rlport import``: convert an SB3 .zip or an RL Zoo run folder into a bundle."""
    import time
    import warnings

    from rlport.bundle.container import check_destination
    from rlport.errors import RlportWarning
    from rlport.importers.sb3_import import import_sb3
    from rlport.importers.zoo import import_zoo

    began = time.perf_counter()
    source = Path(args.source)
    for option in ("vecnormalize", "algorithm"):
        if source.is_dir() and getattr(args, option):
            print(f"rlport import: --{option} is read from the run folder; drop the option", file=sys.stderr)
            return EXIT_BAD_INPUT
    for path in (source, args.vecnormalize):
        if path is not None:
            _refuse_special_file(Path(path))
    check_destination(Path(args.output), "the bundle")  # before the import's work, not after
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", RlportWarning)
        if source.is_dir():
            bundle = import_zoo(source, env_id=args.env, probes=args.probes, include_critic=args.include_critic,
                                fingerprint=not args.no_fingerprint, evaluate=args.evaluate,
                                env_module=args.env_module)  # fmt: skip
        else:
            bundle = import_sb3(source, vecnormalize=args.vecnormalize, env_id=args.env, probes=args.probes,
                                include_critic=args.include_critic, algorithm=args.algorithm,
                                fingerprint=not args.no_fingerprint, evaluate=args.evaluate,
                                env_module=args.env_module)  # fmt: skip
        bundle.save(args.output)
    seconds = time.perf_counter() - began
    prov = bundle.provenance
    result = {
        "source": str(source),
        "output": args.output,
        "seconds": seconds,
        "env": bundle.env.to_json(),
        "algorithm": prov.get("algorithm"),
        "sb3_version": prov.get("framework_version"),
        "normalized": any(n.op == "normalize" for n in bundle.graph.preprocess),
        "published_return": prov.get("published_return_mean"),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RlportWarning)],
        "size_bytes": Path(args.output).stat().st_size,
    }

    def render(r: dict[str, Any]) -> str:
        rows = [
            ("imported", f"{r['source']} -> {r['output']} ({r['size_bytes'] / 1024:.1f} KiB) in {r['seconds']:.2f} s"),
            ("algorithm", f"{r['algorithm'] or '?'} (saved by SB3 {r['sb3_version'] or 'unknown'})"),
            ("env", f"{r['env']['id'] or 'none recorded (pass --env ID)'}"
                    + "".join(f" + {w['name']}" for w in r["env"]["wrappers"])),
            ("VecNormalize", "applied in the graph" if r["normalized"] else "none"),
        ]  # fmt: skip
        if r["published_return"] is not None:
            rows.append(("published return", f"{r['published_return']:.2f} (from evaluations.npz)"))
        rows += [("warning", w) for w in r["warnings"]]
        return table(rows)

    emit(result, args.json, render)
    return EXIT_OK


def _refuse_special_file(path: Path) -> None:
    """Refuse a FIFO, a device or a socket before an importer opens it: reading one would block or never end."""
    import stat

    from rlport.errors import BundleError

    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing or unreadable: the importer says so
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BundleError(
            f"{str(path)!r} is not a regular file or a folder (a FIFO, a device or a socket); "
            "pass an SB3 .zip, a vecnormalize.pkl or an RL Zoo run folder"
        )


def cmd_export(args: argparse.Namespace) -> int:
    """``rlport export``: write a bundle as ONNX or as an SB3 .zip."""
    from rlport.bundle.bundle import Bundle

    if args.format == "sb3":
        return _export_sb3(args)
    from rlport.exporters.onnx_export import export_onnx

    path = export_onnx(Bundle.load(args.bundle), args.output, opset=args.opset)
    result = {"output": str(path), "format": args.format, "opset": args.opset, "size_bytes": Path(path).stat().st_size}
    size = f"{result['size_bytes'] / 1024:.1f} KiB"
    text = f"exported {args.bundle} to {path} (ONNX opset {args.opset}, {size}): raw observation in, final action out"
    emit(result, args.json, lambda r: text)
    return EXIT_OK


def _export_sb3(args: argparse.Namespace) -> int:
    import warnings

    from rlport.errors import RlportWarning
    from rlport.exporters.to_sb3 import export_sb3

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", RlportWarning)
        paths = export_sb3(args.bundle, args.output, args.vecnormalize, allow_missing_critic=args.allow_missing_critic)
    notes = [str(w.message) for w in caught if issubclass(w.category, RlportWarning)]
    result = {"outputs": [str(p) for p in paths], "format": "sb3", "warnings": notes}
    load = f"ALGO.load({str(paths[0])!r})" + (f" and VecNormalize.load({str(paths[1])!r}, venv)" if paths[1:] else "")
    text = f"exported {args.bundle} to {', '.join(result['outputs'])}; load with {load}"
    emit(result, args.json, lambda r: "\n".join([text, *(f"warning: {note}" for note in notes)]))
    return EXIT_OK
