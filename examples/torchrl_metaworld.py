"""Train GIPOLoss (or ClipPPOLoss's objective, ``--objective ppo_clip``) on a Meta-World task with TorchRL.

A stock TorchRL PPO loop — ``Collector``, GAE, a replay buffer, minibatch updates — with two
staleness knobs:

- ``--buffer-iterations K``: the FIFO replay buffer keeps the last K collected batches, each
  stored with the behaviour log-probs and the GAE advantages of its collection time (K = 1 is
  on-policy PPO; the reference stale setup keeps ~40);
- ``--updates-per-iteration U``: minibatch gradient steps per collected batch, sampled from the
  whole buffer (how often each sample is reused).

Logs through TorchRL's loggers (``--logger csv|tensorboard``) with a progress bar, evaluates the
final policy's success rate, and saves a checkpoint (policy, loss module and optimizer state).

    python examples/torchrl_metaworld.py --task reach-v3 --total-frames 200000
    python examples/torchrl_metaworld.py --objective ppo_clip --buffer-iterations 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ValueEstimators
from torchrl.record.loggers import get_logger
from tqdm import tqdm

from gipo_plugins.torchrl import GIPOLoss, make_metaworld_env


def make_actor_critic(obs_dim: int, act_dim: int, hidden: int = 256) -> tuple[ProbabilisticActor, ValueOperator]:
    policy_net = nn.Sequential(
        nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2 * act_dim),
        NormalParamExtractor(scale_mapping="biased_softplus_0.5"),
    )  # fmt: skip
    actor = ProbabilisticActor(
        TensorDictModule(policy_net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    value_net = nn.Sequential(
        nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
    )
    return actor, ValueOperator(value_net, in_keys=["observation"])


@torch.no_grad()
def evaluate(actor: ProbabilisticActor, task: str, seed: int, episodes: int, max_steps: int) -> float:
    """Success rate of the deterministic policy over ``episodes`` episodes (new goals each)."""
    env = make_metaworld_env(task, seed=seed, max_episode_steps=max_steps)
    successes = 0
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            rollout = env.rollout(max_steps, actor)
            successes += int(rollout["next", "success"].max() > 0)
    env.close()
    return successes / episodes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--objective", default="gipo", choices=["gipo", "ppo_clip", "sapo", "is"])
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--sigma-neg-ratio", type=float, default=1.0)
    p.add_argument("--kl-coeff", type=float, default=0.1, help="KL penalty to the behaviour policy (reference: 0.1)")
    p.add_argument("--total-frames", type=int, default=200_000)
    p.add_argument("--frames-per-batch", type=int, default=2000)
    p.add_argument("--max-episode-steps", type=int, default=200)
    p.add_argument("--buffer-iterations", type=int, default=1, help="batches the FIFO replay buffer keeps")
    p.add_argument("--updates-per-iteration", type=int, default=80, help="minibatch steps per collected batch")
    p.add_argument("--minibatch", type=int, default=250)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--lmbda", type=float, default=0.95)
    p.add_argument("--reward-scale", type=float, default=0.1)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N iterations (0: only at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logger", default="csv", choices=["csv", "tensorboard"])
    p.add_argument("--logdir", default="runs/torchrl_metaworld")
    p.add_argument("--run-name", default=None, help="default: <objective>_seed<seed>")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = make_metaworld_env(args.task, seed=args.seed, max_episode_steps=args.max_episode_steps)
    actor, critic = make_actor_critic(env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1])
    actor, critic = actor.to(device), critic.to(device)

    loss_module = GIPOLoss(
        actor,
        critic,
        objective=args.objective,
        sigma=args.sigma,
        sigma_neg_ratio=args.sigma_neg_ratio,
        kl_coeff=args.kl_coeff,
        entropy_bonus=False,
        normalize_advantage=True,
        critic_coeff=0.5,
    )
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=args.gamma, lmbda=args.lmbda)
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=args.lr)

    collector = Collector(
        env,
        actor,
        frames_per_batch=args.frames_per_batch,
        total_frames=args.total_frames,
        device=device,
        auto_register_policy_transforms=False,
    )
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(args.frames_per_batch * args.buffer_iterations, device=device),
        sampler=SamplerWithoutReplacement(),
        batch_size=args.minibatch,
    )
    frames, start, history = 0, time.time(), []
    logdir = Path(args.logdir)
    run_name = args.run_name or f"{args.objective}_seed{args.seed}"
    logger = get_logger(args.logger, logger_name=str(logdir), experiment_name=run_name)

    if args.eval_every:  # the untrained policy, for reference
        history.append(
            {
                "frames": 0,
                "eval_success_rate": evaluate(
                    actor, args.task, args.seed + 10_000, args.eval_episodes, args.max_episode_steps
                ),
            }
        )
    progress = tqdm(total=args.total_frames, disable=args.no_progress, desc=f"{args.objective} {args.task}")
    for iteration, data in enumerate(collector):
        frames += data.numel()
        data["next", "reward"] = data["next", "reward"] * args.reward_scale  # episode_reward stays unscaled
        with torch.no_grad():  # advantages fixed at collection time, as in the reference stale setup
            loss_module.value_estimator(data, params=loss_module.critic_network_params)
        buffer.extend(data.reshape(-1))
        for _ in range(args.updates_per_iteration):
            losses = loss_module(buffer.sample().to(device))
            loss = losses["loss_objective"] + losses["loss_critic"]
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
            optimizer.step()
        collector.update_policy_weights_()

        done = data["next", "done"].squeeze(-1)
        episodes_success = data["next", "success"].reshape(done.shape)
        row = {
            "frames": frames,
            "episode_success": float(episodes_success[done].mean()) if done.any() else float("nan"),
            "episode_reward": float(data["next", "episode_reward"][done].mean()) if done.any() else float("nan"),
            **{k: float(v.detach()) for k, v in losses.items() if v.ndim == 0},
        }
        if args.eval_every and (iteration + 1) % args.eval_every == 0:
            row["eval_success_rate"] = evaluate(
                actor, args.task, args.seed + 10_000, args.eval_episodes, args.max_episode_steps
            )
        history.append(row)
        for key, value in row.items():
            logger.log_scalar(key, value, step=frames)
        progress.update(data.numel())
        progress.set_postfix(train_success=f"{row['episode_success']:.2f}", dead=f"{row['dead_fraction']:.2f}")
    progress.close()
    collector.shutdown()

    success_rate = evaluate(actor, args.task, args.seed + 10_000, args.eval_episodes, args.max_episode_steps)
    logger.log_scalar("eval_success_rate", success_rate, step=frames)
    checkpoint = logdir / f"{run_name}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"loss_module": loss_module.state_dict(), "optimizer": optimizer.state_dict(), "args": vars(args)},
        checkpoint,
    )
    summary = {
        "task": args.task,
        "objective": args.objective,
        "frames": frames,
        "wall_seconds": round(time.time() - start, 1),
        "eval_success_rate": success_rate,
        "checkpoint": str(checkpoint),
        "history": history,
    }
    (logdir / f"{run_name}.json").write_text(json.dumps(summary, indent=1))
    print(f"final success rate {success_rate:.2f} over {args.eval_episodes} episodes; checkpoint {checkpoint}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
