"""Every bad input is a ValueError that names the argument."""

from __future__ import annotations

import math

import pytest
import torch

from gipo_plugins import PolicyObjective, get_objective, gipo_objective, ppo_clip_objective, trust_weight

LP, OLD, ADV = torch.zeros(4), torch.zeros(4), torch.ones(4)


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan, math.inf, torch.tensor([1.0, 0.0, 1.0, 1.0])])
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        gipo_objective(LP, OLD, ADV, sigma=sigma)
    with pytest.raises(ValueError, match="sigma"):
        trust_weight(LP, sigma=sigma)


@pytest.mark.parametrize("ratio", [0.0, -0.5, math.nan])
def test_bad_sigma_neg_ratio(ratio):
    with pytest.raises(ValueError, match="sigma_neg_ratio"):
        gipo_objective(LP, OLD, ADV, sigma_neg_ratio=ratio)


def test_sigma_tensor_must_broadcast():
    with pytest.raises(ValueError, match="sigma"):
        gipo_objective(LP, OLD, ADV, sigma=torch.ones(3))


def test_unknown_kernel_objective_reduction():
    with pytest.raises(ValueError, match="kernel"):
        trust_weight(LP, kernel="box")
    with pytest.raises(ValueError, match="kernel"):
        gipo_objective(LP, OLD, ADV, kernel="box")
    with pytest.raises(ValueError, match="objective"):
        get_objective("trpo")
    with pytest.raises(ValueError, match="objective"):
        PolicyObjective("trpo")
    with pytest.raises(ValueError, match="reduction"):
        gipo_objective(LP, OLD, ADV, reduction="max")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("old_log_prob", {"old_log_prob": torch.zeros(3)}),
        ("advantages", {"advantages": torch.zeros(4, 1)}),  # would broadcast (4,) to (4, 4)
        ("mask", {"mask": torch.ones(5, dtype=torch.bool)}),
    ],
)
def test_shapes_that_do_not_broadcast(name, kwargs):
    args = {"log_prob": LP, "old_log_prob": OLD, "advantages": ADV} | kwargs
    with pytest.raises(ValueError, match=name):
        gipo_objective(**args)


@pytest.mark.parametrize("name", ["log_prob", "old_log_prob", "advantages"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs(name, bad):
    args = {"log_prob": LP.clone(), "old_log_prob": OLD.clone(), "advantages": ADV.clone()}
    args[name][2] = bad
    with pytest.raises(ValueError, match=name):
        gipo_objective(**args)


def test_all_masked_and_empty():
    with pytest.raises(ValueError, match="mask"):
        gipo_objective(LP, OLD, ADV, mask=torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="log_prob"):
        gipo_objective(torch.zeros(0), torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="mask"):
        gipo_objective(LP, OLD, ADV, mask=[1, 1, 1, 1])


def test_non_tensor_input():
    with pytest.raises(ValueError, match="advantages"):
        gipo_objective(LP, OLD, [1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("eps", [0.0, -0.1, 1.0, (0.2,), (0.2, math.nan)])
def test_bad_clip_epsilon(eps):
    with pytest.raises(ValueError, match="clip_epsilon"):
        ppo_clip_objective(LP, OLD, ADV, clip_epsilon=eps)


@pytest.mark.parametrize("field", ["sapo_tau_pos", "sapo_tau_neg", "sigma", "sigma_neg_ratio"])
def test_policy_objective_validates_every_hyperparameter(field):
    with pytest.raises(ValueError, match=field):
        PolicyObjective("ppo_clip", **{field: 0.0})
