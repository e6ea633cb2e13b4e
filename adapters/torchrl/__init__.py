"""TorchRL adapter: [`GIPOLoss`][], a drop-in for `torchrl.objectives.ClipPPOLoss`.

```pycon
>>> from gipo_plugins.torchrl import GIPOLoss          # instead of ClipPPOLoss
>>> loss_module = GIPOLoss(actor, critic, sigma=1.0)   # every ClipPPOLoss argument still works
```

Needs the `[torchrl]` extra. `make_metaworld_env` (needs `[metaworld]` too) builds a
TorchRL Meta-World env.
"""

from gipo_plugins.torchrl.loss import GIPOLoss

__all__ = ["GIPOLoss", "make_metaworld_env"]


def __getattr__(name: str):
    if name == "make_metaworld_env":  # imported lazily: Meta-World is an optional extra
        from gipo_plugins.torchrl.envs import make_metaworld_env

        return make_metaworld_env
    raise AttributeError(name)
