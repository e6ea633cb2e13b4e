"""AGIPOTorchLearner (APPO-based) on fixed batches: stock-APPO equality, core values, lag metrics (no cluster)."""

from __future__ import annotations

import math

import pytest
import torch
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.utils.metrics import NUM_ENV_STEPS_TRAINED_LIFETIME, WEIGHTS_SEQ_NO
from rllib_helpers import (
    FRAGMENT,
    appo_batch,
    assert_same_grads,
    built_learner,
    copy_weights,
    grads_of,
    logged,
    loss_of,
    module,
    perturb_target_network,
)

from gipo_plugins import PolicyObjective
from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.rllib import AGIPOConfig, AGIPOTorchLearner
from gipo_plugins.rllib.agipo import POLICY_LAG_KEYS


@pytest.mark.parametrize("use_kl_loss", [True, False])
def test_ppo_clip_objective_equals_stock_appo_learner(use_kl_loss):
    training = {"use_kl_loss": use_kl_loss, "clip_param": 0.3, "entropy_coeff": 0.01}
    with (
        built_learner(AGIPOConfig().training(objective="ppo_clip", **training)) as (agipo_config, agipo),
        built_learner(APPOConfig().training(**training)) as (appo_config, appo),
    ):
        assert isinstance(agipo, AGIPOTorchLearner)
        perturb_target_network(agipo)
        copy_weights(agipo, appo)
        batch = appo_batch(agipo, shift=1.0)
        agipo_loss, appo_loss = loss_of(agipo_config, agipo, batch), loss_of(appo_config, appo, batch)
        torch.testing.assert_close(agipo_loss, appo_loss)
        assert_same_grads(grads_of(agipo, agipo_loss), grads_of(appo, appo_loss))
        assert 0 < logged(agipo, "dead_fraction") < 1  # the clip binds on part of the batch: a real comparison
        for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "mean_IS", "var_IS"):
            assert logged(agipo, key) == pytest.approx(logged(appo, key), rel=1e-5, abs=1e-6), key


def _appo_log_ratio_and_advantages(config, learner, batch):
    """APPO's clipped log-ratio and V-trace advantages, recomputed from the module (time-major)."""
    from ray.rllib.algorithms.impala.torch.vtrace_torch_v2 import make_time_major, vtrace_torch

    m = module(learner)

    def tm(x):
        return make_time_major(x, trajectory_len=FRAGMENT)

    dist_cls = m.get_train_action_dist_cls()
    fwd = m.forward_train(batch)
    logp = tm(dist_cls.from_logits(fwd[Columns.ACTION_DIST_INPUTS]).logp(batch[Columns.ACTIONS]))
    old = tm(
        dist_cls.from_logits(m.forward_target(batch)[TARGET_NETWORK_ACTION_DIST_INPUTS]).logp(batch[Columns.ACTIONS])
    )
    behaviour = tm(batch[Columns.ACTION_LOGP])
    mask = tm(batch[Columns.LOSS_MASK].float())
    values = tm(m.compute_values(batch))
    _, advantages = vtrace_torch(
        target_action_log_probs=old,
        behaviour_action_log_probs=behaviour,
        discounts=(1.0 - tm(batch[Columns.TERMINATEDS]).float()) * config.gamma * mask,
        rewards=tm(batch[Columns.REWARDS]),
        values=values,
        bootstrap_values=torch.cat([values[0][1:], values[0][0:1]]),
        clip_pg_rho_threshold=config.vtrace_clip_pg_rho_threshold,
        clip_rho_threshold=config.vtrace_clip_rho_threshold,
    )
    log_ratio = torch.log(torch.clip(torch.exp(behaviour - old), 0.0, 2.0)) + logp - behaviour
    return log_ratio, advantages * mask, mask > 0


def test_gipo_loss_equals_core_value_on_appos_ratio():
    training = {"sigma": 0.5, "sigma_neg_ratio": 0.5, "entropy_coeff": 0.0, "vf_loss_coeff": 0.0}
    training |= {"behaviour_kl_coeff": 0.0}  # the policy term alone (the anchor: the next test)
    with built_learner(AGIPOConfig().training(use_kl_loss=False, **training)) as (config, learner):
        perturb_target_network(learner, scale=1.0)
        batch = appo_batch(learner, shift=2.0)
        log_ratio, advantages, mask = _appo_log_ratio_and_advantages(config, learner, batch)
        assert (log_ratio.detach()[mask] > math.log(2.0) + 0.1).any()  # the IS cap binds somewhere
        expected = PolicyObjective("gipo", sigma=0.5, sigma_neg_ratio=0.5).on_log_ratio(log_ratio, advantages, mask)
        torch.testing.assert_close(loss_of(config, learner, batch), expected.loss)
        for key in METRIC_KEYS:
            assert logged(learner, key) == pytest.approx(float(expected.metrics[key]), rel=1e-5, abs=1e-6), key


def _anchor_kl(learner, batch) -> torch.Tensor:
    """KL(μ ‖ π_θ) by torch, from the behaviour logits stored in the batch and the current module, masked mean."""
    current = module(learner).forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    behaviour = torch.distributions.Categorical(logits=batch[Columns.ACTION_DIST_INPUTS])
    kl = torch.distributions.kl_divergence(behaviour, torch.distributions.Categorical(logits=current))
    return kl[batch[Columns.LOSS_MASK]].mean()


@pytest.mark.parametrize(("objective", "coeff", "in_force"), [("gipo", None, 0.1), ("ppo_clip", None, 0.0),
                                                              ("ppo_clip", 0.5, 0.5), ("gipo", 0.0, 0.0)])  # fmt: skip
def test_behaviour_anchor_is_the_exact_kl_to_the_stored_behaviour_policy(objective, coeff, in_force):
    training = {"objective": objective, "use_kl_loss": True, "entropy_coeff": 0.0}
    with (
        built_learner(AGIPOConfig().training(behaviour_kl_coeff=coeff, **training)) as (config, learner),
        built_learner(AGIPOConfig().training(behaviour_kl_coeff=0.0, **training)) as (plain_config, plain),
    ):
        assert config.behaviour_kl_coeff == coeff  # None: the default in force depends on the objective
        perturb_target_network(learner)
        copy_weights(learner, plain)
        batch = appo_batch(learner, shift=1.0)
        kl = _anchor_kl(learner, batch)
        assert kl > 0.05  # the stored behaviour policy differs from the current one: a real check
        anchored, unanchored = loss_of(config, learner, batch), loss_of(plain_config, plain, batch)
        torch.testing.assert_close(anchored - unanchored, in_force * kl)
        if in_force:
            assert logged(learner, "behaviour_kl") == pytest.approx(kl.item(), rel=1e-5)
            # after acting the policy moves on: the anchor still measures against what acted (stored logits)
            with torch.no_grad():
                for p in module(learner).parameters():
                    p.add_(0.2)
            loss_of(config, learner, batch)
            moved = _anchor_kl(learner, batch).item()
            assert moved != pytest.approx(kl.item(), rel=1e-3)
            assert logged(learner, "behaviour_kl") == pytest.approx(moved, rel=1e-5)


def test_policy_lag_quantiles_are_logged():
    with built_learner(AGIPOConfig()) as (config, learner):
        batch = appo_batch(learner)
        learner._weights_seq_no = 10
        loss_of(config, learner, batch)
        lag = (10 - batch[WEIGHTS_SEQ_NO])[batch[Columns.LOSS_MASK]].float()
        for key, q in zip(POLICY_LAG_KEYS, (0.5, 0.95, 1.0), strict=True):
            assert logged(learner, key) == pytest.approx(float(torch.quantile(lag, q))), key
        assert logged(learner, "policy_lag_max") == float(lag.max())


@pytest.mark.parametrize(
    ("setting", "value"),
    [("sigma", -1), ("sigma", -1.0), ("sigma_neg_ratio", -1.0), ("kernel", "box"), ("sapo_tau_neg", -1.0),
     ("objective", "trpo"), ("clip_param", 1.5), ("behaviour_kl_coeff", -0.1), ("behaviour_kl_coeff", "0.1")],
)  # fmt: skip
def test_bad_settings_rejected_at_validate(setting, value):
    config = AGIPOConfig().environment("CartPole-v1").training(objective="ppo_clip")
    setattr(config, setting, value)
    with pytest.raises(ValueError, match=rf"AGIPOConfig: (unknown )?{setting}\b"):
        config.validate()


def test_target_network_follows_appos_update_frequency():
    config = AGIPOConfig().training(
        target_network_update_freq=1, circular_buffer_num_batches=2, circular_buffer_iterations_per_batch=2, tau=1.0
    )
    with built_learner(config.training(train_batch_size_per_learner=100)) as (config, learner):
        perturb_target_network(learner)
        pairs = module(learner).get_target_network_pairs()

        def synced() -> bool:
            return all(torch.equal(p, q) for main, target in pairs for p, q in
                       zip(main.parameters(), target.parameters(), strict=True))  # fmt: skip

        learner.after_gradient_based_update(timesteps={NUM_ENV_STEPS_TRAINED_LIFETIME: 399})  # < 1 * 2 * 2 * 100
        assert not synced()
        learner.after_gradient_based_update(timesteps={NUM_ENV_STEPS_TRAINED_LIFETIME: 400})
        assert synced() and logged(learner, "num_target_updates") == 1


def test_behaviour_kl_equals_rllibs_kl_for_each_head():
    """Categorical and multi-categorical heads (binned actions) go through the core's sync-free KL: same values."""
    from functools import partial

    from ray.rllib.core.distribution.torch.torch_distribution import (
        TorchCategorical,
        TorchDiagGaussian,
        TorchMultiCategorical,
    )

    from gipo_plugins.rllib.agipo import behaviour_kl

    gen = torch.Generator().manual_seed(0)
    multi = partial(TorchMultiCategorical.from_logits, input_lens=[5, 3])
    for from_logits, width in ((TorchCategorical.from_logits, 4), (multi, 8), (TorchDiagGaussian.from_logits, 6)):
        old, new = (from_logits(torch.randn(16, width, generator=gen)) for _ in range(2))
        torch.testing.assert_close(behaviour_kl(old, new), old.kl(new))
