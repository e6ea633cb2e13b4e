"""Property tests of the core over many generated cases.

Two kinds, both sized by a profile (`GIPO_PROPERTY_PROFILE`, default `ci`):

- **vectorised sweeps**: each case is one element with its own log-prob, behaviour log-prob,
  advantage, σ, mask bit and kernel, drawn at random over wide ranges (|log r| up to 10⁴); a test
  checks a property on all cases of a seeded draw at once. `ci`: 20 000 cases per test;
  `release`: 1 000 000.
- **hypothesis**: small batches chosen adversarially (and shrunk on failure). `ci`: ~2 000 examples
  in all; `release`: 10×.

The release profile is for release checks (minutes):
`GIPO_PROPERTY_PROFILE=release pytest tests/core/test_properties.py`.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gipo_plugins import KERNELS, PolicyObjective, gipo_objective, objective_names, trust_weight

PROFILE = os.environ.get("GIPO_PROPERTY_PROFILE", "ci")
CASES = {"ci": 20_000, "release": 1_000_000}[PROFILE]
EXAMPLES = {"ci": 1, "release": 10}[PROFILE]


def _cases(seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """`CASES` independent cases: log-ratios from tiny to 1e4 in magnitude, σ in [0.01, 10], masks."""
    gen = torch.Generator().manual_seed(seed)
    scale = 10 ** torch.empty(CASES, dtype=torch.float64).uniform_(-3, 4, generator=gen)
    log_ratio = scale * torch.randn(CASES, dtype=torch.float64, generator=gen)
    old = -5 * torch.rand(CASES, dtype=torch.float64, generator=gen)
    return {
        "log_prob": (old + log_ratio).to(dtype),
        "old_log_prob": old.to(dtype),
        "advantages": (10 ** torch.empty(CASES).uniform_(-2, 2, generator=gen) * torch.randn(CASES, generator=gen)).to(
            dtype
        ),
        "sigma": (10 ** torch.empty(CASES).uniform_(-2, 1, generator=gen)).to(dtype),
        "mask": torch.rand(CASES, generator=gen) < 0.8,
    }


@pytest.mark.parametrize("kernel", KERNELS)
def test_weight_in_unit_interval_symmetric_and_one_at_ratio_one(kernel):
    c = _cases(0)
    log_ratio = c["log_prob"] - c["old_log_prob"]
    w = trust_weight(log_ratio, c["sigma"], kernel)
    assert ((w >= 0) & (w <= 1)).all()
    torch.testing.assert_close(w, trust_weight(-log_ratio, c["sigma"], kernel), rtol=0, atol=0)  # w(r) = w(1/r)
    no_underflow = (log_ratio / c["sigma"]).abs() < 9  # exp(-x²/2) > 0 in fp32
    assert (w[no_underflow] > 0).all()
    assert (trust_weight(torch.zeros(CASES), c["sigma"], kernel) == 1).all()


@pytest.mark.parametrize("name", objective_names())
def test_finite_outputs_gates_in_range_and_masks_respected(name):
    c = _cases(1)
    log_prob = c["log_prob"].clone().requires_grad_()
    settings = {"sigma": c["sigma"]} if name == "gipo" else {}
    result = PolicyObjective(name)(log_prob, c["old_log_prob"], c["advantages"], c["mask"], reduction="sum", **settings)
    (grad,) = torch.autograd.grad(result.loss, log_prob)
    assert torch.isfinite(result.loss) and torch.isfinite(grad).all()
    assert (grad[~c["mask"]] == 0).all() and (result.per_element[~c["mask"]] == 0).all()
    assert ((result.gate >= 0) & (result.gate <= 1)).all()
    assert all(torch.isfinite(v) for v in result.metrics.values())
    assert 0 <= float(result.metrics["ess"]) <= 1 + 1e-5
    # masked elements can hold anything: garbage there changes nothing
    garbage = c["log_prob"].masked_fill(~c["mask"], float("nan"))
    again = PolicyObjective(name)(garbage, c["old_log_prob"], c["advantages"], c["mask"], reduction="sum", **settings)
    torch.testing.assert_close(again.loss, result.loss.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", objective_names())
def test_gradient_identity(name):
    """d term / d log π = -g r A, element by element, wherever the ratio is representable (|ℓ| < 20)."""
    c = _cases(2, torch.float64)
    log_prob = c["log_prob"].clone().requires_grad_()
    settings = {"sigma": c["sigma"]} if name == "gipo" else {}
    result = PolicyObjective(name)(log_prob, c["old_log_prob"], c["advantages"], reduction="sum", **settings)
    (grad,) = torch.autograd.grad(result.loss, log_prob)
    inside = result.log_ratio.abs() < 20  # the ratio's value is capped at e^20 beyond (straight-through)
    expected = -result.gate * result.log_ratio.exp() * c["advantages"]
    torch.testing.assert_close(grad[inside], expected[inside], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_handling(dtype):
    c = _cases(3)
    lp, old, adv = (c[k].clamp(-60000, 60000).to(dtype) for k in ("log_prob", "old_log_prob", "advantages"))
    result = gipo_objective(lp, old, adv, c["mask"], sigma=1.0)
    assert result.loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.isfinite(result.loss)
    reference = gipo_objective(lp.double(), old.double(), adv.double(), c["mask"])  # low precision computed in fp32
    torch.testing.assert_close(result.loss.double(), reference.loss, rtol=1e-4, atol=1e-6)


# --- hypothesis: adversarial small batches ---------------------------------------------------------

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


@settings(max_examples=1000 * EXAMPLES, deadline=None)
@given(batch=batches(), name=st.sampled_from(objective_names()), sigma=sigmas, kernel=st.sampled_from(KERNELS))
def test_hypothesis_finite_outputs_and_gates_in_range(batch, name, sigma, kernel):
    log_prob, old, advantages, mask = batch
    log_prob = log_prob.requires_grad_()
    kwargs = {"sigma": sigma, "kernel": kernel} if name == "gipo" else {}
    result = PolicyObjective(name, **kwargs)(log_prob, old, advantages, mask)
    (grad,) = torch.autograd.grad(result.loss, log_prob)
    assert torch.isfinite(result.loss) and torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    assert ((result.gate >= 0) & (result.gate <= 1)).all()
    assert all(torch.isfinite(v) for v in result.metrics.values())


@settings(max_examples=1000 * EXAMPLES, deadline=None)
@given(batch=batches(), name=st.sampled_from(objective_names()))
def test_hypothesis_masked_elements_do_not_matter(batch, name):
    log_prob, old, advantages, mask = batch
    scrambled = log_prob.clone()
    scrambled[~mask] = float("nan")
    a = PolicyObjective(name)(log_prob, old, advantages, mask)
    b = PolicyObjective(name)(scrambled, old, advantages, mask)
    torch.testing.assert_close(a.loss, b.loss, equal_nan=False)
