r"""GIPO's settings in verl: `GIPOPolicyLossConfig`, and the core objective an actor config selects.

Names: GIPO's settings keep the core's names (`objective`, `sigma`, `sigma_neg_ratio`, `kernel`), as in
the TorchRL and RLlib adapters. The settings verl's `ActorConfig` already has stay verl's (`VERL_NAMES`):
PPO's clip range is `actor.clip_ratio_low` / `clip_ratio_high` (each falling back to `clip_ratio`, as in
verl's `vanilla`) and SAPO's temperatures are `actor.tau_pos` / `tau_neg` (those of verl's `sapo`).
Settings of an objective registered outside gipo_plugins go in `objective_kwargs` under their core names.
The anchor to the behaviour policy is `behaviour_kl_coeff`, the core's one name for it in every adapter.

Checks: every value on `GIPOPolicyLossConfig` is checked by the core's registry when the config is built
(`__post_init__`, when verl instantiates the actor config). The whole selection — including the actor's
clip range and temperatures, which verl owns, and the actor settings GIPO replaces (`REPLACED_BY_GIPO`) —
is checked by `policy_objective`: on the driver by verl's `validate_config` (see
`gipo_plugins.verl.checks`), before any worker starts, and again on each loss call (cached). Errors are
`ValueError`s naming the setting as written in the Hydra config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from verl.workers.config import ActorConfig, PolicyLossConfig

from gipo_plugins import BEHAVIOUR_KL_COEFF, PolicyObjective, all_hyperparameters, anchor_coeff
from gipo_plugins.objectives import KERNEL, SIGMA, SIGMA_NEG_RATIO
from gipo_plugins.registry import get_objective

LOSS_MODE = "gipo"
"""The `policy_loss.loss_mode` this adapter registers with verl."""

OWN_SETTINGS = ("sigma", "sigma_neg_ratio", "kernel")
"""Core settings that are fields of `GIPOPolicyLossConfig`, under the core's names."""

VERL_NAMES: Mapping[str, tuple[str, ...]] = {
    "clip_epsilon": ("clip_ratio_low", "clip_ratio_high"),
    "sapo_tau_pos": ("tau_pos",),
    "sapo_tau_neg": ("tau_neg",),
}
"""Core settings verl's `ActorConfig` already has: core name → the actor's field(s)."""

REPLACED_BY_GIPO: Mapping[str, str] = {
    "clip_ratio": "the clip range, which GIPO opens (its trust weight takes the clip's place: set policy_loss.sigma)",
    "clip_ratio_low": "the clip range's lower bound, which GIPO opens (set policy_loss.sigma)",
    "clip_ratio_high": "the clip range's upper bound, which GIPO opens (set policy_loss.sigma)",
    "clip_ratio_c": "the dual-clip bound of verl's vanilla loss, which no core objective has",
}
"""verl actor settings that `loss_mode=gipo` would ignore: each must keep its default (else a `ValueError`).

The clip range only where the selected objective takes no clip range (`objective="ppo_clip"` uses it);
`clip_ratio_c` always. verl's `clip_ratio_low` / `clip_ratio_high` may also be `None` (their default then
is `clip_ratio`).
"""


def _help(hp) -> dict[str, str]:
    return {"help": hp.help}


@dataclass
class GIPOPolicyLossConfig(PolicyLossConfig):
    r"""verl's `PolicyLossConfig` with GIPO's settings; select it with `policy_loss._target_`.

    ```bash
    actor_rollout_ref.actor.policy_loss._target_=gipo_plugins.verl.GIPOPolicyLossConfig \
    actor_rollout_ref.actor.policy_loss.loss_mode=gipo \
    +actor_rollout_ref.actor.policy_loss.sigma=0.5
    ```

    (Hydra needs the `+` for keys that verl's own YAML does not list.) With `loss_mode="gipo"` the
    per-token term is the core objective's, by default GIPO's
    $-\,r\,A\,\mathrm{sg}[w]$, $w = k(\log r / \sigma_{eff})$ (see [`gipo_plugins.gipo_objective`][]).
    Any other `loss_mode` runs verl's own loss and ignores these fields, so one config A/Bs them.

    Parameters:
        objective: the core objective with `loss_mode="gipo"`: `"gipo"` (default), `"ppo_clip"`
            (clip range from `actor.clip_ratio_low/high`), `"sapo"` (temperatures from
            `actor.tau_pos/tau_neg`), `"is"`, or one registered with `gipo_plugins.register_objective`.
        sigma: GIPO's kernel scale $\sigma > 0$.
        sigma_neg_ratio: $\sigma_-/\sigma_+$ for non-positive advantages.
        kernel: `"gaussian"`, `"laplacian"` or `"cauchy"`.
        behaviour_kl_coeff: $\beta \ge 0$ of the anchor $\beta\,\mathrm{KL}(\pi_{old}\,\|\,\pi_\theta)$ added
            to the loss (`gipo_plugins.verl.loss`); `None` (default): the published 0.1 with
            `objective="gipo"`, 0 with any other (`gipo_plugins.anchor_coeff`).
        objective_kwargs: settings of an objective registered outside gipo_plugins, by core name.

    Every other field is verl's `PolicyLossConfig`'s. With verl's plain `PolicyLossConfig` and
    `loss_mode="gipo"`, the core's defaults apply.

    Raises:
        ValueError: a bad value (naming it, e.g. `policy_loss.sigma`), an unknown objective or
            `objective_kwargs` key, or `loss_mode="gipo"` with `rollout_correction.bypass_mode=True`.
    """

    loss_mode: str = LOSS_MODE
    objective: str = field(default="gipo", metadata={"help": "The core objective with loss_mode='gipo'."})
    sigma: float = field(default=SIGMA.default, metadata=_help(SIGMA))
    sigma_neg_ratio: float = field(default=SIGMA_NEG_RATIO.default, metadata=_help(SIGMA_NEG_RATIO))
    kernel: str = field(default=KERNEL.default, metadata=_help(KERNEL))
    behaviour_kl_coeff: float | None = field(default=BEHAVIOUR_KL_COEFF.default, metadata=_help(BEHAVIOUR_KL_COEFF))
    objective_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Settings of an objective registered outside gipo_plugins, by their core names."},
    )

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        from gipo_plugins.verl.checks import check_bypass_mode

        check_bypass_mode(self.loss_mode, _bypass_flag(self.rollout_correction), where="policy_loss.rollout_correction")
        _build(self.objective, _own_settings(self) + _extra_settings(self.objective_kwargs))
        behaviour_kl_coefficient(self)


def _bypass_flag(rollout_correction: Any) -> bool:
    return bool(rollout_correction is not None and rollout_correction.get("bypass_mode", False))


def _own_settings(policy_loss: Any) -> tuple[tuple[str, str, Any], ...]:
    """(core name, name as written, value) of GIPO's own settings; the core's defaults where absent."""
    defaults = all_hyperparameters()
    return tuple((name, f"policy_loss.{name}", policy_loss.get(name, defaults[name].default)) for name in OWN_SETTINGS)


def _extra_settings(objective_kwargs: Mapping[str, Any] | None) -> tuple[tuple[str, str, Any], ...]:
    """(core name, name as written, value) of `objective_kwargs`, each one a registered setting of no other field."""
    registered = all_hyperparameters()
    extra = dict(objective_kwargs or {})
    for key in extra:
        where = f"policy_loss.objective_kwargs[{key!r}]"
        if key in OWN_SETTINGS:
            raise ValueError(f"{where}: set {key} as policy_loss.{key}")
        if key in VERL_NAMES:
            raise ValueError(f"{where}: verl's actor config has it: set actor.{' / actor.'.join(VERL_NAMES[key])}")
        if key not in registered:
            raise ValueError(f"{where}: unknown setting; registered: {sorted(registered)}")
    return tuple((key, f"policy_loss.objective_kwargs[{key!r}]", value) for key, value in sorted(extra.items()))


def _takes(objective: str) -> set[str]:
    """Core names of the settings `objective` takes (none for an unknown objective: `_build` names it)."""
    try:
        return {hp.name for hp in get_objective(objective).hyperparameters}
    except ValueError:
        return set()


def _check_replaced(objective: str, actor: Any) -> None:
    """`ValueError` for an actor setting of `REPLACED_BY_GIPO` that `objective` would silently ignore."""
    uses_clip = "clip_epsilon" in _takes(objective)
    for name, what in REPLACED_BY_GIPO.items():
        if uses_clip and name != "clip_ratio_c":
            continue
        value, default = actor.get(name), ActorConfig.__dataclass_fields__[name].default
        if value is None and name in ("clip_ratio_low", "clip_ratio_high"):
            continue
        if value != default:
            raise ValueError(
                f"actor.{name}={value!r} sets {what}; leave it at its default ({default!r}) with "
                f"policy_loss.loss_mode={LOSS_MODE} and objective={objective!r}"
                + ("" if name == "clip_ratio_c" else ", or use objective='ppo_clip' or loss_mode=vanilla")
            )


def _actor_settings(objective: str, actor: Any) -> tuple[tuple[str, str, Any], ...]:
    """(core name, name as written, value) of the settings the objective takes from verl's actor config."""
    takes = _takes(objective)
    settings = []
    if "clip_epsilon" in takes:
        low, high = (actor.get(key) for key in VERL_NAMES["clip_epsilon"])
        pair = (actor.clip_ratio if low is None else low, actor.clip_ratio if high is None else high)
        settings.append(("clip_epsilon", "actor.clip_ratio_low/clip_ratio_high", pair))
    for core in ("sapo_tau_pos", "sapo_tau_neg"):
        if core in takes:
            (name,) = VERL_NAMES[core]
            settings.append((core, f"actor.{name}", actor.get(name)))
    return tuple(settings)


@lru_cache(maxsize=64)
def _build(objective: str, settings: tuple[tuple[str, str, Any], ...]) -> PolicyObjective:
    """The validated core objective (cached: a config's settings are checked once, not per call)."""
    registered = all_hyperparameters()
    checked = {core: registered[core].validate(value, as_name=written) for core, written, value in settings}
    try:
        return PolicyObjective(objective, **checked)
    except ValueError as error:
        raise ValueError(f"policy_loss.objective: {error}") from None


def behaviour_kl_coefficient(policy_loss: Any, objective: str | None = None) -> float:
    """The anchor coefficient in force for a policy-loss config (`ValueError` naming a bad `behaviour_kl_coeff`)."""
    name = BEHAVIOUR_KL_COEFF.name
    value = BEHAVIOUR_KL_COEFF.validate(policy_loss.get(name, None), f"policy_loss.{name}")
    return anchor_coeff(value, policy_loss.get("objective", "gipo") if objective is None else objective)


def policy_objective(config: Any) -> PolicyObjective:
    """The core objective a verl actor config selects (`config.policy_loss` and the actor's own settings).

    Works with `GIPOPolicyLossConfig` and with verl's plain `PolicyLossConfig` (the core's defaults), as
    dataclasses or DictConfigs (the driver's). The core checks each distinct set of values once.

    Raises:
        ValueError: naming the setting: a bad value, an unknown objective, or an actor setting of
            `REPLACED_BY_GIPO` that the selection would ignore.
    """
    policy_loss = config.policy_loss
    objective = policy_loss.get("objective", "gipo")
    _check_replaced(objective, config)
    settings = (
        _own_settings(policy_loss)
        + _extra_settings(policy_loss.get("objective_kwargs"))
        + _actor_settings(objective, config)
    )
    return _build(objective, _hashable(settings))


def _hashable(settings: tuple[tuple[str, str, Any], ...]) -> tuple[tuple[str, str, Any], ...]:
    return tuple((core, written, tuple(v) if isinstance(v, list) else v) for core, written, v in settings)


__all__ = [
    "LOSS_MODE",
    "OWN_SETTINGS",
    "REPLACED_BY_GIPO",
    "VERL_NAMES",
    "GIPOPolicyLossConfig",
    "behaviour_kl_coefficient",
    "policy_objective",
]
