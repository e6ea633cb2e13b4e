"""Meta-World state-based tasks as clean gymnasium envs.

[`make_metaworld_env`][] wraps `gymnasium.make("Meta-World/MT1", env_name=task, seed=seed)` and
fixes what trips RL frameworks:

- observations are float64 → cast to float32;
- the declared observation space pins the goal dims 36–38 to `[0, 0]` although the goal is
  observed → replaced by an unbounded `Box` of shape (39,);
- `info` holds Python floats and a nested `episode` dict → only numeric scalars are kept, as
  `numpy.float32` (`success` among them, 1.0 once the task is solved).

Episodes are truncated after `max_episode_steps` (Meta-World's own limit is 500). Tasks are
seeded: the same `seed` gives the same sequence of goal positions across resets.

With `action_bins`, [`BinnedActions`][] turns the `Box` action into `action_bins` discrete bins per
dimension (the GIPO protocol's 256-bin head); [`action_grid`][] is the one home of the bin → action
map, which the TorchRL adapter's `ActionBins` transform uses too.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import gymnasium as gym
import metaworld  # noqa: F401  (registers the Meta-World/* gymnasium ids)
import numpy as np

from gipo_plugins.metaworld.tasks import ACTION_DIM, OBSERVATION_DIM, check_task


class MetaWorldFixes(gym.Wrapper):
    """float32 observations, an honest observation space and a flat numeric `info`."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBSERVATION_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    @staticmethod
    def _clean_info(info: dict[str, Any]) -> dict[str, np.float32]:
        return {k: np.float32(v) for k, v in info.items() if isinstance(v, int | float | np.number)}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs.astype(np.float32), self._clean_info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), self._clean_info(info)


def check_action_bins(bins: int) -> int:
    """Return `bins` if it is an integer >= 2 (a grid with both ends), else raise a `ValueError` saying so."""
    if isinstance(bins, bool) or not isinstance(bins, Integral) or bins < 2:
        raise ValueError(f"action_bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def action_grid(bins: int, low: float | np.ndarray = -1.0, high: float | np.ndarray = 1.0) -> np.ndarray:
    r"""The action of each bin, float32: bin $b \in \{0, \dots, n-1\}$ ↦ $l + (h - l)\,b/(n-1)$.

    The grid includes both ends of $[l, h]$: for Meta-World's $[-1, 1]$ and 256 bins $-1 + 2b/255$,
    as in the GIPO reference protocol. `low` and `high` may be arrays (one range per action
    dimension); the result then has shape `(*low.shape, bins)`, else `(bins,)`.

    Raises:
        ValueError: `bins` is not an integer >= 2 (`check_action_bins`).
    """
    bins = check_action_bins(bins)
    fractions = np.arange(bins, dtype=np.float32) / np.float32(bins - 1)
    low, high = np.asarray(low, np.float32)[..., None], np.asarray(high, np.float32)[..., None]
    return low + (high - low) * fractions


class BinnedActions(gym.ActionWrapper):
    r"""Discrete actions: `MultiDiscrete([bins] * d)`; bin $b$ of dimension $j$ acts $l_j + (h_j - l_j)\,b/(n-1)$.

    $l, h$ are the wrapped env's `Box` bounds (Meta-World's $[-1, 1]^4$), $n$ = `bins`, the map
    [`action_grid`][]. A policy over this space picks one of `bins` values per action dimension
    (RLlib's default head for it: one categorical per dimension, `TorchMultiCategorical`).

    Args:
        env: an env with a one-dimensional `Box` action space.
        bins: bins per action dimension (>= 2).

    Raises:
        ValueError: `bins` < 2 or not an integer; at `step`, an action that is not `d` bin indices in `0..bins-1`.
        TypeError: the env's action space is not a one-dimensional `Box`.
    """

    def __init__(self, env: gym.Env, bins: int):
        super().__init__(env)
        box = env.action_space
        if not isinstance(box, gym.spaces.Box) or len(box.shape) != 1:
            raise TypeError(f"BinnedActions needs a one-dimensional Box action space, got {box}")
        self.bins = check_action_bins(bins)
        self.values = action_grid(self.bins, box.low, box.high)  # [d, bins]: the action of each bin
        self._dims = np.arange(box.shape[0])
        self.action_space = gym.spaces.MultiDiscrete([self.bins] * box.shape[0])

    def action(self, action) -> np.ndarray:
        """The continuous action of the bin indices `action` (`d` integers in `0..bins-1`)."""
        index = np.asarray(action)
        if index.shape != self._dims.shape or index.min() < 0 or index.max() >= self.bins:
            raise ValueError(f"action must be {len(self._dims)} bin indices in 0..{self.bins - 1}, got {action}")
        return self.values[self._dims, index.astype(np.int64)]


def make_metaworld_env(
    task: str = "reach-v3",
    seed: int = 0,
    *,
    max_episode_steps: int = 500,
    action_bins: int | None = None,
    **kwargs: Any,
) -> gym.Env:
    """A seeded Meta-World MT1 task as a gymnasium env with the fixes above.

    Args:
        task: a Meta-World v3 task name, e.g. `"reach-v3"`, `"push-v3"`.
        seed: seeds the task sampler (goal positions) and the env.
        max_episode_steps: truncation horizon (≤ 500, Meta-World's limit).
        action_bins: None: the `Box` action space `[-1, 1]^4`; an integer >= 2: that many bins per
            action dimension (`MultiDiscrete`, [`BinnedActions`][]).
        **kwargs: passed to `gymnasium.make` (e.g. `render_mode`).

    Raises:
        ValueError: unknown task, a horizon outside `1..500` or `action_bins` < 2.
    """
    check_task(task)
    if not 1 <= max_episode_steps <= 500:
        raise ValueError(f"max_episode_steps must be in 1..500, got {max_episode_steps}")
    if action_bins is not None:
        check_action_bins(action_bins)
    env = gym.make(
        "Meta-World/MT1",
        env_name=task,
        seed=seed,
        disable_env_checker=True,
        max_episode_steps=max_episode_steps,
        **kwargs,
    )
    env = MetaWorldFixes(env)
    return env if action_bins is None else BinnedActions(env, action_bins)
