"""Meta-World as a TorchRL env (`GymWrapper` around [`gipo_plugins.metaworld.make_metaworld_env`][])."""

from __future__ import annotations

import torch
from torchrl.data import Composite, Unbounded
from torchrl.envs import (
    ActionDiscretizer,
    Compose,
    GymWrapper,
    RewardSum,
    StepCounter,
    TransformedEnv,
    default_info_dict_reader,
)

from gipo_plugins.metaworld import action_grid, check_action_bins
from gipo_plugins.metaworld import make_metaworld_env as make_gym_env


class ActionBins(ActionDiscretizer):
    r"""Discrete action bins per dimension: bin $b \in \{0..n-1\}$ ↦ $l + (h - l)\,b/(n-1)$.

    The grid includes both ends of the action box (for Meta-World's $[-1, 1]$ and 256 bins,
    $-1 + 2b/255$, as in the GIPO reference protocol), unlike
    `ActionDiscretizer`'s built-in interval strategies. The env then
    takes a `MultiCategorical` action of bin indices, one per action dimension. The map is the
    Meta-World adapter's [`action_grid`][gipo_plugins.metaworld.action_grid] (RLlib's binned envs use it too).
    """

    def custom_arange(self, nint: int, device: torch.device) -> torch.Tensor:
        """The bins' positions in the action box, $b/(n-1)$: `action_grid` on $[0, 1]$."""
        return torch.from_numpy(action_grid(nint, 0.0, 1.0)).to(device)


def make_metaworld_env(
    task: str = "reach-v3",
    seed: int = 0,
    *,
    max_episode_steps: int = 500,
    action_bins: int | None = None,
    device: str | torch.device = "cpu",
) -> TransformedEnv:
    """A seeded Meta-World task for TorchRL.

    The env writes `observation` (float32, 39), takes `action` (float32, 4, in [-1, 1]; or, with
    `action_bins`, int64 bin indices, see [`ActionBins`][]), and reads `success` (float32, 1.0
    while the task is solved) from `info` into the step's tensordict. `RewardSum` adds
    `episode_reward`, `StepCounter` adds `step_count`.

    Args:
        task: a Meta-World v3 task, e.g. `"reach-v3"`.
        seed: seeds the task's goal sequence and the env.
        max_episode_steps: truncation horizon (≤ 500).
        action_bins: if given (≥ 2), the number of discrete bins per action dimension.
        device: device of the env's tensors.
    """
    base = GymWrapper(make_gym_env(task, seed, max_episode_steps=max_episode_steps), device=device)
    reader = default_info_dict_reader(["success"], spec=Composite(success=Unbounded(shape=(), dtype=torch.float32)))
    base.set_info_dict_reader(reader)
    transforms = [StepCounter(), RewardSum()]
    if action_bins is not None:
        transforms.append(ActionBins(check_action_bins(action_bins)))
    env = TransformedEnv(base, Compose(*transforms))
    env.set_seed(seed)
    return env
