"""RLlib: seconds per training iteration, GIPO / PPO, same config, same run.

Builds stock PPO and GIPO on the same Meta-World config (local sampling, no remote runners, so both
see the same machine), warms each up, then alternates single iterations and reports medians of the
whole iteration and of the learner update (``timers/learner_update_timer``). Written to
``docs/benchmarks/rllib_iteration_overhead.{csv,md}``.

    python benchmarks/rllib_iteration_overhead.py --iterations 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from report import write_report

from gipo_plugins.rllib import GIPOConfig, register_metaworld_envs


def configure(config, args):
    return (
        config.environment(f"metaworld/{args.task}", env_config={"max_episode_steps": 200, "seed": 0})
        .env_runners(num_env_runners=0)
        .training(train_batch_size_per_learner=args.train_batch, minibatch_size=args.minibatch, num_epochs=args.epochs)
        .debugging(seed=0)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--train-batch", type=int, default=2000)
    p.add_argument("--minibatch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    register_metaworld_envs([args.task])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    algos = {"PPO": configure(PPOConfig(), args).build_algo(), "GIPO": configure(GIPOConfig(), args).build_algo()}
    wall = {name: [] for name in algos}
    update = {name: [] for name in algos}
    for algo in algos.values():  # warm-up
        algo.train()
    for i in range(args.iterations):
        for name, algo in algos.items():
            start = time.perf_counter()
            result = algo.train()
            wall[name].append(time.perf_counter() - start)
            update[name].append(float(result["timers"]["learner_update_timer"]))
        print(f"iteration {i + 1}: " + "  ".join(f"{n} {wall[n][-1]:.2f}s" for n in algos), flush=True)
    for algo in algos.values():
        algo.stop()
    ray.shutdown()

    rows = [
        {
            "measure": measure,
            "ppo_s": statistics.median(values["PPO"]),
            "gipo_s": statistics.median(values["GIPO"]),
            "ratio": statistics.median(values["GIPO"]) / statistics.median(values["PPO"]),
        }
        for measure, values in (("iteration", wall), ("learner update", update))
    ]
    write_report(
        "rllib_iteration_overhead",
        "RLlib: GIPO vs PPO seconds per iteration",
        f"Made by `python benchmarks/rllib_iteration_overhead.py --iterations {args.iterations}`: Meta-World "
        f"{args.task}, train batch {args.train_batch}, minibatch {args.minibatch}, {args.epochs} epochs, local "
        f"sampling, 1 torch thread, ray {ray.__version__}. Medians of {args.iterations} alternating iterations "
        "after one warm-up each. Target: ratio ≤ 1.03.",
        rows,
        {"measure": "measure", "ppo_s": "PPO (s)", "gipo_s": "GIPO (s)", "ratio": "ratio GIPO / PPO"},
    )


if __name__ == "__main__":
    main()
