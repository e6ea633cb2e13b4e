"""Stale VLA A/B on Meta-World from pixels: GIPO against a clipped loss in a regime where the trust weight binds.

The first A/B reused each batch of episodes twice: GIPO's mean $|\\log r|$ was 0.06, so its trust
weight $w = \\exp(-\\tfrac12 (\\log r / \\sigma)^2)$ stayed near 1 and GIPO acted as plain importance
sampling, and 3 seeds × 20 evaluation goals could not separate the losses. This design:

- **staleness that binds**: each batch of episodes is reused for `num_iterations` = 8 optimizer
  passes (TRL's stale knob), so late passes train on a policy several updates old; every run logs
  $|\\log r|$ (mean and p95 over the batch's action tokens) and the dead fractions — GIPO's
  suppressed fraction ($w < 10^{-3}$) and the clipped loss's fraction of clipped tokens
  (`clip_ratio/region_mean`, no gradient);
- **power**: 10 post-training seeds per loss, all from one SFT checkpoint, evaluated greedily on all
  50 MT1 goals; the two losses are compared *paired* by seed (same seed → same first batch of
  episodes) with a 95 % bootstrap interval of the mean difference;
- **A/B**: `gipo` (σ = 1) against TRL's `dapo` (token-level PPO clipping, ε = 0.2 / 0.28).

The anchor (`--behaviour-kl-coeff`, the trainer's `gipo_behaviour_kl_coeff`: β·KL(π_behaviour ‖ π_θ),
exact over the action tokens) is set explicitly in every preset. `full` and `smoke` ran before the
trainer had it and keep it at 0, so a resumed run is the same experiment; `anchored` (issue 24's run
set 3) is `full` with β = 0.1 in both arms — the published method's anchor — and reports to its own
page, `docs/benchmarks/vla_metaworld_anchored.md`. Two more presets change one thing of `full` each:
`two_pass` (run set 2, the update rate) reuses each batch for 2 passes instead of 8 over the same 15
batches of episodes (30 optimizer steps instead of 120, evaluations after 15 and 30), both arms;
`sigma05` (run set 4) runs GIPO alone at σ = 0.5 (AcceRL's asynchronous demo) and takes its dapo arm
from `full`, whose dapo runs are the same experiment (dapo does not read σ). `fifo` (run set 7) is the
paper's stale regime: each optimizer step's batch of 8 is 4 fresh episodes (one goal's group) and 4
replayed as acted — behaviour log-probs, categorical and advantages stored then, never re-scored —
from a FIFO of the 32 most recent earlier episodes (the trainer's `replay_episodes` /
`fresh_episodes`), one pass each, 30 steps (124 episodes acted). Each episode is then used about
twice, as in `two_pass`, with the same number of optimizer steps, so `fifo` is paired against
`two_pass`: what differs is that the second use comes from a policy up to 8 generations behind.
`wide_neg` runs GIPO alone with σ₋ = 4σ for non-positive advantages (`gipo_sigma_neg_ratio`),
dapo's arm from `full`: a token with A < 0 whose probability *rose* (ℓ > 0) is where PPO's min keeps
the unclipped, growing gradient r·A that pushes it back down, while GIPO's weight w·r = exp(ℓ − ℓ²/2σ₋²)
fades once ℓ passes σ₋² — a wider σ₋ keeps that correction. A preset that names another in `against`
is paired with it on its page: each arm with itself there, same seed.

Each run is `examples/vla_metaworld.py` in its own process, run by the study runner
(`benchmarks.runner`): a Ray task per run (`--workers` at a time here, or a cluster with
`--address`) in a temp folder that exists only in its worker, with a copy of the shared SFT
checkpoint (built once on the driver, sent through Ray); the summary comes back through Ray. Finished
runs are skipped, and the reporting presets keep each run's summary, gzipped, in
`benchmarks/vla_posttrain_results/<preset>/` (tracked), so the A/B can span sessions; `--report-only`
writes the page from the runs finished so far (it says when seeds are missing).
The `full` preset writes `docs/benchmarks/vla_metaworld.{csv,md}` and `docs/img/vla_metaworld_*.png`;
`smoke` runs the same machinery end to end in about 1.5 CPU-minutes and writes nothing under docs
(its results and page stay in `runs/vla_posttrain/smoke/`).
Cost of `full` (measured on this 2-core CPU, one thread per run): ≈ 24 CPU-s per batch of episodes with
its 8 passes, ≈ 130 CPU-s per 50-goal evaluation, ≈ 11 CPU-minutes per run (15 batches, evaluations
after 60 and 120 steps), ≈ 3.6 CPU-hours for the 20 runs (≈ 1.8 h on two free cores):

```
python -m benchmarks.vla_posttrain --preset smoke
python -m benchmarks.vla_posttrain --preset full --workers 2     # the estimated cost is in the docs page
python -m benchmarks.vla_posttrain --preset full --report-only   # the page from the runs finished so far
python -m benchmarks.vla_posttrain --preset anchored --workers 2 # run set 3: the same A/B, anchor 0.1 in both arms
python -m benchmarks.vla_posttrain --preset two_pass --workers 2 # run set 2: 2 passes per batch, same episodes
python -m benchmarks.vla_posttrain --preset sigma05 --workers 2  # run set 4: GIPO at sigma 0.5 against full's dapo
python -m benchmarks.vla_posttrain --preset fifo --workers 2     # run set 7: episodes replayed from a FIFO, as acted
python -m benchmarks.vla_posttrain --preset wide_neg --workers 2 # GIPO with sigma_- = 4 sigma against full's dapo
```
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import statistics
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmarks import runner
from benchmarks.report import Pages, present_mean, write_report
from benchmarks.stats import MIN_PAIRS, mean_with_ci, pairs_needed

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
RESULTS = ROOT / "benchmarks" / "vla_posttrain_results"
"""Where the finished runs' summaries of reporting presets are kept, gzipped (tracked)."""
COLORS = {"gipo": "tab:blue", "dapo": "tab:red", "sapo": "tab:green", "grpo": "tab:orange"}
DEAD = {"gipo": "gipo/suppressed_fraction"}
"""Per-loss metric of tokens that no longer drive the gradient (clipped losses: `clip_ratio/region_mean`)."""


@dataclass(frozen=True)
class Preset:
    """One A/B configuration: the arms, the seeds, and the example's arguments."""

    loss_types: tuple[str, ...]
    seeds: tuple[int, ...]
    example_args: tuple[str, ...]
    report: bool
    page: str = "vla_metaworld"
    """Base name of the report under `docs/benchmarks/` (and of its figure under `docs/img/`)."""
    title: str = "Stale VLA post-training on Meta-World from pixels"
    against: str = ""
    """A preset whose runs differ from these only in `example_args`: the page pairs each arm with itself there, and
    takes from it the arms this preset does not run (a baseline the change leaves untouched)."""

    @property
    def anchor(self) -> float:
        """The anchor coefficient β both arms run with (`--behaviour-kl-coeff`, which every preset sets)."""
        return float(self.example_args[self.example_args.index("--behaviour-kl-coeff") + 1])

    def _float_arg(self, flag: str, default: float) -> float:
        """The value the preset passes the example for `flag`, or the example's `default` where it passes none."""
        args = self.example_args
        return float(args[args.index(flag) + 1]) if flag in args else default

    @property
    def sigma(self) -> float:
        """GIPO's σ (`--sigma`; the example's default, 1, where the preset does not set it)."""
        return self._float_arg("--sigma", 1.0)

    @property
    def sigma_neg_ratio(self) -> float:
        """σ₋/σ for non-positive advantages (`--sigma-neg-ratio`; 1 where the preset does not set it)."""
        return self._float_arg("--sigma-neg-ratio", 1.0)


_SFT_ARGS = ("--checkpoint", "runs/vla/sft_reach-v3", "--demo-episodes", "50", "--sft-epochs", "6")
_TRAIN_ARGS = ("--episodes-per-step", "8", "--num-generations", "4", "--horizon", "60", "--lr", "3e-4",
               "--eval-goals", "50", "--eval-horizon", "100")  # fmt: skip
_FULL_ARGS = (*_SFT_ARGS, "--num-iterations", "8", "--max-steps", "120", *_TRAIN_ARGS, "--eval-every", "60")
_TWO_PASS_ARGS = (*_SFT_ARGS, "--num-iterations", "2", "--max-steps", "30", *_TRAIN_ARGS, "--eval-every", "15")
_FIFO_ARGS = (*_SFT_ARGS, "--num-iterations", "1", "--max-steps", "30", "--replay-episodes", "32", "--fresh-episodes",
              "4", *_TRAIN_ARGS, "--eval-every", "15")  # fmt: skip
PRESETS = {
    "full": Preset(
        ("gipo", "dapo"), tuple(range(10)),
        (*_FULL_ARGS, "--behaviour-kl-coeff", "0.0"),  # as run: before the anchor existed
        report=True,
    ),
    "anchored": Preset(  # issue 24, run set 3: the committed stale A/B with the published anchor in both arms
        ("gipo", "dapo"), tuple(range(10)),
        (*_FULL_ARGS, "--behaviour-kl-coeff", "0.1"),
        report=True, page="vla_metaworld_anchored",
        title="Stale VLA post-training on Meta-World from pixels, anchor 0.1 in both arms", against="full",
    ),
    "two_pass": Preset(  # issue 24, run set 2: the same 15 batches of episodes, each reused for 2 passes, not 8
        ("gipo", "dapo"), tuple(range(10)),
        (*_TWO_PASS_ARGS, "--behaviour-kl-coeff", "0.0"),
        report=True, page="vla_metaworld_two_pass",
        title="VLA post-training on Meta-World from pixels, 2 passes per batch", against="full",
    ),
    "sigma05": Preset(  # issue 24, run set 4: GIPO at sigma 0.5; dapo's arm is full's (dapo does not read sigma)
        ("gipo",), tuple(range(10)),
        (*_FULL_ARGS, "--behaviour-kl-coeff", "0.0", "--sigma", "0.5"),
        report=True, page="vla_metaworld_sigma05",
        title="Stale VLA post-training on Meta-World from pixels, GIPO at σ = 0.5", against="full",
    ),
    "fifo": Preset(  # issue 24, run set 7: the paper's stale regime, episodes replayed across generations as acted
        ("gipo", "dapo"), tuple(range(10)),
        (*_FIFO_ARGS, "--behaviour-kl-coeff", "0.0"),
        report=True, page="vla_metaworld_fifo",
        title="VLA post-training on Meta-World from pixels, episodes replayed from a FIFO", against="two_pass",
    ),
    "wide_neg": Preset(  # issue 24: GIPO keeping the clipped loss's corrective gradient on A <= 0 (sigma_- = 4 sigma)
        ("gipo",), tuple(range(10)),
        (*_FULL_ARGS, "--behaviour-kl-coeff", "0.0", "--sigma-neg-ratio", "4"),
        report=True, page="vla_metaworld_wide_neg",
        title="Stale VLA post-training on Meta-World from pixels, GIPO with σ₋ = 4σ", against="full",
    ),
    "smoke": Preset(
        ("gipo", "dapo"), (0, 1),
        ("--checkpoint", "runs/vla_smoke/sft", "--demo-episodes", "3", "--sft-epochs", "1",
         "--num-iterations", "4", "--max-steps", "4", "--episodes-per-step", "4", "--num-generations", "2",
         "--horizon", "5", "--lr", "1e-3", "--eval-goals", "2", "--eval-every", "0", "--eval-horizon", "10",
         "--behaviour-kl-coeff", "0.0"),
        report=False,
    ),
}  # fmt: skip


def _kept(kept: Path | None, name: str) -> Path | None:
    return kept / f"{name}.json.gz" if kept is not None else None


def finished(loss_type: str, seed: int, logdir: Path, kept: Path | None) -> dict | None:
    """A run's summary if it has finished: the kept copy, else the work folder's (which is then kept)."""
    name = f"{loss_type}_seed{seed}"
    kept_path, summary = _kept(kept, name), logdir / f"{name}.json"
    if kept_path is not None and not kept_path.exists() and summary.exists():
        kept_path.parent.mkdir(parents=True, exist_ok=True)
        kept_path.write_bytes(gzip.compress(summary.read_bytes(), mtime=0))
    if kept_path is not None and kept_path.exists():
        return json.loads(gzip.decompress(kept_path.read_bytes()))
    return json.loads(summary.read_text()) if summary.exists() else None


class Run(NamedTuple):
    """One post-training run: a loss and a seed."""

    loss_type: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.loss_type}_seed{self.seed}"


def runs_of(preset: Preset) -> list[Run]:
    """The preset's runs, seed-major (a sweep cut short has whole pairs)."""
    return [Run(loss, seed) for seed in preset.seeds for loss in preset.loss_types]


def _checkpoint(preset: Preset) -> str:
    return preset.example_args[preset.example_args.index("--checkpoint") + 1]


def prepare(preset_name: str, preset: Preset) -> dict[str, bytes]:
    """On the driver: build (and evaluate) the shared SFT checkpoint once if it is missing; returns its files
    (relative path → bytes), which reach every run through Ray."""
    checkpoint = ROOT / _checkpoint(preset)
    if not (checkpoint / "config.json").exists():
        command = [sys.executable, str(ROOT / "examples/vla_metaworld.py"), *preset.example_args, "--threads", "1"]
        subprocess.run([*command, "--sft-only"], check=True, cwd=ROOT)
    return {str(f.relative_to(checkpoint)): f.read_bytes() for f in sorted(checkpoint.rglob("*")) if f.is_file()}


def execute(context: runner.RunContext) -> dict:
    """One post-training run in the worker's temp folder, from its copy of the SFT checkpoint; returns the summary.

    A relative `--checkpoint` is materialised at that path under the temp folder (the run's working directory),
    so the summary's arguments read as the preset's.
    """
    run, preset = context.run, context.preset
    checkpoint = context.workdir / _checkpoint(preset)
    for name, data in context.shared.items():
        (checkpoint / name).parent.mkdir(parents=True, exist_ok=True)
        (checkpoint / name).write_bytes(data)
    command = [sys.executable, str(ROOT / "examples/vla_metaworld.py"), "--loss-type", run.loss_type,
               "--seed", str(run.seed), "--logdir", str(context.workdir), "--run-name", run.name,
               *preset.example_args, "--threads", "1"]  # fmt: skip
    context.call(command, cwd=context.workdir)
    return json.loads((context.workdir / f"{run.name}.json").read_text())


def describe(summary: dict) -> str:
    return f"success {summary['sft_success']:.2f} (SFT) -> {summary['final_success']:.2f}"


def _report(preset_name: str, preset: Preset, summaries: dict, pages: Pages, command: str | None = None) -> Path:
    against = None
    if preset.against:
        other = PRESETS[preset.against]
        against = (preset.against, list(runner.stored(runs_of(other), RESULTS / preset.against).values()))
    return report(preset, list(summaries.values()), command or f"python -m benchmarks.vla_posttrain --preset "
                  f"{preset_name}", pages, against=against)  # fmt: skip


STUDY = runner.Study(
    name="vla_posttrain",
    presets=PRESETS,
    runs=runs_of,
    run=execute,
    report=_report,
    store=lambda preset_name: RESULTS / preset_name,
    workdir=lambda preset_name: ROOT / "runs" / "vla_posttrain" / preset_name,
    describe=describe,
    prepare=prepare,
    smoke=tuple(name for name, preset in PRESETS.items() if not preset.report),
    workers=2,
)


def staleness(result: dict, sigma: float = 1.0) -> dict[str, float]:
    """A run's training diagnostics: mean and max over steps of $|\\log r|$ p95, the fraction of steps where it exceeds
    GIPO's σ, and its dead fraction."""
    metrics = result["train_metrics"]
    p95 = [v for v in metrics["stale/log_ratio_abs_p95"] if v is not None]
    dead = metrics.get(DEAD.get(result["loss_type"], "clip_ratio/region_mean"), [])
    return {
        "log_ratio_abs_mean": present_mean(metrics["stale/log_ratio_abs_mean"]),
        "log_ratio_abs_p95": present_mean(p95),
        "log_ratio_abs_p95_max": max(p95, default=float("nan")),
        "binding_steps": float(np.mean([v > sigma for v in p95])) if p95 else float("nan"),
        "dead_fraction": present_mean(dead),
        "trust_weight_mean": present_mean(metrics.get("gipo/trust_weight_mean", [])),
    }


def summarize(results: list[dict], loss_types: list[str], sigma: float = 1.0) -> tuple[list[dict], list[dict]]:
    """Per-loss rows (success with 95 % CIs over seeds, diagnostics) and paired differences against the first loss.

    Raises:
        ValueError: a loss type without runs.
    """
    by_loss = {loss: sorted((r for r in results if r["loss_type"] == loss), key=lambda r: r["seed"])
               for loss in loss_types}  # fmt: skip
    rows = []
    for loss, runs in by_loss.items():
        if not runs:
            raise ValueError(f"no finished runs for loss_type {loss!r}")
        final = np.array([r["final_success"] for r in runs])
        mean, low, high = mean_with_ci(final)
        diagnostics = [staleness(r, sigma) for r in runs]
        rows.append({
            "loss_type": loss, "seeds": len(runs), "sft_success": runs[0]["sft_success"],
            "final_mean": mean, "final_ci_low": low, "final_ci_high": high,
            "gain_points": 100 * (mean - runs[0]["sft_success"]),
            "log_ratio_abs_mean": present_mean([d["log_ratio_abs_mean"] for d in diagnostics]),
            "log_ratio_abs_p95": present_mean([d["log_ratio_abs_p95"] for d in diagnostics]),
            "log_ratio_abs_p95_max": max(d["log_ratio_abs_p95_max"] for d in diagnostics),
            "binding_steps": present_mean([d["binding_steps"] for d in diagnostics]),
            "dead_fraction": present_mean([d["dead_fraction"] for d in diagnostics]),
            "minutes_per_run": statistics.mean(r["wall_seconds"] for r in runs) / 60,
            "per_seed": " ".join(f"{f:.2f}" for f in final),
        })  # fmt: skip
    reference, *others = loss_types
    final = {(r["loss_type"], r["seed"]): r["final_success"] for r in results}
    pairs = []
    for loss in others:
        seeds = sorted({r["seed"] for r in by_loss[reference]} & {r["seed"] for r in by_loss[loss]})
        pairs.append(_pair(f"{reference} - {loss}", [final[reference, s] - final[loss, s] for s in seeds]))
    return rows, pairs


def _pair(comparison: str, differences: list[float]) -> dict:
    """Paired differences of final success: mean, 95 % interval, verdict (none below `MIN_PAIRS`)."""
    differences = np.array(differences)
    mean, low, high = mean_with_ci(differences)
    separated = len(differences) >= MIN_PAIRS and bool(low > 0 or high < 0)  # no verdict from a handful of pairs
    return {"comparison": comparison, "pairs": len(differences), "mean_difference": mean, "ci_low": low,
            "ci_high": high, "separated": separated,
            "pairs_needed": pairs_needed(differences) if len(differences) > 1 else None}  # fmt: skip


def _pair_line(p: dict) -> str:
    line = (f"- **{p['comparison']}** (paired by seed, {p['pairs']} pairs): {100 * p['mean_difference']:+.1f} "
            f"points, 95 % CI [{100 * p['ci_low']:+.1f}, {100 * p['ci_high']:+.1f}] — ")  # fmt: skip
    if p["pairs"] < MIN_PAIRS:
        return line + f"too few pairs for a verdict (it needs ≥ {MIN_PAIRS})"
    if p["separated"]:
        return line + "separated"
    line += "not separated"
    if p["pairs_needed"] and p["mean_difference"] != 0:
        line += f"; at this spread an interval excluding 0 would take about {p['pairs_needed']} paired seeds"
    return line


def against_lines(results: list[dict], name: str, other: list[dict]) -> list[str]:
    """Each arm of this preset paired with itself in preset `name` (same seed): this page's run − that preset's."""
    theirs = {(r["loss_type"], r["seed"]): r["final_success"] for r in other}
    lines = []
    for loss in dict.fromkeys(r["loss_type"] for r in results):
        ours = {r["seed"]: r["final_success"] for r in results if r["loss_type"] == loss}
        seeds = sorted(s for s in ours if (loss, s) in theirs)
        if seeds:
            lines.append(_pair_line(_pair(f"{loss}: this page − `{name}`", [ours[s] - theirs[loss, s] for s in seeds])))
    return [f"\n**Against `{name}`**, each arm with itself there (same seed; final success):", *lines] if lines else []


def plot(results: list[dict], loss_types: list[str], path: Path) -> None:
    """Success curves (mean over seeds, thin lines per seed) and $|\\log r|$ p95 per training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for loss in loss_types:
        runs = [r for r in results if r["loss_type"] == loss]
        episodes = [c["episodes"] for c in runs[0]["curve"]]
        curves = np.array([[c["eval_success_rate"] for c in r["curve"]] for r in runs])
        left.plot(episodes, curves.mean(0), marker="o", color=COLORS.get(loss), label=f"{loss} ({len(runs)} seeds)")
        for curve in curves:
            left.plot(episodes, curve, color=COLORS.get(loss), alpha=0.2, lw=1)
        p95 = np.array([[np.nan if v is None else v for v in r["train_metrics"]["stale/log_ratio_abs_p95"]]
                        for r in runs])  # fmt: skip
        right.plot(np.arange(1, p95.shape[1] + 1), np.nanmean(p95, 0), color=COLORS.get(loss), label=loss)
    left.set(xlabel="training episodes", ylabel="greedy success rate (50 goals)", ylim=(-0.02, 1.02))
    right.axhline(1.0, color="gray", ls="--", lw=1, label="σ = 1 (w = 0.61)")
    right.set(xlabel="optimizer step", ylabel="|log r| p95 over the batch", yscale="log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Tiny OpenVLA, Meta-World reach-v3 from 64×64 pixels: stale post-training from SFT")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def reuse(args: dict) -> str:
    """How a run reuses its episodes, from the example's arguments: passes per batch, and the replay FIFO if any."""
    count = int(args["num_iterations"])
    passes = f"{count} pass{'es' if count > 1 else ''}"
    if not int(args.get("replay_episodes") or 0):
        return f"reusing each batch for {passes}"
    generations = int(args["replay_episodes"]) // int(args["fresh_episodes"])
    return f"replaying episodes acted up to {generations} generations earlier from a FIFO, each batch used for {passes}"


LITTLE_DRIFT_WEIGHT = 0.9
"""GIPO's trust weight at its |log r| p95 above which the drift note calls the drift little (p95 < 0.46 σ)."""


def drift_note(rows: list[dict], anchor: float = 0.0, sigma: float = 1.0,
               reuse: str = "reusing each batch for 8 passes") -> list[str]:  # fmt: skip
    r"""How far GIPO's policy moved from the acting one against each clipped loss, and the gradient weight left there.

    A token with positive advantage keeps the gradient weight $w \cdot r = \exp(\ell - \ell^2 / 2\sigma^2)$ at
    log-ratio $\ell$ (largest, $e^{\sigma^2/2}$, at $\ell = \sigma^2$), where a clipped loss stops at
    $\ell = \log(1 + \epsilon)$. Where the trust weight at GIPO's p95 is still $\geq$ `LITTLE_DRIFT_WEIGHT`,
    GIPO acts almost as plain importance sampling and the note says the policy did not drift far.
    """
    by_loss = {r["loss_type"]: r for r in rows}
    gipo = by_loss.get("gipo")
    if gipo is None:
        return []
    ell = gipo["log_ratio_abs_p95"]
    weight = math.exp(ell - ell**2 / (2 * sigma**2))
    trust = math.exp(-(ell**2) / (2 * sigma**2))
    lines = []
    for loss, row in by_loss.items():
        if loss == "gipo" or not ell > row["log_ratio_abs_p95"]:
            continue
        if trust >= LITTLE_DRIFT_WEIGHT:
            lines.append(
                f"- **Little drift**: GIPO's per-step $|\\log r|$ p95 averages {ell:.2f} (max "
                f"{gipo['log_ratio_abs_p95_max']:.1f}) against {loss}'s {row['log_ratio_abs_p95']:.2f}; its trust "
                f"weight there is $w$ = {trust:.2f} (σ = {sigma:g}), so GIPO acts almost as plain importance sampling "
                f"on most tokens. A policy that drifted far from the one that acted does not explain a gap here: what "
                f"differs is the few tokens {loss}'s clip stops (its dead fraction) and GIPO keeps, at a gradient "
                f"weight $w \\cdot r$ up to $e^{{\\sigma^2/2}}$ = {math.exp(sigma**2 / 2):.2f}."
            )
            continue
        lines.append(
            f"- **Drift**: GIPO's per-step $|\\log r|$ p95 averages {ell:.2f} (max "
            f"{gipo['log_ratio_abs_p95_max']:.1f}) against {loss}'s {row['log_ratio_abs_p95']:.2f}. At σ = {sigma:g} a "
            f"token with positive advantage still has the gradient weight $w \\cdot r = \\exp(\\ell - \\ell^2/"
            f"{2 * sigma**2:g})$ = {weight:.2f} at $\\ell$ = {ell:.2f}, where {loss}'s clip has stopped it: GIPO has "
            + (
                f"no hard trust region; here both arms ran with the anchor β = {anchor:g} · KL(π_behaviour ‖ π_θ), "
                "which pulls it back. A smaller σ (AcceRL's demo uses 0.5) would bound it further; the `sigma05` run "
                "set tests it, without the anchor, at 8 passes per batch."
                if anchor > 0
                else f"no hard trust region, and {reuse} with no KL term lets that "
                "weight carry the policy far from the one that acted. "
                + (
                    "A smaller σ (AcceRL's demo uses 0.5) or a KL penalty would bound it; the `sigma05` and `anchored` "
                    "run sets test them, at 8 passes per batch."
                    if sigma >= 1
                    else f"This A/B tests the smaller σ = {sigma:g} (AcceRL's demo), which bounds that weight sooner."
                )
            )
        )
    return lines


def report(
    preset: Preset, results: list[dict], command: str, pages: Pages | None = None,
    against: tuple[str, list[dict]] | None = None,
) -> Path:  # fmt: skip
    """Write `docs/benchmarks/<preset.page>.{csv,md}` and the figure (or into `pages`).

    `against` is `(preset name, its finished runs)` of the preset `preset.against` names: the arms this preset does
    not run are taken from it (on this preset's seeds), and each arm it does run is paired with itself there.
    """
    seeds = sorted({r["seed"] for r in results})
    name, other = against or ("", [])
    borrowed = [r for r in other if r["loss_type"] not in preset.loss_types and r["seed"] in seeds]
    loss_types = [*preset.loss_types, *dict.fromkeys(r["loss_type"] for r in borrowed)]
    everything = results + borrowed
    args = results[0]["args"]
    rows, pairs = summarize(everything, loss_types, preset.sigma)
    img = IMG if pages is None else pages.img
    img.mkdir(parents=True, exist_ok=True)
    image = img / f"{preset.page}_stale.png"
    plot(everything, loss_types, image)
    lines = [_pair_line(p) for p in pairs]
    lines += drift_note(rows, preset.anchor, preset.sigma, reuse(args))
    lines += against_lines(results, name, other)
    partial = len(seeds) < len(preset.seeds)
    description = (
        (
            f"**Partial: {len(seeds)} of the preset's {len(preset.seeds)} seeds per loss have run** (seeds "
            f"{', '.join(map(str, seeds))}); `{command.split(' --seeds')[0]}` resumes and adds the rest.\n\n"
            if partial
            else ""
        )
        + f"Made by `{command}` on a 2-core CPU. One SFT checkpoint (tiny OpenVLA, {args['demo_episodes']} "
        f"scripted-expert episodes, {args['sft_epochs']} epochs), then {args['max_steps']} optimizer steps per run: "
        f"batches of {args['episodes_per_step']} episodes ({args['num_generations']} per goal, {args['horizon']} env "
        + (
            f"steps), each batch reused for **{args['num_iterations']} passes** (stale). "
            if not int(args.get("replay_episodes") or 0)
            else f"steps) of which {args['fresh_episodes']} are acted and the rest **replayed as acted** from a FIFO "
            f"of the {args['replay_episodes']} most recent earlier episodes (stale: never re-scored); "
            f"{reuse(args).split(', ')[-1]}. "
        )
        + f"Success = greedy policy solved "
        f"at the last of {args['eval_horizon']} steps, on {args['eval_goals']} goals; seeds are post-training seeds. "
        "Dead fraction: GIPO's tokens with $w < 10^{-3}$; dapo's clipped tokens. Binding steps: fraction of "
        f"optimizer steps whose $|\\log r|$ p95 exceeds $\\sigma = {preset.sigma:g}$."
        + (
            f" Both arms add the anchor **β = {preset.anchor:g} · KL(π_behaviour ‖ π_θ)**, exact over the 256 action "
            "tokens of each dimension from the categorical stored when the episode was acted "
            "(`gipo_behaviour_kl_coeff`)."
            if preset.anchor > 0
            else ""
        )
        + (f" GIPO runs at **σ = {preset.sigma:g}**." if preset.sigma != 1 else "")
        + (
            f" GIPO runs with **σ₋ = {preset.sigma_neg_ratio:g} σ** for non-positive advantages."
            if preset.sigma_neg_ratio != 1
            else ""
        )
        + (
            f" The {', '.join(loss_types[len(preset.loss_types) :])} arm is `{name}`'s runs on the same seeds: this "
            "preset changes nothing that arm reads."
            if borrowed
            else ""
        )
        + f"\n\n![curves](../img/{image.name})"
    )
    return write_report(
        preset.page, preset.title, description, rows,
        {"loss_type": "loss", "seeds": "seeds", "sft_success": "SFT", "final_mean": "after (mean)",
         "final_ci_low": "CI low", "final_ci_high": "CI high", "gain_points": "gain (points)",
         "log_ratio_abs_p95": "abs log r p95", "log_ratio_abs_p95_max": "p95 max", "binding_steps": "binding steps",
         "dead_fraction": "dead fraction", "minutes_per_run": "min/run"},
        footer="\n".join(lines), docs=None if pages is None else pages.docs,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    p = runner.parser(STUDY, __doc__.split("\n\n")[0], default_preset="full")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the preset's seeds")
    p.add_argument("--logdir", dest="workdir", type=Path, help="the work folder (as --workdir)")
    args, extra = p.parse_known_args(argv)  # extra: the example's own options (results then stay in the work folder)
    preset = PRESETS[args.preset]
    if args.seeds:
        preset = replace(preset, seeds=tuple(args.seeds))  # a subset of the preset's runs: the same store
    if extra:
        preset = replace(preset, example_args=(*preset.example_args, *extra))
    command = f"python -m benchmarks.vla_posttrain --preset {args.preset}"
    if args.seeds:
        command += f" --seeds {' '.join(map(str, preset.seeds))}"
    study = replace(STUDY, report=functools.partial(_report, command=command))
    return list(runner.main(study, args, preset=preset, tracked=not extra).values())


if __name__ == "__main__":
    from benchmarks import vla_posttrain  # the importable module: Ray sends its functions by name

    vla_posttrain.main()
