r"""The project's tiny OpenVLA: OpenVLA's architecture, prompt and action tokens at a size a CPU trains.

Architecture (OpenVLA's Prismatic model, built from transformers blocks):

- fused vision backbone: DINOv2 and SigLIP towers on the same image; the patch features of each
  tower's second-to-last layer are concatenated on the feature dimension;
- projector `fc1 (D→4D) GELU fc2 (4D→d) GELU fc3 (d→d)` into the LM's embedding size $d$;
- a Llama causal LM; the projected patches are inserted right after BOS.

Text is OpenVLA's prompt and actions are OpenVLA's tokens (`gipo_plugins.vla.actions`); Meta-World
actions are 4-D (xyz + gripper).

What differs from a published OpenVLA checkpoint (for those, see `gipo_plugins.vla.modeling_openvla`):

- **proprioception**: the robot state (hand and goal position) is given as state tokens between
  the patches and the prompt, discretised with the same 256 bins and its own q01/q99 statistics
  (at 64×64 the reach goal is 1–2 pixels; OpenVLA-OFT feeds proprio through a projector);
- one 3-channel image feeds both towers (OpenVLA stacks two differently normalised copies);
  the DINOv2 tower has no register tokens;
- the tokenizer is built locally with 256 dedicated action tokens as its last ids, where OpenVLA
  reuses Llama-2's least-used tokens; no `"▁"` token precedes the action tokens (its byte-level
  BPE has none, and the prompt ends at `"Out:"` in training), so `predict_action` appends nothing;
- it saves as an ordinary transformers folder (`model_type="tiny_openvla"`).

`forward` returns text-aligned logits (`logits[:, t]` predicts `input_ids[:, t + 1]`; the patch
positions are dropped), which is what a causal-LM trainer such as TRL expects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from transformers import (
    Dinov2Config,
    Dinov2Model,
    GenerationConfig,
    LlamaConfig,
    LlamaModel,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from gipo_plugins.trl.tiny import build_tokenizer as build_bpe_tokenizer
from gipo_plugins.vla.actions import N_BINS, PROMPT, ActionTokenizer, normalize
from gipo_plugins.vla.policy import (
    ActionPredictionMixin,
    check_pixel_values,
    next_token_loss,
    register_auto_classes,
    splice_patches,
)

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
PROCESSOR_FILE = "vla_processor.json"


class TinyOpenVLAConfig(PreTrainedConfig):
    """Configuration of `TinyOpenVLAForActionPrediction` (`model_type="tiny_openvla"`).

    Args:
        text_config: the Llama LM's config (dict or `LlamaConfig`).
        dino_config: DINOv2 tower config (dict or `Dinov2Config`).
        siglip_config: SigLIP tower config (dict or `SiglipVisionConfig`); ignored with
            `use_fused_vision_backbone=False` (DINOv2 alone).
        use_fused_vision_backbone: concatenate DINOv2 and SigLIP patch features (OpenVLA's default).
        image_size: square image side in pixels; inputs of another size raise `ValueError`.
        action_dim: action dimensions (4 for Meta-World).
        state_dim: state tokens placed after the image patches (0: none).
        n_action_bins: bins per dimension (256).
        norm_stats: `{dataset: {"action": stats, "state": stats}}` with OpenVLA's q01/q99 layout.
    """

    model_type = "tiny_openvla"

    def __init__(
        self,
        text_config: dict | LlamaConfig | None = None,
        dino_config: dict | Dinov2Config | None = None,
        siglip_config: dict | SiglipVisionConfig | None = None,
        use_fused_vision_backbone: bool = True,
        image_size: int = 64,
        action_dim: int = 4,
        state_dim: int = 0,
        n_action_bins: int = N_BINS,
        norm_stats: dict | None = None,
        **kwargs,
    ):
        def sub(value, cls):
            return value if isinstance(value, cls) else cls(**(value or {}))

        self.text_config = sub(text_config, LlamaConfig)
        self.dino_config = sub(dino_config, Dinov2Config)
        self.use_fused_vision_backbone = use_fused_vision_backbone
        self.siglip_config = sub(siglip_config, SiglipVisionConfig) if use_fused_vision_backbone else None
        self.image_size, self.action_dim, self.state_dim = image_size, action_dim, state_dim
        self.n_action_bins, self.norm_stats = n_action_bins, norm_stats or {}
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


class FusedVisionBackbone(nn.Module):
    """DINOv2 (+ SigLIP) patch features from each tower's second-to-last layer, concatenated."""

    def __init__(self, config: TinyOpenVLAConfig):
        super().__init__()
        self.featurizer = Dinov2Model(config.dino_config)
        self.fused_featurizer = SiglipVisionModel(config.siglip_config) if config.use_fused_vision_backbone else None
        self.embed_dim = config.dino_config.hidden_size + (
            config.siglip_config.hidden_size if config.use_fused_vision_backbone else 0
        )

    def forward(self, pixel_values: Tensor) -> Tensor:
        dino = self.featurizer(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]  # drop CLS
        if self.fused_featurizer is None:
            return dino
        siglip = self.fused_featurizer(pixel_values, output_hidden_states=True).hidden_states[-2]
        return torch.cat([dino, siglip], dim=-1)


class Projector(nn.Module):
    """OpenVLA's `fused-gelu-mlp`: fc1 (D→4D) GELU fc2 (4D→d) GELU fc3 (d→d)."""

    def __init__(self, vision_dim: int, llm_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, patches: Tensor) -> Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(patches)))))


class TinyOpenVLAModel(PreTrainedModel):
    """Vision backbone → projector → Llama backbone; returns text-aligned hidden states.

    `last_hidden_state[:, t]` is the state from which text token `t + 1` is predicted: the patch
    positions are dropped, and BOS's slot holds the last patch's state.
    """

    config_class = TinyOpenVLAConfig
    base_model_prefix = "model"
    _no_split_modules = ("LlamaDecoderLayer",)

    def __init__(self, config: TinyOpenVLAConfig):
        super().__init__(config)
        self.vision_backbone = FusedVisionBackbone(config)
        self.projector = Projector(self.vision_backbone.embed_dim, config.text_config.hidden_size)
        self.language_model = LlamaModel(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, pixel_values: Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPast:
        pixel_values = check_pixel_values(pixel_values, input_ids.shape[0], 3, self.config.image_size)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        patches = self.projector(self.vision_backbone(pixel_values.to(self.projector.fc1.weight.dtype)))  # [B, P, d]
        embeds, mask, predict_slot = splice_patches(self.get_input_embeddings()(input_ids), patches, attention_mask)
        hidden = self.language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        hidden = hidden.gather(1, predict_slot[..., None].expand(-1, -1, hidden.shape[-1]))
        return BaseModelOutputWithPast(last_hidden_state=hidden)


class TinyOpenVLAForActionPrediction(ActionPredictionMixin, PreTrainedModel):
    """OpenVLA at tiny size: `TinyOpenVLAModel` + an LM head over the vocabulary; a `VLAPolicy`.

    `forward(input_ids, attention_mask, pixel_values)` returns text-aligned logits and, with
    `labels`, the causal-LM loss on the non-`-100` labels. `predict_action` is OpenVLA's entry
    point: processor outputs → un-normalised continuous actions.
    """

    config_class = TinyOpenVLAConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ("LlamaDecoderLayer",)

    def __init__(self, config: TinyOpenVLAConfig):
        super().__init__(config)
        self.model = TinyOpenVLAModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()
        # trainers read sampling defaults from here; actions are drawn through the policy interface
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )

    @property
    def _decode_vocab_size(self) -> int:
        return self.config.text_config.vocab_size

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        labels: Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        hidden = self.model(input_ids, attention_mask, pixel_values).last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        return CausalLMOutputWithPast(loss=next_token_loss(logits, labels), logits=logits)


class TinyOpenVLAProcessor:
    """Turns images, instructions and (optional) states into model inputs; saves next to the model.

    `processor(images, instructions, states=None, unnorm_key=None)` → `input_ids`,
    `attention_mask` (`[BOS] + state tokens + prompt`, left-padded) and `pixel_values`
    (`[B, 3, S, S]`, scaled to $[-1, 1]$). Images are uint8 `[B, S, S, 3]` (or one `[S, S, 3]`).

    Args:
        tokenizer: the model's tokenizer (its last 256 ids are the action tokens).
        image_size: square image side $S$.
        norm_stats: `{dataset: {"action": stats, "state": stats}}`.
        state_dim: state tokens per sample (default: the size of the `"state"` statistics, else 0).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, image_size: int, norm_stats: dict | None = None,
                 state_dim: int | None = None):  # fmt: skip
        self.tokenizer, self.image_size, self.norm_stats = tokenizer, image_size, norm_stats or {}
        self.action_tokenizer = ActionTokenizer(len(tokenizer))
        if state_dim is None:
            state = next(iter(self.norm_stats.values()), {}).get("state")
            state_dim = len(state["q01"]) if state else 0
        self.state_dim = state_dim

    def pixel_values(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 images `[B, S, S, 3]` → `[B, 3, S, S]` floats in $[-1, 1]$."""
        images = torch.as_tensor(np.asarray(images))
        images = images[None] if images.ndim == 3 else images
        size = self.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (size, size, 3):
            raise ValueError(f"images must be uint8 [B, {size}, {size}, 3], got {tuple(images.shape)}")
        pixels = images.permute(0, 3, 1, 2).float() / 255.0
        mean, std = torch.tensor(IMAGE_MEAN)[:, None, None], torch.tensor(IMAGE_STD)[:, None, None]
        return (pixels - mean) / std

    def state_tokens(self, states: np.ndarray | Tensor, unnorm_key: str | None = None) -> Tensor:
        """States `[B, state_dim]` → token ids through the `"state"` statistics (clipped)."""
        key = unnorm_key if unnorm_key is not None else next(iter(self.norm_stats), None)
        stats = self.norm_stats.get(key, {}).get("state")
        if stats is None:
            raise ValueError(f"no state statistics for unnorm_key={key!r}")
        return self.action_tokenizer.encode(normalize(states, stats, clip=True, name="states"))

    def __call__(
        self,
        images: np.ndarray | Tensor,
        instructions: str | Sequence[str],
        states: np.ndarray | Tensor | None = None,
        unnorm_key: str | None = None,
    ) -> dict[str, Tensor]:
        pixel_values = self.pixel_values(images)
        batch = pixel_values.shape[0]
        instructions = [instructions] * batch if isinstance(instructions, str) else list(instructions)
        if len(instructions) != batch:
            raise ValueError(f"{len(instructions)} instructions for {batch} images")
        prompts = [
            self.tokenizer(PROMPT.format(instruction=i), add_special_tokens=False)["input_ids"] for i in instructions
        ]
        state_ids = self.state_tokens(states, unnorm_key).tolist() if states is not None else [[] for _ in range(batch)]
        rows = [[self.tokenizer.bos_token_id, *s, *p] for s, p in zip(state_ids, prompts, strict=True)]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # left padding, as TRL
        return {"input_ids": input_ids, "attention_mask": (input_ids != pad).long(), "pixel_values": pixel_values}

    def save_pretrained(self, path: str | Path) -> None:
        """Write the tokenizer and `vla_processor.json` (image size, statistics, state size) to `path`."""
        self.tokenizer.save_pretrained(path)
        config = {"processor_class": type(self).__name__, "image_size": self.image_size,
                  "norm_stats": self.norm_stats, "state_dim": self.state_dim}  # fmt: skip
        (Path(path) / PROCESSOR_FILE).write_text(json.dumps(config, indent=1))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> TinyOpenVLAProcessor:
        """Load what `save_pretrained` wrote."""
        config = json.loads((Path(path) / PROCESSOR_FILE).read_text())
        return cls(PreTrainedTokenizerFast.from_pretrained(path), config["image_size"], config["norm_stats"],
                   config.get("state_dim"))  # fmt: skip


def build_tokenizer(instructions: Sequence[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the prompts of `instructions`, then 256 action tokens as the last ids."""
    prompts = [PROMPT.format(instruction=i) for i in instructions] * 20
    return build_bpe_tokenizer(vocab_size, prompts, added_tokens=[f"<act_{i}>" for i in range(N_BINS)])


def tiny_config(vocab_size: int, *, image_size: int = 64, patch_size: int = 8, vision_dim: int = 32,
                llm_dim: int = 96, llm_layers: int = 2, action_dim: int = 4, state_dim: int = 0,
                norm_stats: dict | None = None) -> TinyOpenVLAConfig:  # fmt: skip
    """A ≈0.5 M-parameter `TinyOpenVLAConfig` (both vision towers, 2-layer Llama)."""
    vision = {"image_size": image_size, "patch_size": patch_size, "hidden_size": vision_dim,
              "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 2 * vision_dim}  # fmt: skip
    text = {"vocab_size": vocab_size, "hidden_size": llm_dim, "intermediate_size": 2 * llm_dim,
            "num_hidden_layers": llm_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}  # fmt: skip
    return TinyOpenVLAConfig(text_config=text, dino_config=vision, siglip_config=vision, image_size=image_size,
                             action_dim=action_dim, state_dim=state_dim, norm_stats=norm_stats,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip


register_auto_classes(TinyOpenVLAConfig, TinyOpenVLAForActionPrediction)
