"""GIPO's settings on RLlib configs: names from the registry, checks where set, no silent replacement (no cluster)."""

from __future__ import annotations

import pickle

import pytest
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.impala import IMPALAConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from rllib_helpers import built_learner, loss_of, module, ppo_batch

from gipo_plugins import Hyperparameter, all_hyperparameters, check_positive, register_objective, unregister_objective
from gipo_plugins.objectives import capped_exp
from gipo_plugins.rllib import AGIPO, GIPO, AGIPOConfig, GIPOConfig
from gipo_plugins.rllib.settings import owned_settings, rllib_name, settings_table

CONFIGS = [GIPOConfig, AGIPOConfig]

# every GIPO setting with bad values, RLlib's "deprecated" sentinel -1 / -1.0 among them
BAD_VALUES = [
    ("sigma", -1), ("sigma", -1.0), ("sigma", 0.0), ("sigma", float("nan")), ("sigma", "1"),
    ("sigma_neg_ratio", -1), ("sigma_neg_ratio", -1.0), ("sigma_neg_ratio", float("inf")),
    ("kernel", -1), ("kernel", "box"),
    ("sapo_tau_pos", -1), ("sapo_tau_pos", -1.0), ("sapo_tau_neg", -1), ("sapo_tau_neg", -1.0),
    ("objective", -1), ("objective", "trpo"),
]  # fmt: skip


def test_every_registered_hyperparameter_is_a_setting_under_the_core_name():
    for config_cls in CONFIGS:
        config = config_cls()
        assert config.objective == "gipo"
        for name, hp in all_hyperparameters().items():
            assert getattr(config, rllib_name(name)) == (hp.default if name in owned_settings() else config.clip_param)
        assert config.algo_class is {GIPOConfig: GIPO, AGIPOConfig: AGIPO}[config_cls]
    assert set(owned_settings()) == {"sigma", "sigma_neg_ratio", "kernel", "sapo_tau_pos", "sapo_tau_neg"}
    assert rllib_name("clip_epsilon") == "clip_param"


@pytest.mark.parametrize("stock", [AlgorithmConfig, PPOConfig, IMPALAConfig, APPOConfig])
def test_no_setting_name_collides_with_an_rllib_attribute(stock):
    config = stock()
    for name in ["objective", *owned_settings()]:
        assert not hasattr(config, name), f"{stock.__name__} already has {name!r}"


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_training_sets_settings_next_to_the_algorithms_own(config_cls):
    config = config_cls().training(
        objective="sapo", sigma=0.5, sigma_neg_ratio=0.5, kernel="cauchy", sapo_tau_pos=2, lr=1e-4
    )
    assert (config.objective, config.sigma, config.sigma_neg_ratio, config.kernel) == ("sapo", 0.5, 0.5, "cauchy")
    assert config.sapo_tau_pos == 2.0 and isinstance(config.sapo_tau_pos, float) and config.lr == 1e-4
    config.validate()
    assert config.policy_objective.name == "sapo" and config.policy_objective.sapo_tau_pos == 2.0


@pytest.mark.parametrize("config_cls", CONFIGS)
@pytest.mark.parametrize(("setting", "value"), BAD_VALUES)
def test_bad_value_fails_at_training_naming_the_setting(config_cls, setting, value):
    config = config_cls().training(lr=1e-3)
    before = config.get_state()
    with pytest.raises(ValueError, match=rf"^{config_cls.__name__}: (unknown )?{setting}\b") as info:
        config.training(**{setting: value}, lr=5e-3)
    assert "_validate_config" not in str(info.value)  # no suffix offering a bypass that cannot work
    assert config.get_state() == before  # a rejected call changes nothing, not even lr


@pytest.mark.parametrize("config_cls", CONFIGS)
@pytest.mark.parametrize(("setting", "value"), BAD_VALUES)
def test_bad_value_set_directly_survives_get_state_and_fails_validate(config_cls, setting, value):
    """RLlib drops attributes equal to -1 from get_state(); the algorithm validates a copy rebuilt from it."""
    config = config_cls().environment("CartPole-v1")
    setattr(config, setting, value)
    rebuilt = config_cls.from_state(config.get_state())  # what Algorithm.__init__ does before validate()
    assert rebuilt.__dict__[setting] is value
    with pytest.raises(ValueError, match=rf"^{config_cls.__name__}: (unknown )?{setting}\b"):
        rebuilt.validate()
    with pytest.raises(ValueError, match=rf"^{config_cls.__name__}: (unknown )?{setting}\b"):
        config_cls.from_dict({setting: value})


SENTINELS = [(name, value) for name in ("sigma", "sigma_neg_ratio", "sapo_tau_pos", "sapo_tau_neg") for value in
             (-1, -1.0)] + [("kernel", -1), ("kernel", -1.0), ("objective", -1), ("objective", -1.0)]  # fmt: skip


@pytest.mark.parametrize("config_cls", CONFIGS)
@pytest.mark.parametrize(("setting", "value"), SENTINELS)
def test_sentinels_fail_when_a_user_builds_the_algorithm(ray_session, config_cls, setting, value):
    """Before the fix, `.training(sigma=-1).build_algo()` trained with sigma = 1.0."""
    message = rf"^{config_cls.__name__}: (unknown )?{setting}\b"
    with pytest.raises(ValueError, match=message):
        config_cls().environment("CartPole-v1").training(**{setting: value}).build_algo()
    config = config_cls().environment("CartPole-v1")
    setattr(config, setting, value)  # past .training(): build_algo() validates the state-rebuilt copy
    with pytest.raises(ValueError, match=message):
        config.build_algo()


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_clip_param_is_the_core_clip_range_and_checked_when_used(config_cls):
    config = config_cls().training(objective="ppo_clip", clip_param=0.25)
    assert config.policy_objective.kwargs() == {"clip_epsilon": 0.25}
    with pytest.raises(ValueError, match=rf"^{config_cls.__name__}: clip_param must be < 1"):
        config_cls().training(objective="ppo_clip", clip_param=1.5)
    with pytest.raises(ValueError, match=rf"^{config_cls.__name__}: clip_param must be finite and > 0, got -1"):
        config_cls().training(objective="ppo_clip", clip_param=-1)
    config_cls().training(clip_param=1.5).validate()  # gipo does not use it: stock RLlib's business
    config = config_cls().training(objective="ppo_clip")
    config.clip_param = -1  # RLlib's sentinel: get_state() would drop it, the default would come back
    with pytest.raises(ValueError, match="clip_param"):
        config_cls.from_state(config.get_state()).validate()


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_state_without_gipo_settings_is_refused(config_cls):
    state = config_cls().training(objective="gipo", sigma=0.7).get_state()
    assert config_cls.from_state(pickle.loads(pickle.dumps(state))).sigma == 0.7
    truncated = {k: v for k, v in state.items() if k != "sigma"}
    with pytest.raises(ValueError, match=r"lacks the setting\(s\) \['sigma'\] of objective 'gipo'"):
        config_cls.from_state(truncated)
    with pytest.raises(ValueError, match="has no 'objective'"):
        config_cls.from_state({k: v for k, v in state.items() if k != "objective"})
    with pytest.raises(ValueError, match=rf"^{config_cls.__name__}: unknown objective 'mystery'; choose one of"):
        config_cls.from_state(state | {"objective": "mystery"}).validate()


@pytest.fixture
def toy_objective():
    """A user's objective: a scaled importance-sampling term with one hyperparameter."""

    @register_objective("toy", Hyperparameter("toy_alpha", 0.5, "scale of the toy term", check_positive))
    def toy(log_ratio, advantages, *, toy_alpha):
        """Toy: alpha times plain importance sampling."""
        ratio = capped_exp(log_ratio)
        return -toy_alpha * ratio * advantages, torch.full_like(ratio, toy_alpha)

    yield "toy"
    unregister_objective("toy")


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_a_registered_objective_is_selectable_with_its_settings(toy_objective, config_cls):
    config = config_cls()
    assert config.toy_alpha == 0.5
    config.training(objective="toy", toy_alpha=0.3)
    assert config.policy_objective.kwargs() == {"toy_alpha": 0.3}
    with pytest.raises(ValueError, match="toy_alpha must be finite and > 0"):
        config.training(toy_alpha=-1.0)
    assert any(row["rllib"] == "toy_alpha" for row in settings_table())


def test_a_registered_objective_drives_the_ppo_learner_loss(toy_objective):
    config = GIPOConfig().training(
        objective="toy", toy_alpha=0.3, use_kl_loss=False, entropy_coeff=0.0, vf_loss_coeff=0.0
    )
    with built_learner(config) as (config, learner):
        batch = ppo_batch(learner)
        logits = module(learner).forward_train(batch)[Columns.ACTION_DIST_INPUTS]
        log_ratio = torch.distributions.Categorical(logits=logits).log_prob(batch[Columns.ACTIONS])
        log_ratio = log_ratio - batch[Columns.ACTION_LOGP]
        mask = batch[Columns.LOSS_MASK]
        expected = (-0.3 * log_ratio.exp() * batch[Postprocessing.ADVANTAGES])[mask].mean()
        torch.testing.assert_close(loss_of(config, learner, batch), expected)


def test_tutorial_table_lists_every_setting():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "rllib.md").read_text()
    for row in settings_table():
        assert f"| `{row['rllib']}` |" in text, row["rllib"]


def test_a_registered_objective_trains_through_build_algo(ray_session, toy_objective):
    """The objective registered in this process drives the (local) learner of a user-built algorithm."""
    algo = (
        GIPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0)
        .training(objective="toy", toy_alpha=0.3, train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
        .build_algo()
    )
    try:
        result = algo.train()
        stats = result["learners"]["default_policy"]
        assert stats["trust_weight_mean"] == pytest.approx(0.3)  # the toy's gate is its alpha
        assert algo.learner_group._learner._gipo_objectives["default_policy"].name == "toy"
    finally:
        algo.stop()
