"""RLlib: seconds per training iteration, GIPO / PPO and AGIPO / APPO, same config, same run.

Builds stock PPO and GIPO (and stock APPO and AGIPO) on the same Meta-World config, with local
sampling and a local learner (no remote actors: every iteration's work runs in this process, so each
pair sees the same machine), warms each up, then alternates single iterations. Measured per
iteration, as CPU time (robust on a shared machine: time the process is descheduled does not count)
and as wall clock: the whole `train()` call (process CPU time: sampling, learner, APPO's learner
thread) and, for PPO, the learner update (thread CPU time summed over the learner's minibatch
updates, `Learner._update`: forward, loss, backward, optimizer step; wall: RLlib's
`learner_update_timer`). APPO's reporting period is set to 0 (one training step per iteration,
instead of 10 s); its learner thread updates asynchronously, so only whole iterations are compared.
Sampling makes iterations differ; so the PPO learner is also timed on identical work: `--repeats`
updates per round on copies of one sampled batch (10 epochs of minibatches, no shuffling).

The measurement is repeated in `--rounds` rounds; each round's ratio is the ratio of its medians, and
the report gives the median ratio over rounds with its spread (min–max); a median that misses its
target while the spread's low end meets it is "within noise" (`benchmarks.report.verdict`).
`--pause-sweep PATTERN` stops the processes matching `PATTERN` (`pgrep -f`) and their descendants
during each round and always continues them afterwards (only the ones it stopped;
`benchmarks.machine.paused`); rounds are kept under 5 minutes.
Written to `docs/benchmarks/rllib_iteration_overhead.{csv,md}`.

    python -m benchmarks.rllib_iteration_overhead --rounds 5 --pause-sweep gipo_plugins.torchrl.recipe
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import tempfile
import time

import ray
import torch
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.ppo import PPOConfig

from benchmarks.machine import paused
from benchmarks.report import verdict, write_report
from gipo_plugins.rllib import AGIPOConfig, GIPOConfig
from gipo_plugins.rllib.recipe import metaworld_config

TARGETS = {("PPO", "learner update, same batch"): 1.05, ("PPO", "iteration"): 1.02, ("APPO", "iteration"): 1.03}
"""Targets on the CPU-time ratios."""


def configure(config, args, appo: bool):
    """The Meta-World recipe (`gipo_plugins.rllib.recipe`) with local sampling and no evaluation or success metric."""
    config = metaworld_config(config, args.task, seed=0, max_episode_steps=200, env_runners=0,
                              rollout_fragment_length=50 if appo else "auto", track_success=False)  # fmt: skip
    if appo:
        return (
            config.learners(num_learners=0)
            .training(train_batch_size_per_learner=args.appo_batch, circular_buffer_num_batches=4,
                      circular_buffer_iterations_per_batch=2)
            .reporting(min_time_s_per_iteration=0)
        )  # fmt: skip
    return config.training(train_batch_size_per_learner=args.train_batch, minibatch_size=args.minibatch,
                           num_epochs=args.epochs)  # fmt: skip


class UpdateClock:
    """Thread CPU seconds spent in a learner's minibatch updates (`_update`), in whichever thread runs them."""

    def __init__(self, learner) -> None:
        self.seconds = 0.0
        inner = learner._update

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - start

        learner._update = timed


MEASURES = ("iteration", "iteration (wall)", "learner update", "learner update (wall)")
"""Per training iteration; PPO also gets "learner update, same batch" (see `measure_same_batch`)."""


def measure(algos: dict, clocks: dict, iterations: int) -> dict[str, dict[str, list[float]]]:
    """Alternate single iterations; CPU and wall seconds of the iteration and of the learner update."""
    out = {name: {m: [] for m in MEASURES} for name in algos}
    for _ in range(iterations):
        for name, algo in algos.items():
            clocks[name].seconds = 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            result = algo.train()
            out[name]["iteration"].append(time.process_time() - cpu)
            out[name]["iteration (wall)"].append(time.perf_counter() - wall)
            out[name]["learner update"].append(clocks[name].seconds)
            out[name]["learner update (wall)"].append(result["timers"].get("learner_update_timer", float("nan")))
    return out


def measure_same_batch(algos: dict, episodes: list, args, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Alternate learner updates on copies of the same episodes (no shuffling): identical work, thread CPU time."""
    out = {name: {"learner update, same batch": []} for name in algos}
    for _ in range(repeats):
        for name, algo in algos.items():
            batch = copy.deepcopy(episodes)
            start = time.thread_time()
            algo.learner_group.update(episodes=batch, timesteps={}, num_epochs=args.epochs,
                                      minibatch_size=args.minibatch, shuffle_batch_per_epoch=False)  # fmt: skip
            out[name]["learner update, same batch"].append(time.thread_time() - start)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=6, help="per algorithm and round")
    p.add_argument("--train-batch", type=int, default=2000)
    p.add_argument("--minibatch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--appo-batch", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="same-batch learner updates per algorithm and round")
    p.add_argument("--pause-sweep", default=None, help="pgrep -f pattern of processes to stop while timing")
    p.add_argument("--rest-s", type=float, default=30.0, help="pause between rounds (the sweep runs)")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="rbench")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    pairs = {
        "PPO": {"stock": configure(PPOConfig(), args, False), "gipo": configure(GIPOConfig(), args, False)},
        "APPO": {"stock": configure(APPOConfig(), args, True), "gipo": configure(AGIPOConfig(), args, True)},
    }
    algos = {family: {name: config.build_algo() for name, config in configs.items()}
             for family, configs in pairs.items()}  # fmt: skip
    clocks = {family: {name: UpdateClock(algo.learner_group._learner) for name, algo in built.items()}
              for family, built in algos.items()}  # fmt: skip
    for family, built in algos.items():  # warm-up (APPO: until the learner reports)
        for algo in built.values():
            for _ in range(3 if family == "APPO" else 1):
                algo.train()
    episodes = algos["PPO"]["stock"].env_runner.sample(num_timesteps=args.train_batch)
    per_round: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.rounds):
        with paused(args.pause_sweep):
            for family in pairs:
                times = measure(algos[family], clocks[family], args.iterations)
                if family == "PPO":
                    same = measure_same_batch(algos[family], episodes, args, args.repeats)
                    times = {name: same[name] | times[name] for name in times}
                for measure_name in (("learner update, same batch",) if family == "PPO" else ()) + MEASURES:
                    if family == "APPO" and measure_name.startswith("learner update"):
                        continue  # APPO's learner thread updates asynchronously: not attributable to an iteration
                    stock = statistics.median(times["stock"][measure_name])
                    gipo = statistics.median(times["gipo"][measure_name])
                    per_round.setdefault((family, measure_name), []).append(
                        {"stock": stock, "gipo": gipo, "ratio": gipo / stock}
                    )
        summary = "  ".join(f"{f} {m}: {v[-1]['ratio']:.3f}" for (f, m), v in per_round.items() if "wall" not in m)
        print(f"round {round_ + 1}/{args.rounds} ({time.strftime('%H:%M:%S')}): {summary}", flush=True)
        if round_ + 1 < args.rounds:
            time.sleep(args.rest_s)
    for built in algos.values():
        for algo in built.values():
            algo.stop()
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)

    rows = []
    for (family, measure_name), values in per_round.items():
        ratios = [v["ratio"] for v in values]
        low, high, ratio = min(ratios), max(ratios), statistics.median(ratios)
        target = TARGETS.get((family, measure_name))
        rows.append(
            {
                "algorithm": f"{'AGIPO / APPO' if family == 'APPO' else 'GIPO / PPO'}",
                "measure": measure_name,
                "stock_s": statistics.median(v["stock"] for v in values),
                "gipo_s": statistics.median(v["gipo"] for v in values),
                "ratio": ratio,
                "spread": f"{low:.3f}–{high:.3f}",
                "target": f"≤ {target:.2f}" if target else "",
                "verdict": verdict(ratio, low, target),
            }
        )  # fmt: skip
    write_report(
        "rllib_iteration_overhead",
        "RLlib: GIPO vs PPO and AGIPO vs APPO, seconds per iteration",
        f"Made by `python -m benchmarks.rllib_iteration_overhead --rounds {args.rounds} --iterations "
        f"{args.iterations} --repeats {args.repeats}"
        f"{' --pause-sweep ' + args.pause_sweep if args.pause_sweep else ''}`: Meta-World "
        f"{args.task}, 200-step episodes, local sampling and learner, 1 torch thread, ray {ray.__version__}, "
        f"{os.cpu_count()} CPU cores. PPO: train batch {args.train_batch}, minibatch {args.minibatch}, "
        f"{args.epochs} epochs. APPO: train batch {args.appo_batch} of 50-step fragments, circular buffer 4 × 2, "
        f"one training step per iteration. {args.rounds} rounds of {args.iterations} alternating iterations per "
        f"algorithm after a warm-up, plus {args.repeats} PPO learner updates on the same batch; per round the "
        "ratio of medians; the table gives the median over rounds and the rounds' spread (min–max). Times without "
        "'(wall)' are CPU seconds (process, or the learner's thread), which time spent descheduled by other "
        "processes does not inflate; the targets apply to them. 'within noise': the median misses the target but the "
        "low end of the spread meets it.",
        rows,
        {"algorithm": "pair", "measure": "measure", "stock_s": "stock (s)", "gipo_s": "GIPO (s)",
         "ratio": "ratio (median)", "spread": "spread over rounds", "target": "target", "verdict": "verdict"},
    )  # fmt: skip


if __name__ == "__main__":
    main()
