"""Meta-World as a TorchRL env (``GymWrapper`` around :func:`gipo_plugins.metaworld.make_metaworld_env`)."""

from __future__ import annotations

import torch

from gipo_plugins.metaworld import make_metaworld_env as make_gym_env
from torchrl.data import Composite, Unbounded
from torchrl.envs import Compose, GymWrapper, RewardSum, StepCounter, TransformedEnv, default_info_dict_reader


def make_metaworld_env(
    task: str = "reach-v3",
    seed: int = 0,
    *,
    max_episode_steps: int = 500,
    device: str | torch.device = "cpu",
) -> TransformedEnv:
    """A seeded Meta-World task for TorchRL.

    The env writes ``observation`` (float32, 39), takes ``action`` (float32, 4, in [-1, 1]), and
    reads ``success`` (float32, 1.0 once solved) from ``info`` into the step's tensordict.
    ``RewardSum`` adds ``episode_reward``, ``StepCounter`` adds ``step_count``.

    Args:
        task: a Meta-World v3 task, e.g. ``"reach-v3"``.
        seed: seeds the task's goal sequence and the env.
        max_episode_steps: truncation horizon (≤ 500).
        device: device of the env's tensors.
    """
    base = GymWrapper(make_gym_env(task, seed, max_episode_steps=max_episode_steps), device=device)
    reader = default_info_dict_reader(["success"], spec=Composite(success=Unbounded(shape=(), dtype=torch.float32)))
    base.set_info_dict_reader(reader)
    env = TransformedEnv(base, Compose(StepCounter(), RewardSum()))
    env.set_seed(seed)
    return env
