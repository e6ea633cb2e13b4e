"""Acting, evaluation and the SFT recipe of the tiny OpenVLA, all through the policy interface.

`act` and `evaluate_success` take any `VLAPolicy` + `VLAProcessor` pair (the tiny model or a
published OpenVLA checkpoint); `sft_checkpoint` builds the tiny one from scripted-expert
demonstrations rendered from Meta-World.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from gipo_plugins.metaworld import episode_success
from gipo_plugins.metaworld.pixels import STATE_DIM, MetaWorldImageEnv, collect_demonstrations, instruction
from gipo_plugins.vla.actions import ActionTokenizer, compute_statistics, normalize
from gipo_plugins.vla.policy import VLAPolicy, VLAProcessor, decode_actions, sample_action_tokens
from gipo_plugins.vla.tiny_openvla import (
    TinyOpenVLAForActionPrediction,
    TinyOpenVLAProcessor,
    build_tokenizer,
    tiny_config,
)

TOKENIZER_INSTRUCTIONS = ("reach the goal", "push the puck to the goal")
"""Instructions the recipe's tokenizer is trained on, besides the task's own (fixed for reproducible checkpoints)."""


def act(model: VLAPolicy, processor: VLAProcessor, observations: list[dict], task: str, *, temperature: float,
        unnorm_key: str | None = None) -> dict[str, torch.Tensor | np.ndarray]:  # fmt: skip
    """One policy step for a batch of observations.

    Returns:
        The model inputs (`input_ids`, `attention_mask`, `pixel_values`), the sampled
        `action_ids` `[B, A]` and their `log_probs`, the whole behaviour categorical
        `action_log_softmax` `[B, A, 256]` (fp32 log-probabilities of every bin at `temperature`), and
        the env `actions` `[B, A]` (un-normalised).
    """
    device = next(model.parameters()).device
    states = np.stack([o["state"] for o in observations]) if processor.state_dim else None
    inputs = processor(np.stack([o["image"] for o in observations]), instruction(task), states, unnorm_key)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    ids, log_probs, log_softmax = sample_action_tokens(
        model, inputs, action_dim=model.get_action_dim(unnorm_key), temperature=temperature, return_log_softmax=True
    )
    return {**inputs, "action_ids": ids, "log_probs": log_probs, "action_log_softmax": log_softmax,
            "actions": decode_actions(model, ids, unnorm_key)}  # fmt: skip


@torch.no_grad()
def evaluate_success(model: VLAPolicy, processor: VLAProcessor, task: str, goals: list[int], *, seed: int = 0,
                     horizon: int = 100, temperature: float = 0.0, unnorm_key: str | None = None) -> float:  # fmt: skip
    """Fraction of episodes (one per goal index, greedy by default) solved at their last step."""
    envs = [MetaWorldImageEnv(task, seed, image_size=processor.image_size, max_episode_steps=horizon) for _ in goals]
    observations = [env.reset(goal) for env, goal in zip(envs, goals, strict=True)]
    step_success = np.zeros((len(goals), horizon), dtype=bool)
    was_training = model.training
    model.eval()
    for t in range(horizon):
        actions = act(model, processor, observations, task, temperature=temperature, unnorm_key=unnorm_key)["actions"]
        for i, env in enumerate(envs):
            observations[i], _, step_success[i, t], _ = env.step(actions[i])
    model.train(was_training)
    for env in envs:
        env.close()
    return float(np.mean([episode_success(row) for row in step_success]))


def sft_checkpoint(path: str | Path, *, task: str = "reach-v3", episodes: int = 50, epochs: int = 15,
                   batch_size: int = 32, lr: float = 1e-3, horizon: int = 100, seed: int = 0,
                   image_size: int = 64, llm_dim: int = 96, log_every: int = 50) -> Path:  # fmt: skip
    """The recipe: expert demos → tiny OpenVLA → SFT on action tokens → `save_pretrained(path)`.

    Collects `episodes` scripted-expert episodes (goals `0..episodes-1` of MT1 seed `seed`), fits
    the action and state q01/q99 statistics, builds the tokenizer and model, trains with
    cross-entropy on the action tokens only (AdamW, cosine decay) and saves model + processor
    (tokenizer, statistics) to `path`. Load with `AutoModelForCausalLM.from_pretrained(path)` and
    `TinyOpenVLAProcessor.from_pretrained(path)`.
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
