"""Reliability on a Ray cluster (CartPole): bad settings in Tune, env-runner faults, exact restores, bad checkpoints."""

from __future__ import annotations

import math
import pickle
import time
from pathlib import Path

import pytest
import torch
from ray import tune
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from rllib_helpers import (
    appo_batch,
    assert_same_grads,
    built_learner,
    freeze,
    loss_and_grads,
    on_learners,
    ppo_batch,
    register_faulty_env,
)

from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.rllib import AGIPOConfig, GIPOConfig

BAD_SETTINGS = [(name, value) for name in ("sigma", "sigma_neg_ratio", "sapo_tau_pos", "sapo_tau_neg") for value in
                (-1, -1.0)] + [("kernel", -1), ("objective", -1)]  # fmt: skip


def gipo_config(**training) -> GIPOConfig:
    return (
        GIPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=2, **training)
        .debugging(seed=0)
    )


def agipo_config(**training) -> AGIPOConfig:
    return (
        AGIPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=1, rollout_fragment_length=50)
        .training(train_batch_size_per_learner=200, **training)
        .reporting(min_time_s_per_iteration=2)  # APPO's default is 10 s
        .debugging(seed=0)
    )


CONFIGS = {"GIPO": gipo_config, "AGIPO": agipo_config}


def stats_of(result: dict) -> dict:
    return result["learners"][DEFAULT_MODULE_ID]


# --- bad settings through Tune -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GIPO", "AGIPO"])
@pytest.mark.parametrize(("setting", "value"), BAD_SETTINGS)
def test_bad_settings_fail_tune_naming_the_setting(ray_session, tmp_path, name, setting, value):
    """Tune validates each trial's config on the driver (RLlib's `default_resource_request`): `fit()` raises."""
    params = CONFIGS[name]().to_dict() | {setting: value}
    tuner = tune.Tuner(name, param_space=params, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match=rf"^{name}Config: (unknown )?{setting}\b"):
        tuner.fit()


# --- env-runner faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GIPO", "AGIPO"])
def test_a_failing_env_runner_is_restarted_and_training_goes_on(ray_session, tmp_path, name):
    """Runner 1's env raises once, mid-run (its 300th step); RLlib restarts the runner, training goes on."""
    flag = tmp_path / "failed"
    config = (
        CONFIGS[name]()
        .environment(register_faulty_env(), env_config={"flag": str(flag), "fail_on_runner": 1, "fail_at_step": 300})
        .env_runners(num_env_runners=2, rollout_fragment_length=50, sample_timeout_s=10)
        .fault_tolerance(restart_failed_env_runners=True, delay_between_env_runner_restarts_s=1.0)
    )
    algo = config.build_algo()
    try:
        rounds, sampled = [], []  # learner results; env steps sampled per iteration (PPO: a full batch each)
        deadline, restarted_at = time.monotonic() + 240, None
        while time.monotonic() < deadline:
            result = algo.train()
            sampled.append(result["env_runners"].get("num_env_steps_sampled", 0))
            stats = result.get("learners", {}).get(DEFAULT_MODULE_ID, {})
            if "policy_loss" in stats and math.isfinite(stats.get("num_module_steps_trained", math.nan)):
                rounds.append(stats)  # APPO: an iteration in which no update finished reports NaN
            tolerance = result["fault_tolerance"]
            if restarted_at is None and tolerance["num_remote_worker_restarts"] >= 1:
                restarted_at = len(rounds)
            if restarted_at is not None and len(rounds) >= restarted_at + 2 and tolerance["num_healthy_workers"] == 2:
                break
        assert flag.exists()  # the env did raise
        assert restarted_at is not None, result["fault_tolerance"]  # RLlib's own restart counter
        assert result["fault_tolerance"]["num_healthy_workers"] == 2
        assert algo.env_runner_group.num_healthy_remote_workers() == 2
        assert len(rounds) >= restarted_at + 2  # the learner kept training after the restart
        for stats in rounds:
            assert all(math.isfinite(float(stats[key])) for key in ("policy_loss", *METRIC_KEYS))
        if name == "GIPO":  # synchronous sampling: no iteration lost the healthy runner's steps
            assert all(steps >= 200 for steps in sampled), sampled
    finally:
        algo.stop()


# --- exact restores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GIPO", "AGIPO"])
def test_restore_continues_bitwise(ray_session, tmp_path, name):
    """save_to_path → from_checkpoint → the next loss and gradients on a fixed batch equal the original's, bitwise."""
    training = {"objective": "gipo", "sigma": 0.7, "sigma_neg_ratio": 0.5, "use_kl_loss": True, "kl_coeff": 0.3}
    config = CONFIGS[name](**training)
    with built_learner(config.copy(copy_frozen=False)) as (_, local):  # only to shape a batch for this module
        batch = (ppo_batch if name == "GIPO" else appo_batch)(local, seed=5, shift=1.0)
    algo = config.build_algo()
    try:
        for _ in range(3):
            algo.train()
        on_learners(algo, freeze)
        path = algo.save_to_path(tmp_path / "checkpoint")
        restored = Algorithm.from_checkpoint(path)
        try:
            assert type(restored) is type(algo)
            on_learners(restored, freeze)
            (first,) = on_learners(algo, loss_and_grads, batch=batch)
            (second,) = on_learners(restored, loss_and_grads, batch=batch)
        finally:
            restored.stop()
    finally:
        algo.stop()
    assert second["sigma"] == 0.7
    if name == "GIPO":  # PPO adapts kl_coeff after each round (stock PPO does not checkpoint it; GIPO does)
        assert float(first["kl_coeff"]) != 0.3
    assert torch.equal(first["kl_coeff"], second["kl_coeff"])
    assert torch.equal(first["loss"], second["loss"])  # bitwise on the CPU
    assert_same_grads(first["grads"], second["grads"], exact=True)


# --- distributed -------------------------------------------------------------------------------------


def test_agipo_two_learners(ray_session):
    """num_learners=2 (DDP over gloo on CPU) with an asynchronous env runner."""
    algo = agipo_config(sigma=0.5).learners(num_learners=2).build_algo()
    try:
        deadline, stats = time.monotonic() + 120, {}
        while time.monotonic() < deadline and not math.isfinite(stats.get("num_module_steps_trained", math.nan)):
            stats = algo.train().get("learners", {}).get(DEFAULT_MODULE_ID, {})
        for key in ("policy_loss", *METRIC_KEYS):
            assert math.isfinite(float(stats[key])), key
        assert len(on_learners(algo, lambda learner: learner.config.sigma)) == 2
    finally:
        algo.stop()


# --- truncated and mismatched checkpoints ------------------------------------------------------------


@pytest.fixture(scope="module")
def gipo_checkpoint(ray_session, tmp_path_factory) -> Path:
    algo = gipo_config(sigma=0.7).build_algo()
    try:
        algo.train()
        return Path(algo.save_to_path(tmp_path_factory.mktemp("gipo") / "checkpoint"))
    finally:
        algo.stop()


def _edit_pickle(path: Path, edit) -> None:
    data = pickle.loads(path.read_bytes())
    edit(data)
    path.write_bytes(pickle.dumps(data))


def test_checkpoint_without_a_config_setting_is_refused(gipo_checkpoint, tmp_path):
    import shutil

    broken = Path(shutil.copytree(gipo_checkpoint, tmp_path / "broken"))
    _edit_pickle(broken / "class_and_ctor_args.pkl", lambda info: info["ctor_args_and_kwargs"][0][0].pop("sigma"))
    with pytest.raises(ValueError, match=r"lacks the setting\(s\) \['sigma'\] of objective 'gipo'"):
        Algorithm.from_checkpoint(broken)


def test_checkpoint_without_the_learners_gipo_state_is_refused(gipo_checkpoint, tmp_path):
    import shutil

    broken = Path(shutil.copytree(gipo_checkpoint, tmp_path / "broken"))
    _edit_pickle(broken / "learner_group" / "learner" / "state.pkl", lambda state: state.pop("gipo"))
    with pytest.raises(ValueError, match="has no 'gipo' entry"):
        Algorithm.from_checkpoint(broken)


@pytest.mark.parametrize(
    ("training", "message"),
    [({"objective": "sapo"}, "trained with objective='gipo', this learner has objective='sapo'"),
     ({"sigma": 1.0}, "sigma: checkpoint 0.7, this learner 1.0")],
)  # fmt: skip
def test_restoring_into_other_settings_is_refused(gipo_checkpoint, training, message):
    algo = gipo_config(**training).build_algo()
    try:
        with pytest.raises(ValueError, match=message):
            algo.restore_from_path(gipo_checkpoint)
        weights = "learner_group/learner/rl_module"
        algo.restore_from_path(gipo_checkpoint / weights, component=weights)  # the weights alone: fine
    finally:
        algo.stop()


def test_stock_ppo_checkpoint_is_refused_by_a_gipo_learner(ray_session, gipo_checkpoint, tmp_path):
    ppo = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0).build_algo()
    try:
        path = ppo.save_to_path(tmp_path / "ppo")
    finally:
        ppo.stop()
    algo = gipo_config().build_algo()
    try:
        with pytest.raises(ValueError, match="written by another learner"):
            algo.restore_from_path(path)
    finally:
        algo.stop()
