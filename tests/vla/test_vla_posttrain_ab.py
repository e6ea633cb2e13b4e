"""The stale VLA A/B's statistics: per-loss confidence intervals, paired differences and staleness diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("scipy")

import benchmarks.report
import benchmarks.vla_posttrain
from benchmarks.vla_posttrain import PRESETS, drift_note, finished, report, reuse, staleness, summarize
from examples.vla_metaworld import TRAIN_METRICS


def summary(loss: str, seed: int, final: float, p95: list[float], dead: float) -> dict:
    """A run summary in the example's format (`examples/vla_metaworld.py`)."""
    metrics = dict.fromkeys(TRAIN_METRICS, [None] * len(p95))
    metrics["stale/log_ratio_abs_p95"] = p95
    metrics["stale/log_ratio_abs_mean"] = [None if v is None else v / 3 for v in p95]
    metrics["gipo/suppressed_fraction" if loss == "gipo" else "clip_ratio/region_mean"] = [dead] * len(p95)
    return {"loss_type": loss, "seed": seed, "sft_success": 0.2, "final_success": final, "wall_seconds": 60.0,
            "train_metrics": metrics, "curve": [{"episodes": 0, "eval_success_rate": 0.2}]}  # fmt: skip


def test_paired_difference_separates_only_when_every_seed_agrees():
    rng = np.random.default_rng(0)
    gipo = [summary("gipo", s, 0.6 + 0.05 * rng.standard_normal(), [0.5, 1.5], 0.01) for s in range(10)]
    dapo = [summary("dapo", s, r["final_success"] - 0.2, [0.4, 0.8], 0.3) for s, r in enumerate(gipo)]
    rows, (pair,) = summarize(gipo + dapo, ["gipo", "dapo"])
    assert pair["comparison"] == "gipo - dapo" and pair["pairs"] == 10
    assert pair["mean_difference"] == pytest.approx(0.2) and pair["separated"]
    assert pair["ci_low"] == pytest.approx(0.2) == pair["ci_high"]  # identical differences: a zero-width interval
    gipo_row, dapo_row = rows
    assert gipo_row["final_ci_low"] < gipo_row["final_mean"] < gipo_row["final_ci_high"]
    assert gipo_row["gain_points"] == pytest.approx(100 * (gipo_row["final_mean"] - 0.2))
    assert gipo_row["binding_steps"] == 0.5 and dapo_row["binding_steps"] == 0.0  # p95 beyond sigma = 1
    assert gipo_row["dead_fraction"] == pytest.approx(0.01) and dapo_row["dead_fraction"] == pytest.approx(0.3)
    noisy = [summary("dapo", s, 0.6 + 0.3 * rng.standard_normal(), [0.4], 0.3) for s in range(10)]
    _, (pair,) = summarize(gipo + noisy, ["gipo", "dapo"])
    assert not pair["separated"] and pair["ci_low"] < 0 < pair["ci_high"]
    d = np.array([g["final_success"] - n["final_success"] for g, n in zip(gipo, noisy, strict=True)])
    assert pair["pairs_needed"] == int(np.ceil((1.96 * d.std(ddof=1) / abs(d.mean())) ** 2)) > 10


def test_staleness_ignores_steps_without_a_measurement_and_missing_losses_fail():
    run = summary("gipo", 0, 0.5, [None, 2.0, 0.5], 0.1)
    diagnostics = staleness(run)
    assert diagnostics["log_ratio_abs_p95"] == pytest.approx(1.25) and diagnostics["log_ratio_abs_p95_max"] == 2.0
    with pytest.raises(ValueError, match="no finished runs for loss_type 'dapo'"):
        summarize([run], ["gipo", "dapo"])


def test_full_preset_is_the_documented_stale_regime():
    full = PRESETS["full"]
    args = dict(zip(full.example_args[::2], full.example_args[1::2], strict=True))
    assert full.loss_types == ("gipo", "dapo") and len(full.seeds) == 10 and full.report
    assert int(args["--num-iterations"]) == 8 and int(args["--eval-goals"]) == 50
    assert not PRESETS["smoke"].report  # the smoke run never writes under docs/


def test_presets_set_the_anchor_explicitly_and_the_anchored_one_is_full_with_it():
    """Runs committed before the anchor existed keep it at 0 on resume; run set 3 adds 0.1 to both arms, no more."""
    full, anchored = PRESETS["full"], PRESETS["anchored"]
    assert full.anchor == 0.0 and PRESETS["smoke"].anchor == 0.0 and anchored.anchor == 0.1
    without = [a for a in anchored.example_args if a not in ("--behaviour-kl-coeff", "0.1")]
    assert without == [a for a in full.example_args if a not in ("--behaviour-kl-coeff", "0.0")]
    assert anchored.loss_types == full.loss_types and anchored.seeds == full.seeds and anchored.report
    assert anchored.page != full.page  # its own page, figure and kept results


def test_a_partial_run_writes_a_page_that_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks.report, "DOCS", tmp_path)
    monkeypatch.setattr(benchmarks.vla_posttrain, "IMG", tmp_path)
    full = PRESETS["full"]
    pairs = zip(full.example_args[::2], full.example_args[1::2], strict=True)
    args = {k.lstrip("-").replace("-", "_"): v for k, v in pairs}
    results = []
    for seed in (0, 1, 2):
        for loss, final in (("gipo", 0.3 + 0.1 * seed), ("dapo", 0.2)):
            run = summary(loss, seed, final, [0.5, 1.5], 0.01) | {"args": args}
            run["curve"] = [{"episodes": 0, "eval_success_rate": 0.2}, {"episodes": 8, "eval_success_rate": final}]
            results.append(run)
    page = report(full, results, "python -m benchmarks.vla_posttrain --preset full --seeds 0 1 2").read_text()
    assert "**Partial: 3 of the preset's 10 seeds per loss have run** (seeds 0, 1, 2)" in page
    assert "gipo - dapo** (paired by seed, 3 pairs): +20.0 points" in page
    assert "too few pairs for a verdict (it needs ≥ 6)" in page  # three pairs that agree are not yet evidence
    assert (tmp_path / "vla_metaworld_stale.png").exists() and (tmp_path / "vla_metaworld.csv").exists()


def test_finished_runs_are_kept_gzipped_and_read_back(tmp_path):
    logdir, kept = tmp_path / "work", tmp_path / "kept"
    logdir.mkdir()
    assert finished("gipo", 3, logdir, kept) is None  # not run yet
    run = summary("gipo", 3, 0.4, [0.5], 0.0)
    (logdir / "gipo_seed3.json").write_text(json.dumps(run))
    assert finished("gipo", 3, logdir, kept) == run and (kept / "gipo_seed3.json.gz").exists()
    (logdir / "gipo_seed3.json").unlink()  # a new session: the work folder is gone, the kept copy is not
    assert finished("gipo", 3, logdir, kept) == run
    assert finished("gipo", 3, logdir, None) is None  # presets that report nothing keep nothing


def test_drift_note_gives_the_gradient_weight_left_at_gipos_log_ratio():
    rows = [{"loss_type": "gipo", "log_ratio_abs_p95": 1.0, "log_ratio_abs_p95_max": 3.0},
            {"loss_type": "dapo", "log_ratio_abs_p95": 0.3, "log_ratio_abs_p95_max": 0.5}]  # fmt: skip
    (line,) = drift_note(rows)
    assert "averages 1.00 (max 3.0) against dapo's 0.30" in line
    assert "= 1.65 at" in line  # exp(1 - 1/2), the largest weight w * r takes
    rows[0]["log_ratio_abs_p95"] = 0.4  # more than dapo, but the trust weight there is still 0.92
    (line,) = drift_note(rows)
    assert line.startswith("- **Little drift**") and "$w$ = 0.92" in line and "plain importance sampling" in line
    rows[0]["log_ratio_abs_p95"] = 0.2  # GIPO moved less than dapo: nothing to explain
    assert drift_note(rows) == []


def _args(preset) -> dict[str, str]:
    return dict(zip(preset.example_args[::2], preset.example_args[1::2], strict=True))


def test_run_set_2_and_4_presets_change_one_thing_of_full():
    """two_pass: the same 15 batches of episodes at 2 passes each; sigma05: GIPO alone at sigma 0.5, dapo from full."""
    full, two_pass, sigma05 = (_args(PRESETS[name]) for name in ("full", "two_pass", "sigma05"))
    changed = {k for k in full if two_pass[k] != full[k]}
    assert changed == {"--num-iterations", "--max-steps", "--eval-every"} and two_pass.keys() == full.keys()
    assert (
        int(two_pass["--max-steps"]) // int(two_pass["--num-iterations"])
        == 15
        == (int(full["--max-steps"]) // int(full["--num-iterations"]))
    )  # the same number of batches of episodes, so the same data
    assert int(two_pass["--num-iterations"]) == 2 and int(two_pass["--eval-every"]) * 2 == int(two_pass["--max-steps"])
    assert sigma05 == full | {"--sigma": "0.5"} and (PRESETS["sigma05"].sigma, PRESETS["full"].sigma) == (0.5, 1.0)
    assert _args(PRESETS["wide_neg"]) == full | {"--sigma-neg-ratio": "4"} and PRESETS["wide_neg"].sigma_neg_ratio == 4
    assert PRESETS["wide_neg"].loss_types == ("gipo",) and PRESETS["wide_neg"].against == "full"
    assert PRESETS["sigma05"].loss_types == ("gipo",) and PRESETS["two_pass"].loss_types == ("gipo", "dapo")
    assert {PRESETS[n].against for n in ("anchored", "two_pass", "sigma05")} == {"full"} and not PRESETS["full"].against
    reporting = [preset for preset in PRESETS.values() if preset.report]
    assert len({preset.page for preset in reporting}) == len(reporting)  # each its own page, figure and results


def _results(preset, finals: dict[tuple[str, int], float], p95: list[float]) -> list[dict]:
    args = {k.lstrip("-").replace("-", "_"): v for k, v in _args(preset).items()}
    args["num_iterations"] = int(args["num_iterations"])
    runs = []
    for (loss, seed), final in finals.items():
        run = summary(loss, seed, final, p95, 0.01) | {"args": args}
        run["curve"] = [{"episodes": 0, "eval_success_rate": 0.2}, {"episodes": 8, "eval_success_rate": final}]
        runs.append(run)
    return runs


def test_a_preset_against_another_borrows_the_arms_it_does_not_run_and_pairs_each_arm_with_itself(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(benchmarks.report, "DOCS", tmp_path)
    monkeypatch.setattr(benchmarks.vla_posttrain, "IMG", tmp_path)
    full = _results(PRESETS["full"], {(loss, s): 0.3 if loss == "gipo" else 0.4 for s in range(10)
                                      for loss in ("gipo", "dapo")}, [0.3])  # fmt: skip
    # sigma 0.5, 6 seeds: GIPO at 0.5 + 0.01 seed, its p95 0.7 binds at sigma 0.5 (not at 1)
    ours = _results(PRESETS["sigma05"], {("gipo", s): 0.5 + 0.01 * s for s in range(6)}, [0.7])
    page = report(PRESETS["sigma05"], ours, "python -m benchmarks.vla_posttrain --preset sigma05",
                  against=("full", full)).read_text()  # fmt: skip
    assert "**Partial: 6 of the preset's 10 seeds per loss have run**" in page
    assert "| dapo | 6 |" in page  # full's dapo runs, on this preset's seeds only
    assert "The dapo arm is `full`'s runs on the same seeds" in page and "GIPO runs at **σ = 0.5**" in page
    assert "- **gipo - dapo** (paired by seed, 6 pairs): +12.5 points" in page  # mean of 0.5 + 0.01 s - 0.4
    assert "- **gipo: this page − `full`** (paired by seed, 6 pairs): +22.5 points" in page
    assert "dapo: this page" not in page  # a borrowed arm is not paired with itself
    assert "exceeds $\\sigma = 0.5$" in page
    gipo_row = next(line for line in page.splitlines() if line.startswith("| gipo |"))
    assert gipo_row.split("|")[-4].strip() == "1.000"  # binding steps: every p95 (0.7) exceeds sigma 0.5
    assert "\\ell^2/0.5" in page and "This A/B tests the smaller σ = 0.5" in page


def test_fifo_preset_is_two_pass_with_the_second_use_replayed_from_a_fifo(tmp_path, monkeypatch):
    """Run set 7: as many optimizer steps as two_pass, each episode used about twice, half of each batch replayed."""
    from gipo_plugins.vla import VLAGIPOConfig

    two_pass, fifo = _args(PRESETS["two_pass"]), _args(PRESETS["fifo"])
    assert {k for k in fifo if two_pass.get(k) != fifo[k]} == {"--num-iterations", "--replay-episodes",
                                                                "--fresh-episodes"}  # fmt: skip
    assert fifo["--max-steps"] == two_pass["--max-steps"] and fifo["--num-iterations"] == "1"
    batch, fresh, replay = (int(fifo[k]) for k in ("--episodes-per-step", "--fresh-episodes", "--replay-episodes"))
    steps = int(fifo["--max-steps"])
    acted = batch + fresh * (steps - 1)  # the first generation acts its whole batch
    assert abs(acted - 120) <= 4 and steps * batch / acted == pytest.approx(2, abs=0.1)  # uses per episode
    config = VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=batch,
                           num_generations=int(fifo["--num-generations"]), replay_episodes=replay,
                           fresh_episodes=fresh)  # fmt: skip
    assert config.generation_batch_size == batch  # the settings the example passes are accepted
    assert PRESETS["fifo"].against == "two_pass" and PRESETS["fifo"].loss_types == ("gipo", "dapo")
    monkeypatch.setattr(benchmarks.report, "DOCS", tmp_path)
    monkeypatch.setattr(benchmarks.vla_posttrain, "IMG", tmp_path)
    runs = _results(PRESETS["fifo"], {(loss, s): 0.3 for s in range(6) for loss in ("gipo", "dapo")}, [1.2])
    for run in runs:
        run["args"] |= {"replay_episodes": replay, "fresh_episodes": fresh}
    page = report(PRESETS["fifo"], runs, "python -m benchmarks.vla_posttrain --preset fifo").read_text()
    assert f"of which {fresh} are acted and the rest **replayed as acted** from a FIFO of the {replay}" in page
    assert "(stale: never re-scored); each batch used for 1 pass." in page
    assert reuse(runs[0]["args"]) == "replaying episodes acted up to 8 generations earlier from a FIFO, each batch " \
        "used for 1 pass"  # fmt: skip
    assert reuse(_results(PRESETS["full"], {("gipo", 0): 0.3}, [1.0])[0]["args"]) == "reusing each batch for 8 passes"
