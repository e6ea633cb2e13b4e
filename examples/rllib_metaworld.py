"""PPO vs GIPO with Ray RLlib on a Meta-World task, with staleness knobs.

The RLlib config is a stock PPO config; the GIPO version differs in the import and the config
class (``PPOConfig`` → ``GIPOConfig``). Staleness knobs:

- ``--num-epochs`` / ``--minibatch``: how often each sample of a batch is reused (mild lag);
- ``--policy-lag K``: a real stale-data mode — the env runners act with the learner's weights from
  K iterations ago (a fixed policy lag, as asynchronous actors have), so the learner trains on
  behaviour log-probs of an older policy. Applied identically to every objective.

Prints one line per iteration, evaluates the deterministic policy's success rate every
``--eval-every`` iterations and at the end, and writes ``<logdir>/<objective>_seed<seed>.json``.

    python examples/rllib_metaworld.py --objective gipo --iterations 40
    python examples/rllib_metaworld.py --objective ppo_clip --policy-lag 4
    python examples/rllib_metaworld.py --stock-ppo          # ray.rllib's own PPO, for reference
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import deque
from pathlib import Path

import ray
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import COMPONENT_RL_MODULE

from gipo_plugins.rllib import GIPO, GIPOConfig, MetaWorldSuccess, register_metaworld_envs


class PolicyLag:
    """Mixin: after each iteration, env runners get the learner weights from ``policy_lag`` iterations ago."""

    policy_lag = 0

    def training_step(self) -> None:
        super().training_step()  # trains, then syncs the current weights to the env runners
        if not self.policy_lag:
            return
        history = self.__dict__.setdefault("_weight_history", deque(maxlen=self.policy_lag + 1))
        history.append(self.learner_group.get_weights())
        stale = {COMPONENT_RL_MODULE: history[0]}
        self.env_runner_group.foreach_env_runner(lambda runner: runner.set_state(stale))


def build(args: argparse.Namespace):
    config_cls, algo_cls = (PPOConfig, PPO) if args.stock_ppo else (GIPOConfig, GIPO)
    config = (
        config_cls()
        .environment(
            f"metaworld/{args.task}", env_config={"max_episode_steps": args.max_episode_steps, "seed": args.seed}
        )
        .env_runners(num_env_runners=args.env_runners, rollout_fragment_length="auto")
        .training(
            train_batch_size_per_learner=args.train_batch,
            minibatch_size=args.minibatch,
            num_epochs=args.num_epochs,
            lr=args.lr,
            gamma=0.99,
            lambda_=0.95,
            vf_clip_param=1e4,
            use_kl_loss=args.kl_coeff > 0,
            kl_coeff=args.kl_coeff,
            entropy_coeff=0.0,
            **({} if args.stock_ppo else {"objective": args.objective, "gipo_sigma": args.sigma}),
        )
        .callbacks(MetaWorldSuccess)
        .evaluation(
            evaluation_interval=None,
            evaluation_num_env_runners=1,
            evaluation_duration=args.eval_episodes,
            evaluation_duration_unit="episodes",
            evaluation_config=config_cls.overrides(explore=False, env_config={"seed": args.seed + 10_000}),
        )
        .debugging(seed=args.seed)
    )
    lagged = type(f"Lagged{algo_cls.__name__}", (PolicyLag, algo_cls), {"policy_lag": args.policy_lag})
    return lagged(config=config)


def eval_success(algo) -> float:
    return float(algo.evaluate()["env_runners"]["episode_success"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--objective", default="gipo", choices=["gipo", "ppo_clip", "sapo", "is"])
    p.add_argument("--stock-ppo", action="store_true", help="use ray.rllib's PPOConfig/PPO instead")
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--train-batch", type=int, default=4000)
    p.add_argument("--minibatch", type=int, default=256)
    p.add_argument("--num-epochs", type=int, default=10)
    p.add_argument("--policy-lag", type=int, default=0, help="env runners act with weights this many iterations old")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--kl-coeff", type=float, default=0.2, help="initial adaptive KL coefficient (RLlib's default)")
    p.add_argument("--max-episode-steps", type=int, default=200)
    p.add_argument("--env-runners", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default="runs/rllib_metaworld")
    p.add_argument("--run-name", default=None, help="default: <objective>_seed<seed>")
    p.add_argument("--total-frames", type=int, default=None, help="overrides --iterations (frames / train batch)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    name = "stock_ppo" if args.stock_ppo else args.objective
    if args.total_frames:
        args.iterations = -(-args.total_frames // args.train_batch)
    register_metaworld_envs([args.task])
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=args.env_runners + 2, include_dashboard=False, log_to_driver=False)
    algo = build(args)
    start, history = time.time(), []
    if args.eval_every:
        history.append({"frames": 0, "eval_success_rate": eval_success(algo)})
    for iteration in range(1, args.iterations + 1):
        result = algo.train()
        learner, runners = result["learners"]["default_policy"], result["env_runners"]
        row = {
            "frames": int(result["num_env_steps_sampled_lifetime"]),
            "episode_return": float(runners.get("episode_return_mean", float("nan"))),
            "episode_success": float(runners.get("episode_success", float("nan"))),
            **{k: float(learner[k]) for k in ("policy_loss", "vf_loss", "dead_fraction", "ess", "log_ratio_abs_mean")},
        }
        if args.eval_every and iteration % args.eval_every == 0:
            row["eval_success_rate"] = eval_success(algo)
        history.append(row)
        if not args.no_progress:
            print(
                f"[{name}] iter {iteration:>3}/{args.iterations}  frames {row['frames']:>7}  "
                f"return {row['episode_return']:8.1f}  success {row['episode_success']:.2f}  "
                f"dead {row['dead_fraction']:.2f}  |log r| {row['log_ratio_abs_mean']:.2f}  "
                f"{time.time() - start:6.0f}s",
                flush=True,
            )
    final = eval_success(algo)
    algo.stop()
    summary = {
        "task": args.task,
        "objective": name,
        "policy_lag": args.policy_lag,
        "frames": history[-1]["frames"],
        "wall_seconds": round(time.time() - start, 1),
        "eval_success_rate": final,
        "history": history,
    }
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / f"{args.run_name or f'{name}_seed{args.seed}'}.json").write_text(json.dumps(summary, indent=1))
    print(f"[{name}] final success rate {final:.2f} over {args.eval_episodes} episodes")
    return summary


if __name__ == "__main__":
    main()
