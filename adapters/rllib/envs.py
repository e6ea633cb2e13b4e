"""Meta-World tasks as RLlib envs: `"metaworld/<task>"` ids and a success metric.

Actions: the `Box` $[-1, 1]^4$ (RLlib's default head: a diagonal Gaussian, `TorchDiagGaussian`) or, with
`env_config["action_bins"]` $= n$, the GIPO protocol's discretised head: `MultiDiscrete([n] * 4)`, bin
$b$ acting $-1 + 2b/(n-1)$ (`gipo_plugins.metaworld.BinnedActions`). RLlib's default catalog gives that
space a `TorchMultiCategorical` head (one categorical per dimension) whose `logp` is the joint
log-probability, the sum over the 4 dimensions: the log-ratio of GIPO / AGIPO (and APPO's V-trace) is
then the joint log-ratio over the 4 dimensions (RLlib's `TorchMultiCategorical.logp` sums them); the
TorchRL recipe and the paper use one ratio per dimension. (RLlib has no public per-dimension log-prob: the
per-dimension categoricals sit in the distribution's private `_cats`, and the env runners store only
the joint `Columns.ACTION_LOGP`.)
"""

from __future__ import annotations

from collections.abc import Iterable

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.tune.registry import register_env

ENV_PREFIX = "metaworld/"


def _create(task: str):
    def creator(env_config):
        from gipo_plugins.metaworld import make_metaworld_env

        # Distinct, reproducible goal sequences per env runner and sub-env.
        seed = int(env_config.get("seed", 0)) + 1000 * getattr(env_config, "worker_index", 0)
        seed += getattr(env_config, "vector_index", 0)
        env = make_metaworld_env(
            task,
            seed=seed,
            max_episode_steps=int(env_config.get("max_episode_steps", 500)),
            action_bins=env_config.get("action_bins"),
        )
        scale = float(env_config.get("reward_scale", 1.0))
        if scale != 1.0:
            import gymnasium as gym

            env = gym.wrappers.TransformReward(env, lambda reward: scale * reward)
        return env

    return creator


def register_metaworld_envs(tasks: Iterable[str] | None = None) -> list[str]:
    """Register `"metaworld/<task>"` with RLlib/Tune for each task (default: all 50 MT50 tasks).

    `env_config` keys: `seed` (base seed; runner `i` sub-env `j` uses `seed + 1000 i + j`),
    `max_episode_steps` (default 500), `reward_scale` (default 1; the returns in results are scaled
    too) and `action_bins` (default None: the `Box` action space; an integer >= 2: that many bins per
    action dimension, a `MultiDiscrete` space, see the module notes). Call before `ray.init` or after:
    Tune's registry reaches remote env runners either way. Ray keeps registrations per cluster, so after
    `ray.shutdown()` and a new `ray.init()` call it again. Returns the registered ids.
    """
    if tasks is None:
        from gipo_plugins.metaworld import metaworld_tasks

        tasks = metaworld_tasks()
    ids = []
    for task in tasks:
        register_env(ENV_PREFIX + task, _create(task))
        ids.append(ENV_PREFIX + task)
    return ids


class MetaWorldSuccess(RLlibCallback):
    """Logs `episode_success` per finished episode: 1 if solved at its last step (the shared convention,
    `gipo_plugins.metaworld.episode_success`).

    Appears in results as `env_runners/episode_success` (mean over the reporting window).
    """

    def on_episode_end(self, *, episode, prev_episode_chunks=None, metrics_logger=None, **kwargs) -> None:
        from gipo_plugins.metaworld import episode_success

        chunks = [*(prev_episode_chunks or []), episode]
        success = episode_success(float(info.get("success", 0.0)) for chunk in chunks for info in chunk.get_infos())
        metrics_logger.log_value("episode_success", success, reduce="mean", window=100)
