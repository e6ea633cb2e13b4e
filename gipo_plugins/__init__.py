r"""gipo-plugins core: GIPO (Gaussian Importance sampling Policy Optimization) and its baselines.

PPO zeroes the gradient of every sample whose ratio :math:`r = \pi_\theta/\pi_{old}` left
:math:`[1-\epsilon, 1+\epsilon]`; GIPO instead multiplies the importance-sampled policy gradient by a
detached trust weight on the log-ratio,

.. math:: \text{term} = -\,r\,A\,\mathrm{sg}[w],\qquad w = \exp\!\big(-\tfrac12 (\log r / \sigma)^2\big),

so stale samples are damped, never silenced. This package is torch-only; the framework adapters
live in :mod:`gipo_plugins.rllib`, :mod:`gipo_plugins.torchrl` and :mod:`gipo_plugins.trl`.

* :func:`trust_weight` — the kernels (:mod:`gipo_plugins.kernels`).
* :func:`gipo_objective`, :func:`ppo_clip_objective`, :func:`sapo_objective`, :func:`is_objective`,
  :func:`get_objective`, :class:`PolicyObjective` — the objectives (:mod:`gipo_plugins.objectives`).
* :func:`utilization_metrics` — the diagnostics (:mod:`gipo_plugins.diagnostics`).
"""

from gipo_plugins.diagnostics import utilization_metrics
from gipo_plugins.kernels import KERNELS, trust_weight
from gipo_plugins.objectives import (
    OBJECTIVES,
    ObjectiveResult,
    PolicyObjective,
    behaviour_kl,
    get_objective,
    gipo_objective,
    is_objective,
    ppo_clip_objective,
    sapo_objective,
)

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "OBJECTIVES",
    "ObjectiveResult",
    "PolicyObjective",
    "behaviour_kl",
    "get_objective",
    "gipo_objective",
    "is_objective",
    "ppo_clip_objective",
    "sapo_objective",
    "trust_weight",
    "utilization_metrics",
]
