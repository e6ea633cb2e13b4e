"""Suite-wide settings: one torch thread (2-core machines) and `gpu` tests skipped without CUDA."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, chosen before anything imports mujoco
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # integration tests run the examples' own entry points
sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmark machinery with unit tests (gridworld.exact)
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
