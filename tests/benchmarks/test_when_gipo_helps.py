"""The summary page's bookkeeping: the pairs each run set plans, and the run sets still landing."""

from __future__ import annotations

from operator import itemgetter

from benchmarks import vla_posttrain, when_gipo_helps
from benchmarks.metaworld_stale import rllib_appo
from benchmarks.when_gipo_helps import RunSet, Source, rows, scores, still_landing


def _run_set(landed: int, planned: int) -> RunSet:
    """A run set whose GIPO arm has `planned` seeds and whose baseline has the first `landed` of them."""
    gipo = {("reach-v3", seed): {"final": 0.5} for seed in range(planned)}
    baseline = {("reach-v3", seed): {"final": 0.25} for seed in range(landed)}
    source = Source(lambda: (gipo, baseline), planned, "python -m study --preset p")
    final = itemgetter("final")
    return RunSet("label", "stack", "regime", "anchor", "rate", "page.md", source, final, None, final, final)


def test_a_run_set_short_of_its_plan_is_listed_with_its_pairs_and_the_command_that_resumes_it(monkeypatch):
    monkeypatch.setattr(when_gipo_helps, "RUN_SETS", (_run_set(landed=2, planned=3), _run_set(3, 3)))
    scored = scores()
    assert [row["pairs"] for row in rows(scored)] == ["2 of 3", "3 of 3"]
    text = still_landing(scored)
    assert "label, 2 of 3 pairs (`python -m study --preset p`)" in text and text.count("label") == 1


def test_nothing_is_listed_once_every_run_set_is_complete(monkeypatch):
    monkeypatch.setattr(when_gipo_helps, "RUN_SETS", (_run_set(3, 3),))
    assert still_landing(scores()) == ""


def test_planned_pairs_follow_each_study_preset():
    planned = {run_set.label: run_set.source.planned for run_set in when_gipo_helps.RUN_SETS}
    assert planned["RLlib APPO 16 × 2, no KL"] == len(rllib_appo.runs_of(rllib_appo.PRESETS["light"])) // 2
    assert planned["VLA, FIFO replay, 1 pass, no anchor"] == len(vla_posttrain.PRESETS["fifo"].seeds)
    assert planned["TorchRL recipe, stale, anchor (4 tasks)"] == 12  # the sweep's small: 4 tasks x 3 seeds
    assert planned["TorchRL recipe, stale, anchor (2 tasks)"] == 6  # the same runs on 2 of the tasks
