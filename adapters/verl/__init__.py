"""verl adapter: the policy loss `gipo` and `GIPOPolicyLossConfig`, registered in every verl process.

```bash
pip install "gipo-plugins[verl]"
python -m verl.trainer.main_ppo ... actor_rollout_ref.actor.policy_loss.loss_mode=gipo
```

Nothing to import: the package declares this module in verl's `verl.plugins` entry-point group, which
`import verl` loads in every process (driver and Ray workers). Importing it registers the loss `gipo`
with verl's `register_policy_loss`, and wraps verl's config check and bypass-mode switch with this
adapter's checks (`gipo_plugins.verl.checks`: `bypass_mode` with `loss_mode=gipo` is an error). GIPO's
settings come with `actor_rollout_ref.actor.policy_loss._target_=gipo_plugins.verl.GIPOPolicyLossConfig`
(`gipo_plugins.verl.config`); the loss is `gipo_plugins.verl.loss.gipo_policy_loss`.

verl swallows a plugin's import error (it logs it at DEBUG level): this module logs its own failure at
ERROR level before re-raising, so a broken install shows in the driver's and workers' logs, and
`loss_mode=gipo` then fails with verl's "Unsupported loss mode" error.
"""

import logging as _logging

_logger = _logging.getLogger("gipo_plugins.verl")

SUPPORTED_VERL = ("0.9.1", "0.10")
"""verl versions supported, `[low, high)`: the adapter relies on verl's loss signature and config classes."""

try:
    from importlib.metadata import version as _version

    from packaging.version import Version as _Version

    _installed = _Version(_version("verl"))
    if not _Version(SUPPORTED_VERL[0]) <= _installed < _Version(SUPPORTED_VERL[1]):
        raise ImportError(
            f"gipo_plugins.verl supports verl>={SUPPORTED_VERL[0]},<{SUPPORTED_VERL[1]}; verl {_installed} is "
            "installed. Install the supported range: pip install 'gipo-plugins[verl]'."
        )

    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, register_policy_loss

    from gipo_plugins.verl import checks
    from gipo_plugins.verl.config import LOSS_MODE, GIPOPolicyLossConfig, policy_objective
    from gipo_plugins.verl.loss import gipo_policy_loss

    _existing = POLICY_LOSS_REGISTRY.get(LOSS_MODE)
    if _existing is not None and _existing is not gipo_policy_loss:
        _logger.warning(
            "verl already has a policy loss %r (%s.%s); gipo_plugins.verl replaces it with its own",
            LOSS_MODE,
            _existing.__module__,
            _existing.__qualname__,
        )
    register_policy_loss(LOSS_MODE)(gipo_policy_loss)
    checks.install()
except Exception as _error:
    _logger.error(
        "gipo_plugins.verl failed to load, so verl's policy_loss.loss_mode=gipo is NOT registered: %s: %s",
        type(_error).__name__,
        _error,
    )
    raise

__all__ = ["LOSS_MODE", "SUPPORTED_VERL", "GIPOPolicyLossConfig", "gipo_policy_loss", "policy_objective"]
