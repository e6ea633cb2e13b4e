"""One Ray session for all RLlib integration tests (Ray's start-up costs seconds)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("ray.rllib")


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # 4 logical CPUs on a 2-core box: num_learners=2 + 1 remote env runner needs three 1-CPU bundles.
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    # after init: a registration flushed into an earlier cluster (another test's) does not carry over
    from gipo_plugins.rllib import register_metaworld_envs

    register_metaworld_envs(["reach-v3"])
    yield ray
    ray.shutdown()
