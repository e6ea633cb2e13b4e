"""Device→host reads per loss call: `gipo` makes one (its metrics, in one transfer), verl's `vanilla` three."""

from __future__ import annotations

import torch
from host_syncs import HostSyncCounter
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl_helpers import actor_config, batch, run_loss


class HostReadCounter(HostSyncCounter):
    """`HostSyncCounter` plus `Tensor.tolist()` (a device→host copy that dispatches no op on the CPU)."""

    def __enter__(self):
        self._tolist = torch.Tensor.tolist
        counter = self

        def tolist(tensor):
            counter.ops.append("tolist")
            return counter._tolist(tensor)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)


def _reads(loss_mode: str, weights: bool) -> HostReadCounter:
    data = batch(seed=0)
    config = actor_config()
    config.global_batch_info.update({"dp_size": 1, "batch_num_tokens": 30, "global_batch_size": 6})
    run_loss(get_policy_loss_fn(loss_mode), data, config, "token-mean", weights)  # warm-up: first-call caches
    with HostReadCounter() as counter:
        run_loss(get_policy_loss_fn(loss_mode), data, config, "token-mean", weights)
    return counter


def test_gipo_reads_the_host_no_more_than_vanilla():
    for weights in (False, True):
        gipo, vanilla = _reads("gipo", weights), _reads("vanilla", weights)
        assert gipo.ops == ["tolist"], gipo.ops
        assert vanilla.count == 3, vanilla.ops
        assert gipo.count <= vanilla.count
