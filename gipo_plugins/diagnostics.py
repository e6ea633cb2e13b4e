r"""Utilization diagnostics: how much of a batch still drives the policy gradient.

Given per-element log-ratios $\ell$, gates $g$ and gradient weights $u = g\,r$
over the valid (unmasked) elements $i = 1..N$:

| key | meaning |
|---|---|
| `trust_weight_mean` | $\frac1N\sum_i g_i$ (GIPO's $w$; PPO: fraction alive) |
| `trust_weight_min` | $\min_i g_i$ |
| `dead_fraction` | fraction with $u_i = 0$ exactly (PPO: clipped samples) |
| `suppressed_fraction` | fraction with $g_i < 10^{-3}$ (GIPO's "suppressed") |
| `ess` | effective sample size $(\sum u)^2 / (N \sum u^2) \in [0, 1]$ (0 when every $u_i = 0$) |
| `log_ratio_abs_mean` | $\frac1N\sum_i \vert\ell_i\vert$ |
| `log_ratio_abs_p95` | 95th percentile of $\vert\ell_i\vert$ |
| `approx_kl` | $\frac1N\sum_i (r_i - 1) - \ell_i$, an estimate of $\mathrm{KL}(\pi_{old}\,\Vert\,\pi_\theta)$ |
| `ratio_mean` | $\frac1N\sum_i r_i$ |

A collapse in `ess` together with a rising `dead_fraction` is the "utilization collapse" of
hard clipping on stale data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gipo_plugins.kernels import MAX_LOG_GRAD_WEIGHT

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
"""Keys of [`utilization_metrics`][], in order."""

_QUANTILE_MAX_ELEMENTS = 2**24  # torch.quantile's input limit


def masked_quantile(x: Tensor, mask: Tensor | None, q: float) -> Tensor:
    """Quantile `q` of `x` (linear interpolation, as `torch.quantile`) over the positions where `mask` is true.

    Unmasked, it selects the two neighbouring order statistics (`kthvalue`, linear time) instead of
    sorting; masked, the number of valid elements is data-dependent, so it uses `nanquantile`.
    """
    flat = x.reshape(-1)
    if mask is None:
        position = q * (flat.numel() - 1)
        low = int(position)
        below = flat.kthvalue(low + 1).values
        if position == low:
            return below
        return below + (position - low) * (flat.kthvalue(low + 2).values - below)
    flat = torch.where(mask.reshape(-1), flat, flat.new_full((), float("nan")))
    if flat.numel() > _QUANTILE_MAX_ELEMENTS:
        flat = flat[:: -(-flat.numel() // _QUANTILE_MAX_ELEMENTS)]
    return torch.nanquantile(flat, q)


@torch.no_grad()
def utilization_metrics(
    log_ratio: Tensor, gate: Tensor, grad_weight: Tensor, mask: Tensor | None = None, ratio: Tensor | None = None
) -> dict[str, Tensor]:
    """Diagnostics of the table above, as detached 0-dim fp32 tensors (no host sync).

    Args:
        log_ratio: $\\ell$, any shape.
        gate: $g$, same shape.
        grad_weight: $u$, same shape.
        mask: boolean, same shape, at least one element true; `None` when every element is valid.
        ratio: $r = e^{\\ell}$ (value capped at `MAX_LOG_GRAD_WEIGHT`) if the caller has it, else computed here.
    """
    log_ratio, gate, grad_weight = (t.float() for t in (log_ratio, gate, grad_weight))
    ratio = torch.exp(log_ratio.clamp(max=MAX_LOG_GRAD_WEIGHT)) if ratio is None else ratio.float()
    abs_log_ratio = log_ratio.abs()
    # One reduction for every sum (masked positions hold finite values: the objectives zero them).
    per_element = torch.stack(
        [
            gate,
            (grad_weight == 0).float(),
            (gate < SUPPRESSED_BELOW).float(),
            abs_log_ratio,
            (ratio - 1) - log_ratio,
            ratio,
            grad_weight,
            grad_weight.square(),
        ]
    ).reshape(8, -1)
    if mask is None:
        count: Tensor | float = float(log_ratio.numel())
        sums = per_element.sum(1)
        gate_min = gate.min()
    else:
        weight = mask.reshape(-1).float()
        count = weight.sum().clamp(min=1)
        sums = per_element @ weight
        gate_min = torch.where(mask, gate, float("inf")).min()
    means = sums[:6] / count
    sum_u, sum_u2 = sums[6], sums[7]
    ess = torch.where(sum_u2 > 0, sum_u.square() / (count * sum_u2.clamp(min=torch.finfo(sum_u2.dtype).tiny)), 0.0)
    return {
        "trust_weight_mean": means[0],
        "trust_weight_min": gate_min,
        "dead_fraction": means[1],
        "suppressed_fraction": means[2],
        "ess": ess,
        "log_ratio_abs_mean": means[3],
        "log_ratio_abs_p95": masked_quantile(abs_log_ratio, mask, 0.95),
        "approx_kl": means[4],
        "ratio_mean": means[5],
    }


DIVERGENCE_LOG_RATIO_P95 = 10.0
"""Threshold on the 95th percentile of $|\\ell|$ above which the adapters warn (once) of divergence.

At $|\\ell| = 10$ the ratio is $e^{10} \\approx 22\\,000$ and a Gaussian trust weight with $\\sigma = 1$
is $e^{-50}$: the learner has left the data behind. Healthy stale runs stay around 1–3 (see the
Meta-World report); the documented failure (no KL penalty) grows to the hundreds.
"""


def divergence_message(p95: float, threshold: float = DIVERGENCE_LOG_RATIO_P95) -> str:
    """The warning text: what was seen and what to do."""
    return (
        f"GIPO: the 95th percentile of |log r| reached {p95:.1f} (> {threshold:g}): the policy has moved far from "
        "the behaviour policy that collected the data, so nearly every sample's trust weight is ~0 (PPO-clip: dead). "
        "Add or raise a KL penalty to the behaviour policy (kl_coeff), use a smaller sigma, or take fewer actor "
        "steps per batch."
    )


class DivergenceMonitor:
    """Warns once, through a framework's logger, when $|\\ell|$'s p95 passes a threshold — without a host sync.

    `update(metrics)` hands over the 0-dim `log_ratio_abs_p95` tensor of a call. On CUDA it is copied
    to pinned host memory asynchronously and read on a later call once the copy has completed (a
    CUDA event is polled, never waited on); on the CPU it is read directly (no device to sync with).
    So the warning may come one call late, and the hot path never stalls.

    Args:
        warn: the framework logger's warning function, e.g. `logging.getLogger("ray.rllib").warning`.
        threshold: the p95 of $|\\ell|$ that triggers the warning (default `DIVERGENCE_LOG_RATIO_P95`).
    """

    def __init__(self, warn: Callable[[str], object], threshold: float = DIVERGENCE_LOG_RATIO_P95):
        self.warn, self.threshold = warn, threshold
        self.warned = False
        self._pending: tuple[Tensor, object] | None = None

    def update(self, metrics: dict[str, Tensor]) -> None:
        """Hand over a call's metrics (skipped while `torch.compile` traces: a host read would break the graph)."""
        if self.warned or torch.compiler.is_compiling():
            return
        self._read_pending()
        value = metrics["log_ratio_abs_p95"].detach()
        if value.device.type == "cuda":
            host = torch.empty((), dtype=value.dtype, pin_memory=True)
            host.copy_(value, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending = (host, event)
        else:
            self._pending = (value, None)
        if value.device.type != "cuda":
            self._read_pending()

    def _read_pending(self) -> None:
        if self._pending is None:
            return
        host, event = self._pending
        if event is not None and not event.query():
            return
        self._pending = None
        p95 = float(host.numpy())  # a host tensor: no device op, no sync
        if p95 > self.threshold:
            self.warned = True
            self.warn(divergence_message(p95, self.threshold))
