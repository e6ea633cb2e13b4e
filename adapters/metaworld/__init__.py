r"""Meta-World in one place, shared by every adapter: tasks, the state env factory, the success convention.

Needs the `[metaworld]` extra (`import gipo_plugins` itself never imports Meta-World).

- [`make_metaworld_env`][] — a seeded MT1 task as a gymnasium env (float32 observations, an honest
  observation space, a flat numeric `info` with `success`); the TorchRL and RLlib adapters wrap it.
  With `action_bins`, discrete actions: [`BinnedActions`][] (`MultiDiscrete`, bins per dimension).
- [`action_grid`][], [`check_action_bins`][] — the one bin → action map, $l + (h - l)\, b/(n-1)$ (both ends
  of the range included), and its validator; the TorchRL adapter's `ActionBins` transform uses them too.
- [`metaworld_tasks`][], [`check_task`][] — the MT50 task names and the one validator.
- [`episode_success`][] — an episode counts as solved when `success` is 1 at its last step.
- `MetaWorldImageEnv`, `collect_demonstrations`, `instruction`, `STATE_DIM` (module `pixels`) —
  Meta-World from pixels for VLA policies, loaded on first access: importing this package never
  sets up MuJoCo rendering.
"""

from gipo_plugins.metaworld.envs import (
    BinnedActions,
    MetaWorldFixes,
    action_grid,
    check_action_bins,
    make_metaworld_env,
)
from gipo_plugins.metaworld.tasks import ACTION_DIM, OBSERVATION_DIM, check_task, episode_success, metaworld_tasks

__all__ = [
    "ACTION_DIM",
    "OBSERVATION_DIM",
    "BinnedActions",
    "MetaWorldFixes",
    "action_grid",
    "check_action_bins",
    "check_task",
    "episode_success",
    "make_metaworld_env",
    "metaworld_tasks",
]

_PIXELS = ("INSTRUCTIONS", "STATE_DIM", "MetaWorldImageEnv", "collect_demonstrations", "instruction")


def __getattr__(name: str):
    """Lazy access to `gipo_plugins.metaworld.pixels` (offscreen rendering) on first use."""
    if name in _PIXELS:
        from gipo_plugins.metaworld import pixels

        return getattr(pixels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
