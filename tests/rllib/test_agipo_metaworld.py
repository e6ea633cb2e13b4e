"""AGIPO (APPO-based) on Meta-World reach-v3: an async remote env runner, circular buffer, V-trace, Tune name,
checkpoint → restore → train (two learners, faults, exact restores: test_rllib_reliability.py, on CartPole)."""

from __future__ import annotations

import math
import time

import pytest

pytest.importorskip("metaworld")

from ray import tune
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.registry import ALGORITHMS
from ray.tune.registry import get_trainable_cls

from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.rllib import AGIPO, AGIPOConfig, AGIPOTorchLearner, MetaWorldSuccess
from gipo_plugins.rllib.agipo import POLICY_LAG_KEYS

LAG_MEAN = "diff_num_grad_updates_vs_sampler_policy"  # RLlib's own policy-lag metric


def small_config(**training) -> AGIPOConfig:
    return (
        AGIPOConfig()
        .environment("metaworld/reach-v3", env_config={"max_episode_steps": 50, "seed": 0})
        .env_runners(num_env_runners=1, rollout_fragment_length=50)  # two runners: the CartPole fault test
        .training(
            train_batch_size_per_learner=200,
            circular_buffer_num_batches=4,
            circular_buffer_iterations_per_batch=4,
            target_network_update_freq=0.25,  # every 0.25 * 4 * 4 * 200 = 800 trained env steps
        )
        .training(**training)
        .reporting(min_time_s_per_iteration=2)
        .callbacks(MetaWorldSuccess)
        .debugging(seed=0)
    )


def train_rounds(algo, rounds: int, budget_s: float = 120) -> tuple[list[dict], dict]:
    """Train until `rounds` iterations reported a learner update (async APPO reports NaN without one)."""
    stats, deadline = [], time.monotonic() + budget_s
    while len(stats) < rounds and time.monotonic() < deadline:
        result = algo.train()
        learner = result.get("learners", {}).get("default_policy", {})
        if math.isfinite(learner.get("num_module_steps_trained", math.nan)):
            stats.append(learner)
    assert len(stats) >= rounds, f"only {len(stats)} learner rounds in {budget_s} s"
    return stats, result


def check_learner_stats(stats: dict) -> None:
    for key in ("policy_loss", "vf_loss", "mean_IS", "action_log_std_mean", *METRIC_KEYS, *POLICY_LAG_KEYS, LAG_MEAN):
        assert math.isfinite(float(stats[key])), key
    assert 0 <= stats["policy_lag_p50"] <= stats["policy_lag_p95"] <= stats["policy_lag_max"]


def test_train_checkpoint_restore_train(ray_session, tmp_path):
    algo = small_config(sigma=0.7, sigma_neg_ratio=0.5).build_algo()
    try:
        assert isinstance(algo, AGIPO) and algo.config.get_default_learner_class() is AGIPOTorchLearner
        stats, result = train_rounds(algo, 2)
        for round_stats in stats:
            check_learner_stats(round_stats)
        assert result["fault_tolerance"]["num_healthy_workers"] == 1
        assert max(s["policy_lag_max"] for s in stats) >= 1  # asynchronous sampling + buffer reuse: stale data
        assert "episode_success" in result["env_runners"]
        path = algo.save_to_path(tmp_path / "checkpoint")
        iteration = result["training_iteration"]
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(path)
    try:
        assert isinstance(restored, AGIPO)
        assert (restored.config.sigma, restored.config.sigma_neg_ratio, restored.config.objective) == (0.7, 0.5, "gipo")
        stats, result = train_rounds(restored, 1)
        check_learner_stats(stats[-1])
        assert result["training_iteration"] > iteration
    finally:
        restored.stop()


def test_name_resolves_in_tune_and_rllib(ray_session, tmp_path):
    assert get_trainable_cls("AGIPO") is AGIPO
    algo_class, default_config = ALGORITHMS["AGIPO"]()
    assert algo_class is AGIPO and isinstance(default_config, AGIPOConfig)
    tuner = tune.Tuner(
        "AGIPO",  # the only change from tune.Tuner("APPO", ...)
        param_space=small_config(objective="ppo_clip"),
        run_config=tune.RunConfig(stop={"training_iteration": 2}, storage_path=str(tmp_path), verbose=0),
    )
    (result,) = tuner.fit()
    assert result.error is None
    assert result.config["objective"] == "ppo_clip"
    assert result.metrics["training_iteration"] == 2


@pytest.mark.gpu
def test_gpu_learner(ray_session):
    algo = small_config().learners(num_learners=1, num_gpus_per_learner=1).build_algo()
    try:
        stats, _ = train_rounds(algo, 2)
        check_learner_stats(stats[-1])
    finally:
        algo.stop()
