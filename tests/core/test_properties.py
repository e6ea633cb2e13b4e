"""Hypothesis property tests over thousands of random cases."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gipo_plugins import KERNELS, OBJECTIVES, get_objective, gipo_objective, trust_weight

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)
sigmas = st.floats(min_value=1e-2, max_value=10.0, allow_nan=False)


@st.composite
def batches(draw):
    n = draw(st.integers(min_value=1, max_value=24))
    log_prob = torch.tensor(draw(st.lists(finite, min_size=n, max_size=n)))
    old = torch.tensor(draw(st.lists(finite, min_size=n, max_size=n)))
    advantages = torch.tensor(draw(st.lists(st.floats(-100, 100, width=32), min_size=n, max_size=n)))
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    mask[draw(st.integers(0, n - 1))] = True  # at least one valid element
    return log_prob, old, advantages, mask


@settings(max_examples=1500, deadline=None)
@given(log_ratio=finite, sigma=sigmas, kernel=st.sampled_from(KERNELS))
def test_trust_weight_in_unit_interval_and_symmetric(log_ratio, sigma, kernel):
    w = trust_weight(torch.tensor([log_ratio, -log_ratio]), sigma, kernel)
    assert ((w >= 0) & (w <= 1)).all()
    assert w[0] == w[1]
    if abs(log_ratio / sigma) < 5:  # no underflow: strictly positive
        assert (w > 0).all()


@settings(max_examples=1500, deadline=None)
@given(batch=batches(), name=st.sampled_from(sorted(OBJECTIVES)), sigma=sigmas, kernel=st.sampled_from(KERNELS))
def test_finite_outputs_and_gates_in_range(batch, name, sigma, kernel):
    log_prob, old, advantages, mask = batch
    log_prob = log_prob.requires_grad_()
    kwargs = {"sigma": sigma, "kernel": kernel} if name == "gipo" else {}
    result = get_objective(name)(log_prob, old, advantages, mask, **kwargs)
    (grad,) = torch.autograd.grad(result.loss, log_prob)
    assert torch.isfinite(result.loss)
    assert torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    assert ((result.gate >= 0) & (result.gate <= 1)).all()
    assert all(torch.isfinite(v) for v in result.metrics.values())
    assert 0.0 <= result.metrics["ess"].item() <= 1.0 + 1e-5


@settings(max_examples=1000, deadline=None)
@given(batch=batches(), name=st.sampled_from(sorted(OBJECTIVES)))
def test_masked_elements_do_not_matter(batch, name):
    log_prob, old, advantages, mask = batch
    scrambled = log_prob.clone()
    scrambled[~mask] = float("nan")
    a = get_objective(name)(log_prob, old, advantages, mask)
    b = get_objective(name)(scrambled, old, advantages, mask)
    torch.testing.assert_close(a.loss, b.loss, equal_nan=False)


@settings(max_examples=500, deadline=None)
@given(batch=batches(), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]))
def test_dtype_handling(batch, dtype):
    log_prob, old, advantages, mask = batch
    log_prob, old, advantages = (t.clamp(-60000, 60000).to(dtype) for t in (log_prob, old, advantages))
    result = gipo_objective(log_prob, old, advantages, mask)
    expected = torch.float64 if dtype == torch.float64 else torch.float32
    assert result.loss.dtype == expected
    assert torch.isfinite(result.loss)
