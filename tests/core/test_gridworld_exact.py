"""The exact GridWorld machinery behind benchmarks/gridworld/study.py."""

from __future__ import annotations

import pytest
import torch

from benchmarks.gridworld.exact import (
    RIGHT,
    advantages,
    estimator_stats,
    iterative_state_values,
    mixture,
    per_sample_gradients,
    state_values,
    tabular_policy,
    transitions,
    true_gradient,
)
from gipo_plugins import PolicyObjective

UNIFORM = tabular_policy((1, 1, 1, 1))
TARGET = tabular_policy((0.05, 0.8, 0.1, 0.05))


def test_transitions_are_deterministic_and_goal_reachable():
    P = transitions()
    assert torch.equal(P.sum(-1), torch.ones(3, 4, dtype=P.dtype))
    assert P[1, 2, 3] == 1 and P[2, 1, 3] == 1  # S1 down and S2 right reach the goal
    assert P[0, 0, 0] == 1  # S0 up bumps the wall


@pytest.mark.parametrize("policy", [UNIFORM, TARGET, tabular_policy((0.03, 0.47, 0.47, 0.03))])
def test_bellman_solution_matches_iterative_policy_evaluation(policy):
    torch.testing.assert_close(state_values(policy), iterative_state_values(policy), atol=1e-10, rtol=0)


def test_optimal_values_and_advantages():
    greedy = tabular_policy((1e-12, 1, 1e-12, 1e-12), (1e-12, 1e-12, 1, 1e-12), (1e-12, 1, 1e-12, 1e-12))
    torch.testing.assert_close(
        state_values(greedy), torch.tensor([-1.9, -1.0, -1.0], dtype=torch.float64), atol=1e-9, rtol=0
    )  # S0 → S1 → G: two steps; fmt: skip
    assert (advantages(UNIFORM) * UNIFORM).sum(-1).abs().max() < 1e-12  # E_pi[A] = 0


def test_true_gradient_is_the_autograd_gradient_of_expected_advantage():
    theta = TARGET[0].log().clone().requires_grad_(True)
    adv = advantages(TARGET)[0]
    # d/dθ sum_a π_θ(a) A(a) with A held fixed: the policy-gradient theorem's per-state term
    (grad,) = torch.autograd.grad((torch.softmax(theta, -1) * adv).sum(), theta)
    torch.testing.assert_close(true_gradient(TARGET), grad)


def test_plain_is_is_unbiased_and_every_objective_exact_on_policy():
    assert abs(estimator_stats(PolicyObjective("is"), TARGET, UNIFORM).bias) < 1e-12
    on_policy = [estimator_stats(PolicyObjective(n), TARGET, TARGET) for n in ("gipo", "ppo_clip", "sapo")]
    for stats in on_policy:
        assert abs(stats.bias) < 1e-12 and stats.dead_fraction == 0
        assert stats.variance == pytest.approx(on_policy[0].variance)


def test_ppo_dead_mass_is_where_the_clip_binds_and_gipo_keeps_it():
    behaviour = mixture((0.5, TARGET), (0.5, UNIFORM))
    ppo = estimator_stats(PolicyObjective("ppo_clip", clip_epsilon=0.2), TARGET, behaviour)
    ratio = TARGET[0] / behaviour[0]
    adv = advantages(TARGET)[0]
    clipped = ((adv > 0) & (ratio > 1.2)) | ((adv < 0) & (ratio < 0.8))
    assert ppo.dead_fraction == pytest.approx(float(behaviour[0][clipped].sum()))
    assert ppo.dead_fraction > 0
    assert estimator_stats(PolicyObjective("gipo", sigma=1.0), TARGET, behaviour).dead_fraction == 0


def test_per_sample_gradient_rows_are_gipo_weighted_is_gradients():
    grads = per_sample_gradients(PolicyObjective("gipo", sigma=0.5), TARGET, UNIFORM)
    is_grads = per_sample_gradients(PolicyObjective("is"), TARGET, UNIFORM)
    weight = torch.exp(-0.5 * ((TARGET[0] / UNIFORM[0]).log() / 0.5) ** 2)
    torch.testing.assert_close(grads, is_grads * weight[:, None])
    assert grads[:, RIGHT].abs().min() > 0


def test_bad_policies_raise():
    with pytest.raises(ValueError, match="policy"):
        tabular_policy((1, 0, 1, 1))
    with pytest.raises(ValueError, match="sum to 1"):
        mixture((0.5, UNIFORM), (0.4, TARGET))
