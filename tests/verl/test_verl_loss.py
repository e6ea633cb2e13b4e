"""The `gipo` policy loss against the core and against verl's own losses, on the tensors verl passes.

Modelled on verl's CPU loss tests (`tests/trainer/ppo/*_on_cpu.py`): a batch in verl's
`(batch, response_length)` layout, each loss called by keyword as verl's `ppo_loss` calls it, loss and
gradient compared for every `loss_agg_mode`, with and without `rollout_is_weights`.
"""

from __future__ import annotations

import math

import pytest
import torch
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, get_policy_loss_fn
from verl.workers.config import PolicyLossConfig
from verl_helpers import LOSS_AGG_MODES, actor_config, batch, run_loss

from gipo_plugins import Hyperparameter, PolicyObjective, behaviour_kl, register_objective, unregister_objective
from gipo_plugins._checks import check_positive
from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.objectives import capped_exp
from gipo_plugins.verl import GIPOPolicyLossConfig
from gipo_plugins.verl.loss import gipo_policy_loss

LAPLACIAN = {"kernel": "laplacian", "sigma": 0.3}
GLOBAL_INFO = {"dp_size": 2, "batch_num_tokens": 40, "global_batch_size": 9, "loss_scale_factor": 7}


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, info: dict) -> torch.Tensor:
    """verl's aggregation modes written out (independently of `agg_loss`), for the expected values."""
    mask = mask.float()
    dp_size = info.get("dp_size", 1)
    valid_rows = mask.sum(-1) > 0
    if mode == "token-mean":
        return (per_token * mask).sum() / info.get("batch_num_tokens", mask.sum()) * dp_size
    if mode == "token-sum":
        return (per_token * mask).sum() * dp_size
    if mode == "seq-mean-token-mean":
        rows = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    else:
        rows = (per_token * mask).sum(-1)
    loss = rows[valid_rows].sum() / info.get("global_batch_size", valid_rows.sum()) * dp_size
    if mode == "seq-mean-token-sum-norm":
        loss = loss / info.get("loss_scale_factor", mask.shape[-1])
    return loss


def core_reference(data, objective: PolicyObjective, mode: str, weights: bool, info: dict, beta: float = 0.0):
    """The core objective's per-token term (+ beta x the core's anchor), aggregated by hand: (loss, grad)."""
    log_prob = data["log_prob"].detach().clone().requires_grad_()
    old_log_prob, mask = data["old_log_prob"], data["response_mask"]
    result = objective(log_prob, old_log_prob, data["advantages"], mask, reduction="none")
    per_token = result.per_element * (data["rollout_is_weights"] if weights else 1.0)
    per_token = per_token + beta * behaviour_kl(log_prob, old_log_prob, mask, reduction="none")
    loss = aggregate(per_token, data["response_mask"], mode, info)
    (grad,) = torch.autograd.grad(loss, log_prob)
    return loss.detach(), grad


@pytest.mark.parametrize("global_info", [{}, GLOBAL_INFO], ids=["local", "global_batch_info"])
@pytest.mark.parametrize("weights", [False, True], ids=["no_is_weights", "rollout_is_weights"])
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_gipo_equals_the_core_for_every_aggregation(mode, weights, global_info):
    data = batch(seed=1)
    config = actor_config(loss_agg_mode=mode, policy_loss=GIPOPolicyLossConfig(sigma=0.7, sigma_neg_ratio=0.5))
    config.global_batch_info.update(global_info)
    loss, grad, _ = run_loss(get_policy_loss_fn("gipo"), data, config, mode, weights)
    expected_loss, expected_grad = core_reference(
        data, PolicyObjective("gipo", sigma=0.7, sigma_neg_ratio=0.5), mode, weights, global_info, beta=0.1
    )  # GIPO as published: the anchor's default coefficient with objective "gipo" is 0.1
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-7)
    assert grad[~data["response_mask"]].abs().max() == 0


@pytest.mark.parametrize("weights", [False, True], ids=["no_is_weights", "rollout_is_weights"])
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_ppo_clip_objective_equals_verl_vanilla(mode, weights):
    data = batch(seed=2, spread=0.4)  # ratios in (0.2, 3): verl's dual clip (clip_ratio_c=3) never binds
    assert capped_exp(data["log_prob"] - data["old_log_prob"]).max() < 3
    clip = {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28}
    ours = actor_config(loss_agg_mode=mode, policy_loss=GIPOPolicyLossConfig(objective="ppo_clip"), **clip)
    vanilla = actor_config(loss_agg_mode=mode, **clip)
    loss, grad, metrics = run_loss(get_policy_loss_fn("gipo"), data, ours, mode, weights)
    v_loss, v_grad, v_metrics = run_loss(get_policy_loss_fn("vanilla"), data, vanilla, mode, weights)
    torch.testing.assert_close(loss, v_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, v_grad, rtol=1e-6, atol=1e-7)
    assert 0 < v_metrics["actor/pg_clipfrac"] < 1
    for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
        assert metrics[key] == pytest.approx(v_metrics[key], rel=1e-6, abs=1e-7), key


def test_ppo_clip_differs_from_vanilla_only_by_verls_dual_clip():
    """Large ratios: equal to `vanilla` with the dual clip off; with it on, only where A < 0 and r > clip_ratio_c."""
    data = batch(seed=3, spread=2.0)
    mode = "token-sum"
    ours = actor_config(loss_agg_mode=mode, policy_loss=GIPOPolicyLossConfig(objective="ppo_clip"))
    loss, grad, _ = run_loss(get_policy_loss_fn("gipo"), data, ours, mode, weights=False)
    no_dual = actor_config(loss_agg_mode=mode, clip_ratio_c=1e9)
    v_loss, v_grad, _ = run_loss(get_policy_loss_fn("vanilla"), data, no_dual, mode, weights=False)
    torch.testing.assert_close(loss, v_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, v_grad)
    _, dual_grad, _ = run_loss(get_policy_loss_fn("vanilla"), data, actor_config(loss_agg_mode=mode), mode, False)
    ratio = torch.exp(data["log_prob"].detach() - data["old_log_prob"])
    dual = (data["advantages"] < 0) & (ratio > 3.0) & data["response_mask"]
    assert dual.any()
    torch.testing.assert_close(grad[~dual], dual_grad[~dual])
    assert (dual_grad[dual] == 0).all() and (grad[dual] != 0).all()


@pytest.mark.parametrize("weights", [False, True], ids=["no_is_weights", "rollout_is_weights"])
def test_sapo_objective_equals_verl_sapo(weights):
    """verl's `sapo` aggregates with seq-mean-token-mean whatever the mode; the core's honours loss_agg_mode."""
    data = batch(seed=4, spread=0.8)
    mode = "seq-mean-token-mean"
    taus = {"tau_pos": 1.3, "tau_neg": 2.0}
    ours = actor_config(loss_agg_mode=mode, policy_loss=GIPOPolicyLossConfig(objective="sapo"), **taus)
    loss, grad, _ = run_loss(get_policy_loss_fn("gipo"), data, ours, mode, weights)
    v_loss, v_grad, _ = run_loss(get_policy_loss_fn("sapo"), data, actor_config(**taus), "token-mean", weights)
    torch.testing.assert_close(loss, v_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, v_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("policy_loss", "objective", "beta"),
    [
        (PolicyLossConfig(loss_mode="gipo"), PolicyObjective("gipo"), 0.1),  # verl's plain config: core defaults
        (GIPOPolicyLossConfig(), PolicyObjective("gipo"), 0.1),
        (GIPOPolicyLossConfig(behaviour_kl_coeff=0.0), PolicyObjective("gipo"), 0.0),
        (GIPOPolicyLossConfig(kernel="laplacian", sigma=0.3), PolicyObjective("gipo", **LAPLACIAN), 0.1),
        (GIPOPolicyLossConfig(objective="is"), PolicyObjective("is"), 0.0),  # a baseline: no anchor unless set
        (GIPOPolicyLossConfig(objective="is", behaviour_kl_coeff=0.5), PolicyObjective("is"), 0.5),
    ],
    ids=["plain_PolicyLossConfig", "defaults", "no_anchor", "laplacian", "is", "is_with_anchor"],
)
def test_settings_reach_the_core(policy_loss, objective, beta):
    data = batch(seed=5)
    config = actor_config(policy_loss=policy_loss)
    loss, grad, metrics = run_loss(get_policy_loss_fn("gipo"), data, config, "token-mean", weights=True)
    expected_loss, expected_grad = core_reference(data, objective, "token-mean", True, {}, beta=beta)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)
    assert metrics["actor/gipo/behaviour_kl_coeff"] == beta


def test_an_objective_registered_by_the_user_is_selectable():
    cap = Hyperparameter("test_verl_ratio_cap", 2.0, "cap on r", check_positive)

    @register_objective("test_verl_capped_is", cap)
    def capped_is(log_ratio, advantages, *, test_verl_ratio_cap):
        """Importance sampling with the ratio capped."""
        ratio = capped_exp(log_ratio)
        gate = (ratio.detach() <= test_verl_ratio_cap).to(ratio.dtype)
        return -torch.minimum(ratio, torch.full_like(ratio, test_verl_ratio_cap)) * advantages, gate

    try:
        data = batch(seed=6, spread=1.0)
        settings = GIPOPolicyLossConfig(objective="test_verl_capped_is", objective_kwargs={"test_verl_ratio_cap": 1.5})
        loss, grad, _ = run_loss(get_policy_loss_fn("gipo"), data, actor_config(policy_loss=settings), "token-mean", 0)
        reference = PolicyObjective("test_verl_capped_is", test_verl_ratio_cap=1.5)
        expected_loss, expected_grad = core_reference(data, reference, "token-mean", False, {})
        torch.testing.assert_close(loss, expected_loss)
        torch.testing.assert_close(grad, expected_grad)
    finally:
        unregister_objective("test_verl_capped_is")


def test_metrics_use_verls_names_and_the_cores_diagnostics():
    data = batch(seed=7, spread=1.5)
    _, _, metrics = run_loss(get_policy_loss_fn("gipo"), data, actor_config(), "token-mean", weights=False)
    verl_names = {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"}
    assert set(metrics) == verl_names | {f"actor/gipo/{key}" for key in (*METRIC_KEYS, "behaviour_kl_coeff")}
    assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values())
    result = PolicyObjective("gipo")(
        data["log_prob"], data["old_log_prob"], data["advantages"], data["response_mask"], reduction="none"
    )
    for key in METRIC_KEYS:
        assert metrics[f"actor/gipo/{key}"] == pytest.approx(result.metrics[key].item(), rel=1e-6), key
    assert metrics["actor/pg_clipfrac"] == metrics["actor/gipo/dead_fraction"] == 0.0  # GIPO never switches a token off
    mask = data["response_mask"]
    ppo_kl = (-(data["log_prob"] - data["old_log_prob"]) * mask).sum() / mask.sum()
    assert metrics["actor/ppo_kl"] == pytest.approx(ppo_kl.item(), rel=1e-5)


def test_an_all_masked_micro_batch_contributes_zero():
    """verl's rollout correction can reject every sequence of a micro-batch: no error, loss and gradient 0."""
    data = batch(seed=8)
    data["response_mask"] = torch.zeros_like(data["response_mask"])
    config = actor_config()
    config.global_batch_info.update(GLOBAL_INFO)
    loss, grad, metrics = run_loss(get_policy_loss_fn("gipo"), data, config, "token-mean", weights=True)
    assert loss.item() == 0.0 and grad.abs().max().item() == 0.0
    assert all(math.isfinite(value) for value in metrics.values())


def test_bad_data_is_named():
    data = batch(seed=9)
    data["old_log_prob"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="old_log_prob contains NaN"):
        run_loss(get_policy_loss_fn("gipo"), data, actor_config(), "token-mean", weights=False)


def test_registered_under_gipo():
    assert POLICY_LOSS_REGISTRY["gipo"] is gipo_policy_loss
