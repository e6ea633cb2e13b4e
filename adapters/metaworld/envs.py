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
"""

from __future__ import annotations

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


def make_metaworld_env(
    task: str = "reach-v3", seed: int = 0, *, max_episode_steps: int = 500, **kwargs: Any
) -> gym.Env:
    """A seeded Meta-World MT1 task as a gymnasium env with the fixes above.

    Args:
        task: a Meta-World v3 task name, e.g. `"reach-v3"`, `"push-v3"`.
        seed: seeds the task sampler (goal positions) and the env.
        max_episode_steps: truncation horizon (≤ 500, Meta-World's limit).
        **kwargs: passed to `gymnasium.make` (e.g. `render_mode`).

    Raises:
        ValueError: unknown task or a horizon outside `1..500`.
    """
    check_task(task)
    if not 1 <= max_episode_steps <= 500:
        raise ValueError(f"max_episode_steps must be in 1..500, got {max_episode_steps}")
    env = gym.make(
        "Meta-World/MT1",
        env_name=task,
        seed=seed,
        disable_env_checker=True,
        max_episode_steps=max_episode_steps,
        **kwargs,
    )
    return MetaWorldFixes(env)
