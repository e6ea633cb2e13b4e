r"""`VLAGIPOTrainer`: GIPO post-training of a VLA policy on Meta-World episodes through TRL.

TRL's `rollout_func` returns one sequence (and one reward) per prompt row, so a whole episode
would become one long token sequence with a single scalar reward. For per-step credit assignment
the smallest TRL-native extension is to replace the *generation step*:
`_generate_and_score_completions` runs one Meta-World episode per prompt row (rows arrive in
groups of `num_generations` with the same goal, as GRPO groups completions of one prompt) and
returns **one sample per environment step**: prompt = the processor's tokens, completion = the
action tokens the policy sampled, `pixel_values` = the camera image, `old_per_token_logps` = the
behaviour log-probs stored at acting time, and the advantage of step $t$ of episode $i$

$$A_{i,t} = \frac{G_{i,t} - \operatorname{mean}_j G_{j,t}}{\operatorname{std}_j G_{j,t} + 10^{-4}},
\qquad G_{i,t} = \sum_{k \ge 0} \gamma^k r_{i,t+k},$$

a return-to-go with a per-time-step group baseline over the episodes of the same goal (no critic,
GRPO's spirit). Scoring (`_get_per_token_logps_and_entropies`) goes through the policy interface
(`gipo_plugins.vla.policy`): the categorical over the 256 action tokens, the same one the
episodes were sampled from. Everything else is TRL's: buffering over `steps_per_generation`, reuse
for `num_iterations` (the stale knobs), the loss (GIPO's trust weight, or any TRL `loss_type` for
the A/B), optimisation, logging and checkpoints.

**Replay** (`replay_episodes` > 0): the paper's stale regime, episodes from lagging policies reused
across generations. Each generation acts only `fresh_episodes` of its goal rows (whole groups of
`num_generations`) and fills the rest of the batch with episodes drawn uniformly, without
replacement, from a FIFO of the `replay_episodes` most recently acted earlier ones; then the fresh
episodes enter the FIFO. A replayed episode is used exactly as it was acted — its behaviour
log-probs, behaviour categorical and advantages stored then, never re-scored — so its ratio is to
the policy that acted it, as in the TorchRL recipe's replay. Until the FIFO holds enough episodes a
generation acts its whole batch. `replay/age_mean` logs the batch's mean age in generations (0 for
fresh episodes) and `episodes_acted` counts the environment episodes acted for training. Evaluation
acts every episode and neither replays nor stores. The FIFO lives in host memory and is not part of
checkpoints: a resumed run starts it empty.

Staleness is logged for every loss type: `stale/log_ratio_abs_mean` and `stale/log_ratio_abs_p95`
($|\log r|$ over the batch's action tokens); dead fractions are `gipo/dead_fraction` /
`gipo/suppressed_fraction` (GIPO) and TRL's `clip_ratio/region_mean` (clipped losses).

The anchor (`gipo_behaviour_kl_coeff` $\beta$, inherited from `GIPOConfig`; default `None`: 0.1 with
GIPO, 0 with TRL's loss types) is the published $\beta\,\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$,
**exact** over the 256-bin categorical of every action dimension: the whole behaviour categorical
(log-softmax over the action tokens at the sampling temperature, `[steps, action_dim, 256]` fp32) is
stored with the episode when it is acted (`behaviour_log_softmax`, next to `old_per_token_logps`) and
travels through TRL's buffering, shuffling and splitting like every per-sample tensor; the loss
compares it with the categorical its own forward computed (`gipo_plugins.categorical_kl`, mean over
action tokens), so it does not depend on the policy after acting, however many passes reuse the
episode. Normalised as in `GIPOTrainer` (token mean, divided by the accumulation steps); logged as
`gipo/behaviour_kl`. It is not TRL's `beta` (a KL to a reference model, which stays 0 here). Memory:
256 fp32 values per action token, 4 KiB per Meta-World step (4 dimensions), 240 KiB per 60-step
episode; the 64×64 image of the same step takes 48 KiB.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from gipo_plugins import categorical_kl
from gipo_plugins.metaworld import ACTION_DIM, check_task, episode_success
from gipo_plugins.metaworld.pixels import MetaWorldImageEnv
from gipo_plugins.trl import GIPOConfig, GIPOTrainer
from gipo_plugins.vla.policy import VLAPolicy, VLAProcessor, action_log_probs, check_policy
from gipo_plugins.vla.recipe import act


@dataclass
class VLAGIPOConfig(GIPOConfig):
    r"""`GIPOConfig` for post-training a VLA on Meta-World episodes.

    `per_device_train_batch_size` and `generation_batch_size` count *episodes*; every episode
    contributes `episode_horizon` step samples. `num_generations` episodes share one goal.

    Attributes:
        task: Meta-World v3 task the policy is trained on.
        episode_horizon: environment steps per training episode.
        discount: $\gamma$ of the per-step return-to-go $G_t$.
        env_seed: seed of Meta-World's MT1 goal sampler.
        reward_scale: multiplier on Meta-World's dense reward (0–10 per step).
        unnorm_key: dataset whose action statistics decode the policy's tokens (`None`: the only one).
        replay_episodes: capacity of the FIFO of earlier episodes a generation replays (0: none, every
            episode is fresh).
        fresh_episodes: episodes acted per generation when replaying; the rest of the batch comes from
            the FIFO. Required with `replay_episodes` > 0, rejected without it.
        beta: must be 0 (the episodes carry no reference log-probs); `gipo_fused_loss` must stay off.
    """

    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Off by default (the tiny VLA does not need it); on for 7B models."}
    )
    beta: float = field(default=0.0, metadata={"help": "Must be 0: the episodes carry no reference log-probs."})
    task: str = field(default="reach-v3", metadata={"help": "Meta-World v3 task the policy is trained on."})
    episode_horizon: int = field(default=60, metadata={"help": "Environment steps per training episode."})
    discount: float = field(default=0.99, metadata={"help": "Discount of the per-step return-to-go G_t."})
    env_seed: int = field(default=0, metadata={"help": "Seed of Meta-World's MT1 goal sampler."})
    reward_scale: float = field(default=0.1, metadata={"help": "Multiplier on Meta-World's dense reward (0-10)."})
    unnorm_key: str | None = field(
        default=None, metadata={"help": "Dataset whose action statistics decode the tokens (None: the only one)."}
    )
    replay_episodes: int = field(
        default=0, metadata={"help": "FIFO capacity of earlier episodes replayed as acted (0: every episode fresh)."}
    )
    fresh_episodes: int | None = field(
        default=None,
        metadata={"help": "Episodes acted per generation when replay_episodes > 0; the rest come from the FIFO."},
    )

    def __post_init__(self):
        super().__post_init__()
        check_task(self.task)
        if self.episode_horizon < 1:
            raise ValueError(f"episode_horizon must be >= 1, got {self.episode_horizon}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.beta != 0.0:
            raise ValueError(f"beta must be 0.0 for VLAGIPOTrainer (no reference log-probs), got {self.beta}")
        self._check_replay()
        if getattr(self, "gipo_fused_loss", False):
            raise ValueError("gipo_fused_loss cannot be used with VLAGIPOTrainer: it scores the 256 action tokens "
                             "through the policy interface, not the LM head over the vocabulary")  # fmt: skip

    def _check_replay(self) -> None:
        if self.replay_episodes < 0:
            raise ValueError(f"replay_episodes must be >= 0, got {self.replay_episodes}")
        if self.replay_episodes == 0:
            if self.fresh_episodes is not None:
                raise ValueError(f"fresh_episodes={self.fresh_episodes} is only read with replay_episodes > 0")
            return
        batch = self.generation_batch_size
        fresh = self.fresh_episodes
        if fresh is None or not 0 < fresh < batch or fresh % self.num_generations:
            raise ValueError(f"fresh_episodes must be a multiple of num_generations ({self.num_generations}) between "
                             f"0 and the generation batch ({batch} episodes), exclusive, with replay_episodes > 0; "
                             f"got {fresh}")  # fmt: skip
        if self.replay_episodes < batch - fresh:
            raise ValueError(f"replay_episodes ({self.replay_episodes}) must hold the {batch - fresh} replayed "
                             f"episodes of a generation batch ({batch} episodes, fresh_episodes {fresh})")  # fmt: skip


def goal_dataset(goals: list[int]) -> Dataset:
    """Prompt rows for `VLAGIPOTrainer`: one row per goal index (the "prompt" is the goal)."""
    return Dataset.from_dict({"prompt": [f"goal {g}" for g in goals], "goal_index": goals})


def environment_reward(completions, **kwargs) -> list[float]:
    """Placeholder reward function for TRL's signature: rewards come from the environment instead."""
    raise RuntimeError("VLAGIPOTrainer takes rewards from the environment; this function is never called")


def step_advantages(rewards: np.ndarray, group_size: int, discount: float) -> np.ndarray:
    """Per-step advantages `[E, T]`: return-to-go minus the same-time-step group mean, over the group std.

    Raises:
        ValueError: the episodes do not split into groups of `group_size`.
    """
    episodes, horizon = rewards.shape
    if episodes % group_size:
        raise ValueError(f"{episodes} episodes do not split into groups of {group_size}")
    returns = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(episodes)
    for t in reversed(range(horizon)):
        running = rewards[:, t] + discount * running
        returns[:, t] = running
    grouped = returns.reshape(-1, group_size, horizon)
    advantages = (grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-4)
    return advantages.reshape(episodes, horizon)


class VLAGIPOTrainer(GIPOTrainer):
    """`GIPOTrainer` whose generation step runs Meta-World episodes with a VLA policy (see the module doc).

    Args:
        model: a `VLAPolicy` — `TinyOpenVLAForActionPrediction` (e.g. the SFT checkpoint) or
            `OpenVLAForActionPrediction` (a published checkpoint).
        processor: its `VLAProcessor`.
        args: a `VLAGIPOConfig`; `loss_type` selects GIPO or any TRL loss for the A/B.
        train_dataset: goal rows from `goal_dataset`.
        **kwargs: passed to `GIPOTrainer` (e.g. `callbacks`).

    Raises:
        ValueError: a model or processor without the policy interface, an action size other than
            Meta-World's, or more than one process (the policy is called outside the wrapper that
            DDP would add).
    """

    def __init__(self, model: VLAPolicy, processor: VLAProcessor, args: VLAGIPOConfig, train_dataset: Dataset,
                 **kwargs: Any):  # fmt: skip
        check_policy(model, processor)
        action_dim = model.get_action_dim(args.unnorm_key)
        if action_dim != ACTION_DIM:
            raise ValueError(f"the policy's actions for unnorm_key={args.unnorm_key!r} have {action_dim} "
                             f"dimensions; Meta-World takes {ACTION_DIM}")  # fmt: skip
        super().__init__(model=model, reward_funcs=[environment_reward], args=args, train_dataset=train_dataset,
                         processing_class=processor.tokenizer, **kwargs)  # fmt: skip
        if self.accelerator.num_processes > 1:
            raise ValueError("VLAGIPOTrainer runs in one process (num_processes > 1 is not supported)")
        self.processor = processor
        self._envs: list[MetaWorldImageEnv] = []
        self._last_log_probs: torch.Tensor | None = None
        self._replay: deque[dict] = deque(maxlen=args.replay_episodes)  # episodes as acted, [T, ...] CPU tensors
        self._replay_rng = random.Random(args.seed)
        self._generation = 0
        self.episodes_acted = 0  # environment episodes acted for training (replayed ones are not acted again)

    @property
    def policy(self) -> VLAPolicy:
        """The model, unwrapped (the `VLAPolicy`)."""
        return self.accelerator.unwrap_model(self.model)

    def _environments(self, count: int) -> list[MetaWorldImageEnv]:
        while len(self._envs) < count:
            self._envs.append(
                MetaWorldImageEnv(self.args.task, self.args.env_seed, image_size=self.processor.image_size,
                                  max_episode_steps=self.args.episode_horizon)
            )  # fmt: skip
        return self._envs[:count]

    @torch.no_grad()
    def _run_episodes(self, goals: list[int]) -> dict:
        model = self.policy
        was_training = model.training
        model.eval()
        envs = self._environments(len(goals))
        observations = [env.reset(goal) for env, goal in zip(envs, goals, strict=True)]
        horizon = self.args.episode_horizon
        steps, rewards, success = [], np.zeros((len(goals), horizon)), np.zeros((len(goals), horizon), bool)
        for t in range(horizon):
            step = act(model, self.processor, observations, self.args.task, temperature=self.temperature,
                       unnorm_key=self.args.unnorm_key)  # fmt: skip
            steps.append(step)
            for i, env in enumerate(envs):
                observations[i], reward, success[i, t], _ = env.step(step["actions"][i])
                rewards[i, t] = reward * self.args.reward_scale
        model.train(was_training)
        return {"steps": steps, "rewards": rewards, "success": np.array([episode_success(s) for s in success])}

    _EPISODE_KEYS = ("input_ids", "attention_mask", "pixel_values", "action_ids", "log_probs", "action_log_softmax")

    def _episodes(self, inputs: list[dict]) -> tuple[list[dict], dict]:
        """The generation's episodes as acted, each `{key: [T, ...] tensor}` with its advantages and the generation
        that acted it: the fresh ones, then (replaying) those drawn from the FIFO, which the fresh then join as
        host-memory copies. Returns them and the rollout of the fresh ones."""
        goals = [int(row["goal_index"]) for row in inputs]
        training = self.model.training
        replaying = training and self.args.replay_episodes > 0  # evaluation never replays nor stores
        fresh = len(goals)
        if replaying and len(self._replay) >= len(goals) - self.args.fresh_episodes:
            fresh = self.args.fresh_episodes
        rollout = self._run_episodes(goals[:fresh])
        if training:
            self.episodes_acted += fresh
        advantages = torch.as_tensor(step_advantages(rollout["rewards"], self.num_generations, self.args.discount),
                                     dtype=torch.float32)  # fmt: skip
        stacked = {key: torch.stack([s[key] for s in rollout["steps"]], 1) for key in self._EPISODE_KEYS}
        acted = [{**{key: value[i] for key, value in stacked.items()}, "advantages": advantages[i],
                  "generation": self._generation} for i in range(fresh)]  # fmt: skip
        replayed = self._replay_rng.sample(list(self._replay), len(goals) - fresh)
        if replaying:
            for episode in acted:
                self._replay.append({key: value.cpu() if torch.is_tensor(value) else value
                                     for key, value in episode.items()})  # fmt: skip
        self._generation += 1
        return acted + replayed, rollout

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict[str, torch.Tensor]:
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        start = time.time()
        episodes, rollout = self._episodes(inputs)

        def flat(key: str) -> torch.Tensor:  # [E][T, ...] -> [E * T, ...], episode-major
            return torch.cat([episode[key] for episode in episodes]).to(device)

        completion_ids = flat("action_ids")
        completion_mask = torch.ones_like(completion_ids)
        num_items = self.accelerator.gather(completion_mask.sum()).sum()
        seconds = time.time() - start
        metrics = self._metrics[mode]
        metrics["env/success_rate"].append(float(rollout["success"].mean()))
        metrics["env/episode_return"].append(float(rollout["rewards"].sum(1).mean()))
        metrics["env/steps_per_second"].append(rollout["rewards"].size / seconds)
        if self.args.replay_episodes:
            ages = [self._generation - 1 - episode["generation"] for episode in episodes]
            metrics["replay/age_mean"].append(float(np.mean(ages)))
        return {
            "prompt_ids": flat("input_ids"),
            "prompt_mask": flat("attention_mask"),
            "completion_ids": completion_ids,
            "completion_mask": completion_mask,
            "pixel_values": flat("pixel_values"),
            "num_images": [1] * len(completion_ids),  # one image per sample: TRL slices pixel_values with it
            "old_per_token_logps": flat("log_probs"),
            "behaviour_log_softmax": flat("action_log_softmax"),  # [E * T, action_dim, 256]: the anchor's pi_old
            "advantages": flat("advantages"),
            "num_items_in_batch": num_items,
        }

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, pixel_values=None,
                                           **kwargs):  # fmt: skip
        """Log-probs of the action tokens under the policy's categorical over the action tokens (see module doc)."""
        if pixel_values is None:
            raise ValueError("VLAGIPOTrainer scores completions from images: pixel_values are required")
        batch_size = batch_size or input_ids.size(0)
        log_probs, entropies, distributions = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            rows = slice(start, start + batch_size)
            with self.accelerator.autocast():
                lp, entropy, log_softmax = action_log_probs(
                    self.accelerator.unwrap_model(model), input_ids[rows], attention_mask[rows], pixel_values[rows],
                    logits_to_keep, temperature=self.temperature, compute_entropy=compute_entropy,
                    return_log_softmax=True,
                )  # fmt: skip
            log_probs.append(lp)
            entropies.append(entropy)
            distributions.append(log_softmax)
        log_probs = torch.cat(log_probs)
        self._last_log_probs = log_probs.detach()
        self._record_loss_forward(log_probs=log_probs, log_softmax=torch.cat(distributions))
        return log_probs, torch.cat(entropies) if compute_entropy else None, None

    def _behaviour_kl(self, inputs: dict, forward: dict[str, torch.Tensor]) -> torch.Tensor:
        """The anchor's exact KL(π_old ‖ π_θ) over each action token's 256 bins, π_old as stored when acting.

        Raises:
            ValueError: a batch without the stored behaviour categorical (`behaviour_log_softmax`).
        """
        behaviour = inputs.get("behaviour_log_softmax")
        if behaviour is None:
            raise ValueError("the anchor (gipo_behaviour_kl_coeff > 0) needs the behaviour categorical stored when "
                             "acting, inputs['behaviour_log_softmax'] [N, action_dim, 256]")  # fmt: skip
        return categorical_kl(forward["log_softmax"], behaviour, inputs["completion_mask"])

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        old = inputs.get("old_per_token_logps")
        if old is not None and self._last_log_probs is not None and self._last_log_probs.shape == old.shape:
            mode = "train" if self.model.training else "eval"
            mask = inputs["completion_mask"].bool()
            abs_log_ratio = (self._last_log_probs - old).abs()[mask].float()
            self._metrics[mode]["stale/log_ratio_abs_mean"].append(abs_log_ratio.mean().item())
            self._metrics[mode]["stale/log_ratio_abs_p95"].append(torch.quantile(abs_log_ratio, 0.95).item())
        return loss
