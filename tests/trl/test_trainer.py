"""GIPOTrainer: per-token loss from the core, stale-data training, checkpoints, config checks."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from trl_helpers import make_trainer

from gipo_plugins import PUBLISHED_KL_COEFF, gipo_objective
from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.trl import GIPOConfig

B, T = 4, 6


def _fixed_inputs(trainer, shift: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    vocab = trainer.model.config.vocab_size
    prompt_ids = torch.randint(4, vocab, (B, 3), generator=gen)
    completion_ids = torch.randint(4, vocab, (B, T), generator=gen)
    completion_mask = torch.ones(B, T, dtype=torch.long)
    completion_mask[0, 4:] = 0
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.0, -1.0, 0.5, 2.0]),
        "num_items_in_batch": completion_mask.sum(),
    }
    logps = _current_logps(trainer, inputs).detach()
    inputs["old_per_token_logps"] = logps - shift * torch.sign(inputs["advantages"])[:, None]
    return inputs


def _current_logps(trainer, inputs):
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention, T)
    return logps


def _prepare(trainer):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def test_per_token_loss_equals_core(tiny_lm, tmp_path):
    trainer = _prepare(
        make_trainer(tiny_lm, tmp_path, gipo_aggregation="bnpo", gipo_sigma=0.5, gipo_sigma_neg_ratio=0.5,
                     gipo_behaviour_kl_coeff=0.0)  # the policy term alone (the anchor's own tests are below)
    )  # fmt: skip
    inputs = _fixed_inputs(trainer, shift=0.7)
    loss = trainer._compute_loss(trainer.model, inputs)
    expected = gipo_objective(
        _current_logps(trainer, inputs),
        inputs["old_per_token_logps"],
        inputs["advantages"][:, None],
        inputs["completion_mask"],
        sigma=0.5,
        sigma_neg_ratio=0.5,
    )
    torch.testing.assert_close(loss, expected.loss)
    trainer._flush_gipo_metrics("train")  # metrics stay on the device until the logging step
    logged = trainer._metrics["train"]
    for key in METRIC_KEYS:
        assert logged[f"gipo/{key}"][-1] == pytest.approx(float(expected.metrics[key]), rel=1e-5, abs=1e-6), key
    assert logged["policy_loss"][-1] == pytest.approx(float(expected.loss.detach()), rel=1e-5)
    assert "gipo/behaviour_kl" not in logged  # anchor off: nothing computed, nothing logged


def _k3(trainer, inputs, differentiable=False):
    """The k3 formula e^l - 1 - l, l = log pi_theta - stored old log-prob, as a mean over the completion tokens."""
    log_ratio = _current_logps(trainer, inputs) - inputs["old_per_token_logps"]
    log_ratio = log_ratio if differentiable else log_ratio.detach()
    mask = inputs["completion_mask"].bool()
    return (log_ratio.exp() - 1 - log_ratio)[mask].mean()


@pytest.mark.parametrize(
    ("overrides", "beta"),
    [({}, PUBLISHED_KL_COEFF), ({"loss_type": "dapo", "gipo_behaviour_kl_coeff": 0.3}, 0.3)],
    ids=["gipo-default", "dapo-explicit"],
)
def test_anchor_adds_the_k3_kl_to_the_stored_old_log_probs_scaled_for_accumulation(tiny_lm, tmp_path, overrides, beta):
    trainer = _prepare(make_trainer(tiny_lm, tmp_path, **overrides))
    assert trainer.anchor_coeff == beta
    trainer.current_gradient_accumulation_steps = 2  # TRL scales each micro-batch's loss by 1 / accumulation steps
    inputs = _fixed_inputs(trainer, shift=0.7)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    anchored = trainer._compute_loss(trainer.model, inputs)
    anchored_grads = torch.autograd.grad(anchored, params, allow_unused=True)
    trainer.anchor_coeff = 0.0
    plain = trainer._compute_loss(trainer.model, inputs)
    plain_grads = torch.autograd.grad(plain, params, allow_unused=True)
    k3 = _k3(trainer, inputs)
    assert k3 > 0.05  # shift 0.7: far enough from the old policy to see the anchor
    torch.testing.assert_close(anchored.detach() - plain.detach(), beta * k3 / 2)
    expected = torch.autograd.grad(beta * _k3(trainer, inputs, differentiable=True) / 2, params, allow_unused=True)
    for a, b, want in zip(anchored_grads, plain_grads, expected, strict=True):
        if want is not None:
            torch.testing.assert_close(a - (0 if b is None else b), want, rtol=1e-4, atol=1e-6)
    trainer._flush_gipo_metrics("train")
    logged = trainer._metrics["train"]
    assert logged["gipo/behaviour_kl"] == [pytest.approx(float(k3), rel=1e-5)]  # logged once: the anchored call
    assert logged["policy_loss"][0] == pytest.approx(logged["policy_loss"][1], rel=1e-6)  # the policy term alone


def test_anchor_is_zero_without_stored_old_log_probs(tiny_lm, tmp_path):
    """On-policy (TRL stores no old log-probs): l = 0, the anchor adds exactly 0 and no gradient."""
    trainer = _prepare(make_trainer(tiny_lm, tmp_path, num_iterations=1))
    inputs = _fixed_inputs(trainer, shift=0.0)
    del inputs["old_per_token_logps"]
    anchored = trainer._compute_loss(trainer.model, inputs)
    trainer.anchor_coeff = 0.0
    plain = trainer._compute_loss(trainer.model, inputs)
    assert torch.equal(anchored, plain)
    trainer._flush_gipo_metrics("train")
    assert trainer._metrics["train"]["gipo/behaviour_kl"] == [0.0]


@pytest.mark.parametrize(
    ("overrides", "beta"),
    [
        ({}, PUBLISHED_KL_COEFF),  # GIPO as shipped is the published method
        ({"loss_type": "dapo"}, 0.0),  # TRL's own losses stay TRL's
        ({"loss_type": "grpo"}, 0.0),
        ({"loss_type": "sapo"}, 0.0),
        ({"gipo_objective": "ppo_clip"}, 0.0),  # another core objective: a baseline
        ({"loss_type": "dapo", "gipo_behaviour_kl_coeff": 0.1}, 0.1),  # an A/B gives both arms the same anchor
        ({"gipo_behaviour_kl_coeff": 0}, 0.0),
        ({"gipo_behaviour_kl_coeff": 1}, 1.0),
    ],
)
def test_shipped_anchor_defaults(tmp_path, overrides, beta):
    config = GIPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **overrides)
    assert config.anchor_coeff == beta and isinstance(config.anchor_coeff, float)
    assert GIPOConfig.__dataclass_fields__["gipo_behaviour_kl_coeff"].default is None


def _param_grad_norm(trainer, loss):
    grads = torch.autograd.grad(loss, [p for p in trainer.model.parameters() if p.requires_grad], allow_unused=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_gradient_survives_far_outside_grpo_clip_range(tiny_lm, tmp_path):
    gipo = _prepare(make_trainer(tiny_lm, tmp_path))
    grpo = _prepare(make_trainer(tiny_lm, tmp_path, loss_type="grpo"))
    inputs = _fixed_inputs(gipo, shift=1.5)  # r = e^1.5 with A > 0 and r = e^-1.5 with A < 0: all clipped by grpo
    assert _param_grad_norm(grpo, grpo._compute_loss(grpo.model, inputs)) == 0
    assert _param_grad_norm(gipo, gipo._compute_loss(gipo.model, inputs)) > 0


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_stale_training_learns_the_toy_task(tiny_lm, tmp_path, level):
    # the policy term alone, as before the anchor existed: at this toy's learning rate (0.05, Adam) the published
    # anchor (0.1) held the policy near its start in 2 of 3 seeds
    trainer = make_trainer(tiny_lm, tmp_path, importance_sampling_level=level, gipo_behaviour_kl_coeff=0.0)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert all(math.isfinite(h["loss"]) for h in logs)
    assert all(f"gipo/{k}" in logs[0] for k in METRIC_KEYS) and "policy_loss" in logs[0]
    assert max(h["gipo/log_ratio_abs_mean"] for h in logs) > 0  # num_iterations=2: data really were stale
    assert logs[0]["reward"] < 0.3 and logs[-1]["reward"] > 0.8, [h["reward"] for h in logs]


def test_training_with_the_shipped_anchor_logs_it(tiny_lm, tmp_path):
    trainer = make_trainer(tiny_lm, tmp_path, max_steps=4, logging_steps=2)  # num_iterations=2: the 2nd pass is stale
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert all(h["gipo/behaviour_kl"] >= 0 for h in logs) and max(h["gipo/behaviour_kl"] for h in logs) > 0


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "sapo"])
def test_other_loss_types_keep_working(tiny_lm, tmp_path, loss_type):
    trainer = make_trainer(tiny_lm, tmp_path, loss_type=loss_type, max_steps=4, logging_steps=2)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs and all(math.isfinite(h["loss"]) for h in logs)
    assert not any(k.startswith("gipo/") for h in logs for k in h)


def test_checkpoint_and_resume(tiny_lm, tmp_path):
    first = make_trainer(tiny_lm, tmp_path, max_steps=6, save_strategy="steps", save_steps=3)
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-3"
    assert (checkpoint / "trainer_state.json").exists()
    resumed = make_trainer(tiny_lm, tmp_path, max_steps=6)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    for a, b in zip(first.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.isfinite(b).all() and a.shape == b.shape


def _loss_and_grads(trainer, inputs):
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


def test_restore_continues_exactly(tiny_lm, tmp_path):
    """Steps 1–6 in one run vs steps 1–4, checkpoint, restore, steps 5–6: bitwise the same model and next gradients.

    The checkpoint sits on a generation boundary (num_iterations=2 reuses each generation batch for two
    steps); TRL restores the RNG, so the restored run generates the same completions.
    """
    first = make_trainer(tiny_lm, tmp_path, max_steps=6, save_strategy="steps", save_steps=2)
    first.train()
    restored = make_trainer(tiny_lm, tmp_path / "restored", max_steps=6)
    restored.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    for a, b in zip(first.model.parameters(), restored.model.parameters(), strict=True):
        assert torch.equal(a, b)
    inputs = _fixed_inputs(_prepare(first), shift=0.4)
    loss_a, grads_a = _loss_and_grads(first, inputs)
    loss_b, grads_b = _loss_and_grads(_prepare(restored), inputs)
    assert torch.equal(loss_a, loss_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"gipo_sigma": 0.0}, "sigma"),
        ({"gipo_sigma": -1.0}, "gipo_sigma"),
        ({"gipo_sigma": -1}, "gipo_sigma"),
        ({"gipo_sigma_neg_ratio": -1.0, "loss_type": "dapo"}, "gipo_sigma_neg_ratio"),
        ({"delta": 2.0}, "delta"),
        ({"gipo_objective": "trpo"}, "gipo_objective"),
        ({"gipo_objective_kwargs": {"sigma": 2.0}}, "gipo_objective_kwargs"),
        ({"gipo_objective_kwargs": {"tau": 2.0}}, "tau"),
        ({"gipo_sigma_neg_ratio": -1.0}, "sigma_neg_ratio"),
        ({"gipo_kernel": "box"}, "kernel"),
        ({"gipo_aggregation": "sapo"}, "gipo_aggregation"),
        ({"off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold"),
        ({"epsilon": 0.1}, "epsilon=0.1"),
        ({"epsilon_high": 0.28}, "epsilon_high"),
        ({"loss_type": "gipoo"}, "loss_type 'gipoo'"),
        ({"loss_type": "gipoo", "gipo_sigma": 2.0}, "choose one of .*'gipo', 'grpo'"),
        ({"gipo_behaviour_kl_coeff": -0.1}, "gipo_behaviour_kl_coeff must be None or a finite number >= 0"),
        ({"gipo_behaviour_kl_coeff": math.inf, "loss_type": "dapo"}, "gipo_behaviour_kl_coeff"),
        ({"gipo_behaviour_kl_coeff": math.nan}, "gipo_behaviour_kl_coeff"),
        ({"gipo_behaviour_kl_coeff": "0.1"}, "gipo_behaviour_kl_coeff"),
        ({"gipo_behaviour_kl_coeff": True}, "gipo_behaviour_kl_coeff"),
    ],
)
def test_bad_config_values(tmp_path, overrides, name):
    with pytest.raises(ValueError, match=name):
        GIPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", **overrides)


def test_config_fields_carry_help_metadata():
    from dataclasses import fields

    help_of = {f.name: f.metadata.get("help") for f in fields(GIPOConfig)}
    for name in ("loss_type", "gipo_sigma", "gipo_sigma_neg_ratio", "gipo_kernel", "gipo_aggregation",
                 "gipo_behaviour_kl_coeff"):  # fmt: skip
        assert help_of[name], name
    assert GIPOConfig.__dataclass_fields__["loss_type"].default == "gipo"


def test_unsupported_trl_version_fails_at_import():
    code = (
        "import importlib.metadata as m; real = m.version; "
        "m.version = lambda name: '1.15.0' if name == 'trl' else real(name); "
        "import gipo_plugins.trl"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "supports trl>=1.16,<1.17" in out.stderr


@pytest.mark.gpu
def test_training_on_gpu_in_bf16(tiny_lm, tmp_path):
    trainer = make_trainer(tiny_lm, tmp_path, use_cpu=False, bf16=True, max_steps=6)
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_a_registered_objective_through_the_trainer(tiny_lm, tmp_path):
    from gipo_plugins import Hyperparameter, PolicyObjective, check_positive, register_objective, unregister_objective

    register_objective("toy", Hyperparameter("toy_alpha", 0.5, "share of the IS gradient kept", check_positive))(
        lambda log_ratio, advantages, *, toy_alpha: (
            -toy_alpha * log_ratio.exp() * advantages,
            0 * log_ratio + toy_alpha,
        )
    )
    try:
        trainer = _prepare(
            make_trainer(
                tiny_lm,
                tmp_path,
                gipo_aggregation="bnpo",
                gipo_objective="toy",
                gipo_objective_kwargs={"toy_alpha": 0.25},
            )
        )
        assert trainer.policy_objective == PolicyObjective("toy", toy_alpha=0.25)
        inputs = _fixed_inputs(trainer, shift=0.3)
        loss = trainer._compute_loss(trainer.model, inputs)
        plain = PolicyObjective("is")(_current_logps(trainer, inputs), inputs["old_per_token_logps"],
                                      inputs["advantages"][:, None], inputs["completion_mask"])  # fmt: skip
        torch.testing.assert_close(loss, 0.25 * plain.loss)  # TRL's term -rA weighted by the toy's gate
        with pytest.raises(ValueError, match="toy_alpha"):
            GIPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", gipo_objective="toy",
                       gipo_objective_kwargs={"toy_alpha": -1.0})  # fmt: skip
    finally:
        unregister_objective("toy")


def test_a_trl_loss_type_keeps_its_clip_range(tmp_path):
    config = GIPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", loss_type="dapo", epsilon_high=0.28)
    assert config.epsilon_high == 0.28


def test_loss_types_are_trls_plus_gipo(tmp_path):
    """Every value GRPOConfig's help lists is accepted, and nothing else but 'gipo'."""
    import re

    from trl import GRPOConfig

    from gipo_plugins.trl.gipo import TRL_LOSS_TYPES

    help_text = GRPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    listed = re.search(r"Supported values are (.*?)\. ", help_text).group(1)
    assert sorted(re.findall(r"'(\w+)'", listed)) == sorted(TRL_LOSS_TYPES)
    for loss_type in TRL_LOSS_TYPES:
        assert GIPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", loss_type=loss_type).loss_type


def test_get_off_policy_mask_stays_trls_static_method(tiny_lm, tmp_path):
    """TRL's own tests call it on the class; only a GIPO trainer's instance hook is the trust weight."""
    from trl import GRPOTrainer

    from gipo_plugins.trl import GIPOTrainer

    gen = torch.Generator().manual_seed(0)
    advantages = torch.tensor([[1.0], [-1.0], [-0.5]])
    logps, sampling = -torch.rand(3, 5, generator=gen), -torch.rand(3, 5, generator=gen)
    mask = torch.ones(3, 5)
    call = (advantages, logps, sampling, mask, 0.05)
    torch.testing.assert_close(GIPOTrainer.get_off_policy_mask(*call), GRPOTrainer.get_off_policy_mask(*call))
    dapo = make_trainer(tiny_lm, tmp_path, loss_type="dapo", off_policy_mask_threshold=0.05)
    torch.testing.assert_close(dapo.get_off_policy_mask(*call), GRPOTrainer.get_off_policy_mask(*call))
    gipo = _prepare(make_trainer(tiny_lm, tmp_path))
    expected = gipo_objective(logps, sampling, advantages, mask, reduction="none").gate
    torch.testing.assert_close(gipo.get_off_policy_mask(*call), expected)


def test_trls_loss_type_warnings_see_the_aggregation(tiny_lm, tmp_path, caplog):
    """TRL warns that a token-summed loss with sequence-level IS weights sequences by length: so does GIPO's 'dapo'."""
    with caplog.at_level("WARNING"):
        trainer = make_trainer(tiny_lm, tmp_path, importance_sampling_level="sequence", gipo_aggregation="dapo")
    assert "the `'dapo'` loss sums per-token" in caplog.text
    assert trainer.args.loss_type == "gipo" and trainer.loss_type == "dapo"
    caplog.clear()
    with caplog.at_level("WARNING"):
        make_trainer(tiny_lm, tmp_path, importance_sampling_level="sequence", gipo_aggregation="grpo")
    assert "sums per-token" not in caplog.text


def test_no_clip_metrics_under_gipo(tiny_lm, tmp_path):
    """The clip is opened under GIPO, so TRL's clip_ratio/* could only ever read 0: they are not logged."""
    gipo = _prepare(make_trainer(tiny_lm, tmp_path))
    dapo = _prepare(make_trainer(tiny_lm, tmp_path, loss_type="dapo"))
    inputs = _fixed_inputs(gipo, shift=1.5)
    for trainer in (gipo, dapo):
        trainer._compute_loss(trainer.model, inputs)
    assert not any(name.startswith("clip_ratio/") for name in gipo._metrics["train"])
    assert dapo._metrics["train"]["clip_ratio/region_mean"][-1] > 0  # the same batch, clipped by dapo
