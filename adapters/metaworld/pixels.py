"""Meta-World from pixels for VLA policies: fast headless rendering, state, scripted-expert demonstrations.

Rendering uses MuJoCo's offscreen renderer through `MUJOCO_GL`. MuJoCo reads that variable once,
when it is first imported, so export `MUJOCO_GL=egl` (Mesa's EGL works headless on a CPU;
`osmesa` after `apt-get install libosmesa6`) before anything imports `mujoco` — Meta-World
itself and `gipo_plugins.metaworld` (this module's package) do; `import gipo_plugins.vla` first
sets `egl` as the default. Without a usable backend `MetaWorldImageEnv` raises a `RuntimeError`
that says so. Meta-World's own `render()` runs at ~15 frames/s (4096 shadow map,
4× MSAA, reflections); this renderer switches those off: ~100–150 frames/s at 64×64 on one core.

Observation of `MetaWorldImageEnv`: `image` uint8 `[S, S, 3]` from the `corner` camera
(flipped upright) and `state` float32 `[6]` = hand xyz + goal xyz. At 64×64 the reach goal is 1–2
pixels, so a policy that should reach *any* goal needs the goal through the state (OpenVLA-OFT's
proprioception input), not through the image alone.

Success follows the package's one convention, `episode_success`: an
episode is solved when `info["success"]` is 1 at its **last** step.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable

import metaworld
import mujoco
import numpy as np
from metaworld.policies import ENV_POLICY_MAP

from gipo_plugins.metaworld.tasks import ACTION_DIM, check_task, episode_success

INSTRUCTIONS = {
    "reach-v3": "reach the goal",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "button-press-topdown-v3": "press the button from the top",
    "drawer-close-v3": "close the drawer",
}
"""Language instructions of a few tasks; other tasks get their name in words (see `instruction`)."""
STATE_DIM = 6
"""Size of the `state` observation: hand xyz and goal xyz."""


def instruction(task: str) -> str:
    """The language instruction of a Meta-World task (`"reach the goal"` for `reach-v3`)."""
    check_task(task)
    return INSTRUCTIONS.get(task, task.removesuffix("-v3").replace("-", " "))


def _offscreen_renderer(model: mujoco.MjModel, size: int) -> mujoco.Renderer:
    try:
        renderer = mujoco.Renderer(model, size, size)
    except Exception as error:  # the backend was fixed when mujoco was imported
        backend = os.environ.get("MUJOCO_GL", "<unset>")
        raise RuntimeError(
            f"could not create MuJoCo's offscreen renderer (MUJOCO_GL={backend}): export MUJOCO_GL=egl (or osmesa) "
            "before anything imports mujoco; headless EGL needs the libegl1 and libgl1-mesa-dri packages"
        ) from error
    for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
        renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
    return renderer


class MetaWorldImageEnv:
    """One Meta-World MT1 task rendered to images; `reset(goal_index)` picks one of its 50 goals.

    Args:
        task: Meta-World v3 task name (checked by `check_task`).
        seed: seeds MT1's goal sampler (goal `i` is the same for the same seed).
        image_size: square image side in pixels.
        camera: MuJoCo camera name (`corner`, `corner2`, `corner3`, `gripperPOV`, `behindGripper`).
        max_episode_steps: horizon; episodes run to it (success does not end them).

    Raises:
        ValueError: unknown task, `image_size < 8` or `max_episode_steps < 1`.
        RuntimeError: no offscreen rendering backend (see the module documentation).
    """

    def __init__(self, task: str = "reach-v3", seed: int = 0, *, image_size: int = 64, camera: str = "corner",
                 max_episode_steps: int = 100):  # fmt: skip
        check_task(task)
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.task, self.image_size, self.camera, self.max_episode_steps = task, image_size, camera, max_episode_steps
        self._mt1 = metaworld.MT1(task, seed=seed)
        self.env = self._mt1.train_classes[task]()
        self.env.model.vis.quality.offsamples = 0  # no multisampling: read when the GL context is made
        self._renderer = _offscreen_renderer(self.env.model, image_size)
        # close the GL context before interpreter shutdown tears EGL down (else noisy errors at exit)
        self._finalizer = weakref.finalize(self, self._renderer.close)
        self._obs: np.ndarray | None = None
        self.steps = 0

    @property
    def num_goals(self) -> int:
        """Number of goals (MT1 train tasks) this env cycles through."""
        return len(self._mt1.train_tasks)

    def _observe(self) -> dict[str, np.ndarray]:
        self._renderer.update_scene(self.env.data, camera=self.camera)
        image = np.ascontiguousarray(self._renderer.render()[::-1])  # the corner camera renders upside down
        state = np.concatenate([self._obs[:3], self.env._target_pos]).astype(np.float32)
        return {"image": image, "state": state}

    def reset(self, goal_index: int = 0) -> dict[str, np.ndarray]:
        """Start an episode at goal `goal_index` (modulo `num_goals`); returns the first observation."""
        self.env.set_task(self._mt1.train_tasks[goal_index % self.num_goals])
        self.env._partially_observable = False  # after set_task: the scripted experts read the goal from obs
        self._obs, _ = self.env.reset()
        self.steps = 0
        return self._observe()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool]:
        """`(observation, reward, success, done)`; `success` is this step's, `done` at `max_episode_steps`."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,) or not np.isfinite(action).all():
            raise ValueError(f"action must be {ACTION_DIM} finite numbers, got {action}")
        self._obs, reward, _, _, info = self.env.step(np.clip(action, -1.0, 1.0))
        self.steps += 1
        return self._observe(), float(reward), bool(info["success"]), self.steps >= self.max_episode_steps

    def expert(self) -> Callable[[], np.ndarray]:
        """Meta-World's scripted policy for this task, acting on the current simulator observation."""
        if self.task not in ENV_POLICY_MAP:
            raise ValueError(f"Meta-World has no scripted policy for task {self.task!r}")
        policy = ENV_POLICY_MAP[self.task]()
        return lambda: np.clip(policy.get_action(self._obs), -1.0, 1.0)

    def close(self) -> None:
        self._finalizer()
        self.env.close()


def collect_demonstrations(task: str, episodes: int, *, seed: int = 0, image_size: int = 64,
                           max_episode_steps: int = 100, goal_offset: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Run the scripted expert for `episodes` episodes (goals `goal_offset + i`).

    Returns:
        Stacked per-step arrays `images` `[N, S, S, 3]` uint8, `states` `[N, 6]`, `actions`
        `[N, 4]` and `episode` `[N]` (episode index), and `success` `[episodes]` (success at
        each episode's last step).

    Raises:
        ValueError: `episodes < 1` or a task without a scripted policy.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = MetaWorldImageEnv(task, seed, image_size=image_size, max_episode_steps=max_episode_steps)
    act = env.expert()
    images, states, actions, episode, success = [], [], [], [], []
    for i in range(episodes):
        obs, done, step_success = env.reset(goal_offset + i), False, []
        while not done:
            action = act()
            images.append(obs["image"])
            states.append(obs["state"])
            actions.append(action)
            episode.append(i)
            obs, _, ok, done = env.step(action)
            step_success.append(ok)
        success.append(episode_success(step_success))
    env.close()
    return {"images": np.stack(images), "states": np.stack(states), "actions": np.stack(actions).astype(np.float32),
            "episode": np.array(episode), "success": np.array(success)}  # fmt: skip
