"""Published returns of SB2 RL Zoo agents: the zoo's ``benchmark.md`` table, or a README table beside the
agents that quotes it, read as untrusted text.

``benchmark.md`` (at the zoo's root, beside ``trained_agents/``) has one row per agent:
``|algo |env_id |mean_reward|std_reward|n_timesteps|n_episodes|``. A folder of agents copied out of
the zoo may quote the rows in its ``README.md``: ``| ALGO/ENV.pkl | env today | mean ± std | n | notes |``.
Either gives ``published_return_mean``, ``_std`` and ``published_episodes``, the provenance keys
``rlport verify`` compares with.

Example:
    >>> published_return(Path("trained_agents/a2c/CartPole-v1.pkl"))   # doctest: +SKIP
    {'published_return_mean': 499.903, 'published_return_std': 1.672, 'published_episodes': 300, ...}
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rlport.readers.untrusted import read_regular

__all__ = ["published_return", "parse_table", "MAX_TABLE_SIZE"]

MAX_TABLE_SIZE = 1 << 20
"""The largest benchmark.md or README.md read (1 MiB); the zoo's benchmark.md holds 12 KiB."""
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_MEAN_STD = re.compile(rf"({_NUMBER})\s*(?:±|\+-|\+/-)\s*({_NUMBER})")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []


def _result(mean: str, std: str, episodes: str, source: str) -> dict[str, Any] | None:
    try:
        values = float(mean), float(std), int(episodes)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values[:2]) or values[1] < 0 or not 0 < values[2] < 1 << 31:
        return None
    return {"published_return_mean": values[0], "published_return_std": values[1],
            "published_episodes": values[2], "published_return_source": source}  # fmt: skip


def parse_table(text: str, algo: str, model_name: str, source: str) -> dict[str, Any] | None:
    """The row of ``algo``/``model_name`` (``ENV.pkl``) in a benchmark.md or README table; None when absent."""
    env_id = Path(model_name).stem
    for cells in map(_cells, text.splitlines()):
        if len(cells) >= 6 and cells[0] == algo and cells[1] == env_id:  # benchmark.md
            return _result(cells[2], cells[3], cells[5], source)
        if len(cells) >= 4 and cells[0] in (f"{algo}/{model_name}", f"{algo}/{env_id}"):  # a README quoting it
            match = _MEAN_STD.search(cells[2])
            if match:
                return _result(match[1], match[2], cells[3], source)
    return None


def published_return(model: Path) -> dict[str, Any]:
    """The published evaluation of the zoo agent ``model`` (``ALGO/ENV.pkl``); {} when no table lists it.

    Looks at ``benchmark.md`` of the zoo root (``trained_agents/..``), then ``benchmark.md`` and
    ``README.md`` of the folder holding ``ALGO/``.

    Raises:
        BundleError: a table file that is not a regular file or is over MAX_TABLE_SIZE.
    """
    algo, agents = model.parent.name, model.parent.parent
    for table in (agents.parent / "benchmark.md", agents / "benchmark.md", agents / "README.md"):
        if not table.is_file():
            continue
        text = read_regular(table, MAX_TABLE_SIZE, str(table)).decode("utf-8", "replace")
        found = parse_table(text, algo, model.name, f"{table.parent.name}/{table.name}")
        if found is not None:
            return found
    return {}
