"""Build a tiny causal LM and its tokenizer locally (no model hub), saved as a normal HF folder.

Used by the TRL example and tests; load the result exactly like a hub model, with a path:
`AutoModelForCausalLM.from_pretrained(path)` and `PreTrainedTokenizerFast.from_pretrained(path)`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def corpus(lines: int = 2000, seed: int = 0) -> list[str]:
    """Synthetic text covering letters, digits, punctuation and short arithmetic."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,:;!?+-=*/()"
    out = []
    for _ in range(lines):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        out.append(f"What is {a} + {b}? Answer: {a + b}.")
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(5, 40))))
    return out


def build_tokenizer(
    vocab_size: int = 256, texts: Sequence[str] | None = None, added_tokens: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts` (default: [`corpus`][]).

    `added_tokens` are appended as special tokens after training, so they take the last ids.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus() if texts is None else texts, trainer)
    tokenizer.add_special_tokens(list(added_tokens))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def build_tiny_causal_lm(path: str | Path, *, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Qwen2 causal LM and its tokenizer to `path`; returns the path."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    path = Path(path)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
