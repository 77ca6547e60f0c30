"""``rlport eval`` on local processes: the same returns as ``rlport run``, chunks, retries, resume, the summary."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from rlport.cli.main import main
from rlport.errors import RlportError
from rlport.fleet import evaluate
from rlport.fleet.plan import Chunker, Job

HERE = Path(__file__).parent


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_eval_gives_what_rlport_run_gives_for_each_seed(zoo_bundles):
    paths = [str(zoo_bundles["ppo-cartpole"]), str(zoo_bundles["qrdqn-acrobot"])]
    code, out, _ = _cli(["eval", *paths, "--seeds", "2", "--episodes", "2", "--workers", "2", "--json"])
    assert code == 0
    result = json.loads(out)
    assert [(r["bundle"], r["seed"]) for r in result["results"]] == [(p, s) for p in paths for s in (0, 2)]
    for r in result["results"]:
        code, run_out, _ = _cli(["run", r["bundle"], "--seed", str(r["seed"]), "--episodes", "2", "--json"])
        ran = json.loads(run_out)
        for key in ("bundle", "env", "seed", "episodes", "mean_return", "std_return", "returns", "lengths"):
            assert r[key] == ran[key], key
        assert r["error"] is None and r["steps"] == sum(ran["lengths"])


def test_the_zoo_sample_reproduces_its_published_returns(import_zoo_runs, tmp_path):
    runs = {"ppo-cartpole": "ppo/CartPole-v1_1", "qrdqn-acrobot": "qrdqn/Acrobot-v1_1",
            "ddpg-pendulum": "ddpg/Pendulum-v1_1", "trpo-mcc": "trpo/MountainCarContinuous-v0_1",
            "her-panda": "her/PandaReach-v1_1"}  # fmt: skip
    import_zoo_runs(tmp_path, runs)
    code, out, _ = _cli(["eval", str(tmp_path), "--episodes", "5", "--workers", "2", "--json"])
    summary = {Path(row["bundle"]).stem: row for row in json.loads(out)["summary"]}
    assert code == 1  # panda-gym is not installable here: that job failed, and the exit code says so
    assert summary["her-panda"]["failed"] == 1 and summary["her-panda"]["reproduced"] == "not run"
    for name in ("ppo-cartpole", "qrdqn-acrobot", "ddpg-pendulum", "trpo-mcc"):
        assert summary[name]["reproduced"] == "yes", summary[name]
        assert summary[name]["reference"]["source"] == "published RL Zoo evaluation"
    code, table, _ = _cli(["eval", str(tmp_path / "ppo-cartpole.rlp"), "--episodes", "5", "--workers", "1"])
    row = "| ppo-cartpole.rlp | ppo | CartPole-v1 | 500.00 | 0.00 | 5 | 2,500 | 500.00 ± 0.00 (n=10) | yes |"
    assert code == 0 and row in table


def test_a_return_far_from_the_reference_is_not_reproduced(zoo_bundles, tmp_path):
    """The CartPole policy with its episodes cut short by a time limit: 50 per episode, the reference is 500."""
    from dataclasses import replace

    from rlport.bundle.bundle import Bundle

    bundle = Bundle.load(zoo_bundles["ppo-cartpole"])
    bundle.env = replace(bundle.env, max_episode_steps=50)
    path = tmp_path / "short.rlp"
    bundle.save(path)
    code, out, _ = _cli(["eval", str(path), "--episodes", "5", "--workers", "1", "--json"])
    row = json.loads(out)["summary"][0]
    assert code == 1 and row["reproduced"] == "no" and row["mean_return"] == 50.0


def test_chunks_hold_enough_work_and_spread_over_workers():
    jobs = [Job(i, "a.rlp", "a", None, i, 1) for i in range(400)]
    chunker = Chunker(jobs, workers=2, min_seconds=0.1)
    assert len(chunker.next()) == 1  # the probe
    assert chunker.next() is None  # the rest waits for its time
    chunker.observe("a", 0.002)
    assert len(chunker.next()) == 50  # 0.1 s / 2 ms
    chunker = Chunker(jobs[:20], workers=2, min_seconds=0.1)
    chunker.next()
    chunker.observe("a", 0.001)
    assert len(chunker.next()) == 5  # 19 left on 2 workers: at least 2 chunks each
    chunker.observe("a", 10.0)
    assert len(chunker.next()) == 1


def test_a_lost_worker_is_retried_then_reported(zoo_bundles, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("RLPORT_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    path = str(zoo_bundles["ppo-cartpole"])
    once = evaluate([path], envs=["crash_env:CrashOnceCartPole-v0"], episodes=2, workers=1, retries=1)
    plain = evaluate([path], episodes=2, workers=1)
    assert (tmp_path / "crashed").exists()
    assert once["results"][0]["attempts"] == 2 and once["results"][0]["error"] is None
    assert once["results"][0]["returns"] == plain["results"][0]["returns"]
    always = evaluate([path], envs=["crash_env:CrashCartPole-v0"], episodes=1, workers=1, retries=1)
    error = always["results"][0]["error"]
    assert always["failed"] == 1 and error["type"] == "WorkerLost" and "tried 2 times" in error["message"]


def test_an_interrupted_run_resumes_from_its_results_file(zoo_bundles, tmp_path):
    out = tmp_path / "results.jsonl"
    path = str(zoo_bundles["qrdqn-acrobot"])
    first = evaluate([path], seeds=3, episodes=1, workers=1, output=out)
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    tampered = json.loads(lines[1])
    tampered["returns"] = ["not a number"]
    out.write_text(lines[0] + "\n" + json.dumps(tampered) + "\n" + lines[2][:40])  # cut mid-line, as by a kill
    again = evaluate([path], seeds=3, episodes=1, workers=1, output=out, resume=True)
    assert again["resumed"] == 1  # the tampered and the cut lines are run again
    assert [r["returns"] for r in again["results"]] == [r["returns"] for r in first["results"]]
    with pytest.raises(RlportError, match="--resume"):
        evaluate([path], episodes=1, workers=1, output=out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "missing.rlp"], "no such bundle or folder"),
        (["eval", "{bundle}", "--address", "127.0.0.1:6379"], "--engine ray"),
        (["eval", "{bundle}", "--resume"], "--output"),
        (["eval", "{bundle}", "--seeds", "0"], "--seeds"),
        (["eval", "{folder}"], "holds no bundle"),
    ],
    ids=["missing-bundle", "address-without-ray", "resume-without-output", "zero-seeds", "empty-folder"],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, zoo_bundles, tmp_path):
    argv = [a.format(bundle=zoo_bundles["ppo-cartpole"], folder=tmp_path) for a in argv]
    code, out, err = _cli([*argv, "--json"])
    assert code == 2 and message in err and "Traceback" not in err
    assert json.loads(out)["error"]["exit_code"] == 2


def test_csv_has_a_row_per_result(zoo_bundles, tmp_path):
    csv_path = tmp_path / "r.csv"
    code, out, _ = _cli(["eval", str(zoo_bundles["qrdqn-acrobot"]), "--seeds", "2", "--episodes", "1",
                         "--workers", "1", "--csv", str(csv_path)])  # fmt: skip
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert code == 0 and [int(r["seed"]) for r in rows] == [0, 1]
    assert all(float(r["mean_return"]) == float(r["returns"]) for r in rows)
