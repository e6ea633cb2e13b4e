"""Learners built from configs (no Ray cluster), fixed PPO/APPO batches, loss and gradient helpers."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from functools import partial

import gymnasium as gym
import torch
from ray import cloudpickle
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO

BATCH = 64
FRAGMENT = 8  # APPO batches: BATCH // FRAGMENT rows of FRAGMENT time steps


@contextmanager
def built_learner(config):
    """`(config, learner)` for CartPole, built locally; APPO learners' threads are stopped afterwards."""
    config = config.environment("CartPole-v1").env_runners(rollout_fragment_length=FRAGMENT).debugging(seed=0)
    learner = config.build_learner(env=gym.make("CartPole-v1"))
    try:
        yield config, learner
    finally:
        learner.shutdown()


def module(learner):
    return learner.module[DEFAULT_MODULE_ID].unwrapped()


def copy_weights(source, target) -> None:
    module(target).load_state_dict(module(source).state_dict())


def perturb_target_network(learner, scale: float = 0.3, seed: int = 1) -> None:
    """Move APPO's target network away from the current one (so π_old ≠ π)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, target in module(learner).get_target_network_pairs():
            for p in target.parameters():
                p.add_(scale * torch.randn(p.shape, generator=gen))


def ppo_batch(learner, seed: int = 0, shift: float = 0.5) -> dict:
    """A PPO train batch whose behaviour logits are the current ones plus `shift`-sized noise."""
    gen = torch.Generator().manual_seed(seed)
    batch = {Columns.OBS: torch.randn(BATCH, 4, generator=gen)}
    with torch.no_grad():
        logits = module(learner).forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    behaviour_logits = logits + shift * torch.randn(BATCH, 2, generator=gen)
    dist = torch.distributions.Categorical(logits=behaviour_logits)
    actions = torch.multinomial(dist.probs, 1, generator=gen).squeeze(-1)
    return batch | {
        Columns.ACTIONS: actions,
        Columns.ACTION_LOGP: dist.log_prob(actions),
        Columns.ACTION_DIST_INPUTS: behaviour_logits,
        Postprocessing.ADVANTAGES: torch.randn(BATCH, generator=gen),
        Postprocessing.VALUE_TARGETS: torch.randn(BATCH, generator=gen),
        Columns.LOSS_MASK: torch.rand(BATCH, generator=gen) > 0.25,
    }


def appo_batch(learner, seed: int = 0, shift: float = 0.5) -> dict:
    """An APPO train batch (rows of `FRAGMENT` steps) with stale behaviour log-probs, the behaviour logits they
    came from (env runners store them, `Columns.ACTION_DIST_INPUTS`) and weight numbers."""
    batch = ppo_batch(learner, seed, shift)
    gen = torch.Generator().manual_seed(seed + 1)
    for key in (Postprocessing.ADVANTAGES, Postprocessing.VALUE_TARGETS):
        del batch[key]
    return batch | {
        Columns.REWARDS: torch.randn(BATCH, generator=gen),
        Columns.TERMINATEDS: torch.rand(BATCH, generator=gen) > 0.9,
        WEIGHTS_SEQ_NO: torch.randint(0, 4, (BATCH,), generator=gen),
    }


def loss_of(config, learner, batch):
    fwd = learner.module[DEFAULT_MODULE_ID].forward_train(batch)
    module_config = config.get_config_for_module(DEFAULT_MODULE_ID)
    return learner.compute_loss_for_module(module_id=DEFAULT_MODULE_ID, config=module_config, batch=batch, fwd_out=fwd)


def grads_of(learner, loss) -> list[torch.Tensor | None]:
    params = [p for p in module(learner).parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, params, allow_unused=True))


def assert_same_grads(first, second, exact: bool = False) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        elif exact:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b)


def logged(learner, key: str) -> float:
    """The value `key` logged for the default module (GIPO learners log at the end of an update: flush)."""
    if hasattr(learner, "log_pending_stats"):
        learner.log_pending_stats()
    return float(torch.as_tensor(learner.metrics.peek((DEFAULT_MODULE_ID, key))).detach())


class FaultyCartPole(gym.Wrapper):
    """CartPole whose copy in env runner `fail_on_runner` raises at its `fail_at_step`-th step, once per test.

    `env_config["flag"]` is a file path: the env raises only while it does not exist (and creates it), so the
    restarted runner's env behaves.
    """

    def __init__(self, env_config):
        super().__init__(gym.make("CartPole-v1"))
        self.flag = env_config["flag"]
        self.armed = getattr(env_config, "worker_index", 0) == env_config.get("fail_on_runner", 1)
        self.fail_at_step = int(env_config.get("fail_at_step", 100))
        self.steps = 0

    def step(self, action):
        import os

        self.steps += 1
        if self.armed and self.steps >= self.fail_at_step and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            raise RuntimeError("FaultyCartPole: injected env failure")
        return super().step(action)


FAULTY_ENV = "gipo_test/faulty_cartpole"


def register_faulty_env() -> str:
    """Register `FaultyCartPole` with Tune."""
    from ray.tune.registry import register_env

    register_env(FAULTY_ENV, FaultyCartPole)
    return FAULTY_ENV


def on_learners(algo, fn, **kwargs) -> list:
    """`fn(learner, **kwargs)` on every learner, local or remote (APPO's default: one remote learner)."""
    fn = partial(fn, **kwargs)
    return [call.get() for call in algo.learner_group.foreach_learner(fn).result_or_errors]


def freeze(learner) -> None:
    """Stop APPO's learner thread (it keeps training on buffered batches): the learner is then what is saved."""
    if getattr(learner, "_learner_thread", None) is not None:
        learner.shutdown()


def loss_and_grads(learner, batch) -> dict:
    """The learner's loss, gradients and KL coefficient on `batch` (detached, to send back from a remote learner)."""
    loss = loss_of(learner.config, learner, batch)
    grads = grads_of(learner, loss)
    kl = learner.curr_kl_coeffs_per_module[DEFAULT_MODULE_ID].detach().clone()
    return {"loss": loss.detach(), "grads": [g.detach() for g in grads], "kl_coeff": kl, "sigma": learner.config.sigma}


# Ray workers cannot import tests/: send this module's functions and classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
