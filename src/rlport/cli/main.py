"""The ``rlport`` command line: parsing and printing only; each subcommand calls one public function.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rlport.errors import RlportError

__all__ = ["main"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _emit(data: dict[str, Any], as_json: bool, render) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


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
    return _table(rows)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from rlport.bundle.bundle import Bundle

    _emit(Bundle.load(args.bundle).summary(), args.json, _render_inspect)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    import rlport
    from rlport.cli.progress import Progress
    from rlport.envs import check_spaces, make_env, run_episodes

    policy = rlport.load(args.bundle, backend=args.backend, seed=args.seed, device=args.device)
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else None
    env = make_env(policy.bundle.env, env_id=args.env, env_kwargs=env_kwargs)
    try:
        check_spaces(policy, env, exact=False)
    except RlportError as exc:
        print(f"rlport run: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    try:
        check_spaces(policy, env)
    except RlportError as exc:  # same layout, other bounds or float width (an older env version)
        print(f"rlport run: note: {exc}", file=sys.stderr)
    with Progress(args.episodes, "episodes") as bar:
        stats = run_episodes(
            policy, env, args.episodes, seed=args.seed, deterministic=not args.stochastic,
            on_episode=lambda i, r: bar.update(note=f"return {r:.1f}"),
        )  # fmt: skip
    env_id = args.env or policy.bundle.env.id
    result = {"bundle": args.bundle, "env": env_id, "seed": args.seed, **stats.to_json()}

    def render(r: dict[str, Any]) -> str:
        spread = f"min {min(r['returns']):.2f}, max {max(r['returns']):.2f}"
        return _table([
            ("env", str(r["env"])),
            ("episodes", str(r["episodes"])),
            ("return", f"{r['mean_return']:.2f} ± {r['std_return']:.2f} ({spread})"),
            ("length", f"{sum(r['lengths']) / len(r['lengths']):.1f} steps on average"),
            ("predict", f"{r['median_predict_us']:.1f} µs median per step"),
        ])  # fmt: skip

    _emit(result, args.json, render)
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
    return f"{head}\n\n{_table(rows)}\n\n{verdict}\nbundle: {r['paths']['bundle']}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from rlport.cli.progress import Progress
    from rlport.demo import run_demo

    result = run_demo(args.out, timesteps=args.timesteps, episodes=args.episodes, seed=args.seed, progress=Progress)
    _emit(result, args.json, _render_demo)
    return EXIT_OK if result["ok"] else EXIT_CHECK_FAILED


def _cmd_import(args: argparse.Namespace) -> int:
    import time
    import warnings
    from pathlib import Path

    from rlport.errors import RlportWarning
    from rlport.importers.sb3_import import import_sb3
    from rlport.importers.zoo import import_zoo

    began = time.perf_counter()
    source = Path(args.source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", RlportWarning)
        if source.is_dir():
            if args.vecnormalize:
                print("rlport import: --vecnormalize is read from the run folder; drop the option", file=sys.stderr)
                return EXIT_BAD_INPUT
            bundle = import_zoo(source, env_id=args.env, probes=args.probes, include_critic=args.include_critic,
                                fingerprint=not args.no_fingerprint, evaluate=args.evaluate)  # fmt: skip
        else:
            bundle = import_sb3(source, vecnormalize=args.vecnormalize, env_id=args.env, probes=args.probes,
                                include_critic=args.include_critic, algorithm=args.algorithm,
                                fingerprint=not args.no_fingerprint, evaluate=args.evaluate)  # fmt: skip
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
        return _table(rows)

    _emit(result, args.json, render)
    return EXIT_OK


def _render_checks(r: dict[str, Any]) -> str:
    rows = [("check", "result", "measured", "tolerance", "detail")]
    rows += [(c["name"], c["status"], c["measured"], c["tolerance"], c["detail"][:120]) for c in r["checks"]]
    return _table(rows) + "\n\n" + ("OK: no check failed" if r["ok"] else "FAILED: see the FAIL rows")


def _load_fingerprint_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    from rlport.errors import BundleError

    try:
        data = json.loads(open(path, encoding="utf-8").read())
        tensors = {
            name: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"]) for name, t in data["tensors"].items()
        }
        return data["meta"], tensors
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path} is not a fingerprint written by `rlport fingerprint`: {exc}") from exc


def _cmd_verify(args: argparse.Namespace) -> int:
    from rlport.cli.progress import Progress
    from rlport.verify import checks

    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else None
    extra = _load_fingerprint_file(args.fingerprint) if args.fingerprint else None
    with Progress(args.episodes, "episodes") as bar:
        report = checks.verify(args.bundle, env_id=args.env, env_kwargs=env_kwargs, episodes=args.episodes,
                               seed=args.seed, progress=lambda i, r: bar.update(note=f"return {r:.1f}"),
                               fingerprint=extra)  # fmt: skip
    _emit(report.to_json(), args.json, _render_checks)
    return EXIT_CHECK_FAILED if report.failed else EXIT_OK


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from rlport.bundle.manifest import EnvSpec
    from rlport.verify.fingerprint import record_fingerprint

    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    meta, tensors = record_fingerprint(EnvSpec(args.env, env_kwargs), episodes=args.episodes, steps=args.steps,
                                       seed=args.seed)  # fmt: skip
    encoded = {name: {"dtype": t.dtype.name, "shape": list(t.shape), "data": t.reshape(-1).tolist()}
               for name, t in tensors.items()}  # fmt: skip
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"meta": meta, "tensors": encoded}, handle)
    _emit({"output": args.output, **meta}, args.json, lambda r: f"fingerprint of {args.env} written to {r['output']}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlport.bundle.bundle import Bundle

    if args.format == "sb3":
        return _export_sb3(args)
    from rlport.exporters.onnx_export import export_onnx

    path = export_onnx(Bundle.load(args.bundle), args.output, opset=args.opset)
    result = {"output": str(path), "format": args.format, "opset": args.opset, "size_bytes": Path(path).stat().st_size}
    size = f"{result['size_bytes'] / 1024:.1f} KiB"
    text = f"exported {args.bundle} to {path} (ONNX opset {args.opset}, {size}): raw observation in, final action out"
    _emit(result, args.json, lambda r: text)
    return EXIT_OK


def _export_sb3(args: argparse.Namespace) -> int:
    from rlport.exporters.to_sb3 import export_sb3

    paths = export_sb3(args.bundle, args.output, args.vecnormalize, allow_missing_critic=args.allow_missing_critic)
    result = {"outputs": [str(p) for p in paths], "format": "sb3"}
    load = f"ALGO.load({str(paths[0])!r})" + (f" and VecNormalize.load({str(paths[1])!r}, venv)" if paths[1:] else "")
    _emit(result, args.json, lambda r: f"exported {args.bundle} to {', '.join(r['outputs'])}; load with {load}")
    return EXIT_OK


def _cmd_requirements(args: argparse.Namespace) -> int:
    from rlport.bundle.bundle import Bundle
    from rlport.deploy import requirements

    lines = requirements(Bundle.load(args.bundle), backend=args.backend, with_env=not args.no_env)
    _emit({"requirements": lines}, args.json, lambda r: "\n".join(r["requirements"]))
    return EXIT_OK


def _cmd_pack(args: argparse.Namespace) -> int:
    from rlport.deploy import pack

    folder = pack(args.bundle, args.output, backend=args.backend)
    files = sorted(p.name for p in folder.iterdir())
    _emit(
        {"output": str(folder), "files": files}, args.json, lambda r: f"packed into {r['output']}: {', '.join(files)}"
    )
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    from rlport import __version__

    parser = argparse.ArgumentParser(prog="rlport", description="Portable, pickle-free RL policy bundles.")
    parser.add_argument("--version", action="version", version=f"rlport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a bundle")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inspect)

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
    p.set_defaults(func=_cmd_run)

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
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("verify", help="check that a bundle behaves here as it did where it was made")
    p.add_argument("bundle")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the bundle's)")
    p.add_argument("--env-kwargs", default=None, help="JSON object of env kwargs (default: the bundle's)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fingerprint", default=None, help="also replay a fingerprint file from `rlport fingerprint`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("fingerprint", help="record an env's dynamics fingerprint (on the source machine)")
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", default=None)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_fingerprint)

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
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("requirements", help="the smallest pinned requirements to run a bundle")
    p.add_argument("bundle")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--no-env", action="store_true", help="leave out the env's packages")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_requirements)

    p = sub.add_parser("pack", help="write a folder to copy to the device: bundle, requirements, run.py")
    p.add_argument("bundle")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("demo", help="train PPO on CartPole, export, reload in a fresh process, compare with SB3")
    p.add_argument("--out", default="rlport-demo", help="folder for the SB3 .zip and the bundle")
    p.add_argument("--timesteps", type=int, default=30_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_demo)
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
