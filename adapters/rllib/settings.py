r"""GIPO's settings on an RLlib `AlgorithmConfig`, derived from the core's objective registry.

[`GIPOSettings`][gipo_plugins.rllib.settings.GIPOSettings] is the one place where the RLlib adapter
handles its settings; the PPO-based [`GIPOConfig`][gipo_plugins.rllib.gipo.GIPOConfig] and the
APPO-based [`AGIPOConfig`][gipo_plugins.rllib.agipo.AGIPOConfig] both mix it in.

Names: every registered hyperparameter (`gipo_plugins.all_hyperparameters()`) is a config attribute
under the core's name — `sigma`, `sigma_neg_ratio`, `kernel`, `sapo_tau_pos`, `sapo_tau_neg` and those
of any objective you register — except PPO's clip range, which RLlib already has as `clip_param`
(`clip_epsilon` in the core). `objective` selects the objective. None of these names is an attribute of
RLlib's `AlgorithmConfig`, `PPOConfig`, `IMPALAConfig` or `APPOConfig` (a test pins this).

Checks: a setting is checked where it is set (`.training(...)`, dict configs through
`update_from_dict` / `from_dict` / Tune's `param_space`), again by `validate()` (so at `build_algo()`,
in every Tune trial and when a checkpoint is restored), and a bad value is never replaced silently.
RLlib drops every config attribute equal to its "deprecated" sentinel $-1$ from `get_state()`, and an
algorithm validates a copy rebuilt from that state; `get_state()` here keeps GIPO's settings (and
`clip_param`), so `sigma=-1` is rejected instead of becoming the default. Errors are `ValueError`s
that name the setting as you wrote it; they are raised even under
`config.experimental(_validate_config=False)`, because the learner cannot build the objective from
a bad setting anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided

from gipo_plugins import Hyperparameter, PolicyObjective, all_hyperparameters
from gipo_plugins.registry import get_objective

RLLIB_NAMES: Mapping[str, str] = {"clip_epsilon": "clip_param"}
"""Core hyperparameters that RLlib already has under its own name: core name → RLlib name."""

OBJECTIVE = "objective"
"""The config attribute that selects the registered objective."""


def rllib_name(core_name: str) -> str:
    """The RLlib config name of a core hyperparameter."""
    return RLLIB_NAMES.get(core_name, core_name)


def owned_settings() -> dict[str, Hyperparameter]:
    """The registered hyperparameters this adapter adds to a config, by name (all but RLlib's own)."""
    return {name: hp for name, hp in all_hyperparameters().items() if name not in RLLIB_NAMES}


def settings_table() -> list[dict[str, Any]]:
    """One row per setting (`objective` first): RLlib name, core name, default and help, for docs and tests."""
    rows = [{"rllib": OBJECTIVE, "core": OBJECTIVE, "default": "gipo", "help": "the registered objective"}]
    for name, hp in all_hyperparameters().items():
        rows.append({"rllib": rllib_name(name), "core": name, "default": hp.default, "help": hp.help})
    return rows


class GIPOSettings:
    """Mixin for an RLlib `AlgorithmConfig` (put it first: `class GIPOConfig(GIPOSettings, PPOConfig)`).

    Adds `objective` and every registered hyperparameter as attributes with their registered defaults,
    accepts them in `training(...)` and dict configs, checks them (see the module notes) and builds the
    core objective they select ([`policy_objective`][gipo_plugins.rllib.settings.GIPOSettings.policy_objective]).
    A config class adds settings of its own that are not an objective's (AGIPO's anchor) in
    `extra_settings`: they are set, checked and kept the same way.
    """

    extra_settings: tuple[Hyperparameter, ...] = ()

    def _owned(self) -> dict[str, Hyperparameter]:
        return owned_settings() | {hp.name: hp for hp in self.extra_settings}

    def _init_gipo_settings(self) -> None:
        """Set `objective` and every owned setting to its default (call in `__init__`)."""
        self.objective = "gipo"
        for name, hp in self._owned().items():
            setattr(self, name, hp.default)

    # --- setting ----------------------------------------------------------------------------------

    def training(self, *, objective: str | None = NotProvided, **kwargs: Any):
        """The algorithm's `training(...)` plus `objective` and every registered hyperparameter by name.

        Args:
            objective: a registered objective: `"gipo"` (default), `"ppo_clip"` (the algorithm's own
                clipped surrogate, with `clip_param`), `"sapo"`, `"is"` or your own.
            **kwargs: GIPO's settings (`sigma`, `sigma_neg_ratio`, `kernel`, `sapo_tau_pos`,
                `sapo_tau_neg`, and any registered objective's), and the algorithm's own.

        Raises:
            ValueError: a bad value, naming the setting.
            TypeError: an unknown keyword.
        """
        given = {key: kwargs.pop(key) for key in list(kwargs) if key in self._owned()}
        if objective is not NotProvided:
            given[OBJECTIVE] = objective
        if kwargs.get("clip_param", NotProvided) is not NotProvided:
            selected = given.get(OBJECTIVE, self.objective)
            if "clip_epsilon" in _objective_settings(selected):
                given["clip_param"] = kwargs["clip_param"]
        checked = self._check_gipo_settings(given)  # before anything is set: a bad call changes nothing
        super().training(**kwargs)
        for key, value in checked.items():
            if key != "clip_param":
                setattr(self, key, value)
        return self

    def update_from_dict(self, config_dict: Mapping[str, Any]):
        """RLlib's `update_from_dict` (dict configs, `from_dict`, Tune), checking GIPO's settings in it."""
        self._check_gipo_settings({k: v for k, v in config_dict.items() if k == OBJECTIVE or k in self._owned()})
        return super().update_from_dict(config_dict)

    # --- checking ---------------------------------------------------------------------------------

    def _check_gipo_settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check `values` (RLlib names → values); return them normalised or raise `ValueError` naming one."""
        registered = all_hyperparameters() | {hp.name: hp for hp in self.extra_settings}
        checked = {}
        try:
            if OBJECTIVE in values:
                checked[OBJECTIVE] = get_objective(values[OBJECTIVE]).name
            for key, value in values.items():
                if key == OBJECTIVE:
                    continue
                core = next((core for core, rllib in RLLIB_NAMES.items() if rllib == key), key)
                checked[key] = registered[core].validate(value, as_name=key)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None
        return checked

    def _current_gipo_settings(self) -> dict[str, Any]:
        """This config's GIPO settings by RLlib name: `objective`, every owned setting, `clip_param` if used."""
        state = vars(self)
        values = {OBJECTIVE: state.get(OBJECTIVE, "gipo")}
        values |= {name: state.get(name, hp.default) for name, hp in self._owned().items()}
        if values[OBJECTIVE] in _registered_objectives() and "clip_epsilon" in _objective_settings(values[OBJECTIVE]):
            values["clip_param"] = self.clip_param
        return values

    def validate(self) -> None:
        """The algorithm's checks, then GIPO's (raised even when RLlib's validation is switched off)."""
        super().validate()
        self._check_gipo_settings(self._current_gipo_settings())

    @property
    def policy_objective(self) -> PolicyObjective:
        """The core objective these settings select (validated; `ValueError` naming a bad setting)."""
        values = self._check_gipo_settings(self._current_gipo_settings())
        name = values.pop(OBJECTIVE)
        for hp in self.extra_settings:
            values.pop(hp.name)
        settings = {core: values.pop(rllib) for core, rllib in RLLIB_NAMES.items() if rllib in values}
        return PolicyObjective(name, **settings, **values)

    # --- state (checkpoints, Algorithm construction) ----------------------------------------------

    def _gipo_state_keys(self) -> list[str]:
        return [OBJECTIVE, *self._owned(), *RLLIB_NAMES.values()]

    def get_state(self) -> dict[str, Any]:
        """RLlib's state, keeping GIPO's settings even when they equal RLlib's sentinel $-1$ (see the module notes)."""
        state = super().get_state()
        mine = vars(self)
        state |= {key: mine[key] for key in self._gipo_state_keys() if key in mine}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]):
        """RLlib's `from_state`, refusing a state (e.g. a checkpoint's) that lacks GIPO settings."""
        where = f"{cls.__name__} state (a checkpoint's config?)"
        objective = state.get(OBJECTIVE)
        if objective is None:
            raise ValueError(f"{where} has no {OBJECTIVE!r}: not written by this GIPO config, or truncated")
        # an unregistered objective has no known settings here: validate() names it next
        missing = [rllib_name(name) for name in _objective_settings(objective) if rllib_name(name) not in state]
        if missing:
            raise ValueError(f"{where} lacks the setting(s) {missing} of objective {objective!r}: truncated?")
        return super().from_state(state)


def _registered_objectives() -> tuple[str, ...]:
    from gipo_plugins import objective_names

    return objective_names()


def _objective_settings(objective: str) -> tuple[str, ...]:
    """Core names of the hyperparameters `objective` takes (none for an unknown objective)."""
    if objective not in _registered_objectives():
        return ()
    return tuple(hp.name for hp in get_objective(objective).hyperparameters)


__all__ = ["OBJECTIVE", "RLLIB_NAMES", "GIPOSettings", "owned_settings", "rllib_name", "settings_table"]
