"""Small actors, critics and batches for the TorchRL adapter tests (no environment needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("torchrl")

import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import IndependentNormal, ProbabilisticActor, ValueOperator

OBS, ACT, BATCH = 5, 3, 32


def make_actor(seed: int = 0) -> ProbabilisticActor:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * ACT), NormalParamExtractor())
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module, in_keys=["loc", "scale"], distribution_class=IndependentNormal, return_log_prob=True
    )


def make_critic(seed: int = 1) -> ValueOperator:
    torch.manual_seed(seed)
    return ValueOperator(nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 1)), in_keys=["observation"])


def make_batch(actor: ProbabilisticActor, log_prob_key: str, *, seed: int = 2, time: int | None = None) -> TensorDict:
    """A rollout-shaped batch: actions and their log-probs come from `actor` (the behaviour policy)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (BATCH,) if time is None else (BATCH // time, time)
    td = TensorDict(
        {
            "observation": torch.randn(*shape, OBS, generator=gen),
            ("next", "observation"): torch.randn(*shape, OBS, generator=gen),
            ("next", "reward"): torch.randn(*shape, 1, generator=gen),
            ("next", "done"): torch.zeros(*shape, 1, dtype=torch.bool),
            ("next", "terminated"): torch.zeros(*shape, 1, dtype=torch.bool),
        },
        batch_size=shape,
    )
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(seed)
        actor(td)
    td.set("advantage", torch.randn(*shape, 1, generator=gen))
    td.set("value_target", torch.randn(*shape, 1, generator=gen))
    td.exclude("loc", "scale", inplace=True)
    assert log_prob_key in td.keys(True, True), td
    return td
