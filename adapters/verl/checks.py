"""Checks that need verl's whole trainer config, run where verl itself checks it: no silent swaps or drops.

`algorithm.rollout_correction.bypass_mode=true` uses the rollout engine's log-probs as the old log-probs and,
to do so, rewrites `actor_rollout_ref.actor.policy_loss.loss_mode` to verl's own `"bypass_mode"` loss
(`verl.trainer.ppo.rollout_corr_helper.apply_bypass_mode`, on the driver, at every training step). With
`loss_mode=gipo` that would replace GIPO by verl's PPO-clip or REINFORCE without a word, so it is an
error naming both settings.

Where it is caught: the policy-loss config and the loss see only the actor's part of the config, never
`algorithm.*`, so the check runs where verl holds both. At import, this adapter wraps two verl functions —
the wrapper runs the check, then calls verl's function unchanged, so other loss modes are unaffected:

- `verl.utils.config.validate_config` (the trainer's config check, on the driver before Ray or any worker
  starts): the bypass conflict, and every GIPO setting (`gipo_plugins.verl.config.policy_objective`, which
  also sees the actor's clip range and the settings GIPO would ignore);
- `apply_bypass_mode` (where the swap happens), for trainers that skip `validate_config`.

`GIPOPolicyLossConfig.__post_init__` and the loss also check `policy_loss.rollout_correction`, where
verl's own bypass loss reads the rollout-correction settings, for configs that carry them there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from gipo_plugins.verl.config import LOSS_MODE, behaviour_kl_coefficient, policy_objective

_WRAPPED = "_gipo_plugins_check"


def check_bypass_mode(loss_mode: str | None, bypass_mode: bool, where: str = "algorithm.rollout_correction") -> None:
    """Raise `ValueError` naming both settings if `bypass_mode` would replace this adapter's loss."""
    if bypass_mode and loss_mode == LOSS_MODE:
        raise ValueError(
            f"{where}.bypass_mode=true replaces actor_rollout_ref.actor.policy_loss.loss_mode={LOSS_MODE} with verl's "
            "'bypass_mode' loss (PPO-clip or REINFORCE), so GIPO would silently not run. Set "
            "algorithm.rollout_correction.bypass_mode=false (verl then recomputes the old log-probs and passes its "
            "rollout correction as rollout_is_weights, which GIPO applies), or choose another loss_mode."
        )


def check_trainer_config(config: Any) -> None:
    """Check a full trainer config (`algorithm` and `actor_rollout_ref` sections) using `loss_mode=gipo`.

    Raises:
        ValueError: the `bypass_mode` conflict, or a bad or ignored GIPO setting, naming it.
    """
    actor = _select(config, "actor_rollout_ref", "actor")
    loss_mode = _select(actor, "policy_loss", "loss_mode")
    if loss_mode != LOSS_MODE:
        return
    rollout_correction = _select(config, "algorithm", "rollout_correction")
    check_bypass_mode(loss_mode, bool(rollout_correction is not None and rollout_correction.get("bypass_mode", False)))
    policy_objective(actor)
    behaviour_kl_coefficient(actor.policy_loss)


def _select(config: Any, *keys: str) -> Any:
    for key in keys:
        if config is None:
            return None
        config = config.get(key, None)
    return config


def _guard(module: Any, name: str, check: Callable[..., None]) -> None:
    """Replace `module.name` by a function that runs `check(*args, **kwargs)`, then the original."""
    original = getattr(module, name)
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return original(*args, **kwargs)

    setattr(checked, _WRAPPED, True)
    setattr(module, name, checked)


def _check_validate_config(config: Any, *args: Any, **kwargs: Any) -> None:
    check_trainer_config(config)


def _check_apply_bypass_mode(batch: Any, rollout_corr_config: Any = None, policy_loss_config: Any = None) -> None:
    check_bypass_mode(None if policy_loss_config is None else policy_loss_config.get("loss_mode", None), True)


def install() -> None:
    """Wrap verl's `validate_config` and `apply_bypass_mode` with these checks (idempotent)."""
    import verl.utils.config as config_module
    from verl.trainer.ppo import rollout_corr_helper

    _guard(config_module, "validate_config", _check_validate_config)
    _guard(rollout_corr_helper, "apply_bypass_mode", _check_apply_bypass_mode)


__all__ = ["check_bypass_mode", "check_trainer_config", "install"]
