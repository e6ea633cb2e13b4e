"""Report of the RLlib APPO row of the stale sweep: AGIPO (`objective="gipo"`) against stock APPO's surrogate.

Reads the kept summaries of `benchmarks.metaworld_stale.rllib_appo` and writes
`docs/benchmarks/<page>.{csv,md}` and `docs/img/<page>.png`, `<page>` = `page_name(preset)`
(`metaworld_stale_rllib_appo` for `small`, `metaworld_stale_rllib_appo_<preset>` for the others),
scored as the TorchRL sweep is (`benchmarks.metaworld_stale.aggregate`: final greedy success and
AUC; `benchmarks.stats`: IQM over tasks × seeds with stratified-bootstrap 95 % CIs, paired
differences). APPO's
iterations end at different env steps in every run (its env runners sample asynchronously), so the
curves are interpolated onto the evaluation grid before they are averaged.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.metaworld_stale import aggregate
from benchmarks.metaworld_stale.aggregate import auc, final_success
from benchmarks.report import IMG, present_mean, runs_finished, write_report
from benchmarks.stats import iqm_with_ci

LABELS = {"gipo": "AGIPO (gipo)", "ppo_clip": "APPO (ppo_clip)"}
COLORS = {"gipo": "tab:blue", "ppo_clip": "tab:red"}
NAME = "metaworld_stale_rllib_appo"


def page_name(preset_name: str) -> str:
    """The docs page (and figure) of a preset: `NAME` for `small`, `NAME_<preset>` for the others."""
    return NAME if preset_name == "small" else f"{NAME}_{preset_name}"


def _values(summary: dict, key: str, half: str | None = None) -> list[float]:
    """A history key's measured values (iterations that logged it): all, or the `"first"` or `"second"` half."""
    values = [h[key] for h in summary["history"] if h.get(key) is not None]
    middle = len(values) // 2
    return values[:middle] if half == "first" else values[middle:] if half == "second" else values


def run_scores(summary: dict) -> dict[str, float | None]:
    """One run's diagnostics: final return, policy entropy, policy lag, dead fraction, |log r| p95, ESS (scores:
    `aggregate`)."""
    last = -max(1, len(summary["history"]) // 5)  # the last 20 % of the iterations
    entropy = _values(summary, "entropy")
    return {
        "final_return": present_mean(_values(summary, "train_return")[last:]),
        "entropy_start": entropy[0] if entropy else None,  # None: a run from before the entropy was logged
        "entropy_end": present_mean(entropy[last:]) if entropy else None,
        "lag_mean": present_mean(_values(summary, "policy_lag_mean")),
        "lag_p95": present_mean(_values(summary, "policy_lag_p95")),
        "lag_max": max(_values(summary, "policy_lag_max"), default=float("nan")),
        "dead_fraction": present_mean(_values(summary, "dead_fraction", "second")),
        "dead_fraction_first_half": present_mean(_values(summary, "dead_fraction", "first")),
        "log_ratio_p95": present_mean(_values(summary, "log_ratio_abs_p95", "second")),
        "ess": present_mean(_values(summary, "ess", "second")),
    }


def _on_grid(summaries: list[dict], key: str | None, grid: np.ndarray) -> np.ndarray:
    """Per run, `key` of the history (or the greedy success if None) linearly interpolated at the env steps `grid`."""
    curves = []
    for s in summaries:
        if key is None:
            steps, values = aggregate.evaluations(s)
        else:
            rows = [h for h in s["history"] if h.get(key) is not None]
            steps, values = np.array([h["steps"] for h in rows], float), np.array([h[key] for h in rows], float)
        curves.append(np.interp(grid, steps, values) if len(steps) else np.full(len(grid), np.nan))
    return np.array(curves)


def plot(preset, groups: dict[str, dict], path) -> None:
    """Greedy success, training return, |log r| p95, entropy, policy lag p95 and dead fraction against env steps,
    mean ± s.e. over the runs of each variant that recorded the key."""
    grid = np.linspace(0, preset.total_steps, 61)
    panels = ((None, "greedy success"), ("train_return", "training return"),
              ("log_ratio_abs_p95", "|log r| p95"), ("entropy", "policy entropy"),
              ("policy_lag_p95", "policy lag p95 (learner updates)"), ("dead_fraction", "dead fraction"))  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(13.5, 7.0))
    axes = axes.ravel()
    for ax, (key, title) in zip(axes, panels, strict=True):
        for variant, runs in groups.items():
            curves = _on_grid(list(runs.values()), key, grid)
            curves = curves[~np.isnan(curves).all(axis=1)]  # runs that did not record `key`
            if not len(curves):
                continue
            mean, se = np.nanmean(curves, 0), np.nanstd(curves, 0) / np.sqrt(len(curves))
            ax.plot(grid, mean, color=COLORS[variant], label=f"{LABELS[variant]} ({len(curves)} runs)")
            ax.fill_between(grid, mean - se, mean + se, color=COLORS[variant], alpha=0.15)
        ax.set(title=title, xlabel="env steps")
        ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:.0f}k")
        ax.grid(alpha=0.3)
    axes[0].set(ylim=(-0.02, 1.02))
    axes[2].set(yscale="log")
    axes[0].legend(fontsize=8)
    head = f", {preset.action_bins}-bin action head" if preset.action_bins else ""
    fig.suptitle(f"RLlib APPO on Meta-World ({', '.join(preset.tasks)}{head}): stale data from async runners and reuse")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def by_variant(summaries: dict[tuple[str, str, int], dict]) -> dict[str, dict[tuple[str, int], dict]]:
    """Finished runs keyed by (task, variant, seed) split per objective of `LABELS`, each keyed by (task, seed)."""
    return {v: {(t, s): summ for (t, var, s), summ in summaries.items() if var == v} for v in LABELS}


def write(
    preset_name: str,
    preset,
    summaries: dict[tuple[str, str, int], dict],
    img_dir=None,
    docs=None,
    against: tuple[str, dict[tuple[str, str, int], dict], str] | None = None,
) -> None:
    """Write the page, its CSV and the figure from finished runs keyed by (task, variant, seed).

    The figure goes to `img_dir`, the page and CSV to `docs` (default: the docs site's folders). `against` is
    `(preset name, its finished runs, how its runs differ)`: the page pairs each objective with itself there.
    """
    img_dir = IMG if img_dir is None else img_dir
    if not summaries:
        raise SystemExit("no finished APPO run kept yet; run the sweep first")
    seeds, tasks = list(preset.seeds), list(preset.tasks)
    groups = {v: runs for v, runs in by_variant(summaries).items() if runs}
    scores_of = {v: {k: run_scores(s) for k, s in runs.items()} for v, runs in groups.items()}
    rows = []
    for variant, runs in groups.items():
        scores = scores_of[variant]
        for task in ["all", *tasks]:
            chosen = tasks if task == "all" else [task]
            final = aggregate._scores(runs, chosen, seeds, final_success)
            if not final:
                continue
            f_iqm, f_low, f_high = iqm_with_ci(final)
            a_iqm, a_low, a_high = iqm_with_ci(aggregate._scores(runs, chosen, seeds, auc))
            mine = [v for (t, _), v in scores.items() if t in chosen]
            rows.append({
                "variant": variant, "task": task, "runs": len(mine),
                "final_iqm": f_iqm, "final_low": f_low, "final_high": f_high,
                "auc_iqm": a_iqm, "auc_low": a_low, "auc_high": a_high,
                **{m: present_mean([v[m] for v in mine]) for m in ("final_return", "entropy_start", "entropy_end",
                   "lag_mean", "lag_p95", "dead_fraction", "dead_fraction_first_half", "log_ratio_p95", "ess")},
                "lag_max": max(v["lag_max"] for v in mine),
            })  # fmt: skip
    name = page_name(preset_name)
    Path(img_dir).mkdir(parents=True, exist_ok=True)
    plot(preset, groups, Path(img_dir) / f"{name}.png")
    lines = ["## What this run shows (computed from the numbers above)", ""]
    if {"gipo", "ppo_clip"} <= set(groups):
        lines += aggregate._paired_lines(groups["gipo"], groups["ppo_clip"], "APPO", len(tasks))
        by = {(r["variant"], r["task"]): r for r in rows}
        g, p = by[("gipo", "all")], by[("ppo_clip", "all")]
        lines.append(f"- Staleness: the learner trains on batches {p['lag_mean']:.1f} (APPO) and {g['lag_mean']:.1f} "
                     f"(AGIPO) updates behind the acting policy on average, p95 {p['lag_p95']:.1f} / "
                     f"{g['lag_p95']:.1f}, at most {p['lag_max']:.0f} / {g['lag_max']:.0f}.")  # fmt: skip
        lines.append(f"- APPO's clipped surrogate zeroes the gradient of {p['dead_fraction_first_half']:.2f} of the "
                     f"samples in the first half of training and {p['dead_fraction']:.2f} in the second; AGIPO's "
                     f"dead fraction is {g['dead_fraction']:.2f} (ESS {g['ess']:.2f}); |log r| p95 "
                     f"{g['log_ratio_p95']:.2f} (AGIPO) against {p['log_ratio_p95']:.2f} (APPO).")  # fmt: skip
        pairs = sorted(set(groups["gipo"]) & set(groups["ppo_clip"]))
        better = sum(scores_of["gipo"][k]["final_return"] > scores_of["ppo_clip"][k]["final_return"] for k in pairs)
        per_task = "; ".join(f"{t} {by[('gipo', t)]['final_return']:.2f} vs {by[('ppo_clip', t)]['final_return']:.2f}"
                             for t in tasks if ("gipo", t) in by and ("ppo_clip", t) in by)  # fmt: skip
        lines.append(f"- Final training return (last 20 % of the iterations, rewards × {preset.reward_scale:g}), "
                     f"AGIPO vs APPO: {per_task}. AGIPO's is higher in {better} of {len(pairs)} paired "
                     "runs.")  # fmt: skip
        logged = {v: sum(s["entropy_start"] is not None for s in scores_of[v].values()) for v in LABELS}
        if all(logged.values()):  # each objective has runs that logged the entropy
            uniform = f" (a uniform head's: 4 × ln {preset.action_bins} = {4 * math.log(preset.action_bins):.2f})" \
                if preset.action_bins else ""  # fmt: skip
            unlogged = "" if all(logged[v] == len(groups[v]) for v in LABELS) else (
                f" (logged by {logged['gipo']} of {len(groups['gipo'])} AGIPO and {logged['ppo_clip']} of "
                f"{len(groups['ppo_clip'])} APPO runs; the others ran before it was)")  # fmt: skip
            lines.append(f"- Policy entropy in nats, first iteration → last 20 %{uniform}: AGIPO "
                         f"{g['entropy_start']:.2f} → {g['entropy_end']:.2f}, APPO {p['entropy_start']:.2f} → "
                         f"{p['entropy_end']:.2f}{unlogged}.")  # fmt: skip
    total = len(tasks) * len(seeds) * len(LABELS)
    status = runs_finished(len(summaries), total)
    kl_text = "No KL loss (APPO's default). "
    if preset.kl_coeff:
        kl_text = (f"APPO's KL loss to the target network is on for both (`kl_coeff` {preset.kl_coeff:g}, adapted "
                   f"towards `kl_target` {preset.kl_target:g}). ")  # fmt: skip
    if preset.behaviour_kl_coeff:
        kl_text = (f"AGIPO's anchor is on for both, {preset.behaviour_kl_coeff:g}·KL(π_behaviour ‖ π_θ) "
                   f"(`behaviour_kl_coeff` {preset.behaviour_kl_coeff:g}; exact, from the behaviour distribution "
                   "stored when the batch was sampled); APPO's KL loss to the target network stays off. ")  # fmt: skip
    head_text = ""
    if preset.action_bins:
        head_text = (f"The action head is a {preset.action_bins}-bin `MultiDiscrete` per action dimension (bin b acts "
                     f"-1 + 2b/{preset.action_bins - 1}; RLlib's `TorchMultiCategorical`), not the diagonal Gaussian, "
                     "so the log-ratio is the joint log-ratio over the 4 dimensions (RLlib's "
                     "`TorchMultiCategorical.logp` sums them); the TorchRL recipe and the paper use one ratio per "
                     "dimension. ")  # fmt: skip
    description = (
        f"Made by `python -m benchmarks.metaworld_stale.rllib_appo --preset {preset_name}` ({status}; seeds "
        f"{seeds}; {preset.total_steps:,} env steps per run). RLlib's APPO with {preset.env_runners} asynchronous "
        f"env runners and a {preset.buffer_batches} × {preset.buffer_iterations} circular buffer (each train batch "
        f"of {preset.train_batch} reused up to {preset.buffer_iterations} times), V-trace and the target network; "
        "the two variants are the same `AGIPOConfig` and differ only in `objective` (`ppo_clip` is APPO's own "
        f"clipped surrogate). {head_text}{kl_text}Greedy evaluations of {preset.eval_episodes} episodes every "
        f"{preset.eval_every_steps:,} env steps on seeded goals; final = mean success over the last 20 % of the "
        "budget, AUC = area under the success curve / budget, IQM over tasks × seeds with stratified-bootstrap 95 % "
        "CIs. Policy lag: RLlib's count of learner updates between the weights that sampled a batch and the ones "
        "training on it. Dead fraction, |log r| p95 and ESS: means over the second half of training.\n\n"
        f"![curves](../img/{name}.png)"
    )
    headers = {
        "variant": "objective", "task": "task", "runs": "runs", "final_iqm": "final IQM", "final_low": "CI low",
        "final_high": "CI high", "auc_iqm": "AUC IQM", "auc_low": "CI low", "auc_high": "CI high",
        "lag_mean": "lag mean", "lag_p95": "lag p95", "lag_max": "lag max", "dead_fraction": "dead fraction",
        "log_ratio_p95": "abs log r p95", "ess": "ESS", "final_return": "final return",
    }  # fmt: skip
    if against:
        other_name, other, what = against
        mine = {LABELS[v]: runs for v, runs in groups.items()}
        theirs = {LABELS[v]: runs for v, runs in by_variant(other).items()}
        lines.append(aggregate.against_section(mine, theirs, other_name, page_name(other_name), what))
    write_report(name, f"Meta-World stale data on RLlib APPO ({preset_name} preset)", description, rows, headers,
                 digits=2, footer="\n".join(lines), docs=docs)  # fmt: skip
