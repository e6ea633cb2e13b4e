"""Closed-form values, gradient identities and diagnostics of the core objectives."""

from __future__ import annotations

import math

import pytest
import torch

from gipo_plugins import (
    OBJECTIVES,
    PolicyObjective,
    behaviour_kl,
    gipo_objective,
    is_objective,
    ppo_clip_objective,
    sapo_objective,
    trust_weight,
)


def _grad(result, log_prob):
    (grad,) = torch.autograd.grad(result.loss, log_prob)
    return grad


@pytest.mark.parametrize(
    ("kernel", "x", "expected"),
    [
        ("gaussian", 1.0, math.exp(-0.5)),
        ("gaussian", 2.0, math.exp(-2.0)),
        ("laplacian", 1.5, math.exp(-1.5)),
        ("laplacian", -2.0, math.exp(-2.0)),
        ("cauchy", 1.0, 0.5),
        ("cauchy", 3.0, 0.1),
    ],
)
def test_trust_weight_closed_form(kernel, x, expected):
    assert trust_weight(torch.tensor(x), kernel=kernel).item() == pytest.approx(expected, rel=1e-6)


def test_trust_weight_sigma_scales_and_broadcasts():
    log_ratio = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    sigma = torch.tensor([[1.0], [2.0]])
    w = trust_weight(log_ratio, sigma)
    expected = torch.tensor([[math.exp(-0.5), math.exp(-2.0)], [math.exp(-0.125), math.exp(-0.5)]])
    torch.testing.assert_close(w, expected)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy"])
def test_trust_weight_is_symmetric_in_log_space(kernel):
    ratio = torch.tensor([0.1, 0.5, 0.9, 1.3, 4.0, 50.0])
    w = trust_weight(ratio.log(), sigma=0.7, kernel=kernel)
    w_inv = trust_weight((1 / ratio).log(), sigma=0.7, kernel=kernel)
    torch.testing.assert_close(w, w_inv)
    assert trust_weight(torch.zeros(3), kernel=kernel).eq(1).all()


def test_gipo_closed_form_value():
    log_prob = torch.tensor([0.5, -0.3])
    advantages = torch.tensor([2.0, -1.0])
    result = gipo_objective(log_prob, torch.zeros(2), advantages, sigma=0.5, sigma_neg_ratio=0.5)
    # A > 0 uses sigma = 0.5; A <= 0 uses sigma = 0.25.
    term0 = -math.exp(0.5) * 2.0 * math.exp(-0.5 * (0.5 / 0.5) ** 2)
    term1 = -math.exp(-0.3) * -1.0 * math.exp(-0.5 * (0.3 / 0.25) ** 2)
    torch.testing.assert_close(result.per_element, torch.tensor([term0, term1]))
    assert result.loss.item() == pytest.approx((term0 + term1) / 2, rel=1e-6)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy"])
def test_gipo_gradient_identity(kernel):
    """d term / d log_prob = -w r A with w detached (checked against autograd)."""
    torch.manual_seed(0)
    log_prob = torch.randn(64, dtype=torch.float64, requires_grad=True)
    old = torch.randn(64, dtype=torch.float64)
    advantages = torch.randn(64, dtype=torch.float64)
    result = gipo_objective(log_prob, old, advantages, sigma=0.8, sigma_neg_ratio=0.5, kernel=kernel, reduction="sum")
    log_ratio = (log_prob - old).detach()
    sigma_eff = torch.where(advantages > 0, 0.8, 0.4).double()
    w = trust_weight(log_ratio, sigma_eff, kernel)
    torch.testing.assert_close(_grad(result, log_prob), -w * log_ratio.exp() * advantages)
    torch.testing.assert_close(result.gate, w)


def test_ppo_clip_closed_form_and_dead_samples():
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    log_prob = ratio.log().requires_grad_()
    result = ppo_clip_objective(log_prob, torch.zeros(5), advantages, clip_epsilon=0.2, reduction="none")
    expected = -torch.minimum(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages)
    torch.testing.assert_close(result.per_element, expected)
    # Dead: (A>0, r>1.2) and (A<0, r<0.8).
    torch.testing.assert_close(result.gate, torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]))
    assert result.metrics["dead_fraction"].item() == pytest.approx(0.4)
    grad = _grad(ppo_clip_objective(log_prob, torch.zeros(5), advantages, reduction="sum"), log_prob)
    torch.testing.assert_close(grad, -result.gate * ratio * advantages)


def test_ppo_clip_asymmetric_range():
    log_prob = torch.tensor([math.log(1.25), math.log(0.85)])
    advantages = torch.tensor([1.0, -1.0])
    gate = ppo_clip_objective(log_prob, torch.zeros(2), advantages, clip_epsilon=(0.1, 0.28)).gate
    torch.testing.assert_close(gate, torch.tensor([1.0, 0.0]))  # 1.25 < 1.28 alive; 0.85 < 0.9 with A < 0 dead
    gate = ppo_clip_objective(log_prob, torch.zeros(2), advantages, clip_epsilon=(0.2, 0.2)).gate
    torch.testing.assert_close(gate, torch.tensor([0.0, 1.0]))


def test_sapo_closed_form_and_unit_weight_at_ratio_one():
    log_prob = torch.tensor([0.0, 0.4, -0.4], requires_grad=True)
    advantages = torch.tensor([1.0, 1.0, -2.0])
    result = sapo_objective(log_prob, torch.zeros(3), advantages, sapo_tau_pos=1.0, sapo_tau_neg=2.0, reduction="none")
    ratio = log_prob.detach().exp()
    tau = torch.tensor([1.0, 1.0, 2.0])
    torch.testing.assert_close(result.per_element, -(4 / tau) * torch.sigmoid(tau * (ratio - 1)) * advantages)
    grad = _grad(
        sapo_objective(log_prob, torch.zeros(3), advantages, sapo_tau_pos=1.0, sapo_tau_neg=2.0, reduction="sum"),
        log_prob,
    )
    assert grad[0].item() == pytest.approx(-1.0)  # u = 1 at r = 1
    torch.testing.assert_close(grad, -result.grad_weight * advantages)


def test_is_objective_closed_form():
    log_prob = torch.tensor([0.3, -0.7], requires_grad=True)
    advantages = torch.tensor([1.5, 2.0])
    result = is_objective(log_prob, torch.zeros(2), advantages, reduction="sum")
    assert result.loss.item() == pytest.approx(-(math.exp(0.3) * 1.5 + math.exp(-0.7) * 2.0), rel=1e-6)
    torch.testing.assert_close(_grad(result, log_prob), -log_prob.detach().exp() * advantages)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_all_objectives_equal_at_ratio_one(name):
    """At r = 1 every gradient is PPO's unclipped -A; values too, except SAPO's gate (-2A/tau)."""
    torch.manual_seed(1)
    log_prob = torch.randn(32, requires_grad=True)
    advantages = torch.randn(32)
    result = PolicyObjective(name)(log_prob, log_prob.detach(), advantages, reduction="none")
    tau = torch.where(advantages > 0, 1.0, 1.05)
    expected = -2 * advantages / tau if name == "sapo" else -advantages
    torch.testing.assert_close(result.per_element, expected, rtol=0, atol=1e-6)
    grad = _grad(PolicyObjective(name)(log_prob, log_prob.detach(), advantages, reduction="sum"), log_prob)
    torch.testing.assert_close(grad, -advantages, rtol=0, atol=1e-6)


def test_gipo_keeps_gradient_where_ppo_clip_is_dead():
    log_prob = torch.tensor([3.0], requires_grad=True)  # r = e^3, A > 0
    advantages = torch.tensor([1.0])
    ppo_grad = _grad(ppo_clip_objective(log_prob, torch.zeros(1), advantages), log_prob)
    gipo_result = gipo_objective(log_prob, torch.zeros(1), advantages)
    gipo_grad = _grad(gipo_result, log_prob)
    assert ppo_grad.item() == 0.0
    assert gipo_grad.item() == pytest.approx(-math.exp(3.0) * math.exp(-4.5), rel=1e-6)
    assert gipo_result.metrics["dead_fraction"].item() == 0.0


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_fp32(name, dtype):
    log_prob = torch.randn(16).to(dtype).requires_grad_()
    result = PolicyObjective(name)(log_prob, torch.zeros(16, dtype=dtype), torch.randn(16, dtype=dtype))
    assert result.loss.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in result.metrics.values())
    result.loss.backward()
    assert log_prob.grad.dtype == dtype and torch.isfinite(log_prob.grad.float()).all()


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy"])
def test_extreme_log_ratios_give_finite_loss_and_gradient(name, kernel):
    log_prob = torch.tensor([1e4, -1e4, 1e4, -1e4, 50.0, -50.0], requires_grad=True)
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    objective = PolicyObjective(name, kernel=kernel, sigma=3.0)
    result = objective(log_prob, torch.zeros(6), advantages)
    grad = _grad(result, log_prob)
    assert torch.isfinite(result.loss) and torch.isfinite(grad).all()
    assert all(torch.isfinite(v) for v in result.metrics.values())


def test_mask_excludes_elements_and_their_garbage():
    log_prob = torch.tensor([0.1, float("nan"), 0.2, float("inf")], requires_grad=True)
    old = torch.tensor([0.0, 0.0, float("-inf"), 0.0])
    old[2] = 0.0
    advantages = torch.tensor([1.0, 5.0, -1.0, 3.0])
    mask = torch.tensor([True, False, True, False])
    masked = gipo_objective(log_prob, old, advantages, mask)
    ref = gipo_objective(log_prob.detach()[mask], old[mask], advantages[mask])
    torch.testing.assert_close(masked.loss, ref.loss)
    for key, value in ref.metrics.items():
        torch.testing.assert_close(masked.metrics[key], value, msg=key)
    grad = _grad(masked, log_prob)
    assert grad[1] == 0 and grad[3] == 0 and torch.isfinite(grad).all()


def test_mask_broadcasts_and_reductions():
    log_prob = torch.randn(3, 4, requires_grad=True)
    advantages = torch.randn(3, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    none = gipo_objective(log_prob, torch.zeros(3, 4), advantages, mask, reduction="none")
    assert none.loss.shape == (3, 4) and (none.loss[mask == 0] == 0).all()
    total = gipo_objective(log_prob, torch.zeros(3, 4), advantages, mask, reduction="sum").loss
    mean = gipo_objective(log_prob, torch.zeros(3, 4), advantages, mask).loss
    torch.testing.assert_close(total, none.loss.sum())
    torch.testing.assert_close(mean, total / 7)


def test_diagnostics_closed_form():
    # Two fresh samples and two clipped ones: PPO keeps u = [1, 1, 0, 0] -> ESS = 4 / (4 * 2) = 0.5.
    log_prob = torch.tensor([0.0, 0.0, 2.0, -2.0])
    advantages = torch.tensor([1.0, 1.0, 1.0, -1.0])
    metrics = ppo_clip_objective(log_prob, torch.zeros(4), advantages).metrics
    assert metrics["ess"].item() == pytest.approx(0.5)
    assert metrics["dead_fraction"].item() == pytest.approx(0.5)
    assert metrics["trust_weight_mean"].item() == pytest.approx(0.5)
    assert metrics["trust_weight_min"].item() == 0.0
    assert metrics["log_ratio_abs_mean"].item() == pytest.approx(1.0)
    expected_kl = ((math.exp(2) - 1 - 2) + (math.exp(-2) - 1 + 2)) / 4
    assert metrics["approx_kl"].item() == pytest.approx(expected_kl, rel=1e-5)
    gipo_metrics = gipo_objective(log_prob, torch.zeros(4), advantages, sigma=0.25).metrics
    assert gipo_metrics["dead_fraction"].item() == 0.0
    assert gipo_metrics["suppressed_fraction"].item() == pytest.approx(0.5)  # w = e^-32 < 1e-3
    all_dead = ppo_clip_objective(torch.tensor([2.0]), torch.zeros(1), torch.ones(1)).metrics
    assert all_dead["ess"].item() == 0.0 and all_dead["dead_fraction"].item() == 1.0


def test_log_ratio_p95():
    log_prob = torch.linspace(-1, 1, 201)
    metrics = is_objective(log_prob, torch.zeros(201), torch.ones(201)).metrics
    assert metrics["log_ratio_abs_p95"].item() == pytest.approx(0.95, abs=1e-4)


def test_policy_objective_dispatches_and_overrides_sigma():
    torch.manual_seed(2)
    log_prob, old, advantages = torch.randn(10), torch.randn(10), torch.randn(10)
    via_switch = PolicyObjective("gipo", sigma=0.3, sigma_neg_ratio=0.5)(log_prob, old, advantages)
    direct = gipo_objective(log_prob, old, advantages, sigma=0.3, sigma_neg_ratio=0.5)
    torch.testing.assert_close(via_switch.loss, direct.loss)
    overridden = PolicyObjective("gipo")(log_prob, old, advantages, sigma=torch.tensor(0.3), reduction="none")
    torch.testing.assert_close(overridden.gate, gipo_objective(log_prob, old, advantages, sigma=0.3).gate)
    ppo = PolicyObjective("ppo_clip", clip_epsilon=0.1)(log_prob, old, advantages)
    torch.testing.assert_close(ppo.loss, ppo_clip_objective(log_prob, old, advantages, clip_epsilon=0.1).loss)


def test_works_under_torch_compile_fullgraph():
    compiled = torch.compile(lambda lp, old, adv: gipo_objective(lp, old, adv, sigma=0.5).loss, fullgraph=True)
    log_prob, old, adv = torch.randn(32), torch.randn(32), torch.randn(32)
    torch.testing.assert_close(compiled(log_prob, old, adv), gipo_objective(log_prob, old, adv, sigma=0.5).loss)


def test_behaviour_kl_estimator():
    log_prob = torch.tensor([0.0, 0.5, -0.5, 1e4], requires_grad=True)
    kl = behaviour_kl(log_prob, torch.zeros(4), mask=torch.tensor([1, 1, 1, 0]))
    expected = ((math.exp(0.5) - 1.5) + (math.exp(-0.5) - 0.5)) / 3
    assert kl.item() == pytest.approx(expected, rel=1e-6)
    (grad,) = torch.autograd.grad(kl, log_prob)
    torch.testing.assert_close(grad, torch.tensor([0.0, math.expm1(0.5), math.expm1(-0.5), 0.0]) / 3)
    extreme = behaviour_kl(torch.tensor([1e4, -1e4]), torch.zeros(2))
    assert torch.isfinite(extreme)


def test_categorical_kl_is_torchs_exact_kl_from_the_behaviour_policy():
    from gipo_plugins import categorical_kl

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 256, generator=gen, requires_grad=True)
    old_logits = torch.randn(3, 4, 256, generator=gen)
    mask = torch.ones(3, 4)
    mask[0] = 0
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=old_logits), torch.distributions.Categorical(logits=logits)
    )
    torch.testing.assert_close(categorical_kl(logits, old_logits, reduction="none"), expected)
    kl = categorical_kl(logits, old_logits, mask)
    torch.testing.assert_close(kl, expected[1:].mean())
    (grad,) = torch.autograd.grad(kl, logits)  # softmax(new) - softmax(old), per valid element / count
    torch.testing.assert_close(grad[1:], (logits.softmax(-1) - old_logits.softmax(-1))[1:].detach() / 8)
    assert not grad[0].any()
    impossible = old_logits.clone()
    impossible[..., 0] = -torch.inf  # an action the behaviour policy could not take adds nothing
    assert torch.isfinite(categorical_kl(logits, impossible))
    half = categorical_kl(logits.detach().half(), old_logits.half())
    assert half.dtype == torch.float32 and torch.isfinite(half)
    with pytest.raises(ValueError, match="mask has no valid element"):
        categorical_kl(logits, old_logits, torch.zeros(3, 4))


def test_anchor_coeff_defaults_to_the_published_method_for_gipo_only():
    from gipo_plugins import BEHAVIOUR_KL_COEFF, PUBLISHED_KL_COEFF, anchor_coeff

    assert PUBLISHED_KL_COEFF == 0.1 and anchor_coeff(None, "gipo") == 0.1
    assert anchor_coeff(None, "ppo_clip") == anchor_coeff(None, "sapo") == 0.0
    assert anchor_coeff(0.0, "gipo") == 0.0 and anchor_coeff(0.3, "ppo_clip") == 0.3
    assert BEHAVIOUR_KL_COEFF.validate(1) == 1.0 and BEHAVIOUR_KL_COEFF.validate(None) is None
    for bad in (-0.1, math.nan, "0.1", True):
        with pytest.raises(ValueError, match="behaviour_kl_coeff must be None or a finite number >= 0"):
            BEHAVIOUR_KL_COEFF.validate(bad)


def test_clip_epsilon_may_be_a_tensor():
    log_prob, advantages = torch.tensor([0.3, -0.3]), torch.tensor([1.0, -1.0])
    as_float = ppo_clip_objective(log_prob, torch.zeros(2), advantages, clip_epsilon=0.2)
    as_tensor = ppo_clip_objective(log_prob, torch.zeros(2), advantages, clip_epsilon=torch.tensor(0.2))
    torch.testing.assert_close(as_float.per_element, as_tensor.per_element)
    torch.testing.assert_close(as_float.gate, as_tensor.gate)
