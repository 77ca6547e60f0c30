"""The subcommands that read, run and convert a bundle: inspect, run, demo, import, export.

Each calls one public function of rlport and prints its result (see ``output.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from rlport.cli.output import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, emit, emit_error, printable, table, wrapped
from rlport.errors import RlportError

__all__ = ["cmd_demo", "cmd_export", "cmd_import", "cmd_inspect", "cmd_run"]


_FLOAT_MAX = {"float16": 65504.0, "float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308}
_MAX = re.compile(r"(?<![\w-])-?max(?!\w)")
_LIST_LIMIT = 6
"""Per-element bounds of at most this many elements are listed; longer ones are summarised as ``min..max``."""


def _space_text(space: dict[str, Any]) -> str:
    """One line for a space: ``Box(4,) float32, low [-4.8, -max, ...], high [...]``, ``Discrete(2)``, ``Dict: ...``."""
    kind = space["type"]
    if kind == "box":
        dtype, low, high = space["dtype"], space["low"], space["high"]
        head = f"Box{tuple(space['shape'])} {dtype}"
        if not isinstance(low, list) and not isinstance(high, list):
            return f"{head} in [{_bound(low, dtype)}, {_bound(high, dtype)}]"
        return f"{head}, low {_bound(low, dtype)}, high {_bound(high, dtype)}"
    if kind == "discrete":
        return f"Discrete({space['n']})" + (f" starting at {space['start']}" if space.get("start") else "")
    if kind == "multi_discrete":
        return f"MultiDiscrete({space['nvec']})"
    if kind == "multi_binary":
        return f"MultiBinary({space['shape']})"
    return "Dict: " + "; ".join(f"{e['key']}: {_space_text(e['space'])}" for e in space["spaces"])


def _bound(value: Any, dtype: str = "float64") -> str:
    """A Box bound for people: ``inf``, ``max`` for the dtype's largest float, 4 significant digits.

    Per-element bounds that are all equal read as one number; up to :data:`_LIST_LIMIT` elements are
    listed, longer ones summarised as ``min..max``.
    """
    if not isinstance(value, list):
        return _number(value, dtype)
    if not value:
        return "-"
    numbers = [float(v) for v in value]
    if len(set(numbers)) == 1:
        return _number(numbers[0], dtype)
    if len(numbers) <= _LIST_LIMIT:
        return "[" + ", ".join(_number(v, dtype) for v in numbers) + "]"
    return f"{_number(min(numbers), dtype)}..{_number(max(numbers), dtype)}"


def _number(value: Any, dtype: str) -> str:
    """``-inf``/``inf``, ``-max``/``max`` (the largest finite value of a float dtype), else ``%.4g``."""
    number = float(value)
    sign = "-" if number < 0 else ""
    if number in (float("inf"), float("-inf")):
        return f"{sign}inf"
    if dtype in _FLOAT_MAX and abs(number) >= _FLOAT_MAX[dtype] * (1 - 1e-6):
        return f"{sign}max"
    return f"{number:.4g}"


def _trained_on(prov: dict[str, Any]) -> str:
    """The training device: ``device`` when recorded, else SB3's ``GPU Enabled`` (imports record only that)."""
    if prov.get("device"):
        return str(prov["device"])
    gpu = str(prov.get("gpu_enabled", "")).strip().lower()
    return {"true": "cuda", "false": "cpu"}.get(gpu, "an unknown device")


def _env_text(env: dict[str, Any]) -> str:
    """The env id, its kwargs, time limit and wrappers: ``Walker2d-v4, wrappers: time_feature max_steps=1000``."""
    if not env["id"]:
        return "none recorded (pass --env ID to run it)"
    parts = [env["id"]]
    parts += [f"kwargs {env['kwargs']}"] if env["kwargs"] else []
    parts += [f"time limit {env['max_episode_steps']} steps"] if env.get("max_episode_steps") else []
    wrappers = [" ".join([w["name"], *(f"{k}={v}" for k, v in w.get("kwargs", {}).items())]) for w in env["wrappers"]]
    parts += [f"wrappers: {', '.join(wrappers)}"] if wrappers else ["no wrappers"]
    return ", ".join(parts)


def _versions_text(prov: dict[str, Any]) -> str:
    """The versions recorded at export: ``python 3.7.10, numpy 1.21.3, gym 0.19.0, torch 1.10.0, Linux x86_64``."""
    names = ("python", "numpy", "gymnasium", "gym", "torch")
    parts = [f"{name} {prov[name]}" for name in names if prov.get(name)]
    parts += [_platform_text(str(prov["platform"]))] if prov.get("platform") else []
    return ", ".join(parts) or "no versions recorded"


def _platform_text(platform: str) -> str:
    """``Linux-5.14.21-...-x86_64-with-glibc2.31 #1 SMP ...`` -> ``Linux x86_64`` (system and machine)."""
    system = platform.split("-", 1)[0].split()[0] if platform.strip() else "?"
    machine = re.search(r"x86_64|amd64|aarch64|arm64|armv\w+|i[3-6]86|ppc64\w*|s390x|riscv64", platform, re.I)
    return f"{system} {machine.group()}" if machine else system


def _space_rows(role: str, space: dict[str, Any]) -> list[tuple[str, str]]:
    """A row for a space; a Dict space gets a row per key under a heading row."""
    if space["type"] != "dict":
        return [(role, _space_text(space))]
    rows = [(role, f"Dict of {len(space['spaces'])} keys")]
    return rows + [(f"  {e['key']}", _space_text(e["space"])) for e in space["spaces"]]


def _render_inspect(s: dict[str, Any]) -> str:
    prov = {key: value for key, value in s["provenance"].items() if value is not None}
    framework = f"{prov.get('framework', '?')} {prov.get('framework_version', '')}".strip()
    steps = prov.get("num_timesteps")
    steps_text = f"{steps:,}" if isinstance(steps, int) else "an unknown number of"
    critic = "kept" if s["includes_critic"] else "not kept"
    origin = prov.get("imported_from")
    origin_text = f", imported from {origin}" if origin else ""
    origin_text += f" of RL Zoo run {prov['zoo_run']}" if prov.get("zoo_run") else ""
    rows = [
        ("format", s["format_version"]),
        ("algorithm", f"{prov.get('algorithm', '?')}, {framework}" + (f", {prov['policy_class']}"
                                                                      if prov.get("policy_class") else "")),
        ("trained", f"{steps_text} steps on {_trained_on(prov)}"),
        ("exported", f"{prov.get('created', '?')} by {prov.get('exporter', '?')}{origin_text}"),
        ("recorded with", _versions_text(prov)),
        ("env", _env_text(s["env"])),
        *_space_rows("observation", s["observation_space"]),
        *_space_rows("action", s["action_space"]),
        ("preprocess", " -> ".join(s["graph"]["preprocess"]) or "-"),
        ("policy", " -> ".join(s["graph"]["policy"])),
        ("postprocess", " -> ".join(s["graph"]["postprocess"]) or "-"),
        ("parameters", f"{s['parameters']:,} in the graph, {s['tensors']} tensors, critic {critic}"),
        ("recurrent", "yes" if s["recurrent"] else "no"),
        ("probes", f"{s['probes']['count']}, from {s['probes']['source']}" if s["probes"] else "none"),
    ]  # fmt: skip
    if prov.get("published_return_mean") is not None:
        spread = f" ± {prov['published_return_std']:.2f}" if prov.get("published_return_std") is not None else ""
        episodes = f" over {prov['published_episodes']} episodes" if prov.get("published_episodes") else ""
        rows.append(("published return", f"{prov['published_return_mean']:.2f}{spread}{episodes}, RL Zoo"))
    text = table(rows)
    if any(_MAX.search(value) for role, value in rows if role in ("observation", "action") or role.startswith(" ")):
        text += "\n\nmax: the largest finite value of the space's float type (gym's stand-in for infinity)"
    return text


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
        if args.json:
            emit_error(type(exc).__name__, str(exc), EXIT_CHECK_FAILED)
        return EXIT_CHECK_FAILED
    try:  # float width and float32-max-for-inf are representation only: they pass without a word
        check_spaces(policy, env, hint="the layout is the same, so the policy runs (another version of the env?)")
    except RlportError as exc:  # same layout, bounds of other values (an older env version)
        print(wrapped(f"rlport run: note: {printable(str(exc))}"), file=sys.stderr)
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
    """``rlport demo``: train, export, reload and compare with SB3 (``rlport.cli.demo.run_demo``)."""
    from rlport.cli.demo import require_training_packages, run_demo
    from rlport.cli.progress import Progress

    require_training_packages()  # before any folder is made or any step trained

    result = run_demo(args.out, timesteps=args.timesteps, episodes=args.episodes, seed=args.seed, progress=Progress)
    emit(result, args.json, _render_demo)
    return EXIT_OK if result["ok"] else EXIT_CHECK_FAILED


def cmd_import(args: argparse.Namespace) -> int:
    """``rlport import``: convert an SB3 .zip or an RL Zoo run folder into a bundle."""
    import time
    import warnings

    from rlport.bundle.container import check_destination
    from rlport.errors import RlportWarning
    from rlport.frameworks.zoo.run import run_of_model

    began = time.perf_counter()
    source = _sb2_model_of(Path(args.source))
    bare_only = ("policy_kwargs", "policy", "observation_space", "action_space")
    for option in [name for name in bare_only if getattr(args, name, None) is not None and not _is_weights(source)]:
        return _refuse(args, f"--{option.replace('_', '-')} is for bare weights (a .pth file); drop the option")
    for option in ("vecnormalize", "algorithm", "no_vecnormalize"):
        if source.is_dir() and getattr(args, option):
            flag = "--" + option.replace("_", "-")
            return _refuse(args, f"{flag} is for a model .zip; a run folder brings its own, drop the option")
    if getattr(args, "best", False) and not source.is_dir():
        return _refuse(args, "--best is for an RL Zoo run folder (it picks RUN/best_model.zip); pass the folder")
    if args.vecnormalize and args.no_vecnormalize:
        return _refuse(args, "--vecnormalize and --no-vecnormalize contradict each other; pass one")
    for path in (source, args.vecnormalize):
        if path is not None:
            _refuse_special_file(Path(path))
    check_destination(Path(args.output), "the bundle")  # before the import's work, not after
    # a model inside an RL Zoo run folder (RUN/ENV.zip beside RUN/ENV/) acts as the run's agent only with the
    # run's statistics and wrappers: import the whole run, unless the user chose (--vecnormalize, --no-vecnormalize)
    sb2 = _is_sb2(source)  # an SB2 model sits in its own zoo layout (ALGO/ENV.zip beside ALGO/ENV/config.yml)
    run = None if source.is_dir() or sb2 or args.vecnormalize or args.no_vecnormalize else run_of_model(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", RlportWarning)
        bundle = _produce(source, run, args)
        bundle.save(args.output)
    seconds = time.perf_counter() - began
    prov = bundle.provenance
    has_return = prov.get("published_return_mean") is not None  # no return: no file it came from
    result = {
        "source": str(source),
        "output": args.output,
        "seconds": seconds,
        "env": bundle.env.to_json(),
        "algorithm": prov.get("algorithm"),
        "framework": _FRAMEWORK_NAMES.get(str(bundle.source.get("framework")), "SB3"),
        "sb3_version": prov.get("framework_version"),
        "normalized": any(n.op == "normalize" for n in bundle.graph.preprocess),
        "published_return": prov.get("published_return_mean"),
        "published_return_source": prov.get("published_return_source", "evaluations.npz") if has_return else None,
        "zoo_run": str(run or source) if source.is_dir() or run is not None else None,
        "note": _whole_run_note(source, run) if run is not None else None,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RlportWarning)],
        "size_bytes": Path(args.output).stat().st_size,
    }

    def render(r: dict[str, Any]) -> str:
        rows = [
            ("imported", f"{r['source']} -> {r['output']} ({r['size_bytes'] / 1024:.1f} KiB) in {r['seconds']:.2f} s"),
            ("algorithm", f"{r['algorithm'] or '?'} "
                          f"(saved by {r['framework']} {r['sb3_version'] or 'version unknown'})"),
            ("env", f"{r['env']['id'] or 'none recorded (pass --env ID)'}"
                    + "".join(f" + {w['name']}" for w in r["env"]["wrappers"])),
            ("VecNormalize", "applied in the graph" if r["normalized"] else "none"),
        ]  # fmt: skip
        if r["published_return"] is not None:
            rows.append(("published return", f"{r['published_return']:.2f} (from {r['published_return_source']})"))
        rows += [("note", r["note"])] if r["note"] else []
        rows += [("warning", w) for w in r["warnings"]]
        return table(rows)

    emit(result, args.json, render)
    return EXIT_OK


_FRAMEWORK_NAMES = {"stable-baselines3": "SB3", "stable-baselines": "Stable Baselines 2"}
"""How the import summary names the framework a bundle's source file came from."""
_WEIGHTS_SUFFIXES = (".pth", ".pt")
"""Files ``rlport import`` reads as bare SB3 weights (``torch.save(model.policy.state_dict())``)."""


def _refuse(args: argparse.Namespace, message: str) -> int:
    """``rlport import: MESSAGE`` on stderr (with ``--json`` also the JSON error on stdout); exit code 2."""
    print(f"rlport import: {message}", file=sys.stderr)
    if args.json:
        emit_error("UsageError", message, EXIT_BAD_INPUT)
    return EXIT_BAD_INPUT


def _is_weights(source: Path) -> bool:
    return source.suffix.lower() in _WEIGHTS_SUFFIXES


def _produce(source: Path, run: Path | None, args: argparse.Namespace) -> Any:
    """The bundle of ``rlport import``: the producer is chosen by what the source is."""
    from rlport.errors import MissingDependencyError, UnsupportedError

    common = {"probes": args.probes, "include_critic": args.include_critic, "fingerprint": not args.no_fingerprint,
              "evaluate": args.evaluate, "env_module": args.env_module}  # fmt: skip
    if source.is_dir() or run is not None:
        from rlport.frameworks.zoo.run import import_zoo

        try:
            return import_zoo(source, env_id=args.env, algorithm=args.algorithm, best=getattr(args, "best", False),
                              **common)  # fmt: skip
        except MissingDependencyError as exc:  # reading the run needs YAML; the .zip alone does not
            if run is None:
                raise
            raise MissingDependencyError(f"{exc}; or pass --no-vecnormalize to import {source} alone") from exc
    if _is_weights(source):
        if args.algorithm is None:
            raise UnsupportedError(
                f"{source} holds bare weights (a state_dict): pass --algorithm (A2C, PPO, SAC ...) and --env ID "
                "(or --observation-space and --action-space as JSON space specs)"
            )
        from rlport.frameworks.sb3.state_dict import import_state_dict

        return import_state_dict(source, algorithm=args.algorithm, env=args.env, policy_kwargs=args.policy_kwargs,
                                 policy=args.policy, observation_space=args.observation_space,
                                 action_space=args.action_space, vecnormalize=args.vecnormalize, **common)  # fmt: skip
    if _is_sb2(source):
        from rlport.frameworks.sb2.importer import import_sb2

        for option in ("vecnormalize", "no_vecnormalize", "include_critic"):
            if getattr(args, option):
                raise UnsupportedError(f"--{option.replace('_', '-')} is not for a Stable Baselines 2 model: it brings "
                                       "its statistics from its zoo folder (ALGO/ENV/obs_rms.pkl) and keeps the "
                                       "networks SB3 needs")  # fmt: skip
        return import_sb2(source, env=args.env, algorithm=args.algorithm, env_module=args.env_module,
                          probes=args.probes, fingerprint=not args.no_fingerprint, evaluate=args.evaluate)  # fmt: skip
    from rlport.frameworks.sb3.importer import import_sb3

    return import_sb3(source, vecnormalize=args.vecnormalize, env_id=args.env, algorithm=args.algorithm, **common)


def _sb2_model_of(source: Path) -> Path:
    """An SB2 zoo folder (``ALGO/ENV/``, statistics and config) stands for its model beside it (``ALGO/ENV.pkl``)."""
    if not source.is_dir() or source.name in ("", ".", ".."):
        return source
    for suffix in (".pkl", ".zip"):
        model = source.with_name(source.name + suffix)
        if model.is_file() and _is_sb2(model):
            return model
    return source


def _is_sb2(source: Path) -> bool:
    """A Stable Baselines 2 model file (``.pkl``, or a ``.zip`` with SB2's members); a folder is none, and is not
    looked at (an RL Zoo run folder's import would otherwise import the SB2 reader, ~10 ms)."""
    if not source.is_file():
        return False
    if source.suffix.lower() == ".pkl":  # SB3 never writes one: the SB2 reader says what is wrong with it
        return True
    from rlport.frameworks.sb2.importer import is_sb2_file

    return is_sb2_file(source)


def _whole_run_note(model: Path, run: Path) -> str:
    """What ``rlport import RUN/ENV.zip`` did, and how to ask for the .zip alone."""
    return (f"{model} is the model of the RL Zoo run {run}: imported the whole run, as `rlport import {run}` does "
            "(its VecNormalize statistics, wrappers, env id and published returns); --no-vecnormalize imports "
            "the .zip alone")  # fmt: skip


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
    """``rlport export``: write a bundle as ONNX, as an SB3 .zip, as an RL Zoo run folder or as C99 source."""
    from rlport.backends.registry import export_format, load_object
    from rlport.bundle.bundle import Bundle

    writer = export_format(args.format).writer  # an unknown format: UnsupportedError naming the known ones
    if args.format in ("sb3", "zoo"):  # options of their own (critic, VecNormalize, the run folder's files)
        return _export_sb3(args)
    if args.format == "c":  # a folder of three files
        return _export_c(args)
    path = load_object(writer)(Bundle.load(args.bundle), args.output, opset=args.opset)
    result = {"output": str(path), "format": args.format, "opset": args.opset, "size_bytes": Path(path).stat().st_size}
    size = f"{result['size_bytes'] / 1024:.1f} KiB"
    text = f"exported {args.bundle} to {path} (ONNX opset {args.opset}, {size}): raw observation in, final action out"
    emit(result, args.json, lambda r: text)
    return EXIT_OK


def _export_c(args: argparse.Namespace) -> int:
    """``--format c`` (``export_c``): the folder of C99 source, its files and their size."""
    from rlport.backends.c.export import FILES, export_c
    from rlport.bundle.bundle import Bundle

    folder = export_c(Bundle.load(args.bundle), args.output)
    files = [folder / name for name in FILES]
    result = {
        "output": str(folder),
        "format": "c",
        "files": [str(f) for f in files],
        "size_bytes": sum(f.stat().st_size for f in files),
    }
    emit(result, args.json, lambda r: (
        f"exported {args.bundle} as C99 to {folder}{os.sep} ({', '.join(FILES)}; {r['size_bytes'] / 1024:.1f} KiB): "
        f"raw observation in, final action out; see {folder / 'README.md'}"))  # fmt: skip
    return EXIT_OK


def _export_sb3(args: argparse.Namespace) -> int:
    """``--format sb3`` (``export_sb3``) and ``--format zoo`` (``export_zoo``): each file written, and how to load it.

    The critic is checked first, from the bundle alone: a refusal comes before torch and SB3 are imported.
    """
    import warnings

    from rlport.bundle.bundle import Bundle
    from rlport.errors import RlportWarning
    from rlport.frameworks.sb3.to_sb3 import check_critic, export_sb3

    if args.format == "zoo" and args.vecnormalize:
        print("rlport export: --vecnormalize is for --format sb3; the zoo layout keeps the statistics at "
              "DIR/ENV/vecnormalize.pkl, drop the option", file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    bundle = Bundle.load(args.bundle)
    check_critic(bundle, args.allow_missing_critic, option="pass --allow-missing-critic")
    options = dict(allow_missing_critic=args.allow_missing_critic, overwrite=args.force, env_module=args.env_module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", RlportWarning)
        if args.format == "zoo":
            from rlport.frameworks.zoo.export import enjoy_command, export_zoo

            paths, enjoy = export_zoo(bundle, args.output, **options), enjoy_command(args.output, bundle)
        else:
            paths, enjoy = export_sb3(bundle, args.output, args.vecnormalize, **options), None
    algorithm = bundle.source.get("algorithm") if isinstance(bundle.source.get("algorithm"), str) else "ALGO"
    result = {
        "format": args.format,
        "outputs": [str(p) for p in paths],
        "algorithm": algorithm,
        "enjoy": enjoy,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RlportWarning)],
    }

    zoo_files = {"config.yml": "hyperparameters, normalize, env_wrapper", "args.yml": "algo, env, env_kwargs"}

    def render(r: dict[str, Any]) -> str:
        model, *rest = r["outputs"]
        rows = [("model", model, f"{r['algorithm']}.load({model!r})")]
        for path in rest:
            if path.endswith(".pkl"):
                rows.append(("statistics", path, f"VecNormalize.load({path!r}, venv)"))
            else:
                rows.append((Path(path).stem, path, zoo_files.get(Path(path).name, "")))
        what = f"an RL Zoo run folder {args.output}" if r["format"] == "zoo" else "an SB3 model"
        lines = [f"exported {args.bundle} as {what}:", table([("", *row) for row in rows])]
        if r["format"] == "zoo":
            lines.append(f"play it with:\n  {r['enjoy']}" if r["enjoy"] else
                         "RL Zoo's enjoy finds runs at FOLDER/ALGO/ENV_N (e.g. logs/a2c/Pendulum-v1_1): "
                         "export there to play it with python -m rl_zoo3.enjoy")  # fmt: skip
        return "\n".join([*lines, *(wrapped(f"warning: {note}") for note in r["warnings"])])

    emit(result, args.json, render)
    return EXIT_OK
