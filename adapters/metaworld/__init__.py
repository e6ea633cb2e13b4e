"""Meta-World in one place, shared by every adapter: tasks, the state env factory, the success convention.

Needs the ``[metaworld]`` extra (``import gipo_plugins`` itself never imports Meta-World).

- :func:`make_metaworld_env` — a seeded MT1 task as a gymnasium env (float32 observations, an honest
  observation space, a flat numeric ``info`` with ``success``); the TorchRL and RLlib adapters wrap it.
- :func:`metaworld_tasks`, :func:`check_task` — the MT50 task names and the one validator.
- :func:`episode_success` — an episode counts as solved when ``success`` is 1 at its last step.
"""

from gipo_plugins.metaworld.envs import MetaWorldFixes, make_metaworld_env
from gipo_plugins.metaworld.tasks import ACTION_DIM, OBSERVATION_DIM, check_task, episode_success, metaworld_tasks

__all__ = [
    "ACTION_DIM",
    "OBSERVATION_DIM",
    "MetaWorldFixes",
    "check_task",
    "episode_success",
    "make_metaworld_env",
    "metaworld_tasks",
]
