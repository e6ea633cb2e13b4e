"""Meta-World from pixels for VLA policies: fast headless rendering, state, expert demonstrations.

Rendering uses MuJoCo's offscreen renderer through ``MUJOCO_GL`` (``egl`` by default here: Mesa's
EGL works headless on CPU; ``osmesa`` after ``apt-get install libosmesa6``). It must be chosen
before MuJoCo is first imported, so import this module first or export ``MUJOCO_GL=egl``.
Meta-World's own ``render()`` runs at ~15 fps (4096 shadow map, 4× MSAA, reflections); this
renderer switches those off and runs at ~100–150 fps at 64×64 on one CPU core.

Observation of :class:`MetaWorldImageEnv`: ``image`` uint8 ``[S, S, 3]`` from the ``corner`` camera
(flipped upright) and ``state`` float32 ``[6]`` = hand xyz + goal xyz. At 64×64 the reach goal is 1–2
pixels, so the goal reaches the policy through the state tokens (OpenVLA-OFT's proprio input), not
through the image alone.
"""

from __future__ import annotations

import os
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")

from collections.abc import Callable

import metaworld
import mujoco
import numpy as np
from metaworld.policies import ENV_POLICY_MAP

INSTRUCTIONS = {
    "reach-v3": "reach the goal",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "button-press-topdown-v3": "press the button from the top",
    "drawer-close-v3": "close the drawer",
}
STATE_DIM = 6


def instruction(task: str) -> str:
    """The language instruction of a Meta-World task (``"reach the goal"`` for ``reach-v3``)."""
    return INSTRUCTIONS.get(task, task.removesuffix("-v3").replace("-", " "))


class MetaWorldImageEnv:
    """One Meta-World MT1 task rendered to images; ``reset(goal_index)`` picks one of its 50 goals.

    Args:
        task: Meta-World v3 task name.
        seed: seeds MT1's goal sampler (goal ``i`` is the same for the same seed).
        image_size: square image side.
        camera: MuJoCo camera name.
        max_episode_steps: horizon; episodes run to it (success does not end them).
    """

    def __init__(self, task: str = "reach-v3", seed: int = 0, *, image_size: int = 64, camera: str = "corner",
                 max_episode_steps: int = 100):  # fmt: skip
        if task not in ENV_POLICY_MAP:
            raise ValueError(f"unknown Meta-World task {task!r}")
        self.task, self.image_size, self.camera, self.max_episode_steps = task, image_size, camera, max_episode_steps
        self._mt1 = metaworld.MT1(task, seed=seed)
        self.env = self._mt1.train_classes[task]()
        self.env.model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(self.env.model, image_size, image_size)
        for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
            self._renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        # close the GL context before interpreter shutdown tears EGL down (else noisy errors at exit)
        self._finalizer = weakref.finalize(self, self._renderer.close)
        self._obs: np.ndarray | None = None
        self.steps = 0

    @property
    def num_goals(self) -> int:
        return len(self._mt1.train_tasks)

    def _observe(self) -> dict[str, np.ndarray]:
        self._renderer.update_scene(self.env.data, camera=self.camera)
        image = np.ascontiguousarray(self._renderer.render()[::-1])  # the corner camera renders upside down
        state = np.concatenate([self._obs[:3], self.env._target_pos]).astype(np.float32)
        return {"image": image, "state": state}

    def reset(self, goal_index: int = 0) -> dict[str, np.ndarray]:
        self.env.set_task(self._mt1.train_tasks[goal_index % self.num_goals])
        self.env._partially_observable = False  # after set_task: the scripted experts read the goal from obs
        self._obs, _ = self.env.reset()
        self.steps = 0
        return self._observe()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool]:
        """``(observation, reward, success, done)``; ``done`` at ``max_episode_steps``."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if action.shape != (4,) or not np.isfinite(action).all():
            raise ValueError(f"action must be 4 finite numbers, got {action}")
        self._obs, reward, _, _, info = self.env.step(action)
        self.steps += 1
        return self._observe(), float(reward), bool(info["success"]), self.steps >= self.max_episode_steps

    def expert(self) -> Callable[[], np.ndarray]:
        """Meta-World's scripted policy for this task, acting on the current simulator observation."""
        policy = ENV_POLICY_MAP[self.task]()
        return lambda: np.clip(policy.get_action(self._obs), -1.0, 1.0)

    def close(self) -> None:
        self._finalizer()
        self.env.close()


def collect_demonstrations(task: str, episodes: int, *, seed: int = 0, image_size: int = 64,
                           max_episode_steps: int = 100, goal_offset: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Run the scripted expert for ``episodes`` (goals ``goal_offset + i``); returns stacked arrays
    ``images`` [N, S, S, 3] uint8, ``states`` [N, 6], ``actions`` [N, 4], ``episode`` [N] and the
    per-episode ``success`` [episodes]."""
    env = MetaWorldImageEnv(task, seed, image_size=image_size, max_episode_steps=max_episode_steps)
    act = env.expert()
    images, states, actions, episode, success = [], [], [], [], []
    for i in range(episodes):
        obs, done, solved = env.reset(goal_offset + i), False, False
        while not done:
            action = act()
            images.append(obs["image"])
            states.append(obs["state"])
            actions.append(action)
            episode.append(i)
            obs, _, ok, done = env.step(action)
            solved |= ok
        success.append(solved)
    env.close()
    return {"images": np.stack(images), "states": np.stack(states), "actions": np.stack(actions).astype(np.float32),
            "episode": np.array(episode), "success": np.array(success)}  # fmt: skip
