"""The comparison report: sizes, agreement on rollouts or probes, paired returns and their 95% interval, warnings."""

from __future__ import annotations

import math
import statistics

import gymnasium as gym
import numpy as np
import pytest

import rlport
from quantised_models import balancer, cartpole_bundle, float_bundle
from rlport.compression import compare, compress
from rlport.compression.report import paired_interval, t_quantile_95
from rlport.envs import run_episodes


def _t_cdf(x: float, df: int) -> float:
    """Student's t CDF by Simpson's rule on its density (independent of the table under test)."""
    grid = np.linspace(0.0, x, 20_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(grid**2 / df))
    h = grid[1] - grid[0]
    return 0.5 + h / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum())


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 29, 30, 31, 60, 200])
def test_the_t_quantile_leaves_2_5_percent_in_each_tail(df):
    assert _t_cdf(t_quantile_95(df), df) == pytest.approx(0.975, abs=2e-4)


def test_a_wrong_t_quantile_fails_that_check():
    assert _t_cdf(1.96, 5) != pytest.approx(0.975, abs=2e-4)  # the normal quantile is too small for 5 df


def test_the_paired_interval_is_the_mean_plus_minus_t_times_the_standard_error():
    differences = [3.0, -1.0, 4.0]
    closed_form_t = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # Student's t, 2 df, 97.5%: exact
    half = closed_form_t * statistics.stdev(differences) / math.sqrt(3)
    mean, low, high = paired_interval(differences)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=2e-3)
    assert paired_interval([5.0])[1:] == (-math.inf, math.inf)


def test_returns_are_paired_on_the_same_seeds_and_agree_on_rollouts():
    original = cartpole_bundle()
    report = compare(original, compress(original, "fp16"), episodes=3, seed=7)
    alone = run_episodes(rlport.load(original), gym.make("CartPole-v1"), 3, seed=7)
    assert report.returns["float"] == alone.returns  # episode i of each policy: seed 7 + i
    assert report.agreement["steps"] == sum(alone.lengths) and report.agreement["kind"] == "discrete"
    assert report.agreement["identical"] >= 0.999
    low, high = report.returns["ci95"]
    assert low <= report.returns["difference"] <= high
    narrowed = sum(t.nbytes for n, t in original.tensors.items() if n.startswith("mlp_extractor.policy_net"))
    assert report.sizes["compressed"]["weight_bytes"] == report.sizes["float"]["weight_bytes"] - narrowed // 2


def test_a_kept_return_gives_no_warning_and_a_drop_beyond_the_interval_warns():
    original = balancer()
    kept = compare(original, compress(original, "int8", "int8", calibrate=500), episodes=4)
    assert kept.returns["float_mean"] == kept.returns["compressed_mean"] == 500 and not kept.warnings
    saturated = compress(original, "int8", "int8", calibrate=1)  # scales from one observation: activations clip
    dropped = compare(original, saturated, episodes=4)
    assert dropped.returns["ci95"][1] < 0
    assert dropped.warnings and "return is lower than the float one's" in dropped.warnings[0]


def test_one_episode_warns_that_there_is_no_interval():
    report = compare(balancer(), compress(balancer(), "int8"), episodes=1)
    assert report.returns["ci95"] == [None, None] and "no confidence interval" in report.warnings[0]


def test_without_an_env_actions_are_compared_on_the_probes_and_returns_are_not():
    original = float_bundle("sac-continuous")  # spaces only: no env id recorded
    report = compare(original, compress(original, "int8"), episodes=5)
    assert report.returns is None
    assert report.agreement["source"] == "probes" and report.agreement["steps"] == original.probe_info.count
    assert report.agreement["kind"] == "continuous" and report.agreement["error_unit"] == "fraction of the action range"
    assert 0 < report.agreement["mean_error"] <= report.agreement["max_error"] < 0.05
    assert any("returns were not compared" in w for w in report.warnings)


def test_int8_weights_take_under_0_3x_the_float_bytes_of_a_64_64_network():
    original = float_bundle("mlp-discrete")  # 64-64 hidden layers
    report = compare(original, compress(original, "int8"), episodes=0)
    assert report.sizes["ratio"]["weight_bytes"] <= 0.3
    assert report.sizes["compressed"]["file_bytes"] < report.sizes["float"]["file_bytes"]


def test_a_significant_drop_under_1_percent_is_reported_without_a_warning():
    from rlport.compression.report import _return_warnings, _returns

    small = _returns([100.0] * 4, [99.9, 99.8, 99.9, 99.8], seed=0)
    assert small["significant_drop"] and not small["dropped"] and _return_warnings(small) == []
    large = _returns([100.0, 100.0, 100.0], [90.0, 89.0, 91.0], seed=0)  # the twin: 10% lower
    assert large["dropped"] and "-10.00% of the float return" in _return_warnings(large)[0]
