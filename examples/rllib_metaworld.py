"""GIPO vs RLlib's own PPO / APPO on a Meta-World task, with staleness knobs.

The RLlib configs are stock ones, set up for Meta-World by the adapter's recipe
(`gipo_plugins.rllib.recipe.metaworld_config`, shared with the RLlib benchmarks); the GIPO versions
differ in the import and the config class (`PPOConfig` → `GIPOConfig`, `APPOConfig` → `AGIPOConfig`).
Staleness knobs:

- `--algo ppo`: `--num-epochs` / `--minibatch` (how often each sample of a batch is reused, mild
  lag) and `--policy-lag K` (env runners act with the learner's weights from K iterations ago, so the
  learner trains on behaviour log-probs of an older policy);
- `--algo appo`: asynchronous env runners (`--env-runners`) and APPO's circular buffer, which keeps
  `--buffer-batches` train batches and reuses each up to `--buffer-iterations` times — deep reuse
  of data from older weights (the policy lag is printed per iteration).

`--stock` runs RLlib's own algorithm instead; `--compare` runs the stock algorithm and then GIPO
(`--objective`) on the same seed and prints both final success rates. Prints one line per
iteration, evaluates the deterministic policy every `--eval-every` iterations and at the end, and
writes `<logdir>/<run name>.json`.

    python examples/rllib_metaworld.py --objective gipo --iterations 40
    python examples/rllib_metaworld.py --objective ppo_clip --policy-lag 4
    python examples/rllib_metaworld.py --algo appo --compare --env-runners 2 \\
        --buffer-batches 16 --buffer-iterations 20 --total-frames 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import deque
from pathlib import Path

import ray
from ray.rllib.algorithms.appo import APPO, APPOConfig
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import COMPONENT_RL_MODULE

from gipo_plugins import objective_names
from gipo_plugins.rllib import AGIPO, GIPO, AGIPOConfig, GIPOConfig
from gipo_plugins.rllib.recipe import metaworld_config

ALGORITHMS = {  # --algo: (stock config, stock algorithm), (GIPO config, GIPO algorithm)
    "ppo": ((PPOConfig, PPO), (GIPOConfig, GIPO)),
    "appo": ((APPOConfig, APPO), (AGIPOConfig, AGIPO)),
}


class PolicyLag:
    """Mixin: after each iteration, env runners get the learner weights from `policy_lag` iterations ago."""

    policy_lag = 0

    def training_step(self) -> None:
        super().training_step()  # trains, then syncs the current weights to the env runners
        if not self.policy_lag:
            return
        history = self.__dict__.setdefault("_weight_history", deque(maxlen=self.policy_lag + 1))
        history.append(self.learner_group.get_weights())
        stale = {COMPONENT_RL_MODULE: history[0]}
        self.env_runner_group.foreach_env_runner(lambda runner: runner.set_state(stale))


def configure(args: argparse.Namespace, stock: bool):
    """The run's config: the Meta-World recipe (`gipo_plugins.rllib.recipe`) on the stock or the GIPO config class."""
    config_cls = ALGORITHMS[args.algo][0 if stock else 1][0]
    kl_coeff = args.kl_coeff if args.kl_coeff is not None else (0.2 if args.algo == "ppo" else 0.0)
    common = {"lr": args.lr, "gamma": 0.99, "entropy_coeff": 0.0, "train_batch_size_per_learner": args.train_batch}
    common |= {"use_kl_loss": kl_coeff > 0, "kl_coeff": kl_coeff}
    if args.algo == "ppo":
        specific = {"minibatch_size": args.minibatch, "num_epochs": args.num_epochs, "lambda_": 0.95}
        specific["vf_clip_param"] = 1e4  # Meta-World returns are ~1000s: PPO's default 10 would freeze the critic
    else:
        specific = {
            "circular_buffer_num_batches": args.buffer_batches,
            "circular_buffer_iterations_per_batch": args.buffer_iterations,
            "target_network_update_freq": args.target_update_freq,
        }
    gipo = {} if stock else {"objective": args.objective, "sigma": args.sigma}
    return metaworld_config(
        config_cls(),
        args.task,
        seed=args.seed,
        max_episode_steps=args.max_episode_steps,
        reward_scale=args.reward_scale,
        env_runners=args.env_runners,
        rollout_fragment_length="auto" if args.algo == "ppo" else 50,
        eval_episodes=args.eval_episodes,
        min_iteration_s=args.min_iteration_s if args.algo == "appo" else None,
        **common,
        **specific,
        **gipo,
    )


def build(args: argparse.Namespace, stock: bool):
    algo_cls = ALGORITHMS[args.algo][0 if stock else 1][1]
    if args.algo == "ppo" and args.policy_lag:
        algo_cls = type(f"Lagged{algo_cls.__name__}", (PolicyLag, algo_cls), {"policy_lag": args.policy_lag})
    return algo_cls(config=configure(args, stock))


def eval_success(algo) -> float:
    return float(algo.evaluate()["env_runners"]["episode_success"])


LEARNER_KEYS = ("policy_loss", "vf_loss", "dead_fraction", "ess", "log_ratio_abs_mean", "log_ratio_abs_p95")
LAG_KEYS = ("diff_num_grad_updates_vs_sampler_policy", "policy_lag_p95", "policy_lag_max")


def run(args: argparse.Namespace, stock: bool) -> dict:
    """Train one algorithm; returns the run's summary (also written to `<logdir>/<name>.json`)."""
    name = f"stock_{args.algo}" if stock else (args.objective if args.algo == "ppo" else f"agipo_{args.objective}")
    run_name = f"{name}_seed{args.seed}" if not args.run_name else args.run_name + (f"_{name}" if args.compare else "")
    algo = build(args, stock)
    start, history, iteration, frames = time.time(), [], 0, 0
    if args.eval_every:
        history.append({"frames": 0, "eval_success_rate": eval_success(algo)})
    while (frames < args.total_frames) if args.total_frames else (iteration < args.iterations):
        iteration += 1
        result = algo.train()
        learner = result.get("learners", {}).get("default_policy", {})
        runners = result["env_runners"]
        frames = int(result.get("num_env_steps_sampled_lifetime", 0))
        row = {
            "frames": frames,
            "episode_return": float(runners.get("episode_return_mean", math.nan)),
            "episode_success": float(runners.get("episode_success", math.nan)),
            **{k: float(learner.get(k, math.nan)) for k in (*LEARNER_KEYS, *LAG_KEYS)},
        }
        if args.eval_every and iteration % args.eval_every == 0:
            row["eval_success_rate"] = eval_success(algo)
        history.append(row)
        if not args.no_progress:
            lag = f"lag {row[LAG_KEYS[0]]:4.1f}/{row['policy_lag_max']:3.0f}  " if args.algo == "appo" else ""
            print(
                f"[{name}] iter {iteration:>3}  frames {frames:>7}  return {row['episode_return']:8.1f}  "
                f"success {row['episode_success']:.2f}  dead {row['dead_fraction']:.2f}  "
                f"|log r| {row['log_ratio_abs_mean']:.2f}  {lag}{time.time() - start:6.0f}s",
                flush=True,
            )
    final = eval_success(algo)
    algo.stop()
    summary = {
        "task": args.task,
        "algo": args.algo,
        "objective": name,
        "policy_lag": args.policy_lag,
        "buffer": [args.buffer_batches, args.buffer_iterations] if args.algo == "appo" else None,
        "frames": frames,
        "wall_seconds": round(time.time() - start, 1),
        "eval_success_rate": final,
        "history": history,
    }
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / f"{run_name}.json").write_text(json.dumps(summary, indent=1))
    print(f"[{name}] final success rate {final:.2f} over {args.eval_episodes} episodes ({frames} frames)", flush=True)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="ppo", choices=list(ALGORITHMS), help="PPO-based GIPO or APPO-based AGIPO")
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--objective", default="gipo", choices=objective_names(), help="a registered objective")
    p.add_argument("--stock", action="store_true", help="RLlib's own PPOConfig/APPOConfig instead")
    p.add_argument("--compare", action="store_true", help="run the stock algorithm, then GIPO, on the same seed")
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--total-frames", type=int, default=None, help="train until this many env steps (overrides)")
    p.add_argument("--train-batch", type=int, default=None, help="default: 4000 (ppo), 500 (appo)")
    p.add_argument("--minibatch", type=int, default=256, help="ppo")
    p.add_argument("--num-epochs", type=int, default=10, help="ppo")
    p.add_argument("--policy-lag", type=int, default=0, help="ppo: runners act with weights this many iterations old")
    p.add_argument("--buffer-batches", type=int, default=16, help="appo: circular_buffer_num_batches")
    p.add_argument("--buffer-iterations", type=int, default=20, help="appo: circular_buffer_iterations_per_batch")
    p.add_argument("--target-update-freq", type=float, default=0.125, help="appo: target_network_update_freq")
    p.add_argument("--min-iteration-s", type=float, default=10.0, help="appo: seconds per reported iteration")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--kl-coeff", type=float, default=None, help="KL penalty; default: ppo 0.2 (adaptive), appo off")
    p.add_argument("--max-episode-steps", type=int, default=200)
    p.add_argument("--reward-scale", type=float, default=None, help="default: 1 (ppo), 0.001 (appo, as the sweep)")
    p.add_argument("--env-runners", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default="runs/rllib_metaworld")
    p.add_argument("--run-name", default=None, help="default: <objective>_seed<seed>")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.reward_scale is None:
        args.reward_scale = 1.0 if args.algo == "ppo" else 0.001
    if args.train_batch is None:
        args.train_batch = 4000 if args.algo == "ppo" else 500
    if args.algo == "ppo" and args.total_frames:
        args.iterations = -(-args.total_frames // args.train_batch)
        args.total_frames = None  # ppo: whole iterations of train_batch env steps
    return args


def main(argv: list[str] | None = None) -> dict | list[dict]:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():  # runners + evaluation runner + (APPO) remote learner + driver
        ray.init(num_cpus=args.env_runners + 3, include_dashboard=False, log_to_driver=False)
    if not args.compare:
        return run(args, args.stock)
    summaries = [run(args, stock=True), run(args, stock=False)]
    for summary in summaries:
        print(f"{summary['objective']:>14}: final success {summary['eval_success_rate']:.2f}, "
              f"{summary['frames']} frames, {summary['wall_seconds']:.0f} s")  # fmt: skip
    return summaries


if __name__ == "__main__":
    main()
