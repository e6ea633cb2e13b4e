"""The reference stale protocol on TorchRL components (`gipo_plugins.torchrl.recipe`)."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("metaworld")

from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from gipo_plugins.torchrl import GIPOLoss, make_metaworld_env
from gipo_plugins.torchrl.recipe import (
    RecipeConfig,
    actor_steps,
    make_actor_critic,
    make_loss,
    make_optimizer,
    make_replay,
    normalise_advantage,
    parser,
    reuse_step,
    train,
)

SMALL = {"hidden": 32, "action_bins": 16, "minibatch": 64, "steps_per_iteration": 100, "buffer_size": 300}


def _batch(actor, n=64, seed=0, collected_at=0):
    """Transitions as the recipe stores them: behaviour logits and log-probs from `actor`, GAE stand-ins."""
    gen = torch.Generator().manual_seed(seed)
    td = TensorDict({"observation": torch.randn(n, 39, generator=gen)}, batch_size=[n])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(seed)
        actor(td)
    td["advantage"] = torch.randn(n, 1, generator=gen)
    td["value_target"] = torch.randn(n, 1, generator=gen)
    td["collected_at"] = torch.full((n,), collected_at)
    return td


def _setup(**overrides):
    config = RecipeConfig(**(SMALL | overrides), progress=False)
    torch.manual_seed(0)
    actor, critic = make_actor_critic(bins=config.action_bins, hidden=config.hidden)
    loss = make_loss(config, actor, critic)
    optimizer, _ = make_optimizer(config, loss)
    for group in optimizer.param_groups:  # the scheduler starts at lr 0 (warm-up): use the peak lr here
        group["lr"] = group["initial_lr"]
    return config, actor, critic, loss, optimizer


def _perturb(module, scale=0.3, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def test_one_ratio_and_one_trust_weight_per_action_dimension():
    config, actor, _critic, loss, _ = _setup()
    td = _batch(actor)
    assert td["action"].shape == (64, 4) and td["action_log_prob"].shape == (64, 4)
    _perturb(actor)
    loss.reduction = "none"
    out = loss(td.clone())
    assert out["loss_objective"].shape[:2] == (64, 4)  # a term per (sample, dimension)
    with torch.no_grad():
        dist = actor.get_dist(td.clone())
        log_ratio = dist.log_prob(td["action"]) - td["action_log_prob"]  # [64, 4]
        kl = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=td["logits"]), dist)
    weight = torch.exp(-0.5 * log_ratio.square())  # sigma = 1
    expected = -log_ratio.exp() * td["advantage"] * weight + config.kl_coeff * kl
    torch.testing.assert_close(out["loss_objective"].reshape(64, 4), expected, rtol=1e-5, atol=1e-6)


def test_exact_kl_equals_torch_kl_divergence_of_the_stored_logits():
    _, actor, critic, loss, _ = _setup()
    td = _batch(actor)
    _perturb(actor)
    with torch.no_grad():
        current = actor.get_dist(td.clone())
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=td["logits"]), current)
    torch.testing.assert_close(loss(td.clone())["kl"], expected.mean())
    # The k3 estimate is a different number: "exact" is really the analytic KL.
    k3 = GIPOLoss(actor, critic, kl_coeff=0.1, kl_estimator="k3", normalize_advantage=False)(td.clone())["kl"]
    assert not torch.allclose(k3, expected.mean())


def test_exact_kl_without_stored_parameters_is_an_error_naming_them():
    _, actor, critic, _, _ = _setup()
    td = _batch(actor).exclude("logits")
    exact = GIPOLoss(actor, critic, kl_coeff=0.1, kl_estimator="exact")
    with pytest.raises(KeyError, match="logits"):
        exact(td)
    assert torch.isfinite(GIPOLoss(actor, critic, kl_coeff=0.1)(td)["kl"])  # "auto" falls back to k3


def test_replay_is_fifo_and_keeps_each_transition_age():
    config, actor, *_ = _setup(buffer_size=200)
    replay = make_replay(config)
    for iteration in range(3):
        replay.extend(_batch(actor, n=100, seed=iteration, collected_at=iteration))
    stored = replay[:]["collected_at"]
    assert len(replay) == 200 and set(stored.tolist()) == {1, 2}  # iteration 0 was overwritten first
    sample = replay.sample()
    assert len(sample) == 64 and len(set(sample["observation"][:, 0].tolist())) == 64  # distinct transitions
    small = make_replay(RecipeConfig(**(SMALL | {"buffer_size": 100}), progress=False))
    small.extend(_batch(actor, n=50))
    assert len(small.sample()) == 50  # at most the buffer's content, never a duplicate


def test_actor_steps_schedule():
    assert actor_steps(RecipeConfig(reuse=10, actor_every=10, progress=False)) == [True] + [False] * 9
    assert actor_steps(RecipeConfig(reuse=6, actor_every=3, progress=False)) == [True, False, False] * 2
    assert actor_steps(RecipeConfig(reuse=2, actor_every=1, progress=False)) == [True, True]


def test_critic_only_steps_leave_every_policy_parameter_bit_identical():
    config, actor, _critic, loss, optimizer = _setup()
    minibatch = _batch(actor)
    normalise_advantage(minibatch)
    reuse_step(config, loss, optimizer, minibatch, actor_step=True)  # optimizer state exists for all groups
    policy = {k: v.clone() for k, v in loss.actor_network_params.items(True, True)}
    value = {k: v.clone() for k, v in loss.critic_network_params.items(True, True)}
    for _ in range(3):
        assert reuse_step(config, loss, optimizer, minibatch, actor_step=False) is None
    for key, before in policy.items():
        assert torch.equal(loss.actor_network_params.get(key), before), key
    assert any(not torch.equal(loss.critic_network_params.get(k), v) for k, v in value.items())


def test_full_loss_variant_trains_identically():
    """The costlier straightforward variant (full loss on every reuse step) gives the same parameters."""
    runs = []
    for full in (False, True):
        config, actor, _critic, loss, optimizer = _setup(full_loss_every_step=full)
        minibatch = _batch(actor, seed=4)
        normalise_advantage(minibatch)
        for actor_step in [True, False, False, True, False]:
            reuse_step(config, loss, optimizer, minibatch, actor_step)
        runs.append(loss.state_dict())
    for key, value in runs[0].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(runs[1][key], value, rtol=0, atol=0, msg=key)


def _short_run(tmp_path, name):
    config = RecipeConfig(
        **(SMALL | {"buffer_size": 200}), total_steps=300, max_episode_steps=50, minibatches=2, reuse=4,
        actor_every=2, eval_every=1, eval_episodes=1, warmup_iterations=1, seed=5, logdir=str(tmp_path / name),
        progress=False,
    )  # fmt: skip
    summary = train(config)
    return summary["history"], torch.load(summary["checkpoint"], weights_only=False)["loss_module"]


def test_speed_paths_change_no_number(tmp_path, monkeypatch):
    """The recipe's fast paths against the plain construction: a fixed-seed run gives the same losses and parameters.

    Reference: PyTorch's and TorchRL's defaults: the actor built with `torch.distributions`' argument checks on
    (`validate_args=True`), AdamW's per-parameter loop instead of its fused kernel, and the collector tracking
    trajectory ids. Same seed, same data, same sampled actions, so the histories (losses, diagnostics,
    returns, evaluation) and every parameter of the final loss module must agree up to float rounding.
    """
    import functools

    from gipo_plugins.torchrl import recipe

    config, fast_actor, _critic, _loss, optimizer = _setup()
    assert fast_actor.get_dist(_batch(fast_actor))._validate_args is False  # the fast paths are the ones that run
    assert all(group["fused"] for group in optimizer.param_groups)
    assert recipe.make_collector(config, make_metaworld_env(), fast_actor).track_traj_ids is False
    fast_history, fast_state = _short_run(tmp_path, "fast")
    for name, plain in (("make_actor_critic", {"validate_args": True}), ("make_optimizer", {"fused": False}),
                        ("make_collector", {"track_traj_ids": True})):  # fmt: skip
        monkeypatch.setattr(recipe, name, functools.partial(getattr(recipe, name), **plain))
    plain_history, plain_state = _short_run(tmp_path, "plain")
    timing = {"collect_seconds", "update_seconds"}
    # fused AdamW sums in another order: fp32 rounding over a few steps (a changed update would differ by >> 1e-3)
    rel, atol = 2e-5, 1e-6
    assert len(fast_history) == len(plain_history) == 3
    for fast, plain in zip(fast_history, plain_history, strict=True):
        assert fast.keys() == plain.keys()
        for key in fast.keys() - timing:
            assert fast[key] == pytest.approx(plain[key], rel=rel, abs=atol), key
    assert fast_state.keys() == plain_state.keys()
    for key, value in plain_state.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(fast_state[key], value, rtol=rel, atol=atol, msg=key)
    assert plain_history[-1]["kl"] > 0  # the policy moved away from the behaviour policy: a run that trained


def test_command_line_lists_every_knob():
    text = parser().format_help()
    flags = ["--buffer-size", "--minibatches", "--reuse", "--actor-every", "--kl-coeff", "--policy-lr", "--value-lr"]
    flags += ["--reward-scale", "--objective", "--sigma-neg-ratio", "--full-loss-every-step"]
    for flag in flags:
        assert flag in text, flag
    with pytest.raises(ValueError, match="buffer_size"):
        RecipeConfig(buffer_size=100, steps_per_iteration=500)


def test_env_factory_bins_and_success():
    env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=20, action_bins=256)
    rollout = env.rollout(25, break_when_any_done=False)
    assert rollout["action"].dtype == torch.int64 and rollout["action"].shape == (25, 4)
    assert rollout["observation"].dtype == torch.float32 and rollout["next", "success"].shape == (25,)
    assert rollout["next", "done"].sum() == 1  # truncated at step 20, then reset
    assert rollout["observation"][0, 36:].abs().sum() > 0  # the goal is observed
    binning = env.transform[-1]
    td = TensorDict({"action": torch.tensor([0, 255, 128, 1])}, [])
    torch.testing.assert_close(binning.inv(td)["action"], -1 + 2 * torch.tensor([0, 255, 128, 1.0]) / 255)


def test_a_short_run_on_reach_logs_diagnostics_and_checkpoints(tmp_path):
    config = RecipeConfig(
        **(SMALL | {"buffer_size": 200}), total_steps=300, max_episode_steps=50, minibatches=2, reuse=2,
        actor_every=2, eval_every=1, eval_episodes=1, warmup_iterations=1, logdir=str(tmp_path), progress=False,
    )  # fmt: skip
    summary = train(config)
    assert summary["steps"] == 300 and len(summary["history"]) == 3
    for row in summary["history"][1:]:  # iteration 0 trains at lr 0 (warm-up)
        for key in ("loss_objective", "loss_critic", "kl", "dead_fraction", "ess", "log_ratio_abs_p95"):
            assert math.isfinite(row[key]), key
        assert 0.0 <= row["eval_success"] <= 1.0
    assert summary["history"][-1]["fraction_fresh"] == pytest.approx(1 / 2, abs=0.25)  # age split: 100 of 200
    assert json.loads((tmp_path / f"{config.name}.json").read_text())["steps"] == 300
    assert (tmp_path / config.name / "scalars" / "dead_fraction.csv").exists()
    state = torch.load(tmp_path / f"{config.name}.pt", weights_only=False)
    _, actor, critic, loss, _ = _setup(**{k: state["config"][k] for k in SMALL})
    loss.load_state_dict(state["loss_module"])  # objective and settings agree
    with pytest.raises(ValueError, match="objective"):
        _, actor, critic, _, _ = _setup()
        make_loss(RecipeConfig(**SMALL, objective="ppo_clip", progress=False), actor, critic).load_state_dict(
            state["loss_module"]
        )


def test_restore_continues_exactly(tmp_path):
    """Checkpoint (loss module, optimizer) → restore → the next steps' losses and gradients are bitwise equal."""

    def steps(loss, optimizer, minibatch, n):
        outs = []
        for actor_step in [True, False][:n]:
            out = reuse_step(loss_config, loss, optimizer, minibatch, actor_step)
            grads = [p.grad.clone() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            outs.append((None if out is None else out["loss_objective"].detach(), grads))
        return outs

    loss_config, actor, _, loss, optimizer = _setup(kl_coeff=0.1)
    minibatch = _batch(actor, seed=7)
    normalise_advantage(minibatch)
    steps(loss, optimizer, minibatch.clone(), 2)
    torch.save({"loss_module": loss.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "ckpt.pt")
    uninterrupted = steps(loss, optimizer, minibatch.clone(), 2)

    _, _, _, restored, restored_optimizer = _setup(kl_coeff=0.1)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    restored.load_state_dict(state["loss_module"])
    restored_optimizer.load_state_dict(state["optimizer"])
    for (loss_a, grads_a), (loss_b, grads_b) in zip(
        uninterrupted, steps(restored, restored_optimizer, minibatch.clone(), 2), strict=True
    ):
        assert (loss_a is None and loss_b is None) or torch.equal(loss_a, loss_b)
        assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))

    truncated = {k: v for k, v in state["loss_module"].items() if k != "kl_coeff"}
    with pytest.raises(RuntimeError, match="kl_coeff"):
        restored.load_state_dict(truncated)


def test_an_objective_the_user_registers_runs_in_the_recipe(tmp_path):
    """The recipe takes its objectives from the registry: a registered one is a `--objective` choice and trains."""
    from gipo_plugins import Hyperparameter, check_positive, register_objective, unregister_objective
    from gipo_plugins.kernels import MAX_LOG_GRAD_WEIGHT

    @register_objective("half_is", Hyperparameter("half_is_scale", 0.5, "share of the IS term", check_positive))
    def half_is(log_ratio, advantages, *, half_is_scale):
        """Plain importance sampling, scaled."""
        ratio = log_ratio.clamp(max=MAX_LOG_GRAD_WEIGHT).exp()
        return -half_is_scale * ratio * advantages, torch.full_like(ratio, half_is_scale).detach()

    try:
        assert "half_is" in parser().format_help()
        args = parser().parse_args(["--objective", "half_is", "--total-steps", "200", "--no-progress"])
        assert args.objective == "half_is"
        config = RecipeConfig(
            **(SMALL | {"buffer_size": 200}), objective="half_is", total_steps=200, max_episode_steps=50,
            minibatches=2, reuse=2, actor_every=2, eval_every=0, eval_episodes=1, logdir=str(tmp_path), progress=False,
        )  # fmt: skip
        summary = train(config)
        assert summary["steps"] == 200 and math.isfinite(summary["history"][-1]["loss_objective"])
        assert summary["history"][-1]["trust_weight_mean"] == pytest.approx(0.5)  # the toy's gate was used
    finally:
        unregister_objective("half_is")
    with pytest.raises(SystemExit):
        parser().parse_args(["--objective", "half_is"])  # unregistered again: not a choice
    with pytest.raises(ValueError, match="unknown objective 'half_is'"):
        RecipeConfig(objective="half_is")
