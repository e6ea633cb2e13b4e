r"""`GIPOConfig` and `GIPOTrainer`: GRPO's trainer with GIPO's per-token policy term.

The anchor. The published method adds $\beta\,\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ to the loss
of every objective it compares ($\beta = 0.1$, `gipo_plugins.PUBLISHED_KL_COEFF`), with $\pi_{old}$ the
policy that sampled the data. TRL's own KL (`beta`) is to a frozen reference model, a different term;
`gipo_behaviour_kl_coeff` adds the anchor. For an LLM only the sampled tokens' log-probs are stored, so
the KL is the core's k3 estimate (`gipo_plugins.behaviour_kl`) per completion token against TRL's
`old_per_token_logps`; see `GIPOTrainer` for where it enters the loss and how it is normalised.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig, GRPOTrainer

from gipo_plugins import (
    BEHAVIOUR_KL_COEFF,
    DivergenceMonitor,
    PolicyObjective,
    all_hyperparameters,
    anchor_coeff,
    behaviour_kl,
)
from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.fused import DEFAULT_CHUNK_SIZE
from gipo_plugins.trl.fused import check_fused_model, fused_per_token_logps, validate_fused_config

logger = logging.getLogger("trl.trainer.gipo")
SETTING_NAMES = {"sigma": "gipo_sigma", "sigma_neg_ratio": "gipo_sigma_neg_ratio", "kernel": "gipo_kernel"}
"""Core setting → GIPOConfig field (TRL's convention prefixes an algorithm's settings: `sapo_temperature_pos`)."""

AGGREGATIONS = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
TRL_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
"""`GRPOConfig.loss_type`'s values in the supported TRL range (a test reads them from TRL's own field help)."""
LOSS_TYPES = ("gipo", *TRL_LOSS_TYPES)
REPLACED_BY_GIPO = {
    "epsilon": "the clip range, which GIPO opens (its trust weight takes the clip's place: set gipo_sigma)",
    "epsilon_high": "the clip range's upper bound, which GIPO opens (set gipo_sigma)",
    "delta": "the ratio clamp, which would change GIPO's term",
    "off_policy_mask_threshold": "the off-policy sequence mask, whose hook GIPO's trust weight uses",
}
"""GRPOConfig settings GIPO replaces: with `loss_type="gipo"` each must keep its default (else a `ValueError`)."""
_SCALED_FOR_ACCUMULATION = ("grpo", "bnpo", "dr_grpo", "luspo")  # TRL divides these by the accumulation steps
_CLIP_METRICS = "clip_ratio/"  # TRL's clip counters: constant 0 with the clip opened, so not logged under GIPO
BEHAVIOUR_KL_METRIC = "gipo/behaviour_kl"
"""Log key of the anchor's KL (the micro-batch's masked token mean, before the coefficient), when it is on."""


@dataclass
class GIPOConfig(GRPOConfig):
    r"""`GRPOConfig` with GIPO's settings; `loss_type="gipo"` is the default.

    With `loss_type="gipo"` the per-token policy term is GIPO's
    $-\,r\,A\,\mathrm{sg}[w]$, $w = k(\log r / \sigma_{eff})$ (see
    [`gipo_plugins.gipo_objective`][]), aggregated like TRL's `gipo_aggregation` loss type. Any
    other `loss_type` (`"grpo"`, `"dapo"`, `"sapo"`, ...) runs TRL's own loss unchanged, so one
    config A/Bs GIPO against them. GIPO differs from GRPO only on stale data: use
    `num_iterations > 1` or `steps_per_generation > gradient_accumulation_steps`.

    Fused LM head (any `loss_type`): `gipo_fused_loss=True` computes every token log-prob with
    the core's chunked LM head, `gipo_fused_chunk_size` tokens at a time in fp32 (see
    `gipo_plugins.trl.fused`); the loss is unchanged.

    The anchor (any `loss_type`): `gipo_behaviour_kl_coeff` $\beta$ adds
    $\beta\,\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$, the k3 estimate per completion token against the
    old (sampling) log-probs, to the loss (see `GIPOTrainer`). Default `None`: 0.1 with
    `loss_type="gipo"` and `gipo_objective="gipo"` (GIPO as published: GRPO's loss, which it replaces,
    has no trust region besides the clip GIPO opens), 0 with TRL's own loss types (TRL's loss unchanged)
    and other objectives. Set it explicitly to give both arms of an A/B the same anchor. `anchor_coeff`
    is the value in force. It is independent of `beta`, TRL's KL to a reference model.
    """

    loss_type: str = field(
        default="gipo",
        metadata={
            "help": "Policy loss. 'gipo' (default): GIPO's trust-weighted importance sampling, aggregated as "
            "`gipo_aggregation`; `epsilon`, `epsilon_high`, `delta` and `off_policy_mask_threshold` then keep their "
            "defaults. Any GRPOConfig loss type ('grpo', 'dapo', 'sapo', 'bnpo', 'dr_grpo', 'cispo', 'luspo', "
            "'vespo') runs TRL's own loss."
        },
    )
    gipo_sigma: float = field(
        default=1.0,
        metadata={"help": "GIPO kernel scale sigma > 0 (1.0 is the paper's 'GIPO (1.0, 1.0)')."},
    )
    gipo_sigma_neg_ratio: float = field(
        default=1.0,
        metadata={"help": "sigma_-/sigma_+ for non-positive advantages (0.5: the advantage-aware variant)."},
    )
    gipo_kernel: str = field(
        default="gaussian",
        metadata={"help": "GIPO trust-weight kernel: 'gaussian', 'laplacian' or 'cauchy'."},
    )
    gipo_objective: str = field(
        default="gipo",
        metadata={
            "help": "With loss_type='gipo': the core objective whose gate weights TRL's per-token term ('gipo' by "
            "default; any objective registered with gipo_plugins.register_objective)."
        },
    )
    gipo_objective_kwargs: dict | None = field(
        default=None,
        metadata={"help": "Settings of a registered objective other than GIPO's own, by their core names."},
    )
    gipo_aggregation: str = field(
        default="dapo",
        metadata={
            "help": "Which TRL loss type's token aggregation/normalisation GIPO uses: 'dapo' (default, token "
            "sum over the generation batch), 'grpo', 'bnpo', 'dr_grpo' or 'luspo'."
        },
    )
    gipo_fused_loss: bool = field(
        default=False,
        metadata={
            "help": "Compute the token log-probs (policy, old policy, reference) with gipo_plugins' fused, chunked "
            "LM head: logits of `gipo_fused_chunk_size` tokens at a time in fp32, recomputed in the backward; the "
            "loss is unchanged. Text-only causal LMs without logit soft-capping/scaling."
        },
    )
    gipo_fused_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "Tokens per chunk of the fused LM head: its largest buffer holds chunk x vocab fp32 values."},
    )
    gipo_behaviour_kl_coeff: float | None = field(
        default=None,
        metadata={
            "help": "Coefficient beta >= 0 of the anchor beta * KL(pi_old || pi_theta) to the policy that sampled the "
            "completions (k3 estimate per token from the old log-probs), for any loss_type. None (default): the "
            "published 0.1 with loss_type='gipo' and gipo_objective='gipo', 0 otherwise (TRL's own losses "
            "unchanged); set it explicitly to give both arms of an A/B the same anchor. Independent of `beta` (the "
            "KL to a reference model)."
        },
    )

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:  # TRL's own config would fail only at the first loss call
            raise ValueError(f"unknown loss_type {self.loss_type!r}; choose one of {LOSS_TYPES}")
        super().__post_init__()
        _ = self.policy_objective  # validates every GIPO setting, named as written here, whatever the loss_type
        self.gipo_behaviour_kl_coeff = BEHAVIOUR_KL_COEFF.validate(self.gipo_behaviour_kl_coeff,
                                                                   "gipo_behaviour_kl_coeff")  # fmt: skip
        validate_fused_config(self)
        if self.loss_type != "gipo":
            return
        for name, what in REPLACED_BY_GIPO.items():
            value, default = getattr(self, name), GRPOConfig.__dataclass_fields__[name].default
            if value != default:
                raise ValueError(
                    f"{name}={value!r} sets {what}; leave it at its default ({default!r}) with loss_type='gipo', "
                    "or choose a TRL loss_type to use it"
                )
        if self.gipo_aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown gipo_aggregation {self.gipo_aggregation!r}; choose one of {AGGREGATIONS}")
        if self.use_liger_kernel:
            raise ValueError("use_liger_kernel bypasses the GRPO loss path; it cannot be used with loss_type='gipo'")

    @property
    def anchor_coeff(self) -> float:
        """The anchor coefficient in force: `gipo_behaviour_kl_coeff`, else 0.1 for GIPO's objective and 0 otherwise."""
        objective = self.gipo_objective if self.loss_type == "gipo" else self.loss_type
        return anchor_coeff(self.gipo_behaviour_kl_coeff, objective)

    @property
    def policy_objective(self) -> PolicyObjective:
        """The core objective these settings select (a `ValueError` naming the field on a bad value)."""
        registered = all_hyperparameters()
        extra = dict(self.gipo_objective_kwargs or {})
        if set(extra) & set(SETTING_NAMES):
            raise ValueError(f"gipo_objective_kwargs: set {sorted(set(extra) & set(SETTING_NAMES))} by their fields")
        if set(extra) - set(registered):
            unknown = sorted(set(extra) - set(registered))
            raise ValueError(f"gipo_objective_kwargs: unknown setting(s) {unknown}; registered: {sorted(registered)}")
        settings = {core: registered[core].validate(getattr(self, name), name) for core, name in SETTING_NAMES.items()}
        for key, value in extra.items():
            settings[key] = registered[key].validate(value, f"gipo_objective_kwargs[{key!r}]")
        try:
            return PolicyObjective(self.gipo_objective, **settings)
        except ValueError as error:
            raise ValueError(f"gipo_objective: {error}") from None


class GIPOTrainer(GRPOTrainer):
    r"""`GRPOTrainer` whose per-token policy term is GIPO's when `args.loss_type == "gipo"`.

    How it plugs in, touching as little of TRL as possible: the loss runs TRL's own
    `gipo_aggregation` path with the clip range opened ($\epsilon = \infty$, so the per-token
    term is $-rA$), and the instance's per-token multiplicative mask hook (`get_off_policy_mask`)
    returns the core's detached trust weight $w$, giving $-\,r\,A\,w$. Everything else is
    TRL's: aggregation and normalisation, token- or sequence-level importance sampling (`w` is then
    computed on the sequence log-ratio), the `beta` KL term, `num_iterations` /
    `steps_per_generation`, the logging, and the consistency warnings TRL gives for a loss type
    (they see `gipo_aggregation`, the aggregation GIPO runs). The core's diagnostics are logged as
    `gipo/<name>` (`gipo/trust_weight_mean`, `gipo/dead_fraction`, `gipo/ess` ...) into
    `self._metrics`, and `policy_loss` is always logged; TRL's `clip_ratio/*` counters, constant 0
    with the clip opened, are not.

    `GIPOTrainer.get_off_policy_mask` stays TRL's static method: only a GIPO trainer's instance
    attribute of that name is the trust weight.

    With vLLM the weight uses the sampler's log-probs (`sampling_per_token_logps`) as the behaviour
    policy; tokens it could not score get $\ell = 0$.

    The anchor, for any `loss_type`, when `args.anchor_coeff` $\beta > 0$ (see `GIPOConfig`): the
    loss TRL's `_compute_loss` returns gets

    $$+\;\frac{\beta}{G}\,\frac{\sum_t m_t\,\big(e^{\ell_t} - 1 - \ell_t\big)}{\max(1, \sum_t m_t)},
    \qquad \ell_t = \log\pi_\theta(y_t) - \log\pi_{old}(y_t),$$

    the core's k3 estimate (`gipo_plugins.behaviour_kl`) of $\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ as a
    token mean over the micro-batch's completion tokens ($m$: `completion_mask` times `tool_mask`,
    TRL's loss mask), with $G$ = `current_gradient_accumulation_steps` in training (1 in evaluation).
    That is the normalisation of TRL's own entropy bonus: a per-token mean, scaled only for gradient
    accumulation, so $\beta$ means the same whatever `loss_type` / `gipo_aggregation` normalises the
    policy term, and is the published "mean over samples" on each optimizer step. $\pi_{old}$ is
    TRL's `old_per_token_logps` (the log-probs of the policy that generated the batch, also the
    ratio's denominator); TRL computes them only when the data are reused (`num_iterations > 1`,
    `steps_per_generation > gradient_accumulation_steps`) or with vLLM. Without them the data are
    on-policy, $\ell \equiv 0$, and the anchor is exactly 0 with zero gradient. The differentiable
    log-probs are the ones TRL's loss already computed (captured from
    `_get_per_token_logps_and_entropies`): no extra forward, no host sync. The KL is logged as
    `gipo/behaviour_kl` (before $\beta$); `policy_loss` stays the policy term alone.
    """

    args: GIPOConfig
    anchor_coeff: float = 0.0
    """The anchor coefficient in force (`args.anchor_coeff`; 0 with a plain `GRPOConfig`)."""
    _loss_forward: dict[str, torch.Tensor] | None = None  # the loss's own forward, captured for the anchor

    def __init__(self, model, reward_funcs, args: GRPOConfig | None = None, *rest, **kwargs):
        self._gipo = args is not None and args.loss_type == "gipo"
        if self._gipo:
            if not isinstance(args, GIPOConfig):
                raise ValueError("loss_type='gipo' needs a GIPOConfig")
            args.loss_type = args.gipo_aggregation  # TRL's __init__ checks (and warns about) the loss it will run
        try:
            super().__init__(model, reward_funcs, args, *rest, **kwargs)
        finally:
            if self._gipo:
                args.loss_type = "gipo"
        self._gipo_pending: dict[str, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))
        self.anchor_coeff = self.args.anchor_coeff if isinstance(self.args, GIPOConfig) else 0.0
        self._divergence = DivergenceMonitor(logger.warning)
        if self._gipo:
            self.policy_objective = self.args.policy_objective
            self.epsilon_low = self.epsilon_high = math.inf
            self.off_policy_mask_threshold = math.inf  # makes TRL call the per-token mask hook ...
            self.get_off_policy_mask = self._trust_weight  # ... which, on this instance, is GIPO's weight
        self._fused_lm_head = getattr(self.args, "gipo_fused_loss", False)
        if self._fused_lm_head:
            check_fused_model(self.model)

    def _trust_weight(self, advantages, per_token_logps, sampling_per_token_logps, mask, off_policy_threshold):
        """GIPO's detached per-token weight $w$, in the place (and with the signature) of TRL's mask hook."""
        log_prob = per_token_logps.detach()
        old_log_prob = torch.where(torch.isnan(sampling_per_token_logps), log_prob, sampling_per_token_logps)
        if self.importance_sampling_level == "sequence":
            valid = mask.sum(-1, keepdim=True).clamp(min=1.0)
            log_prob, old_log_prob = (((x * mask).sum(-1, keepdim=True) / valid) for x in (log_prob, old_log_prob))
            mask = mask.sum(-1, keepdim=True) > 0
        result = self.policy_objective(log_prob, old_log_prob, advantages, mask, reduction="none")
        self._divergence.update(result.metrics)
        self._defer("gipo", torch.stack([result.metrics[k] for k in METRIC_KEYS]))
        return result.gate.to(per_token_logps.dtype)

    def _defer(self, name: str, values: torch.Tensor) -> None:
        """Keep a step's device-side metrics; they are read on the host once per logging step (`log`)."""
        mode = "train" if self.model.training else "eval"
        self._gipo_pending[mode][name].append(self.accelerator.gather(values[None]).nanmean(0))

    def _flush_gipo_metrics(self, mode: str) -> None:
        """Move the deferred metrics into TRL's `_metrics` (one host read for all of them)."""
        pending = self._gipo_pending.pop(mode, {})
        for name, steps in pending.items():
            rows = torch.stack(steps).tolist()
            if name == "gipo":
                for row in rows:
                    for key, value in zip(METRIC_KEYS, row, strict=True):
                        self._metrics[mode][f"gipo/{key}"].append(value)
            else:
                self._metrics[mode][name].extend(rows)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self._flush_gipo_metrics("train" if self.model.training else "eval")
        super().log(logs, start_time)

    def _compute_loss(self, model, inputs):
        self._loss_forward = {} if self.anchor_coeff > 0 else None
        try:
            loss = super()._compute_loss(model, inputs)
            forward = self._loss_forward
        finally:
            self._loss_forward = None
        mode = "train" if self.model.training else "eval"
        if self._gipo:
            for name in [name for name in self._metrics[mode] if name.startswith(_CLIP_METRICS)]:
                del self._metrics[mode][name]
        if not self._entropy_bonus_enabled and not self.aux_loss_enabled:  # TRL logs policy_loss only then
            scale = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            policy_loss = loss.detach() * (scale if self.loss_type in (*_SCALED_FOR_ACCUMULATION, "sapo") else 1.0)
            self._defer("policy_loss", policy_loss)
        if forward is not None:
            kl = self._behaviour_kl(inputs, forward)
            accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + self.anchor_coeff * kl / accumulation
            self._defer(BEHAVIOUR_KL_METRIC, kl.detach())
        return loss

    def _behaviour_kl(self, inputs: dict, forward: dict[str, torch.Tensor]) -> torch.Tensor:
        """The anchor's KL(π_old ‖ π_θ) of the micro-batch: k3 per completion token, masked token mean (sync-free)."""
        mask = inputs["completion_mask"]
        valid = (mask if "tool_mask" not in inputs else mask * inputs["tool_mask"]) != 0  # TRL's loss mask
        zero = forward["log_probs"].new_zeros(())
        # masked-out tokens get l = 0 (k3 = 0 exactly, whatever is stored there); no old log-probs: on-policy, l = 0
        log_probs = torch.where(valid, forward["log_probs"], zero)
        old = inputs.get("old_per_token_logps")
        old = log_probs.detach() if old is None else torch.where(valid, old, zero)
        return behaviour_kl(log_probs, old, reduction="none").sum() / valid.sum().clamp(min=1)

    def _record_loss_forward(self, **tensors: torch.Tensor) -> None:
        """Keep what the loss's own forward computed (only while `_compute_loss` runs with the anchor on)."""
        if self._loss_forward is not None:
            self._loss_forward.update(tensors)

    def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
        if self._fused_lm_head:  # gipo_fused_loss: the core's chunked LM head (gipo_plugins.trl.fused)
            result = fused_per_token_logps(self, model, *args, **kwargs)
        else:
            result = super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        self._record_loss_forward(log_probs=result[0])
        return result
