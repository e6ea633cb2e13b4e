"""The Meta-World stale-data sweep: real runs through the TorchRL example, resumability, aggregation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from benchmarks.metaworld_stale import aggregate, sweep


def test_smoke_sweep_runs_every_combination_and_resumes_without_rerunning(tmp_path, capsys):
    runs = sweep.sweep("smoke", tmp_path, workers=2, address=None)
    assert len(runs) == 4 and {(r.regime, r.objective) for r in runs} == {
        ("fresh", "gipo"), ("fresh", "ppo_clip"), ("stale", "gipo"), ("stale", "ppo_clip"),
    }  # fmt: skip
    results = {r.name: tmp_path / f"{r.name}.json" for r in runs}
    for path in results.values():
        summary = json.loads(path.read_text())
        assert 0.0 <= aggregate.run_score(summary, sweep.PRESETS["smoke"].total_frames) <= 1.0
        assert summary["history"][-1]["frames"] == 2000
    stale_args = sweep.REGIME_ARGS[("torchrl", "stale")]
    assert stale_args[stale_args.index("--buffer-iterations") + 1] != "1"

    # a "killed" sweep: one result is missing; the others must be kept, not recomputed
    killed = runs[1]
    results[killed.name].unlink()
    kept = {n: p.stat().st_mtime_ns for n, p in results.items() if n != killed.name}
    capsys.readouterr()
    sweep.sweep("smoke", tmp_path, workers=1, address=None)
    assert "3 already finished, 1 to go" in capsys.readouterr().out
    assert results[killed.name].exists()
    assert {n: results[n].stat().st_mtime_ns for n in kept} == kept


def test_iqm_is_the_quarter_trimmed_mean_and_the_bootstrap_is_stratified_by_task():
    scores = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # tasks differ, seeds within a task agree
    assert aggregate.iqm_with_ci(scores) == (0.5, 0.5, 0.5)  # resampling seeds within tasks changes nothing
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(5, 3))
    point, low, high = aggregate.iqm_with_ci(scores)
    assert point == pytest.approx(stats.trim_mean(scores.ravel(), 0.25))
    assert low < point < high


def test_run_score_averages_the_second_half_evaluations():
    summary = {"eval_success_rate": 1.0, "history": [
        {"frames": 0, "eval_success_rate": 0.0}, {"frames": 500, "eval_success_rate": 0.2},
        {"frames": 1000}, {"frames": 1500, "eval_success_rate": 0.5}, {"frames": 2000, "eval_success_rate": 0.9},
    ]}  # fmt: skip
    assert aggregate.run_score(summary, 2000) == pytest.approx((0.5 + 0.9 + 1.0) / 3)
