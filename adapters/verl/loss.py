r"""The `gipo` policy loss: verl's loss call translated into a core objective call.

verl calls a policy loss by keyword with `(batch, response_length)` tensors and reads `(pg_loss, metrics)`
back (`verl.workers.utils.losses.ppo_loss`). Per token, with $\ell = \log\pi_\theta - \log\pi_{old}$ and
the core objective's term $t(\ell, A)$ (GIPO's by default,
$t = -\,r\,A\,\mathrm{sg}[w]$, $w = k(\mathrm{sg}[\ell] / \sigma_{eff})$):

$$\text{pg\_loss} = \mathrm{agg}\big(t(\ell, A)\cdot \rho + \beta\,\big((e^{\ell} - 1) - \ell\big),\
\text{response\_mask}\big)$$

where $\rho$ is verl's `rollout_is_weights` (1 when absent; applied to the policy term as verl's `vanilla`
does), $\beta$ the anchor coefficient `behaviour_kl_coeff` (0.1 with GIPO by default, 0 for the baseline
objectives; the anchor is the core's k3 estimate of $\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$,
`gipo_plugins.behaviour_kl`, unweighted like verl's own KL loss), and agg is verl's own `agg_loss` for the
configured `loss_agg_mode`, with `config.global_batch_info` (data-parallel size, global token and sequence
counts). The term, the anchor, the mask handling and the diagnostics are the core's; the aggregation is
verl's.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import verl.utils.torch_functional as verl_F
from verl.trainer.ppo.core_algos import agg_loss

from gipo_plugins import behaviour_kl
from gipo_plugins.diagnostics import DIVERGENCE_LOG_RATIO_P95, METRIC_KEYS, divergence_message
from gipo_plugins.verl.checks import check_bypass_mode
from gipo_plugins.verl.config import LOSS_MODE, behaviour_kl_coefficient, policy_objective

logger = logging.getLogger("gipo_plugins.verl")

METRIC_PREFIX = "actor/gipo/"
"""The core's diagnostics are logged as `actor/gipo/<key>` (`actor/gipo/trust_weight_mean`, ...)."""

_divergence_warned = False


def gipo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""verl policy loss `"gipo"`: the core objective selected by `config`, aggregated by verl's `agg_loss`.

    Args:
        old_log_prob: $\log\pi_{old}$ per token, `(batch, response_length)`.
        log_prob: $\log\pi_\theta$ per token (differentiable), same shape.
        advantages: $A$ per token, same shape.
        response_mask: valid tokens (bool or 0/1), same shape.
        loss_agg_mode: `"token-mean"`, `"token-sum"`, `"seq-mean-token-sum"`, `"seq-mean-token-mean"` or
            `"seq-mean-token-sum-norm"` (verl's `agg_loss`; every objective honours it).
        config: verl's `ActorConfig`: `policy_loss` selects the objective, GIPO's settings and the anchor
            (`GIPOPolicyLossConfig`, or verl's `PolicyLossConfig` for the core's defaults); the clip range
            (`clip_ratio_low/high`), SAPO's `tau_pos/tau_neg` and `global_batch_info` are the actor's.
        rollout_is_weights: verl's rollout-correction weights $\rho$ per token, or `None`.

    Returns:
        `(pg_loss, metrics)`. `metrics` are floats, read from the device in one transfer (verl's
        `vanilla` reads three): `actor/pg_clipfrac` (fraction of valid tokens whose gradient the
        objective switches off — PPO-clip's clipped tokens, about 0 for GIPO; the core's
        `dead_fraction`), `actor/ppo_kl` (mean of $-\ell$ over valid tokens, as verl's),
        `actor/pg_clipfrac_lower` (verl's dual-clip fraction: 0, no core objective has a dual clip),
        the core's diagnostics as `actor/gipo/<key>` (see `gipo_plugins.diagnostics`; `approx_kl` is the
        anchor's KL estimate) and `actor/gipo/behaviour_kl_coeff` (the anchor's $\beta$ in force).

    Raises:
        ValueError: from the core, naming the argument (NaN/inf at valid tokens, shapes), a bad setting,
            or `rollout_correction.bypass_mode` set on the policy-loss config.

    A micro-batch whose tokens are all masked out (e.g. every sequence rejected by verl's rollout
    correction) contributes zero, as with verl's losses: the core is then evaluated on its first token
    only for its diagnostics (chosen on the device, without a host sync), and the mask zeroes the loss.
    """
    if config is None:
        raise ValueError(f"policy loss {LOSS_MODE!r} needs verl's actor config (config=None)")
    rollout_correction = config.policy_loss.get("rollout_correction", None)
    check_bypass_mode(
        config.policy_loss.get("loss_mode", LOSS_MODE),
        bool(rollout_correction is not None and rollout_correction.get("bypass_mode", False)),
        where="policy_loss.rollout_correction",
    )
    objective = policy_objective(config)
    beta = behaviour_kl_coefficient(config.policy_loss, objective.name)
    valid = response_mask.bool()
    core_mask = _never_empty(valid)
    result = objective(log_prob, old_log_prob, advantages, core_mask, reduction="none")
    loss_mat = result.per_element
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    if beta > 0:
        loss_mat = loss_mat + beta * behaviour_kl(log_prob, old_log_prob, core_mask, reduction="none")
    pg_loss = agg_loss(
        loss_mat=loss_mat, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )
    ppo_kl = verl_F.masked_mean(-result.log_ratio, valid)
    values = torch.stack([ppo_kl.float(), *(result.metrics[key] for key in METRIC_KEYS)]).tolist()  # one host read
    diagnostics = dict(zip(METRIC_KEYS, values[1:], strict=True))
    _warn_if_diverged(diagnostics["log_ratio_abs_p95"])
    metrics = {
        "actor/pg_clipfrac": diagnostics["dead_fraction"],
        "actor/ppo_kl": values[0],
        "actor/pg_clipfrac_lower": 0.0,
        METRIC_PREFIX + "behaviour_kl_coeff": beta,
    }
    metrics.update({METRIC_PREFIX + key: value for key, value in diagnostics.items()})
    return pg_loss, metrics


def _never_empty(valid: torch.Tensor) -> torch.Tensor:
    """`valid`, or only its first element when no element is valid (decided on the device: no sync)."""
    first = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    first.view(-1)[0] = True
    return valid | (first & ~valid.any())


def _warn_if_diverged(p95: float) -> None:
    """Warn once per process when the 95th percentile of |log r| passes the core's threshold."""
    global _divergence_warned
    if not _divergence_warned and p95 > DIVERGENCE_LOG_RATIO_P95:
        _divergence_warned = True
        logger.warning(divergence_message(p95))


__all__ = ["METRIC_PREFIX", "gipo_policy_loss"]
