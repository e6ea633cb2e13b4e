"""Meta-World stale-data A/B: GIPO vs PPO-clip vs SAPO (vs plain IS), fresh and stale, two adapters.

Every run is one of the adapters' own examples (``examples/torchrl_metaworld.py`` with TorchRL's
``GIPOLoss``, ``examples/rllib_metaworld.py`` with RLlib's ``GIPO`` algorithm) with the same
env-step budget, seeds and settings for every objective; only ``--objective`` differs. Runs are
spread over the cores (or a cluster, ``--address``) with Ray tasks, one process per run.

Regimes (same number of gradient steps per collected frame in both):

- **fresh** — on-policy PPO data flow: each batch is used for 10 epochs, then dropped.
- **stale** — TorchRL: a FIFO replay of the last 8 batches (data up to 8 iterations old) with the
  behaviour log-probs and advantages stored at collection, sampled 80 minibatches per iteration;
  RLlib: the env runners act with learner weights 4 iterations old (asynchronous-actor lag), so every
  batch is 4 policy versions stale when it is learned from.

Resumable: each finished run leaves ``<workdir>/<run>.json`` and is never rerun; a killed sweep
continues with the runs that are missing. After the runs, :mod:`report` aggregates (IQM and
stratified-bootstrap 95 % CIs over tasks × seeds) into ``docs/benchmarks/metaworld_stale.*``::

    python benchmarks/metaworld_stale/sweep.py --preset small        # 48 runs, ~80 min on 2 CPU cores
    python benchmarks/metaworld_stale/sweep.py --preset paper --address auto   # on a Ray cluster
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Preset:
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    total_frames: int
    objectives: tuple[str, ...] = ("gipo", "ppo_clip", "sapo")
    adapters: tuple[str, ...] = ("torchrl", "rllib")
    regimes: tuple[str, ...] = ("fresh", "stale")
    eval_every: int = 3  # iterations
    eval_episodes: int = 10


PRESETS = {
    "smoke": Preset(("reach-v3",), (0,), 2000, ("gipo", "ppo_clip"), ("torchrl",), eval_every=1, eval_episodes=2),
    "small": Preset(("reach-v3", "button-press-topdown-v3"), (0, 1), 24_000),
    "paper": Preset(
        (
            "reach-v3",
            "push-v3",
            "pick-place-v3",
            "door-open-v3",
            "drawer-open-v3",
            "drawer-close-v3",
            "button-press-topdown-v3",
            "window-open-v3",
        ),
        tuple(range(10)),
        500_000,
        ("gipo", "ppo_clip", "sapo", "is"),
        eval_every=10,
        eval_episodes=20,
    ),
}

# Per adapter and regime: the example's arguments. Batches of 2000 frames, 200-step episodes.
REGIME_ARGS = {
    ("torchrl", "fresh"): ["--frames-per-batch", "2000", "--buffer-iterations", "1", "--updates-per-iteration", "80"],
    ("torchrl", "stale"): ["--frames-per-batch", "2000", "--buffer-iterations", "8", "--updates-per-iteration", "80"],
    ("rllib", "fresh"): ["--train-batch", "2000", "--num-epochs", "10", "--policy-lag", "0"],
    ("rllib", "stale"): ["--train-batch", "2000", "--num-epochs", "10", "--policy-lag", "4"],
}


@dataclass(frozen=True)
class Run:
    adapter: str
    regime: str
    task: str
    objective: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.adapter}_{self.regime}_{self.task}_{self.objective}_seed{self.seed}"

    def command(self, preset: Preset, workdir: Path) -> list[str]:
        return [
            sys.executable, str(ROOT / f"examples/{self.adapter}_metaworld.py"), "--task", self.task,
            "--objective", self.objective, "--seed", str(self.seed), "--total-frames", str(preset.total_frames),
            "--eval-every", str(preset.eval_every), "--eval-episodes", str(preset.eval_episodes),
            "--logdir", str(workdir), "--run-name", self.name, "--no-progress",
            *REGIME_ARGS[(self.adapter, self.regime)],
        ]  # fmt: skip


def runs_of(preset: Preset) -> list[Run]:
    return [
        Run(adapter, regime, task, objective, seed)
        for seed in preset.seeds  # seed-major: a sweep cut short still has whole seeds
        for task in preset.tasks
        for adapter in preset.adapters
        for regime in preset.regimes
        for objective in preset.objectives
    ]


@ray.remote(num_cpus=1)
def execute(command: list[str], log_path: str) -> tuple[int, float]:
    """Run one example in its own process; the RLlib example starts its own local Ray instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_MODE": "disabled"}
    start = time.time()
    with open(log_path, "w") as log:
        code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return code, time.time() - start


def sweep(preset_name: str, workdir: Path, workers: int, address: str | None) -> list[Run]:
    """Launch the missing runs of ``preset_name`` and wait for them; returns the preset's runs."""
    preset = PRESETS[preset_name]
    workdir.mkdir(parents=True, exist_ok=True)
    runs = runs_of(preset)
    todo = [r for r in runs if not (workdir / f"{r.name}.json").exists()]
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
        result = {} if code else json.loads((workdir / f"{run.name}.json").read_text())
        score = f"final success {result['eval_success_rate']:.2f}" if result else "failed"
        print(f"[{done}/{len(todo)}] {run.name}: {score} ({seconds:.0f} s; ~{eta / 60:.0f} min left)", flush=True)
    if owns_ray:
        ray.shutdown()
    if failed:
        raise SystemExit(f"{len(failed)} runs failed (logs in {workdir}): {failed}")
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", choices=list(PRESETS))
    p.add_argument("--workers", type=int, default=2, help="parallel runs on this machine (one core each)")
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. 'auto' (workdir must be shared)")
    p.add_argument("--workdir", type=Path, default=None, help="default: runs/metaworld_stale/<preset>")
    p.add_argument("--report-only", action="store_true", help="aggregate finished runs, launch nothing")
    p.add_argument("--no-report", action="store_true", help="run, but do not write docs/benchmarks")
    args = p.parse_args()
    workdir = args.workdir or ROOT / "runs" / "metaworld_stale" / args.preset
    if args.report_only:
        runs = runs_of(PRESETS[args.preset])
    else:
        runs = sweep(args.preset, workdir, args.workers, args.address)
    if not args.no_report:
        sys.path.insert(0, str(Path(__file__).parent))
        from aggregate import write

        write(args.preset, PRESETS[args.preset], runs, workdir)


if __name__ == "__main__":
    main()
