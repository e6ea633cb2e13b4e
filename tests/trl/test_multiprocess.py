"""Two CPU processes (torchrun, gloo) train a few GIPO steps and agree on the logged loss."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not found")  # fmt: skip
def test_two_processes_agree_on_the_loss(tiny_lm, tmp_path):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    script = Path(__file__).with_name("two_ranks.py")
    out = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29533", str(script), tiny_lm, str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["world"] == 2 for r in results)
    first, second = (r["losses"] for r in results)
    assert len(first) == 4 and first == second
