"""Where GIPO helps and where it does not: every committed run set in one table, from the results stores.

One row per run set — stack × regime × anchor × update rate — with GIPO's paired difference from the
clipped loss it replaces (the same tasks and seeds in both arms; mean and 95 % bootstrap interval,
`benchmarks.stats.paired`), how many samples the clip zeroes there, how far GIPO's policy drifts
(|log r| p95) and a link to the run set's own page. Nothing is rerun: each row reads its study's
committed store and scores the runs with that study's own functions, so a row changes only when runs
land. A run set still running shows the pairs it has of those it plans (no verdict below `MIN_PAIRS`),
and the page ends with the run sets still landing and the command that resumes each.

Columns, per run set:

- **final success**, GIPO − baseline: greedy success at the end of training (TorchRL and RLlib:
  the mean of the last 20 % of evaluations, `aggregate.final_success`; VLA: the final evaluation on
  50 goals);
- **AUC**, GIPO − baseline: the area under the greedy-success curve over training, normalised to
  [0, 1] (Meta-World state runs only);
- **dead fraction**: the baseline's share of samples whose gradient the clip zeroes, mean over the
  second half of training (VLA: TRL's `clip_ratio/region_mean` over the run);
- **|log r| p95**: GIPO's 95th percentile of |log r|, mean over the second half of training (VLA:
  over the run).

```
python -m benchmarks.when_gipo_helps     # writes docs/benchmarks/when_gipo_helps.{md,csv}
```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

from benchmarks import runner, vla_posttrain
from benchmarks.metaworld_stale import aggregate, rllib_appo, sweep
from benchmarks.report import present_mean, write_report
from benchmarks.stats import MIN_PAIRS, Paired, paired

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


class Source(NamedTuple):
    """Where a run set's runs are: its arms as they have landed, how many GIPO–baseline pairs it plans, and the
    command that runs the rest (it resumes from the store)."""

    load: Callable[[], tuple[dict, dict]]
    """`() -> (gipo, baseline)`, each `{(task, seed): summary}` of the runs finished so far."""
    planned: int
    command: str


@dataclass(frozen=True)
class RunSet:
    """A committed run set and how to read it: GIPO's and the baseline's summaries per (task, seed)."""

    label: str
    """A short name for the figure."""
    stack: str
    regime: str
    anchor: str
    update_rate: str
    page: str
    source: Source
    final: Callable[[dict], float]
    auc: Callable[[dict], float] | None
    dead: Callable[[dict], float]
    drift: Callable[[dict], float]


def _second_half(key: str) -> Callable[[dict], float]:
    def mean(summary: dict) -> float:
        values = [h[key] for h in summary["history"] if h.get(key) is not None]
        return present_mean(values[len(values) // 2 :])

    return mean


@cache
def _sweep_store(preset_name: str) -> dict:
    """A TorchRL sweep preset's stored runs, read once (several rows score the same store)."""
    return runner.stored(sweep.runs_of(sweep.PRESETS[preset_name]), sweep.results_dir(preset_name))


def _torchrl(regime: str, preset_name: str = "small", tasks: tuple[str, ...] = ()) -> Source:
    """The TorchRL sweep's GIPO and PPO-clip runs of `preset_name` in `regime` (only `tasks`, if given)."""

    def load() -> tuple[dict, dict]:
        runs = _sweep_store(preset_name)
        arms = {v: {(r.task, r.seed): s for r, s in runs.items()
                    if r.regime == regime and r.variant == v and (not tasks or r.task in tasks)}
                for v in ("gipo", "ppo_clip")}  # fmt: skip
        return arms["gipo"], arms["ppo_clip"]

    planned = {(r.task, r.seed) for r in sweep.runs_of(sweep.PRESETS[preset_name])
               if r.regime == regime and (not tasks or r.task in tasks)}  # fmt: skip
    return Source(load, len(planned), f"python -m benchmarks.metaworld_stale.sweep --preset {preset_name}")


def _appo(preset_name: str) -> Source:
    planned_runs = rllib_appo.runs_of(rllib_appo.PRESETS[preset_name])

    def load() -> tuple[dict, dict]:
        runs = runner.stored(planned_runs, rllib_appo.RESULTS / f"rllib_appo_{preset_name}")
        arms = {v: {(r.task, r.seed): s for r, s in runs.items() if r.variant == v} for v in rllib_appo.VARIANTS}
        return arms["gipo"], arms["ppo_clip"]

    planned = {(r.task, r.seed) for r in planned_runs}
    return Source(load, len(planned), f"python -m benchmarks.metaworld_stale.rllib_appo --preset {preset_name}")


def _vla(preset_name: str) -> Source:
    """A VLA preset's GIPO and dapo arms; an arm the preset does not run is its `against` preset's (same seeds)."""

    preset = vla_posttrain.PRESETS[preset_name]

    def load() -> tuple[dict, dict]:
        def arm(name: str, loss: str) -> dict:
            runs = runner.stored(vla_posttrain.runs_of(vla_posttrain.PRESETS[name]), vla_posttrain.RESULTS / name)
            return {("reach-v3", r.seed): s for r, s in runs.items() if r.loss_type == loss}

        gipo = arm(preset_name, "gipo")
        if "dapo" in preset.loss_types:
            return gipo, arm(preset_name, "dapo")
        return gipo, {key: s for key, s in arm(preset.against, "dapo").items() if key in gipo}

    return Source(load, len(preset.seeds), f"python -m benchmarks.vla_posttrain --preset {preset_name}")


def _vla_metric(key: str) -> Callable[[dict], float]:
    return lambda summary: present_mean(summary["train_metrics"].get(key, []))


RUN_SETS = (
    RunSet("TorchRL recipe, stale, anchor (4 tasks)",
           "TorchRL recipe (4 tasks × 3 seeds)", "stale replay (20k FIFO, data up to 40 iterations old)",
           "exact KL 0.1, both arms", "1 actor step / 50 env steps", "metaworld_stale.md", _torchrl("stale"),
           aggregate.final_success, aggregate.auc, _second_half("dead_fraction"), _second_half("log_ratio_abs_p95")),
    RunSet("TorchRL recipe, fresh, anchor",
           "TorchRL recipe (2 tasks × 3 seeds)", "fresh (one-iteration replay)", "exact KL 0.1, both arms",
           "1 actor step / 50 env steps", "metaworld_stale.md", _torchrl("fresh"), aggregate.final_success,
           aggregate.auc, _second_half("dead_fraction"), _second_half("log_ratio_abs_p95")),
    RunSet("TorchRL recipe, stale, anchor (2 tasks)",
           "TorchRL recipe (reach-v3, handle-press-v3 × 3 seeds: the row below's)",
           "stale replay (20k FIFO, data up to 40 iterations old)", "exact KL 0.1, both arms",
           "1 actor step / 50 env steps", "metaworld_stale.md", _torchrl("stale", tasks=sweep.SMALL_TASKS[:2]),
           aggregate.final_success, aggregate.auc, _second_half("dead_fraction"), _second_half("log_ratio_abs_p95")),
    RunSet("TorchRL recipe, stale, no anchor (2 tasks)",
           "TorchRL recipe (reach-v3, handle-press-v3 × 3 seeds)",
           "stale replay (20k FIFO, data up to 40 iterations old)", "none (`kl_coeff` 0), both arms",
           "1 actor step / 50 env steps", "metaworld_stale_small_no_anchor.md",
           _torchrl("stale", "small_no_anchor"), aggregate.final_success, aggregate.auc,
           _second_half("dead_fraction"), _second_half("log_ratio_abs_p95")),
    RunSet("RLlib APPO 16 × 20, no KL",
           "RLlib AGIPO vs APPO (2 tasks × 3 seeds)", "asynchronous lag (2 env runners)", "none (APPO's default)",
           "16 × 20 circular buffer: up to 20 updates per batch", "metaworld_stale_rllib_appo.md", _appo("small"),
           aggregate.final_success, aggregate.auc, _second_half("dead_fraction"), _second_half("log_ratio_abs_p95")),
    RunSet("RLlib APPO 16 × 20, APPO's KL loss",
           "RLlib AGIPO vs APPO (2 tasks × 3 seeds)", "asynchronous lag (2 env runners)",
           "APPO's KL loss to the target network, both arms", "16 × 20 circular buffer: up to 20 updates per batch",
           "metaworld_stale_rllib_appo_small_kl.md", _appo("small_kl"), aggregate.final_success, aggregate.auc,
           _second_half("dead_fraction"), _second_half("log_ratio_abs_p95")),
    RunSet("RLlib APPO 16 × 20, AGIPO's anchor",
           "RLlib AGIPO vs APPO (2 tasks × 3 seeds)", "asynchronous lag (2 env runners)",
           "KL 0.1 to the behaviour policy (AGIPO's shipped anchor), both arms",
           "16 × 20 circular buffer: up to 20 updates per batch", "metaworld_stale_rllib_appo_small_anchor.md",
           _appo("small_anchor"), aggregate.final_success, aggregate.auc, _second_half("dead_fraction"),
           _second_half("log_ratio_abs_p95")),
    RunSet("RLlib APPO 16 × 2, no KL",
           "RLlib AGIPO vs APPO (2 tasks × 3 seeds)", "asynchronous lag (2 env runners)", "none (APPO's default)",
           "16 × 2 circular buffer: up to 2 updates per batch", "metaworld_stale_rllib_appo_light.md",
           _appo("light"), aggregate.final_success, aggregate.auc, _second_half("dead_fraction"),
           _second_half("log_ratio_abs_p95")),
    RunSet("RLlib APPO 16 × 20, 256 bins, no KL",
           "RLlib AGIPO vs APPO, 256 bins per action dimension (2 tasks × 3 seeds)",
           "asynchronous lag (2 env runners)", "none (APPO's default)",
           "16 × 20 circular buffer: up to 20 updates per batch", "metaworld_stale_rllib_appo_binned.md",
           _appo("binned"), aggregate.final_success, aggregate.auc, _second_half("dead_fraction"),
           _second_half("log_ratio_abs_p95")),
    RunSet("RLlib APPO 16 × 2, 256 bins, no KL",
           "RLlib AGIPO vs APPO, 256 bins per action dimension (2 tasks × 3 seeds)",
           "asynchronous lag (2 env runners)", "none (APPO's default)",
           "16 × 2 circular buffer: up to 2 updates per batch", "metaworld_stale_rllib_appo_binned_light.md",
           _appo("binned_light"), aggregate.final_success, aggregate.auc, _second_half("dead_fraction"),
           _second_half("log_ratio_abs_p95")),
    RunSet("VLA, 8 passes, no anchor",
           "VLA trainer, tiny OpenVLA from pixels (10 seeds), vs TRL's dapo", "epoch reuse of each batch",
           "none", "8 passes per batch", "vla_metaworld.md", _vla("full"), lambda s: s["final_success"], None,
           _vla_metric("clip_ratio/region_mean"), _vla_metric("stale/log_ratio_abs_p95")),
    RunSet("VLA, 8 passes, anchor",
           "VLA trainer, tiny OpenVLA from pixels (10 seeds), vs TRL's dapo", "epoch reuse of each batch",
           "exact KL 0.1 over the action tokens, both arms", "8 passes per batch", "vla_metaworld_anchored.md",
           _vla("anchored"), lambda s: s["final_success"], None, _vla_metric("clip_ratio/region_mean"),
           _vla_metric("stale/log_ratio_abs_p95")),
    RunSet("VLA, 2 passes, no anchor",
           "VLA trainer, tiny OpenVLA from pixels (10 seeds), vs TRL's dapo", "epoch reuse of each batch",
           "none", "2 passes per batch (the same 15 batches)", "vla_metaworld_two_pass.md", _vla("two_pass"),
           lambda s: s["final_success"], None, _vla_metric("clip_ratio/region_mean"),
           _vla_metric("stale/log_ratio_abs_p95")),
    RunSet("VLA, FIFO replay, 1 pass, no anchor",
           "VLA trainer, tiny OpenVLA from pixels (10 seeds), vs TRL's dapo",
           "stale replay (half of each batch from a 32-episode FIFO, up to 8 generations old)", "none",
           "1 pass per batch, each episode used about twice", "vla_metaworld_fifo.md", _vla("fifo"),
           lambda s: s["final_success"], None, _vla_metric("clip_ratio/region_mean"),
           _vla_metric("stale/log_ratio_abs_p95")),
    RunSet("VLA, 8 passes, no anchor, σ = 0.5",
           "VLA trainer, GIPO at σ = 0.5 (10 seeds), vs TRL's dapo (the first VLA row's runs)",
           "epoch reuse of each batch", "none", "8 passes per batch", "vla_metaworld_sigma05.md", _vla("sigma05"),
           lambda s: s["final_success"], None, _vla_metric("clip_ratio/region_mean"),
           _vla_metric("stale/log_ratio_abs_p95")),
    RunSet("VLA, 8 passes, no anchor, σ₋ = 4σ",
           "VLA trainer, GIPO with σ₋ = 4σ for A ≤ 0 (10 seeds), vs TRL's dapo (the first VLA row's runs)",
           "epoch reuse of each batch", "none", "8 passes per batch", "vla_metaworld_wide_neg.md", _vla("wide_neg"),
           lambda s: s["final_success"], None, _vla_metric("clip_ratio/region_mean"),
           _vla_metric("stale/log_ratio_abs_p95")),
)  # fmt: skip


def _difference(gipo: dict, baseline: dict, score: Callable[[dict], float]) -> Paired | None:
    pairs = sorted(gipo.keys() & baseline.keys())
    return paired([score(gipo[p]) - score(baseline[p]) for p in pairs]) if pairs else None


def _cell(result: Paired | None) -> str:
    if result is None:
        return "–"
    if result.pairs < MIN_PAIRS:
        return f"{result.mean:+.2f} ({result.pairs} {'pair' if result.pairs == 1 else 'pairs'}: no verdict yet)"
    return f"{result.mean:+.2f} [{result.low:+.2f}, {result.high:+.2f}]"


def _verdict(final: Paired | None, auc: Paired | None) -> str:
    signs = {p.sign for p in (final, auc) if p is not None and p.enough}
    if not signs:
        return "too few pairs yet"
    if signs == {0}:
        return "not separated"
    if 1 in signs and -1 not in signs:
        return "**GIPO ahead**"
    if -1 in signs and 1 not in signs:
        return "**baseline ahead**"
    return "mixed"


class Scored(NamedTuple):
    """A run set's runs and GIPO's paired differences from the baseline (None where no pair has landed)."""

    run_set: RunSet
    gipo: dict
    baseline: dict
    final: Paired | None
    auc: Paired | None

    @property
    def pairs(self) -> int:
        """The GIPO–baseline pairs landed so far."""
        return self.final.pairs if self.final else 0


def scores() -> list[Scored]:
    """Every run set, read from its store and scored once."""
    out = []
    for run_set in RUN_SETS:
        gipo, baseline = run_set.source.load()
        final = _difference(gipo, baseline, run_set.final)
        auc = _difference(gipo, baseline, run_set.auc) if run_set.auc else None
        out.append(Scored(run_set, gipo, baseline, final, auc))
    return out


def rows(scored: list[Scored]) -> list[dict]:
    out = []
    for scored_set in scored:
        run_set, gipo, baseline, final, auc = scored_set
        out.append({
            "stack": run_set.stack, "regime": run_set.regime, "anchor": run_set.anchor,
            "update_rate": run_set.update_rate, "pairs": f"{scored_set.pairs} of {run_set.source.planned}",
            "final": _cell(final), "auc": _cell(auc), "verdict": _verdict(final, auc),
            "dead_fraction": present_mean([run_set.dead(s) for s in baseline.values()]),
            "log_ratio_p95": present_mean([run_set.drift(s) for s in gipo.values()]),
            "page": f"[{run_set.page}]({run_set.page})" if gipo or baseline else "– (no run landed yet)",
        })  # fmt: skip
    return out


def plot(scored: list[Scored], path: Path) -> None:
    """GIPO − baseline in final success per run set that has `MIN_PAIRS` pairs: mean and 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in scored if s.final is not None and s.final.enough]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(shown) + 1.2))
    for y, scored_set in enumerate(reversed(shown)):
        final = scored_set.final
        color = {1: "tab:blue", -1: "tab:red"}.get(final.sign, "tab:gray")
        ax.errorbar(final.mean, y, xerr=[[final.mean - final.low], [final.high - final.mean]], fmt="o",
                    color=color, capsize=3)  # fmt: skip
        ax.text(1.02, y, f"{final.pairs} pairs", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(shown)), [s.run_set.label for s in reversed(shown)], fontsize=8)
    ax.set_xlabel("final success, GIPO − clipped baseline (95 % bootstrap CI)")
    ax.set_title("Final success, GIPO − baseline: interval above 0 blue, below 0 red, across 0 grey (run sets with "
                 f"≥ {MIN_PAIRS} pairs)", fontsize=8)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FINDINGS = """\
**What the runs say.** GIPO is ahead of the clipped loss in one setting, the one the paper reports:
stale replay with few policy updates per unit of data (the TorchRL recipe, one actor step per 50 env
steps). It is behind where each batch drives many updates and nothing anchors the policy to the one
that acted: AGIPO with APPO's 16 × 20 buffer and no KL loss, and the VLA trainer with 8 passes per
batch (where, below, it stays behind in every regime tried). There GIPO's |log r| p95 sits far above
σ = 1 and far above the clipped loss's: the policy has drifted to where the Gaussian weight no
longer restrains a positive-advantage sample (its gradient weight w·r is still e^½ at ℓ = 1, where
the clip has stopped it) and, once |ℓ| ≫ σ, no longer pulls it back either. With APPO's own KL loss
on, or AGIPO's anchor to the behaviour policy, AGIPO no longer drifts — its |log r| p95 is near APPO's
— its return no longer collapses and it learns more than without either; but APPO given the same term
is not behind it (not separated with the KL loss, ahead in final success with the anchor); there
APPO's clip zeroes almost no sample, so this is not the regime where clipping stalls. Where the
clip zeroes few samples (fresh data, or light reuse with the 256-bin head), GIPO and the clip cannot
differ much, and they do not.

**The anchor is not what makes GIPO win in the recipe.** Without it (`kl_coeff` 0, both arms,
reach-v3 and handle-press-v3 × 3 seeds) GIPO drifts further — |log r| p95 ≈ 4 against ≈ 1.1 with
the anchor — but does not collapse, and its lead over PPO-clip in final success is no smaller than
with the anchor on the same tasks and seeds (the two rows above; neither separates at 6 pairs in
final success, the anchored one does in AUC). Removing the anchor changes neither objective
significantly (paired against the anchored runs on the no-anchor page: GIPO +0.02 final / −0.12 AUC,
PPO-clip −0.12 / −0.07, every interval across 0). So at one actor step per 50 env steps a drifting
GIPO policy still learns: of the three suspects for the losses elsewhere, this argues against the
missing anchor alone and for the update rate, which the APPO `light` set (16 × 2 buffer) and the
VLA 2-pass set then tested: neither bears it out (below).

**Nor is the update rate, in AGIPO.** With light reuse (a 16 × 2 circular buffer instead of 16 × 20,
no anchor, 2 tasks × 3 seeds) APPO is still ahead: AUC −0.13 [−0.24, −0.02], final success −0.08
[−0.19, +0.00]. AGIPO still drifts (|log r| p95 4.7 against APPO's 0.33) and its training return
still collapses (0.31 against 1.49, lower in 6 of 6 pairs). The asynchronous env runners keep the
learner's batches about 6 updates behind the acting policy whatever the reuse, and APPO's clip
zeroes only 3 % of the samples there. The suspects left for AGIPO are the Gaussian head (the
`binned` sets) and the missing anchor (`small_anchor`).

**Nor is the Gaussian head: with 256 bins APPO is still ahead.** With the protocol's action head (256
bins per dimension, 16 × 20 buffer, no anchor, 2 tasks × 3 seeds) APPO's clip zeroes a quarter of the
samples (0.25, against 0.10 with the Gaussian): the regime where clipping should stall. AGIPO drifts far
less than with the Gaussian (|log r| p95 2.1 against 8.9) but still more than APPO (0.8), and APPO is
ahead: final success −0.17 [−0.31, −0.03], AUC −0.07 [−0.13, −0.02]; AGIPO's training return is lower in
6 of 6 pairs. The separation comes from handle-press-v3 alone (APPO 0.47 / 0.33 / 0.47, AGIPO 0.00 /
0.13 / 0.13): neither objective learns reach-v3 in 150k steps. APPO's policy stays almost uniform
(entropy 22.1 of a uniform head's 22.2) while AGIPO's narrows (20.6), so the discrete head takes away
the Gaussian's runaway drift and entropy collapse but not AGIPO's loss. Of the suspects for AGIPO, that
leaves the missing anchor (`small_anchor`); `binned_light` (below) asks the same of the head under light reuse.

**The anchor is what AGIPO was missing, and APPO takes it too.** With AGIPO's shipped anchor,
0.1·KL(π_behaviour ‖ π_θ) from the stored behaviour logits, in both arms (16 × 20 buffer, 2 tasks × 3
seeds), AGIPO no longer drifts (|log r| p95 0.27 against 8.9 without it) and its entropy holds (5.7 →
5.7, against 5.5 → 3.1). Paired with its own unanchored runs it gains +0.26 [+0.08, +0.46] in final
success and +0.21 [+0.06, +0.38] in AUC: the only AGIPO change measured that separates. Stock APPO
with the same anchor gains too (+0.26 [+0.04, +0.50] final success, AUC not separated), and against it
AGIPO is still behind in final success, −0.12 [−0.24, −0.02], though not in AUC (−0.05 [−0.12,
+0.02]). The gap is handle-press-v3 (0.58 against 0.80; training return 1.33 against 2.00; reach-v3:
neither learns, returns 2.19 and 2.18). With the anchor APPO's clip zeroes 1 % of the samples, so
this, like `small_kl`, is not the regime where clipping stalls: the anchor keeps both policies near the
one that acted, and there the clip loses nothing that GIPO's weight could recover.

**With 256 bins and light reuse the two objectives coincide, and do not separate.** With the protocol's
head and a 16 × 2 buffer (no anchor, 2 tasks × 3 seeds) neither policy drifts: |log r| p95 0.19 (AGIPO)
against 0.18 (APPO), where the Gaussian head under the same reuse let AGIPO reach 4.7. APPO's clip
zeroes 1 % of the samples and GIPO's weight is ~1 (ESS 0.99), so the two losses take almost the same
gradients, and they end level: final success +0.02 [−0.07, +0.13], AUC +0.01 [−0.03, +0.05]; at this
spread an interval excluding 0 would take about 130 pairs. It is a null, not a win: both arms learn
little in 150k steps (handle-press-v3 0.20 against 0.16; reach-v3 neither), AGIPO's training return is
lower in 5 of 6 pairs (reach-v3 1.32 against 2.05; handle-press-v3 1.80 against 1.83), and its entropy
narrows more (22.17 → 19.56 against 20.67). Both are still moving at 150k steps (entropy falling,
AGIPO's faster; |log r| p95 rising; the page's figure), so the null holds for this budget. Against their
own Gaussian-head runs in `light`, the head raises AGIPO's AUC (+0.05 [+0.01, +0.12]) and lowers APPO's
(−0.08 [−0.16, −0.01]), which is what closes the gap. So under light reuse AGIPO's drift and its loss
came with the Gaussian head; under heavy reuse (`binned`) the bins cut the drift but not the loss. Where
the policy does not drift, the clip stops nothing that GIPO's weight could recover: the bins remove
AGIPO's loss here without giving it a lead.

**Nor is its absence what makes GIPO lose in the VLA trainer.** With the published anchor in both
arms (β = 0.1, exact over the 256 action tokens of each dimension, from the categorical stored when
the episode was acted; 10 paired seeds, 8 passes per batch) GIPO's drift falls by almost half —
|log r| p95 0.86 against 1.50 without it — but its final success does not move (+0.2 points against
its own unanchored runs, [−2.2, +2.8]), and it still ends below its SFT start (0.03 vs 0.10) while
dapo gains; dapo stays ahead by 14.8 points [−21.4, −8.8]. So at 8 passes GIPO's loss there is not
a policy that ran away for lack of an anchor: with |log r| p95 below 1 its trust weight still lets
positive-advantage tokens push up to w·r ≈ 1.6 on every pass, where dapo's clip has stopped them
(9 % of dapo's tokens are clipped).

**Nor is the update rate, in the VLA trainer.** With 2 passes per batch instead of 8 (the same 15
batches of episodes, 30 optimizer steps, 10 paired seeds, no anchor) GIPO barely drifts — |log r|
p95 0.27 against dapo's 0.18, a trust weight of 0.96 there — and still trails dapo by 8.8 points
[−13.6, −3.4], again ending below its SFT start (0.06 vs 0.10; dapo 0.15). Fewer passes helped
neither loss significantly (GIPO +3.4 points [−1.0, +9.2] against its 8-pass runs, dapo +0.8).
So in this trainer none of the first two suspects explains the loss: GIPO loses with the anchor,
and without drift. What is left is what the clip stops and the weight keeps: a token with positive
advantage whose probability already rose keeps w·r > 1 up to ℓ = 2σ² (peak e^½ ≈ 1.65 at ℓ = σ² = 1),
where dapo stops it at ℓ = log 1.28 ≈ 0.25. The runs are consistent with that: the first optimizer
step of every run (Adam's first step, the same in both arms) moves |log r| p95 to 1.37 on average,
so on the second pass over that batch dapo clips the far tokens while GIPO keeps pushing them; from
then on GIPO's policy moves further per batch than dapo's (p95 1.36 against 0.54 on the next batch,
about 1.6 times dapo's for the rest of the run; the 2-pass page's figure).

**σ = 0.5 does not close the gap either.** At 8 passes, GIPO at σ = 0.5 (w·r peaks at e^⅛ ≈ 1.13,
at ℓ = 0.25, close to dapo's cap) trails dapo by 9.4 points [−13.8, −5.0] (10 pairs; +2.0 points
[−0.6, +4.6] against GIPO at σ = 1) and still drifts: |log r| p95 1.15 against dapo's 0.31. A
tighter positive-side weight does not keep the policy near the acting one, so the drift is not
driven by positive-advantage tokens alone. The side the clip treats differently and the weight
does not is the other: a token with A < 0 whose probability *rose* past 1 + ε keeps PPO's
unclipped gradient r·|A|, which grows with r and pushes it back, while GIPO's w·r fades once
ℓ > σ₋² (sooner at σ = 0.5). That correction is what the `wide_neg` preset (σ₋ = 4σ) tests.

**Nor is the negative side.** With σ₋ = 4σ a token with A ≤ 0 keeps w ≥ ½ up to |ℓ| ≈ 4.7, so the
push back on a bad token whose probability rose is kept; yet GIPO ends where it did (final success
0.03; +0.2 points [−2.8, +3.6] against σ₋ = σ, 10 paired seeds), drifts as far (|log r| p95 1.63
against 1.50), and dapo stays ahead by 11.2 points [−16.0, −6.0]. So none of the four suspects
tested in this trainer — the anchor, the update rate, σ, the negative side — explains its gap, and
the cause stays open. What is established: the two arms take identical gradients on the pass that
acted (a CI test: r = 1, w = 1, nothing clipped), so the gap comes only from reused data; and it is
already there at 2 passes, where GIPO's trust weight is 0.96 at its p95 and dapo clips 3 % of the
tokens. The likeliest reading is that those few tokens decide the outcome here: the hard zero the
clip gives them does better than a smooth weight that keeps them, however σ or σ₋ shapes it. Plain
importance sampling (w ≡ 1) in the same A/B would test that reading; it has not been run. In this
trainer, for reused batches, use the clipped loss.

**Nor is it the regime.** In the paper's stale regime in this trainer, each batch is half fresh and
half replayed as acted from a FIFO of the 32 most recent episodes (up to 8 generations old). It runs
one pass per batch and the 2-pass set's 30 optimizer steps. GIPO still trails dapo there: −7.6
points [−11.4, −3.8] over 10 paired seeds (0.08 vs 0.16; GIPO ends below its SFT start, dapo above).
On data of the same ages dapo's clip zeroes 6 % of the tokens, while GIPO's |log r| p95 is 1.05
against dapo's 0.40: GIPO's policy moves further from the ones that acted. So in the VLA trainer
GIPO is behind in every regime tried, stale replay included: the opposite of the TorchRL recipe here
and of the paper's VLA results. Those ran a full OpenVLA on LIBERO and Meta-World, with the authors'
trainer; this is a tiny model from pixels with TRL's loop. Against their own 2-pass runs neither
loss changed significantly (GIPO +2.0 points [−3.6, +7.0], dapo +0.8 [−6.2, +8.0]).

**The defaults that follow.** Every adapter offers the published anchor β·KL(π_behaviour ‖ π_θ)
and, where the stock algorithm has no trust region besides the clip GIPO opens (APPO without its KL
loss, the VLA trainer, TRL, verl), ships GIPO with β = 0.1 (`behaviour_kl_coeff` /
`gipo_behaviour_kl_coeff` left at `None`): the published method. In AGIPO the default is measured:
with it AGIPO gains +0.26 final success and +0.21 AUC over no anchor (`small_anchor` against `small`),
more than APPO's KL loss to the target network gives it (+0.17 / +0.08, `small_kl`), and it no longer
drifts or collapses. Elsewhere nothing measured shows a better default — the recipe does as well
without it, and in the VLA trainer the anchor neither helped nor hurt GIPO — so there the default
stays the published one, not a measured optimum. Baseline objectives keep their framework's loss, and
every A/B sets the anchor for both arms.
"""


def still_landing(scored: list[Scored]) -> str:
    """A closing paragraph naming the run sets with fewer pairs than they plan (empty when every one is complete)."""
    short = [f"{s.run_set.label}, {s.pairs} of {s.run_set.source.planned} pairs (`{s.run_set.source.command}`)"
             for s in scored if s.pairs < s.run_set.source.planned]  # fmt: skip
    if not short:
        return ""
    return f"\n**Still landing** (each command resumes from its store): {'; '.join(short)}.\n"


def main(docs: Path | None = None, img: Path | None = None) -> None:
    """Write the page and its CSV into `docs` (default: `docs/benchmarks/`) and its figure into `img` (default:
    `docs/img/`, or `docs` itself when only `docs` is given)."""
    scored = scores()
    img = img or (docs if docs is not None else IMG)
    img.mkdir(parents=True, exist_ok=True)
    plot(scored, img / "when_gipo_helps.png")
    write_report(
        "when_gipo_helps",
        "When GIPO helps: every run set, GIPO against the clipped loss it replaces",
        "Made by `python -m benchmarks.when_gipo_helps` from the committed results stores (no run is repeated). "
        "Differences are GIPO − baseline on the same tasks and seeds, with 95 % bootstrap intervals; a verdict "
        f"needs {MIN_PAIRS} pairs and an interval that excludes 0 (in final success or AUC).\n\n"
        "![GIPO − baseline per run set](../img/when_gipo_helps.png)",
        rows(scored),
        {
            "stack": "stack",
            "regime": "regime",
            "anchor": "anchor",
            "update_rate": "update rate",
            "pairs": "pairs",
            "final": "final success, GIPO − baseline",
            "auc": "AUC, GIPO − baseline",
            "verdict": "verdict",
            "dead_fraction": "baseline dead fraction",
            "log_ratio_p95": "GIPO abs log r p95",
            "page": "run set",
        },
        digits=2,
        footer=FINDINGS + still_landing(scored),
        docs=docs,
    )


if __name__ == "__main__":
    main()
