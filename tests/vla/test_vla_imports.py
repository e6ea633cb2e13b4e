"""Where the VLA code lives: its own adapter; the TRL adapter imports without Meta-World; old paths fail loudly."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)


def test_trl_adapter_imports_without_metaworld_or_mujoco():
    out = _run("import sys, gipo_plugins.trl; print([m for m in ('metaworld', 'mujoco', 'gipo_plugins.vla') "
               "if m in sys.modules])")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_metaworld_package_does_not_load_rendering_until_asked():
    out = _run("import sys, gipo_plugins.metaworld as m; print('gipo_plugins.metaworld.pixels' in sys.modules); "
               "m.STATE_DIM; print('gipo_plugins.metaworld.pixels' in sys.modules)")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_vla_package_exports_the_trainer_and_both_policies():
    import gipo_plugins.vla as vla

    for name in vla.__all__:
        assert getattr(vla, name) is not None
    assert {"VLAGIPOTrainer", "OpenVLAForActionPrediction", "TinyOpenVLAForActionPrediction", "load_openvla"} <= set(
        vla.__all__
    )
