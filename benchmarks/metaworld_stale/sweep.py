"""Meta-World stale-data A/B on the reference protocol: GIPO vs PPO-clip vs SAPO (vs plain IS).

Every run is one process of the TorchRL recipe (`python -m gipo_plugins.torchrl.recipe`, the
protocol of the paper's public script on TorchRL components; see its docstring) with the same
env-step budget, seeds and settings; only the surrogate (and the regime) differ:

- **stale** — a FIFO replay of the last 20 000 transitions (data up to 40 iterations old), the
  behaviour log-probs and GAE advantages stored at collection and never recomputed;
- **fresh** — a replay of one iteration (500 transitions): every minibatch is this iteration's data.

Both: 500 env steps per iteration, 10 minibatches of 512 × 10 reuse steps, the actor stepping on
the first reuse of each minibatch (10 actor and 100 critic steps per iteration), exact KL 0.1.

Runs go through the study runner (`benchmarks.runner`): Ray tasks on this machine's cores (or a
cluster, `--address`), one process and one torch thread per run, each in a temp folder of its own
(its TensorBoard/CSV scalars and checkpoint go with the folder); the summary (config and
per-iteration history) comes back through Ray and is kept, gzipped, in
`benchmarks/metaworld_stale/results/<preset>/` (tracked: the report is rebuilt from it), the log
tail in `runs/metaworld_stale/<preset>/` (ignored by git). Resumable: a run with a kept summary is
never rerun; a killed sweep continues with the runs that are missing. `--report-only` aggregates
what has finished (`benchmarks.metaworld_stale.aggregate`) into `docs/benchmarks/metaworld_stale.*`
(other presets: `metaworld_stale_<preset>.*`); the smoke preset keeps its results and page in its
work folder.

Run times, one run per core: an iteration (500 env steps, 100 optimizer steps) takes ~2 s on the
machine of `docs/benchmarks/torchrl_recipe_vs_reference.md` (one torch thread), and each greedy
evaluation of 5 episodes (with the run's other per-iteration work) ~6 s. A `small` run (300
iterations, 13 evaluations) thus takes ~12 min — the committed ones took a median 12.2 min, two at
a time on 2 cores — so the 48 runs ~5 h on 2 cores; a `paper` run (1000 iterations, 21 evaluations
of 10 episodes) ~40 min, its 560 runs (8 tasks × 10 seeds × 7 objective-regime pairs) ~360
CPU-hours, i.e. a cluster (`--address`):

```
python -m benchmarks.metaworld_stale.sweep --preset small                  # 48 runs, ~5 h on 2 cores
python -m benchmarks.metaworld_stale.sweep --preset paper --address auto   # 560 runs, ~360 CPU-hours
python -m benchmarks.metaworld_stale.sweep --preset small --report-only    # aggregate finished runs
python -m benchmarks.metaworld_stale.sweep --preset small_no_anchor --workers 1  # 12 runs, kl_coeff 0
```
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import runner
from benchmarks.metaworld_stale import aggregate

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS: dict[str, tuple[str, ...]] = {
    "gipo": ("--objective", "gipo", "--sigma", "1.0", "--sigma-neg-ratio", "1.0"),  # the paper's "GIPO (1.0, 1.0)"
    "gipo_neg0.5": ("--objective", "gipo", "--sigma", "1.0", "--sigma-neg-ratio", "0.5"),  # the script's default
    "ppo_clip": ("--objective", "ppo_clip", "--clip-epsilon", "0.2"),
    "sapo": ("--objective", "sapo"),
    "is": ("--objective", "is"),
}
"""The surrogates compared, as recipe flags."""

REGIMES: dict[str, tuple[str, ...]] = {"stale": ("--buffer-size", "20000"), "fresh": ("--buffer-size", "500")}


@dataclass(frozen=True)
class Block:
    """One rectangle of a preset: every task × variant of it in one regime."""

    regime: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Preset:
    blocks: tuple[Block, ...]
    seeds: tuple[int, ...]
    total_steps: int
    eval_every: int = 25  # iterations of 500 env steps
    eval_episodes: int = 5
    recipe_args: tuple[str, ...] = field(default=())  # extra recipe flags (the smoke preset's small sizes)
    task_choice: str = ""  # why these tasks, for the report
    against: str = ""  # a preset whose runs differ from these only in `recipe_args`: the report pairs them

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for b in self.blocks for t in b.tasks))

    def regimes(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per regime, the tasks and variants of all its blocks, merged in order."""
        merged: dict[str, tuple[dict, dict]] = {}
        for block in self.blocks:
            tasks, variants = merged.setdefault(block.regime, ({}, {}))
            tasks.update(dict.fromkeys(block.tasks))
            variants.update(dict.fromkeys(block.variants))
        return {regime: (tuple(tasks), tuple(variants)) for regime, (tasks, variants) in merged.items()}


# small: reach-v3 plus three tasks on which this protocol learns within 150k steps (see the report).
SMALL_TASKS = ("reach-v3", "handle-press-v3", "button-press-topdown-v3", "plate-slide-v3")
PAPER_TASKS = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3",
    "drawer-open-v3", "drawer-close-v3", "button-press-topdown-v3", "window-open-v3",
)  # fmt: skip

SMOKE_ARGS = (
    "--steps-per-iteration", "200", "--max-episode-steps", "50", "--minibatch", "64", "--minibatches", "2",
    "--reuse", "2", "--actor-every", "2", "--hidden", "64", "--warmup-iterations", "1",
)  # fmt: skip

PRESETS = {
    "smoke": Preset(
        (Block("stale", ("reach-v3",), ("gipo", "ppo_clip")), Block("fresh", ("reach-v3",), ("gipo",))),
        seeds=(0,),
        total_steps=600,
        eval_every=1,
        eval_episodes=1,
        recipe_args=SMOKE_ARGS,
    ),
    "small": Preset(
        (  # in priority order: the runs of a block finish (seed by seed) before the next block starts
            Block("stale", SMALL_TASKS, ("gipo", "ppo_clip")),
            Block("stale", SMALL_TASKS, ("sapo",)),
            Block("fresh", SMALL_TASKS[:2], ("gipo", "ppo_clip")),
        ),
        seeds=(0, 1, 2),
        total_steps=150_000,
        task_choice=(
            "reach-v3 is required; the other three are single-motion tasks without grasping (press a handle down, "
            "press a button from above, slide a plate into a goal), chosen so that 150k env steps, a third of the "
            "paper's budget, can show a success signal at all; button-press-topdown-v3 is also one of the paper's "
            "eight. Grasping tasks (pick-place-v3, push-v3) are left to the paper preset."
        ),
    ),
    # issue 24, run set 6: the stale regime without the anchor (`--kl-coeff 0`), both objectives; paired with
    # the `small` preset's anchored runs of the same tasks and seeds
    "small_no_anchor": Preset(
        (Block("stale", SMALL_TASKS[:2], ("gipo", "ppo_clip")),),
        seeds=(0, 1, 2),
        total_steps=150_000,
        recipe_args=("--kl-coeff", "0"),
        against="small",
    ),
    "paper": Preset(
        (
            Block("stale", PAPER_TASKS, ("gipo", "gipo_neg0.5", "ppo_clip", "sapo", "is")),
            Block("fresh", PAPER_TASKS, ("gipo", "ppo_clip")),
        ),
        seeds=tuple(range(10)),
        total_steps=500_000,
        eval_every=50,
        eval_episodes=10,
    ),
}


@dataclass(frozen=True)
class Run:
    regime: str
    task: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.regime}_{self.task}_{self.variant}_seed{self.seed}"

    def command(self, preset: Preset, workdir: Path) -> list[str]:
        return [
            sys.executable, "-m", "gipo_plugins.torchrl.recipe", "--task", self.task, "--seed", str(self.seed),
            *VARIANTS[self.variant], *REGIMES[self.regime], "--total-steps", str(preset.total_steps),
            "--eval-every", str(preset.eval_every), "--eval-episodes", str(preset.eval_episodes),
            "--logdir", str(workdir), "--run-name", self.name, "--no-progress", *preset.recipe_args,
        ]  # fmt: skip


def runs_of(preset: Preset) -> list[Run]:
    """Every run of the preset, block by block in the preset's priority order, seed-major within a block.

    A sweep cut short thus has the first blocks' comparisons (GIPO against PPO-clip, stale) on whole seeds.
    """
    return [
        Run(block.regime, task, variant, seed)
        for block in preset.blocks
        for seed in preset.seeds
        for task in block.tasks
        for variant in block.variants
    ]


def results_dir(preset_name: str) -> Path:
    return RESULTS / preset_name


def execute(context: runner.RunContext) -> dict:
    """One run of the recipe, in the worker's temp folder; returns the summary the recipe wrote there."""
    run = context.run
    context.call(run.command(context.preset, context.workdir), cwd=context.workdir)  # the installed package
    return json.loads((context.workdir / f"{run.name}.json").read_text())


def describe(summary: dict) -> str:
    return f"final greedy success {summary['final_eval_success']:.2f}"


def report(preset_name: str, preset: Preset, summaries: dict, pages=None):
    """The preset's page (`aggregate.write`), paired with its `against` preset's stored runs if it names one."""
    against = None
    if preset.against:
        against = (preset.against, runner.stored(runs_of(PRESETS[preset.against]), results_dir(preset.against)))
    return aggregate.write(preset_name, preset, summaries, pages, against=against)


STUDY = runner.Study(
    name="metaworld_stale.sweep",
    presets=PRESETS,
    runs=runs_of,
    run=execute,
    report=report,
    store=results_dir,
    workdir=lambda preset_name: ROOT / "runs" / "metaworld_stale" / preset_name,
    describe=describe,
    workers=2,
)


def sweep(preset_name: str, workdir: Path, workers: int, address: str | None, results: Path | None = None) -> list[Run]:
    """Run the missing runs of `preset_name` (results in `results`, default the preset's store); returns its runs."""
    results = results or runner.places(STUDY, preset_name).results
    runs = runs_of(PRESETS[preset_name])
    _, failed = runner.execute(STUDY, preset_name, runs, results, workdir, workers=workers, address=address)
    if failed:
        raise SystemExit(f"{len(failed)} runs failed (logs in {workdir}): {[run.name for run in failed]}")
    return runs


def main(argv: list[str] | None = None) -> None:
    p = runner.parser(STUDY, __doc__.split("\n\n")[0], default_preset="small")
    runner.main(STUDY, p.parse_args(argv))


if __name__ == "__main__":
    from benchmarks.metaworld_stale import sweep  # the importable module: Ray sends its functions by name

    sweep.main()
