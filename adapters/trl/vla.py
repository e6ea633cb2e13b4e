r"""VLA post-training on Meta-World through TRL: SFT recipe, evaluation and :class:`VLAGIPOTrainer`.

TRL's ``rollout_func`` returns one sequence (and one reward) per prompt row, so a whole episode
would become one long token sequence with a single scalar reward. For per-step credit assignment
the smallest TRL-native extension is to replace the *generation step* only:
:class:`VLAGIPOTrainer` overrides ``_generate_and_score_completions`` to run one Meta-World episode
per prompt row (rows arrive in groups of ``num_generations`` with the same goal, as GRPO groups
completions of one prompt) and to return **one sample per environment step**: prompt = BOS + state
tokens + OpenVLA prompt, completion = the ``action_dim`` action tokens the policy sampled,
``pixel_values`` = the camera image, ``old_per_token_logps`` = the behaviour log-probs stored at
acting time, and the advantage of step :math:`t` of episode :math:`i`

.. math:: A_{i,t} = \frac{G_{i,t} - \operatorname{mean}_j G_{j,t}}{\operatorname{std}_j G_{j,t} + 10^{-4}},
    \qquad G_{i,t} = \sum_{k \ge 0} \gamma^k r_{i,t+k},

a return-to-go with a per-time-step group baseline over the episodes of the same goal (no critic,
GRPO's spirit). Everything after generation is TRL's: buffering over ``steps_per_generation``,
reuse for ``num_iterations`` (the stale knobs), the loss (GIPO's trust weight, or any TRL
``loss_type`` for the A/B), optimisation, logging and checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from gipo_plugins.trl.gipo import GIPOConfig, GIPOTrainer
from gipo_plugins.trl.metaworld_images import (
    STATE_DIM,
    MetaWorldImageEnv,
    collect_demonstrations,
    instruction,
)
from gipo_plugins.trl.openvla import (
    ActionTokenizer,
    TinyOpenVLAForActionPrediction,
    TinyOpenVLAProcessor,
    build_tokenizer,
    compute_statistics,
    normalize,
    tiny_config,
    unnormalize,
)

TOKENIZER_INSTRUCTIONS = ("reach the goal", "push the puck to the goal")
"""Instructions the recipe's tokenizer is trained on, besides the task's own (fixed for reproducible checkpoints)."""

# --------------------------------------------------------------------------------------------------
# Acting, evaluation and the SFT recipe
# --------------------------------------------------------------------------------------------------


def act(model: TinyOpenVLAForActionPrediction, processor: TinyOpenVLAProcessor, observations: list[dict],
        task: str, *, temperature: float) -> dict[str, torch.Tensor | np.ndarray]:  # fmt: skip
    """One policy step for a batch of observations: model inputs, sampled tokens, log-probs, env actions."""
    inputs = processor(
        np.stack([o["image"] for o in observations]), instruction(task), np.stack([o["state"] for o in observations])
    )
    ids, log_probs = model.sample_action_tokens(**inputs, temperature=temperature)
    actions = unnormalize(processor.action_tokenizer.decode(ids), model.action_stats()).numpy()
    return {**inputs, "action_ids": ids, "log_probs": log_probs, "actions": actions}


@torch.no_grad()
def evaluate_success(model: TinyOpenVLAForActionPrediction, processor: TinyOpenVLAProcessor, task: str,
                     goals: list[int], *, seed: int = 0, horizon: int = 100,
                     temperature: float = 0.0) -> float:  # fmt: skip
    """Fraction of episodes (one per goal index, greedy by default) that reach success."""
    envs = [MetaWorldImageEnv(task, seed, image_size=processor.image_size, max_episode_steps=horizon) for _ in goals]
    observations = [env.reset(goal) for env, goal in zip(envs, goals, strict=True)]
    solved = np.zeros(len(goals), dtype=bool)
    was_training = model.training
    model.eval()
    for _ in range(horizon):
        actions = act(model, processor, observations, task, temperature=temperature)["actions"]
        for i, env in enumerate(envs):
            observations[i], _, success, _ = env.step(actions[i])
            solved[i] |= success
    model.train(was_training)
    for env in envs:
        env.close()
    return float(solved.mean())


def sft_checkpoint(path: str | Path, *, task: str = "reach-v3", episodes: int = 50, epochs: int = 15,
                   batch_size: int = 32, lr: float = 1e-3, horizon: int = 100, seed: int = 0,
                   image_size: int = 64, llm_dim: int = 96, log_every: int = 50) -> Path:  # fmt: skip
    """The recipe: expert demos → tiny OpenVLA → SFT on action tokens → ``save_pretrained(path)``.

    Collects ``episodes`` scripted-expert episodes (goals 0..episodes-1 of MT1 seed ``seed``), fits
    the action and state q01/q99 statistics, builds the tokenizer and model, trains with
    cross-entropy on the action tokens only (AdamW, cosine decay) and saves model + processor
    (tokenizer, statistics) to ``path``. Load with ``AutoModelForCausalLM.from_pretrained(path)``
    and ``TinyOpenVLAProcessor.from_pretrained(path)``.
    """
    torch.manual_seed(seed)
    demos = collect_demonstrations(task, episodes, seed=seed, image_size=image_size, max_episode_steps=horizon)
    stats = {task: {"action": compute_statistics(demos["actions"]), "state": compute_statistics(demos["states"])}}
    tokenizer = build_tokenizer(sorted({instruction(task), *TOKENIZER_INSTRUCTIONS}))
    config = tiny_config(len(tokenizer), image_size=image_size, llm_dim=llm_dim, state_dim=STATE_DIM,
                         norm_stats=stats)  # fmt: skip
    model = TinyOpenVLAForActionPrediction(config)
    processor = TinyOpenVLAProcessor(tokenizer, image_size, stats)
    inputs = processor(demos["images"], instruction(task), demos["states"])
    action_ids = ActionTokenizer(len(tokenizer)).encode(normalize(demos["actions"], stats[task]["action"], clip=True))
    input_ids = torch.cat([inputs["input_ids"], action_ids], 1)
    attention_mask = torch.cat([inputs["attention_mask"], torch.ones_like(action_ids)], 1)
    labels = torch.full_like(input_ids, -100)
    labels[:, -action_ids.shape[1] :] = action_ids
    n = len(input_ids)
    steps = epochs * math.ceil(n / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    start, step = time.time(), 0
    for epoch in range(epochs):
        for batch in torch.randperm(n).split(batch_size):
            pixels = inputs["pixel_values"][batch]
            loss = model(input_ids[batch], attention_mask[batch], pixels, labels=labels[batch]).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if log_every and step % log_every == 0:
                print(f"[sft] epoch {epoch + 1}/{epochs} step {step}/{steps} loss {loss.item():.3f} "
                      f"{time.time() - start:.0f}s", flush=True)  # fmt: skip
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


# --------------------------------------------------------------------------------------------------
# GIPO post-training through TRL
# --------------------------------------------------------------------------------------------------


@dataclass
class VLAGIPOConfig(GIPOConfig):
    """[`GIPOConfig`] for post-training a VLA on Meta-World episodes.

    ``per_device_train_batch_size`` and ``generation_batch_size`` count *episodes*; every episode
    contributes ``episode_horizon`` step samples. ``num_generations`` episodes share one goal.
    """

    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Off: the tiny VLA does not support activation checkpointing."}
    )
    task: str = field(default="reach-v3", metadata={"help": "Meta-World v3 task the policy is trained on."})
    episode_horizon: int = field(default=60, metadata={"help": "Environment steps per training episode."})
    discount: float = field(default=0.99, metadata={"help": "Discount of the per-step return-to-go G_t."})
    env_seed: int = field(default=0, metadata={"help": "Seed of Meta-World's MT1 goal sampler."})
    reward_scale: float = field(default=0.1, metadata={"help": "Multiplier on Meta-World's dense reward (0-10)."})

    def __post_init__(self):
        super().__post_init__()
        if self.episode_horizon < 1:
            raise ValueError(f"episode_horizon must be >= 1, got {self.episode_horizon}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")


def goal_dataset(goals: list[int]) -> Dataset:
    """Prompt rows for :class:`VLAGIPOTrainer`: one row per goal index (the "prompt" is the goal)."""
    return Dataset.from_dict({"prompt": [f"goal {g}" for g in goals], "goal_index": goals})


def environment_reward(completions, **kwargs) -> list[float]:
    """Placeholder reward function for TRL's signature: rewards come from the environment instead."""
    raise RuntimeError("VLAGIPOTrainer takes rewards from the environment; this function is never called")


def step_advantages(rewards: np.ndarray, group_size: int, discount: float) -> np.ndarray:
    r"""Per-step advantages ``[E, T]``: return-to-go minus the same-time-step group mean, over the group std."""
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
    """:class:`GIPOTrainer` whose generation step runs Meta-World episodes with the VLA (see module doc).

    Args:
        model: a :class:`TinyOpenVLAForActionPrediction` (e.g. the SFT checkpoint).
        processor: its :class:`TinyOpenVLAProcessor`.
        args: a :class:`VLAGIPOConfig`; ``loss_type`` selects GIPO or any TRL loss for the A/B.
        train_dataset: goal rows from :func:`goal_dataset`.
    """

    def __init__(self, model: TinyOpenVLAForActionPrediction, processor: TinyOpenVLAProcessor, args: VLAGIPOConfig,
                 train_dataset: Dataset, **kwargs):  # fmt: skip
        super().__init__(model=model, reward_funcs=[environment_reward], args=args, train_dataset=train_dataset,
                         processing_class=processor.tokenizer, **kwargs)  # fmt: skip
        self.processor = processor
        self._envs: list[MetaWorldImageEnv] = []

    def _environments(self, count: int) -> list[MetaWorldImageEnv]:
        while len(self._envs) < count:
            self._envs.append(
                MetaWorldImageEnv(self.args.task, self.args.env_seed, image_size=self.processor.image_size,
                                  max_episode_steps=self.args.episode_horizon)
            )  # fmt: skip
        return self._envs[:count]

    @torch.no_grad()
    def _run_episodes(self, goals: list[int]) -> dict:
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        envs = self._environments(len(goals))
        observations = [env.reset(goal) for env, goal in zip(envs, goals, strict=True)]
        steps, rewards, solved = [], np.zeros((len(goals), self.args.episode_horizon)), np.zeros(len(goals), bool)
        for t in range(self.args.episode_horizon):
            step = act(model, self.processor, observations, self.args.task, temperature=self.temperature)
            steps.append(step)
            for i, env in enumerate(envs):
                observations[i], reward, success, _ = env.step(step["actions"][i])
                rewards[i, t] = reward * self.args.reward_scale
                solved[i] |= success
        model.train(was_training)
        return {"steps": steps, "rewards": rewards, "success": solved}

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict[str, torch.Tensor]:
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        start = time.time()
        rollout = self._run_episodes([int(row["goal_index"]) for row in inputs])
        advantages = step_advantages(rollout["rewards"], self.num_generations, self.args.discount)

        def flat(key: str) -> torch.Tensor:  # [T][E, ...] -> [E * T, ...], episode-major
            return torch.stack([s[key] for s in rollout["steps"]], 1).flatten(0, 1).to(device)

        completion_ids = flat("action_ids")
        completion_mask = torch.ones_like(completion_ids)
        num_items = self.accelerator.gather(completion_mask.sum()).sum()
        seconds = time.time() - start
        metrics = self._metrics[mode]
        success = torch.tensor(rollout["success"].mean(), device=device)
        metrics["env/success_rate"].append(float(self.accelerator.gather(success).mean()))
        metrics["env/episode_return"].append(float(rollout["rewards"].sum(1).mean()))
        metrics["env/steps_per_second"].append(rollout["rewards"].size / seconds)
        return {
            "prompt_ids": flat("input_ids"),
            "prompt_mask": flat("attention_mask"),
            "completion_ids": completion_ids,
            "completion_mask": completion_mask,
            "pixel_values": flat("pixel_values"),
            "num_images": [1] * len(completion_ids),  # one image per sample: TRL slices pixel_values with it
            "old_per_token_logps": flat("log_probs"),
            "advantages": torch.as_tensor(advantages, dtype=torch.float32).flatten().to(device),
            "num_items_in_batch": num_items,
        }
