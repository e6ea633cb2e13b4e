"""Every benchmark module imports as it is run, `python -m benchmarks.<name>`, from the repository root."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import benchmarks

MODULES = sorted(m.name for m in pkgutil.walk_packages(benchmarks.__path__, "benchmarks."))


def test_the_benchmarks_are_found():
    assert {"benchmarks.overhead_table", "benchmarks.rllib_iteration_overhead", "benchmarks.vla_posttrain"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring saying what it measures and how to run it"
