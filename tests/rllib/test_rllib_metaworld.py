"""GIPO (PPO-based) on Meta-World reach-v3: remote env runner, Tune name swap, two learners, checkpoints."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("metaworld")

from ray import tune
from ray.rllib.algorithms.algorithm import Algorithm
from ray.tune.registry import get_trainable_cls

from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.rllib import GIPO, GIPOConfig, MetaWorldSuccess  # "metaworld/reach-v3": ray_session registers it


def small_config(**training) -> GIPOConfig:
    return (
        GIPOConfig()
        .environment("metaworld/reach-v3", env_config={"max_episode_steps": 50, "seed": 0})
        .env_runners(num_env_runners=1, rollout_fragment_length=100)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=2, vf_clip_param=100.0, **training)
        .callbacks(MetaWorldSuccess)
        .debugging(seed=0)
    )


def learner_results(result: dict) -> dict:
    return result["learners"]["default_policy"]


def check_result(result: dict) -> None:
    stats = learner_results(result)
    for key in ("policy_loss", "vf_loss", *METRIC_KEYS):
        assert math.isfinite(float(stats[key])), key
    assert "episode_success" in result["env_runners"]


def test_two_iterations_with_a_remote_env_runner(ray_session):
    algo = small_config(sigma=0.5).build_algo()
    try:
        assert isinstance(algo, GIPO)
        for _ in range(2):
            result = algo.train()
        check_result(result)
        assert result["env_runners"]["num_episodes_lifetime"] >= 4  # 400 steps of 50-step episodes
    finally:
        algo.stop()


def test_name_swap_resolves_in_tune(ray_session, tmp_path):
    assert get_trainable_cls("GIPO") is GIPO
    tuner = tune.Tuner(
        "GIPO",  # the only change from tune.Tuner("PPO", ...)
        param_space=small_config(),
        run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path), verbose=0),
    )
    (result,) = tuner.fit()
    assert result.error is None
    check_result(result.metrics)


def test_algo_class_as_string_resolves():
    config = small_config()
    config.algo_class = "GIPO"
    from ray.rllib.algorithms.registry import ALGORITHMS

    algo_class, default_config = ALGORITHMS["GIPO"]()
    assert algo_class is GIPO and isinstance(default_config, GIPOConfig)
    assert get_trainable_cls(config.algo_class) is GIPO  # what build_algo() does with a string algo_class


def test_two_learners(ray_session):
    algo = small_config().learners(num_learners=2).build_algo()
    try:
        result = algo.train()
        check_result(result)
    finally:
        algo.stop()


def test_checkpoint_restores_gipo_settings_and_trains(ray_session, tmp_path):
    algo = small_config(sigma=0.7, sigma_neg_ratio=0.5).build_algo()
    try:
        algo.train()
        path = algo.save_to_path(tmp_path / "checkpoint")
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(path)
    try:
        assert isinstance(restored, GIPO)
        assert (restored.config.sigma, restored.config.sigma_neg_ratio) == (0.7, 0.5)
        result = restored.train()
        check_result(result)
        assert result["training_iteration"] == 2
    finally:
        restored.stop()


@pytest.mark.gpu
def test_gpu_learner(ray_session):
    algo = small_config().learners(num_learners=1, num_gpus_per_learner=1).build_algo()
    try:
        check_result(algo.train())
    finally:
        algo.stop()
