"""Where the time of `rlport import RUN -o x.rlp --no-fingerprint` goes after Python starts (issue 12).

Usage: python benchmarks/import_profile.py [RUN] [--repeats N] [--top N] [--json]

RUN is an RL Zoo run folder (default: the sample's ppo/CartPole-v1_1, under $RLPORT_ZOO_SAMPLE or
../shared/zoo-sample). Each measurement is a fresh `python -c` child that runs the command the way
`python -m rlport` does (rlport.cli.main.main) and times itself from its first line, so Python's own
start-up is left out:

- numpy: `import numpy`, the floor of every rlport command (reported apart, not part of the target);
- work: everything after it, rlport's modules, the optional packages the import loads, reading the
  run, the assembly and writing the bundle: the figure issue 12 wants under 0.1 s (median);
- the optional packages the child loaded (gymnasium, yaml, torch, stable_baselines3, onnx): without
  verification recording no env may be made, and no env can be made without gymnasium.

Then one child under `-X importtime` (the own import time of each module imported after numpy,
grouped by package; numpy's lazily loaded submodules count) and one under cProfile (the functions of
the command, imports included).

Children use a private bytecode cache (PYTHONPYCACHEPREFIX in a temporary folder, warmed once): an
installed rlport has its .pyc files, an editable one under PYTHONDONTWRITEBYTECODE=1 would recompile
its modules in each child. The machine's load moves the figures; its load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.1
"""Issue 12: the work after Python starts (numpy's import aside) of a typical run without verification."""
OPTIONAL = ("gymnasium", "yaml", "torch", "stable_baselines3", "onnx", "onnxruntime")

_CHILD = """
import time
began, cpu = time.perf_counter(), time.process_time()
import numpy
numpy_s = time.perf_counter() - began
import contextlib, io, json, sys
profile = {profile!r}
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
from rlport.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["import", {run!r}, "-o", {output!r}, "--no-fingerprint", "--json"])
work_s = time.perf_counter() - began - numpy_s
if profile:
    profiler.disable()
    profiler.dump_stats(profile)
loaded = {{m: m in sys.modules for m in {optional!r}}}
report = {{"code": code, "numpy_s": numpy_s, "work_s": work_s, "cpu_s": time.process_time() - cpu, "loaded": loaded}}
print(json.dumps(report))
"""


def zoo_sample() -> Path:
    return Path(os.environ.get("RLPORT_ZOO_SAMPLE") or ROOT.parent / "shared" / "zoo-sample")


def _env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _child(source: Path, tmp: str, flags: tuple[str, ...] = (), profile: str = "") -> tuple[dict[str, Any], str]:
    """One fresh process running ``rlport import SOURCE -o x.rlp --no-fingerprint``: its report and its stderr."""
    code = _CHILD.format(run=str(source), output=f"{tmp}/x.rlp", optional=OPTIONAL, profile=profile)
    done = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          env=_env(f"{tmp}/pycache"), cwd=tmp, check=False)  # fmt: skip
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"the child failed:\n{done.stderr[-3000:]}") from None
    if report["code"] != 0:
        raise SystemExit(f"rlport import {source} exited {report['code']}:\n{done.stderr[-3000:]}")
    return report, done.stderr


def fresh_process(source: Path, repeats: int) -> dict[str, Any]:
    """``rlport import SOURCE -o x.rlp --no-fingerprint`` in ``repeats`` fresh processes (after one that warms the
    bytecode cache): the whole process's wall time seen from here, numpy's import and the work after it."""
    import time

    with tempfile.TemporaryDirectory() as tmp:
        _child(source, tmp)
        walls, reports = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            reports.append(_child(source, tmp)[0])
            walls.append(time.perf_counter() - began)
    work = [r["work_s"] for r in reports]
    return {
        "source": str(source),
        "repeats": repeats,
        "process_median_s": float(np.median(walls)),
        "numpy_median_s": float(np.median([r["numpy_s"] for r in reports])),
        "work_median_s": float(np.median(work)),
        "work_max_s": float(np.max(work)),
        "loaded": {m: any(r["loaded"][m] for r in reports) for m in OPTIONAL},
    }


def fresh_line(fresh: dict[str, Any], base: Path) -> str:
    """One line for people: :func:`fresh_process`'s figures, the source relative to ``base``."""
    ms = lambda s: f"{s * 1e3:.1f} ms"  # noqa: E731
    loaded = ", ".join(m for m, on in fresh["loaded"].items() if on) or "none"
    source = Path(fresh["source"]).relative_to(base)
    return (
        f"fresh process `rlport import {source} -o x.rlp --no-fingerprint`: {ms(fresh['process_median_s'])} in all, "
        f"of which import numpy {ms(fresh['numpy_median_s'])} and the work after it {ms(fresh['work_median_s'])} "
        f"(median of {fresh['repeats']}; optional packages loaded: {loaded})"
    )


def importtime_groups(stderr: str) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Own import time (seconds) of the modules imported after numpy, per group (rlport, yaml, gymnasium,
    stdlib and others), and the slowest of them."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line[len("import time:") :].split("|")
        if name == " numpy":  # the child's first import done: what came before is start-up and numpy
            rows = []
        else:
            rows.append((name.strip(), int(own) / 1e6))
    groups: dict[str, float] = {}
    slow = []
    for name, own in rows:
        root = name.split(".")[0]
        group = root if root in ("rlport", "yaml", "gymnasium", "torch", "numpy") else "other (stdlib ...)"
        groups[group] = groups.get(group, 0.0) + own
        slow.append((name, own))
    return groups, sorted(slow, key=lambda r: -r[1])


def profile_rows(path: str, top: int) -> list[tuple[str, float, float]]:
    """The ``top`` functions by cumulative time: (where, cumulative s, own s)."""
    import pstats

    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, _, own, cumulative, _) in stats.items():
        where = filename.split("/src/")[-1] if "/src/rlport/" in filename else Path(filename).name
        rows.append((f"{where}:{line}({name})", cumulative, own))
    return sorted(rows, key=lambda r: -r[1])[:top]


def run(run_folder: Path, repeats: int, top: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        _child(run_folder, tmp)  # the bytecode cache and the file caches
        reports = [_child(run_folder, tmp)[0] for _ in range(repeats)]
        _, importtime = _child(run_folder, tmp, ("-X", "importtime"))
        _child(run_folder, tmp, profile=f"{tmp}/profile")
        profiled = profile_rows(f"{tmp}/profile", top)
    groups, slow = importtime_groups(importtime)
    work = [r["work_s"] for r in reports]
    loaded = {m: any(r["loaded"][m] for r in reports) for m in OPTIONAL}
    return {
        "benchmark": "import_profile",
        "run": str(run_folder),
        "command": f"rlport import {run_folder} -o x.rlp --no-fingerprint",
        "repeats": repeats,
        "numpy_median_s": float(np.median([r["numpy_s"] for r in reports])),
        "work_median_s": float(np.median(work)),
        "work_min_s": float(np.min(work)),
        "work_max_s": float(np.max(work)),
        "cpu_median_s": float(np.median([r["cpu_s"] for r in reports])),
        "loaded": loaded,
        "env_made": loaded["gymnasium"],
        "importtime_self_s": groups,
        "slowest_modules": slow[:top],
        "profile": profiled,
        "target_s": TARGET_S,
        "met": float(np.median(work)) < TARGET_S and not loaded["gymnasium"],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def render(r: dict[str, Any]) -> str:
    ms = lambda s: f"{s * 1e3:7.1f} ms"  # noqa: E731
    lines = [
        f"{r['command']}  ({r['repeats']} fresh processes; load average {r['load_average']})",
        f"  import numpy (the floor, apart)       {ms(r['numpy_median_s'])}",
        f"  work after numpy, median (min, max)   {ms(r['work_median_s'])} ({ms(r['work_min_s'])}, "
        f"{ms(r['work_max_s'])})   target < {r['target_s'] * 1e3:.0f} ms: {'met' if r['met'] else 'NOT met'}",
        f"  process CPU time (numpy included)     {ms(r['cpu_median_s'])}",
        "  optional packages loaded              "
        + (", ".join(m for m, on in r["loaded"].items() if on) or "none")
        + ("   (gymnasium: an env may have been made)" if r["env_made"] else "   (no gymnasium: no env made)"),
        "",
        "-X importtime, own import time by package (numpy left out):",
        *(f"  {name:28s} {ms(s)}" for name, s in sorted(r["importtime_self_s"].items(), key=lambda kv: -kv[1])),
        "slowest modules:",
        *(f"  {name:50s} {ms(s)}" for name, s in r["slowest_modules"]),
        "",
        "cProfile of the command (imports included; cumulative, own):",
        *(f"  {where[:90]:90s} {ms(c)} {ms(o)}" for where, c, o in r["profile"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", default=None, help="an RL Zoo run folder")
    parser.add_argument("--repeats", type=int, default=9, help="timed fresh processes (default 9)")
    parser.add_argument("--top", type=int, default=25, help="rows of the module and function lists")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    args = parser.parse_args(argv)
    folder = args.run or zoo_sample() / "ppo" / "CartPole-v1_1"
    if not folder.is_dir():
        print(f"no RL Zoo run at {folder} (set RLPORT_ZOO_SAMPLE or pass a run folder)", file=sys.stderr)
        return 2
    result = run(folder, max(1, args.repeats), max(1, args.top))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
