"""The APPO sweep's presets: the two variants differ only in `objective`; `small_kl` turns APPO's KL loss on."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.rllib")

from benchmarks.metaworld_stale import rllib_appo
from gipo_plugins.rllib import AGIPOConfig


@pytest.mark.parametrize("preset_name", ["small", "small_kl"])
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
