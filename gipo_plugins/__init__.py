r"""gipo-plugins core: GIPO (Gaussian Importance sampling Policy Optimization) and its baselines.

PPO zeroes the gradient of every sample whose ratio $r = \pi_\theta/\pi_{old}$ left
$[1-\epsilon, 1+\epsilon]$; GIPO instead multiplies the importance-sampled policy gradient by a
detached trust weight on the log-ratio,

$$\text{term} = -\,r\,A\,\mathrm{sg}[w],\qquad w = \exp\!\big(-\tfrac12 (\log r / \sigma)^2\big),$$

so stale samples are damped, never silenced. This package is torch-only; the framework adapters
live in `gipo_plugins.rllib`, `gipo_plugins.torchrl`, `gipo_plugins.trl` and `gipo_plugins.vla`,
Meta-World in `gipo_plugins.metaworld`.

- `trust_weight` — the kernels (`gipo_plugins.kernels`).
- `gipo_objective`, `ppo_clip_objective`, `sapo_objective`, `is_objective`, `PolicyObjective` — the
  objectives; `behaviour_kl` (sampled, k3), `categorical_kl` (exact) and `anchor_coeff` — the anchor to the
  behaviour policy (`gipo_plugins.objectives`).
- `register_objective`, `Hyperparameter`, `OBJECTIVES`, `get_objective` — the registry
  (`gipo_plugins.registry`): add an objective with one function and one registration;
  `check_positive`, `check_choice`, `check_below`, `check_optional_nonnegative` — the checks for its settings.
- `utilization_metrics`, `DivergenceMonitor` — the diagnostics (`gipo_plugins.diagnostics`).
- `set_check_mode`, `check_mode` — data checks as device asserts (default) or strict host checks.
- `fused_linear_policy_loss`, `chunked_token_log_probs` — the LM head fused with the loss, chunked over tokens
  (`gipo_plugins.fused`): the (tokens × vocab) logits are never materialised.
"""

from gipo_plugins._checks import (
    check_below,
    check_choice,
    check_mode,
    check_optional_nonnegative,
    check_positive,
    get_check_mode,
    set_check_mode,
)
from gipo_plugins.diagnostics import DIVERGENCE_LOG_RATIO_P95, DivergenceMonitor, utilization_metrics
from gipo_plugins.fused import FusedPolicyLoss, chunked_token_log_probs, fused_linear_policy_loss
from gipo_plugins.kernels import KERNELS, trust_weight
from gipo_plugins.objectives import (
    BEHAVIOUR_KL_COEFF,
    PUBLISHED_KL_COEFF,
    ObjectiveResult,
    PolicyObjective,
    anchor_coeff,
    behaviour_kl,
    categorical_kl,
    gipo_objective,
    is_objective,
    ppo_clip_objective,
    sapo_objective,
)
from gipo_plugins.registry import (
    OBJECTIVES,
    Hyperparameter,
    ObjectiveSpec,
    all_hyperparameters,
    get_objective,
    objective_names,
    register_objective,
    unregister_objective,
)

__version__ = "0.1.0"

__all__ = [
    "BEHAVIOUR_KL_COEFF",
    "DIVERGENCE_LOG_RATIO_P95",
    "KERNELS",
    "OBJECTIVES",
    "PUBLISHED_KL_COEFF",
    "DivergenceMonitor",
    "FusedPolicyLoss",
    "Hyperparameter",
    "ObjectiveResult",
    "ObjectiveSpec",
    "PolicyObjective",
    "all_hyperparameters",
    "anchor_coeff",
    "behaviour_kl",
    "categorical_kl",
    "check_below",
    "check_choice",
    "check_mode",
    "check_optional_nonnegative",
    "check_positive",
    "chunked_token_log_probs",
    "fused_linear_policy_loss",
    "get_check_mode",
    "get_objective",
    "gipo_objective",
    "is_objective",
    "objective_names",
    "ppo_clip_objective",
    "register_objective",
    "sapo_objective",
    "set_check_mode",
    "trust_weight",
    "unregister_objective",
    "utilization_metrics",
]
