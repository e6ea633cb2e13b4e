"""GIPOTorchLearner (PPO-based) on fixed batches: stock-PPO equality, core values, masks, divergence (no cluster)."""

from __future__ import annotations

import logging

import pytest
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from rllib_helpers import assert_same_grads, built_learner, copy_weights, grads_of, logged, loss_of, module, ppo_batch

from gipo_plugins import gipo_objective
from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.rllib import GIPOConfig
from gipo_plugins.rllib.learner import logger as gipo_logger


def _policy_only(**training) -> GIPOConfig:
    return GIPOConfig().training(use_kl_loss=False, entropy_coeff=0.0, vf_loss_coeff=0.0, **training)


@pytest.mark.parametrize("use_kl_loss", [True, False])
def test_ppo_clip_objective_equals_stock_ppo_learner(use_kl_loss):
    training = {"use_kl_loss": use_kl_loss, "kl_coeff": 0.2, "clip_param": 0.2, "entropy_coeff": 0.01}
    with (
        built_learner(GIPOConfig().training(objective="ppo_clip", **training)) as (gipo_config, gipo),
        built_learner(PPOConfig().training(**training)) as (ppo_config, ppo),
    ):
        copy_weights(gipo, ppo)
        batch = ppo_batch(gipo, shift=1.0)
        gipo_loss, ppo_loss = loss_of(gipo_config, gipo, batch), loss_of(ppo_config, ppo, batch)
        torch.testing.assert_close(gipo_loss, ppo_loss)
        assert_same_grads(grads_of(gipo, gipo_loss), grads_of(ppo, ppo_loss))
        for key in ("policy_loss", "vf_loss", "vf_loss_unclipped", "entropy", "mean_kl_loss", "vf_explained_var"):
            assert logged(gipo, key) == pytest.approx(logged(ppo, key), rel=1e-5, abs=1e-6), key


def test_gipo_loss_equals_core_value_and_logs_its_diagnostics():
    with built_learner(_policy_only(sigma=0.5, sigma_neg_ratio=0.5)) as (config, learner):
        batch = ppo_batch(learner, shift=2.0)
        logits = module(learner).forward_train(batch)[Columns.ACTION_DIST_INPUTS]
        log_prob = torch.distributions.Categorical(logits=logits).log_prob(batch[Columns.ACTIONS])
        expected = gipo_objective(
            log_prob,
            batch[Columns.ACTION_LOGP],
            batch[Postprocessing.ADVANTAGES],
            batch[Columns.LOSS_MASK],
            sigma=0.5,
            sigma_neg_ratio=0.5,
        )
        torch.testing.assert_close(loss_of(config, learner, batch), expected.loss)
        for key in METRIC_KEYS:
            assert logged(learner, key) == pytest.approx(float(expected.metrics[key]), rel=1e-5, abs=1e-7), key


def test_objective_is_built_once_per_module():
    with built_learner(GIPOConfig()) as (config, learner):
        batch = ppo_batch(learner)
        loss_of(config, learner, batch)
        first = learner._gipo_objectives[DEFAULT_MODULE_ID]
        loss_of(config, learner, batch)
        assert learner._gipo_objectives[DEFAULT_MODULE_ID] is first


def test_loss_mask_is_respected():
    with built_learner(GIPOConfig()) as (config, learner):
        batch = ppo_batch(learner)
        reference = loss_of(config, learner, batch)
        masked_out = ~batch[Columns.LOSS_MASK]
        garbage = dict(batch)
        for column in (Postprocessing.ADVANTAGES, Postprocessing.VALUE_TARGETS, Columns.ACTION_LOGP):
            garbage[column] = batch[column].masked_fill(masked_out, float("nan"))
        torch.testing.assert_close(loss_of(config, learner, garbage), reference)


def test_stale_batch_keeps_gradient_where_ppo_clip_is_dead():
    with (
        built_learner(_policy_only()) as (gipo_config, gipo),
        built_learner(_policy_only(objective="ppo_clip")) as (ppo_config, ppo),
    ):
        copy_weights(gipo, ppo)
        batch = ppo_batch(gipo)
        # Behaviour log-probs far on the side the advantage pushes: PPO clips every sample.
        batch[Columns.ACTION_LOGP] = batch[Columns.ACTION_LOGP] - 2.0 * torch.sign(batch[Postprocessing.ADVANTAGES])
        assert all(g is None or g.abs().max() == 0 for g in grads_of(ppo, loss_of(ppo_config, ppo, batch)))
        assert logged(ppo, "dead_fraction") == 1.0
        assert sum(g.abs().sum() for g in grads_of(gipo, loss_of(gipo_config, gipo, batch)) if g is not None) > 0


@pytest.fixture
def gipo_warnings():
    """Records what reaches RLlib's logger from the GIPO learner (Ray's loggers do not propagate to root)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    gipo_logger.addHandler(handler)
    yield records
    gipo_logger.removeHandler(handler)


@pytest.mark.parametrize("objective", ["gipo", "is", "sapo"])
def test_divergence_stays_finite_and_warns_once(gipo_warnings, objective):
    """The documented failure: no KL penalty, |log r| in the hundreds; several optimizer steps on it."""
    assert gipo_logger.name.startswith("ray.rllib.")
    with built_learner(GIPOConfig().training(objective=objective, use_kl_loss=False, lr=1e-2)) as (config, learner):
        healthy = ppo_batch(learner)
        loss_of(config, learner, healthy)
        assert gipo_warnings == []
        diverged = dict(healthy)
        diverged[Columns.ACTION_LOGP] = healthy[Columns.ACTION_LOGP] - 300.0 * torch.sign(
            healthy[Postprocessing.ADVANTAGES]
        )
        for _ in range(5):
            loss = loss_of(config, learner, diverged)
            assert torch.isfinite(loss)
            learner.apply_gradients(learner.compute_gradients({DEFAULT_MODULE_ID: loss}))
        assert logged(learner, "log_ratio_abs_p95") > 100
        assert all(torch.isfinite(p).all() for p in module(learner).parameters())
        assert len(gipo_warnings) == 1
        assert "|log r|" in gipo_warnings[0].getMessage() and "kl_coeff" in gipo_warnings[0].getMessage()
