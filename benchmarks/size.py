"""Bundle size vs SB3's ``.zip`` for the same policy.

For each policy: SB3's ``model.save`` zip (which also holds the optimizer state and pickled
objects), the ``policy.pth`` inside it, and rlport bundles: the default (actor only, with 256
parity probes), without probes, and with ``include_critic=True``.

Each model first learns for a few steps (at least one gradient update), so that its optimizer
state holds Adam's moments as in any model saved after training; an untrained model's zip
would carry an empty optimizer state and look smaller than a real one.

Usage:
    .venv/bin/python benchmarks/size.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from _common import POLICIES, add_common_args, emit, fmt_ratio, machine_info, make_policy, progress, table

SIZE_POLICIES = ("ppo-cartpole", "ppo-pendulum", "sac-pendulum", "dqn-cartpole")
VARIANTS = {  # name: keyword arguments of rlport.from_sb3
    "rlport": {},
    "rlport_no_probes": {"probes": 0},
    "rlport_critic": {"include_critic": True},
}


def run(quick: bool = False) -> dict[str, Any]:
    import rlport

    out: dict[str, Any] = {"benchmark": "size", "quick": quick, "policies": {}}
    with tempfile.TemporaryDirectory(prefix="rlport-bench-") as tmp:
        for name in SIZE_POLICIES:
            progress(f"size: {name}")
            spec = POLICIES[name]
            model = make_policy(name, updates=True)
            zip_path = Path(tmp) / f"{name}.zip"
            model.save(zip_path)
            with zipfile.ZipFile(zip_path) as archive:
                members = {info.filename: info.file_size for info in archive.infolist()}
            sizes = {"sb3_zip": zip_path.stat().st_size, "sb3_policy_pth": members.get("policy.pth")}
            for variant, kwargs in VARIANTS.items():
                path = Path(tmp) / f"{name}.{variant}.rlp"
                rlport.from_sb3(model, env_id=spec["env"], **kwargs).save(path)
                sizes[variant] = path.stat().st_size
            out["policies"][name] = {
                "algo": spec["algo"],
                "env": spec["env"],
                "net_arch": spec["net_arch"],
                "bytes": sizes,
                "sb3_zip_members": members,
                "ratios": {
                    "zip_over_rlport": sizes["sb3_zip"] / sizes["rlport"],
                    "zip_over_rlport_no_probes": sizes["sb3_zip"] / sizes["rlport_no_probes"],
                    "zip_over_rlport_critic": sizes["sb3_zip"] / sizes["rlport_critic"],
                },
            }
    out["machine"] = machine_info()
    return out


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def render(result: dict[str, Any]) -> str:
    rows = []
    for name, res in result["policies"].items():
        b, r = res["bytes"], res["ratios"]
        rows.append(
            [
                f"{name} {'-'.join(map(str, res['net_arch']))}",
                _kib(b["sb3_zip"]),
                _kib(b["sb3_policy_pth"]),
                _kib(b["rlport"]),
                _kib(b["rlport_no_probes"]),
                _kib(b["rlport_critic"]),
                fmt_ratio(r["zip_over_rlport"]),
                fmt_ratio(r["zip_over_rlport_no_probes"]),
                fmt_ratio(r["zip_over_rlport_critic"]),
            ]
        )
    headers = [
        "policy",
        "SB3 zip KiB",
        "(policy.pth)",
        "rlport KiB",
        "no probes",
        "+critic",
        "zip / rlport",
        "zip / no probes",
        "zip / +critic",
    ]
    return "\n".join(
        [
            "Bundle size vs SB3 .zip (same policy after a few training steps; rlport = actor only + 256 probes)",
            "",
            table(headers, rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    emit(run(quick=args.quick), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
