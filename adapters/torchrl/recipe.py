r"""The GIPO reference Meta-World protocol on TorchRL components, stale or fresh.

The protocol of the paper's public training script (see `docs/benchmarks/metaworld_stale.md`),
built from TorchRL's own pieces — `Collector`, GAE, a FIFO `ReplayBuffer`, [`GIPOLoss`][],
TorchRL loggers — so that only the surrogate differs between objectives:

- **Policy**: a shared encoder (Linear 39→512, ReLU, LayerNorm), a policy head to 4 × 256 logits (a
  categorical per action dimension; env action $-1 + 2b/255$, `ActionBins`) and a value
  head on the *detached* encoder features. Importance ratios and trust weights are per dimension.
- **Data**: one env, `steps_per_iteration` (500) env steps per iteration, 500-step episodes,
  rewards scaled by 0.001. GAE (γ 0.99, λ 0.95) and the behaviour log-probs and logits are fixed
  at collection time and never recomputed. A FIFO replay keeps the last `buffer_size`
  transitions: 20 000 (data up to 40 iterations old) is the *stale* regime, 500 (one iteration)
  the *fresh* one.
- **Updates** per iteration: `minibatches` (R) minibatches of 512 distinct transitions drawn
  from the whole buffer, each reused `reuse` (K) times; the actor steps only on every
  `actor_every`-th (N) reuse, the other reuse steps train the value head alone (published: R = K
  = N = 10, i.e. 10 actor and 100 critic steps). Advantages are normalised per minibatch; actor
  steps minimise `loss_objective` (the surrogate plus an exact
  $0.1\,\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ per dimension) + `loss_critic` (0.5 MSE);
  gradient-norm clip 1.0; AdamW with policy lr 3e-4 and value lr 3e-3, 10 warm-up iterations and
  cosine decay over the run.

Critic-only reuse steps call `GIPOLoss.loss_critic`, which runs the encoder and the value head
only: no policy-head forward or backward, and the policy parameters stay bit-identical.
`full_loss_every_step=True` is the straightforward variant (the full loss forward on every reuse
step, the policy term used only on actor steps); it trains identically and exists to measure the
saving (`benchmarks/torchrl_recipe_cost.py`).

Run it from Python (`train(RecipeConfig(...))`) or as `python examples/torchrl_metaworld.py`
(every field of [`RecipeConfig`][] is a flag). Needs the `[torchrl]` and `[metaworld]` extras.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential, set_skip_existing
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ValueEstimators
from torchrl.record.loggers import get_logger
from tqdm import tqdm

from gipo_plugins import check_choice, objective_names
from gipo_plugins.metaworld import ACTION_DIM, OBSERVATION_DIM
from gipo_plugins.torchrl.envs import make_metaworld_env
from gipo_plugins.torchrl.loss import GIPOLoss

STORED_KEYS = ("observation", "action", "action_log_prob", "logits", "advantage", "value_target", "collected_at")
"""What a transition keeps in the replay: behaviour log-probs and logits, GAE and its age."""
OLD_AFTER = 10
"""Samples at least this many iterations old count as "old" in the age-split diagnostics."""


def _arg(default, help: str, **kwargs):
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class RecipeConfig:
    """Every knob of the recipe (defaults: the published stale protocol, GIPO σ = 1)."""

    task: str = _arg("reach-v3", "Meta-World v3 task")
    objective: str = _arg("gipo", "surrogate: a registered objective (gipo, ppo_clip, sapo, is, or one you register)",
                          choices=objective_names)  # fmt: skip
    sigma: float = _arg(1.0, "GIPO's kernel scale σ")
    sigma_neg_ratio: float = _arg(1.0, "GIPO's σ₋/σ₊ for non-positive advantages")
    kernel: str = _arg("gaussian", "GIPO's kernel: gaussian | laplacian | cauchy")
    clip_epsilon: float = _arg(0.2, "PPO-clip's ε")
    sapo_tau_pos: float = _arg(1.0, "SAPO's τ for positive advantages")
    sapo_tau_neg: float = _arg(1.05, "SAPO's τ for non-positive advantages")
    kl_coeff: float = _arg(0.1, "exact KL(π_old ‖ π_θ) penalty on actor steps")
    total_steps: int = _arg(150_000, "env steps in the run")
    steps_per_iteration: int = _arg(500, "env steps collected per iteration")
    max_episode_steps: int = _arg(500, "episode horizon")
    reward_scale: float = _arg(0.001, "reward multiplier for learning (returns are logged unscaled)")
    buffer_size: int = _arg(20_000, "FIFO replay size in transitions (20000: stale; = steps_per_iteration: fresh)")
    minibatch: int = _arg(512, "transitions per minibatch (at most the buffer's content)")
    minibatches: int = _arg(10, "R: minibatches drawn per iteration")
    reuse: int = _arg(10, "K: optimizer steps per minibatch")
    actor_every: int = _arg(10, "N: the actor steps on reuse steps 0, N, 2N, ... (the others train the critic only)")
    gamma: float = _arg(0.99, "discount")
    lmbda: float = _arg(0.95, "GAE λ")
    policy_lr: float = _arg(3e-4, "AdamW lr of the encoder and policy head")
    value_lr: float = _arg(3e-3, "AdamW lr of the value head")
    warmup_iterations: int = _arg(10, "linear lr warm-up, then cosine decay to 0 at the last iteration")
    weight_decay: float = _arg(0.0, "AdamW weight decay")
    critic_coeff: float = _arg(0.5, "value-loss coefficient")
    max_grad_norm: float = _arg(1.0, "gradient-norm clip")
    hidden: int = _arg(512, "encoder width")
    action_bins: int = _arg(256, "bins per action dimension")
    full_loss_every_step: bool = _arg(False, "run the full loss on every reuse step (the costlier equivalent)")
    success_window: int = _arg(20, "training success and return: mean over the last N finished episodes")
    eval_every: int = _arg(25, "evaluate the greedy policy every N iterations (0: only at the end)")
    eval_episodes: int = _arg(5, "episodes per evaluation (goals seeded seed+10000, the same each time)")
    seed: int = _arg(0, "seed of torch and of the task's goal sequence")
    device: str = _arg("cpu", "torch device")
    threads: int = _arg(1, "torch threads")
    logger: str = _arg("csv", "TorchRL logger: csv | tensorboard", choices=("csv", "tensorboard"))
    logdir: str = _arg("runs/torchrl_metaworld", "where logs, the summary JSON and the checkpoint go")
    run_name: str | None = _arg(None, "default: <task>_<objective>_seed<seed>")
    progress: bool = _arg(True, "show a progress bar")

    def __post_init__(self) -> None:
        for name in ("total_steps", "steps_per_iteration", "max_episode_steps", "buffer_size", "minibatch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("minibatches", "reuse", "actor_every", "action_bins", "eval_episodes", "success_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.buffer_size < self.steps_per_iteration:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold one iteration ({self.steps_per_iteration})")
        check_choice("objective", self.objective, objective_names())

    @property
    def iterations(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_iteration)

    @property
    def name(self) -> str:
        return self.run_name or f"{self.task}_{self.objective}_seed{self.seed}"


class _Detach(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


def make_actor_critic(
    obs_dim: int = OBSERVATION_DIM,
    action_dim: int = ACTION_DIM,
    bins: int = 256,
    hidden: int = 512,
    validate_args: bool = False,
) -> tuple[ProbabilisticActor, TensorDictSequential]:
    """The reference MLP: shared encoder, per-dimension categorical policy head, value head on detached features.

    The actor reads `observation` and writes `logits` (`[*B, action_dim, bins]`), `action`
    (bin indices, `[*B, action_dim]`) and `action_log_prob` (`[*B, action_dim]`): one ratio per
    action dimension. The critic writes `hidden` (the encoder's features) and `state_value`. Both
    hold the same encoder module; the value head sees its output detached, so critic updates never
    move the encoder (and critic-only steps can reuse `hidden`, see `reuse_step`).

    The categoricals skip `torch.distributions`' argument checks (`validate_args=False`): the logits
    come from the network and the actions from the distribution itself, so the checks only cost
    time (a third of a batch-1 sample + log-prob, 500 times per iteration); they change no number.
    """
    encoder = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.LayerNorm(hidden))
    policy_head = nn.Sequential(
        nn.Linear(hidden, hidden), nn.ReLU(), nn.LayerNorm(hidden), nn.Linear(hidden, action_dim * bins),
        nn.Unflatten(-1, (action_dim, bins)),
    )  # fmt: skip
    value_head = nn.Sequential(_Detach(), nn.Linear(hidden, 256), nn.ReLU(), nn.LayerNorm(256), nn.Linear(256, 1))
    actor = ProbabilisticActor(
        TensorDictModule(nn.Sequential(encoder, policy_head), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        distribution_kwargs={"validate_args": validate_args},
        return_log_prob=True,
    )
    critic = TensorDictSequential(
        TensorDictModule(encoder, ["observation"], ["hidden"]),
        TensorDictModule(value_head, ["hidden"], ["state_value"]),
    )
    return actor, critic


class DistinctRandomSampler(RandomSampler):
    """Each draw: `min(batch_size, len(storage))` distinct transitions, uniformly, independent across draws."""

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        return torch.randperm(len(storage))[:batch_size], {}


def make_replay(config: RecipeConfig) -> ReplayBuffer:
    """The FIFO replay: the oldest transitions are overwritten first; nothing in it is ever recomputed."""
    return ReplayBuffer(
        storage=LazyTensorStorage(config.buffer_size, device=config.device),
        sampler=DistinctRandomSampler(),
        batch_size=config.minibatch,
    )


def actor_steps(config: RecipeConfig) -> list[bool]:
    """For each reuse step of a minibatch, whether the actor steps on it (`k % actor_every == 0`)."""
    return [k % config.actor_every == 0 for k in range(config.reuse)]


def make_loss(config: RecipeConfig, actor: ProbabilisticActor, critic: TensorDictSequential) -> GIPOLoss:
    loss = GIPOLoss(
        actor,
        critic,
        objective=config.objective,
        sigma=config.sigma,
        sigma_neg_ratio=config.sigma_neg_ratio,
        kernel=config.kernel,
        clip_epsilon=config.clip_epsilon,
        sapo_tau_pos=config.sapo_tau_pos,
        sapo_tau_neg=config.sapo_tau_neg,
        kl_coeff=config.kl_coeff,
        kl_estimator="exact",
        entropy_bonus=False,
        normalize_advantage=False,  # the recipe normalises per minibatch itself (see normalise_advantage)
        critic_coeff=config.critic_coeff,
        loss_critic_type="l2",
        log_explained_variance=False,
    )
    loss.make_value_estimator(ValueEstimators.GAE, gamma=config.gamma, lmbda=config.lmbda)
    return loss


def make_optimizer(
    config: RecipeConfig, loss: GIPOLoss, fused: bool = True
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with two groups (policy: encoder + policy head; value: value head) and warm-up + cosine decay.

    `fused=True` runs PyTorch's fused AdamW kernel (one call per step instead of a Python loop over
    the parameters on the CPU): the same update up to float rounding.
    """
    policy = list(loss.actor_network_params.values(True, True))
    shared = {id(p) for p in policy}  # the encoder: the critic holds it too, detached
    value = [p for p in loss.critic_network_params.values(True, True) if id(p) not in shared]
    optimizer = torch.optim.AdamW(
        [{"params": policy, "lr": config.policy_lr}, {"params": value, "lr": config.value_lr}],
        weight_decay=config.weight_decay,
        fused=fused,
    )
    warmup, total = config.warmup_iterations, config.iterations

    def factor(iteration: int) -> float:
        if iteration < warmup:
            return iteration / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (iteration - warmup) / max(1, total - warmup))))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_collector(config: RecipeConfig, env, actor: ProbabilisticActor, track_traj_ids: bool = False) -> Collector:
    """TorchRL's single-env collector, `steps_per_iteration` frames per batch, on `config.device`.

    Trajectory ids are not tracked by default: GAE reads the done flags and the replay samples
    transitions, so nothing reads `("collector", "traj_ids")`.
    """
    return Collector(
        env, actor, frames_per_batch=config.steps_per_iteration,
        total_frames=config.iterations * config.steps_per_iteration, device=config.device,
        auto_register_policy_transforms=False, track_traj_ids=track_traj_ids,
    )  # fmt: skip


def normalise_advantage(minibatch: TensorDictBase) -> None:
    """Per-minibatch advantage normalisation (mean 0, population std 1), in place."""
    advantage = minibatch["advantage"]
    minibatch["advantage"] = (advantage - advantage.mean()) / advantage.std(correction=0).clamp_min(1e-8)


@torch.no_grad()
def age_split_metrics(loss: GIPOLoss, minibatch: TensorDictBase, iteration: int) -> dict[str, float]:
    """The core's utilization diagnostics on the fresh (this iteration) and the old (≥ 10 iterations) samples.

    One extra policy forward (no backward) on the minibatch of the iteration's last actor step, with
    the parameters that step sees (the policy has taken the iteration's other actor steps since the
    fresh samples were collected).
    """
    dist = loss.actor_network.get_dist(minibatch.clone(False))
    log_prob = dist.log_prob(minibatch["action"])  # [B, action_dim]
    age = (iteration - minibatch["collected_at"]).unsqueeze(-1).expand_as(log_prob)
    out = {}
    for group, mask in (("fresh", age == 0), ("old", age >= OLD_AFTER)):
        if not bool(mask.any()):
            continue
        result = loss.policy_objective(
            log_prob, minibatch["action_log_prob"], minibatch["advantage"], mask, **loss.scheduled_settings()
        )
        for key in ("dead_fraction", "suppressed_fraction", "ess", "log_ratio_abs_p95"):
            out[f"{key}_{group}"] = float(result.metrics[key])
        out[f"fraction_{group}"] = float(mask[:, 0].float().mean())
    return out


def reuse_step(
    config: RecipeConfig, loss: GIPOLoss, optimizer: torch.optim.Optimizer, minibatch: TensorDictBase, actor_step: bool
) -> TensorDictBase | None:
    """One optimizer step on a minibatch: the full loss on actor steps, `GIPOLoss.loss_critic` alone otherwise.

    A critic-only step runs the value head alone, on the encoder's features computed once after the
    last actor step (the encoder only moves on actor steps): no policy forward or backward; the
    policy parameters get no gradient and AdamW leaves them untouched. With `full_loss_every_step`
    the full loss runs on every step and only its critic term is used off actor steps (the same
    update, at the cost of the policy head). Returns the loss outputs of a full-loss step, `None`
    after a critic-only one.
    """
    out = None
    if actor_step or config.full_loss_every_step:
        minibatch.pop("hidden", None)  # the encoder moves on actor steps
        out = loss(minibatch)
        total = out["loss_critic"] + out["loss_objective"] if actor_step else out["loss_critic"]
    else:
        if "hidden" not in minibatch:  # the encoder's features, fixed until the next actor step
            with torch.no_grad():
                loss.critic_network[0](minibatch)
        minibatch.pop("state_value", None)  # the previous step's value, with its graph
        with set_skip_existing(True):  # the critic reuses the features: only the value head runs
            critic, _, _ = loss.loss_critic(minibatch)
        total = loss._reduce_loss(critic, minibatch)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], config.max_grad_norm)
    optimizer.step()
    return out


def update(
    config: RecipeConfig, loss: GIPOLoss, optimizer: torch.optim.Optimizer, replay: ReplayBuffer, iteration: int
) -> dict[str, float]:
    """One iteration's updates: R minibatches × K reuse steps; returns the actor steps' mean diagnostics."""
    sums: dict[str, torch.Tensor] = {}
    actor_updates = 0
    probe: dict[str, float] = {}
    for r in range(config.minibatches):
        minibatch = replay.sample().to(config.device)
        normalise_advantage(minibatch)
        for actor_step in actor_steps(config):
            if actor_step and r == config.minibatches - 1:  # after the iteration's other actor steps
                probe = age_split_metrics(loss, minibatch, iteration)
            out = reuse_step(config, loss, optimizer, minibatch, actor_step)
            if actor_step:
                actor_updates += 1
                for key, value in out.items():
                    if value.ndim == 0:
                        sums[key] = sums.get(key, 0.0) + value.detach()
    means = torch.stack(list(sums.values())).div(actor_updates).tolist()  # one host read per iteration
    return dict(zip(sums, means, strict=True)) | probe


@torch.no_grad()
def evaluate(config: RecipeConfig, actor: ProbabilisticActor) -> dict[str, float]:
    """The greedy (argmax-bin) policy on `eval_episodes` goals seeded `seed + 10000`: last-step success, return."""
    env = make_metaworld_env(
        config.task, seed=config.seed + 10_000, max_episode_steps=config.max_episode_steps,
        action_bins=config.action_bins, device=config.device,
    )  # fmt: skip
    success, returns = [], []
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(config.eval_episodes):
            rollout = env.rollout(config.max_episode_steps, actor)
            success.append(float(rollout["next", "success"][-1]))
            returns.append(float(rollout["next", "episode_reward"][-1]))
    env.close()
    return {"eval_success": sum(success) / len(success), "eval_return": sum(returns) / len(returns)}


def train(config: RecipeConfig, on_iteration: Callable[[dict[str, float]], None] | None = None) -> dict:
    """Run the recipe; returns (and writes to `<logdir>/<name>.json`) a summary with the per-iteration history.

    `on_iteration`, if given, receives each iteration's row (env steps, training return and success,
    the actor steps' diagnostics, ...) as it is logged.
    """
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    env = make_metaworld_env(
        config.task, seed=config.seed, max_episode_steps=config.max_episode_steps,
        action_bins=config.action_bins, device=config.device,
    )  # fmt: skip
    actor, critic = make_actor_critic(bins=config.action_bins, hidden=config.hidden)
    actor, critic = actor.to(config.device), critic.to(config.device)
    loss = make_loss(config, actor, critic)
    optimizer, scheduler = make_optimizer(config, loss)
    replay = make_replay(config)
    collector = make_collector(config, env, actor)
    logdir = Path(config.logdir)
    logger = get_logger(config.logger, logger_name=str(logdir), experiment_name=config.name)
    recent_success: deque[float] = deque(maxlen=config.success_window)
    recent_return: deque[float] = deque(maxlen=config.success_window)
    history: list[dict[str, float]] = []
    start, steps = time.time(), 0
    progress = tqdm(total=config.iterations * config.steps_per_iteration, disable=not config.progress, desc=config.name)
    tick = time.perf_counter()
    for iteration, data in enumerate(collector):
        collect_seconds = time.perf_counter() - tick
        steps += data.numel()
        done = data["next", "done"].squeeze(-1)
        recent_success.extend(data["next", "success"][done].tolist())
        recent_return.extend(data["next", "episode_reward"][done].squeeze(-1).tolist())
        data["next", "reward"] = data["next", "reward"] * config.reward_scale
        with torch.no_grad():  # GAE with the critic of this moment; stored, never recomputed
            loss.value_estimator(data, params=loss.critic_network_params)
        data["collected_at"] = torch.full(data.shape, iteration, dtype=torch.int64, device=data.device)
        replay.extend(data.select(*STORED_KEYS).reshape(-1))

        tick = time.perf_counter()
        row = {"steps": steps, "iteration": iteration, **update(config, loss, optimizer, replay, iteration)}
        scheduler.step()
        collector.update_policy_weights_()
        row |= {
            "collect_seconds": collect_seconds,
            "update_seconds": time.perf_counter() - tick,
            "train_success": sum(recent_success) / max(1, len(recent_success)),
            "train_return": sum(recent_return) / max(1, len(recent_return)),
            "buffer": len(replay),
        }
        last = iteration + 1 == config.iterations
        if (config.eval_every and iteration % config.eval_every == 0) or last:
            row |= evaluate(config, actor)
        history.append(row)
        for key, value in row.items():
            logger.log_scalar(key, value, step=steps)
        if on_iteration is not None:
            on_iteration(row)
        progress.update(data.numel())
        progress.set_postfix(
            success=f"{row['train_success']:.2f}",
            ret=f"{row['train_return']:.0f}",
            dead=f"{row.get('dead_fraction', 0.0):.2f}",
            lr_p95=f"{row.get('log_ratio_abs_p95', 0.0):.2f}",
        )
        tick = time.perf_counter()
    progress.close()
    collector.shutdown()

    checkpoint = logdir / f"{config.name}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "loss_module": loss.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": dataclasses.asdict(config),
        },
        checkpoint,
    )
    summary = {
        "config": dataclasses.asdict(config),
        "steps": steps,
        "wall_seconds": round(time.time() - start, 1),
        "final_eval_success": history[-1]["eval_success"],
        "checkpoint": str(checkpoint),
        "history": history,
    }
    (logdir / f"{config.name}.json").write_text(json.dumps(summary, indent=1))
    return summary


def parser() -> argparse.ArgumentParser:
    """A command line with one flag per [`RecipeConfig`][] field (`--buffer-size`, `--no-progress`, ...)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for f in dataclasses.fields(RecipeConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        choices = f.metadata.get("choices")
        choices = choices() if callable(choices) else choices  # the registered objectives when the parser is built
        p.add_argument(flag, type=kind, default=f.default, choices=choices, help=f.metadata["help"])
    return p


def main(argv: list[str] | None = None) -> dict:
    config = RecipeConfig(**vars(parser().parse_args(argv)))
    summary = train(config)
    print(f"{config.name}: final greedy success {summary['final_eval_success']:.2f}; {summary['wall_seconds']} s")
    return summary


if __name__ == "__main__":
    main()
