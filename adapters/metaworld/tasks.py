"""The Meta-World task list, its validator and the one success convention every adapter uses."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

OBSERVATION_DIM = 39
"""State observation size of every Meta-World v3 task (hand, gripper, two objects, goal)."""
ACTION_DIM = 4
"""Action size: end-effector xyz displacement and gripper effort, each in [-1, 1]."""


@cache
def metaworld_tasks() -> tuple[str, ...]:
    """Names of the 50 Meta-World v3 tasks (MT50), e.g. `"reach-v3"`."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return tuple(ALL_V3_ENVIRONMENTS)


def check_task(task: str) -> str:
    """Return `task` if it is a Meta-World v3 task, else raise a `ValueError` listing a few valid ones."""
    tasks = metaworld_tasks()
    if task not in tasks:
        close = [t for t in tasks if task.split("-")[0] in t] or sorted(tasks)[:5]
        raise ValueError(f"unknown Meta-World task {task!r}; e.g. {', '.join(close[:5])} (all: metaworld_tasks())")
    return task


def episode_success(step_success: Iterable[float]) -> float:
    """An episode's success: Meta-World's per-step `info["success"]` at the episode's **last** step.

    The convention of the GIPO reference protocol ("solved at the end", not "touched the goal
    once"); every adapter's success metric and every evaluation here uses it.
    """
    last = 0.0
    for last in step_success:  # noqa: B007
        pass
    return float(last)
