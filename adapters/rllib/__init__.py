"""Ray RLlib adapter: the ``GIPO`` algorithm, its ``GIPOConfig`` and ``GIPOTorchLearner``.

Importing this module registers the name ``"GIPO"`` with Tune's registry (``tune.Tuner("GIPO")``,
``get_trainable_cls("GIPO")``, ``algo_class="GIPO"``; remote workers see it through the cluster's
registry) and with RLlib's own algorithm table. RLlib has no plugin entry point, so registration
happens on import.

>>> from gipo_plugins.rllib import GIPOConfig          # instead of PPOConfig
>>> algo = GIPOConfig().environment("CartPole-v1").training(gipo_sigma=1.0).build_algo()

Needs the ``[rllib]`` extra; Meta-World envs (:func:`register_metaworld_envs`) need ``[metaworld]``.
"""

from ray.rllib.algorithms import registry as _rllib_registry
from ray.tune.registry import register_trainable

from gipo_plugins.rllib.envs import MetaWorldSuccess, register_metaworld_envs
from gipo_plugins.rllib.gipo import GIPO, GIPOConfig, GIPOTorchLearner

ALGORITHM_NAME = "GIPO"


def _import_gipo():
    return GIPO, GIPO.get_default_config()


def register() -> None:
    """Make ``"GIPO"`` resolvable by Tune and RLlib (idempotent; runs on import)."""
    register_trainable(ALGORITHM_NAME, GIPO)
    _rllib_registry.ALGORITHMS[ALGORITHM_NAME] = _import_gipo
    _rllib_registry.ALGORITHMS_CLASS_TO_NAME[ALGORITHM_NAME] = ALGORITHM_NAME


register()

__all__ = ["GIPO", "GIPOConfig", "GIPOTorchLearner", "MetaWorldSuccess", "register", "register_metaworld_envs"]
