"""GIPOLoss adds no device→host syncs over ClipPPOLoss (counted on the CPU: the ops are the same as on CUDA)."""

from __future__ import annotations

import pytest
from host_syncs import HostSyncCounter
from torchrl.objectives import ClipPPOLoss
from torchrl_helpers import make_actor, make_batch, make_critic

from gipo_plugins import check_mode
from gipo_plugins.torchrl import GIPOLoss


def _count(loss_module, td) -> HostSyncCounter:
    with HostSyncCounter() as counter:
        out = loss_module(td.clone())
        (out["loss_objective"] + out["loss_critic"]).backward()
    return counter


@pytest.mark.parametrize("kwargs", [{}, {"kl_coeff": 0.1}, {"objective": "ppo_clip"}, {"sigma_neg_ratio": 0.5}])
def test_forward_backward_adds_no_host_sync(kwargs):
    actor, critic = make_actor(), make_critic()
    stock = ClipPPOLoss(actor, critic)
    td = make_batch(make_actor(seed=3), stock.tensor_keys.sample_log_prob)
    baseline = _count(stock, td)
    gipo = _count(GIPOLoss(actor, critic, **kwargs), td)
    assert gipo.count <= baseline.count, (gipo.ops, baseline.ops)


def test_strict_mode_reads_the_checks_on_the_host():
    actor, critic = make_actor(), make_critic()
    td = make_batch(make_actor(seed=3), GIPOLoss(actor, critic).tensor_keys.sample_log_prob)
    with check_mode("strict"):
        strict = _count(GIPOLoss(actor, critic), td)
    assert strict.count > _count(GIPOLoss(actor, critic), td).count
