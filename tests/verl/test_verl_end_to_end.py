"""verl's PPO trainer with `loss_mode=gipo`: a few GRPO steps of a tiny local model (no model hub).

verl 0.9.1's trainer generates with an async rollout server (vLLM, SGLang or TRT-LLM: `_ROLLOUT_REGISTRY`)
and trains with FSDP on CUDA; none of them runs on a CPU, so the run itself is `gpu`-marked (and needs
vLLM). On the CPU the tests check what the run is made of: the tiny model, tokenizer and data load, and the
command's overrides compose with verl's own Hydra config and pass its config check with the adapter's.

Run on a CUDA machine with vLLM installed in `.venv-verl`:

    .venv-verl/bin/python -m pytest tests/verl/test_verl_end_to_end.py -m gpu
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "user", "assistant", "what", "is", "plus", "?", "####", "the", "answer"]
WORDS += [str(d) for d in range(10)]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant {% endif %}"
)


def build_tiny_model(path: Path) -> Path:
    """A randomly initialised 2-layer Qwen2 and a word-level tokenizer with a chat template, saved to `path`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {word: index for index, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=64,  # a multiple of 8 above len(WORDS): vLLM pads the vocabulary anyway
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: supported by vLLM's attention backends
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_dataset(path: Path, rows: int = 16) -> Path:
    """Arithmetic prompts in verl's RL data format, scored by verl's GSM8K rule (`#### <answer>`)."""
    import pandas as pd

    records = []
    for i in range(rows):
        a, b = i % 5, (3 * i) % 5
        records.append(
            {
                "data_source": "openai/gsm8k",
                "prompt": [{"role": "user", "content": f"what is {a} plus {b} ?"}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(a + b)},
                "extra_info": {"index": i},
            }
        )
    pd.DataFrame(records).to_parquet(path)
    return path


def overrides(model: Path, data: Path, steps: int = 2) -> list[str]:
    """The run's Hydra overrides: GRPO, 2 actor epochs per batch (stale data for GIPO), `loss_mode=gipo`."""
    return [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={data}",
        f"data.val_files={data}",
        "data.train_batch_size=4",
        "data.max_prompt_length=32",
        "data.max_response_length=16",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.actor.ppo_epochs=2",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.policy_loss.loss_mode=gipo",
        "actor_rollout_ref.actor.policy_loss._target_=gipo_plugins.verl.GIPOPolicyLossConfig",
        "+actor_rollout_ref.actor.policy_loss.sigma=1.0",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        f"trainer.total_training_steps={steps}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console]",
        "trainer.project_name=gipo_plugins",
        "trainer.experiment_name=verl_e2e",
    ]


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verl_e2e")
    return build_tiny_model(root / "model"), write_dataset(root / "train.parquet")


def test_the_tiny_model_tokenizer_and_data_load(run_inputs):
    import pandas as pd
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path, data_path = run_inputs
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompt = pd.read_parquet(data_path)["prompt"][0].tolist()
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert tokenizer.unk_token_id not in ids
    model = AutoModelForCausalLM.from_pretrained(model_path)
    assert model.config.vocab_size >= len(tokenizer)


def test_the_commands_overrides_pass_verls_config_check(run_inputs):
    import verl
    from hydra import compose, initialize_config_dir
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    from gipo_plugins.verl import GIPOPolicyLossConfig

    with initialize_config_dir(os.path.join(os.path.dirname(verl.__file__), "trainer", "config"), version_base=None):
        config = compose("ppo_trainer", overrides=overrides(*run_inputs))
    validate_config(config, use_reference_policy=False, use_critic=False)  # verl's checks, then the adapter's
    assert type(omega_conf_to_dataclass(config.actor_rollout_ref.actor).policy_loss) is GIPOPolicyLossConfig


@pytest.mark.gpu
@pytest.mark.slow
def test_a_few_grpo_steps_with_gipo(run_inputs):
    pytest.importorskip("vllm")
    command = [sys.executable, "-m", "verl.trainer.main_ppo", *overrides(*run_inputs)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert "actor/gipo/trust_weight_mean" in log and "actor/pg_clipfrac" in log
