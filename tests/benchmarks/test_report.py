"""The shared report helpers: the verdict rule and the mean that tables use."""

import math

from benchmarks.report import present_mean, verdict


def test_verdict_met_within_noise_missed() -> None:
    assert verdict(1.01, 0.99, 1.02) == "met"
    assert verdict(1.05, 1.01, 1.02) == "within noise"
    assert verdict(1.05, 1.04, 1.02) == "missed"
    assert verdict(1.05, 1.04, None) == ""


def test_present_mean_skips_missing_and_is_nan_when_empty() -> None:
    assert present_mean([1.0, None, 3.0]) == 2.0
    assert math.isnan(present_mean([]))
    assert math.isnan(present_mean([None]))
