"""The APPO sweep's presets: the two variants differ only in `objective`; `small_kl` turns APPO's KL loss on."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.rllib")

from benchmarks.metaworld_stale import rllib_appo
from gipo_plugins.rllib import AGIPOConfig


@pytest.mark.parametrize("preset_name", ["small", "small_kl", "light", "small_anchor"])
def test_variants_differ_only_in_objective_and_validate(preset_name):
    preset = rllib_appo.PRESETS[preset_name]
    gipo, clip = (rllib_appo.training_settings(preset, v) for v in rllib_appo.VARIANTS)
    assert {k for k in gipo if gipo[k] != clip[k]} == {"objective"}
    config = AGIPOConfig().environment("CartPole-v1").training(**gipo)
    config.validate()
    assert config.use_kl_loss is (preset_name == "small_kl")  # small keeps APPO's default: no KL loss
    if config.use_kl_loss:  # APPO's own defaults, turned on
        defaults = AGIPOConfig()
        assert (config.kl_coeff, config.kl_target) == (defaults.kl_coeff, defaults.kl_target) == (1.0, 0.01)
    assert config.behaviour_kl_coeff == (0.1 if preset_name == "small_anchor" else 0.0)  # explicit, both arms
    assert config.circular_buffer_iterations_per_batch == (2 if preset_name == "light" else 20)


def test_the_recipe_builds_a_runs_config_as_the_sweep_ran_it():
    from gipo_plugins.rllib import MetaWorldSuccess

    config = rllib_appo.run_config("reach-v3", "gipo", 2, rllib_appo.PRESETS["small_kl"])
    assert config.env == "metaworld/reach-v3"
    assert config.env_config == {"max_episode_steps": 500, "seed": 2, "reward_scale": 0.001}
    assert (config.num_env_runners, config.rollout_fragment_length, config.seed) == (2, 50, 2)
    assert config.callbacks_class is MetaWorldSuccess and config.min_time_s_per_iteration == 10.0
    assert config.evaluation_duration == 5 and config.evaluation_num_env_runners == 1
    assert config.evaluation_config["explore"] is False and config.evaluation_config["env_config"]["seed"] == 10_002
    assert config.behaviour_kl_coeff == 0.0 and config.objective == "gipo" and config.use_kl_loss  # set explicitly
