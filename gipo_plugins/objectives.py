r"""Policy-gradient surrogate objectives: GIPO and the PPO-clip / SAPO / plain-IS baselines.

All objectives share one signature and return an :class:`ObjectiveResult`. Per element, with
:math:`\ell = \log\pi_\theta - \log\pi_{old}`, :math:`r = e^{\ell}` and advantage :math:`A`:

=============  =================================================  ===============================
objective      per-element term (minimised)                       gate :math:`g` (see below)
=============  =================================================  ===============================
``gipo``       :math:`-\,r\,A\,\mathrm{sg}[w(\ell)]`                :math:`w = k(\ell/\sigma_{eff})`
``ppo_clip``   :math:`-\min(rA,\ \mathrm{clip}(r, 1-\epsilon_l, 1+\epsilon_h)A)`  1 inside, 0 when clipped
``sapo``       :math:`-\tfrac{4}{\tau}\,\mathrm{sigmoid}(\tau(r-1))\,A`  :math:`4s(1-s)`
``is``         :math:`-\,r\,A`                                    1
=============  =================================================  ===============================

where sg is stop-gradient, :math:`\sigma_{eff} = \sigma` for :math:`A > 0` and
:math:`\sigma\cdot\text{sigma\_neg\_ratio}` otherwise, and for SAPO :math:`\tau = \tau_+` or
:math:`\tau_-` by the sign of :math:`A` and :math:`s = \mathrm{sigmoid}(\tau(r-1))`.
Every term has the gradient

.. math:: \frac{\partial\,\text{term}}{\partial \log\pi_\theta} = -\,u\,A, \qquad u = g\,r,

so the *gate* :math:`g` says how much of the plain importance-sampling gradient survives and
:math:`u` is the per-element gradient weight used by the diagnostics. PPO's gate is exactly 0 once
the ratio leaves the clip range on the side the advantage pushes to ("dead" samples); GIPO's gate
decays smoothly and never switches a sample off.

Numerics: inputs are computed in at least fp32, and :math:`u` is formed as
:math:`\exp(\ell + \log g)` with its value capped at :math:`e^{20}` (straight-through, so the
gradient keeps its sign and direction). Log-ratios of any finite size, e.g. :math:`|\ell| = 10^4`,
therefore give finite losses and gradients. The cap never binds for the Gaussian kernel with
:math:`\sigma \le 6`, for PPO's unclipped region or for SAPO; it bounds plain IS and the heavy-tailed
kernels at huge ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from gipo_plugins._checks import (
    as_float_tensor,
    check_below,
    check_broadcasts_to,
    check_choice,
    check_finite_where,
    check_mask_nonempty,
    check_positive,
)
from gipo_plugins.diagnostics import utilization_metrics
from gipo_plugins.kernels import KERNELS, log_trust_weight

MAX_LOG_GRAD_WEIGHT = 20.0
"""Cap on :math:`\\log u` (value only; the gradient passes straight through)."""

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


@dataclass(frozen=True)
class ObjectiveResult:
    """What every objective returns.

    Attributes:
        loss: the reduced term: masked mean (``"mean"``), masked sum (``"sum"``) or the
            per-element terms with zeros at masked positions (``"none"``).
        per_element: per-element terms, ``log_prob``'s shape, zeros where masked.
        gate: detached gate :math:`g` (GIPO's trust weight :math:`w`).
        grad_weight: detached per-element gradient weight :math:`u = g\\,r`.
        log_ratio: detached :math:`\\ell`.
        mask: boolean mask of valid elements, ``log_prob``'s shape.
        metrics: utilization diagnostics, detached 0-dim fp32 tensors
            (see :func:`gipo_plugins.diagnostics.utilization_metrics`).
    """

    loss: Tensor
    per_element: Tensor
    gate: Tensor
    grad_weight: Tensor
    log_ratio: Tensor
    mask: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class _Batch:
    log_ratio: Tensor  # differentiable w.r.t. log_prob, zero at masked positions
    advantages: Tensor  # log_prob's shape, zero at masked positions
    mask: Tensor  # bool, log_prob's shape
    full: bool  # no element is masked out


def _prepare(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor | None, mask: Tensor | None) -> _Batch:
    log_prob = as_float_tensor("log_prob", log_prob)
    old_log_prob = as_float_tensor("old_log_prob", old_log_prob)
    advantages = log_prob.new_zeros(()) if advantages is None else as_float_tensor("advantages", advantages)
    shape = log_prob.shape
    check_broadcasts_to("old_log_prob", old_log_prob, shape, "log_prob")
    check_broadcasts_to("advantages", advantages, shape, "log_prob")
    if mask is None:  # fast path: every element is valid
        valid = torch.ones(shape, dtype=torch.bool, device=log_prob.device)
        check_finite_where({"log_prob": log_prob, "old_log_prob": old_log_prob, "advantages": advantages}, None)
        return _Batch(log_prob - old_log_prob.detach(), advantages.detach().expand(shape), valid, full=True)
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    check_broadcasts_to("mask", mask, shape, "log_prob")
    valid = (mask != 0).expand(shape)
    check_mask_nonempty(valid)
    check_finite_where({"log_prob": log_prob, "old_log_prob": old_log_prob, "advantages": advantages}, valid)
    zero = log_prob.new_zeros(())
    log_ratio = torch.where(valid, log_prob - old_log_prob.detach(), zero)
    advantages = torch.where(valid, advantages.detach().expand(shape), zero)
    return _Batch(log_ratio, advantages, valid, full=False)


def _capped_exp(x: Tensor) -> Tensor:
    """``exp(x)`` with the value capped at ``exp(MAX_LOG_GRAD_WEIGHT)``; d/dx is the returned value."""
    return torch.exp(x - (x - MAX_LOG_GRAD_WEIGHT).clamp(min=0).detach())


def _reduce(term: Tensor, mask: Tensor, reduction: str, full: bool = False) -> tuple[Tensor, Tensor]:
    """(reduced, per-element with zeros at masked positions)."""
    check_choice("reduction", reduction, REDUCTIONS)
    if not full:
        term = torch.where(mask, term, term.new_zeros(()))
    if reduction == "mean":
        return (term.mean() if full else term.sum() / mask.sum()), term
    if reduction == "sum":
        return term.sum(), term
    return term, term


def _finish(batch: _Batch, term: Tensor, gate: Tensor, grad_weight: Tensor, reduction: str) -> ObjectiveResult:
    loss, term = _reduce(term, batch.mask, reduction, batch.full)
    log_ratio = batch.log_ratio.detach()
    return ObjectiveResult(
        loss=loss,
        per_element=term,
        gate=gate.detach(),
        grad_weight=grad_weight.detach(),
        log_ratio=log_ratio,
        mask=batch.mask,
        metrics=utilization_metrics(log_ratio, gate.detach(), grad_weight.detach(), None if batch.full else batch.mask),
    )


def _by_advantage_sign(advantages: Tensor, positive: float | Tensor, negative: float | Tensor) -> float | Tensor:
    if isinstance(positive, float | int) and isinstance(negative, float | int) and positive == negative:
        return positive
    pos, neg = (torch.as_tensor(v, dtype=advantages.dtype, device=advantages.device) for v in (positive, negative))
    return torch.where(advantages > 0, pos, neg)


def gipo_objective(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    sigma: float | Tensor = 1.0,
    sigma_neg_ratio: float = 1.0,
    kernel: str = "gaussian",
    reduction: Reduction = "mean",
) -> ObjectiveResult:
    r"""GIPO: importance sampling damped by a detached trust weight on the log-ratio.

    .. math::
        \ell = \log\pi_\theta - \log\pi_{old},\quad r = e^{\ell},\quad
        \sigma_{eff} = \begin{cases}\sigma & A > 0\\ \sigma\cdot\text{sigma\_neg\_ratio} & A \le 0\end{cases}

        w = k(\mathrm{sg}[\ell] / \sigma_{eff}),\qquad
        \text{term} = -\,r\,A\,w,\qquad
        \frac{\partial\,\text{term}}{\partial\log\pi_\theta} = -\,w\,r\,A.

    Args:
        log_prob: :math:`\log\pi_\theta(a|s)` (differentiable), any shape.
        old_log_prob: behaviour log-probs :math:`\log\pi_{old}`; broadcastable to ``log_prob``.
        advantages: :math:`A`; broadcastable to ``log_prob`` (e.g. ``(B, 1)`` for ``(B, T)``).
        mask: optional; non-zero marks valid elements. Broadcastable to ``log_prob``.
        sigma: :math:`\sigma > 0` (float or tensor broadcastable to ``log_prob``). Default 1, the
            paper's symmetric "GIPO (1.0, 1.0)".
        sigma_neg_ratio: :math:`\sigma_-/\sigma_+` for non-positive advantages; 0.5 gives the
            advantage-aware variant of the reference code.
        kernel: ``"gaussian"``, ``"laplacian"`` or ``"cauchy"`` (see :mod:`gipo_plugins.kernels`).
        reduction: ``"mean"`` (masked mean, default), ``"sum"`` or ``"none"``.

    Returns:
        :class:`ObjectiveResult`; ``gate`` is :math:`w`.

    Raises:
        ValueError: naming the argument, for a non-positive or non-finite ``sigma`` or
            ``sigma_neg_ratio``, an unknown ``kernel``/``reduction``, shapes that do not broadcast to
            ``log_prob``, NaN/inf at unmasked positions, an all-masked or empty batch.
    """
    check_choice("kernel", kernel, KERNELS)
    check_positive("sigma", sigma)
    check_positive("sigma_neg_ratio", sigma_neg_ratio)
    batch = _prepare(log_prob, old_log_prob, advantages, mask)
    if isinstance(sigma, Tensor):
        check_broadcasts_to("sigma", sigma, batch.mask.shape, "log_prob")
        sigma = sigma.to(batch.log_ratio.dtype)
    sigma_eff = _by_advantage_sign(batch.advantages, sigma, sigma * sigma_neg_ratio)
    log_w = log_trust_weight(batch.log_ratio.detach(), sigma_eff, kernel)
    grad_weight = _capped_exp(batch.log_ratio + log_w)  # = r * w, without inf * 0
    term = -grad_weight * batch.advantages
    return _finish(batch, term, torch.exp(log_w), grad_weight, reduction)


def _clip_range(clip_epsilon: float | Tensor | tuple) -> tuple[float | Tensor, float | Tensor]:
    """``(low, high)`` from ``ε`` or ``(ε_low, ε_high)``; floats or tensors (e.g. scheduled buffers)."""
    if isinstance(clip_epsilon, tuple | list):
        if len(clip_epsilon) != 2:
            raise ValueError(f"clip_epsilon must be a float or a (low, high) pair, got {clip_epsilon!r}")
        low, high = clip_epsilon
    else:
        low = high = clip_epsilon
    check_positive("clip_epsilon", low)
    check_positive("clip_epsilon", high)
    check_below("clip_epsilon low", low, 1.0, "so that 1 - low > 0")
    return tuple(x if isinstance(x, Tensor) else float(x) for x in (low, high))


def ppo_clip_objective(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    clip_epsilon: float | Tensor | tuple[float, float] = 0.2,
    reduction: Reduction = "mean",
) -> ObjectiveResult:
    r"""PPO's clipped surrogate :math:`-\min(rA,\ \mathrm{clip}(r, 1-\epsilon_l, 1+\epsilon_h)A)`.

    The gate is 1 where the unclipped branch is active and exactly 0 where the ratio left the
    clip range in the direction the advantage pushes (:math:`A>0, r>1+\epsilon_h` or
    :math:`A<0, r<1-\epsilon_l`): those samples are dead.

    Other arguments and errors as :func:`gipo_objective`.

    Args:
        clip_epsilon: :math:`\epsilon`, or a ``(low, high)`` pair for asymmetric ranges.
    """
    low, high = _clip_range(clip_epsilon)
    batch = _prepare(log_prob, old_log_prob, advantages, mask)
    ratio = _capped_exp(batch.log_ratio)
    adv = batch.advantages
    dead = ((adv > 0) & (ratio > 1 + high)) | ((adv < 0) & (ratio < 1 - low))
    clipped = torch.minimum(torch.maximum(ratio.detach(), 1 - torch.as_tensor(low)), 1 + torch.as_tensor(high))
    term = -torch.where(dead, clipped * adv, ratio * adv)
    gate = (~dead).to(ratio.dtype)
    return _finish(batch, term, gate, gate * ratio.detach(), reduction)


def sapo_objective(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
    reduction: Reduction = "mean",
) -> ObjectiveResult:
    r"""SAPO's soft gate :math:`-\tfrac{4}{\tau}\,\mathrm{sigmoid}(\tau(r-1))\,A`.

    :math:`\tau = \tau_+` for :math:`A > 0`, else :math:`\tau_-` (defaults from the SAPO paper, as
    in TRL). The gradient weight is :math:`u = 4s(1-s)\,r` with :math:`s = \mathrm{sigmoid}(\tau(r-1))`,
    so :math:`u = 1` at :math:`r = 1`.

    Other arguments and errors as :func:`gipo_objective`.

    Args:
        tau_pos: temperature :math:`\tau_+ > 0` for positive advantages.
        tau_neg: temperature :math:`\tau_- > 0` otherwise.
    """
    check_positive("tau_pos", tau_pos)
    check_positive("tau_neg", tau_neg)
    batch = _prepare(log_prob, old_log_prob, advantages, mask)
    ratio = _capped_exp(batch.log_ratio)
    tau = _by_advantage_sign(batch.advantages, float(tau_pos), float(tau_neg))
    soft = torch.sigmoid(tau * (ratio - 1))
    term = -(4.0 / tau) * soft * batch.advantages
    gate = (4.0 * soft * (1 - soft)).detach()
    return _finish(batch, term, gate, gate * ratio.detach(), reduction)


def is_objective(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
) -> ObjectiveResult:
    r"""Plain importance sampling :math:`-rA` (no clip, no weight): unbiased, high variance.

    Arguments and errors as :func:`gipo_objective`.
    """
    batch = _prepare(log_prob, old_log_prob, advantages, mask)
    ratio = _capped_exp(batch.log_ratio)
    term = -ratio * batch.advantages
    return _finish(batch, term, torch.ones_like(ratio), ratio.detach(), reduction)


def behaviour_kl(
    log_prob: Tensor,
    old_log_prob: Tensor,
    mask: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Differentiable sample estimate of :math:`\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)` for a KL penalty.

    With samples drawn from :math:`\pi_{old}` and :math:`\ell = \log\pi_\theta - \log\pi_{old}`, the
    "k3" estimator :math:`(e^{\ell} - 1) - \ell \ge 0` is unbiased, and its gradient
    :math:`(r - 1)\nabla\log\pi_\theta` pulls :math:`r` back towards 1. It works for any distribution
    (only log-probs are needed). :math:`e^{\ell}` is capped as in the objectives, so it stays finite.

    Args and errors as :func:`gipo_objective` (without ``advantages``).
    """
    batch = _prepare(log_prob, old_log_prob, None, mask)
    return _reduce(_capped_exp(batch.log_ratio) - 1 - batch.log_ratio, batch.mask, reduction, batch.full)[0]


ObjectiveFn = Callable[..., ObjectiveResult]

OBJECTIVES: dict[str, ObjectiveFn] = {
    "gipo": gipo_objective,
    "ppo_clip": ppo_clip_objective,
    "sapo": sapo_objective,
    "is": is_objective,
}
"""Registry of objectives by name; every entry has the signature of :func:`gipo_objective`."""


def get_objective(name: str) -> ObjectiveFn:
    """Return the objective function registered under ``name`` (``gipo``, ``ppo_clip``, ``sapo``, ``is``)."""
    check_choice("objective", name, tuple(OBJECTIVES))
    return OBJECTIVES[name]


@dataclass(frozen=True)
class PolicyObjective:
    """One switch over all objectives, with every hyperparameter validated at construction.

    Adapters keep one of these built from their config and call it on each batch; the
    hyperparameters an objective does not use are ignored by it (but still validated).

    Example:
        >>> objective = PolicyObjective("gipo", sigma=0.5)
        >>> result = objective(log_prob, old_log_prob, advantages, mask)
        >>> result.loss.backward(); result.metrics["ess"]

    Attributes:
        name: ``"gipo"`` | ``"ppo_clip"`` | ``"sapo"`` | ``"is"``.
        sigma, sigma_neg_ratio, kernel: GIPO's (see :func:`gipo_objective`).
        clip_epsilon: PPO-clip's :math:`\\epsilon` or ``(low, high)``.
        sapo_tau_pos, sapo_tau_neg: SAPO's temperatures.
    """

    name: str = "gipo"
    sigma: float = 1.0
    sigma_neg_ratio: float = 1.0
    kernel: str = "gaussian"
    clip_epsilon: float | tuple[float, float] = 0.2
    sapo_tau_pos: float = 1.0
    sapo_tau_neg: float = 1.05

    def __post_init__(self) -> None:
        check_choice("objective", self.name, tuple(OBJECTIVES))
        check_positive("sigma", self.sigma)
        check_positive("sigma_neg_ratio", self.sigma_neg_ratio)
        check_choice("kernel", self.kernel, KERNELS)
        _clip_range(self.clip_epsilon)
        check_positive("sapo_tau_pos", self.sapo_tau_pos)
        check_positive("sapo_tau_neg", self.sapo_tau_neg)

    def kwargs(self) -> dict[str, object]:
        """The keyword arguments the selected objective takes."""
        if self.name == "gipo":
            return {"sigma": self.sigma, "sigma_neg_ratio": self.sigma_neg_ratio, "kernel": self.kernel}
        if self.name == "ppo_clip":
            return {"clip_epsilon": self.clip_epsilon}
        if self.name == "sapo":
            return {"tau_pos": self.sapo_tau_pos, "tau_neg": self.sapo_tau_neg}
        return {}

    def __call__(
        self,
        log_prob: Tensor,
        old_log_prob: Tensor,
        advantages: Tensor,
        mask: Tensor | None = None,
        *,
        reduction: Reduction = "mean",
        **overrides: object,
    ) -> ObjectiveResult:
        """Evaluate the selected objective.

        ``overrides`` replace stored hyperparameters by their argument names (``sigma``,
        ``sigma_neg_ratio``, ``kernel``, ``clip_epsilon``, ``tau_pos``, ``tau_neg``), e.g. a scheduled
        ``sigma`` buffer; those the selected objective does not take are ignored.
        """
        unknown = set(overrides) - _HYPERPARAMETERS
        if unknown:
            raise TypeError(f"unknown hyperparameter override(s) {sorted(unknown)}; known: {sorted(_HYPERPARAMETERS)}")
        kwargs = self.kwargs()
        kwargs.update((k, v) for k, v in overrides.items() if k in kwargs)
        return get_objective(self.name)(log_prob, old_log_prob, advantages, mask, reduction=reduction, **kwargs)


_HYPERPARAMETERS = frozenset({"sigma", "sigma_neg_ratio", "kernel", "clip_epsilon", "tau_pos", "tau_neg"})
