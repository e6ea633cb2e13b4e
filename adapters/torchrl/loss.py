"""`GIPOLoss`: a drop-in for TorchRL's `ClipPPOLoss` whose surrogate comes from the core."""

from __future__ import annotations

import math
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase, is_tensor_collection
from tensordict.nn import dispatch
from torchrl._utils import logger as torchrl_logger
from torchrl.modules.distributions.utils import has_analytic_kl
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.ppo import _broadcast_advantage_to_log_weight, _check_advantage_broadcast, _sum_td_features

from gipo_plugins import DivergenceMonitor, PolicyObjective, all_hyperparameters, behaviour_kl
from gipo_plugins._checks import check_optional_nonnegative
from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.registry import get_objective

KL_ESTIMATORS = ("auto", "exact", "k3")
SCHEDULABLE_SETTINGS = frozenset({"sigma"})
"""Settings kept as buffers (assignable by a scheduler: `loss.sigma = 0.5`) besides ClipPPOLoss's own."""


class GIPOLoss(ClipPPOLoss):
    r"""GIPO loss: PPO with the hard clip replaced by a detached trust weight on the log-ratio.

    With $\ell = \log\pi_\theta(a|s) - \log\pi_{old}(a|s)$ and $r = e^{\ell}$:

    $$w = k(\mathrm{sg}[\ell] / \sigma_{eff}), \qquad
    \text{loss\_objective} = -\,r\,A\,w \;[+\ \beta\,\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)]$$

    where $k$ is a Gaussian (default), Laplacian or Cauchy kernel, $\sigma_{eff} = \sigma$ for $A > 0$
    and $\sigma\cdot$`sigma_neg_ratio` otherwise, and the optional bracket is a KL penalty to the
    behaviour policy: exact, from the behaviour distribution's parameters stored in the data (as
    `KLPENPPOLoss` does), or the k3 sample estimate $(r - 1) - \ell$
    (`gipo_plugins.behaviour_kl`). The formula lives in `gipo_plugins.objectives`; this class maps
    TorchRL's keys and outputs onto it, and `objective=` selects any registered objective.

    Restated from upstream: `forward` follows `ClipPPOLoss.forward` of TorchRL 0.14.1 (the supported
    range, `torchrl>=0.14.1,<0.15`), calling its private helpers (`_log_weight`, `_advantage`,
    `_get_entropy`, `_reduce_loss`, ...); TorchRL has no `@override` marker. The tests compare it with
    `ClipPPOLoss` on the same data (`objective="ppo_clip"`, ratio one, keys, reductions, value
    estimators), so an upstream change fails loudly.

    Everything else is `ClipPPOLoss`: constructor arguments,
    tensordict keys and `set_keys`, value estimators (GAE by default), advantage normalisation,
    `reduction`, loss masks, composite action distributions, `functional`, the entropy bonus and
    the critic loss (`loss_critic` alone is a critic-only update: it never runs the actor).

    Args:
        actor_network (ProbabilisticTensorDictSequential): policy operator.
        critic_network (ValueOperator): value operator.

    Keyword Args:
        objective (str, optional): the registered objective: `"gipo"` (default), `"ppo_clip"`,
            `"sapo"`, `"is"` or your own, to A/B the surrogate with everything else fixed.
        sigma (float, optional): GIPO's kernel scale $\sigma > 0$; a schedulable buffer
            (`loss.sigma = 0.5`, checked on assignment). Defaults to `1.0`.
        sigma_neg_ratio (float, optional): $\sigma_-/\sigma_+$ for non-positive advantages (`0.5`
            is the reference code's advantage-aware variant). Defaults to `1.0`.
        kernel (str, optional): `"gaussian"`, `"laplacian"` or `"cauchy"`. Defaults to `"gaussian"`.
        sapo_tau_pos, sapo_tau_neg (float, optional): SAPO's temperatures (`objective="sapo"`).
        clip_epsilon (scalar or tuple, optional): PPO's clip range; used by `objective="ppo_clip"`,
            by the value clip and by the `clip_fraction` diagnostic. Defaults to `0.2`.
        kl_coeff (float, optional): coefficient $\beta \ge 0$ of the KL penalty to the behaviour
            policy, folded into `loss_objective` and reported as `"kl"`; a schedulable buffer.
            `None` (default) disables it.
        kl_estimator (str, optional): `"exact"`: $\mathrm{KL}$ between the behaviour distribution
            rebuilt from the parameters stored in the data (`actor_network.build_dist_from_params`,
            e.g. the `"logits"` the collector recorded) and the current one, per action dimension for
            factorised distributions; `"k3"`: the sample estimate from the log-probs only;
            `"auto"` (default): exact when the parameters are in the data and the pair of
            distributions has an analytic KL, k3 otherwise.
        **kwargs: the settings of other registered objectives by their names, and every other
            `ClipPPOLoss` keyword argument.

    Outputs (besides ClipPPOLoss's `loss_objective`, `clip_fraction`, `entropy`,
    `loss_entropy`, `loss_critic`, `ESS`, `kl_approx`, `max_ratio`, `mean_ratio`):
    `kl` (with `kl_coeff`) and the core's diagnostics `trust_weight_mean`,
    `trust_weight_min`, `dead_fraction`, `suppressed_fraction`, `ess` (of the gradient weights
    $u = w\,r$; ClipPPOLoss's `ESS` is that of the raw ratios), `log_ratio_abs_mean`,
    `log_ratio_abs_p95`, `approx_kl` and `ratio_mean` — 0-dim tensors, computed on the device
    without a host sync.

    Bad data (NaN/inf log-probs or advantages, an all-masked batch) fails with a message naming it,
    as a device-side assert by default (no host sync on the hot path); see
    `gipo_plugins.set_check_mode` for the strict mode. Divergence (the 95th percentile of $|\ell|$
    above 10) is warned about once through TorchRL's logger (`gipo_plugins.DivergenceMonitor`).

    Examples:
        >>> from gipo_plugins.torchrl import GIPOLoss
        >>> loss_module = GIPOLoss(actor, critic, sigma=1.0, entropy_coeff=0.0)
        >>> loss_module.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
        >>> losses = loss_module(data)
        >>> loss = losses["loss_objective"] + losses["loss_critic"]

    Note:
        With `delay_actor` or `max_importance_ratio` the trust weight acts on the full behaviour
        ratio $\pi_\theta / \pi_{behav}$ that weights the surrogate.
    """

    _schedulable_buffers = frozenset({"kl_coeff"} | SCHEDULABLE_SETTINGS)

    def __init__(
        self,
        actor_network=None,
        critic_network=None,
        *,
        objective: str = "gipo",
        kl_coeff: float | None = None,
        kl_estimator: str = "auto",
        clip_epsilon: float | tuple[float, float] = 0.2,
        **kwargs: Any,
    ):
        registered = all_hyperparameters()
        settings = {key: kwargs.pop(key) for key in list(kwargs) if key in registered}
        # validated once, here: the objective, every setting given, and ClipPPOLoss's clip range
        validated = PolicyObjective(objective, clip_epsilon=clip_epsilon, **settings)
        kl_coeff = check_optional_nonnegative("kl_coeff", kl_coeff)
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"unknown kl_estimator {kl_estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")
        super().__init__(actor_network, critic_network, clip_epsilon=clip_epsilon, **kwargs)
        self.kl_estimator = kl_estimator
        self._divergence = DivergenceMonitor(torchrl_logger.warning)
        device = self._clip_epsilon_buffers()[0].device
        # One home per setting: schedulable numbers of the selected objective are buffers (clip_epsilon is
        # ClipPPOLoss's own), the others live in the PolicyObjective.
        self._setting_buffers = tuple(
            hp.name for hp in get_objective(objective).hyperparameters
            if hp.name in SCHEDULABLE_SETTINGS or hp.name == "clip_epsilon"
        )  # fmt: skip
        fixed = {k: v for k, v in validated.settings.items() if k not in self._setting_buffers}
        self.policy_objective = PolicyObjective(objective, **fixed)
        for name in self._setting_buffers:
            if name != "clip_epsilon":
                self.register_buffer(name, torch.tensor(float(validated.kwargs()[name]), device=device))
        if kl_coeff is None:
            self.kl_coeff = None
        else:
            self.register_buffer("kl_coeff", torch.tensor(kl_coeff, device=device))

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, int | float) and name in SCHEDULABLE_SETTINGS and name in getattr(self, "_buffers", {}):
            all_hyperparameters()[name].validate(value)  # a scheduler's bad value is an error, not a silent one
        elif name == "kl_coeff" and isinstance(value, int | float) and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"kl_coeff must be a finite number >= 0, got {value!r}")
        super().__setattr__(name, value)

    def get_extra_state(self) -> dict[str, Any]:
        """What a checkpoint must agree on besides the buffers: the objective and its fixed settings."""
        return {"objective": self.policy_objective.name, "settings": self.policy_objective.settings,
                "kl_estimator": self.kl_estimator}  # fmt: skip

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mine = self.get_extra_state()
        for key in ("objective", "settings", "kl_estimator"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"checkpoint's GIPOLoss {key} is {state.get(key)!r} but this loss has {mine[key]!r}: "
                    "build the loss with the checkpoint's settings"
                )

    def _clip_epsilon_buffers(self) -> tuple[torch.Tensor, ...]:
        if self._asymmetric_clip:
            return self.clip_epsilon_low, self.clip_epsilon_high
        return (self.clip_epsilon,)

    def scheduled_settings(self) -> dict[str, torch.Tensor | tuple[torch.Tensor, ...]]:
        """The buffer-held settings of the selected objective, as `PolicyObjective` call-time overrides."""
        out = {}
        for name in self._setting_buffers:
            if name == "clip_epsilon":
                clip = self._clip_epsilon_buffers()
                out[name] = clip if len(clip) == 2 else clip[0]
            else:
                out[name] = getattr(self, name)
        return out

    @property
    def out_keys(self):
        if self._out_keys is None:
            keys = list(ClipPPOLoss.out_keys.fget(self))
            if self.kl_coeff is not None:
                keys.append("kl")
            self._out_keys = keys + [k for k in METRIC_KEYS if k not in keys]
        return self._out_keys

    @out_keys.setter
    def out_keys(self, values):
        self._out_keys = values

    def _input_mask(self, tensordict: TensorDictBase, like: torch.Tensor) -> torch.Tensor | None:
        """The loss mask `_reduce_loss` will apply, expanded to `like` (`None` if absent)."""
        mask = None
        for key in self._loss_mask_keys():
            found = tensordict.get(key, default=None)
            if found is not None:
                found = self._expand_loss_mask(found, like)
                mask = found if mask is None else mask & found
        return mask

    def _advantage(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, bool]:
        advantage = tensordict.get(self.tensor_keys.advantage, None, as_padded_tensor=True)
        update_norm = advantage is None
        if advantage is None:
            if self.critic_network is None:
                raise RuntimeError("Critic network is not specified, cannot compute advantage within forward.")
            self.value_estimator(
                tensordict,
                params=self._cached_critic_network_params_detached,
                target_params=self.target_critic_network_params,
            )
            advantage = tensordict.get(self.tensor_keys.advantage)
        return self._maybe_normalize_advantage(advantage, tensordict, update_norm=update_norm)

    def _behaviour_dist(self, tensordict: TensorDictBase) -> torch.distributions.Distribution | None:
        """The behaviour distribution rebuilt from its stored parameters, for the exact KL (`None`: use k3)."""
        if self.kl_coeff is None or self.kl_estimator == "k3":
            return None
        keys = getattr(self.actor_network, "dist_params_keys", None)
        if not keys or any(tensordict.get(key, None) is None for key in keys):
            if self.kl_estimator == "exact":
                raise KeyError(
                    f"kl_estimator='exact' needs the behaviour distribution's parameters {keys} in the data (as "
                    "the actor wrote them at collection time); use kl_estimator='k3' otherwise"
                )
            return None
        return self.actor_network.build_dist_from_params(tensordict)

    def _kl(self, behaviour, dist, log_behav_weight, zero, mask) -> torch.Tensor:
        """Per-element KL(π_old ‖ π_θ), shaped like `log_behav_weight`."""
        if behaviour is not None and has_analytic_kl(behaviour, dist):
            kl = torch.distributions.kl_divergence(behaviour, dist)
            return kl.reshape(log_behav_weight.shape)
        if self.kl_estimator == "exact":
            raise ValueError(f"no analytic KL between {type(behaviour).__name__} and {type(dist).__name__}")
        return behaviour_kl(log_behav_weight, zero, mask, reduction="none")

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict = tensordict.clone(False)
        behaviour = self._behaviour_dist(tensordict)  # before the actor overwrites the stored parameters
        advantage = self._advantage(tensordict)
        log_weight, dist, kl_approx, log_is_weight = self._log_weight(tensordict, adv_shape=advantage.shape[:-1])
        advantage = _broadcast_advantage_to_log_weight(advantage, log_weight)
        _check_advantage_broadcast(advantage, log_weight)
        log_behav_weight = log_weight if log_is_weight is None else log_weight + log_is_weight
        zero = log_behav_weight.new_zeros(())
        mask = self._input_mask(tensordict, log_behav_weight)

        result = self.policy_objective.on_log_ratio(
            log_behav_weight, advantage, mask, reduction="none", **self.scheduled_settings(),
            log_ratio_name=f"the log-ratio of the actor's log-prob to {self.tensor_keys.sample_log_prob!r}",
        )  # fmt: skip
        self._divergence.update(result.metrics)
        loss_objective = result.per_element
        td_out = TensorDict()
        if self.kl_coeff is not None:
            kl = self._kl(behaviour, dist, log_behav_weight, zero, mask)
            if mask is not None:
                kl = torch.where(mask, kl, zero)
            loss_objective = loss_objective + self.kl_coeff * kl
            td_out.set("kl", kl.detach().sum() / result.mask.sum())
        td_out.set("loss_objective", loss_objective)

        with torch.no_grad():  # ClipPPOLoss's own diagnostics, computed as it does
            lw = log_behav_weight.squeeze(-1)
            td_out.set("ESS", (2 * lw.logsumexp(0) - (2 * lw).logsumexp(0)).exp() / log_weight.shape[0])
            low, high = self._clip_bounds
            td_out.set("clip_fraction", ((log_weight < low) | (log_weight > high)).to(log_weight.dtype).mean())
            td_out.set("kl_approx", kl_approx.detach().mean())
            ratio = log_behav_weight.exp()
            td_out.set("max_ratio", ratio.max())
            td_out.set("mean_ratio", ratio.mean())
        for key, value in result.metrics.items():
            td_out.set(key, value)

        if self.entropy_bonus:
            entropy = self._get_entropy(dist, adv_shape=advantage.shape[:-1])
            if is_tensor_collection(entropy):
                td_out.set("composite_entropy", entropy.detach())
                td_out.set("entropy", _sum_td_features(entropy).detach().mean())
            else:
                td_out.set("entropy", entropy.detach().mean())
            td_out.set("loss_entropy", self._weighted_loss_entropy(entropy))
        if self._has_critic:
            loss_critic, value_clip_fraction, explained_variance = self.loss_critic(tensordict)
            td_out.set("loss_critic", loss_critic)
            if value_clip_fraction is not None:
                td_out.set("value_clip_fraction", value_clip_fraction)
            if explained_variance is not None:
                td_out.set("explained_variance", explained_variance)

        td_out = td_out.named_apply(
            lambda name, value: self._reduce_loss(value, tensordict).squeeze(-1) if name.startswith("loss_") else value,
        )
        self._clear_weakrefs(
            tensordict,
            td_out,
            "actor_network_params",
            "critic_network_params",
            "target_actor_network_params",
            "target_critic_network_params",
        )
        return td_out
