"""The card's ``README.md`` (a Hugging Face model card) and ``results.json``.

The YAML header has ``library_name``, ``tags`` and a ``model-index`` whose ``mean_reward`` is
``"mean +/- std"`` for the env, as the cards of SB3 agents on the Hugging Face Hub. ``results.json``
holds what huggingface_sb3 writes (``mean_reward``, ``std_reward``, ``is_deterministic``,
``n_eval_episodes``, ``eval_datetime``) plus the env id and every return.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["model_card", "results_json"]

_TAG = re.compile(r"[^A-Za-z0-9_.-]+")


def _yaml(value: Any) -> str:
    """A YAML scalar: JSON's double-quoted string is valid YAML, whatever the text holds."""
    return json.dumps(str(value), ensure_ascii=True)


def _md(value: Any) -> str:
    """Text for a markdown table cell or line: no markup, no line break, no HTML."""
    text = " ".join(str(value).split())
    return re.sub(r"([\\`*_{}\[\]<>()#+!|])", r"\\\1", text)


def results_json(card: dict[str, Any]) -> dict[str, Any]:
    """huggingface_sb3's ``results.json`` keys, and ``env_id``, ``returns``, ``lengths``, ``seed``, the reference."""
    ret = card["returns"]
    if not ret.get("available"):
        return {"env_id": card["identity"]["env_id"], "evaluated": False, "reason": ret.get("reason"),
                "eval_datetime": card["date"]}  # fmt: skip
    return {
        "mean_reward": ret["mean"], "std_reward": ret["std"], "is_deterministic": ret["deterministic"],
        "n_eval_episodes": ret["episodes"], "eval_datetime": card["date"], "env_id": ret["env_id"],
        "seed": ret["seed"], "returns": ret["returns"], "lengths": ret["lengths"], "ci95": list(ret["ci95"]),
        "reference": ret["reference"], "reproduced": (ret.get("verdict") or {}).get("status"),
        "bundle_sha256": card["identity"]["sha256"],
    }  # fmt: skip


def model_card(card: dict[str, Any]) -> str:
    """The ``README.md`` text."""
    ident, ret = card["identity"], card["returns"]
    env, algorithm = ident["env_id"] or "unknown", ident["algorithm"]
    tags = ["reinforcement-learning", "deep-reinforcement-learning", "rlport", _TAG.sub("-", env),
            _TAG.sub("-", algorithm.lower())]  # fmt: skip
    if "stable-baselines3" in ident["framework"].lower() or ident["framework"].lower().startswith("sb3"):
        tags.append("stable-baselines3")
    lines = ["---", "library_name: rlport", "tags:", *(f"- {_yaml(tag)}" for tag in dict.fromkeys(tags))]
    if ret.get("available"):
        reward = f"{ret['mean']:.2f} +/- {ret['std']:.2f}"
        lines += [
            "model-index:", f"- name: {_yaml(f'{algorithm}-{env}')}", "  results:", "  - task:",
            "      type: reinforcement-learning", "      name: reinforcement-learning", "    dataset:",
            f"      name: {_yaml(env)}", f"      type: {_yaml(env)}", "    metrics:", "    - type: mean_reward",
            f"      value: {_yaml(reward)}", "      name: mean_reward",
            "      verified: false",
        ]  # fmt: skip
    lines += ["---", "", f"# {_md(algorithm)} agent playing {_md(env)}", ""]
    name = ident["file"].replace("`", "'")
    lines.append(f"A portable, pickle-free rlport bundle (`{name}`) of a {_md(algorithm)} policy "
                 f"({_md(ident['framework'])}); it runs with numpy alone.")  # fmt: skip
    lines += ["", "## Results", ""]
    if ret.get("available"):
        low, high = ret["ci95"]
        lines.append(f"- mean return: **{ret['mean']:.2f} ± {ret['std']:.2f}** over {ret['episodes']} episodes "
                     f"(deterministic actions, seeds {ret['seed']} .. {ret['seed'] + ret['episodes'] - 1}; "
                     f"95% interval of the mean {low:.2f} .. {high:.2f})")  # fmt: skip
        ref = ret.get("reference")
        if ref:
            verdict = (ret.get("verdict") or {}).get("status", "")
            lines.append(f"- reference: {ref['mean']:.2f} ± {ref['std']:.2f} over {ref['episodes']} episodes "
                         f"({_md(ref['source'])}); reproduced: {verdict}")  # fmt: skip
    else:
        lines.append(f"- not evaluated: {_md(ret.get('reason', ''))}")
    size = card["size"]
    lines.append(f"- size: {size['bytes']:,} bytes, {size['parameters']:,} parameters")
    for row in card["latency"]:
        lines.append(f"- predict latency ({_md(row['backend'])}, one observation): {row['median_us']:.1f} µs median")
    lines += ["", "## Usage", "", "```python", "import rlport", "", f"policy = rlport.load({name!r})",
              "action, _ = policy.predict(obs, deterministic=True)", "```", "",
              f"`rlport run {name}` plays episodes; `rlport verify {name}` checks it on a new machine. "
              "Every episode's return is in `results.json`; the full report is `index.html`.", ""]  # fmt: skip
    return "\n".join(lines)
