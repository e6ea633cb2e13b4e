"""The RLlib APPO row's report: scores as the TorchRL sweep's, curves on a common grid, lag and dead fractions."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest

from benchmarks import runner
from benchmarks.metaworld_stale import appo_report, rllib_appo
from benchmarks.report import Pages


def appo_summary(task: str, variant: str, seed: int, level: float, dead: float, lag: float) -> dict:
    """A summary in `rllib_appo.run_one`'s format: iterations end at uneven env steps, evaluations every 500."""
    history, steps, next_eval = [{"steps": 0, "iteration": 0, "eval_success": 0.0}], 0, 500
    for iteration in range(1, 30):
        steps += 90 + 7 * ((iteration + seed) % 3)  # asynchronous sampling: uneven steps per iteration
        row = {"steps": steps, "iteration": iteration, "train_success": level, "train_return": 100 * level,
               "policy_lag_mean": lag, "policy_lag_p50": lag, "policy_lag_p95": 2 * lag, "policy_lag_max": 3 * lag,
               "dead_fraction": dead if iteration > 14 else 2 * dead, "log_ratio_abs_p95": 0.5, "ess": 0.9,
               "entropy": 6.0 - 0.1 * iteration * level}  # fmt: skip
        if steps >= next_eval:
            row["eval_success"], next_eval = level * min(1.0, steps / 2000), next_eval + 500
        history.append(row)
    history[-1]["eval_success"] = level
    return {"framework": "rllib_appo", "task": task, "variant": variant, "seed": seed, "steps": steps,
            "config": {"steps_per_iteration": 0}, "final_eval_success": level, "history": history}  # fmt: skip


@pytest.mark.parametrize("preset_name", ["small", "small_kl", "small_anchor", "binned"])
def test_appo_page_scores_pairs_and_reports_lag_and_dead_fractions(tmp_path, preset_name):
    preset = rllib_appo.PRESETS[preset_name]
    results = tmp_path / "kept"
    results.mkdir()
    for task, variant, seed in rllib_appo.runs_of(preset):
        level, dead = (0.6, 0.0) if variant == "gipo" else (0.2 + 0.01 * seed, 0.3)
        summary = appo_summary(task, variant, seed, level, dead, lag=4.0 if variant == "gipo" else 5.0)
        name = rllib_appo.run_name(task, variant, seed)
        (results / f"{name}.json.gz").write_bytes(gzip.compress(json.dumps(summary).encode()))
    summaries = runner.stored(rllib_appo.runs_of(preset), results)
    rllib_appo.report(preset_name, preset, summaries, Pages(tmp_path, tmp_path))
    name = appo_report.page_name(preset_name)  # each preset its own page: small_kl does not overwrite small's
    assert name == "metaworld_stale_rllib_appo" + ("" if preset_name == "small" else f"_{preset_name}")
    page = (tmp_path / f"{name}.md").read_text()
    assert "(all 12 runs finished;" in page and (tmp_path / f"{name}.png").exists()
    kl = {"small_kl": "KL loss to the target network is on for both (`kl_coeff` 1",
          "small_anchor": "AGIPO's anchor is on for both, 0.1·KL(π_behaviour ‖ π_θ)"}  # fmt: skip
    assert kl.get(preset_name, "No KL loss") in page
    assert ("256-bin `MultiDiscrete`" in page) == (preset_name == "binned")
    uniform = " (a uniform head's: 4 × ln 256 = 22.18)" if preset_name == "binned" else ""
    # entropy 6 − 0.1·iteration·level: the first iteration's, then the mean over the last 20 % of the 30 history
    # rows (iterations 24–29)
    assert f"first iteration → last 20 %{uniform}: AGIPO 5.94 → 4.41, APPO 5.98 → " in page
    rows = {(r["variant"], r["task"]): r for r in _csv(tmp_path / f"{name}.csv")}
    assert float(rows[("gipo", "all")]["final_iqm"]) == pytest.approx(0.6)
    assert float(rows[("ppo_clip", "all")]["lag_max"]) == 15.0 and float(rows[("gipo", "all")]["lag_p95"]) == 8.0
    assert float(rows[("ppo_clip", "all")]["dead_fraction"]) == pytest.approx(0.3)  # the second half only
    assert "Paired final success difference GIPO − APPO: +0.39 [+0.38, +0.40] → GIPO ahead." in page
    assert "zeroes the gradient of 0.60 of the samples in the first half of training and 0.30 in the second" in page
    assert "AGIPO vs APPO: reach-v3 60.00 vs 21.00; handle-press-v3 60.00 vs 21.00. AGIPO's is higher in 6 of 6" in page


def test_appo_page_pairs_each_objective_with_the_preset_it_names_as_against(tmp_path):
    preset, other = rllib_appo.PRESETS["small_anchor"], rllib_appo.PRESETS["small"]
    assert preset.against == "small"
    level = {("small_anchor", "gipo"): lambda seed: 0.6, ("small_anchor", "ppo_clip"): lambda seed: 0.3,
             ("small", "gipo"): lambda seed: 0.2 + 0.01 * seed, ("small", "ppo_clip"): lambda seed: 0.3}  # fmt: skip
    summaries = {
        name: {run: appo_summary(*run, level[(name, run.variant)](run.seed), 0.0, 1.0) for run in rllib_appo.runs_of(p)}
        for name, p in (("small_anchor", preset), ("small", other))
    }
    what = rllib_appo.differences(preset, other)
    assert what == "`behaviour_kl_coeff` 0.0 there, 0.1 here"  # the one setting the two presets differ in
    appo_report.write("small_anchor", preset, summaries["small_anchor"], tmp_path, tmp_path,
                      against=("small", summaries["small"], what))  # fmt: skip
    page = (tmp_path / "metaworld_stale_rllib_appo_small_anchor.md").read_text()
    assert f"### Against the `small` preset ({what})" in page and "[metaworld_stale_rllib_appo.md]" in page
    assert "- AGIPO (gipo), final success: +0.39 [+0.38, +0.40] over 6 paired runs → higher here." in page
    assert "- APPO (ppo_clip), final success: +0.00 over 6 paired runs" not in page  # an interval is given
    assert "- APPO (ppo_clip), AUC: +0.00 [+0.00, +0.00] over 6 paired runs → no significant difference." in page


def test_curves_are_interpolated_onto_a_common_grid():
    runs = [appo_summary("reach-v3", "gipo", seed, 0.5, 0.0, 1.0) for seed in (0, 1)]
    grid = np.array([0.0, 1000.0, runs[0]["steps"]])
    curves = appo_report._on_grid(runs, None, grid)
    assert curves.shape == (2, 3) and curves[0, 0] == 0.0 and curves[0, -1] == pytest.approx(0.5)
    lag = appo_report._on_grid(runs, "policy_lag_p95", grid[1:])
    assert np.allclose(lag, 2.0)


def _csv(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))
