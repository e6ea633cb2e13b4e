"""One Ray session for all RLlib integration tests (Ray's start-up costs seconds); helpers in rllib_helpers.py."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

pytest.importorskip("ray.rllib")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Own temp dir (never another Ray's); 4 logical CPUs on a 2-core box: num_learners=2 + 1 remote env runner
    # needs three 1-CPU bundles, two remote runners + the driver's learner three.
    temp_dir = tempfile.mkdtemp(prefix="rllibt", dir="/tmp")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        object_store_memory=300 * 1024**2,
        log_to_driver=False,
        _temp_dir=temp_dir,
    )
    # after init: a registration flushed into an earlier cluster (another test's) does not carry over
    from gipo_plugins.rllib import register, register_metaworld_envs

    register()
    register_metaworld_envs(["reach-v3"])
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
