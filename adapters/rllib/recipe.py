"""The RLlib Meta-World recipe: one function that sets up any PPO/APPO-family config for a Meta-World task.

`metaworld_config` takes the config to fill (stock `PPOConfig` / `APPOConfig`, or this adapter's
`GIPOConfig` / `AGIPOConfig`: the GIPO versions differ only in the class) and sets, the same way
for every caller (`examples/rllib_metaworld.py`, `benchmarks.metaworld_stale.rllib_appo`,
`benchmarks.rllib_iteration_overhead`):

- the env `"metaworld/<task>"` (registered here), with `env_config` `max_episode_steps`, `seed`
  and, when given, `reward_scale` (Meta-World returns are ~1000s; the APPO sweep scales them by 0.001)
  and `action_bins` (the GIPO protocol's discretised head: `MultiDiscrete`, that many bins per action
  dimension, RLlib's `TorchMultiCategorical`; its log-ratio is the joint log-ratio over the 4 dimensions,
  as RLlib's `TorchMultiCategorical.logp` sums them, where the TorchRL recipe and the paper use one
  ratio per dimension; see `gipo_plugins.rllib.envs`);
- the env runners: how many, and the rollout fragment length;
- the success metric (`MetaWorldSuccess`: `env_runners/episode_success`), unless `track_success=False`;
- greedy evaluations (`algo.evaluate()`, on demand): `eval_episodes` episodes on one evaluation env
  runner, `explore=False`, on goals seeded `seed + 10 000` (never the training goals);
- APPO's reporting period (`min_iteration_s`), when given, and the seed;
- the algorithm's own settings, passed through to `config.training(**training)`.

```pycon
>>> from gipo_plugins.rllib import AGIPOConfig
>>> from gipo_plugins.rllib.recipe import metaworld_config
>>> config = metaworld_config(AGIPOConfig(), "reach-v3", seed=0, env_runners=2, rollout_fragment_length=50,
...                           reward_scale=0.001, eval_episodes=5, objective="gipo", lr=3e-4)
>>> algo = config.build_algo()
```
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

from gipo_plugins.rllib.envs import ENV_PREFIX, MetaWorldSuccess, register_metaworld_envs

EVAL_SEED_OFFSET = 10_000
"""Evaluation goals are seeded `seed + EVAL_SEED_OFFSET`: never the training goals."""


def metaworld_config(
    config: AlgorithmConfig,
    task: str,
    *,
    seed: int = 0,
    max_episode_steps: int = 500,
    reward_scale: float | None = None,
    action_bins: int | None = None,
    env_runners: int = 1,
    rollout_fragment_length: int | str = "auto",
    eval_episodes: int | None = None,
    min_iteration_s: float | None = None,
    track_success: bool = True,
    **training: Any,
) -> AlgorithmConfig:
    """Set `config` up for the Meta-World task `task` (see the module docstring); returns it.

    Args:
        config: the config to fill, e.g. `AGIPOConfig()`.
        task: a Meta-World task, e.g. `"reach-v3"` (registered as `"metaworld/<task>"`).

    Keyword Args:
        seed: the env seed (runner `i` sub-env `j` uses `seed + 1000 i + j`) and `debugging(seed=...)`.
        max_episode_steps: episode length.
        reward_scale: multiplies the rewards (and the returns in results); None leaves `env_config` without it
            (scale 1).
        action_bins: None: the `Box` action space (a diagonal-Gaussian head); an integer >= 2: that many bins
            per action dimension (`MultiDiscrete`, bin $b$ acting $-1 + 2b/(n-1)$, a multi-categorical head
            with a joint log-ratio).
        env_runners: `num_env_runners` (0: sample in the algorithm's process).
        rollout_fragment_length: the env runners' fragment length (`"auto"`, or e.g. 50 for APPO).
        eval_episodes: greedy evaluation episodes per `algo.evaluate()`; None: no evaluation set up.
        min_iteration_s: `reporting(min_time_s_per_iteration=...)`; None keeps the algorithm's default.
        track_success: log `episode_success` through `MetaWorldSuccess`.
        **training: passed to `config.training(...)` (e.g. `objective`, `lr`, `circular_buffer_num_batches`).

    Raises:
        ValueError: `action_bins` is not None and not an integer >= 2.
    """
    register_metaworld_envs([task])
    env_config: dict[str, Any] = {"max_episode_steps": max_episode_steps, "seed": seed}
    if reward_scale is not None:
        env_config["reward_scale"] = reward_scale
    if action_bins is not None:
        from gipo_plugins.metaworld import check_action_bins  # needs [metaworld]: imported only when asked for

        env_config["action_bins"] = check_action_bins(action_bins)
    config = config.environment(ENV_PREFIX + task, env_config=env_config).env_runners(
        num_env_runners=env_runners, rollout_fragment_length=rollout_fragment_length
    )
    if training:
        config = config.training(**training)
    if track_success:
        config = config.callbacks(MetaWorldSuccess)
    if eval_episodes:
        greedy = type(config).overrides(explore=False, env_config=env_config | {"seed": seed + EVAL_SEED_OFFSET})
        config = config.evaluation(
            evaluation_interval=None,
            evaluation_num_env_runners=1,
            evaluation_duration=eval_episodes,
            evaluation_duration_unit="episodes",
            evaluation_config=greedy,
        )
    if min_iteration_s is not None:
        config = config.reporting(min_time_s_per_iteration=min_iteration_s)
    return config.debugging(seed=seed)


__all__ = ["EVAL_SEED_OFFSET", "metaworld_config"]
