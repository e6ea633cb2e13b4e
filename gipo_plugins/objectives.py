r"""Policy-gradient surrogate objectives: GIPO and the PPO-clip / SAPO / plain-IS baselines.

Every objective is a term function in the [registry][gipo_plugins.registry]. Per element, with
$\ell = \log\pi_\theta - \log\pi_{old}$, $r = e^{\ell}$ and advantage $A$:

| objective | per-element term (minimised) | gate $g$ |
|---|---|---|
| `gipo` | $-\,r\,A\,\mathrm{sg}[w]$ | $w = k(\ell/\sigma_{eff})$ |
| `ppo_clip` | $-\min\big(rA,\ \mathrm{clip}(r, 1-\epsilon_l, 1+\epsilon_h)\,A\big)$ | 1 inside, 0 when clipped |
| `sapo` | $-\tfrac{4}{\tau}\,\mathrm{sigmoid}(\tau(r-1))\,A$ | $4s(1-s)$ |
| `is` | $-\,r\,A$ | 1 |

where sg is stop-gradient, $\sigma_{eff} = \sigma$ for $A > 0$ and $\sigma\cdot$`sigma_neg_ratio`
otherwise, and for SAPO $\tau = \tau_+$ or $\tau_-$ by the sign of $A$ and
$s = \mathrm{sigmoid}(\tau(r-1))$. Every term has the gradient

$$\frac{\partial\,\text{term}}{\partial \log\pi_\theta} = -\,u\,A, \qquad u = g\,r,$$

so the *gate* $g$ says how much of the plain importance-sampling gradient survives and $u$ is the
per-element gradient weight the diagnostics use. PPO's gate is exactly 0 once the ratio leaves the
clip range on the side the advantage pushes to ("dead" samples); GIPO's gate decays smoothly and
never switches a sample off.

Numerics: inputs are computed in at least fp32, and ratios are formed as $e^{x}$ with the value
capped at $e^{20}$ (straight-through, so the gradient keeps its sign and direction; GIPO forms
$r\,w = e^{\ell + \log w}$ in one exponent). Log-ratios of any finite size, e.g. $|\ell| = 10^4$,
therefore give finite losses and gradients. The cap never binds for the Gaussian kernel with
$\sigma \le 6$, for PPO's unclipped region or for SAPO; it bounds plain IS and the heavy-tailed
kernels at huge ratios.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from gipo_plugins._checks import (
    as_float_tensor,
    check_below,
    check_broadcasts_to,
    check_choice,
    check_finite_where,
    check_mask_nonempty,
    check_optional_nonnegative,
    check_positive,
)
from gipo_plugins.diagnostics import utilization_metrics
from gipo_plugins.kernels import KERNELS, MAX_LOG_GRAD_WEIGHT, log_trust_weight
from gipo_plugins.registry import (
    OBJECTIVES,
    Hyperparameter,
    ObjectiveSpec,
    all_hyperparameters,
    get_objective,
    register_objective,
)

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


@dataclass(frozen=True)
class ObjectiveResult:
    """What every objective returns.

    Attributes:
        loss: the reduced term: masked mean (`"mean"`), masked sum (`"sum"`) or the per-element
            terms with zeros at masked positions (`"none"`).
        per_element: per-element terms, the batch's shape, zeros where masked.
        gate: detached gate $g$ (GIPO's trust weight $w$).
        grad_weight: detached per-element gradient weight $u = g\\,r$.
        log_ratio: detached $\\ell$.
        mask: boolean mask of valid elements, the batch's shape.
        metrics: utilization diagnostics, detached 0-dim fp32 tensors (no host sync; see
            `gipo_plugins.diagnostics.utilization_metrics`).
    """

    loss: Tensor
    per_element: Tensor
    gate: Tensor
    grad_weight: Tensor
    log_ratio: Tensor
    mask: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


def capped_exp(x: Tensor) -> Tensor:
    """`exp(x)` with the value capped at `exp(MAX_LOG_GRAD_WEIGHT)`; d/dx is the returned value."""
    return torch.exp(x - (x - MAX_LOG_GRAD_WEIGHT).clamp(min=0).detach())


def by_advantage_sign(advantages: Tensor, positive: float | Tensor, negative: float | Tensor) -> float | Tensor:
    """`positive` where $A > 0$, else `negative` (a plain number when both are the same number)."""
    if not isinstance(positive, Tensor) and not isinstance(negative, Tensor) and positive == negative:
        return positive
    pos, neg = (torch.as_tensor(v, dtype=advantages.dtype, device=advantages.device) for v in (positive, negative))
    return torch.where(advantages > 0, pos, neg)


# --- hyperparameter checks ------------------------------------------------------------------------


def clip_range(name: str, value: float | Tensor | tuple | list) -> float | Tensor | tuple:
    """Check PPO's clip range: $\\epsilon > 0$ or a `(low, high)` pair with $0 < \\epsilon_l < 1$."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        low, high = (check_positive(name, v) for v in value)
        check_below(f"{name} low", low, 1.0, "so that 1 - low > 0")
        return (low, high)
    value = check_positive(name, value)
    check_below(name, value, 1.0, "so that 1 - epsilon > 0")
    return value


def _choice(choices: tuple[str, ...]):
    return lambda name, value: check_choice(name, value, choices)


SIGMA = Hyperparameter("sigma", 1.0, "GIPO's kernel scale σ > 0 (1.0: the paper's 'GIPO (1.0, 1.0)')", check_positive)
SIGMA_NEG_RATIO = Hyperparameter(
    "sigma_neg_ratio", 1.0, "σ₋/σ₊ for non-positive advantages (0.5: the reference script's default)", check_positive
)
KERNEL = Hyperparameter("kernel", "gaussian", "GIPO's trust-weight kernel", _choice(KERNELS), KERNELS)
CLIP_EPSILON = Hyperparameter("clip_epsilon", 0.2, "PPO's clip range ε, or a (low, high) pair", clip_range)
SAPO_TAU_POS = Hyperparameter("sapo_tau_pos", 1.0, "SAPO's temperature τ₊ > 0 for positive advantages", check_positive)
SAPO_TAU_NEG = Hyperparameter("sapo_tau_neg", 1.05, "SAPO's temperature τ₋ > 0 otherwise", check_positive)


# --- the registered objectives --------------------------------------------------------------------


@register_objective("gipo", SIGMA, SIGMA_NEG_RATIO, KERNEL)
def gipo_term(log_ratio: Tensor, advantages: Tensor, *, sigma, sigma_neg_ratio, kernel) -> tuple[Tensor, Tensor]:
    r"""GIPO: importance sampling damped by a detached trust weight on the log-ratio.

    $$\sigma_{eff} = \begin{cases}\sigma & A > 0\\ \sigma\cdot\text{sigma\_neg\_ratio} & A \le 0\end{cases},\qquad
    w = k(\mathrm{sg}[\ell] / \sigma_{eff}),\qquad \text{term} = -\,r\,A\,w,\qquad
    \frac{\partial\,\text{term}}{\partial\log\pi_\theta} = -\,w\,r\,A.$$
    """
    sigma_eff = sigma if sigma_neg_ratio == 1 else by_advantage_sign(advantages, sigma, sigma * sigma_neg_ratio)
    log_w = log_trust_weight(log_ratio.detach(), sigma_eff, kernel)
    return -capped_exp(log_ratio + log_w) * advantages, torch.exp(log_w)  # r * w without inf * 0


@register_objective("ppo_clip", CLIP_EPSILON)
def ppo_clip_term(log_ratio: Tensor, advantages: Tensor, *, clip_epsilon) -> tuple[Tensor, Tensor]:
    r"""PPO's clipped surrogate $-\min(rA,\ \mathrm{clip}(r, 1-\epsilon_l, 1+\epsilon_h)A)$.

    The gate is 1 where the unclipped branch is active and exactly 0 where the ratio left the clip
    range in the direction the advantage pushes ($A>0, r>1+\epsilon_h$ or $A<0, r<1-\epsilon_l$):
    those samples are dead.
    """
    low, high = clip_epsilon if isinstance(clip_epsilon, tuple | list) else (clip_epsilon, clip_epsilon)
    ratio = capped_exp(log_ratio)
    dead = ((advantages > 0) & (ratio > 1 + high)) | ((advantages < 0) & (ratio < 1 - low))
    clipped = torch.minimum(torch.maximum(ratio.detach(), 1 - torch.as_tensor(low)), 1 + torch.as_tensor(high))
    return -torch.where(dead, clipped * advantages, ratio * advantages), (~dead).to(ratio.dtype)


@register_objective("sapo", SAPO_TAU_POS, SAPO_TAU_NEG)
def sapo_term(log_ratio: Tensor, advantages: Tensor, *, sapo_tau_pos, sapo_tau_neg) -> tuple[Tensor, Tensor]:
    r"""SAPO's soft gate $-\tfrac{4}{\tau}\,\mathrm{sigmoid}(\tau(r-1))\,A$.

    $\tau = \tau_+$ for $A > 0$, else $\tau_-$ (defaults from the SAPO paper, as in TRL). The gate
    is $4s(1-s)$ with $s = \mathrm{sigmoid}(\tau(r-1))$, so $u = 1$ at $r = 1$.
    """
    ratio = capped_exp(log_ratio)
    tau = by_advantage_sign(advantages, sapo_tau_pos, sapo_tau_neg)
    soft = torch.sigmoid(tau * (ratio - 1))
    return -(4.0 / tau) * soft * advantages, (4.0 * soft * (1 - soft)).detach()


@register_objective("is")
def is_term(log_ratio: Tensor, advantages: Tensor) -> tuple[Tensor, Tensor]:
    r"""Plain importance sampling $-rA$ (no clip, no weight): unbiased, high variance."""
    ratio = capped_exp(log_ratio)
    return -ratio * advantages, torch.ones_like(ratio)


# --- the machinery every objective shares ---------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    log_ratio: Tensor  # differentiable, zero at masked positions
    advantages: Tensor  # the batch's shape, zero at masked positions
    mask: Tensor  # bool, the batch's shape
    full: bool  # no element is masked out


def _prepare(log_ratio: Tensor, advantages: Tensor | None, mask: Tensor | None, finite: dict[str, Tensor]) -> _Batch:
    """Shape checks (host), finiteness and non-empty mask (device asserts), masking."""
    shape = log_ratio.shape
    advantages = log_ratio.new_zeros(()) if advantages is None else as_float_tensor("advantages", advantages)
    check_broadcasts_to("advantages", advantages, shape, "log_prob")
    if mask is None:  # fast path: every element is valid
        check_finite_where(finite | {"advantages": advantages}, None)
        valid = torch.ones(shape, dtype=torch.bool, device=log_ratio.device)
        return _Batch(log_ratio, advantages.detach().expand(shape), valid, full=True)
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    check_broadcasts_to("mask", mask, shape, "log_prob")
    valid = (mask != 0).expand(shape)
    check_mask_nonempty(valid)
    check_finite_where(finite | {"advantages": advantages}, valid)
    zero = log_ratio.new_zeros(())
    return _Batch(
        torch.where(valid, log_ratio, zero), torch.where(valid, advantages.detach().expand(shape), zero), valid, False
    )


def _log_ratio_of(log_prob: Tensor, old_log_prob: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    log_prob = as_float_tensor("log_prob", log_prob)
    old_log_prob = as_float_tensor("old_log_prob", old_log_prob)
    check_broadcasts_to("old_log_prob", old_log_prob, log_prob.shape, "log_prob")
    return log_prob - old_log_prob.detach(), {"log_prob": log_prob, "old_log_prob": old_log_prob}


def _reduce(term: Tensor, batch: _Batch, reduction: str) -> tuple[Tensor, Tensor]:
    """(reduced, per-element with zeros at masked positions)."""
    if not batch.full:
        term = torch.where(batch.mask, term, term.new_zeros(()))
    if reduction == "mean":
        return (term.mean() if batch.full else term.sum() / batch.mask.sum()), term
    if reduction == "sum":
        return term.sum(), term
    return term, term


def _evaluate(spec: ObjectiveSpec, batch: _Batch, reduction: str, settings: dict[str, Any]) -> ObjectiveResult:
    term, gate = spec.term(batch.log_ratio, batch.advantages, **settings)
    loss, term = _reduce(term, batch, reduction)
    log_ratio, gate = batch.log_ratio.detach(), gate.detach()
    ratio = capped_exp(log_ratio)
    grad_weight = gate * ratio
    metrics = utilization_metrics(log_ratio, gate, grad_weight, None if batch.full else batch.mask, ratio)
    return ObjectiveResult(loss, term, gate, grad_weight, log_ratio, batch.mask, metrics)


class PolicyObjective:
    """One switch over the registered objectives, with every setting validated once, at construction.

    Adapters keep one built from their config and call it on each batch. Settings of objectives other
    than the selected one are validated too (an adapter passes all its settings) but not used.

    Examples:
        >>> objective = PolicyObjective("gipo", sigma=0.5)
        >>> result = objective(log_prob, old_log_prob, advantages, mask)
        >>> result.loss.backward(); result.metrics["ess"]

    Args:
        name: a registered objective: `"gipo"` (default), `"ppo_clip"`, `"sapo"`, `"is"` or your own.
        **settings: hyperparameters by their registered names (`sigma`, `sigma_neg_ratio`, `kernel`,
            `clip_epsilon`, `sapo_tau_pos`, `sapo_tau_neg`, ...); unset ones take their defaults.

    Raises:
        ValueError: an unknown objective or a bad setting, naming it.
        TypeError: a setting no registered objective takes.
    """

    def __init__(self, name: str = "gipo", /, **settings: Any):
        spec = get_objective(name)
        known = all_hyperparameters()
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; the registered objectives take {sorted(known)}")
        self.name = name
        self.settings = {key: known[key].validate(value) for key, value in settings.items()}
        self._known = frozenset(known)
        self._spec = spec
        self._kwargs = {hp.name: self.settings.get(hp.name, hp.default) for hp in spec.hyperparameters}

    @property
    def spec(self) -> ObjectiveSpec:
        return self._spec

    def kwargs(self) -> dict[str, Any]:
        """The settings the selected objective takes (defaults filled in)."""
        return dict(self._kwargs)

    def __getattr__(self, key: str) -> Any:
        """A setting by name (`objective.sigma`): the given value, else the registered default."""
        hyperparameters = all_hyperparameters()
        if key.startswith("_") or key not in hyperparameters:
            raise AttributeError(key)
        return self.__dict__["settings"].get(key, hyperparameters[key].default)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyObjective) and (self.name, self._kwargs) == (other.name, other._kwargs)

    def __repr__(self) -> str:
        return f"PolicyObjective({self.name!r}, {', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())})"

    def __getstate__(self) -> dict:
        return {"name": self.name, "settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["name"], **state["settings"])

    def __call__(self, log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None,
                 *, reduction: Reduction = "mean", **overrides: Any) -> ObjectiveResult:  # fmt: skip
        """Evaluate on log-probs: $\\ell = $ `log_prob` − sg`old_log_prob`.

        Args:
            log_prob: $\\log\\pi_\\theta(a|s)$ (differentiable), any shape.
            old_log_prob: behaviour log-probs $\\log\\pi_{old}$; broadcastable to `log_prob`.
            advantages: $A$; broadcastable to `log_prob` (e.g. `(B, 1)` for `(B, T)`).
            mask: optional; non-zero marks valid elements; broadcastable to `log_prob`.
            reduction: `"mean"` (masked mean, default), `"sum"` or `"none"`.
            **overrides: settings replacing the stored ones for this call by name, e.g. a scheduled
                `sigma` buffer. They are *not* validated here (no host sync on the hot path):
                validate them where they are set. Those the selected objective does not take are
                ignored.

        Raises:
            ValueError: naming the argument: shapes that do not broadcast to `log_prob`, NaN/inf at
                unmasked positions, an all-masked or empty batch, an unknown `reduction` (data checks
                run as device asserts by default; see `gipo_plugins.set_check_mode`).
        """
        log_ratio, finite = _log_ratio_of(log_prob, old_log_prob)
        return self._run(log_ratio, advantages, mask, reduction, overrides, finite)

    def on_log_ratio(self, log_ratio: Tensor, advantages: Tensor, mask: Tensor | None = None,
                     *, reduction: Reduction = "mean", log_ratio_name: str = "log_ratio",
                     **overrides: Any) -> ObjectiveResult:  # fmt: skip
        """Evaluate on a differentiable log-ratio $\\ell$ an adapter already has (e.g. TorchRL's `log_weight`).

        Arguments and errors as `__call__`, with `log_ratio` in place of the two log-probs; errors about
        it name `log_ratio_name` (say, where the adapter's log-probs came from).
        """
        log_ratio = as_float_tensor(log_ratio_name, log_ratio)
        return self._run(log_ratio, advantages, mask, reduction, overrides, {log_ratio_name: log_ratio})

    def _run(self, log_ratio, advantages, mask, reduction, overrides, finite) -> ObjectiveResult:
        check_choice("reduction", reduction, REDUCTIONS)
        unknown = overrides.keys() - self._known
        if unknown:
            raise TypeError(f"unknown setting override(s) {sorted(unknown)}")
        settings = self._kwargs | {k: v for k, v in overrides.items() if k in self._kwargs}
        for key, value in settings.items():  # tensor settings must fit the batch (shape check, no sync)
            if isinstance(value, Tensor) and value.ndim:
                check_broadcasts_to(key, value, log_ratio.shape, "log_prob")
        batch = _prepare(log_ratio, advantages, mask, finite)
        settings = {k: v.to(batch.log_ratio.dtype) if isinstance(v, Tensor) else v for k, v in settings.items()}
        return _evaluate(self._spec, batch, reduction, settings)


# --- the public functions of the built-in objectives ----------------------------------------------


def gipo_objective(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None, *,
                   sigma: float | Tensor = 1.0, sigma_neg_ratio: float = 1.0, kernel: str = "gaussian",
                   reduction: Reduction = "mean") -> ObjectiveResult:  # fmt: skip
    r"""GIPO: importance sampling damped by a detached trust weight on the log-ratio.

    $$\ell = \log\pi_\theta - \log\pi_{old},\quad r = e^{\ell},\quad
    \sigma_{eff} = \begin{cases}\sigma & A > 0\\ \sigma\cdot\text{sigma\_neg\_ratio} & A \le 0\end{cases}$$

    $$w = k(\mathrm{sg}[\ell] / \sigma_{eff}),\qquad \text{term} = -\,r\,A\,w,\qquad
    \frac{\partial\,\text{term}}{\partial\log\pi_\theta} = -\,w\,r\,A.$$

    Args:
        log_prob: $\log\pi_\theta(a|s)$ (differentiable), any shape.
        old_log_prob: behaviour log-probs $\log\pi_{old}$; broadcastable to `log_prob`.
        advantages: $A$; broadcastable to `log_prob` (e.g. `(B, 1)` for `(B, T)`).
        mask: optional; non-zero marks valid elements. Broadcastable to `log_prob`.
        sigma: $\sigma > 0$ (a number, or a tensor broadcastable to `log_prob`). Default 1, the
            paper's symmetric "GIPO (1.0, 1.0)".
        sigma_neg_ratio: $\sigma_-/\sigma_+$ for non-positive advantages; 0.5 gives the
            advantage-aware variant of the reference code.
        kernel: `"gaussian"`, `"laplacian"` or `"cauchy"` (see `gipo_plugins.kernels`).
        reduction: `"mean"` (masked mean, default), `"sum"` or `"none"`.

    Returns:
        An `ObjectiveResult`; its `gate` is $w$.

    Raises:
        ValueError: naming the argument, for a non-positive or non-finite `sigma` or
            `sigma_neg_ratio`, an unknown `kernel`/`reduction`, shapes that do not broadcast to
            `log_prob`, NaN/inf at unmasked positions, an all-masked or empty batch.
    """
    objective = PolicyObjective("gipo", sigma=sigma, sigma_neg_ratio=sigma_neg_ratio, kernel=kernel)
    return objective(log_prob, old_log_prob, advantages, mask, reduction=reduction)


def ppo_clip_objective(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None, *,
                       clip_epsilon: float | Tensor | tuple[float, float] = 0.2,
                       reduction: Reduction = "mean") -> ObjectiveResult:  # fmt: skip
    r"""PPO's clipped surrogate $-\min(rA,\ \mathrm{clip}(r, 1-\epsilon_l, 1+\epsilon_h)A)$ (see `ppo_clip_term`).

    Args:
        clip_epsilon: $\epsilon$, or a `(low, high)` pair for asymmetric ranges.

    Other arguments and errors as `gipo_objective`.
    """
    objective = PolicyObjective("ppo_clip", clip_epsilon=clip_epsilon)
    return objective(log_prob, old_log_prob, advantages, mask, reduction=reduction)


def sapo_objective(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None, *,
                   sapo_tau_pos: float = 1.0, sapo_tau_neg: float = 1.05,
                   reduction: Reduction = "mean") -> ObjectiveResult:  # fmt: skip
    r"""SAPO's soft gate $-\tfrac{4}{\tau}\,\mathrm{sigmoid}(\tau(r-1))\,A$ (see `sapo_term`).

    Args:
        sapo_tau_pos: temperature $\tau_+ > 0$ for positive advantages.
        sapo_tau_neg: temperature $\tau_- > 0$ otherwise.

    Other arguments and errors as `gipo_objective`.
    """
    objective = PolicyObjective("sapo", sapo_tau_pos=sapo_tau_pos, sapo_tau_neg=sapo_tau_neg)
    return objective(log_prob, old_log_prob, advantages, mask, reduction=reduction)


def is_objective(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None, *,
                 reduction: Reduction = "mean") -> ObjectiveResult:  # fmt: skip
    r"""Plain importance sampling $-rA$ (no clip, no weight): unbiased, high variance.

    Arguments and errors as `gipo_objective`.
    """
    return PolicyObjective("is")(log_prob, old_log_prob, advantages, mask, reduction=reduction)


PUBLISHED_KL_COEFF = 0.1
r"""The published method's anchor: $0.1\cdot\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ on every actor step, with
$\pi_{old}$ the behaviour policy (the authors' reference script, for every objective it compares)."""

BEHAVIOUR_KL_COEFF = Hyperparameter(
    "behaviour_kl_coeff",
    None,
    "coefficient beta >= 0 of the anchor beta * KL(pi_behaviour || pi_theta); None: the published 0.1 with "
    "objective 'gipo' and 0 (the framework's own loss) with any other",
    check_optional_nonnegative,
)
"""The anchor's setting, one name in every adapter that adds it (RLlib's AGIPO, TRL, the VLA trainer, verl);
not an objective's hyperparameter: the anchor is added to any objective's loss."""


def anchor_coeff(behaviour_kl_coeff: float | None, objective: str) -> float:
    """The anchor coefficient in force: the given one, else `PUBLISHED_KL_COEFF` for `"gipo"` and 0 otherwise.

    GIPO as shipped is the published method; a baseline objective keeps its framework's loss unless the
    anchor is set explicitly (an A/B sets it for both arms).
    """
    if behaviour_kl_coeff is not None:
        return behaviour_kl_coeff
    return PUBLISHED_KL_COEFF if objective == "gipo" else 0.0


def categorical_kl(logits: Tensor, old_logits: Tensor, mask: Tensor | None = None, *,
                   reduction: Reduction = "mean") -> Tensor:  # fmt: skip
    r"""Exact $\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ between categoricals over the last dimension.

    $$\mathrm{KL} = \sum_a \pi_{old}(a)\,\big(\log\pi_{old}(a) - \log\pi_\theta(a)\big),
    \qquad \frac{\partial\,\mathrm{KL}}{\partial\,\mathrm{logits}} = \pi_\theta - \pi_{old},$$

    with $\pi = \mathrm{softmax}(\text{logits})$ and `old_logits` the behaviour policy's, stored when it
    acted (detached here). The anchor for discrete actions and action tokens: unlike the sampled
    estimate (`behaviour_kl`) it pulls every action's probability back, not only the one taken.
    Actions the behaviour policy could not take ($-\infty$ logits) contribute 0. Computed in at least fp32.

    Args:
        logits: current logits (differentiable), `(*batch, num_actions)`.
        old_logits: behaviour logits; broadcastable to `logits`.
        mask: optional, over `batch` (non-zero marks valid elements).
        reduction: `"mean"` (masked mean, default), `"sum"` or `"none"` (shape `batch`, zeros where masked).

    Raises:
        ValueError: naming the argument: shapes that do not broadcast, NaN at unmasked positions, an
            all-masked batch, an unknown `reduction`.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    logits = as_float_tensor("logits", logits)
    old_logits = as_float_tensor("old_logits", old_logits).detach()
    check_broadcasts_to("old_logits", old_logits, logits.shape, "logits")
    old_log_p = old_logits.log_softmax(-1)
    gap = old_log_p - logits.log_softmax(-1)
    kl = torch.where(old_log_p > -torch.inf, old_log_p.exp() * gap, gap.new_zeros(())).sum(-1)
    batch = _prepare(kl, None, mask, {"the categorical KL": kl.detach()})
    return _reduce(batch.log_ratio, batch, reduction)[0]


def behaviour_kl(log_prob: Tensor, old_log_prob: Tensor, mask: Tensor | None = None, *,
                 reduction: Reduction = "mean") -> Tensor:  # fmt: skip
    r"""Differentiable sample estimate of $\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ for a KL penalty.

    With samples drawn from $\pi_{old}$ and $\ell = \log\pi_\theta - \log\pi_{old}$, the "k3"
    estimator $(e^{\ell} - 1) - \ell \ge 0$ is unbiased, and its gradient
    $(r - 1)\nabla\log\pi_\theta$ pulls $r$ back towards 1. It works for any distribution (only
    log-probs are needed). $e^{\ell}$ is capped as in the objectives, so it stays finite.

    Args and errors as `gipo_objective` (without `advantages`).
    """
    check_choice("reduction", reduction, REDUCTIONS)
    log_ratio, finite = _log_ratio_of(log_prob, old_log_prob)
    batch = _prepare(log_ratio, None, mask, finite)
    return _reduce(capped_exp(batch.log_ratio) - 1 - batch.log_ratio, batch, reduction)[0]


__all__ = [
    "BEHAVIOUR_KL_COEFF",
    "OBJECTIVES",
    "PUBLISHED_KL_COEFF",
    "REDUCTIONS",
    "ObjectiveResult",
    "PolicyObjective",
    "anchor_coeff",
    "behaviour_kl",
    "by_advantage_sign",
    "capped_exp",
    "categorical_kl",
    "gipo_objective",
    "is_objective",
    "ppo_clip_objective",
    "sapo_objective",
]
