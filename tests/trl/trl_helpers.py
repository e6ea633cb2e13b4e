"""A trainer on a tiny local causal LM (no hub) and a learnable toy task, for the TRL tests."""

from __future__ import annotations

import os

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def reward_letter_a(completions, **kwargs):
    """Fraction of the letter 'a' in each completion: a tiny model learns it in a few dozen steps."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def make_trainer(tiny_lm, tmp_path, **overrides):
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast

    from gipo_plugins.trl import GIPOConfig, GIPOTrainer

    settings = {
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "learning_rate": 0.05,
        "per_device_train_batch_size": 8,
        "num_generations": 8,
        "max_completion_length": 8,
        "num_iterations": 2,
        "max_steps": 40,
        "logging_steps": 5,
        "report_to": "none",
        "save_strategy": "no",
        "seed": 0,
    } | overrides
    return GIPOTrainer(
        model=tiny_lm,
        reward_funcs=reward_letter_a,
        args=GIPOConfig(**settings),
        train_dataset=Dataset.from_dict({"prompt": ["Say a: "] * 512}),
        processing_class=PreTrainedTokenizerFast.from_pretrained(tiny_lm),
    )
