r"""The policy interface `VLAGIPOTrainer` and the recipe depend on, and what both OpenVLAs share.

A VLA policy here is a **categorical over the 256 action tokens per action dimension**, decoded
autoregressively: dimension $j$ is drawn from

$$\pi_\theta(b_j \mid o, l, b_{<j}) = \operatorname{softmax}_b\!\big(z_\theta(o, l, b_{<j}) / T\big),
\qquad b \in 0..255,$$

where $z_\theta$ are the model's logits restricted to the action tokens (bin $b$ is token
$V - 1 - b$, see `gipo_plugins.vla.actions`), $o$ the image, $l$ the instruction and $T$ the
sampling temperature. The same function gives the behaviour log-probabilities while acting and the
trainer's log-probabilities while learning, so on the first pass over fresh data $\log r = 0$
exactly. (OpenVLA's own `predict_action` takes the arg-max over the whole vocabulary; the two agree
whenever that arg-max is an action token, which is what a trained VLA emits.)

**`VLAPolicy`** (the model; an `nn.Module` / `PreTrainedModel`):

- `action_logits(input_ids, attention_mask, pixel_values, logits_to_keep=1)` → `[B, K, 256]`:
  logits over the action tokens (column $b$ = bin $b$) at the last `K` text positions, where
  position $t$ predicts token $t + 1$;
- `get_action_dim(unnorm_key)`, `get_action_stats(unnorm_key)`: action size and OpenVLA's
  q01/q99/mask statistics of a dataset (OpenVLA's own method names);
- `action_token_ids` → `[256]`: the token id of each bin (for decoding and for completions);
- `predict_action(inputs, unnorm_key)`: OpenVLA's entry point, processor outputs → actions.

**`VLAProcessor`** (images + instruction → model inputs):

- `__call__(images, instructions, states=None, unnorm_key=None)` → `input_ids`,
  `attention_mask` (left-padded; the prompt ends where the first action token goes) and
  `pixel_values`;
- `image_size` (the square side the environment renders), `state_dim` (0: the policy takes no
  proprioception), `tokenizer`, `save_pretrained(path)`.

Implementations: `TinyOpenVLAForActionPrediction` / `TinyOpenVLAProcessor` (the project's tiny
model) and `OpenVLAForActionPrediction` / `OpenVLAProcessor` (OpenVLA's published checkpoint
format). Anything else with these methods works with the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from gipo_plugins.vla.actions import ActionTokenizer, unnormalize


@runtime_checkable
class VLAPolicy(Protocol):
    """A model the VLA trainer can act with and train (see the module documentation)."""

    @property
    def action_token_ids(self) -> Tensor: ...

    def action_logits(
        self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, logits_to_keep: int = 1
    ) -> Tensor: ...

    def get_action_dim(self, unnorm_key: str | None = None) -> int: ...

    def get_action_stats(self, unnorm_key: str | None = None) -> dict: ...

    def predict_action(self, inputs: dict[str, Tensor], unnorm_key: str | None = None) -> np.ndarray: ...


@runtime_checkable
class VLAProcessor(Protocol):
    """Turns images and instructions (and states, if `state_dim > 0`) into `VLAPolicy` inputs."""

    image_size: int
    state_dim: int
    tokenizer: PreTrainedTokenizerBase

    def __call__(
        self,
        images: np.ndarray | Tensor,
        instructions: str | Sequence[str],
        states: np.ndarray | Tensor | None = None,
        unnorm_key: str | None = None,
    ) -> dict[str, Tensor]: ...

    def save_pretrained(self, path: str | Path) -> None: ...


_REQUIRED = {
    VLAPolicy: ("action_token_ids", "action_logits", "get_action_dim", "get_action_stats", "predict_action"),
    VLAProcessor: ("image_size", "state_dim", "tokenizer", "save_pretrained", "__call__"),
}


def check_policy(model: object, processor: object) -> None:
    """Raise a `ValueError` naming what is missing when `model` / `processor` do not implement the interface."""
    for value, protocol, name in ((model, VLAPolicy, "model"), (processor, VLAProcessor, "processor")):
        missing = [m for m in _REQUIRED[protocol] if not hasattr(value, m)]
        if missing:
            raise ValueError(f"{name} ({type(value).__name__}) does not implement {protocol.__name__}: "
                             f"missing {', '.join(missing)}")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Acting and scoring through the interface
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_action_tokens(policy: VLAPolicy, inputs: dict[str, Tensor], *, action_dim: int, temperature: float = 1.0,
                         return_log_softmax: bool = False) -> tuple[Tensor, ...]:  # fmt: skip
    """Draw `action_dim` action tokens autoregressively (greedy at `temperature=0`).

    Returns:
        `(token_ids, log_probs)`, each `[B, action_dim]`: the tokens and their log-probabilities
        under the categorical over the action tokens at `temperature` (at `temperature=0`: at 1).
        With `return_log_softmax=True` also that whole categorical, `[B, action_dim, 256]` fp32
        log-probabilities of every bin (the behaviour distribution the anchor's exact KL needs).
    """
    input_ids, attention_mask, pixel_values = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
    token_ids = policy.action_token_ids.to(input_ids.device)
    ids, log_probs, distributions = [], [], []
    for _ in range(action_dim):
        logits = policy.action_logits(input_ids, attention_mask, pixel_values, logits_to_keep=1)[:, -1].float()
        scaled = torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), -1)
        bins = torch.multinomial(scaled.exp(), 1)[:, 0] if temperature > 0 else logits.argmax(-1)
        log_probs.append(scaled.gather(1, bins[:, None])[:, 0])
        distributions.append(scaled)
        ids.append(token_ids[bins])
        input_ids = torch.cat([input_ids, ids[-1][:, None]], dim=1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(bins), 1)], dim=1)
    result = torch.stack(ids, 1), torch.stack(log_probs, 1)
    return (*result, torch.stack(distributions, 1)) if return_log_softmax else result


def action_log_probs(policy: VLAPolicy, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor,
                     completion_length: int, *, temperature: float = 1.0, compute_entropy: bool = False,
                     return_log_softmax: bool = False) -> tuple[Tensor | None, ...]:  # fmt: skip
    """Log-probabilities (and entropies) of the last `completion_length` tokens of `input_ids`.

    Teacher-forced: one forward pass scores every action dimension, under the same categorical as
    `sample_action_tokens`. Returns `[B, completion_length]` tensors (entropy `None` unless asked);
    with `return_log_softmax=True` also the whole categorical, `[B, completion_length, 256]` fp32
    (differentiable; the tensor the log-probs are gathered from, so it costs no extra memory).

    Raises:
        ValueError: a completion token that is not an action token.
    """
    logits = policy.action_logits(input_ids, attention_mask, pixel_values, logits_to_keep=completion_length + 1)
    log_p = torch.log_softmax(logits[:, :-1].float() / (temperature if temperature > 0 else 1.0), -1)
    vocab = int(policy.action_token_ids[0]) + 1  # bin b is token vocab - 1 - b
    bins = vocab - 1 - input_ids[:, -completion_length:]
    if (bins < 0).any() or (bins >= log_p.shape[-1]).any():
        raise ValueError("completion tokens must be action tokens (the policy's action_token_ids)")
    log_probs = log_p.gather(-1, bins[..., None])[..., 0]
    entropy = -(log_p.exp() * log_p).sum(-1) if compute_entropy else None
    return (log_probs, entropy, log_p) if return_log_softmax else (log_probs, entropy)


def decode_actions(policy: VLAPolicy, token_ids: Tensor, unnorm_key: str | None = None) -> np.ndarray:
    """Action tokens `[B, D]` → un-normalised actions `[B, D]` with OpenVLA's decoding rule."""
    vocab = int(policy.action_token_ids[0]) + 1
    tokenizer = ActionTokenizer(vocab, len(policy.action_token_ids))
    return unnormalize(tokenizer.decode(token_ids.cpu()), policy.get_action_stats(unnorm_key)).numpy()


# --------------------------------------------------------------------------------------------------
# What both OpenVLA implementations share
# --------------------------------------------------------------------------------------------------


def check_pixel_values(pixel_values: Tensor | None, batch: int, channels: int, size: int) -> Tensor:
    """`pixel_values` if it is a `[batch, channels, size, size]` tensor; a `ValueError` naming it otherwise."""
    if pixel_values is None:
        raise ValueError("pixel_values are required (the policy acts from images)")
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (channels, size, size):
        raise ValueError(f"pixel_values must be [B, {channels}, {size}, {size}], got {tuple(pixel_values.shape)}")
    if pixel_values.shape[0] != batch:
        raise ValueError(f"pixel_values has batch {pixel_values.shape[0]}, input_ids has {batch}")
    return pixel_values


def splice_patches(text: Tensor, patches: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """OpenVLA's multimodal sequence: the projected patches right after each row's BOS.

    Rows may be left-padded (as TRL pads prompts): BOS is each row's first attended token.

    Args:
        text: text embeddings `[B, L, d]`.
        patches: projected patch embeddings `[B, P, d]`.
        attention_mask: `[B, L]`.

    Returns:
        `(embeds [B, L + P, d], mask [B, L + P], predict_slot [B, L])`: `predict_slot[:, t]` is the
        sequence position whose output predicts text token `t + 1` (token `t`'s own slot, or the last
        patch for BOS), so gathering the LM's states there gives text-aligned outputs.
    """
    batch, length = attention_mask.shape
    n_patches = patches.shape[1]
    bos = attention_mask.long().argmax(dim=1)
    positions = torch.arange(length, device=attention_mask.device)
    text_slot = positions[None] + n_patches * (positions[None] > bos[:, None])
    embeds = text.new_zeros(batch, length + n_patches, text.shape[-1])
    embeds = embeds.scatter(1, text_slot[..., None].expand_as(text), text)
    patch_slot = bos[:, None] + 1 + torch.arange(n_patches, device=attention_mask.device)[None]
    embeds = embeds.scatter(1, patch_slot[..., None].expand_as(patches), patches.to(text.dtype))
    mask = attention_mask.new_ones(batch, length + n_patches).scatter(1, text_slot, attention_mask)
    predict_slot = torch.where(positions[None] == bos[:, None], bos[:, None] + n_patches, text_slot)
    return embeds, mask, predict_slot


class ActionPredictionMixin:
    """`VLAPolicy` methods shared by both OpenVLAs, on top of a model whose `forward` returns text-aligned
    logits over the vocabulary, `_decode_vocab_size` ($V$) and `config.norm_stats`."""

    _decode_vocab_size: int
    _empty_token_id: int | None = None
    """Token `predict_action` appends when a prompt does not end with it (OpenVLA's `"▁"`); `None`: none."""

    @property
    def action_token_ids(self) -> Tensor:
        """Token id of each bin $b = 0..255$: $V - 1 - b$."""
        return ActionTokenizer(self._decode_vocab_size, self.config.n_action_bins).token_ids

    def action_logits(
        self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, logits_to_keep: int = 1
    ) -> Tensor:
        """Logits `[B, logits_to_keep, 256]` over the action tokens at the last text positions (column = bin)."""
        logits = self(input_ids, attention_mask, pixel_values, logits_to_keep=logits_to_keep).logits
        return logits[..., self.action_token_ids.to(logits.device)]

    def _unnorm_key(self, unnorm_key: str | None) -> str:
        stats = self.config.norm_stats or {}
        if unnorm_key is None and len(stats) == 1:
            unnorm_key = next(iter(stats))
        if unnorm_key not in stats or "action" not in stats[unnorm_key]:
            raise ValueError(f"no action statistics for unnorm_key={unnorm_key!r}; available: {sorted(stats)}")
        return unnorm_key

    def get_action_stats(self, unnorm_key: str | None = None) -> dict:
        """The `"action"` statistics of dataset `unnorm_key` (the only dataset when `None`).

        Raises:
            ValueError: unknown `unnorm_key`, or `None` with several datasets.
        """
        return self.config.norm_stats[self._unnorm_key(unnorm_key)]["action"]

    def get_action_dim(self, unnorm_key: str | None = None) -> int:
        """Action dimensions of dataset `unnorm_key` (the length of its `q01`)."""
        return len(self.get_action_stats(unnorm_key)["q01"])

    @torch.no_grad()
    def predict_action(self, inputs: dict[str, Tensor], unnorm_key: str | None = None) -> np.ndarray:
        """OpenVLA's `predict_action`: greedy tokens over the **whole** vocabulary, decoded and un-normalised.

        As OpenVLA's, it first appends the empty token (`_empty_token_id`, OpenVLA's `"▁"`) to each
        prompt that does not already end with it, so `input_ids` from OpenVLA's own processor (which
        stop at `"Out:"`) act as at training time; rows that already end with it are unchanged (in
        a batch mixing both, they are left-padded by one). Models without an empty token (the tiny
        OpenVLA) take the prompt as it is.

        Args:
            inputs: processor outputs (`input_ids`, `pixel_values`, and `attention_mask`, all ones
                when absent; rows left-padded), any batch size.
            unnorm_key: dataset whose statistics un-normalise the actions.

        Returns:
            `[B, action_dim]` float32 actions.
        """
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        input_ids, attention_mask = self._with_empty_token(input_ids, attention_mask)
        ids = []
        for _ in range(self.get_action_dim(unnorm_key)):
            logits = self(input_ids, attention_mask, inputs["pixel_values"], logits_to_keep=1).logits[:, -1]
            ids.append(logits.argmax(-1))
            input_ids = torch.cat([input_ids, ids[-1][:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(ids[-1]), 1)], dim=1)
        return decode_actions(self, torch.stack(ids, 1), unnorm_key)

    def _with_empty_token(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """OpenVLA's rule: append the empty token to rows whose last token is not it (others: one pad on the left)."""
        empty = self._empty_token_id
        if empty is None:
            return input_ids, attention_mask
        present = input_ids[:, -1] == empty
        if bool(present.all()):
            return input_ids, attention_mask
        vocab = self.get_input_embeddings().num_embeddings
        if not 0 <= empty < vocab:
            raise ValueError(f"the empty token id {empty} is outside the vocabulary ({vocab}); set "
                             "config.empty_token_id to the tokenizer's id of '▁'")  # fmt: skip
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        column = torch.where(present, pad, empty)[:, None].to(input_ids.dtype)
        mask_column = (~present)[:, None].to(attention_mask.dtype)
        left = present[:, None]
        input_ids = torch.where(left, torch.cat([column, input_ids], 1), torch.cat([input_ids, column], 1))
        attention_mask = torch.where(left, torch.cat([mask_column, attention_mask], 1),
                                     torch.cat([attention_mask, mask_column], 1))  # fmt: skip
        return input_ids, attention_mask


def register_auto_classes(config_class: type, model_class: type) -> None:
    """Register a VLA config/model pair with `AutoConfig` and `AutoModelForCausalLM` (idempotent).

    Local code wins over a checkpoint's `auto_map`: no `trust_remote_code` is needed.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(config_class.model_type, config_class)
        AutoModelForCausalLM.register(config_class, model_class)
    except ValueError:  # already registered
        pass


def next_token_loss(logits: Tensor, labels: Tensor | None) -> Tensor | None:
    """The causal-LM loss of `labels` (`-100`: ignored) under `logits` shifted by one; `None` without labels."""
    if labels is None:
        return None
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )
