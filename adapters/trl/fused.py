r"""`GIPOConfig.gipo_fused_loss`: the trainer's token log-probs through the core's fused, chunked LM head.

With the switch on, every log-prob the trainer computes — the policy's in the loss, the old
policy's and the reference model's — comes from
[`chunked_token_log_probs`][gipo_plugins.fused.chunked_token_log_probs]: the backbone runs as usual,
its last hidden states of the completion positions go through the LM head `gipo_fused_chunk_size`
tokens at a time in fp32, and the backward recomputes each chunk's logits. Everything downstream is
unchanged TRL plus GIPO's per-token hook: the policy term (the core objective), `gipo_aggregation` /
`loss_type` normalisation, `beta` KL, token- or sequence-level ratios, the entropy metric and bonus
(the entropy is differentiable), and the `gipo/<metric>` diagnostics. So switching it on changes
memory and speed, not the loss (equal to TRL's path to float rounding).

TRL 1.16 already fuses its LM head (`trl.trainer.utils.add_fused_lm_head`, fixed tiles of 4096 tokens
× 32768 vocabulary entries, Triton on GPU, torch ops elsewhere). This path differs in that the chunk
is configurable (the transient buffer is `chunk` × vocab values), the head's math is fp32 under any
autocast, and the implementation is plain torch with no framework code.

Supported: text-only causal LMs whose logits are the plain `lm_head(h) / temperature`, on one device
or DDP. Rejected with a `ValueError`: vision-language inputs, MoE router aux loss
(`router_aux_loss_coef` with `output_router_logits`), logit soft-capping or scaling in the model
config (Gemma 2's `final_logit_softcapping`, Cohere's `logit_scale`, ...).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from gipo_plugins.fused import chunked_token_log_probs

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trl import GRPOTrainer

_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def validate_fused_config(config: Any) -> None:
    """Check `gipo_fused_loss` / `gipo_fused_chunk_size` of a `GIPOConfig` (called by its `__post_init__`)."""
    if not isinstance(config.gipo_fused_loss, bool):
        raise ValueError(f"gipo_fused_loss must be a bool, got {config.gipo_fused_loss!r}")
    size = config.gipo_fused_chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"gipo_fused_chunk_size must be a positive int, got {size!r}")


def check_fused_model(model: torch.nn.Module) -> None:
    """Reject models whose logits are not `lm_head(h)`: the fused head would compute other log-probs."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if config.get_text_config() is not config:
        raise ValueError("gipo_fused_loss supports text-only causal LMs, not vision-language models")
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value is not None and value != 1:
            raise ValueError(f"gipo_fused_loss does not apply the model's {name}={value!r}; set gipo_fused_loss=False")
    if base.get_output_embeddings() is None:
        raise ValueError("gipo_fused_loss needs a model with an LM head (get_output_embeddings())")


@contextmanager
def _capture_last_hidden_state(backbone: torch.nn.Module) -> Iterator[dict]:
    captured: dict = {}

    def hook(module, args, output):
        captured["hidden"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    handle = backbone.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def fused_per_token_logps(
    trainer: GRPOTrainer,
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    batch_size: int | None = None,
    compute_entropy: bool = False,
    compute_aux_loss: bool = False,
    **multimodal: Any,
) -> tuple[torch.Tensor, torch.Tensor | None, None]:
    """Drop-in for `GRPOTrainer._get_per_token_logps_and_entropies` through the core's fused LM head.

    Returns `(log_probs, entropies, None)` of the last `logits_to_keep` positions, zeros where
    `attention_mask` is 0, like TRL's.
    """
    given = sorted(name for name, value in multimodal.items() if value is not None)
    if given:
        raise ValueError(f"gipo_fused_loss supports text-only inputs; got {given}")
    if compute_aux_loss:
        raise ValueError("gipo_fused_loss does not compute the MoE router aux loss; set router_aux_loss_coef=0")
    causal_lm = trainer.accelerator.unwrap_model(model)
    causal_lm = causal_lm.get_base_model() if hasattr(causal_lm, "get_base_model") else causal_lm
    lm_head = causal_lm.get_output_embeddings()
    batch_size = batch_size or input_ids.size(0)
    log_probs, entropies = [], []
    for start in range(0, input_ids.size(0), batch_size):
        ids, attention = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
        with _capture_last_hidden_state(causal_lm.base_model) as captured, trainer.accelerator.autocast():
            model(input_ids=ids, attention_mask=attention, logits_to_keep=1, use_cache=False)  # 1 logit per row
        hidden = captured["hidden"][:, -logits_to_keep - 1 : -1]  # position t predicts token t + 1
        log_prob, entropy = chunked_token_log_probs(
            hidden.to(lm_head.weight.device),
            lm_head.weight,
            lm_head.bias,
            ids[:, -logits_to_keep:].to(lm_head.weight.device),
            attention[:, -logits_to_keep:].to(lm_head.weight.device),
            chunk_size=trainer.args.gipo_fused_chunk_size,
            temperature=trainer.temperature,
            with_entropy=compute_entropy,
        )
        log_probs.append(log_prob)
        entropies.append(entropy)
    return torch.cat(log_probs), torch.cat(entropies) if compute_entropy else None, None
