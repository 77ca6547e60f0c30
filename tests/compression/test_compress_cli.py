"""``rlport compress``: the table, ``--json``, exit codes (0 kept, 1 return dropped, 2 bad input), one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantised_models import balancer, float_bundle
from rlport.bundle.bundle import Bundle
from rlport.cli.main import main


@pytest.fixture(scope="module")
def balancer_path(tmp_path_factory) -> Path:
    return balancer().save(tmp_path_factory.mktemp("compress") / "balancer.rlp")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_reports_sizes_agreement_and_paired_returns(balancer_path, tmp_path, capsys):
    out_path = tmp_path / "int8.rlp"
    code, out, err = _cli(capsys, "compress", balancer_path, "-o", out_path, "--episodes", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["weights"] == "int8" and result["activations"] is None and result["format_version"] == "1.1"
    assert result["sizes"]["compressed"]["weight_bytes"] < result["sizes"]["float"]["weight_bytes"]
    assert result["agreement"]["kind"] == "discrete" and result["returns"]["episodes"] == 3
    assert result["warnings"] == []
    assert Bundle.load(out_path).encodings.tensors


def test_the_table_shows_float_and_compressed_side_by_side(balancer_path, tmp_path, capsys):
    code, out, _ = _cli(capsys, "compress", balancer_path, "-o", tmp_path / "f16.rlp", "--weights", "fp16",
                        "--episodes", "2")  # fmt: skip
    assert code == 0
    assert "fp16 weights" in out and "identical actions" in out and "95% CI" in out and "format 1.0" in out


def test_a_return_dropped_beyond_the_interval_exits_1_with_a_warning(balancer_path, tmp_path, capsys):
    code, out, _ = _cli(capsys, "compress", balancer_path, "-o", tmp_path / "bad.rlp", "--activations", "int8",
                        "--calibrate", "1", "--episodes", "4", "--json")  # fmt: skip
    result = json.loads(out)
    assert code == 1 and "return is lower" in result["warnings"][0]
    assert (tmp_path / "bad.rlp").is_file()  # written all the same: the exit code says what was found


def test_without_an_env_it_warns_that_returns_were_not_compared(tmp_path, capsys):
    source = float_bundle("cnn").save(tmp_path / "cnn.rlp")
    code, out, _ = _cli(capsys, "compress", source, "-o", tmp_path / "cnn8.rlp", "--json")
    result = json.loads(out)
    assert code == 0 and result["returns"] is None and result["agreement"]["source"] == "probes"
    assert "returns were not compared" in result["warnings"][0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calibrate", "10"], "add --activations int8"),
        (["--weights", "int4"], "invalid choice: 'int4'"),
        (["--episodes", "-1"], "episodes"),
    ],
    ids=["calibrate-without-activations", "unknown-weights", "negative-episodes"],
)
def test_bad_options_exit_2_with_a_one_line_error(balancer_path, tmp_path, capsys, argv, message):
    code, out, err = _cli(capsys, "compress", balancer_path, "-o", tmp_path / "x.rlp", *argv, "--json")
    assert code == 2 and message in err.strip().splitlines()[-1]  # argparse's usage lines come first
    assert json.loads(out)["error"]["exit_code"] == 2
    assert not (tmp_path / "x.rlp").exists()


def test_bad_files_exit_2_before_any_work(balancer_path, tmp_path, capsys):
    garbage = tmp_path / "garbage.rlp"
    garbage.write_bytes(b"not a bundle at all, just bytes")
    code, _, err = _cli(capsys, "compress", garbage, "-o", tmp_path / "y.rlp")
    assert code == 2 and "not a readable rlport bundle" in err
    code, _, err = _cli(capsys, "compress", balancer_path, "-o", tmp_path / "no" / "such" / "dir.rlp")
    assert code == 2 and "does not exist" in err


def test_compressing_an_int8_bundle_again_is_refused(balancer_path, tmp_path, capsys):
    first = tmp_path / "once.rlp"
    assert _cli(capsys, "compress", balancer_path, "-o", first, "--episodes", "0")[0] == 0
    code, _, err = _cli(capsys, "compress", first, "-o", tmp_path / "twice.rlp", "--episodes", "0")
    assert code == 2 and "int8 already" in err
