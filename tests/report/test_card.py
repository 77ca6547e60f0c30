"""``rlport card``: the page, the Hugging Face model card and results.json say what was measured, and nothing runs."""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import yaml

from rlport.bundle.bundle import Bundle
from rlport.cli.main import main
from rlport.envs import make_env, run_episodes
from rlport.report import card

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def cartpole_card(card_bundles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("card") / "card"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["card", str(card_bundles["cartpole"]), "-o", str(folder), "--episodes", "5", "--video",
                     "--compare", str(card_bundles["panda"]), "--json"])  # fmt: skip
    assert code == 0
    return folder, json.loads(out.getvalue())


def test_the_card_holds_the_returns_played_here(cartpole_card, card_bundles):
    folder, printed = cartpole_card
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "index.html", "replay.gif", "results.json"]
    import rlport

    policy = rlport.load(card_bundles["cartpole"])
    expected = run_episodes(policy, make_env(policy.bundle.env), 5, seed=0).returns
    results = json.loads((folder / "results.json").read_text())
    assert results["returns"] == expected and results["n_eval_episodes"] == 5 and results["is_deterministic"]
    assert results["mean_reward"] == pytest.approx(np.mean(expected)) and results["env_id"] == "CartPole-v1"
    assert results["reproduced"] == "PASS" and results["reference"]["source"] == "published RL Zoo evaluation"
    assert printed["card"]["returns"]["returns"] == expected


def test_the_model_card_has_the_hub_header(cartpole_card):
    folder, _ = cartpole_card
    text = (folder / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    results = json.loads((folder / "results.json").read_text())
    assert header["library_name"] == "rlport" and "CartPole-v1" in header["tags"]
    metric = header["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "mean_reward"
    assert metric["value"] == f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}"
    assert header["model-index"][0]["results"][0]["dataset"]["name"] == "CartPole-v1"


def test_the_page_is_self_contained(cartpole_card):
    folder, _ = cartpole_card
    page = (folder / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:|@import""", page, re.I)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/(svg\+xml|gif);base64,', page)
    assert {alt for alt, _ in images} == {"returns per episode", "latency per backend", "size vs return", "replay"}
    assert "256/256 probes equal" in page and "PandaReach-v1" in page  # parity, and the compared bundle


def test_an_env_that_cannot_be_made_is_said_not_hidden(card_bundles, tmp_path):
    result = card(card_bundles["panda"], tmp_path / "c", episodes=2, video=True)
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["evaluated"] is False and "panda-gym" in results["reason"]
    assert "replay.gif" not in result["files"] and "cannot render" in result["card"]["video"]["note"]
    page = (tmp_path / "c" / "index.html").read_text()
    assert "Not measured here" in page and "No replay" in page
    assert "model-index" not in (tmp_path / "c" / "README.md").read_text()  # no reward to claim


def test_names_from_the_file_are_escaped(card_bundles, tmp_path):
    bundle = Bundle.load(card_bundles["cartpole"])
    evil = '<script>alert(1)</script>"|\n# x'
    bundle.provenance.update(algorithm=evil, framework=evil)
    bundle.env = replace(bundle.env, kwargs={"x": evil})
    path = tmp_path / "evil.rlp"
    bundle.save(path)
    card(path, tmp_path / "c", episodes=1)
    page = (tmp_path / "c" / "index.html").read_text()
    readme = (tmp_path / "c" / "README.md").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>" not in readme and "\n# x" not in readme
    yaml.safe_load(readme.split("---")[1])  # the header still parses


def test_a_card_is_not_written_over_a_file(card_bundles, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["card", str(card_bundles["cartpole"]), "-o", str(target)]) == 2
    assert "give a folder" in err.getvalue() and target.read_text() == "keep"
