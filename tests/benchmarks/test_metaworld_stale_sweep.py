"""The Meta-World stale-data sweep: real runs of the TorchRL recipe, resumability, aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks import runner, stats
from benchmarks.metaworld_stale import aggregate, sweep
from benchmarks.report import Pages


def test_smoke_sweep_runs_every_combination_through_the_runner_resumes_and_reports(tmp_path, capsys):
    kept = tmp_path / "results"
    runs = sweep.sweep("smoke", tmp_path, workers=2, address=None, results=kept)
    assert {(r.regime, r.variant) for r in runs} == {("stale", "gipo"), ("stale", "ppo_clip"), ("fresh", "gipo")}
    results = {r.name: runner.stored_path(kept, r) for r in runs}
    for run in runs:
        summary = runner.load(kept, run)  # came back through Ray: the recipe wrote it in a worker-only folder
        assert not (tmp_path / f"{run.name}.json").exists() and (tmp_path / f"{run.name}.log").exists()
        assert summary["steps"] == 600 and summary["config"]["objective"] == sweep.VARIANTS[run.variant][1]
        assert summary["config"]["buffer_size"] == int(sweep.REGIMES[run.regime][1])
        assert 0.0 <= aggregate.final_success(summary) <= 1.0 and 0.0 <= aggregate.auc(summary) <= 1.0

    # a "killed" sweep: one result is missing; the others must be kept, not recomputed
    killed = runs[1]
    results[killed.name].unlink()
    untouched = {n: p.stat().st_mtime_ns for n, p in results.items() if n != killed.name}
    capsys.readouterr()
    sweep.sweep("smoke", tmp_path, workers=1, address=None, results=kept)
    out = capsys.readouterr().out
    assert "3 runs, 2 stored" in out and "1 to go" in out
    assert results[killed.name].exists()
    assert {n: results[n].stat().st_mtime_ns for n in untouched} == untouched

    # the report, written to a scratch docs folder
    pages = Pages(tmp_path / "docs", tmp_path / "img")
    summaries = runner.stored(runs, kept)
    page = aggregate.write("smoke", sweep.PRESETS["smoke"], summaries, pages, against=("other", summaries)).read_text()
    assert "| stale | gipo | all |" in page and "Paired final success difference" in page
    assert (tmp_path / "img" / "metaworld_stale_smoke_curves.png").exists()
    assert (tmp_path / "docs" / "metaworld_stale_smoke_runs.csv").exists()
    # paired with another preset's runs (here: themselves, so every difference is exactly 0)
    assert "### Against the `other` preset" in page
    assert "- GIPO (stale), final success: +0.00 over 1 paired runs → too few pairs" in page


def test_runs_come_block_by_block_and_seed_by_seed():
    preset = sweep.PRESETS["small"]
    runs = sweep.runs_of(preset)
    assert len(runs) == 4 * 3 * 3 + 2 * 3 * 2
    first = runs[: 4 * 3 * 2]  # the stale GIPO / PPO-clip block comes first, whole seeds at a time
    assert {(r.regime, r.variant) for r in first} == {("stale", "gipo"), ("stale", "ppo_clip")}
    assert [r.seed for r in first] == sorted(r.seed for r in first)
    assert preset.regimes()["stale"] == (sweep.SMALL_TASKS, ("gipo", "ppo_clip", "sapo"))


def test_iqm_is_the_quarter_trimmed_mean_and_the_bootstrap_is_stratified_by_task():
    per_task = [np.zeros(3), np.ones(3)]  # tasks differ, seeds within a task agree
    assert stats.iqm_with_ci(per_task) == (0.5, 0.5, 0.5)  # resampling seeds within tasks changes nothing
    rng = np.random.default_rng(0)
    per_task = [rng.uniform(size=5), rng.uniform(size=5), rng.uniform(size=3)]  # unfinished seeds: ragged
    point, low, high = stats.iqm_with_ci(per_task)
    assert point == pytest.approx(scipy_stats.trim_mean(np.concatenate(per_task), 0.25))
    assert low < point < high


def _summary(evals, steps=2000, per_iteration=500):
    history = [{"steps": s + per_iteration, "eval_success": v} for s, v in evals]
    return {"steps": steps, "config": {"steps_per_iteration": per_iteration}, "history": history}


def test_final_success_and_auc():
    summary = _summary([(0, 0.0), (500, 0.2), (1000, 0.5), (1500, 1.0)])  # the last eval is at the end (2000)
    assert aggregate.final_success(summary) == pytest.approx(1.0)  # evaluations in the last 20 %: only the final
    steps, success = aggregate.evaluations(summary)
    assert list(steps) == [0, 500, 1000, 2000]
    area = (0.0 + 0.2) / 2 * 500 + (0.2 + 0.5) / 2 * 500 + (0.5 + 1.0) / 2 * 1000
    assert aggregate.auc(summary) == pytest.approx(area / 2000)
    assert stats.steps_to_reach(steps, success, 0.35) == pytest.approx(750)
    assert np.isnan(stats.steps_to_reach(steps, success, 1.1))


def test_stale_against_fresh_pairs_runs_by_task_and_seed_on_the_fresh_tasks():
    preset = sweep.PRESETS["small"]
    fresh_tasks = preset.regimes()["fresh"][0]
    groups = {}
    for regime, level in (("stale", 0.25), ("fresh", 0.75)):
        for variant in ("gipo", "ppo_clip"):
            runs = {
                (t, s): _summary([(0, 0.0), (1500, level + 0.01 * s)]) for t in sweep.SMALL_TASKS for s in (0, 1, 2)
            }
            if regime == "fresh":
                runs = {k: v for k, v in runs.items() if k[0] in fresh_tasks}
            groups[(regime, variant)] = {"runs": runs}
    lines = aggregate._staleness_lines(preset, groups)
    assert lines[0].startswith("### Stale against fresh") and len(lines) == 4 + 2 + 1
    # 6 pairs (2 fresh tasks × 3 seeds), each stale − fresh = 0.25 − 0.75 exactly: the interval is the point
    assert "paired stale − fresh -0.50 [-0.50, -0.50] over 6 runs → the stale replay hurts." in lines[4]
    del groups[("fresh", "ppo_clip")]  # a variant without its fresh runs is left out, not reported empty
    assert [line.split(":")[0] for line in aggregate._staleness_lines(preset, groups)[4:-1]] == ["- GIPO"]
