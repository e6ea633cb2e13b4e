"""The action head on RLlib: Meta-World's 256-bin head (`action_bins`, a joint log-ratio) and a Gaussian head's
logged mean log-std (`action_log_std_mean`, GIPO and AGIPO learners)."""

from __future__ import annotations

import math
import time

import gymnasium as gym
import pytest
import torch
from host_syncs import HostSyncCounter
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian, TorchMultiCategorical
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO
from rllib_helpers import BATCH, FRAGMENT, appo_batch, built_learner, loss_of, ppo_batch

from gipo_plugins.rllib import AGIPOConfig, GIPOConfig
from gipo_plugins.rllib.learner import ACTION_LOG_STD_MEAN_KEY, action_head_stats
from gipo_plugins.rllib.recipe import metaworld_config

PENDULUM_OBS, PENDULUM_ACT = 3, 1


def gaussian_batch(learner, appo: bool, seed: int = 0) -> dict:
    """A Pendulum (Box action: RLlib's `TorchDiagGaussian` head) train batch for PPO or, `appo=True`, APPO."""
    gen = torch.Generator().manual_seed(seed)
    batch = {Columns.OBS: torch.randn(BATCH, PENDULUM_OBS, generator=gen)}
    with torch.no_grad():
        inputs = learner.module[DEFAULT_MODULE_ID].unwrapped().forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    inputs = inputs + 0.3 * torch.randn(inputs.shape, generator=gen)
    dist = TorchDiagGaussian.from_logits(inputs)
    actions = dist.sample()
    batch |= {Columns.ACTIONS: actions, Columns.ACTION_LOGP: dist.logp(actions), Columns.ACTION_DIST_INPUTS: inputs,
              Columns.LOSS_MASK: torch.rand(BATCH, generator=gen) > 0.25}  # fmt: skip
    if appo:
        return batch | {Columns.REWARDS: torch.randn(BATCH, generator=gen),
                        Columns.TERMINATEDS: torch.rand(BATCH, generator=gen) > 0.9,
                        WEIGHTS_SEQ_NO: torch.randint(0, 4, (BATCH,), generator=gen)}  # fmt: skip
    return batch | {Postprocessing.ADVANTAGES: torch.randn(BATCH, generator=gen),
                    Postprocessing.VALUE_TARGETS: torch.randn(BATCH, generator=gen)}  # fmt: skip


def logged_or_none(learner, key: str) -> float | None:
    """The value `key` logged for the default module, None if it was not logged."""
    learner.log_pending_stats()
    value = learner.metrics.peek(DEFAULT_MODULE_ID).get(key)
    return None if value is None else float(torch.as_tensor(value))


@pytest.mark.parametrize("config_class", [GIPOConfig, AGIPOConfig])
def test_gaussian_head_logs_its_mean_log_std(config_class):
    appo = config_class is AGIPOConfig
    config = config_class().environment("Pendulum-v1").env_runners(rollout_fragment_length=FRAGMENT)
    learner = config.debugging(seed=0).build_learner(env=gym.make("Pendulum-v1"))
    try:
        with torch.no_grad():  # make the log-std half differ per sample and from 0 (RLlib initialises it near 0)
            for p in learner.module[DEFAULT_MODULE_ID].unwrapped().parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        batch = gaussian_batch(learner, appo)
        loss_of(config, learner, batch)
        with torch.no_grad():
            inputs = learner.module[DEFAULT_MODULE_ID].unwrapped().forward_train(batch)[Columns.ACTION_DIST_INPUTS]
        log_std, mask = inputs[:, PENDULUM_ACT:], batch[Columns.LOSS_MASK]
        expected = float(log_std[mask].mean())
        assert abs(expected - float(log_std.mean())) > 1e-4  # the mask matters on this batch
        logged = logged_or_none(learner, ACTION_LOG_STD_MEAN_KEY)
        assert logged is not None and math.isfinite(logged)
        assert logged == pytest.approx(expected, rel=1e-5, abs=1e-6)
    finally:
        learner.shutdown()


@pytest.mark.parametrize("config_class", [GIPOConfig, AGIPOConfig])
def test_categorical_head_logs_no_log_std(config_class):
    with built_learner(config_class()) as (config, learner):
        batch = appo_batch(learner) if config_class is AGIPOConfig else ppo_batch(learner)
        loss_of(config, learner, batch)  # CartPole: a categorical head
        assert logged_or_none(learner, "entropy") is not None
        assert logged_or_none(learner, ACTION_LOG_STD_MEAN_KEY) is None


def test_action_head_stats_needs_no_host_sync():
    inputs, mask = torch.randn(16, 8), torch.rand(16) > 0.5
    with HostSyncCounter() as counter:
        stats = action_head_stats(TorchDiagGaussian.from_logits(inputs), inputs, mask)
        none = action_head_stats(TorchMultiCategorical.from_logits(inputs, input_lens=[4, 4]), inputs, mask)
    assert counter.count == 0, counter.ops
    assert set(stats) == {ACTION_LOG_STD_MEAN_KEY} and none == {}
    assert float(stats[ACTION_LOG_STD_MEAN_KEY]) == pytest.approx(float(inputs[mask, 4:].mean()), rel=1e-5)


def test_recipe_puts_action_bins_into_env_config():
    pytest.importorskip("metaworld")
    config = metaworld_config(AGIPOConfig(), "reach-v3", action_bins=256, eval_episodes=2)
    assert config.env_config["action_bins"] == 256
    assert config.evaluation_config["env_config"]["action_bins"] == 256  # the greedy evaluations act binned too
    assert "action_bins" not in metaworld_config(AGIPOConfig(), "reach-v3").env_config  # default: the Box
    for bins in (1, 0, 2.5):
        with pytest.raises(ValueError, match="action_bins must be an integer >= 2"):
            metaworld_config(AGIPOConfig(), "reach-v3", action_bins=bins)


def test_binned_presets_reach_the_config():
    pytest.importorskip("metaworld")
    from benchmarks.metaworld_stale.rllib_appo import LEARNER_KEYS, PRESETS, differences, run_config

    assert ACTION_LOG_STD_MEAN_KEY in LEARNER_KEYS and "entropy" in LEARNER_KEYS
    for name, base in (("binned", "small"), ("binned_light", "light")):
        # the same runs as the base but for the head, and paired with it on the page
        preset, other = PRESETS[name], PRESETS[base]
        assert preset.against == base and (preset.tasks, preset.seeds) == (other.tasks, other.seeds), name
        assert differences(preset, other) == "`action_bins` None there, 256 here", name
        assert run_config("reach-v3", "gipo", 0, preset).env_config["action_bins"] == 256
    assert "action_bins" not in run_config("reach-v3", "gipo", 0, PRESETS["small"]).env_config


def test_binned_agipo_has_a_joint_multicategorical_head_and_trains(ray_session):
    pytest.importorskip("metaworld")
    config = metaworld_config(
        AGIPOConfig(), "reach-v3", seed=0, max_episode_steps=50, reward_scale=0.001, action_bins=256,
        env_runners=1, rollout_fragment_length=50, min_iteration_s=1.0, objective="gipo", behaviour_kl_coeff=0.0,
        train_batch_size_per_learner=100, circular_buffer_num_batches=2, circular_buffer_iterations_per_batch=2,
    )  # fmt: skip
    algo = config.build_algo()
    try:
        module = algo.get_module()
        assert module.action_space == gym.spaces.MultiDiscrete([256] * 4)
        dist_cls = module.get_train_action_dist_cls()
        assert issubclass(dist_cls, TorchMultiCategorical)
        dist = dist_cls.from_logits(torch.zeros(3, 4 * 256))
        actions = dist.sample()
        assert actions.shape == (3, 4) and int(actions.max()) < 256
        # the log-prob RLlib (and so AGIPO's ratio) uses is the joint one: the sum over the 4 dimensions
        torch.testing.assert_close(dist.logp(actions), torch.full((3,), -4 * math.log(256)))

        learner, deadline = {}, time.monotonic() + 120
        while not math.isfinite(learner.get("num_module_steps_trained", math.nan)) and time.monotonic() < deadline:
            result = algo.train()  # asynchronous: an iteration may finish before the learner's first update
            learner = result.get("learners", {}).get(DEFAULT_MODULE_ID, {})
        assert math.isfinite(learner.get("num_module_steps_trained", math.nan)), "no learner update in 120 s"
        for key in ("policy_loss", "vf_loss", "entropy", "log_ratio_abs_p95", "dead_fraction"):
            assert math.isfinite(float(learner[key])), key
        assert 0 < float(learner["entropy"]) <= 4 * math.log(256) + 1e-4  # a joint entropy of 4 categoricals
        assert ACTION_LOG_STD_MEAN_KEY not in learner  # no log-std for a categorical head
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] > 0
    finally:
        algo.stop()
