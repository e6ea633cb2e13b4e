"""The tiny OpenVLA, its action tokenizer, Meta-World from pixels and GIPO post-training through TRL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from gipo_plugins import PUBLISHED_KL_COEFF, gipo_objective
from gipo_plugins.metaworld import episode_success
from gipo_plugins.metaworld.pixels import STATE_DIM, MetaWorldImageEnv, collect_demonstrations
from gipo_plugins.vla.actions import ActionTokenizer, compute_statistics, normalize, unnormalize
from gipo_plugins.vla.policy import VLAPolicy, VLAProcessor, action_log_probs, check_policy, decode_actions
from gipo_plugins.vla.tiny_openvla import TinyOpenVLAConfig, TinyOpenVLAForActionPrediction, TinyOpenVLAProcessor
from gipo_plugins.vla.trainer import VLAGIPOConfig, VLAGIPOTrainer, goal_dataset, step_advantages


def load(path):
    return AutoModelForCausalLM.from_pretrained(path), TinyOpenVLAProcessor.from_pretrained(path)


def sample_inputs(processor, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, processor.image_size, processor.image_size, 3), dtype=np.uint8)
    states = np.array(next(iter(processor.norm_stats.values()))["state"]["q01"]) + rng.uniform(0, 0.01, (batch, 6))
    return processor(images, "reach the goal", states)


# ---------------------------------------------------------------- model, processor, action tokenizer


def test_save_load_round_trip_gives_identical_logits_through_the_auto_classes(tiny_vla, tmp_path):
    model, processor = load(tiny_vla)
    assert isinstance(model, TinyOpenVLAForActionPrediction)
    assert isinstance(model, VLAPolicy) and isinstance(processor, VLAProcessor) and processor.state_dim == STATE_DIM
    assert isinstance(AutoConfig.from_pretrained(tiny_vla), TinyOpenVLAConfig)
    inputs = sample_inputs(processor)
    model.eval()
    logits = model(**inputs).logits
    assert logits.shape == (*inputs["input_ids"].shape, len(processor.tokenizer))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor2 = load(tmp_path)
    torch.testing.assert_close(again.eval()(**processor2(*_raw(inputs, processor))).logits, logits, rtol=0, atol=0)


def _raw(inputs, processor):
    """Undo the processor's image scaling (round trip through uint8) to feed the reloaded processor."""
    images = ((inputs["pixel_values"] * 0.5 + 0.5) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    rows = [processor.tokenizer.decode(r[r != processor.tokenizer.pad_token_id]) for r in inputs["input_ids"]]
    assert all("What action should the robot take to reach the goal?" in r for r in rows)
    stats = next(iter(processor.norm_stats.values()))["state"]
    ids = inputs["input_ids"][:, 1 : 1 + STATE_DIM]
    return images, "reach the goal", unnormalize(processor.action_tokenizer.decode(ids), stats, name="states")


def test_left_padded_rows_get_the_same_logits_as_unpadded_ones(tiny_vla):
    model, processor = load(tiny_vla)
    model.eval()
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    padded = processor(images, ["reach the goal", "push the puck to the goal"])
    pad = int((padded["attention_mask"][0] == 0).sum())
    assert pad > 0
    alone = processor(images[:1], "reach the goal")
    torch.testing.assert_close(model(**padded).logits[0, pad:], model(**alone).logits[0], atol=1e-5, rtol=1e-5)


def test_action_tokenizer_round_trip_within_half_a_bin_on_the_last_256_ids():
    tokenizer = ActionTokenizer(vocab_size=600)
    actions = torch.cat([torch.linspace(-1, 1, 2001), torch.tensor([-1.0, 1.0, 0.0])])
    ids = tokenizer.encode(actions)
    assert ids.min() >= 600 - 256 and ids.max() <= 599
    assert (tokenizer.decode(ids) - actions).abs().max() <= 1 / 255 + 1e-6
    assert tokenizer.decode(torch.tensor([0, 5])).tolist() == pytest.approx([tokenizer.centers[-1].item()] * 2)


def test_statistics_normalise_and_unnormalise_as_openvla():
    rng = np.random.default_rng(0)
    actions = rng.uniform([-0.5, 0, -2, -1], [0.5, 3, 2, 1], (500, 4))
    stats = compute_statistics(actions)
    inside = np.clip(actions, stats["q01"], stats["q99"])
    normalized = normalize(inside, stats)
    assert normalized.abs().max() <= 1 + 1e-6
    np.testing.assert_allclose(unnormalize(normalized, stats).numpy(), inside, atol=1e-5)


def test_bad_inputs_raise_clear_errors(tiny_vla):
    model, processor = load(tiny_vla)
    stats = model.get_action_stats()
    with pytest.raises(ValueError, match="outside the statistics"):
        normalize(np.array([[100.0, 0, 0, 0]]), stats)
    with pytest.raises(ValueError, match="NaN"):
        normalize(np.array([[np.nan, 0, 0, 0]]), stats)
    with pytest.raises(ValueError, match="4 dimensions"):
        normalize(np.zeros((1, 3)), stats)
    with pytest.raises(ValueError, match="q01"):
        normalize(np.zeros((1, 4)), {})
    with pytest.raises(ValueError, match="unnorm_key"):
        model.get_action_stats("no-such-dataset")
    with pytest.raises(ValueError, match=r"missing .*action_logits"):
        check_policy(torch.nn.Linear(1, 1), processor)
    with pytest.raises(ValueError, match="images must be"):
        processor(np.zeros((1, 32, 32, 3), dtype=np.uint8), "reach the goal")
    inputs = sample_inputs(processor, batch=1)
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(inputs["input_ids"], inputs["attention_mask"], torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="normalised"):
        ActionTokenizer(600).encode(torch.tensor([1.5]))


def test_predict_action_returns_unnormalised_actions_inside_the_statistics(tiny_vla):
    model, processor = load(tiny_vla)
    inputs = sample_inputs(processor, batch=2)
    actions = model.predict_action(inputs)
    stats = model.get_action_stats()
    assert actions.shape == (2, 4)
    assert (actions >= np.array(stats["q01"]) - 1e-5).all() and (actions <= np.array(stats["q99"]) + 1e-5).all()
    # greedy from the prompt as it is: the tiny model has no "▁" to append (it trains on "...Out:" + action tokens)
    greedy, x, mask = [], inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        for _ in range(4):
            token = model(x, mask, inputs["pixel_values"]).logits[:, -1].argmax(-1)
            greedy.append(token)
            x, mask = torch.cat([x, token[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    np.testing.assert_array_equal(actions, decode_actions(model, torch.stack(greedy, 1)))


# ---------------------------------------------------------------- rendering and the environment


def test_expert_image_episode_is_solved_at_its_last_step_with_documented_observations():
    env = MetaWorldImageEnv("reach-v3", seed=0, image_size=64, max_episode_steps=80)
    obs = env.reset(3)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8 and obs["image"].std() > 5
    assert obs["state"].shape == (STATE_DIM,) and obs["state"].dtype == np.float32
    expert, done, step_success = env.expert(), False, []
    while not done:
        obs, _, success, done = env.step(expert())
        step_success.append(success)
    env.close()
    assert len(step_success) == 80 and episode_success(step_success) == 1.0
    assert not step_success[0]  # the convention is the last step, not "touched the goal once"


def test_demonstrations_stack_per_step_arrays():
    demos = collect_demonstrations("reach-v3", 2, max_episode_steps=15)
    assert demos["images"].shape == (30, 64, 64, 3) and demos["actions"].shape == (30, 4)
    assert demos["episode"].tolist() == [0] * 15 + [1] * 15
    assert demos["success"].shape == (2,)


def test_pixel_env_uses_the_shared_task_validator_and_lazy_package_names():
    import gipo_plugins.metaworld as metaworld

    assert metaworld.MetaWorldImageEnv is MetaWorldImageEnv
    with pytest.raises(ValueError, match="unknown Meta-World task 'reach-v9'"):
        MetaWorldImageEnv("reach-v9")
    with pytest.raises(AttributeError):
        _ = metaworld.NoSuchThing


# ---------------------------------------------------------------- GIPO post-training through TRL


def test_step_advantages_use_a_per_time_step_group_baseline():
    rewards = np.array([[1.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]])
    adv = step_advantages(rewards, group_size=2, discount=1.0)
    np.testing.assert_allclose(adv.reshape(2, 2, 2).mean(1), 0, atol=1e-9)
    assert adv[0, 0] > 0 > adv[1, 0] and np.allclose(adv[2:], 0)
    with pytest.raises(ValueError, match="groups"):
        step_advantages(rewards[:3], 2, 1.0)


def vla_trainer(path, tmp_path, **overrides):
    model, processor = load(path)
    settings = dict(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=2, max_steps=3,
        learning_rate=1e-3, bf16=False, report_to="none", logging_steps=1, num_iterations=2,
        episode_horizon=6, max_completion_length=4, save_strategy="no", seed=0,
    )  # fmt: skip
    settings.update(overrides)
    return VLAGIPOTrainer(model, processor, VLAGIPOConfig(**settings), goal_dataset(list(range(8))))


@pytest.mark.parametrize("loss_type", ["gipo", "dapo"])
def test_a_few_post_training_steps_log_metrics_and_change_the_policy(tiny_vla, tmp_path, loss_type):
    trainer = vla_trainer(tiny_vla, tmp_path, loss_type=loss_type)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(math.isfinite(h["loss"]) for h in logs)
    assert all(0.0 <= h["env/success_rate"] <= 1.0 for h in logs if "env/success_rate" in h)
    if loss_type == "gipo":
        assert all(k in logs[0] for k in ("gipo/trust_weight_mean", "gipo/dead_fraction", "gipo/ess"))
        # behaviour log-probs stored while acting equal the trainer's recomputation on the first pass
        assert logs[0]["gipo/log_ratio_abs_mean"] < 1e-4
        assert logs[1]["gipo/log_ratio_abs_mean"] > 1e-4  # second pass over the same episodes: stale
        assert logs[0]["gipo/behaviour_kl"] < 1e-6 < logs[1]["gipo/behaviour_kl"]  # the shipped anchor, exact KL
    else:
        assert "clip_ratio/region_mean" in logs[1]  # the clipped loss's dead fraction
        assert not any("gipo/behaviour_kl" in h for h in logs)  # dapo as shipped: TRL's loss, no anchor
    assert logs[0]["stale/log_ratio_abs_p95"] < 1e-4 < logs[1]["stale/log_ratio_abs_p95"]  # every loss type
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    assert "lm_head.weight" in changed and any(n.startswith("model.projector") for n in changed)
    assert any(n.startswith("model.vision_backbone") for n in changed)


def test_config_rejects_bad_episode_settings(tmp_path):
    with pytest.raises(ValueError, match="episode_horizon"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, episode_horizon=0, bf16=False)
    with pytest.raises(ValueError, match="discount"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, discount=1.5, bf16=False)
    with pytest.raises(ValueError, match="beta"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, beta=0.1, bf16=False)
    with pytest.raises(ValueError, match="gipo_fused_loss"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, gipo_fused_loss=True, bf16=False)
    with pytest.raises(ValueError, match="unknown Meta-World task"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, task="reach", bf16=False)
    with pytest.raises(ValueError, match="gipo_behaviour_kl_coeff must be None or a finite number >= 0"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, gipo_behaviour_kl_coeff=-0.1, bf16=False)
    with pytest.raises(ValueError, match="gipo_behaviour_kl_coeff"):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, loss_type="dapo", gipo_behaviour_kl_coeff=float("nan"),
                      bf16=False)  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"replay_episodes": -1}, "replay_episodes must be >= 0"),
        ({"fresh_episodes": 2}, "fresh_episodes=2 is only read with replay_episodes > 0"),
        ({"replay_episodes": 8}, "fresh_episodes must be a multiple of num_generations"),
        ({"replay_episodes": 8, "fresh_episodes": 3}, "fresh_episodes must be a multiple of num_generations"),
        ({"replay_episodes": 8, "fresh_episodes": 4}, "fresh_episodes must be a multiple of num_generations"),
        ({"replay_episodes": 1, "fresh_episodes": 2}, r"replay_episodes \(1\) must hold the 2 replayed episodes"),
    ],
)
def test_config_rejects_bad_replay_settings(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=4,
                      num_generations=2, **overrides)  # fmt: skip


def test_replayed_episodes_carry_what_was_stored_when_they_were_acted(tiny_vla, tmp_path):
    trainer = vla_trainer(tiny_vla, tmp_path, replay_episodes=4, fresh_episodes=2)
    rows = [{"goal_index": g} for g in (0, 0, 1, 1)]
    trainer.model.train()  # metrics of the train mode, as in TRL's loop
    torch.manual_seed(0)
    first = trainer._generate_and_score_completions(rows)  # the FIFO is empty: the whole batch is acted
    with torch.no_grad():  # the policy moves between generations
        for name, param in trainer.policy.named_parameters():
            if name.startswith("lm_head"):
                param.add_(0.3 * torch.randn_like(param))
    second = trainer._generate_and_score_completions(rows)
    steps = 6
    keys = ("completion_ids", "old_per_token_logps", "behaviour_log_softmax", "advantages", "pixel_values")
    for batch in (first, second):
        assert all(batch[key].shape[0] == 4 * steps for key in keys)  # a constant batch of 4 episodes
    episode = {key: lambda batch, i, key=key: batch[key][i * steps : (i + 1) * steps] for key in keys}
    for i in (2, 3):  # the replayed episodes: each is one of the first generation's, exactly as stored then
        matches = [j for j in range(4) if torch.equal(episode["completion_ids"](second, i),
                                                      episode["completion_ids"](first, j))]  # fmt: skip
        assert len(matches) == 1
        for key in keys:
            assert torch.equal(episode[key](second, i), episode[key](first, matches[0])), key
    # never re-scored: the moved policy's log-probs of a replayed episode differ from the stored ones
    input_ids = torch.cat([second["prompt_ids"], second["completion_ids"]], 1)
    attention = torch.cat([second["prompt_mask"], second["completion_mask"]], 1)
    with torch.no_grad():
        now = action_log_probs(trainer.policy, input_ids, attention, second["pixel_values"], 4)[0]
    replayed = slice(2 * steps, 4 * steps)
    assert (now[replayed] - second["old_per_token_logps"][replayed]).abs().max() > 1e-3
    assert trainer._metrics["train"]["replay/age_mean"] == [0.0, 0.5]  # fresh episodes age 0, replayed 1
    assert len(trainer._replay) == 4 and trainer._replay[-1]["generation"] == 1  # the FIFO keeps the newest
    assert all(not value.is_cuda for ep in trainer._replay for value in ep.values() if torch.is_tensor(value))
    assert trainer.episodes_acted == 4 + 2  # the first generation acted its whole batch, the second its fresh half
    stored = list(trainer._replay)
    trainer.model.eval()  # evaluation acts its whole batch and neither replays nor stores
    trainer._generate_and_score_completions(rows)
    assert list(trainer._replay) == stored and trainer.episodes_acted == 6
    assert trainer._metrics["eval"]["replay/age_mean"] == [0.0]  # every episode of the batch acted now


def test_post_training_with_replay_is_stale_in_a_single_pass(tiny_vla, tmp_path):
    trainer = vla_trainer(tiny_vla, tmp_path, num_iterations=1, replay_episodes=4, fresh_episodes=2)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(math.isfinite(h["loss"]) for h in logs)
    assert logs[0]["replay/age_mean"] == 0.0 and logs[2]["replay/age_mean"] > 0.0
    assert logs[0]["stale/log_ratio_abs_p95"] < 1e-4  # the first generation is fresh, and used once
    assert logs[2]["stale/log_ratio_abs_p95"] > 1e-4  # episodes acted by an earlier policy, one pass


@pytest.mark.parametrize(
    ("overrides", "beta"),
    [
        ({}, PUBLISHED_KL_COEFF),  # GIPO as shipped is the published method
        ({"loss_type": "dapo"}, 0.0),  # TRL's dapo as shipped: no anchor
        ({"loss_type": "dapo", "gipo_behaviour_kl_coeff": 0.1}, 0.1),  # an A/B with the anchor in both arms
        ({"gipo_behaviour_kl_coeff": 0.0}, 0.0),
    ],
)
def test_shipped_anchor_defaults_keep_beta_zero(tmp_path, overrides, beta):
    config = VLAGIPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **overrides)
    assert config.anchor_coeff == beta and config.beta == 0.0  # the anchor is not TRL's reference-model beta


def test_anchor_is_the_exact_kl_to_the_categorical_stored_when_acting(tiny_vla, tmp_path):
    trainer = vla_trainer(tiny_vla, tmp_path)
    assert trainer.anchor_coeff == PUBLISHED_KL_COEFF
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions([{"goal_index": g} for g in (0, 0, 1, 1)])
    stored, completion = batch["behaviour_log_softmax"], batch["completion_ids"]
    assert stored.shape == (4 * 6, 4, 256) and stored.dtype == torch.float32
    policy = trainer.policy
    input_ids = torch.cat([batch["prompt_ids"], completion], 1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)

    def categorical():
        return action_log_probs(policy, input_ids, attention, batch["pixel_values"], 4, return_log_softmax=True)[2]

    with torch.no_grad():
        torch.testing.assert_close(categorical(), stored, atol=1e-4, rtol=1e-4)  # the acting policy's, whole
        bins = int(policy.action_token_ids[0]) - completion
        torch.testing.assert_close(stored.gather(-1, bins[..., None])[..., 0], batch["old_per_token_logps"])
        for name, param in policy.named_parameters():  # the policy moves after acting
            if name.startswith("lm_head"):
                param.add_(0.3 * torch.randn_like(param))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    anchored = trainer._compute_loss(trainer.model, batch).detach()
    trainer.anchor_coeff = 0.0
    plain = trainer._compute_loss(trainer.model, batch).detach()
    with torch.no_grad():
        current = categorical()
    behaviour = torch.distributions.Categorical(logits=stored)
    expected = torch.distributions.kl_divergence(behaviour, torch.distributions.Categorical(logits=current)).mean()
    assert expected > 1e-3  # the policy really moved: a KL to its own recomputation would be 0
    torch.testing.assert_close(anchored - plain, PUBLISHED_KL_COEFF * expected, rtol=1e-4, atol=1e-7)
    trainer._flush_gipo_metrics("train")
    assert trainer._metrics["train"]["gipo/behaviour_kl"] == [pytest.approx(float(expected), rel=1e-4)]
    # the anchor at 0: GIPO's loss as before, the core's term with TRL's dapo aggregation (token sum / tokens)
    log_probs = current.gather(-1, bins[..., None])[..., 0]
    core = gipo_objective(log_probs, batch["old_per_token_logps"], batch["advantages"][:, None],
                          batch["completion_mask"], reduction="sum")  # fmt: skip
    torch.testing.assert_close(plain, core.loss / batch["num_items_in_batch"], rtol=1e-5, atol=1e-7)


def test_gipo_and_dapo_take_the_same_gradient_on_the_pass_that_acted(tiny_vla, tmp_path):
    """The A/B's arms differ only where the data are reused: at r = 1, w = 1 and no token is clipped."""
    gipo, dapo = (vla_trainer(tiny_vla, tmp_path / loss, loss_type=loss, gipo_behaviour_kl_coeff=0.0)
                  for loss in ("gipo", "dapo"))  # fmt: skip
    torch.manual_seed(0)
    batch = gipo._generate_and_score_completions([{"goal_index": g} for g in (0, 0, 1, 1)])
    assert batch["advantages"].abs().min() > 0  # every token is pushed, one way or the other
    grads = []
    for trainer in (gipo, dapo):
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
        trainer._compute_loss(trainer.model, batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    assert grads[0].norm() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)


@pytest.mark.gpu
def test_post_training_on_cuda_in_bf16(tiny_vla, tmp_path):
    trainer = vla_trainer(tiny_vla, tmp_path, use_cpu=False, bf16=True, max_steps=2)
    trainer.train()
    assert next(trainer.model.parameters()).is_cuda
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_example_post_trains_from_a_checkpoint_and_writes_its_curve(tiny_vla, tmp_path, monkeypatch):
    import json
    import sys

    from examples import vla_metaworld

    argv = ["vla_metaworld.py", "--checkpoint", tiny_vla, "--max-steps", "2", "--episodes-per-step", "4",
            "--num-generations", "2", "--horizon", "5", "--eval-goals", "2", "--eval-horizon", "10",
            "--eval-every", "1", "--logdir", str(tmp_path), "--run-name", "run"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    vla_metaworld.main()
    summary = json.loads((tmp_path / "run.json").read_text())
    assert [c["step"] for c in summary["curve"]] == [0, 1, 2]
    assert [c["episodes"] for c in summary["curve"]] == [0, 4, 4]  # num_iterations=2: one batch per 2 steps
    assert all(0.0 <= c["eval_success_rate"] <= 1.0 for c in summary["curve"])
    stale = summary["train_metrics"]["stale/log_ratio_abs_p95"]  # what the A/B benchmark reads
    assert len(stale) == 2 and stale[0] < 1e-4 < stale[1]
    assert (tmp_path / "run" / "config.json").exists()
    # replaying: the first generation acts its 4 episodes, each later one its 2 fresh, the rest from the FIFO
    replay = ["--num-iterations", "1", "--replay-episodes", "4", "--fresh-episodes", "2", "--run-name", "replay"]
    monkeypatch.setattr(sys, "argv", argv + replay)
    vla_metaworld.main()
    replayed = json.loads((tmp_path / "replay.json").read_text())
    assert [c["episodes"] for c in replayed["curve"]] == [0, 4, 6]
