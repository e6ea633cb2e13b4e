"""Meta-World stale-data A/B on the reference protocol: GIPO vs PPO-clip vs SAPO (vs plain IS).

Every run is one process of the TorchRL recipe (`python -m gipo_plugins.torchrl.recipe`, the
protocol of the paper's public script on TorchRL components; see its docstring) with the same
env-step budget, seeds and settings; only the surrogate (and the regime) differ:

- **stale** — a FIFO replay of the last 20 000 transitions (data up to 40 iterations old), the
  behaviour log-probs and GAE advantages stored at collection and never recomputed;
- **fresh** — a replay of one iteration (500 transitions): every minibatch is this iteration's data.

Both: 500 env steps per iteration, 10 minibatches of 512 × 10 reuse steps, the actor stepping on
the first reuse of each minibatch (10 actor and 100 critic steps per iteration), exact KL 0.1.

Runs are spread over the cores (or a cluster, `--address`) with Ray tasks, one process and one
torch thread per run; logs, TensorBoard/CSV scalars and checkpoints go to the work folder
(`runs/metaworld_stale/<preset>`, ignored by git). Each finished run's summary (config and
per-iteration history) is also kept, gzipped, in `benchmarks/metaworld_stale/results/<preset>/`
(tracked: the report is rebuilt from it). Resumable: a run with a kept summary is never rerun; a
killed sweep continues with the runs that are missing. `--report-only` aggregates what has
finished (`benchmarks.metaworld_stale.aggregate`) into `docs/benchmarks/metaworld_stale.*`:

```
python -m benchmarks.metaworld_stale.sweep --preset small                  # 48 runs, hours on 2 cores
python -m benchmarks.metaworld_stale.sweep --preset paper --address auto   # 8 tasks x 10 seeds x 500k
python -m benchmarks.metaworld_stale.sweep --preset small --report-only    # aggregate finished runs
```
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray

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


def keep_finished(runs: list[Run], workdir: Path, results: Path) -> list[Run]:
    """Copy finished summaries from the work folder into `results` (gzipped); return the runs still missing."""
    results.mkdir(parents=True, exist_ok=True)
    missing = []
    for run in runs:
        kept, fresh = results / f"{run.name}.json.gz", workdir / f"{run.name}.json"
        if not kept.exists() and fresh.exists():
            kept.write_bytes(gzip.compress(fresh.read_bytes(), mtime=0))
        if not kept.exists():
            missing.append(run)
    return missing


def load_summary(results: Path, run: Run) -> dict:
    return json.loads(gzip.decompress((results / f"{run.name}.json.gz").read_bytes()))


@ray.remote(num_cpus=1)
def execute(command: list[str], log_path: str) -> tuple[int, float]:
    """Run one recipe process in the work folder (so it imports the installed package, whatever the caller's cwd)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    start = time.time()
    with open(log_path, "w") as log:
        run = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(log_path).parent)
    return run.returncode, time.time() - start


def sweep(preset_name: str, workdir: Path, workers: int, address: str | None, results: Path | None = None) -> list[Run]:
    """Launch the missing runs of `preset_name` and wait for them; returns the preset's runs."""
    preset = PRESETS[preset_name]
    results = results or results_dir(preset_name)
    workdir.mkdir(parents=True, exist_ok=True)
    runs = runs_of(preset)
    todo = keep_finished(runs, workdir, results)
    print(f"{preset_name}: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to go", flush=True)
    if not todo:
        return runs
    owns_ray = not ray.is_initialized()  # inside a program that already runs Ray, use its cluster
    if owns_ray:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    pending = {execute.remote(r.command(preset, workdir), str(workdir / f"{r.name}.log")): r for r in todo}
    failed, start = [], time.time()
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        run, (code, seconds) = pending.pop(ref), ray.get(ref)
        if code:
            failed.append(run.name)
        done = len(todo) - len(pending)
        eta = (time.time() - start) / done * len(pending)
        result = {} if code or keep_finished([run], workdir, results) else load_summary(results, run)
        score = f"final greedy success {result['final_eval_success']:.2f}" if result else "failed"
        print(f"[{done}/{len(todo)}] {run.name}: {score} ({seconds:.0f} s; ~{eta / 60:.0f} min left)", flush=True)
    if owns_ray:
        ray.shutdown()
    if failed:
        raise SystemExit(f"{len(failed)} runs failed (logs in {workdir}): {failed}")
    return runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", choices=list(PRESETS))
    p.add_argument("--workers", type=int, default=2, help="parallel runs on this machine (one core each)")
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. 'auto' (workdir must be shared)")
    p.add_argument("--workdir", type=Path, default=None, help="default: runs/metaworld_stale/<preset>")
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/metaworld_stale/results/<preset>")
    p.add_argument("--report-only", action="store_true", help="aggregate finished runs, launch nothing")
    p.add_argument("--no-report", action="store_true", help="run, but do not write docs/benchmarks")
    args = p.parse_args(argv)
    workdir = args.workdir or ROOT / "runs" / "metaworld_stale" / args.preset
    # smoke results stay in the (ignored) work folder: only real presets are tracked
    results = args.results or (workdir / "kept" if args.preset == "smoke" else results_dir(args.preset))
    if args.report_only:
        runs = runs_of(PRESETS[args.preset])
        keep_finished(runs, workdir, results)
    else:
        runs = sweep(args.preset, workdir, args.workers, args.address, results)
    if not args.no_report:
        from benchmarks.metaworld_stale.aggregate import write

        write(args.preset, PRESETS[args.preset], runs, results)


if __name__ == "__main__":
    main()
