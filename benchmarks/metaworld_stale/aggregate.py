"""Aggregate a Meta-World stale-data sweep: IQM with stratified-bootstrap 95 % CIs, plots.

A run's score is its mean deterministic-policy success rate over the evaluations in the second half
of training (frames ≥ budget / 2, the final one included): less noisy than the last evaluation
alone, and still a measure of where training ended up. Scores are aggregated per
(adapter, regime, objective) over tasks × seeds with the interquartile mean (25 % trimmed mean of
all task × seed scores) and a stratified bootstrap: ``scipy.stats.bootstrap`` with one sample per
task, so seeds are resampled within each task (rliable's scheme; rliable itself does not import with
pandas 3 — its ``arch`` dependency fails — so it is not used).
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import DOCS, write_report  # noqa: E402

COLORS = {"gipo": "tab:blue", "ppo_clip": "tab:red", "sapo": "tab:green", "is": "tab:gray"}
ADAPTER_TITLES = {"torchrl": "TorchRL GIPOLoss", "rllib": "RLlib GIPO"}
REPS = 2000


def run_score(summary: dict, total_frames: int) -> float:
    """Mean evaluation success over the second half of training."""
    evals = [h for h in summary["history"] if "eval_success_rate" in h]
    late = [h["eval_success_rate"] for h in evals if h["frames"] >= total_frames / 2]
    return float(np.mean([*late, summary["eval_success_rate"]]))


def iqm(*per_task: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean of all scores (the 25 % trimmed mean), over the tasks' samples together."""
    return stats.trim_mean(np.concatenate(per_task, axis=axis), 0.25, axis=axis)


def iqm_with_ci(scores: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """IQM of a ``[seeds, tasks]`` score matrix and its 95 % stratified-bootstrap percentile interval."""
    per_task = tuple(scores.T)
    if scores.shape[0] < 2 or np.ptp(scores) == 0:  # nothing to resample
        return float(iqm(*per_task)), float(iqm(*per_task)), float(iqm(*per_task))
    ci = stats.bootstrap(per_task, iqm, n_resamples=REPS, method="percentile", rng=np.random.default_rng(seed))
    return float(iqm(*per_task)), float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def load(runs: list, workdir: Path) -> dict:
    missing = [r.name for r in runs if not (workdir / f"{r.name}.json").exists()]
    if missing:
        raise SystemExit(f"{len(missing)} runs have no result yet (first: {missing[0]}); run the sweep to finish them")
    return {r: json.loads((workdir / f"{r.name}.json").read_text()) for r in runs}


def write(preset_name: str, preset, runs: list, workdir: Path) -> Path:
    """Write ``docs/benchmarks/metaworld_stale{,_runs}.csv``, the markdown page and two PNGs."""
    summaries = load(runs, workdir)
    tasks, seeds = list(preset.tasks), list(preset.seeds)
    groups = [(a, g, o) for a in preset.adapters for g in preset.regimes for o in preset.objectives]
    matrix = {k: np.zeros((len(seeds), len(tasks))) for k in groups}
    curves: dict[tuple, dict[int, list[float]]] = {k: defaultdict(list) for k in groups}
    training = {k: defaultdict(list) for k in groups}  # per-iteration diagnostics pooled over the group's runs
    per_run = []
    for run, summary in summaries.items():
        key = (run.adapter, run.regime, run.objective)
        score = run_score(summary, preset.total_frames)
        matrix[key][seeds.index(run.seed), tasks.index(run.task)] = score
        for h in summary["history"]:
            if "eval_success_rate" in h:
                curves[key][h["frames"]].append(h["eval_success_rate"])
            for metric in ("dead_fraction", "log_ratio_abs_mean"):
                if h.get(metric) is not None:
                    training[key][metric].append(h[metric])
        per_run.append(
            {
                "run": run.name,
                "adapter": run.adapter,
                "regime": run.regime,
                "task": run.task,
                "objective": run.objective,
                "seed": run.seed,
                "score": round(score, 4),
                "final_success": summary["eval_success_rate"],
                "wall_seconds": summary["wall_seconds"],
            }
        )
    with open(DOCS / "metaworld_stale_runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(per_run[0]))
        writer.writeheader()
        writer.writerows(sorted(per_run, key=lambda r: r["run"]))

    rows = []
    for a, g, o in groups:
        point, low, high = iqm_with_ci(matrix[(a, g, o)])
        rows.append({"adapter": a, "regime": g, "objective": o, "iqm": point, "ci_low": low, "ci_high": high,
                     "mean": float(matrix[(a, g, o)].mean()), "runs": matrix[(a, g, o)].size,
                     "dead_fraction": float(np.mean(training[(a, g, o)]["dead_fraction"])),
                     "log_ratio_abs": float(np.mean(training[(a, g, o)]["log_ratio_abs_mean"]))})  # fmt: skip
    _plot_bars(rows, preset)
    _plot_curves(curves, preset)
    command = f"python benchmarks/metaworld_stale/sweep.py --preset {preset_name}"
    return write_report(
        "metaworld_stale",
        f"Meta-World stale-data A/B ({preset_name} preset)",
        f"Made by `{command}` ({len(runs)} runs: tasks {', '.join(tasks)}; seeds {seeds}; "
        f"{preset.total_frames:,} env frames per run; {preset.eval_episodes} evaluation episodes every "
        f"{preset.eval_every} iterations). Regimes and settings are in the script's docstring. Score = mean "
        "success over the second-half evaluations; IQM over tasks × seeds with a stratified-bootstrap "
        f"95 % CI ({REPS} resamples). Per-run scores: [metaworld_stale_runs.csv](metaworld_stale_runs.csv). "
        "The paper's reference point (8 tasks × 10 seeds, 500k steps, stale regime) is IQM 0.730 for GIPO "
        "against 0.180 for PPO.\n\n"
        "![IQM](../img/metaworld_stale_iqm.png)\n\n![curves](../img/metaworld_stale_curves.png)",
        rows,
        {
            "adapter": "adapter",
            "regime": "regime",
            "objective": "objective",
            "iqm": "IQM",
            "ci_low": "95 % CI low",
            "ci_high": "95 % CI high",
            "mean": "mean",
            "runs": "runs",
            "dead_fraction": "dead fraction",
            "log_ratio_abs": "mean abs log r",
        },
        footer=_findings(rows, preset),
    )


def _findings(rows: list[dict], preset) -> str:
    by = {(r["adapter"], r["regime"], r["objective"]): r for r in rows}
    lines = ["## What this run shows (computed from the table)", ""]
    if len(preset.seeds) < 5:
        caveat = (
            f"With {len(preset.seeds)} seeds per task the stratified bootstrap has very few distinct resamples, so "
            "its intervals understate the uncertainty: read 'disjoint' below as a hint, not as significance. "
            "The paper preset (10 seeds) is the one to draw conclusions from."
        )
        lines += [caveat, ""]
    ppo = {(r["adapter"], r["regime"]): r["dead_fraction"] for r in rows if r["objective"] == "ppo_clip"}
    dead = ", ".join(f"{ADAPTER_TITLES[a]} {g} {v:.2f}" for (a, g), v in ppo.items())
    lines += [
        f"PPO-clip's dead fraction (mean over training iterations and runs): {dead}. Far below 1 means the "
        "stale regime is mild here, and the objectives cannot differ much.",
        "",
    ]
    for adapter in preset.adapters:
        for regime in preset.regimes:
            gipo, ppo = by[(adapter, regime, "gipo")], by[(adapter, regime, "ppo_clip")]
            overlap = gipo["ci_low"] <= ppo["ci_high"] and ppo["ci_low"] <= gipo["ci_high"]
            higher = "GIPO" if gipo["iqm"] > ppo["iqm"] else "PPO-clip"
            verdict = (
                "the 95 % intervals overlap: no significant difference at this budget"
                if overlap
                else f"{higher} higher, intervals disjoint"
            )
            lines.append(f"- {ADAPTER_TITLES[adapter]}, {regime}: GIPO IQM {gipo['iqm']:.2f} "
                         f"[{gipo['ci_low']:.2f}, {gipo['ci_high']:.2f}] vs PPO-clip {ppo['iqm']:.2f} "
                         f"[{ppo['ci_low']:.2f}, {ppo['ci_high']:.2f}]: {verdict}.")  # fmt: skip
    return "\n".join(lines)


def _plot_bars(rows: list[dict], preset) -> None:
    fig, axes = plt.subplots(1, len(preset.adapters), figsize=(5 * len(preset.adapters), 3.8), squeeze=False)
    width = 0.8 / len(preset.objectives)
    for ax, adapter in zip(axes[0], preset.adapters, strict=True):
        for j, objective in enumerate(preset.objectives):
            sel = [next(r for r in rows if r["adapter"] == adapter and r["regime"] == g and r["objective"] == objective)
                   for g in preset.regimes]  # fmt: skip
            x = np.arange(len(preset.regimes)) + (j - (len(preset.objectives) - 1) / 2) * width
            iqm = np.array([r["iqm"] for r in sel])
            err = np.array([[r["iqm"] - r["ci_low"] for r in sel], [r["ci_high"] - r["iqm"] for r in sel]])
            ax.bar(x, iqm, width, yerr=err, capsize=3, color=COLORS[objective], label=objective)
        ax.set(xticks=range(len(preset.regimes)), xticklabels=preset.regimes, ylim=(0, 1.05),
               ylabel="IQM success score (95 % CI)", title=ADAPTER_TITLES[adapter])  # fmt: skip
        ax.grid(axis="y", alpha=0.3)
    axes[0, -1].legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs/img/metaworld_stale_iqm.png", dpi=120)


def _plot_curves(curves: dict, preset) -> None:
    fig, axes = plt.subplots(len(preset.adapters), len(preset.regimes), figsize=(10, 3.4 * len(preset.adapters)),
                             squeeze=False, sharey=True)  # fmt: skip
    for i, adapter in enumerate(preset.adapters):
        for j, regime in enumerate(preset.regimes):
            ax = axes[i, j]
            for objective in preset.objectives:
                points = sorted(curves[(adapter, regime, objective)].items())
                frames = [f for f, _ in points]
                mean = np.array([np.mean(v) for _, v in points])
                sem = np.array([np.std(v) / np.sqrt(len(v)) for _, v in points])
                ax.plot(frames, mean, marker=".", color=COLORS[objective], label=objective)
                ax.fill_between(frames, mean - sem, mean + sem, color=COLORS[objective], alpha=0.15)
            ax.set(title=f"{ADAPTER_TITLES[adapter]} — {regime}", xlabel="env frames", ylim=(-0.02, 1.02))
            ax.set_ylabel("success (mean ± s.e. over tasks × seeds)" if j == 0 else "")
            ax.grid(alpha=0.3)
    axes[0, -1].legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs/img/metaworld_stale_curves.png", dpi=120)
