r"""Utilization diagnostics: how much of a batch still drives the policy gradient.

Given per-element log-ratios :math:`\ell`, gates :math:`g` and gradient weights :math:`u = g\,r`
over the valid (unmasked) elements :math:`i = 1..N`:

=========================  ==================================================================
key                        meaning
=========================  ==================================================================
``trust_weight_mean``      :math:`\frac1N\sum_i g_i` (GIPO's :math:`w`; PPO: fraction alive)
``trust_weight_min``       :math:`\min_i g_i`
``dead_fraction``          fraction with :math:`u_i = 0` exactly (PPO: clipped samples)
``suppressed_fraction``    fraction with :math:`g_i < 10^{-3}` (GIPO's "suppressed")
``ess``                    effective sample size :math:`(\sum u)^2 / (N \sum u^2) \in [0, 1]`
                           (0 when every :math:`u_i = 0`)
``log_ratio_abs_mean``     :math:`\frac1N\sum_i |\ell_i|`
``log_ratio_abs_p95``      95th percentile of :math:`|\ell_i|`
``approx_kl``              :math:`\frac1N\sum_i (r_i - 1) - \ell_i`, an estimate of
                           :math:`\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)`
``ratio_mean``             :math:`\frac1N\sum_i r_i`
=========================  ==================================================================

A collapse in ``ess`` together with a rising ``dead_fraction`` is the "utilization collapse" of
hard clipping on stale data.
"""

from __future__ import annotations

import torch
from torch import Tensor

SUPPRESSED_BELOW = 1e-3
"""Gate value below which a sample counts as suppressed."""

METRIC_KEYS: tuple[str, ...] = (
    "trust_weight_mean",
    "trust_weight_min",
    "dead_fraction",
    "suppressed_fraction",
    "ess",
    "log_ratio_abs_mean",
    "log_ratio_abs_p95",
    "approx_kl",
    "ratio_mean",
)
"""Keys of :func:`utilization_metrics`, in order."""

_QUANTILE_MAX_ELEMENTS = 2**24  # torch.quantile's input limit


def _masked_mean(x: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    return torch.where(mask, x, x.new_zeros(())).sum() / count


def masked_quantile(x: Tensor, mask: Tensor, q: float) -> Tensor:
    """Quantile ``q`` of ``x`` over the positions where ``mask`` is true (static shapes only)."""
    flat = torch.where(mask, x, x.new_full((), float("nan"))).reshape(-1)
    if flat.numel() > _QUANTILE_MAX_ELEMENTS:
        flat = flat[:: -(-flat.numel() // _QUANTILE_MAX_ELEMENTS)]
    return torch.nanquantile(flat, q)


@torch.no_grad()
def utilization_metrics(log_ratio: Tensor, gate: Tensor, grad_weight: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Diagnostics of the table above, as detached 0-dim fp32 tensors (no host sync).

    Args:
        log_ratio: :math:`\\ell`, any shape.
        gate: :math:`g`, same shape.
        grad_weight: :math:`u`, same shape.
        mask: boolean, same shape; at least one element true.
    """
    log_ratio, gate, grad_weight = (t.float() for t in (log_ratio, gate, grad_weight))
    count = mask.sum().clamp(min=1).float()
    ratio = torch.exp(log_ratio.clamp(max=20.0))
    abs_log_ratio = log_ratio.abs()
    sum_u = torch.where(mask, grad_weight, 0.0).sum()
    sum_u2 = torch.where(mask, grad_weight.square(), 0.0).sum()
    ess = torch.where(sum_u2 > 0, sum_u.square() / (count * sum_u2.clamp(min=torch.finfo(sum_u2.dtype).tiny)), 0.0)
    return {
        "trust_weight_mean": _masked_mean(gate, mask, count),
        "trust_weight_min": torch.where(mask, gate, float("inf")).min(),
        "dead_fraction": _masked_mean((grad_weight == 0).float(), mask, count),
        "suppressed_fraction": _masked_mean((gate < SUPPRESSED_BELOW).float(), mask, count),
        "ess": ess,
        "log_ratio_abs_mean": _masked_mean(abs_log_ratio, mask, count),
        "log_ratio_abs_p95": masked_quantile(abs_log_ratio, mask, 0.95),
        "approx_kl": _masked_mean((ratio - 1) - log_ratio, mask, count),
        "ratio_mean": _masked_mean(ratio, mask, count),
    }
