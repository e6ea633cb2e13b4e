"""GIPOConfig validation and GIPOTorchLearner's loss on fixed batches (no Ray cluster needed)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from gipo_plugins import gipo_objective
from gipo_plugins.rllib import GIPO, GIPOConfig, GIPOTorchLearner

BATCH = 64


def _learner(config):
    config = config.environment("CartPole-v1").debugging(seed=0)
    return config, config.build_learner(env=gym.make("CartPole-v1"))


def _batch(learner, seed=0, shift=0.5):
    gen = torch.Generator().manual_seed(seed)
    batch = {Columns.OBS: torch.randn(BATCH, 4, generator=gen)}
    with torch.no_grad():
        logits = learner.module[DEFAULT_MODULE_ID].forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    behaviour_logits = logits + shift * torch.randn(BATCH, 2, generator=gen)  # stale behaviour policy
    dist = torch.distributions.Categorical(logits=behaviour_logits)
    torch.manual_seed(seed)
    actions = dist.sample()
    batch |= {
        Columns.ACTIONS: actions,
        Columns.ACTION_LOGP: dist.log_prob(actions),
        Columns.ACTION_DIST_INPUTS: behaviour_logits,
        Postprocessing.ADVANTAGES: torch.randn(BATCH, generator=gen),
        Postprocessing.VALUE_TARGETS: torch.randn(BATCH, generator=gen),
        Columns.LOSS_MASK: torch.rand(BATCH, generator=gen) > 0.25,
    }
    return batch


def _loss(config, learner, batch):
    fwd = learner.module[DEFAULT_MODULE_ID].forward_train(batch)
    module_config = config.get_config_for_module(DEFAULT_MODULE_ID)
    return learner.compute_loss_for_module(module_id=DEFAULT_MODULE_ID, config=module_config, batch=batch, fwd_out=fwd)


def _grads(learner, loss):
    params = list(learner.module[DEFAULT_MODULE_ID].parameters())
    return torch.autograd.grad(loss, params, allow_unused=True)


def test_config_defaults_and_learner_class():
    config = GIPOConfig()
    assert isinstance(config, PPOConfig) and config.algo_class is GIPO
    assert (config.objective, config.gipo_sigma, config.gipo_sigma_neg_ratio, config.gipo_kernel) == (
        "gipo", 1.0, 1.0, "gaussian",
    )  # fmt: skip
    assert config.get_default_learner_class() is GIPOTorchLearner
    config.training(gipo_sigma=0.5, gipo_sigma_neg_ratio=0.5, gipo_kernel="cauchy", objective="sapo", lr=1e-4)
    assert (config.gipo_sigma, config.gipo_kernel, config.objective, config.lr) == (0.5, "cauchy", "sapo", 1e-4)


@pytest.mark.parametrize(
    ("setting", "value", "name"),
    [
        ("gipo_sigma", 0.0, "sigma"),
        ("gipo_sigma", float("nan"), "sigma"),
        ("gipo_sigma_neg_ratio", -1.0, "sigma_neg_ratio"),
        ("gipo_kernel", "box", "kernel"),
        ("objective", "trpo", "objective"),
        ("sapo_tau_neg", 0.0, "tau_neg"),
    ],
)
def test_bad_settings_rejected_at_validate(setting, value, name):
    config = GIPOConfig().environment("CartPole-v1").training(**{setting: value})
    with pytest.raises(ValueError, match=name):
        config.validate()


def test_ppo_clip_objective_equals_stock_ppo_learner():
    gipo_config, gipo_learner = _learner(GIPOConfig().training(objective="ppo_clip", use_kl_loss=True, kl_coeff=0.2))
    ppo_config, ppo_learner = _learner(PPOConfig().training(use_kl_loss=True, kl_coeff=0.2))
    ppo_learner.module[DEFAULT_MODULE_ID].load_state_dict(gipo_learner.module[DEFAULT_MODULE_ID].state_dict())
    batch = _batch(gipo_learner)
    gipo_loss, ppo_loss = _loss(gipo_config, gipo_learner, batch), _loss(ppo_config, ppo_learner, batch)
    torch.testing.assert_close(gipo_loss, ppo_loss)
    for g, p in zip(_grads(gipo_learner, gipo_loss), _grads(ppo_learner, ppo_loss), strict=True):
        if g is None or p is None:
            assert g is None and p is None
        else:
            torch.testing.assert_close(g, p)


def _policy_only(**training):
    return GIPOConfig().training(use_kl_loss=False, entropy_coeff=0.0, vf_loss_coeff=0.0, **training)


def test_gipo_loss_equals_core_value_on_fixed_batch():
    config, learner = _learner(_policy_only(gipo_sigma=0.5, gipo_sigma_neg_ratio=0.5))
    batch = _batch(learner, shift=2.0)
    logits = learner.module[DEFAULT_MODULE_ID].forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    log_prob = torch.distributions.Categorical(logits=logits).log_prob(batch[Columns.ACTIONS])
    expected = gipo_objective(
        log_prob,
        batch[Columns.ACTION_LOGP],
        batch[Postprocessing.ADVANTAGES],
        batch[Columns.LOSS_MASK],
        sigma=0.5,
        sigma_neg_ratio=0.5,
    )
    torch.testing.assert_close(_loss(config, learner, batch), expected.loss)
    logged = learner.metrics.peek((DEFAULT_MODULE_ID, "dead_fraction"))
    assert float(logged) == pytest.approx(float(expected.metrics["dead_fraction"]))


def test_loss_mask_is_respected():
    config, learner = _learner(GIPOConfig())
    batch = _batch(learner)
    reference = _loss(config, learner, batch)
    masked_out = ~batch[Columns.LOSS_MASK]
    garbage = dict(batch)
    for column in (Postprocessing.ADVANTAGES, Postprocessing.VALUE_TARGETS, Columns.ACTION_LOGP):
        garbage[column] = batch[column].masked_fill(masked_out, 1e6)
    torch.testing.assert_close(_loss(config, learner, garbage), reference)


def test_stale_batch_keeps_gradient_where_ppo_clip_is_dead():
    gipo_config, gipo_learner = _learner(_policy_only())
    ppo_config, ppo_learner = _learner(_policy_only(objective="ppo_clip"))
    batch = _batch(gipo_learner)
    # Behaviour log-probs far on the side the advantage pushes: PPO clips every sample.
    batch[Columns.ACTION_LOGP] = batch[Columns.ACTION_LOGP] - 2.0 * torch.sign(batch[Postprocessing.ADVANTAGES])
    ppo_loss = _loss(ppo_config, ppo_learner, batch)
    assert all(g is None or g.abs().max() == 0 for g in _grads(ppo_learner, ppo_loss))
    gipo_loss = _loss(gipo_config, gipo_learner, batch)
    assert sum(g.abs().sum() for g in _grads(gipo_learner, gipo_loss) if g is not None) > 0
