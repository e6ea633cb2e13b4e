"""Meta-World integration: a few iterations of the TorchRL example on reach-v3, and its checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("metaworld")

import torchrl_metaworld as example  # examples/torchrl_metaworld.py

from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.torchrl import GIPOLoss, make_metaworld_env

SMALL = [
    "--task", "reach-v3", "--total-frames", "1500", "--frames-per-batch", "500", "--max-episode-steps", "100",
    "--buffer-iterations", "2", "--updates-per-iteration", "4", "--minibatch", "128", "--eval-episodes", "1",
    "--no-progress",
]  # fmt: skip


def test_env_factory_reports_success_and_float32_observations():
    env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=20)
    rollout = env.rollout(25, break_when_any_done=False)
    assert rollout["observation"].dtype == torch.float32 and rollout["observation"].shape == (25, 39)
    assert rollout["next", "success"].shape == (25,)
    assert rollout["next", "done"].sum() == 1  # truncated at step 20, then reset
    goal = rollout["observation"][0, 36:]
    assert goal.abs().sum() > 0  # the goal is observed (the declared space wrongly pins it to 0)


def _run(tmp_path, *extra):
    return example.main([*SMALL, "--logdir", str(tmp_path), *extra])


def _check_run(summary):
    assert summary["frames"] == 1500 and len(summary["history"]) == 3
    for row in summary["history"]:
        for key in ("loss_objective", "loss_critic", *METRIC_KEYS):
            assert math.isfinite(row[key]), key
    assert 0.0 <= summary["eval_success_rate"] <= 1.0


@pytest.mark.parametrize("objective", ["gipo", "ppo_clip"])
def test_a_few_iterations_on_reach(tmp_path, objective):
    summary = _run(tmp_path, "--objective", objective)
    _check_run(summary)
    scalars = tmp_path / f"{objective}_seed0" / "scalars"
    assert (scalars / "dead_fraction.csv").exists() and (scalars / "episode_success.csv").exists()


def test_checkpoint_round_trip(tmp_path):
    summary = _run(tmp_path, "--kl-coeff", "0.1")
    state = torch.load(summary["checkpoint"], weights_only=False)
    env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=100)
    actor, critic = example.make_actor_critic(39, 4)
    restored = GIPOLoss(actor, critic, kl_coeff=0.0, entropy_bonus=False, normalize_advantage=True, critic_coeff=0.5)
    restored.make_value_estimator(gamma=0.5, lmbda=0.5)  # as the example does, before loading its state
    restored.load_state_dict(state["loss_module"])
    assert restored.value_estimator.gamma.item() == pytest.approx(0.99)
    assert restored.kl_coeff.item() == pytest.approx(0.1)
    optimizer = torch.optim.Adam(restored.parameters(), lr=3e-4)
    optimizer.load_state_dict(state["optimizer"])
    for key, value in restored.state_dict().items():
        torch.testing.assert_close(value, state["loss_module"][key], msg=key)
    # The restored module trains on: one more update on fresh data.
    with torch.no_grad():
        data = env.rollout(64, actor, break_when_any_done=False)
    losses = restored(data)
    (losses["loss_objective"] + losses["loss_critic"]).backward()
    optimizer.step()
    assert torch.isfinite(losses["loss_objective"]) and optimizer.state_dict()["state"][0]["step"] > 12


@pytest.mark.gpu
def test_a_few_iterations_on_reach_on_gpu(tmp_path):
    _check_run(_run(tmp_path, "--device", "cuda"))
