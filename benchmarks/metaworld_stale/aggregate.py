"""Aggregate a Meta-World stale-data sweep: IQM with stratified-bootstrap 95 % CIs, curves, diagnostics.

Per run (greedy-policy evaluations every `eval_every` iterations on the same seeded goals):

- **final success**: the mean success over the evaluations in the last 20 % of the env-step budget;
- **AUC**: the area under the greedy success curve over the whole budget, divided by the budget (1 =
  solved from the first step).

Per (regime, variant) and per task, the scores are aggregated over tasks × seeds with the
interquartile mean and a stratified bootstrap (`benchmarks.stats`). GIPO against PPO-clip is also
compared *paired* (same task, same seed): the mean of the per-pair differences with a bootstrap CI.
Unfinished runs are left out and counted in the report. The summaries come from the study's results
store (`benchmarks.metaworld_stale.sweep`, through `benchmarks.runner`); this module only scores
them and writes the tables and plots.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks import report as site
from benchmarks.report import Pages, write_report
from benchmarks.stats import MIN_PAIRS, REPS, interval, iqm_with_ci, paired, steps_to_reach

COLORS = {"gipo": "tab:blue", "gipo_neg0.5": "tab:cyan", "ppo_clip": "tab:red", "sapo": "tab:green", "is": "tab:gray"}
FINAL_FRACTION = 0.2
PAPER = {"gipo": 0.730, "ppo_clip": 0.180}  # IQM, 8 tasks x 10 seeds x 500k, stale regime (reported, not verified)


def evaluations(summary: dict) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, greedy success) of a run's evaluations, the untrained policy's at step 0."""
    rows = [(h["steps"] - summary["config"]["steps_per_iteration"], h["eval_success"])
            for h in summary["history"] if "eval_success" in h]  # fmt: skip
    rows[-1] = (summary["steps"], rows[-1][1])  # the last evaluation follows the last update
    steps, success = np.array(rows, dtype=float).T
    return steps, success


def final_success(summary: dict) -> float:
    """Mean greedy success over the evaluations in the last 20 % of the budget."""
    steps, success = evaluations(summary)
    return float(success[steps >= (1 - FINAL_FRACTION) * summary["steps"]].mean())


def final_return(summary: dict) -> float:
    """Mean training return (unscaled, over the last finished episodes) in the last 20 % of the iterations."""
    history = summary["history"]
    return float(np.mean([h["train_return"] for h in history[int(len(history) * (1 - FINAL_FRACTION)) :]]))


def auc(summary: dict) -> float:
    """Area under the greedy success curve (trapezoids between evaluations) / the budget."""
    steps, success = evaluations(summary)
    return float(np.sum((success[1:] + success[:-1]) / 2 * np.diff(steps)) / summary["steps"])


def _groups(summaries: dict) -> dict[tuple[str, str], dict]:
    groups: dict[tuple[str, str], dict] = defaultdict(lambda: {"runs": {}})
    for run, summary in summaries.items():
        groups[(run.regime, run.variant)]["runs"][(run.task, run.seed)] = summary
    return groups


def _scores(runs: dict, tasks: list[str], seeds: list[int], score) -> list[np.ndarray]:
    """Per task, the scores of its finished seeds (tasks without any are left out)."""
    per_task = [np.array([score(runs[(t, s)]) for s in seeds if (t, s) in runs]) for t in tasks]
    return [t for t in per_task if len(t)]


def _mean_curve(summaries: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ± s.e. over runs of a per-iteration history key (the runs share their steps)."""
    length = min(len(s["history"]) for s in summaries)
    steps = np.array([h["steps"] for h in summaries[0]["history"][:length]], dtype=float)
    values = np.array([[h.get(key, np.nan) for h in s["history"][:length]] for s in summaries], dtype=float)
    mean = np.nanmean(values, axis=0)
    se = np.nanstd(values, axis=0) / np.sqrt(np.maximum(1, np.sum(~np.isnan(values), axis=0)))
    return steps, mean, se


def _mean_eval_curve(summaries: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    curves = [evaluations(s) for s in summaries]
    steps = curves[0][0]
    values = np.array([c[1] for c in curves if len(c[1]) == len(steps)])
    return steps, values.mean(0), values.std(0) / np.sqrt(len(values))


NAME = "metaworld_stale"


def page_name(preset_name: str) -> str:
    """The page (and figure) stem of a preset: `metaworld_stale` for `small`, `metaworld_stale_<preset>` otherwise."""
    return NAME if preset_name == "small" else f"{NAME}_{preset_name}"


PROVENANCE = {  # runs made by an earlier revision of the recipe: same protocol and math, said on the page
    ("small", "stale_reach-v3_gipo_seed0"): (
        " The reach-v3 seed-0 pair ran on the recipe's first revision: the same protocol and updates, but "
        "critic-only steps recomputed the encoder features (float sums in another order) and the age-split "
        "diagnostics were probed at an iteration's first actor step instead of its last."
    ),
}


def write(
    preset_name: str, preset, summaries: dict, pages: Pages | None = None, against: tuple[str, dict] | None = None
) -> Path:
    """Write `<page>{,_runs}.csv`, the markdown page and the PNGs from the finished runs' summaries.

    `summaries` maps finished runs (`sweep.Run`) to their summaries; `pages` is where (the docs site by
    default); `against` is `(preset name, its summaries)` of a preset whose runs of the same regime,
    task, objective and seed differ from these only in the recipe flags: the page pairs them.
    """
    pages = pages or Pages()
    if not summaries:
        raise SystemExit("no finished run yet; run the sweep first")
    total = len(preset.seeds) * sum(len(block.tasks) * len(block.variants) for block in preset.blocks)
    seeds = list(preset.seeds)
    groups = _groups(summaries)
    per_run, rows = [], []
    for run, summary in sorted(summaries.items(), key=lambda kv: kv[0].name):
        _, success = evaluations(summary)
        per_run.append({"run": run.name, "regime": run.regime, "task": run.task, "variant": run.variant,
                        "seed": run.seed, "final_success": round(final_success(summary), 4),
                        "auc": round(auc(summary), 4), "last_eval": float(success[-1]),
                        "wall_seconds": summary["wall_seconds"]})  # fmt: skip
    pages.docs.mkdir(parents=True, exist_ok=True)
    name = page_name(preset_name)
    with open(pages.docs / f"{name}_runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(per_run[0]))
        writer.writeheader()
        writer.writerows(per_run)

    for regime, (regime_tasks, variants) in preset.regimes().items():
        for variant in variants:
            group = groups.get((regime, variant))
            if not group:
                continue
            for task in ["all", *regime_tasks]:
                tasks = list(regime_tasks) if task == "all" else [task]
                final = _scores(group["runs"], tasks, seeds, final_success)
                area = _scores(group["runs"], tasks, seeds, auc)
                if not final:
                    continue
                f_iqm, f_low, f_high = iqm_with_ci(final)
                a_iqm, a_low, a_high = iqm_with_ci(area)
                hist = [s for (t, _), s in group["runs"].items() if t in tasks]
                late = [h for s in hist for h in s["history"][len(s["history"]) // 2 :]]

                def late_mean(key: str, rows=late) -> float:
                    values = [h[key] for h in rows if key in h]
                    return float(np.mean(values)) if values else float("nan")

                rows.append({
                    "regime": regime, "variant": variant, "task": task, "runs": sum(len(t) for t in final),
                    "final_iqm": f_iqm, "final_low": f_low, "final_high": f_high,
                    "auc_iqm": a_iqm, "auc_low": a_low, "auc_high": a_high,
                    "dead_fresh": late_mean("dead_fraction_fresh"), "dead_old": late_mean("dead_fraction_old"),
                    "suppressed_old": late_mean("suppressed_fraction_old"), "ess": late_mean("ess"),
                    "log_ratio_p95": late_mean("log_ratio_abs_p95"),
                    "final_return": float(np.mean(np.concatenate(_scores(group["runs"], tasks, seeds, final_return)))),
                })  # fmt: skip
    pages.img.mkdir(parents=True, exist_ok=True)
    _plot_curves(preset, groups, pages.img / f"{name}_curves.png")
    _plot_tasks(preset, groups, pages.img / f"{name}_tasks.png")
    _plot_diagnostics(preset, groups, pages.img / f"{name}_diagnostics.png")
    status = site.runs_finished(len(summaries), total)
    command = f"python -m benchmarks.metaworld_stale.sweep --preset {preset_name}"
    names = {run.name for run in summaries}
    kl = _kl_coeffs(summaries)
    kl_term = f"exact KL {kl}" if kl != "0" else "no KL term (`--kl-coeff 0`)"
    description = (
        f"Made by `{command}` ({status}; seeds {seeds}; {preset.total_steps:,} env steps per run; "
        f"{preset.eval_episodes} greedy evaluation episodes every {preset.eval_every} iterations on the same "
        "seeded goals). Every run is the TorchRL reference recipe (`gipo_plugins.torchrl.recipe`: categorical "
        "policy with 256 bins per action dimension, 500 env steps per iteration, 10 actor + 100 critic steps "
        f"per iteration on minibatches of 512, {kl_term}); the regimes are a 20 000-transition FIFO replay "
        "(**stale**, data up to 40 iterations old) and a one-iteration replay (**fresh**). Final = mean greedy "
        "success over the last 20 % of the budget; AUC = area under the greedy success curve / budget. IQM "
        f"over tasks × seeds with stratified-bootstrap 95 % CIs ({REPS} resamples). Diagnostics are means over "
        "the second half of training, measured at each iteration's last actor step; *fresh* samples were collected "
        "in the current iteration, *old* ones ≥ 10 iterations ago. Per-run scores: "
        f"[{name}_runs.csv]({name}_runs.csv)."
        + "".join(note for (of, run_name), note in PROVENANCE.items() if of == preset_name and run_name in names)
        + (
            " The RLlib APPO row (asynchronous runners, circular-buffer reuse) has its own page: "
            "[metaworld_stale_rllib_appo.md](metaworld_stale_rllib_appo.md)."
            if (site.DOCS / "metaworld_stale_rllib_appo.md").exists()  # the docs site's page
            else ""
        )
        + f"\n\n![curves](../img/{name}_curves.png)\n\n![per task](../img/{name}_tasks.png)\n\n"
        f"![diagnostics](../img/{name}_diagnostics.png)"
    )
    headers = {
        "regime": "regime", "variant": "objective", "task": "task", "runs": "runs",
        "final_iqm": "final IQM", "final_low": "CI low", "final_high": "CI high",
        "auc_iqm": "AUC IQM", "auc_low": "CI low", "auc_high": "CI high",
        "dead_fresh": "dead (fresh)", "dead_old": "dead (old)", "suppressed_old": "suppressed (old)",
        "ess": "ESS", "log_ratio_p95": "abs log r p95", "final_return": "final return (mean)",
    }  # fmt: skip
    return write_report(
        name,
        f"Meta-World stale-data A/B on the reference protocol ({preset_name} preset)",
        description,
        rows,
        headers,
        digits=2,
        footer=findings(preset, groups, rows) + _against_lines(groups, against),
        docs=pages.docs,
    )


LABELS = {"gipo": "GIPO", "ppo_clip": "PPO-clip", "sapo": "SAPO", "is": "plain IS", "gipo_neg0.5": "GIPO (σ⁻ = 0.5)"}


def _paired_lines(gipo: dict, other: dict, label: str, tasks: int) -> list[str]:
    """Paired final-success and AUC differences GIPO − `label` over their common task × seed runs, with verdicts."""
    pairs = sorted(set(gipo) & set(other))
    lines = []
    for name, score in (("final success", final_success), ("AUC", auc)):
        d = paired([score(gipo[k]) - score(other[k]) for k in pairs])
        if not d.enough:
            lines.append(f"- Paired {name} difference GIPO − {label}: {d.mean:+.2f} over {d.pairs} pair(s): "
                         f"too few for an interval (a verdict needs ≥ {MIN_PAIRS}).")  # fmt: skip
            continue
        verdict = {1: "GIPO ahead", -1: f"{label} ahead", 0: "no significant difference"}[d.sign]
        line = f"- Paired {name} difference GIPO − {label}: {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] → {verdict}."
        if not d.sign and abs(d.mean) > 0:
            line += (f" At this spread, a 95 % interval excluding 0 would take about {d.needed} paired runs "
                     f"(~{int(np.ceil(d.needed / tasks))} seeds × {tasks} tasks).")  # fmt: skip
        lines.append(line)
    return lines


def _staleness_lines(preset, groups: dict) -> list[str]:
    """What the stale replay costs each objective: stale against fresh on the fresh regime's tasks, paired by seed.

    Per objective run in both regimes: the final-success IQM of each regime over the fresh regime's
    tasks × seeds, and the paired difference stale − fresh (same task, same seed; a negative value is
    what the stale replay costs).
    """
    regimes = preset.regimes()
    if "fresh" not in regimes or "stale" not in regimes:
        return []
    tasks, variants = regimes["fresh"]
    seeds, lines = list(preset.seeds), []
    for variant in variants:
        stale, fresh = groups.get(("stale", variant)), groups.get(("fresh", variant))
        if not stale or not fresh:
            continue
        pairs = sorted(k for k in set(stale["runs"]) & set(fresh["runs"]) if k[0] in tasks)
        if len(pairs) < MIN_PAIRS:
            continue
        s_iqm, s_low, s_high = iqm_with_ci(_scores(stale["runs"], list(tasks), seeds, final_success))
        f_iqm, f_low, f_high = iqm_with_ci(_scores(fresh["runs"], list(tasks), seeds, final_success))
        d = paired([final_success(stale["runs"][k]) - final_success(fresh["runs"][k]) for k in pairs])
        label = LABELS.get(variant, variant)
        verdict = {1: "the stale replay helps", -1: "the stale replay hurts", 0: "no significant difference"}[d.sign]
        lines.append(f"- {label}: final success IQM {s_iqm:.2f} [{s_low:.2f}, {s_high:.2f}] stale vs {f_iqm:.2f} "
                     f"[{f_low:.2f}, {f_high:.2f}] fresh; paired stale − fresh {d.mean:+.2f} [{d.low:+.2f}, "
                     f"{d.high:+.2f}] over {d.pairs} runs → {verdict}.")  # fmt: skip
    if not lines:
        return []
    return [f"### Stale against fresh ({', '.join(tasks)})", "",
            "The same objective with a one-iteration replay (fresh) and with the 20k FIFO replay (stale), on the "
            "fresh regime's tasks and seeds. Each transition is drawn about as often in both (~10 minibatches); in the "
            "fresh one only in the iteration that collected it, in the stale one spread over ~40 iterations, while "
            "the policy moves away from the one that acted.", "",
            *lines, ""]  # fmt: skip


def _interval(row: dict, score: str) -> str:
    """A row's 95 % interval for `score` (`benchmarks.stats.interval`)."""
    return interval(row[f"{score}_low"], row[f"{score}_high"])


def findings(preset, groups: dict, rows: list[dict]) -> str:
    """The report's conclusions, computed from the numbers."""
    seeds = list(preset.seeds)
    lines = ["## What this run shows (computed from the numbers above)", ""]
    by = {(r["regime"], r["variant"], r["task"]): r for r in rows}
    if preset.task_choice:
        learned = []
        for task in preset.tasks:
            finals = [final_success(s) for g in groups.values() for (t, _), s in g["runs"].items() if t == task]
            if finals:
                learned.append(f"{task} {sum(f > 0 for f in finals)} of {len(finals)} (best {max(finals):.2f})")
        lines += ["### The tasks", "", preset.task_choice + " Runs with a non-zero final greedy success, any "
                  "objective: " + "; ".join(learned) + ".", ""]  # fmt: skip
    for regime, (regime_tasks, variants) in preset.regimes().items():
        if not {"gipo", "ppo_clip"} <= set(variants):
            continue
        gipo, ppo = groups.get((regime, "gipo")), groups.get((regime, "ppo_clip"))
        if not gipo or not ppo or not {(regime, v, "all") for v in ("gipo", "ppo_clip")} <= set(by):
            continue
        pairs = sorted(set(gipo["runs"]) & set(ppo["runs"]))
        g, p = by[(regime, "gipo", "all")], by[(regime, "ppo_clip", "all")]
        lines.append(f"### {regime.capitalize()} regime ({len(pairs)} paired task × seed runs)")
        lines.append("")
        iv = _interval
        lines.append(f"- Final success IQM: GIPO {g['final_iqm']:.2f} {iv(g, 'final')} vs PPO-clip "
                     f"{p['final_iqm']:.2f} {iv(p, 'final')}; AUC IQM: GIPO {g['auc_iqm']:.2f} {iv(g, 'auc')} "
                     f"vs PPO-clip {p['auc_iqm']:.2f} {iv(p, 'auc')}.")  # fmt: skip
        lines += _paired_lines(gipo["runs"], ppo["runs"], "PPO-clip", len(regime_tasks))
        for other in variants:
            if other not in ("gipo", "ppo_clip") and groups.get((regime, other)) and (regime, other, "all") in by:
                o, label = by[(regime, other, "all")], LABELS.get(other, other)
                lines.append(f"- {label}: final success IQM {o['final_iqm']:.2f} {iv(o, 'final')} over {o['runs']} "
                             f"runs; AUC IQM {o['auc_iqm']:.2f} {iv(o, 'auc')}.")  # fmt: skip
                lines += _paired_lines(gipo["runs"], groups[(regime, other)]["runs"], label, len(regime_tasks))
        better = sum(final_return(gipo["runs"][k]) > final_return(ppo["runs"][k]) for k in pairs)
        per_task = "; ".join(
            f"{t} {by[(regime, 'gipo', t)]['final_return']:,.0f} vs {by[(regime, 'ppo_clip', t)]['final_return']:,.0f}"
            for t in regime_tasks if (regime, "gipo", t) in by and (regime, "ppo_clip", t) in by
        )  # fmt: skip
        lines.append(f"- Final training return (mean over seeds), GIPO vs PPO-clip: {per_task}. GIPO's is higher in "
                     f"{better} of {len(pairs)} paired runs (a success signal is sparse at this budget; the return "
                     "is Meta-World's dense shaped reward).")  # fmt: skip
        summaries_g = list(gipo["runs"].values())
        summaries_p = list(ppo["runs"].values())
        steps, g_curve, _ = _mean_eval_curve(summaries_g)
        _, p_curve, _ = _mean_eval_curve(summaries_p)
        level = 0.8 * float(np.mean([final_success(s) for s in summaries_g]))
        if 0 < level <= max(g_curve[0], p_curve[0]):
            lines.append(f"- Sample efficiency: not measured: 80 % of GIPO's final level ({level:.2f}) is no "
                         "higher than the untrained policy's greedy success.")  # fmt: skip
        elif level > 0:
            n_g, n_p = steps_to_reach(steps, g_curve, level), steps_to_reach(steps, p_curve, level)
            if np.isnan(n_p):
                reach = (f"PPO-clip's mean curve never reaches it within {preset.total_steps:,} steps (ratio > "
                         f"{preset.total_steps / n_g:.1f}×)")  # fmt: skip
            else:
                reach = f"PPO-clip at {n_p:,.0f} steps: {n_p / max(n_g, 1):.1f}× GIPO's"
            lines.append(f"- Sample efficiency: GIPO's mean greedy success curve reaches 80 % of its final level "
                         f"({level:.2f}) at {n_g:,.0f} env steps; {reach}.")  # fmt: skip
        if regime == "fresh":
            lines.append(f"- Here every sample is this iteration's: PPO-clip zeroes the gradient of "
                         f"{p['dead_fresh']:.2f} of them in the second half of training, GIPO's ESS is "
                         f"{g['ess']:.2f} and |log r| p95 {g['log_ratio_p95']:.2f}: the regime where the objectives "
                         "can hardly differ.")  # fmt: skip
        if regime == "stale":
            early = [h for s in summaries_p for h in s["history"][: len(s["history"]) // 2]]
            early_old = np.mean([h["dead_fraction_old"] for h in early if "dead_fraction_old" in h])
            early_fresh = np.mean([h["dead_fraction_fresh"] for h in early if "dead_fraction_fresh" in h])
            lines.append(f"- Dead fraction of PPO-clip in the first half of training: {early_fresh:.2f} on fresh "
                         f"samples, {early_old:.2f} on samples ≥ 10 iterations old (it falls over training: "
                         "see the diagnostics plot).")  # fmt: skip
            lines.append(f"- Dead fraction of PPO-clip (second half of training): {p['dead_fresh']:.2f} on fresh "
                         f"samples, {p['dead_old']:.2f} on samples ≥ 10 iterations old; GIPO suppresses "
                         f"(w < 1e-3) {g['suppressed_old']:.2f} of the old ones and keeps an ESS of {g['ess']:.2f} "
                         f"(PPO-clip {p['ess']:.2f}).")  # fmt: skip
            lines.append(f"- The paper reports IQM {PAPER['gipo']:.3f} (GIPO) vs {PAPER['ppo_clip']:.3f} "
                         "(PPO-clip) on 8 tasks × 10 seeds × 500k steps in this regime; this preset runs "
                         f"{len(regime_tasks)} tasks × {len(seeds)} seeds × {preset.total_steps:,} steps.")  # fmt: skip
        lines.append("")
    return "\n".join(lines + _staleness_lines(preset, groups))


def _kl_coeffs(summaries: dict) -> str:
    """The runs' KL coefficients (`kl_coeff`), distinct and sorted: e.g. `"0.1"`, `"0"` or `"0, 0.1"`."""
    return ", ".join(f"{k:g}" for k in sorted({s["config"]["kl_coeff"] for s in summaries.values()}))


def _against_lines(groups: dict, against: tuple[str, dict] | None) -> str:
    """Each objective paired with itself in the `against` preset (same regime, task and seed), these − those."""
    if not against or not against[1]:
        return ""
    other_name, other = against
    others = _groups(other)
    labels = {key: f"{LABELS.get(key[1], key[1])} ({key[0]})" for key in groups if key in others}
    mine = {label: groups[key]["runs"] for key, label in labels.items()}
    theirs = {label: others[key]["runs"] for key, label in labels.items()}
    return against_section(mine, theirs, other_name, page_name(other_name),
                           f"the same runs with exact KL {_kl_coeffs(other)}")  # fmt: skip


def against_section(mine: dict[str, dict], theirs: dict[str, dict], other_name: str, other_page: str, what: str) -> str:
    """A page section pairing each arm with itself in another preset (same task and seed), these − those.

    `mine` and `theirs` map an arm's label to its runs keyed by (task, seed); `what` says how the other preset's runs
    differ. Empty when no arm has a run in both.
    """
    lines = []
    for label, runs in mine.items():
        pairs = sorted(set(runs) & set(theirs.get(label, {})))
        if not pairs:
            continue
        for score_name, score in (("final success", final_success), ("AUC", auc)):
            d = paired([score(runs[k]) - score(theirs[label][k]) for k in pairs])
            verdict = ({1: "higher here", -1: f"higher in `{other_name}`", 0: "no significant difference"}[d.sign]
                       if d.enough else f"too few pairs for a verdict (≥ {MIN_PAIRS})")  # fmt: skip
            span = f" [{d.low:+.2f}, {d.high:+.2f}]" if d.enough else ""
            lines.append(f"- {label}, {score_name}: {d.mean:+.2f}{span} over {d.pairs} paired runs → {verdict}.")
    if not lines:
        return ""
    return "\n".join([
        "", f"### Against the `{other_name}` preset ({what})", "",
        f"Each objective here minus the same objective, task and seed in `{other_name}` "
        f"([{other_page}.md]({other_page}.md)); paired differences with 95 % bootstrap intervals.", "", *lines, "",
    ])  # fmt: skip


def _plot_curves(preset, groups: dict, path: Path) -> None:
    regimes = {r: tv for r, tv in preset.regimes().items() if any(g[0] == r for g in groups)}  # regimes with runs
    fig, axes = plt.subplots(2, len(regimes), figsize=(5.5 * len(regimes), 7), squeeze=False)
    for j, (regime, (_, variants)) in enumerate(regimes.items()):
        for variant in variants:
            group = groups.get((regime, variant))
            if not group:
                continue
            summaries = list(group["runs"].values())
            steps, mean, se = _mean_eval_curve(summaries)
            axes[0, j].plot(steps, mean, color=COLORS[variant], label=f"{variant} ({len(summaries)} runs)")
            axes[0, j].fill_between(steps, mean - se, mean + se, color=COLORS[variant], alpha=0.15)
            steps, mean, se = _mean_curve(summaries, "train_return")
            axes[1, j].plot(steps, mean, color=COLORS[variant], label=variant)
            axes[1, j].fill_between(steps, mean - se, mean + se, color=COLORS[variant], alpha=0.15)
        axes[0, j].set(title=f"{regime}: greedy success", ylim=(-0.02, 1.02), ylabel="success (mean ± s.e.)")
        axes[1, j].set(title=f"{regime}: training return", xlabel="env steps", ylabel="episode return")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_tasks(preset, groups: dict, path: Path) -> None:
    regime = preset.blocks[0].regime
    tasks, variants = preset.regimes()[regime]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for variant in variants:
            group = groups.get((regime, variant))
            summaries = [s for (t, _), s in (group or {"runs": {}})["runs"].items() if t == task]
            if summaries:
                steps, mean, se = _mean_eval_curve(summaries)
                ax.plot(steps, mean, color=COLORS[variant], label=variant)
                ax.fill_between(steps, mean - se, mean + se, color=COLORS[variant], alpha=0.15)
        ax.set(title=f"{task} ({regime})", xlabel="env steps", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("greedy success")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_diagnostics(preset, groups: dict, path: Path) -> None:
    regime = preset.blocks[0].regime  # the stale regime
    _, variants = preset.regimes()[regime]
    panels = (
        ("dead fraction (PPO-clip's hard zeros)", ("dead_fraction_fresh", "dead_fraction_old")),
        ("suppressed fraction (w < 1e-3)", ("suppressed_fraction_fresh", "suppressed_fraction_old")),
        ("ESS of the gradient weights", ("ess",)),
        ("p95 of |log r|", ("log_ratio_abs_p95",)),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for variant in variants:
            group = groups.get((regime, variant))
            if not group:
                continue
            for key in keys:
                steps, mean, _ = _mean_curve(list(group["runs"].values()), key)
                style = "--" if key.endswith("_fresh") else "-"
                suffix = " fresh" if key.endswith("_fresh") else " old" if key.endswith("_old") else ""
                ax.plot(steps, mean, style, color=COLORS[variant], label=variant + suffix)
        ax.set(title=f"{title} ({regime})", xlabel="env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
