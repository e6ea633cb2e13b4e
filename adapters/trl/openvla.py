r"""A tiny OpenVLA: OpenVLA's architecture, prompt and action tokenizer at a size a CPU trains.

Architecture (as ``openvla/openvla``'s Prismatic model, built from transformers blocks):

- fused vision backbone: DINOv2 and SigLIP vision towers on the same image; the patch features of
  each tower's second-to-last layer are concatenated on the feature dimension;
- projector ``fc1 (D→4D) GELU fc2 (4D→d) GELU fc3 (d→d)`` into the LM's embedding size ``d``;
- a Llama causal LM; the projected patches are inserted right after BOS.

Text is OpenVLA's prompt ``"In: What action should the robot take to {instruction}?\nOut:"``,
and actions are OpenVLA's tokens: each dimension, normalised to [-1, 1] with per-dataset q01/q99
statistics, is put in one of 256 uniform bins on [-1, 1] and mapped to the *last* 256 ids of the
vocabulary, ``id = vocab_size - digitize(a)``; decoding takes the bin centre. Meta-World actions are
4-D (xyz + gripper).

What differs from a real OpenVLA checkpoint (documented in ``docs/tutorials/vla.md``):

- **proprioception**: the robot state (here hand and goal position) is given as state tokens
  between the patches and the prompt, discretised with the same 256 bins and its own q01/q99
  statistics (at 64×64 the reach goal is 1–2 pixels; OpenVLA-OFT feeds proprio through a projector);
- the towers are transformers' ``Dinov2Model`` / ``SiglipVisionModel`` rather than timm modules, so
  a real checkpoint's ``vision_backbone.*`` keys need a remap; upstream checkpoints are
  ``trust_remote_code`` code pinned to transformers 4.40 and do not load in transformers 5;
- the tokenizer is built locally (no hub) with 256 dedicated action tokens as its last ids, where
  OpenVLA reuses Llama-2's least-used tokens; no ``"▁"`` is appended before the action tokens;
- ``forward`` returns text-aligned logits (``logits[:, t]`` predicts ``input_ids[:, t + 1]``; the
  patch positions are dropped), which is what a causal-LM trainer such as TRL expects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
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

PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
N_BINS = 256
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
PROCESSOR_FILE = "vla_processor.json"


# --------------------------------------------------------------------------------------------------
# Actions: normalisation with q01/q99 statistics and OpenVLA's 256-bin tokenizer
# --------------------------------------------------------------------------------------------------


def compute_statistics(values: np.ndarray) -> dict[str, list]:
    """Per-dimension ``q01`` / ``q99`` (and ``min`` / ``max``, ``mask``) of ``values`` ``[N, D]``, as in
    OpenVLA's ``dataset_statistics.json``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"values must be a finite [N, D] array with N > 0, got shape {values.shape}")
    return {
        "q01": np.quantile(values, 0.01, axis=0).tolist(),
        "q99": np.quantile(values, 0.99, axis=0).tolist(),
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mask": [True] * values.shape[1],
    }


def _bounds(stats: dict, dim: int, name: str) -> tuple[Tensor, Tensor, Tensor]:
    if not stats or not {"q01", "q99"} <= set(stats):
        raise ValueError(f"{name} statistics with 'q01' and 'q99' are required, got {sorted(stats or {})}")
    low, high = torch.tensor(stats["q01"], dtype=torch.float64), torch.tensor(stats["q99"], dtype=torch.float64)
    mask = torch.tensor(stats.get("mask", [True] * len(low)))
    if len(low) != dim:
        raise ValueError(f"{name} statistics have {len(low)} dimensions, the values have {dim}")
    return low, torch.where(high > low, high, low + 1e-8), mask


def normalize(values: Tensor | np.ndarray, stats: dict, *, clip: bool = False, name: str = "actions") -> Tensor:
    """Map ``values`` to [-1, 1] with ``2 (x - q01) / (q99 - q01) - 1`` on the masked dimensions.

    Values outside ``[q01, q99]`` raise a ``ValueError`` unless ``clip=True`` (training data are
    clipped, as in OpenVLA; a policy's own output never needs it).
    """
    values = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contain NaN or inf")
    low, high, mask = _bounds(stats, values.shape[-1], name)
    scaled = torch.where(mask, 2 * (values - low) / (high - low) - 1, values)
    outside = (scaled.abs() > 1 + 1e-6) & mask
    if outside.any() and not clip:
        raise ValueError(f"{name} outside the statistics' [q01, q99] range in dimensions "
                         f"{sorted(set(torch.nonzero(outside)[:, -1].tolist()))}; pass clip=True to clip")  # fmt: skip
    return scaled.clamp(-1, 1).float()


def unnormalize(normalized: Tensor, stats: dict, *, name: str = "actions") -> Tensor:
    """Inverse of :func:`normalize`: ``0.5 (n + 1) (q99 - q01) + q01`` on the masked dimensions."""
    normalized = torch.as_tensor(normalized, dtype=torch.float64)
    low, high, mask = _bounds(stats, normalized.shape[-1], name)
    return torch.where(mask, 0.5 * (normalized + 1) * (high - low) + low, normalized).float()


class ActionTokenizer:
    r"""OpenVLA's action tokenizer: 256 uniform bins on [-1, 1], the last 256 ids of the vocabulary.

    ``encode``: :math:`\text{id} = V - \text{digitize}(a)` with ``digitize`` in 1..256; ``decode``:
    the centre of bin :math:`\text{clip}(V - \text{id} - 1, 0, 254)`, so a round trip is within half
    a bin (:math:`1/255`) and any other id decodes to the nearest end.
    """

    def __init__(self, vocab_size: int, n_bins: int = N_BINS):
        if vocab_size <= n_bins:
            raise ValueError(f"vocab_size ({vocab_size}) must exceed n_bins ({n_bins})")
        self.vocab_size, self.n_bins = vocab_size, n_bins
        self.bins = torch.linspace(-1.0, 1.0, n_bins)
        self.centers = (self.bins[:-1] + self.bins[1:]) / 2

    @property
    def first_id(self) -> int:
        """Smallest action token id (``vocab_size - n_bins``)."""
        return self.vocab_size - self.n_bins

    def encode(self, normalized: Tensor) -> Tensor:
        """Token ids (long, same shape) of actions already normalised to [-1, 1]."""
        normalized = torch.as_tensor(normalized, dtype=torch.float32)
        if not torch.isfinite(normalized).all() or normalized.abs().max() > 1 + 1e-6:
            raise ValueError("actions must be finite and normalised to [-1, 1] (see normalize())")
        return self.vocab_size - torch.bucketize(normalized.clamp(-1, 1), self.bins, right=True)

    def decode(self, token_ids: Tensor) -> Tensor:
        """Normalised actions in [-1, 1] (bin centres) from token ids."""
        index = (self.vocab_size - torch.as_tensor(token_ids) - 1).clamp(0, self.n_bins - 2)
        return self.centers[index]


# --------------------------------------------------------------------------------------------------
# Config and model
# --------------------------------------------------------------------------------------------------


class TinyOpenVLAConfig(PreTrainedConfig):
    """Configuration of :class:`TinyOpenVLAForActionPrediction` (``model_type="tiny_openvla"``).

    Args:
        text_config: the Llama LM's config (dict or ``LlamaConfig``).
        dino_config: DINOv2 tower config (dict or ``Dinov2Config``).
        siglip_config: SigLIP tower config (dict or ``SiglipVisionConfig``); ``None`` with
            ``use_fused_vision_backbone=False`` uses DINOv2 alone.
        use_fused_vision_backbone: concatenate DINOv2 and SigLIP patch features (OpenVLA's default).
        image_size: square image side in pixels; inputs of another size raise ``ValueError``.
        action_dim: action dimensions (4 for Meta-World).
        state_dim: state tokens placed after the image patches (0: none).
        n_action_bins: bins per dimension (256).
        norm_stats: ``{dataset: {"action": stats, "state": stats}}`` with OpenVLA's q01/q99 layout.
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
    """OpenVLA's ``fused-gelu-mlp``: fc1 (D→4D) GELU fc2 (4D→d) GELU fc3 (d→d)."""

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

    ``last_hidden_state[:, t]`` is the state from which text token ``t + 1`` is predicted: the
    patch positions are dropped, and BOS's slot holds the last patch's state.
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

    def _check_pixels(self, pixel_values: Tensor | None, batch: int) -> Tensor:
        size = self.config.image_size
        if pixel_values is None:
            raise ValueError("pixel_values are required (the policy acts from images)")
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(f"pixel_values must be [B, 3, {size}, {size}], got {tuple(pixel_values.shape)}")
        if pixel_values.shape[0] != batch:
            raise ValueError(f"pixel_values has batch {pixel_values.shape[0]}, input_ids has {batch}")
        return pixel_values

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, pixel_values: Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPast:
        batch, length = input_ids.shape
        pixel_values = self._check_pixels(pixel_values, batch)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        patches = self.projector(self.vision_backbone(pixel_values.to(self.projector.fc1.weight.dtype)))  # [B, P, d]
        n_patches = patches.shape[1]
        text = self.get_input_embeddings()(input_ids)
        # BOS is each row's first attended token (TRL left-pads prompts); patches go right after it.
        bos = attention_mask.long().argmax(dim=1)
        positions = torch.arange(length, device=input_ids.device)
        text_slot = positions[None] + n_patches * (positions[None] > bos[:, None])  # text token t's slot
        embeds = text.new_zeros(batch, length + n_patches, text.shape[-1])
        embeds = embeds.scatter(1, text_slot[..., None].expand_as(text), text)
        patch_slot = bos[:, None] + 1 + torch.arange(n_patches, device=input_ids.device)[None]
        embeds = embeds.scatter(1, patch_slot[..., None].expand_as(patches), patches)
        mask = attention_mask.new_ones(batch, length + n_patches).scatter(1, text_slot, attention_mask)
        hidden = self.language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        # the state predicting text token t+1 sits at token t's slot, except for BOS: at the last patch
        predict_slot = torch.where(positions[None] == bos[:, None], bos[:, None] + n_patches, text_slot)
        hidden = hidden.gather(1, predict_slot[..., None].expand(-1, -1, hidden.shape[-1]))
        return BaseModelOutputWithPast(last_hidden_state=hidden)


class TinyOpenVLAForActionPrediction(PreTrainedModel):
    """OpenVLA at tiny size: :class:`TinyOpenVLAModel` + an LM head over the vocabulary.

    ``forward(input_ids, attention_mask, pixel_values)`` returns text-aligned logits and, with
    ``labels``, the causal-LM loss on the non-``-100`` labels. :meth:`predict_action` is OpenVLA's
    entry point: image + instruction (+ state) → un-normalised continuous action.
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
        # trainers read sampling defaults from here; actions are sampled by sample_action_tokens
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )

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
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    @torch.no_grad()
    def sample_action_tokens(
        self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, *, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Sample ``action_dim`` tokens (greedy at ``temperature=0``); returns ``(ids, log_probs)``, each [B, A].

        Log-probs are of the full-vocabulary softmax at ``temperature`` (what a trainer recomputes).
        """
        ids, log_probs = [], []
        for _ in range(self.config.action_dim):
            logits = self(input_ids, attention_mask, pixel_values, logits_to_keep=1).logits[:, -1].float()
            if temperature > 0:
                dist = torch.distributions.Categorical(logits=logits / temperature)
                token = dist.sample()
                log_probs.append(dist.log_prob(token))
            else:
                token = logits.argmax(-1)
                log_probs.append(torch.log_softmax(logits, -1).gather(1, token[:, None])[:, 0])
            ids.append(token)
            input_ids = torch.cat([input_ids, token[:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(token), 1)], dim=1)
        return torch.stack(ids, 1), torch.stack(log_probs, 1)

    def action_stats(self, unnorm_key: str | None = None) -> dict:
        """The ``"action"`` statistics of ``unnorm_key`` (the only dataset when ``None``)."""
        stats = self.config.norm_stats
        if unnorm_key is None and len(stats) == 1:
            unnorm_key = next(iter(stats))
        if unnorm_key not in stats or "action" not in stats[unnorm_key]:
            raise ValueError(f"no action statistics for unnorm_key={unnorm_key!r}; available: {sorted(stats)}")
        return stats[unnorm_key]["action"]

    def predict_action(
        self, inputs: dict[str, Tensor], unnorm_key: str | None = None, *, temperature: float = 0.0
    ) -> np.ndarray:
        """OpenVLA's ``predict_action``: processor outputs → un-normalised actions ``[B, action_dim]``."""
        ids, _ = self.sample_action_tokens(
            inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], temperature=temperature
        )
        tokenizer = ActionTokenizer(self.config.text_config.vocab_size, self.config.n_action_bins)
        return unnormalize(tokenizer.decode(ids), self.action_stats(unnorm_key)).numpy()


# --------------------------------------------------------------------------------------------------
# Processor: tokenizer + image preprocessing + OpenVLA's prompt and state tokens
# --------------------------------------------------------------------------------------------------


class TinyOpenVLAProcessor:
    """Turns images, instructions and (optional) states into model inputs; saves next to the model.

    ``processor(images, instructions, states=None, unnorm_key=None)`` → ``input_ids``,
    ``attention_mask`` (``[BOS] + state tokens + prompt``) and ``pixel_values`` (``[B, 3, S, S]``,
    scaled to [-1, 1]). Images are uint8 ``[B, S, S, 3]`` (or one ``[S, S, 3]``).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, image_size: int, norm_stats: dict | None = None):
        self.tokenizer, self.image_size, self.norm_stats = tokenizer, image_size, norm_stats or {}
        self.action_tokenizer = ActionTokenizer(len(tokenizer))

    def pixel_values(self, images: np.ndarray | Tensor) -> Tensor:
        images = torch.as_tensor(np.asarray(images))
        images = images[None] if images.ndim == 3 else images
        size = self.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (size, size, 3):
            raise ValueError(f"images must be uint8 [B, {size}, {size}, 3], got {tuple(images.shape)}")
        pixels = images.permute(0, 3, 1, 2).float() / 255.0
        mean, std = torch.tensor(IMAGE_MEAN)[:, None, None], torch.tensor(IMAGE_STD)[:, None, None]
        return (pixels - mean) / std

    def state_tokens(self, states: np.ndarray | Tensor, unnorm_key: str | None = None) -> Tensor:
        """States (``[B, state_dim]``) → token ids through the ``"state"`` statistics (clipped)."""
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
        self.tokenizer.save_pretrained(path)
        config = {"processor_class": type(self).__name__, "image_size": self.image_size, "norm_stats": self.norm_stats}
        (Path(path) / PROCESSOR_FILE).write_text(json.dumps(config, indent=1))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> TinyOpenVLAProcessor:
        config = json.loads((Path(path) / PROCESSOR_FILE).read_text())
        return cls(PreTrainedTokenizerFast.from_pretrained(path), config["image_size"], config["norm_stats"])


def build_tokenizer(instructions: Sequence[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the prompts of ``instructions``, then 256 action tokens as the last ids."""
    prompts = [PROMPT.format(instruction=i) for i in instructions] * 20
    return build_bpe_tokenizer(vocab_size, prompts, added_tokens=[f"<act_{i}>" for i in range(N_BINS)])


def tiny_config(vocab_size: int, *, image_size: int = 64, patch_size: int = 8, vision_dim: int = 32,
                llm_dim: int = 96, llm_layers: int = 2, action_dim: int = 4, state_dim: int = 0,
                norm_stats: dict | None = None) -> TinyOpenVLAConfig:  # fmt: skip
    """A ≈0.5 M-parameter :class:`TinyOpenVLAConfig` (both vision towers, 2-layer Llama)."""
    vision = {"image_size": image_size, "patch_size": patch_size, "hidden_size": vision_dim,
              "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 2 * vision_dim}  # fmt: skip
    text = {"vocab_size": vocab_size, "hidden_size": llm_dim, "intermediate_size": 2 * llm_dim,
            "num_hidden_layers": llm_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}  # fmt: skip
    return TinyOpenVLAConfig(text_config=text, dino_config=vision, siglip_config=vision, image_size=image_size,
                             action_dim=action_dim, state_dim=state_dim, norm_stats=norm_stats,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip


def register_auto_classes() -> None:
    """Register ``tiny_openvla`` with ``AutoConfig`` and ``AutoModelForCausalLM`` (idempotent)."""
    try:
        AutoConfig.register(TinyOpenVLAConfig.model_type, TinyOpenVLAConfig)
        AutoModelForCausalLM.register(TinyOpenVLAConfig, TinyOpenVLAForActionPrediction)
    except ValueError:  # already registered
        pass


register_auto_classes()
