"""The card's ``index.html``: one self-contained page (styles inline, plots as ``data:`` URIs, no network).

Every value is escaped (:func:`html.escape`): names and numbers come from an untrusted file.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_page"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f8fa;color:#1f2328}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
.sub{color:#59636e;margin-bottom:20px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin-bottom:16px}
table{border-collapse:collapse;width:100%;font-size:14px}td,th{text-align:left;padding:4px 8px;
border-bottom:1px solid #eaeef2;vertical-align:top}th{color:#59636e;font-weight:600;width:28%}
.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:16px}
.tile{flex:1;min-width:150px;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px}
.tile b{display:block;font-size:22px}.tile span{color:#59636e;font-size:13px}
.PASS,.ok,.yes{color:#1a7f37;font-weight:600}.WARN,.undecided{color:#9a6700;font-weight:600}
.FAIL,.mismatch,.no{color:#cf222e;font-weight:600}
img{max-width:100%}code{font-size:12px;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs if v not in (None, "", []))


def _tile(value: str, label: str, cls: str = "") -> str:
    return f'<div class="tile"><b class="{_e(cls)}">{_e(value)}</b><span>{_e(label)}</span></div>'


def _verdict_word(card: dict[str, Any]) -> tuple[str, str]:
    verdict = (card["returns"] or {}).get("verdict")
    if not verdict:
        return "-", ""
    return {"PASS": ("yes", "yes"), "FAIL": ("no", "no")}.get(verdict["status"], ("undecided", "undecided"))


def render_page(card: dict[str, Any], plots: dict[str, str]) -> str:
    """The page for ``card`` (the dict ``rlport.report.card`` builds) with ``plots`` (data URIs by name)."""
    ident, ret, size = card["identity"], card["returns"], card["size"]
    title = f"{ident['algorithm']} on {ident['env_id'] or 'an unrecorded env'}"
    word, cls = _verdict_word(card)
    tiles = [
        _tile(f"{ret['mean']:.1f} ± {ret['std']:.1f}", f"return over {ret['episodes']} episodes")
        if ret.get("available") else _tile("-", "return: env not available"),
        _tile(word, "reference reproduced", cls),
        _tile(f"{size['bytes'] / 1024:.1f} KiB", f"{size['parameters']:,} parameters"),
    ]  # fmt: skip
    fastest = min(card["latency"], key=lambda r: r["median_us"]) if card["latency"] else None
    if fastest:
        tiles.append(_tile(f"{fastest['median_us']:.1f} µs", f"per action ({fastest['backend']}, one observation)"))
    parts = [f"<h1>{_e(title)}</h1>",
             f'<div class="sub">{_e(ident["file"])} · {_e(ident["framework"])} · sha256 '
             f"<code>{_e(ident['sha256'])}</code></div>",
             f'<div class="tiles">{"".join(tiles)}</div>',
             _identity(ident), _returns(ret, plots), _backends(card, plots), _compare(card, plots),
             _environment(card), _video(card)]  # fmt: skip
    body = "".join(part for part in parts if part)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f"<body><main>{body}<p class=\"sub\">Made by {_e(card['made_by'])} on {_e(card['date'])}.</p>"
            "</main></body></html>\n")  # fmt: skip


def _identity(ident: dict[str, Any]) -> str:
    prov = ident["provenance"]
    env = ident["env_id"] + (f" {ident['env_kwargs']}" if ident["env_kwargs"] else "")
    rows = _rows([
        ("algorithm", ident["algorithm"]), ("source framework", ident["framework"]),
        ("policy class", ident["policy_class"]), ("env", env),
        ("time limit", f"{ident['max_episode_steps']} steps" if ident["max_episode_steps"] else ""),
        ("wrappers", ", ".join(ident["wrappers"]) or "none"), ("observation space", ident["observation_space"]),
        ("action space", ident["action_space"]), ("recurrent", "yes" if ident["recurrent"] else "no"),
        ("trained steps", prov.get("num_timesteps")), ("exported", f"{prov.get('created', '?')} by "
                                                                   f"{prov.get('exporter', '?')}"),
        ("imported from", " ".join(filter(None, [prov.get("imported_from"), prov.get("zoo_run")]))),
    ])  # fmt: skip
    more = _rows(sorted(prov.items()))
    return (f"<section><h2>Identity</h2><table>{rows}</table><details><summary>every provenance field</summary>"
            f"<table>{more}</table></details></section>")  # fmt: skip


def _returns(ret: dict[str, Any], plots: dict[str, str]) -> str:
    if not ret.get("available"):
        return f"<section><h2>Returns</h2><p>Not measured here: {_e(ret.get('reason', ''))}</p></section>"
    ref = ret.get("reference")
    low, high = ret["ci95"]
    rows = [("here", f"{ret['mean']:.2f} ± {ret['std']:.2f} (95% interval of the mean {low:.2f} .. {high:.2f}), "
                     f"{ret['episodes']} episodes, seeds {ret['seed']}..{ret['seed'] + ret['episodes'] - 1}, "
                     "deterministic actions")]  # fmt: skip
    if ref:
        rows.append(("reference", f"{ref['mean']:.2f} ± {ref['std']:.2f} over {ref['episodes']} episodes "
                                  f"({ref['source']})"))  # fmt: skip
    verdict = ret.get("verdict")
    status = ""
    if verdict:
        status = (f'<p>Reproduced: <span class="{_e(verdict["status"])}">{_e(verdict["status"])}</span> '
                  f"{_e(verdict['measured'])} ({_e(verdict['tolerance'])})</p>")  # fmt: skip
    episodes = "".join(f'<tr><td class="num">{i}</td><td class="num">{r:.2f}</td><td class="num">{n}</td></tr>'
                       for i, (r, n) in enumerate(zip(ret["returns"], ret["lengths"], strict=True)))  # fmt: skip
    return (f"<section><h2>Returns</h2><table>{_rows(rows)}</table>{status}"
            f'<img alt="returns per episode" src="{plots["returns"]}">'
            f"<details><summary>every episode</summary><table><tr><th>episode</th><th>return</th><th>steps</th>"
            f"</tr>{episodes}</table></details></section>")  # fmt: skip


def _backends(card: dict[str, Any], plots: dict[str, str]) -> str:
    latency = {row["backend"]: row for row in card["latency"]}
    rows = []
    for row in card["parity"]:
        name = row["backend"]
        if "probes" in row:
            error = f", max |Δaction| {row['max_abs_error']:.2g}" if row.get("max_abs_error") is not None else ""
            parity = f"{row['probes'] - row['mismatched']}/{row['probes']} probes equal{error}"
        else:
            parity = row["detail"]
        timing = f"{latency[name]['median_us']:.1f} µs (p90 {latency[name]['p90_us']:.1f})" if name in latency else "-"
        rows.append(f'<tr><td>{_e(name)}</td><td class="{_e(row["status"])}">{_e(row["status"])}</td>'
                    f"<td>{_e(parity)}</td><td class=\"num\">{_e(timing)}</td></tr>")  # fmt: skip
    size = card["size"]
    image = f'<img alt="latency per backend" src="{plots["latency"]}">' if "latency" in plots else ""
    sizes = _rows([
        ("file size", f"{size['bytes']:,} bytes"), ("parameters", f"{size['parameters']:,}"),
        ("weights", f"{size['weights_bytes']:,} bytes ({', '.join(size['dtypes'])})"),
    ])  # fmt: skip
    return (f"<section><h2>Backends: parity, latency and size</h2><table><tr><th>backend</th><th>parity</th>"
            f"<th>probes replayed</th><th>predict, one observation</th></tr>{''.join(rows)}</table>{image}"
            f"<table>{sizes}</table></section>")  # fmt: skip


def _compare(card: dict[str, Any], plots: dict[str, str]) -> str:
    points = card.get("compare") or []
    if len(points) < 2:
        return ""
    rows = "".join(
        f"<tr><td>{_e(p['label'])}</td><td class=\"num\">{p['bytes'] / 1024:.1f} KiB</td>"
        f"<td class=\"num\">{p['parameters']:,}</td><td>{_e(', '.join(p['dtypes']))}</td>"
        f"<td class=\"num\">{_e(_mean(p))}</td><td>{_e(p.get('note') or '')}</td></tr>"
        for p in points
    )  # fmt: skip
    return (f"<section><h2>Size against return</h2><img alt=\"size vs return\" src=\"{plots['tradeoff']}\">"
            f"<table><tr><th>bundle</th><th>size</th><th>parameters</th><th>weights</th><th>return</th><th></th></tr>"
            f"{rows}</table></section>")  # fmt: skip


def _mean(point: dict[str, Any]) -> str:
    return "-" if point.get("mean") is None else f"{point['mean']:.2f} ± {point['std']:.2f}"


def _environment(card: dict[str, Any]) -> str:
    deps = card["dependencies"]
    check = deps["check"]
    here = ", ".join(f"{k} {v}" for k, v in deps["here"].items() if v)
    rows = _rows([("recorded at export", card["recorded_versions"]), ("here", here),
                  ("drift", check["measured"])])  # fmt: skip
    spaces = card.get("spaces")
    if spaces:
        rows += _rows([("spaces here", f"{spaces['status']}: {spaces['measured']}")])
    return (f'<section><h2>Environment and dependencies <span class="{_e(check["status"])}">{_e(check["status"])}'
            f"</span></h2><table>{rows}</table></section>")  # fmt: skip


def _video(card: dict[str, Any]) -> str:
    video = card.get("video")
    if not video:
        return ""
    if video.get("file"):
        return (f"<section><h2>Replay</h2><p>{_e(video['note'])}</p><img alt=\"replay\" "
                f"src=\"{video['uri']}\"></section>")  # fmt: skip
    return f"<section><h2>Replay</h2><p>No replay: {_e(video['note'])}</p></section>"
