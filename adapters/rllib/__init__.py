"""Ray RLlib adapter: GIPO on PPO (`GIPO`) and on APPO (`AGIPO`), with their configs and torch learners.

Importing this module registers the names `"GIPO"` and `"AGIPO"` with Tune's registry
(`tune.Tuner("AGIPO")`, `get_trainable_cls("GIPO")`, `algo_class="GIPO"`; remote workers see them
through the cluster's registry) and with RLlib's own algorithm table. RLlib has no plugin entry
point, so registration happens on import.

```pycon
>>> from gipo_plugins.rllib import GIPOConfig          # instead of PPOConfig
>>> algo = GIPOConfig().environment("CartPole-v1").training(sigma=1.0).build_algo()
>>> from gipo_plugins.rllib import AGIPOConfig         # instead of APPOConfig
>>> algo = AGIPOConfig().environment("CartPole-v1").training(sigma=1.0).build_algo()
```

Meta-World: `register_metaworld_envs` registers the tasks, and the recipe
(`gipo_plugins.rllib.recipe.metaworld_config`, exported here) sets any of these configs up for a task
the way the example and the RLlib benchmarks do.

Needs the `[rllib]` extra; Meta-World envs (`register_metaworld_envs`) need `[metaworld]`.
"""

from ray.rllib.algorithms import registry as _rllib_registry
from ray.tune.registry import register_trainable

from gipo_plugins.rllib.agipo import AGIPO, AGIPOConfig, AGIPOTorchLearner
from gipo_plugins.rllib.envs import MetaWorldSuccess, register_metaworld_envs
from gipo_plugins.rllib.gipo import GIPO, GIPOConfig, GIPOTorchLearner
from gipo_plugins.rllib.learner import GIPOLearnerMixin
from gipo_plugins.rllib.recipe import metaworld_config
from gipo_plugins.rllib.settings import GIPOSettings

ALGORITHMS = {"GIPO": GIPO, "AGIPO": AGIPO}
"""The algorithms this adapter registers, by name."""


def _importer(algo_class):
    return lambda: (algo_class, algo_class.get_default_config())


def register() -> None:
    """Make `"GIPO"` and `"AGIPO"` resolvable by Tune and RLlib (idempotent; runs on import)."""
    for name, algo_class in ALGORITHMS.items():
        register_trainable(name, algo_class)
        _rllib_registry.ALGORITHMS[name] = _importer(algo_class)
        _rllib_registry.ALGORITHMS_CLASS_TO_NAME[name] = name


register()

__all__ = [
    "AGIPO",
    "ALGORITHMS",
    "GIPO",
    "AGIPOConfig",
    "AGIPOTorchLearner",
    "GIPOConfig",
    "GIPOLearnerMixin",
    "GIPOSettings",
    "GIPOTorchLearner",
    "MetaWorldSuccess",
    "metaworld_config",
    "register",
    "register_metaworld_envs",
]
