"""Microcontroller figures: each C export cross-compiled for a Cortex-M4F, its flash and RAM.

For each policy (PPO CartPole 64-64 built here, and the RL Zoo sample's agents), float, int8
weights (``rlport.compress(weights="int8")``) and int8 weights and activations (calibrated on 256
observations), the export is
compiled with ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os
-DRLPORT_DETERMINISTIC_ONLY -DRLPORT_NO_BATCH`` and linked into a minimal program (newlib's
``nosys.specs``, ``--gc-sections``) that calls ``rlport_policy_act`` once; the same program
without the call is the baseline. Reported:

* flash: text + data of the program minus the baseline's (the policy, its weights and the libm
  functions it calls);
* RAM: bss minus the baseline's (the static scratch arenas) plus a stack estimate, the frames of
  ``rlport_policy_act``, the run function and the largest helper (``-fstack-usage``; libm's frames
  not included).

Needs the Debian package ``gcc-arm-none-eabi`` (and ``libnewlib-arm-none-eabi``); the RL Zoo sample
at ``../shared/zoo-sample`` (or ``$RLPORT_ZOO_SAMPLE``).

Usage:
    .venv/bin/python benchmarks/c_size.py [--json]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _common import POLICIES, emit, machine_info, make_policy, progress, table

TARGET_FLASH_KB = 24.0
TARGET_INT8_FLASH_KB = 12.0
CROSS = "arm-none-eabi-gcc"
FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-std=c99",
         "-DRLPORT_DETERMINISTIC_ONLY", "-DRLPORT_NO_BATCH", "-ffunction-sections", "-fdata-sections"]  # fmt: skip
LINK = ["--specs=nosys.specs", "-Wl,--gc-sections", "-lm"]
ZOO_AGENTS = ("ppo/CartPole-v1_1", "a2c/Pendulum-v1_1", "dqn/LunarLander-v2_1", "qrdqn/Acrobot-v1_1",
              "sac/Pendulum-v1_1", "trpo/MountainCarContinuous-v0_1", "ppo/Walker2d-v3_1")  # fmt: skip
MAIN = """#include "rlport_policy.h"
static rlport_observation obs;
static rlport_action_t action[RLPORT_ACTION_SIZE];
static rlport_state state;
int main(void)
{
#ifdef CALL
    return rlport_policy_act(&obs, &state, 0.0f, 0, 0, action);
#else
    return (int)action[0] + (int)sizeof obs + (int)sizeof state;
#endif
}
"""


def _sizes(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], check=True, capture_output=True, text=True).stdout
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)", out, re.M)}
    text = sum(v for k, v in sections.items() if k in (".text", ".rodata", ".ARM.exidx", ".init", ".fini"))
    return {"flash": text + sections.get(".data", 0), "bss": sections.get(".bss", 0)}


def _stack(folder: Path) -> int:
    frames = {}
    for line in (folder / "rlport_policy.su").read_text().splitlines():
        where, size, _ = line.split("\t")
        frames[where.rsplit(":", 1)[-1]] = int(size)
    helpers = [v for k, v in frames.items() if k.startswith("rl_") and k != "rl_run_deterministic"]
    return frames.get("rlport_policy_act", 0) + frames.get("rl_run_deterministic", 0) + max(helpers, default=0)


def measure(folder: Path) -> dict[str, int]:
    """Flash and RAM of the export in ``folder`` on a Cortex-M4F (bytes)."""
    (folder / "main.c").write_text(MAIN)
    subprocess.run(
        [CROSS, *FLAGS, "-fstack-usage", "-c", "rlport_policy.c"], cwd=folder, check=True, capture_output=True
    )
    found = {}
    for label, extra in (("with", ["-DCALL"]), ("without", [])):
        subprocess.run([CROSS, *FLAGS, *extra, "main.c", "rlport_policy.c", "-o", f"{label}.elf", *LINK], cwd=folder,
                       check=True, capture_output=True)  # fmt: skip
        found[label] = _sizes(folder / f"{label}.elf")
    bss = found["with"]["bss"] - found["without"]["bss"]
    stack = _stack(folder)
    return {"flash": found["with"]["flash"] - found["without"]["flash"], "bss": bss, "stack": stack, "ram": bss + stack}


def _zoo() -> Path:
    value = os.environ.get("RLPORT_ZOO_SAMPLE", "").strip()
    return Path(value) if value else Path(__file__).resolve().parents[1].parent / "shared" / "zoo-sample"


def run() -> dict[str, Any]:
    import warnings

    import rlport
    from rlport.backends.c.export import export_c
    from rlport.compression import compress

    warnings.filterwarnings("ignore")

    if shutil.which(CROSS) is None:
        raise SystemExit(f"{CROSS} not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
    out: dict[str, Any] = {"benchmark": "c_size", "flags": FLAGS, "policies": {}}
    with tempfile.TemporaryDirectory(prefix="rlport-bench-size-") as tmp:
        bundles: dict[str, Any] = {}
        progress("c_size: PPO CartPole 64-64")
        bundles["ppo-cartpole 64-64"] = rlport.from_sb3(
            make_policy("ppo-cartpole"), env_id=POLICIES["ppo-cartpole"]["env"]
        )
        for agent in ZOO_AGENTS:
            progress(f"c_size: zoo {agent}")
            try:
                bundles[f"zoo {agent}"] = rlport.import_zoo(_zoo() / agent)
            except Exception as exc:  # noqa: BLE001 - a figure left out is reported, not fatal
                out["policies"][f"zoo {agent}"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:120]}"}
        for name, bundle in bundles.items():
            progress(f"c_size: measuring {name}")
            variants = {"float": bundle}
            for label, activations in (("int8", None), ("int8+act", "int8")):
                try:
                    variants[label] = compress(bundle, weights="int8", activations=activations, calibrate=256)
                except Exception as exc:  # noqa: BLE001 - reported as left out
                    out["policies"].setdefault(name, {})[label] = {"skipped": f"{type(exc).__name__}: {str(exc)[:80]}"}
            for label, variant in variants.items():
                folder = export_c(variant, Path(tmp) / re.sub(r"\W", "_", f"{name}-{label}"))
                out["policies"].setdefault(name, {})[label] = measure(folder)
    out["machine"] = machine_info()
    return out


def render(result: dict[str, Any]) -> str:
    rows = []
    for name, res in result["policies"].items():
        if "skipped" in res:
            rows.append([name, "skipped", res["skipped"], "", "", ""])
            continue
        for label, f in res.items():
            if "skipped" in f:
                rows.append([name, label, "skipped: " + f["skipped"], "", "", ""])
                continue
            rows.append(
                [name, label, f"{f['flash'] / 1024:.1f}", f"{f['bss']}", f"{f['stack']}", f"{f['ram'] / 1024:.2f}"]
            )
    lines = ["Cortex-M4F (" + " ".join(result["flags"][:5]) + "), rlport_policy_act linked into a minimal program", "",
             table(["policy", "weights", "flash KiB", "bss B", "stack B (est.)", "RAM KiB"], rows), ""]  # fmt: skip
    cartpole = result["policies"].get("ppo-cartpole 64-64", {})
    for label, target in (("float", TARGET_FLASH_KB), ("int8", TARGET_INT8_FLASH_KB)):
        if "flash" in cartpole.get(label, {}):
            met = "yes" if cartpole[label]["flash"] / 1024 <= target else "NO"
            lines.append(f"PPO CartPole 64-64 {label} flash <= {target:g} KiB: {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    emit(run(), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
