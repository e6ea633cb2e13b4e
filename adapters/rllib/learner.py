"""What every GIPO learner on RLlib shares: the objective per module, metrics, divergence warning, checkpoints.

[`GIPOLearnerMixin`][gipo_plugins.rllib.learner.GIPOLearnerMixin] goes first in a torch learner's bases
(`class GIPOTorchLearner(GIPOLearnerMixin, PPOTorchLearner)`); the learner's
`compute_loss_for_module` then calls [`objective_for`][gipo_plugins.rllib.learner.GIPOLearnerMixin.objective_for]
and [`log_objective`][gipo_plugins.rllib.learner.GIPOLearnerMixin.log_objective], with
[`action_head_stats`][gipo_plugins.rllib.learner.action_head_stats] among its stats (a Gaussian head's mean log-std).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian
from ray.rllib.utils.typing import ModuleID, StateDict

from gipo_plugins import DivergenceMonitor, ObjectiveResult, PolicyObjective
from gipo_plugins.rllib.settings import rllib_name

logger = logging.getLogger("ray.rllib.gipo_plugins")
"""A child of RLlib's `ray.rllib` logger, so `config.debugging(log_level=...)` and RLlib's handlers apply."""

STATE_KEY = "gipo"
"""Key of GIPO's entry in a learner's state (`Learner.get_state()`, checkpoints)."""

ACTION_LOG_STD_MEAN_KEY = "action_log_std_mean"
"""Learner result key of a diagonal-Gaussian head's mean log-std (see `action_head_stats`)."""


def action_head_stats(dist: Any, dist_inputs: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    r"""The action head's own diagnostics: a diagonal Gaussian's mean log-std; `{}` for any other head.

    For RLlib's `TorchDiagGaussian` (its default head for a `Box`), whose inputs are the halves
    $[\mu, \log\sigma]$ of `Columns.ACTION_DIST_INPUTS` (`TorchDiagGaussian.from_logits`),

    $$\overline{\log\sigma} = \frac{1}{|M|\,d}\sum_{t \in M}\sum_{j=1}^{d} \log\sigma_{t,j}$$

    over the unmasked samples $M$ (all when `mask` is None) and the $d$ action dimensions, logged as
    `action_log_std_mean` (with the entropy, how far exploration has collapsed). A 0-dim tensor, detached:
    no device→host sync. Categorical heads (e.g. binned actions, `TorchMultiCategorical`) have no
    log-std: nothing is logged for them.
    """
    if not isinstance(dist, TorchDiagGaussian):
        return {}
    log_std = dist_inputs.detach().chunk(2, dim=-1)[1].mean(dim=-1)
    if mask is None:
        return {ACTION_LOG_STD_MEAN_KEY: log_std.mean()}
    mask = mask.to(log_std.dtype)
    return {ACTION_LOG_STD_MEAN_KEY: (log_std * mask).sum() / mask.sum()}


class GIPOLearnerMixin:
    """Shared learner logic for GIPO on RLlib (see the module notes).

    - one validated `PolicyObjective` per module, built once from the module's config;
    - the core's diagnostics logged with `self.metrics` next to the algorithm's own, and a one-time
      warning through RLlib's logger when the log-ratio diverges (`gipo_plugins.DivergenceMonitor`,
      no host sync);
    - checkpoints: the learner's state carries each module's objective and settings and its adaptive
      KL coefficient (which stock PPO/APPO do not checkpoint), so a restore continues exactly; restoring
      a checkpoint written with other GIPO settings, or without them, raises a `ValueError` saying which.
    """

    def build(self, *args: Any, **kwargs: Any) -> None:
        self._gipo_objectives: dict[ModuleID, PolicyObjective] = {}
        self._divergence = DivergenceMonitor(logger.warning)
        self._pending_stats: dict[ModuleID, dict[str, Any]] = {}
        super().build(*args, **kwargs)

    def objective_for(self, module_id: ModuleID, config: Any) -> PolicyObjective:
        """The module's core objective, built (and validated) once from its config."""
        objective = self._gipo_objectives.get(module_id)
        if objective is None:
            objective = self._gipo_objectives[module_id] = config.policy_objective
        return objective

    def log_objective(self, module_id: ModuleID, stats: dict[str, Any], result: ObjectiveResult) -> None:
        """Log `stats` (the algorithm's own) and the core's diagnostics; feed the divergence monitor.

        They are logged once per `update()`, for its last minibatch, by
        [`log_pending_stats`][gipo_plugins.rllib.learner.GIPOLearnerMixin.log_pending_stats]: the stock
        learners log theirs with `window=1` on every minibatch, so only the last one reaches the results
        anyway (RLlib does the same with the total loss), and logging costs more than the loss's
        arithmetic on small batches.
        """
        self._divergence.update(result.metrics)
        # detached: holding the loss terms would keep this minibatch's autograd graph alive into the next one
        stats = {k: v.detach() if isinstance(v, torch.Tensor) and v.requires_grad else v for k, v in stats.items()}
        self._pending_stats[module_id] = stats | result.metrics

    def log_pending_stats(self) -> None:
        """Log the last minibatch's stats of each module (called by `after_gradient_based_update`)."""
        while self._pending_stats:
            module_id, stats = self._pending_stats.popitem()
            self.metrics.log_dict(stats, key=module_id, window=1)

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        self.log_pending_stats()  # first: PPO / APPO adapt the KL coefficient from the logged mean_kl_loss
        super().after_gradient_based_update(timesteps=timesteps)

    def remove_module(self, module_id: ModuleID, *args: Any, **kwargs: Any):
        self._gipo_objectives.pop(module_id, None)
        return super().remove_module(module_id, *args, **kwargs)

    # --- checkpoints --------------------------------------------------------------------------------

    def _gipo_state(self) -> dict[str, Any]:
        state = {}
        for module_id in list(self.module.keys()):
            config = self.config.get_config_for_module(module_id)
            if not hasattr(config, "policy_objective"):
                continue
            objective = self.objective_for(module_id, config)
            settings = {rllib_name(name): value for name, value in objective.kwargs().items()}
            entry = {"objective": objective.name, "settings": settings}
            kl_coeffs = getattr(self, "curr_kl_coeffs_per_module", None)
            if kl_coeffs is not None:
                entry["kl_coeff"] = float(kl_coeffs[module_id])  # checkpoint time only: not on the hot path
            state[module_id] = entry
        return state

    def get_state(self, components=None, *, not_components=None, **kwargs) -> StateDict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(STATE_KEY, components, not_components):
            state[STATE_KEY] = self._gipo_state()
        return state

    def set_state(self, state: StateDict) -> None:
        saved = state.get(STATE_KEY)
        if saved is None:
            if getattr(self, "_restoring_from_path", False):
                raise ValueError(
                    f"the learner state being restored has no {STATE_KEY!r} entry (GIPO's objective and settings): "
                    "it was written by another learner (e.g. stock PPO/APPO) or is truncated. To load only the "
                    "network weights, restore the RLModule component alone: "
                    "algo.restore_from_path(f'{path}/learner_group/learner/rl_module', "
                    "component='learner_group/learner/rl_module')"
                )
        else:
            self._check_gipo_state(saved)
        super().set_state(state)
        if saved is not None:
            kl_coeffs = getattr(self, "curr_kl_coeffs_per_module", None)
            for module_id, entry in saved.items():
                if kl_coeffs is not None and "kl_coeff" in entry and module_id in set(self.module.keys()):
                    with torch.no_grad():
                        kl_coeffs[module_id].fill_(entry["kl_coeff"])

    def _check_gipo_state(self, saved: dict[str, Any]) -> None:
        mine = self._gipo_state()
        for module_id, entry in saved.items():
            if module_id not in mine:
                continue
            ours = mine[module_id]
            if entry.get("objective") != ours["objective"]:
                raise ValueError(
                    f"checkpoint mismatch for module {module_id!r}: the checkpoint was trained with "
                    f"objective={entry.get('objective')!r}, this learner has objective={ours['objective']!r}. "
                    "Build the algorithm with the checkpoint's settings (Algorithm.from_checkpoint does)."
                )
            theirs, own = entry.get("settings", {}), ours["settings"]
            differing = [f"{k}: checkpoint {theirs.get(k)!r}, this learner {own.get(k)!r}"
                         for k in sorted(set(theirs) | set(own)) if theirs.get(k) != own.get(k)]  # fmt: skip
            if differing:
                raise ValueError(
                    f"checkpoint mismatch for module {module_id!r} (objective {ours['objective']!r}): "
                    + "; ".join(differing)
                    + ". Build the algorithm with the checkpoint's settings (Algorithm.from_checkpoint does)."
                )

    def restore_from_path(self, path, *args: Any, component: str | None = None, **kwargs: Any) -> None:
        self._restoring_from_path = component is None
        try:
            super().restore_from_path(path, *args, component=component, **kwargs)
        finally:
            self._restoring_from_path = False


__all__ = ["ACTION_LOG_STD_MEAN_KEY", "STATE_KEY", "GIPOLearnerMixin", "action_head_stats", "logger"]
