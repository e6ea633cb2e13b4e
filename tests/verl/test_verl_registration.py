"""Registration through verl's `verl.plugins` entry points: in a fresh process, in a Ray worker, and loudly broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

IMPORT_ONLY_VERL = (
    "import sys; import verl.trainer.ppo.core_algos as algos; fn = algos.get_policy_loss_fn('gipo'); "
    "print(fn.__module__, 'gipo_plugins.verl' in sys.modules)"
)
FAKE_OLD_VERL = (
    "import importlib.metadata as md; real = md.version; "
    "md.version = lambda name: '0.8.0' if name == 'verl' else real(name); "
)
ENTRY_POINTS = (
    "from importlib.metadata import entry_points; "
    "print([ep.value for ep in entry_points(group='verl.plugins') if ep.name == 'gipo'])"
)


@pytest.fixture(scope="module")
def fresh_processes() -> dict[str, subprocess.CompletedProcess]:
    """Fresh interpreters (no pytest, no test paths, cwd outside the repository), started together."""
    runs = {
        "entry_points": (ENTRY_POINTS, {}),
        "import_only_verl": (IMPORT_ONLY_VERL, {}),
        "broken": (FAKE_OLD_VERL + IMPORT_ONLY_VERL, {}),
    }
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VERL_USE_EXTERNAL_PLUGINS")}
    started = {
        name: subprocess.Popen(
            [sys.executable, "-c", code],
            env=base | env,
            cwd=tempfile.gettempdir(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, (code, env) in runs.items()
    }
    done = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def test_the_package_declares_a_verl_plugin_entry_point(fresh_processes):
    """Read in a fresh process: under pytest the repository root (on `sys.path`) may hold a stale egg-info."""
    out = fresh_processes["entry_points"]
    assert out.stdout.strip() == "['gipo_plugins.verl']", out.stderr


def test_a_fresh_process_that_imports_only_verl_resolves_gipo(fresh_processes):
    out = fresh_processes["import_only_verl"]
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gipo_plugins.verl.loss", "True"]


def test_a_broken_plugin_is_loud(fresh_processes):
    """verl logs a plugin's import error at DEBUG only; the adapter logs its own at ERROR (shown by default)."""
    out = fresh_processes["broken"]
    assert "gipo_plugins.verl failed to load, so verl's policy_loss.loss_mode=gipo is NOT registered" in out.stderr
    assert "supports verl>=0.9.1,<0.10; verl 0.8.0 is installed" in out.stderr
    assert out.returncode != 0 and "Unsupported loss mode: gipo" in out.stderr


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")  # ray is one of verl's own dependencies
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="verlt", dir="/tmp")
    ray.init(
        num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False, _temp_dir=temp_dir
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_ray_worker_that_imports_only_verl_runs_gipo(ray_session):
    @ray_session.remote(num_cpus=1)
    def worker_loss() -> tuple[str, float]:
        import torch
        from verl.trainer.ppo.core_algos import get_policy_loss_fn
        from verl.workers.config import ActorConfig, PolicyLossConfig

        config = ActorConfig(
            strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=PolicyLossConfig(loss_mode="gipo")
        )
        fn = get_policy_loss_fn(config.policy_loss.loss_mode)
        log_prob = torch.full((2, 3), -1.0, requires_grad=True)
        loss, metrics = fn(
            old_log_prob=torch.full((2, 3), -1.0),
            log_prob=log_prob,
            advantages=torch.ones(2, 3),
            response_mask=torch.ones(2, 3, dtype=torch.bool),
            loss_agg_mode="token-mean",
            config=config,
            rollout_is_weights=None,
        )
        return fn.__module__, loss.item(), metrics["actor/gipo/trust_weight_mean"]

    module, loss, trust_weight = ray_session.get(worker_loss.remote(), timeout=120)
    assert module == "gipo_plugins.verl.loss"
    assert loss == pytest.approx(-1.0) and trust_weight == pytest.approx(1.0)  # r = 1, A = 1: term -1, w = 1
