r"""The objective registry: an objective is one *term function* registered once with its hyperparameters.

A term function maps the differentiable log-ratio $\ell = \log\pi_\theta - \log\pi_{old}$ and the
(detached) advantages $A$, both of the batch's shape with zeros at masked positions, to the
per-element term to minimise and its detached *gate* $g$ (the share of the plain importance-sampling
gradient that survives, see [`gipo_plugins.objectives`][gipo_plugins.objectives]):

```python
from gipo_plugins import Hyperparameter, check_positive, register_objective
from gipo_plugins.objectives import capped_exp

@register_objective("clipped_is", Hyperparameter("is_ratio_cap", 10.0, "cap on r", check_positive))
def clipped_is(log_ratio, advantages, *, is_ratio_cap):
    '''Importance sampling with the ratio's value capped (gradient zero above the cap).'''
    ratio = capped_exp(log_ratio)
    gate = (ratio.detach() <= is_ratio_cap).to(ratio.dtype)
    return -torch.minimum(ratio, torch.full_like(ratio, is_ratio_cap)) * advantages, gate
```

Masking, reductions, input checks and the utilization diagnostics are the registry's, the same for
every objective. Everything downstream derives from the registration: `PolicyObjective("clipped_is",
is_ratio_cap=5.0)`, TorchRL's `GIPOLoss(objective="clipped_is", is_ratio_cap=5.0)`, RLlib's
`GIPOConfig().training(objective="clipped_is", is_ratio_cap=5.0)`, TRL's
`GIPOConfig(loss_type="gipo", gipo_objective="clipped_is", gipo_objective_kwargs={...})` and the
settings table of the docs. A hyperparameter's name is global: two objectives that take a setting of
the same name share one `Hyperparameter` (same default and check). The checks the built-in objectives
use are public for yours: `check_positive`, `check_choice`, `check_below`, `check_optional_nonnegative`
(each `check(name, value) -> value`, raising a `ValueError` that names the setting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import Tensor

from gipo_plugins._checks import check_choice

Check = Callable[[str, Any], Any]
"""`check(name, value) -> value`: validates a setting (raising `ValueError` naming `name`) and returns it."""
TermFn = Callable[..., tuple[Tensor, Tensor]]
"""`term(log_ratio, advantages, **hyperparameters) -> (per-element term, detached gate)`."""


@dataclass(frozen=True)
class Hyperparameter:
    """One setting of a registered objective.

    Attributes:
        name: the setting's name, the same in the core, `PolicyObjective` and the adapters that take
            core names (TorchRL, RLlib); see the settings table in the docs for framework names.
        default: the value when the setting is not given.
        help: one line for docs, `--help` and config metadata.
        check: validates a value (`ValueError` naming the setting) and returns it, normalised.
        choices: the allowed values of a string setting (for docs and command lines).
    """

    name: str
    default: Any
    help: str
    check: Check
    choices: tuple[str, ...] | None = None

    def validate(self, value: Any, as_name: str | None = None) -> Any:
        """`check(value)`, with the error naming `as_name` (an adapter's name for it) if given."""
        return self.check(as_name or self.name, value)


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective: its name, term function and hyperparameters."""

    name: str
    term: TermFn
    hyperparameters: tuple[Hyperparameter, ...]

    @property
    def summary(self) -> str:
        """The first line of the term function's docstring."""
        return (self.term.__doc__ or self.name).strip().splitlines()[0]


_REGISTRY: dict[str, ObjectiveSpec] = {}


def register_objective(name: str, *hyperparameters: Hyperparameter) -> Callable[[TermFn], TermFn]:
    """Decorator registering `term` as objective `name` with its `hyperparameters` (see the module docs).

    Raises:
        ValueError: `name` is taken, or a hyperparameter name is already registered with a different
            default or check.
    """

    def register(term: TermFn) -> TermFn:
        if name in _REGISTRY:
            raise ValueError(f"objective {name!r} is already registered")
        known = all_hyperparameters()
        for hp in hyperparameters:
            if hp.name in known and known[hp.name] != hp:
                raise ValueError(f"hyperparameter {hp.name!r} is already registered differently; reuse that object")
        _REGISTRY[name] = ObjectiveSpec(name, term, tuple(hyperparameters))
        return term

    return register


def unregister_objective(name: str) -> None:
    """Remove objective `name` (for tests and interactive sessions)."""
    get_objective(name)
    del _REGISTRY[name]


def get_objective(name: str) -> ObjectiveSpec:
    """The registered objective `name`: its term function and hyperparameters (`ValueError` listing the choices)."""
    check_choice("objective", name, tuple(_REGISTRY))
    return _REGISTRY[name]


def objective_names() -> tuple[str, ...]:
    """Names of the registered objectives, in registration order."""
    return tuple(_REGISTRY)


def all_hyperparameters() -> dict[str, Hyperparameter]:
    """Every registered objective's hyperparameters by name, in registration order."""
    return {hp.name: hp for spec in _REGISTRY.values() for hp in spec.hyperparameters}


OBJECTIVES: Mapping[str, ObjectiveSpec] = MappingProxyType(_REGISTRY)
"""Read-only view of the registry by name (`ObjectiveSpec`s: name, term function, hyperparameters). Evaluate an
objective with `PolicyObjective(name, **settings)`, which validates the settings once."""
