"""The GIPO learners add no device→host syncs over stock PPO / APPO (counted on the CPU: the ops are CUDA's too)."""

from __future__ import annotations

import pytest
import torch
from host_syncs import HostSyncCounter
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from rllib_helpers import appo_batch, built_learner, copy_weights, ppo_batch

from gipo_plugins.rllib import AGIPOConfig, GIPOConfig


class SyncCounter(HostSyncCounter):
    """`HostSyncCounter` plus boolean-mask indexing (`x[mask]`: its output shape needs the mask on the host)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("index", "index_put", "index_put_") and len(args) > 1:
            indices = args[1] if isinstance(args[1], list | tuple) else [args[1]]
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                self.ops.append(f"{name}[bool]")
        return super().__torch_dispatch__(func, types, args, kwargs)


def _count(config, learner, batch) -> SyncCounter:
    fwd = learner.module[DEFAULT_MODULE_ID].forward_train(batch)
    module_config = config.get_config_for_module(DEFAULT_MODULE_ID)
    with SyncCounter() as counter:
        learner.compute_loss_for_module(module_id=DEFAULT_MODULE_ID, config=module_config, batch=batch, fwd_out=fwd)
    return counter


@pytest.mark.parametrize("objective", ["gipo", "ppo_clip", "sapo"])
def test_gipo_learner_syncs_no_more_than_ppo(objective):
    with (
        built_learner(GIPOConfig().training(objective=objective)) as (gipo_config, gipo),
        built_learner(PPOConfig()) as (ppo_config, ppo),
    ):
        copy_weights(gipo, ppo)
        batch = ppo_batch(gipo)
        _count(gipo_config, gipo, batch)  # first call builds the objective (config checks: host values only)
        gipo_count, ppo_count = _count(gipo_config, gipo, batch), _count(ppo_config, ppo, batch)
        assert ppo_count.count > 0  # the counter sees PPO's boolean-mask means
        assert gipo_count.count <= ppo_count.count, (gipo_count.ops, ppo_count.ops)
        assert "index[bool]" not in gipo_count.ops  # masked means without boolean indexing
        # what is left is torch's categorical KL (`t[p == 0] = 0`), shared with PPO
        assert gipo_count.ops == ["index_put_[bool]"] * 2, gipo_count.ops


@pytest.mark.parametrize("objective", ["gipo", "ppo_clip"])
def test_agipo_learner_syncs_no_more_than_appo(objective):
    with (
        built_learner(AGIPOConfig().training(objective=objective)) as (agipo_config, agipo),
        built_learner(APPOConfig()) as (appo_config, appo),
    ):
        copy_weights(agipo, appo)
        batch = appo_batch(agipo)
        _count(agipo_config, agipo, batch)
        agipo_count, appo_count = _count(agipo_config, agipo, batch), _count(appo_config, appo, batch)
        assert agipo_count.count <= appo_count.count, (agipo_count.ops, appo_count.ops)
