"""GIPO for Ray RLlib (new API stack): ``GIPOConfig``, ``GIPO`` and ``GIPOTorchLearner``."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
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

from gipo_plugins import PolicyObjective


class GIPOConfig(PPOConfig):
    """PPO's config plus GIPO's settings; every PPO option keeps working.

    .. code-block:: python

        from gipo_plugins.rllib import GIPOConfig

        config = (
            GIPOConfig()  # instead of PPOConfig()
            .environment("CartPole-v1")
            .training(gipo_sigma=1.0, gipo_sigma_neg_ratio=1.0, gipo_kernel="gaussian", objective="gipo")
        )
        algo = config.build_algo()

    ``objective`` switches the surrogate (``"gipo"``, ``"ppo_clip"`` — which uses PPO's
    ``clip_param`` —, ``"sapo"``, ``"is"``) with everything else fixed, for A/B runs. Bad values
    are rejected by :meth:`validate` with a ``ValueError`` naming the setting.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or GIPO)
        self.objective = "gipo"
        self.gipo_sigma = 1.0
        self.gipo_sigma_neg_ratio = 1.0
        self.gipo_kernel = "gaussian"
        self.sapo_tau_pos = 1.0
        self.sapo_tau_neg = 1.05

    @override(PPOConfig)
    def training(
        self,
        *,
        objective: str | None = NotProvided,
        gipo_sigma: float | None = NotProvided,
        gipo_sigma_neg_ratio: float | None = NotProvided,
        gipo_kernel: str | None = NotProvided,
        sapo_tau_pos: float | None = NotProvided,
        sapo_tau_neg: float | None = NotProvided,
        **kwargs: Any,
    ) -> GIPOConfig:
        """PPO's ``training()`` plus:

        Args:
            objective: ``"gipo"`` (default), ``"ppo_clip"``, ``"sapo"`` or ``"is"``.
            gipo_sigma: kernel scale σ > 0 (default 1.0, the paper's "GIPO (1.0, 1.0)").
            gipo_sigma_neg_ratio: σ₋/σ₊ for non-positive advantages (0.5: advantage-aware variant).
            gipo_kernel: ``"gaussian"``, ``"laplacian"`` or ``"cauchy"``.
            sapo_tau_pos: SAPO's temperature for positive advantages (``objective="sapo"``).
            sapo_tau_neg: SAPO's temperature otherwise.
        """
        super().training(**kwargs)
        for name, value in (
            ("objective", objective),
            ("gipo_sigma", gipo_sigma),
            ("gipo_sigma_neg_ratio", gipo_sigma_neg_ratio),
            ("gipo_kernel", gipo_kernel),
            ("sapo_tau_pos", sapo_tau_pos),
            ("sapo_tau_neg", sapo_tau_neg),
        ):
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    @property
    def policy_objective(self) -> PolicyObjective:
        """The core objective these settings select (raises ``ValueError`` on bad values)."""
        return PolicyObjective(
            self.objective,
            sigma=self.gipo_sigma,
            sigma_neg_ratio=self.gipo_sigma_neg_ratio,
            kernel=self.gipo_kernel,
            clip_epsilon=self.clip_param,
            sapo_tau_pos=self.sapo_tau_pos,
            sapo_tau_neg=self.sapo_tau_neg,
        )

    @override(PPOConfig)
    def validate(self) -> None:
        super().validate()
        try:
            _ = self.policy_objective  # constructing it validates
        except ValueError as error:
            self._value_error(f"GIPOConfig: {error} (sigma/sigma_neg_ratio/kernel are gipo_sigma/... here)")

    @override(PPOConfig)
    def get_default_learner_class(self):
        if self.framework_str != "torch":
            raise ValueError("GIPO supports framework='torch' only.")
        return GIPOTorchLearner


class GIPO(PPO):
    """PPO with GIPO's surrogate: ``tune.Tuner("GIPO", ...)`` or ``GIPOConfig().build_algo()``."""

    @classmethod
    @override(PPO)
    def get_default_config(cls) -> GIPOConfig:
        return GIPOConfig()


class GIPOTorchLearner(PPOTorchLearner):
    r"""PPO's torch learner with the policy term computed by the core.

    The loss is PPO's, term by term — clipped value loss, entropy bonus, adaptive KL penalty, all
    as masked means over ``Columns.LOSS_MASK`` — except that PPO's clipped surrogate is replaced by
    the selected core objective, for GIPO

    .. math:: -\,r\,A\,\mathrm{sg}[w], \qquad w = k(\log r / \sigma_{eff}).

    The core's diagnostics (``trust_weight_mean``, ``dead_fraction``, ``ess``, ``log_ratio_abs_p95``
    ...) are logged next to PPO's through ``self.metrics``, so they reach the result dict and
    TensorBoard under ``learners/<module_id>/``.
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
        if mask is not None:
            num_valid = mask.sum()

            def masked_mean(values: torch.Tensor) -> torch.Tensor:
                return values[mask].sum() / num_valid
        else:
            masked_mean = torch.mean

        curr_dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        result = config.policy_objective(
            curr_dist.logp(batch[Columns.ACTIONS]),
            batch[Columns.ACTION_LOGP],
            batch[Postprocessing.ADVANTAGES],
            mask,
            reduction="none",
        )

        if config.use_kl_loss:
            prev_dist = module.get_exploration_action_dist_cls().from_logits(batch[Columns.ACTION_DIST_INPUTS])
            mean_kl_loss = masked_mean(prev_dist.kl(curr_dist))
        else:
            mean_kl_loss = torch.tensor(0.0, device=result.per_element.device)
        curr_entropy = curr_dist.entropy()

        if config.use_critic:
            values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
            vf_loss = torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0)
            vf_loss_clipped = torch.clamp(vf_loss, 0, config.vf_clip_param)
        else:
            values = vf_loss = vf_loss_clipped = torch.tensor(0.0, device=result.per_element.device)

        entropy_coeff = self.entropy_coeff_schedulers_per_module[module_id].get_current_value()
        total_loss = masked_mean(
            result.per_element + config.vf_loss_coeff * vf_loss_clipped - entropy_coeff * curr_entropy
        )
        if config.use_kl_loss:
            total_loss = total_loss + self.curr_kl_coeffs_per_module[module_id] * mean_kl_loss

        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: masked_mean(result.per_element),
                VF_LOSS_KEY: masked_mean(vf_loss_clipped) if config.use_critic else vf_loss,
                LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: masked_mean(vf_loss) if config.use_critic else vf_loss,
                LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(batch[Postprocessing.VALUE_TARGETS], values),
                ENTROPY_KEY: masked_mean(curr_entropy),
                LEARNER_RESULTS_KL_KEY: mean_kl_loss,  # PPO adapts kl_coeff from this key
                **result.metrics,
            },
            key=module_id,
            window=1,
        )
        return total_loss
