r"""GIPO on RLlib's APPO (asynchronous, V-trace, circular buffer): `AGIPOConfig`, `AGIPO`, `AGIPOTorchLearner`.

The names follow RLlib's: APPO is the asynchronous PPO, so the asynchronous GIPO is AGIPO — replace
"PPO" by "GIPO" in every RLlib name (`APPOConfig` → `AGIPOConfig`, `tune.Tuner("APPO")` →
`tune.Tuner("AGIPO")`, `APPOTorchLearner` → `AGIPOTorchLearner`).

Which ratio the trust weight acts on. APPO's learner sees three policies for each sample: the
behaviour policy $\mu$ that acted (`Columns.ACTION_LOGP`, possibly many updates old), the target
network $\pi_{old}$ (updated every `target_network_update_freq` rounds) and the current policy
$\pi_\theta$. Its surrogate clips

$$r = \rho\,\frac{\pi_\theta}{\mu},\qquad \rho = \min\!\Big(\frac{\mu}{\pi_{old}},\ 2\Big)
\qquad\Big(\text{so } r = \frac{\pi_\theta}{\pi_{old}} \text{ while } \mu/\pi_{old} \le 2\Big),$$

and `AGIPOTorchLearner` hands exactly this log-ratio,
$\ell = \min(\log\mu - \log\pi_{old},\ \log 2) + \log\pi_\theta - \log\mu$ (gradient through
$\log\pi_\theta$ only), to the core objective with APPO's V-trace advantages. So `objective="ppo_clip"`
is APPO's own surrogate, and GIPO's trust weight $w = k(\ell/\sigma_{eff})$ damps the samples whose
current policy has moved far from the target network (and, through $\rho$'s cap, from a behaviour
policy that is far off), where APPO's clip would zero their gradient.

The anchor. APPO's optional KL loss (`use_kl_loss`, `kl_coeff`) is to the target network $\pi_{old}$,
not to the policy that acted. `behaviour_kl_coeff` $\beta$ adds the published method's anchor,
$\beta\,\mathrm{KL}(\mu\,\|\,\pi_\theta)$, exact, from the behaviour distribution's inputs stored at
acting time (`Columns.ACTION_DIST_INPUTS`) through the module's own distribution class (`.kl()`), as a
mean over `Columns.LOSS_MASK`. Default `None`: $\beta = 0.1$ with `objective="gipo"` (GIPO as published:
stock APPO, which AGIPO replaces, has no trust region besides the clip GIPO opens), 0 with any other
objective (stock APPO's loss); set it explicitly to give both arms of an A/B the same anchor.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from ray.rllib.algorithms.appo import APPO, APPOConfig
from ray.rllib.algorithms.appo.appo import (
    LEARNER_RESULTS_CURR_KL_COEFF_KEY,
    LEARNER_RESULTS_KL_KEY,
    LEARNER_RESULTS_MEAN_IS_KEY,
    LEARNER_RESULTS_VAR_IS_KEY,
)
from ray.rllib.algorithms.appo.torch.appo_torch_learner import APPOTorchLearner
from ray.rllib.algorithms.impala.torch.vtrace_torch_v2 import make_time_major, vtrace_torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchMultiCategorical
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.core.rl_module.apis import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO
from ray.rllib.utils.typing import ModuleID, TensorType

from gipo_plugins import BEHAVIOUR_KL_COEFF, anchor_coeff, categorical_kl
from gipo_plugins.diagnostics import masked_quantile
from gipo_plugins.rllib.learner import GIPOLearnerMixin, action_head_stats
from gipo_plugins.rllib.settings import GIPOSettings

IS_RATIO_CAP = 2.0
"""Cap on APPO's $\\rho = \\mu/\\pi_{old}$ (a constant in RLlib's torch learner)."""

BEHAVIOUR_KL_KEY = "behaviour_kl"
"""Learner result key of the anchor's KL(μ ‖ π_θ) (logged when its coefficient is > 0)."""

POLICY_LAG_KEYS = ("policy_lag_p50", "policy_lag_p95", "policy_lag_max")
"""Quantiles of the per-sample policy lag (learner updates between the acting weights and now), logged
next to RLlib's mean, `diff_num_grad_updates_vs_sampler_policy`."""
_LAG_QUANTILES = (0.5, 0.95, 1.0)


def behaviour_kl(behaviour, current) -> torch.Tensor:
    """Exact KL(μ ‖ π_θ) per sample between two RLlib action distributions of the same class.

    Categorical and multi-categorical (`MultiDiscrete`, e.g. binned actions) heads use the core's
    `categorical_kl` (summed over the action dimensions), which needs no device→host sync; torch's
    categorical KL, behind RLlib's `.kl()`, masks with boolean indexing. Any other head: its `.kl()`.
    """
    if isinstance(current, TorchMultiCategorical):
        pairs = zip(behaviour._cats, current._cats, strict=True)
    elif isinstance(current, TorchCategorical):
        pairs = [(behaviour, current)]
    else:
        return behaviour.kl(current)
    return sum(categorical_kl(cur.logits, old.logits, reduction="none") for old, cur in pairs)


class AGIPOConfig(GIPOSettings, APPOConfig):
    """APPO's config plus GIPO's settings; every APPO option keeps working.

    ```python
    from gipo_plugins.rllib import AGIPOConfig

    config = (
        AGIPOConfig()  # instead of APPOConfig()
        .environment("CartPole-v1")
        .training(objective="gipo", sigma=1.0, circular_buffer_num_batches=16)
    )
    algo = config.build_algo()
    ```

    The settings, their names, defaults and checks are those of
    [`GIPOConfig`][gipo_plugins.rllib.gipo.GIPOConfig] ([`GIPOSettings`][gipo_plugins.rllib.settings.GIPOSettings]);
    `objective="ppo_clip"` is APPO's own clipped surrogate with APPO's `clip_param` (default 0.4).
    `behaviour_kl_coeff` (default `None`: 0.1 with `objective="gipo"`, else 0) is the anchor to the
    behaviour policy (see the module notes); APPO's `kl_coeff` stays its KL loss to the target network.
    """

    extra_settings = (BEHAVIOUR_KL_COEFF,)

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or AGIPO)
        self._init_gipo_settings()

    @override(APPOConfig)
    def get_default_learner_class(self):
        if self.framework_str != "torch":
            raise ValueError("AGIPO supports framework='torch' only.")
        return AGIPOTorchLearner


class AGIPO(APPO):
    """APPO with the core's objective: `tune.Tuner("AGIPO", ...)` or `AGIPOConfig().build_algo()`."""

    @classmethod
    @override(APPO)
    def get_default_config(cls) -> AGIPOConfig:
        return AGIPOConfig()


class AGIPOTorchLearner(GIPOLearnerMixin, APPOTorchLearner):
    r"""APPO's torch learner with its clipped surrogate replaced by the core objective.

    Restated from upstream: `compute_loss_for_module` follows `APPOTorchLearner.compute_loss_for_module`
    of Ray 2.60 (the supported range); `test_ppo_clip_objective_equals_stock_appo_learner` compares
    `objective="ppo_clip"` (anchor 0) with stock APPO's loss and gradients, so an upstream change fails loudly.

    Everything else is APPO's, computed as `APPOTorchLearner` does: V-trace targets and advantages
    from the target network's log-probs, the value loss, the entropy bonus, the optional KL penalty to
    the target network, the IS-ratio diagnostics, all as means over `Columns.LOSS_MASK`. Added: the
    anchor $\beta\,\mathrm{KL}(\mu\,\|\,\pi_\theta)$ to the behaviour policy when its coefficient
    is > 0 (logged as `behaviour_kl`). The policy term is the selected objective on APPO's log-ratio
    (see the module notes)

    $$\ell = \min(\log\mu - \log\pi_{old},\ \log 2) + \log\pi_\theta - \mathrm{sg}[\log\mu].$$

    Logged through `self.metrics` under `learners/<module_id>/`: APPO's keys, the core's diagnostics
    and the policy lag's quantiles `policy_lag_p50`, `policy_lag_p95`, `policy_lag_max` (RLlib logs
    its mean as `diff_num_grad_updates_vs_sampler_policy`); with a diagonal-Gaussian head also its mean
    log-std, `action_log_std_mean` (`action_head_stats`). No device→host sync in the loss.
    """

    @override(APPOTorchLearner)
    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: AGIPOConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, TensorType],
    ) -> TensorType:
        module = self.module[module_id].unwrapped()
        time_major = partial(
            make_time_major,
            trajectory_len=config.get_rollout_fragment_length(),
            recurrent_seq_len=batch.get("seq_lens"),
        )
        loss_mask = batch[Columns.LOSS_MASK].float()
        loss_mask_tm = time_major(loss_mask)
        size_loss_mask = torch.sum(loss_mask)

        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        dist_cls = module.get_train_action_dist_cls()
        target_policy_dist = dist_cls.from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        old_target_policy_dist = dist_cls.from_logits(module.forward_target(batch)[TARGET_NETWORK_ACTION_DIST_INPUTS])
        behaviour_logp_tm = time_major(batch[Columns.ACTION_LOGP])
        target_logp_tm = time_major(target_policy_dist.logp(batch[Columns.ACTIONS]))
        old_logp_tm = time_major(old_target_policy_dist.logp(batch[Columns.ACTIONS]))
        values_tm = time_major(values)
        # As APPO: bootstrap from the next row's first value (the last row's is masked out anyway); the
        # discount is zero across terminals and at the appended bootstrap step.
        bootstrap_values = torch.cat([values_tm[0][1:], values_tm[0][0:1]], dim=0)
        discounts_tm = (1.0 - time_major(batch[Columns.TERMINATEDS]).float()) * config.gamma * loss_mask_tm
        vtrace_targets, pg_advantages = vtrace_torch(
            target_action_log_probs=old_logp_tm,
            behaviour_action_log_probs=behaviour_logp_tm,
            discounts=discounts_tm,
            rewards=time_major(batch[Columns.REWARDS]),
            values=values_tm,
            bootstrap_values=bootstrap_values,
            clip_pg_rho_threshold=config.vtrace_clip_pg_rho_threshold,
            clip_rho_threshold=config.vtrace_clip_rho_threshold,
        )
        pg_advantages = pg_advantages * loss_mask_tm

        # The policy term: the core objective on the log of the ratio APPO's surrogate clips.
        log_is_ratio = torch.clamp(behaviour_logp_tm - old_logp_tm, max=math.log(IS_RATIO_CAP)).detach()
        log_ratio = log_is_ratio + target_logp_tm - behaviour_logp_tm.detach()
        mask_tm = loss_mask_tm > 0
        result = self.objective_for(module_id, config).on_log_ratio(log_ratio, pg_advantages, mask_tm, reduction="none")
        mean_pi_loss = torch.sum(result.per_element) / size_loss_mask

        is_ratio = torch.exp(log_is_ratio)
        mean_is_ratio = torch.sum(is_ratio * loss_mask_tm) / size_loss_mask
        var_is_ratio = torch.sum(torch.square(is_ratio - mean_is_ratio) * loss_mask_tm) / size_loss_mask

        if config.use_kl_loss:
            mean_kl_loss = torch.sum(old_target_policy_dist.kl(target_policy_dist) * loss_mask) / size_loss_mask
        else:
            mean_kl_loss = 0.0
        anchor = {}
        beta = anchor_coeff(config.behaviour_kl_coeff, config.objective)
        if beta > 0:
            kl = behaviour_kl(dist_cls.from_logits(batch[Columns.ACTION_DIST_INPUTS]), target_policy_dist)
            anchor[BEHAVIOUR_KL_KEY] = torch.sum(kl.reshape(loss_mask.shape) * loss_mask) / size_loss_mask
        delta = values_tm - vtrace_targets
        mean_vf_loss = 0.5 * torch.sum(torch.pow(delta, 2.0) * loss_mask_tm) / size_loss_mask
        mean_entropy_loss = -torch.sum(target_policy_dist.entropy() * loss_mask) / size_loss_mask

        total_loss = (
            mean_pi_loss
            + mean_vf_loss * config.vf_loss_coeff
            + mean_entropy_loss * self.entropy_coeff_schedulers_per_module[module_id].get_current_value()
            + mean_kl_loss * self.curr_kl_coeffs_per_module[module_id]
            + beta * anchor.get(BEHAVIOUR_KL_KEY, 0.0)
        )
        stats = {
            POLICY_LOSS_KEY: mean_pi_loss,
            VF_LOSS_KEY: mean_vf_loss,
            ENTROPY_KEY: -mean_entropy_loss,
            LEARNER_RESULTS_KL_KEY: mean_kl_loss,
            LEARNER_RESULTS_CURR_KL_COEFF_KEY: self.curr_kl_coeffs_per_module[module_id],
            LEARNER_RESULTS_MEAN_IS_KEY: mean_is_ratio,
            LEARNER_RESULTS_VAR_IS_KEY: var_is_ratio,
            **self._policy_lag(batch, loss_mask > 0),
            **anchor,
            **action_head_stats(target_policy_dist, fwd_out[Columns.ACTION_DIST_INPUTS], loss_mask),
        }
        self.log_objective(module_id, stats, result)
        return total_loss

    def _policy_lag(self, batch: dict[str, Any], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantiles of the per-sample policy lag, as 0-dim tensors (no host sync); `{}` if not in the batch."""
        if WEIGHTS_SEQ_NO not in batch:
            return {}
        lag = (self._weights_seq_no - batch[WEIGHTS_SEQ_NO]).float()
        quantiles = masked_quantile(lag, mask, torch.tensor(_LAG_QUANTILES, device=lag.device))  # one sort
        return dict(zip(POLICY_LAG_KEYS, quantiles.unbind(), strict=True))
