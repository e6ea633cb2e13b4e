"""`gipo_fused_loss`: the trainer through the core's fused LM head has TRL's loss, gradients and metrics."""

from __future__ import annotations

import math

import pytest
import torch
from trl_helpers import make_trainer

from gipo_plugins.trl import GIPOConfig
from gipo_plugins.trl.fused import check_fused_model

B, T = 4, 6


def _inputs(trainer, shift: float, ref_shift: float = 0.0):
    """A fixed batch; behaviour (and reference) log-probs from the trainer's own path, shifted to be stale."""
    gen = torch.Generator().manual_seed(0)
    vocab = trainer.model.config.vocab_size
    prompt_ids, completion_ids = (
        torch.randint(4, vocab, (B, 3), generator=gen),
        torch.randint(4, vocab, (B, T), generator=gen),
    )
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
    inputs = {key: value.to(trainer.model.device) for key, value in inputs.items()}
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    noise = torch.randn(B, T, generator=gen).to(trainer.model.device)
    with torch.no_grad():
        logps = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention, T)[0]
        inputs["old_per_token_logps"] = logps + shift * noise
        if trainer.beta != 0.0:
            ref = trainer._get_per_token_logps_and_entropies(trainer.ref_model, input_ids, attention, T)[0]
            inputs["ref_per_token_logps"] = ref + ref_shift * noise.flip(0)
    return inputs


def _loss_grads_metrics(trainer, inputs):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    trainer._metrics["train"].clear()
    loss = trainer._compute_loss(trainer.model, inputs)
    grads = torch.autograd.grad(loss, list(trainer.model.parameters()))
    trainer._flush_gipo_metrics("train")
    return loss.detach(), grads, {key: values[-1] for key, values in trainer._metrics["train"].items()}


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # gipo, dapo aggregation, token-level ratios
        {"gipo_aggregation": "grpo", "importance_sampling_level": "sequence", "temperature": 0.7},
        {"gipo_aggregation": "bnpo", "entropy_coef": 0.05},  # entropy bonus: gradient through the fused entropy
        {"gipo_aggregation": "luspo", "gipo_sigma": 0.3},
        {"loss_type": "grpo", "beta": 0.1},  # a TRL loss, with the reference model's KL
    ],
    ids=["gipo-dapo", "gipo-grpo-sequence-T0.7", "gipo-bnpo-entropy-bonus", "gipo-luspo", "grpo-beta"],
)
def test_switch_gives_the_same_loss_gradients_and_metrics(tiny_lm, tmp_path, overrides):
    results = {}
    for fused in (False, True):
        trainer = make_trainer(tiny_lm, tmp_path, gipo_fused_loss=fused, gipo_fused_chunk_size=5, **overrides)
        assert trainer._fused_lm_head is fused
        results[fused] = _loss_grads_metrics(trainer, _inputs(trainer, shift=0.5, ref_shift=0.3))
    (loss, grads, metrics), (fused_loss, fused_grads, fused_metrics) = results[False], results[True]
    torch.testing.assert_close(fused_loss, loss, rtol=1e-5, atol=1e-6)
    assert sum(float(g.abs().sum()) for g in grads) > 0  # stale enough that the loss has a gradient to compare
    for got, want in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert sorted(fused_metrics) == sorted(metrics)
    if overrides.get("loss_type", "gipo") == "gipo":
        assert "gipo/ess" in metrics and metrics["gipo/log_ratio_abs_mean"] > 0
    for key, value in metrics.items():
        assert fused_metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_training_steps_match_with_the_switch(tiny_lm, tmp_path):
    runs = {}
    for fused in (False, True):  # SGD: Adam's normalisation would magnify rounding on near-zero gradients
        trainer = make_trainer(tiny_lm, tmp_path / str(fused), gipo_fused_loss=fused, gipo_fused_chunk_size=7,
                               max_steps=3, logging_steps=1, optim="sgd", learning_rate=0.5)  # fmt: skip
        trainer.train()
        runs[fused] = trainer
    logs = {
        fused: [h for h in run.state.log_history if "loss" in h and "train_runtime" not in h]
        for fused, run in runs.items()
    }
    assert len(logs[True]) == len(logs[False]) == 3
    for off, on in zip(logs[False], logs[True], strict=True):
        assert sorted(on) == sorted(off)
        assert any(key.startswith("gipo/") for key in on)
        for key, value in off.items():  # losses, rewards, entropy, grad norm, gipo/* ... (all but the timing)
            if key != "step_time":
                assert on[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for on, off in zip(runs[True].model.parameters(), runs[False].model.parameters(), strict=True):
        torch.testing.assert_close(on, off, rtol=1e-4, atol=1e-5)
    moved = sum(
        float((p - q).abs().sum()) for p, q in zip(runs[True].model.parameters(), _initial(tiny_lm), strict=True)
    )
    assert moved > 0


def _initial(path):
    from transformers import AutoModelForCausalLM

    return list(AutoModelForCausalLM.from_pretrained(path).parameters())


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"gipo_fused_chunk_size": 0}, "gipo_fused_chunk_size"),
        ({"gipo_fused_chunk_size": 2.5}, "gipo_fused_chunk_size"),
        ({"gipo_fused_loss": "yes"}, "gipo_fused_loss"),
    ],
)
def test_bad_fused_config_values(tmp_path, overrides, name):
    with pytest.raises(ValueError, match=name):
        GIPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", **overrides)


def test_fused_fields_carry_help_metadata():
    fields = GIPOConfig.__dataclass_fields__
    for name in ("gipo_fused_loss", "gipo_fused_chunk_size"):
        assert fields[name].metadata.get("help"), name
    assert fields["gipo_fused_loss"].default is False


def test_unsupported_models_and_inputs_are_rejected(tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        check_fused_model(model)
    trainer = make_trainer(tiny_lm, tmp_path, gipo_fused_loss=True)
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="pixel_values"):
        trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, torch.ones_like(ids), 3, pixel_values=torch.zeros(1)
        )
    with pytest.raises(ValueError, match="aux loss"):
        trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), 3, compute_aux_loss=True)


@pytest.mark.gpu
def test_switch_on_cuda(tiny_lm, tmp_path):
    torch.backends.cuda.matmul.allow_tf32 = False
    results, peaks = {}, {}
    for fused in (False, True):
        trainer = make_trainer(tiny_lm, tmp_path, use_cpu=False, gipo_fused_loss=fused, gipo_fused_chunk_size=5)
        inputs = _inputs(trainer, shift=0.5)
        torch.cuda.reset_peak_memory_stats()
        results[fused] = _loss_grads_metrics(trainer, inputs)
        peaks[fused] = torch.cuda.max_memory_allocated()
    print(f"CUDA peak: TRL head {peaks[False] / 2**20:.1f} MiB, fused head {peaks[True] / 2**20:.1f} MiB")
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    for got, want in zip(results[True][1], results[False][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert sorted(results[True][2]) == sorted(results[False][2]) and all(
        math.isfinite(v) for v in results[True][2].values()
    )
