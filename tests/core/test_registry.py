"""The objective registry: adding an objective is one function and one registration."""

from __future__ import annotations

import pytest
import torch

from gipo_plugins import (
    Hyperparameter,
    PolicyObjective,
    all_hyperparameters,
    check_positive,
    is_objective,
    objective_names,
    register_objective,
    unregister_objective,
)
from gipo_plugins.objectives import capped_exp

TOY_ALPHA = Hyperparameter("toy_alpha", 0.5, "share of the IS gradient kept (toy)", check_positive)


def toy_term(log_ratio, advantages, *, toy_alpha):
    """Plain IS scaled by a constant: term -α r A, gate α."""
    ratio = capped_exp(log_ratio)
    return -toy_alpha * ratio * advantages, torch.full_like(ratio, toy_alpha)


@pytest.fixture
def toy():
    register_objective("toy", TOY_ALPHA)(toy_term)
    yield "toy"
    unregister_objective("toy")


def test_a_registered_objective_is_used_like_the_built_ins(toy):
    assert toy in objective_names() and all_hyperparameters()["toy_alpha"] is TOY_ALPHA
    log_prob, old, adv = torch.randn(8, requires_grad=True), torch.randn(8), torch.randn(8)
    result = PolicyObjective("toy", toy_alpha=0.3)(log_prob, old, adv)
    torch.testing.assert_close(result.loss, 0.3 * is_objective(log_prob, old, adv).loss)
    assert result.metrics["trust_weight_mean"].item() == pytest.approx(0.3)
    assert PolicyObjective("toy").toy_alpha == 0.5  # the registered default
    with pytest.raises(ValueError, match="toy_alpha"):
        PolicyObjective("toy", toy_alpha=-1.0)


def test_registration_errors(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_objective("toy", TOY_ALPHA)(toy_term)
    with pytest.raises(ValueError, match="sigma"):  # a name clash with GIPO's sigma, defined differently
        register_objective("toy2", Hyperparameter("sigma", 2.0, "another sigma", check_positive))(toy_term)
    with pytest.raises(TypeError, match="toy_beta"):
        PolicyObjective("toy", toy_beta=1.0)
    unregister_objective("toy")
    with pytest.raises(ValueError, match="objective"):
        PolicyObjective("toy")
    register_objective("toy", TOY_ALPHA)(toy_term)  # for the fixture's teardown


def test_objectives_view_is_read_only_and_the_registry_imports_nothing_above_it():
    import ast
    from pathlib import Path

    import gipo_plugins.registry as registry
    from gipo_plugins import OBJECTIVES

    with pytest.raises(TypeError):
        OBJECTIVES["mine"] = OBJECTIVES["gipo"]
    with pytest.raises(TypeError):
        del OBJECTIVES["gipo"]
    imported = {
        node.module
        for node in ast.walk(ast.parse(Path(registry.__file__).read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gipo_plugins")
    }
    assert imported <= {"gipo_plugins._checks"}, imported
