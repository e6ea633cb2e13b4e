r"""GIPO on RLlib's PPO (new API stack): `GIPOConfig`, `GIPO` and `GIPOTorchLearner`."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.algorithms.ppo.ppo import (
    LEARNER_RESULTS_KL_KEY,
    LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY,
    LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY,
)
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import explained_variance
from ray.rllib.utils.typing import ModuleID, TensorType

from gipo_plugins.rllib.learner import GIPOLearnerMixin, action_head_stats
from gipo_plugins.rllib.settings import GIPOSettings


class GIPOConfig(GIPOSettings, PPOConfig):
    """PPO's config plus GIPO's settings; every PPO option keeps working.

    ```python
    from gipo_plugins.rllib import GIPOConfig

    config = (
        GIPOConfig()  # instead of PPOConfig()
        .environment("CartPole-v1")
        .training(objective="gipo", sigma=1.0, sigma_neg_ratio=1.0, kernel="gaussian")
    )
    algo = config.build_algo()
    ```

    GIPO's settings (see [`GIPOSettings`][gipo_plugins.rllib.settings.GIPOSettings]) are the core's
    registered hyperparameters under their core names, with their registered defaults:

    - `objective`: `"gipo"` (default), `"ppo_clip"` (PPO's clipped surrogate with PPO's own
      `clip_param`), `"sapo"`, `"is"`, or any objective registered with
      `gipo_plugins.register_objective` — to A/B the surrogate with everything else fixed.
    - `sigma` (1.0): GIPO's kernel scale $\\sigma > 0$.
    - `sigma_neg_ratio` (1.0): $\\sigma_-/\\sigma_+$ for non-positive advantages.
    - `kernel` (`"gaussian"`): `"gaussian"`, `"laplacian"` or `"cauchy"`.
    - `sapo_tau_pos` (1.0), `sapo_tau_neg` (1.05): SAPO's temperatures.

    A bad value raises a `ValueError` naming the setting at `.training(...)` and again at
    `validate()` / `build_algo()`.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or GIPO)
        self._init_gipo_settings()

    @override(PPOConfig)
    def get_default_learner_class(self):
        if self.framework_str != "torch":
            raise ValueError("GIPO supports framework='torch' only.")
        return GIPOTorchLearner


class GIPO(PPO):
    """PPO with GIPO's surrogate: `tune.Tuner("GIPO", ...)` or `GIPOConfig().build_algo()`."""

    @classmethod
    @override(PPO)
    def get_default_config(cls) -> GIPOConfig:
        return GIPOConfig()


class GIPOTorchLearner(GIPOLearnerMixin, PPOTorchLearner):
    r"""PPO's torch learner with the policy term computed by the core.

    Restated from upstream: `compute_loss_for_module` follows `PPOTorchLearner.compute_loss_for_module`
    of Ray 2.60 (the supported range, `ray[rllib]>=2.60,<2.61`); `test_ppo_clip_objective_equals_stock_ppo_learner`
    compares `objective="ppo_clip"` with stock PPO's loss and gradients, so an upstream change fails loudly.

    The loss is PPO's, term by term — clipped value loss, entropy bonus, adaptive KL penalty, all
    as means over `Columns.LOSS_MASK` — except that PPO's clipped surrogate is replaced by the
    selected core objective on $\ell = \log\pi_\theta - \log\pi_{old}$ (PPO's ratio), for GIPO

    $$-\,r\,A\,\mathrm{sg}[w], \qquad w = k(\ell / \sigma_{eff}).$$

    The core's diagnostics (`trust_weight_mean`, `dead_fraction`, `ess`, `log_ratio_abs_p95`, ...)
    are logged next to PPO's through `self.metrics`, so they reach the result dict and TensorBoard
    under `learners/<module_id>/`, with a diagonal-Gaussian head's mean log-std, `action_log_std_mean`.
    Masked means use `torch.where` instead of PPO's boolean indexing: no device→host sync in the loss.
    """

    @override(PPOTorchLearner)
    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: GIPOConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, TensorType],
    ) -> TensorType:
        module = self.module[module_id].unwrapped()
        mask = batch.get(Columns.LOSS_MASK)
        curr_dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        result = self.objective_for(module_id, config)(
            curr_dist.logp(batch[Columns.ACTIONS]),
            batch[Columns.ACTION_LOGP],
            batch[Postprocessing.ADVANTAGES],
            mask,
            reduction="none",
        )
        zero = result.per_element.new_zeros(())
        if mask is not None:
            mask, num_valid = result.mask, result.mask.sum()

            def masked_mean(values: torch.Tensor) -> torch.Tensor:
                return torch.where(mask, values, zero).sum() / num_valid
        else:
            masked_mean = torch.mean

        if config.use_kl_loss:
            prev_dist = module.get_exploration_action_dist_cls().from_logits(batch[Columns.ACTION_DIST_INPUTS])
            mean_kl_loss = masked_mean(prev_dist.kl(curr_dist))
        else:
            mean_kl_loss = zero
        curr_entropy = curr_dist.entropy()

        if config.use_critic:
            values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
            vf_loss = torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0)
            vf_loss_clipped = torch.clamp(vf_loss, 0, config.vf_clip_param)
        else:
            values = vf_loss = vf_loss_clipped = zero

        entropy_coeff = self.entropy_coeff_schedulers_per_module[module_id].get_current_value()
        total_loss = masked_mean(
            result.per_element + config.vf_loss_coeff * vf_loss_clipped - entropy_coeff * curr_entropy
        )
        if config.use_kl_loss:
            total_loss = total_loss + self.curr_kl_coeffs_per_module[module_id] * mean_kl_loss

        with torch.no_grad():  # logged only: no autograd bookkeeping
            stats = {
                POLICY_LOSS_KEY: masked_mean(result.per_element),
                VF_LOSS_KEY: masked_mean(vf_loss_clipped),
                LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: masked_mean(vf_loss),
                LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(batch[Postprocessing.VALUE_TARGETS], values),
                ENTROPY_KEY: masked_mean(curr_entropy),
                LEARNER_RESULTS_KL_KEY: mean_kl_loss,  # PPO adapts kl_coeff from this key
                **action_head_stats(curr_dist, fwd_out[Columns.ACTION_DIST_INPUTS], mask),
            }
        self.log_objective(module_id, stats, result)
        return total_loss
