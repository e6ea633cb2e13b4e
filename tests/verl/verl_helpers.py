"""Shared helpers of the verl tests: a batch shaped as verl passes it to a policy loss, and actor configs."""

from __future__ import annotations

from typing import Any

import torch
from verl.workers.config import ActorConfig

LOSS_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def actor_config(**kwargs: Any) -> ActorConfig:
    """verl's `ActorConfig` with the fields it requires set (as its own CPU loss tests build it)."""
    return ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, **kwargs)


def batch(seed: int = 0, spread: float = 0.4, batch_size: int = 6, length: int = 9) -> dict[str, torch.Tensor]:
    """`(batch, response_length)` tensors: ragged responses, one fully masked row, GRPO-like advantages.

    `spread` is the scale of the log-ratio: 0.4 keeps every ratio well below verl's dual-clip bound 3.
    """
    gen = torch.Generator().manual_seed(seed)
    old_log_prob = -torch.rand(batch_size, length, generator=gen) * 3 - 0.1
    log_prob = old_log_prob + spread * torch.randn(batch_size, length, generator=gen)
    advantages = torch.randn(batch_size, 1, generator=gen).expand(batch_size, length).clone()
    advantages[0] += 0.3 * torch.randn(length, generator=gen)  # token-level advantages too (GAE-like)
    lengths = torch.randint(1, length + 1, (batch_size,), generator=gen)
    lengths[1] = 0  # a sequence masked out entirely (verl's rejection sampling does this)
    response_mask = torch.arange(length)[None, :] < lengths[:, None]
    rollout_is_weights = 0.5 + torch.rand(batch_size, length, generator=gen)
    return {
        "old_log_prob": old_log_prob,
        "log_prob": log_prob.requires_grad_(),
        "advantages": advantages,
        "response_mask": response_mask,
        "rollout_is_weights": rollout_is_weights,
    }


def run_loss(fn, data: dict[str, torch.Tensor], config: ActorConfig, loss_agg_mode: str, weights: bool):
    """Call a policy loss by keyword, as verl's `ppo_loss` does; return (loss, grad wrt log_prob, metrics)."""
    log_prob = data["log_prob"].detach().clone().requires_grad_()
    loss, metrics = fn(
        old_log_prob=data["old_log_prob"],
        log_prob=log_prob,
        advantages=data["advantages"],
        response_mask=data["response_mask"],
        loss_agg_mode=loss_agg_mode,
        config=config,
        rollout_is_weights=data["rollout_is_weights"] if weights else None,
    )
    (grad,) = torch.autograd.grad(loss, log_prob)
    return loss.detach(), grad, metrics
