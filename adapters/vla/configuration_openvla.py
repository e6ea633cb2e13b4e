"""OpenVLA's `config.json` (`model_type="openvla"`) as a transformers config, and the tables it is checked against.

A published checkpoint's `config.json` (the whole folder is described in
`gipo_plugins.vla.conversion_openvla`) names the vision backbone (`vision_backbone_id`,
`timm_model_ids`, `image_sizes`, `timm_override_act_layers`, `use_fused_vision_backbone`), the
projector (`arch_specifier`) and the Llama LM (`text_config`, often only the fields that differ
from the defaults), with `norm_stats` per dataset and `n_action_bins`.

The architecture sizes come from the checkpoint's tensor shapes when it is loaded
(`gipo_plugins.vla.modeling_openvla`); attention heads, which no shape reveals, come from the timm
model id (`VISION_TOWERS`). Missing `text_config` fields take transformers-4.40's `LlamaConfig`
defaults (= Llama-2-7B, `LLAMA_DEFAULTS`), which is what the remote code used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import LlamaConfig, PreTrainedConfig

from gipo_plugins.vla.actions import N_BINS

EMPTY_TOKEN = "▁"
"""OpenVLA appends this token (id 29871 in Llama-2) after the prompt, before the action tokens."""
EMPTY_TOKEN_ID = 29871
"""The id OpenVLA's `predict_action` hard-codes for `EMPTY_TOKEN` (Llama-2's)."""


@dataclass(frozen=True)
class TowerSpec:
    """What a timm model id fixes about a vision tower beyond its tensor shapes."""

    family: str  # "dinov2" or "siglip"
    num_heads: int
    registers: int = 0  # DINOv2 register tokens (dropped with the class token from the features)
    # full-size dimensions, used when a model is built from its config alone
    hidden_size: int = 0
    depth: int = 0
    mlp_size: int = 0
    patch_size: int = 14


VISION_TOWERS = {
    "vit_large_patch14_reg4_dinov2": TowerSpec("dinov2", 16, 4, 1024, 24, 4096),
    "vit_so400m_patch14_siglip_224": TowerSpec("siglip", 16, 0, 1152, 27, 4304),
    "vit_so400m_patch14_siglip_384": TowerSpec("siglip", 16, 0, 1152, 27, 4304),
}
"""Supported timm ids (the tag after `.` is ignored): OpenVLA's DINOv2 ViT-L/14-reg4 and SigLIP-so400m/14."""

VISION_BACKBONES = {
    "dinosiglip-vit-so-224px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"], [224, 224]),
    "dinosiglip-vit-so-384px": (["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_384"], [384, 384]),
    "dinov2-vit-l": (["vit_large_patch14_reg4_dinov2.lvd142m"], [224]),
    "siglip-vit-so400m": (["vit_so400m_patch14_siglip_224"], [224]),
    "siglip-vit-so400m-384px": (["vit_so400m_patch14_siglip_384"], [384]),
}
"""Prismatic vision backbone ids this loader supports → (timm ids, image sizes); OpenVLA-7B uses the first."""

LLAMA_DEFAULTS = {
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "attention_bias": False,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}  # fmt: skip
"""transformers-4.40 `LlamaConfig` defaults (Llama-2-7B; RoPE θ = 10⁴), filled into a sparse `text_config`."""

_ACTIVATIONS = {None: "gelu", "gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_tanh": "gelu_pytorch_tanh"}


def _tower_spec(timm_id: str) -> TowerSpec:
    spec = VISION_TOWERS.get(timm_id.split(".")[0])
    if spec is None:
        raise ValueError(f"unsupported timm_model_ids entry {timm_id!r}; supported: {sorted(VISION_TOWERS)}")
    return spec


class OpenVLAConfig(PreTrainedConfig):
    """OpenVLA's `config.json` (`model_type="openvla"`), with OpenVLA-7B's values as defaults.

    Args:
        vision_backbone_id: Prismatic vision backbone (`VISION_BACKBONES`), e.g. `"dinosiglip-vit-so-224px"`.
        llm_backbone_id: Prismatic LLM id (informational; the LM is built from `text_config`, a Llama).
        arch_specifier: projector, `"...gelu-mlp"` (`fc1, fc2`) or `"...fused-gelu-mlp"` (`fc1..fc3`).
        use_fused_vision_backbone: two towers with channel-stacked pixels (default: from the backbone id).
        image_sizes: square image side of each tower (default: from the backbone id).
        timm_model_ids: timm id of each tower (default: from the backbone id).
        timm_override_act_layers: activation override per tower (`null`: timm's exact GELU).
        image_resize_strategy: how the processor resizes (`"resize-naive"` for OpenVLA).
        hf_llm_id: the LM's hub id (informational).
        llm_max_length: LM context length (informational).
        text_config: the Llama config (dict or `LlamaConfig`); missing fields take `LLAMA_DEFAULTS`.
        pad_token_id: padding token (`<PAD>`, 32000 in OpenVLA-7B).
        pad_to_multiple_of: embedding rows were padded to a multiple of this; the action vocabulary
            ends at `text_config.vocab_size - pad_to_multiple_of`.
        output_projector_states: kept for the file format (unused).
        norm_stats: `{dataset: {"action": {"q01", "q99", "mask", ...}, ...}}`.
        n_action_bins: bins per action dimension (256).
        empty_token_id: id of `"▁"`, which `predict_action` appends to prompts lacking it (not in
            OpenVLA's file; `None`: OpenVLA's hard-coded 29871). `load_openvla` fills it from the
            checkpoint's `tokenizer.json` and `save_pretrained` records it.

    Raises:
        ValueError: an unsupported `vision_backbone_id`, `timm_model_ids` entry, `arch_specifier`
            or `text_config.model_type`, or lists of different lengths.
    """

    model_type = "openvla"

    def __init__(
        self,
        vision_backbone_id: str = "dinosiglip-vit-so-224px",
        llm_backbone_id: str = "llama2-7b-pure",
        arch_specifier: str = "no-align+fused-gelu-mlp",
        use_fused_vision_backbone: bool | None = None,
        image_sizes: Sequence[int] | None = None,
        timm_model_ids: Sequence[str] | None = None,
        timm_override_act_layers: Sequence[str | None] | None = None,
        image_resize_strategy: str = "resize-naive",
        hf_llm_id: str = "meta-llama/Llama-2-7b-hf",
        llm_max_length: int = 2048,
        text_config: dict | LlamaConfig | None = None,
        pad_token_id: int = 32000,
        pad_to_multiple_of: int = 64,
        output_projector_states: bool = False,
        norm_stats: dict | None = None,
        n_action_bins: int = N_BINS,
        empty_token_id: int | None = None,
        **kwargs,
    ):
        if vision_backbone_id not in VISION_BACKBONES:
            raise ValueError(f"unsupported vision_backbone_id {vision_backbone_id!r}; supported: "
                             f"{sorted(VISION_BACKBONES)}")  # fmt: skip
        default_ids, default_sizes = VISION_BACKBONES[vision_backbone_id]
        self.vision_backbone_id, self.llm_backbone_id, self.arch_specifier = (
            vision_backbone_id, llm_backbone_id, arch_specifier
        )  # fmt: skip
        self.timm_model_ids = list(timm_model_ids or default_ids)
        self.image_sizes = [int(s) for s in (image_sizes or default_sizes)]
        self.timm_override_act_layers = list(timm_override_act_layers or [None] * len(self.timm_model_ids))
        self.use_fused_vision_backbone = (
            len(self.timm_model_ids) == 2 if use_fused_vision_backbone is None else use_fused_vision_backbone
        )
        towers = 2 if self.use_fused_vision_backbone else 1
        if not len(self.timm_model_ids) == len(self.image_sizes) == len(self.timm_override_act_layers) == towers:
            raise ValueError(f"timm_model_ids, image_sizes and timm_override_act_layers need {towers} entries "
                             f"(use_fused_vision_backbone={self.use_fused_vision_backbone})")  # fmt: skip
        if len(set(self.image_sizes)) != 1:
            raise ValueError(f"image_sizes must be equal for both towers, got {self.image_sizes}")
        for timm_id, act in zip(self.timm_model_ids, self.timm_override_act_layers, strict=True):
            _tower_spec(timm_id)
            if act not in _ACTIVATIONS:
                raise ValueError(f"unsupported timm_override_act_layers entry {act!r}; supported: {list(_ACTIVATIONS)}")
        fused_projector = arch_specifier.endswith("fused-gelu-mlp")
        if not arch_specifier.endswith("gelu-mlp") or fused_projector != (towers == 2):
            raise ValueError(f"unsupported arch_specifier {arch_specifier!r} for {towers} tower(s): "
                             "OpenVLA uses 'no-align+fused-gelu-mlp' (fused) or 'no-align+gelu-mlp'")  # fmt: skip
        if isinstance(text_config, LlamaConfig):
            self.text_config = text_config
        else:
            text = dict(text_config or {})
            if text.get("model_type", "llama") != "llama":
                raise ValueError(f"text_config.model_type must be 'llama', got {text['model_type']!r}")
            text.pop("model_type", None)
            self.text_config = LlamaConfig(**{**LLAMA_DEFAULTS, "pad_token_id": pad_token_id, **text})
        self.image_resize_strategy, self.hf_llm_id = image_resize_strategy, hf_llm_id
        self.llm_max_length = llm_max_length
        self.pad_to_multiple_of, self.output_projector_states = pad_to_multiple_of, output_projector_states
        self.norm_stats, self.n_action_bins, self.empty_token_id = norm_stats or {}, n_action_bins, empty_token_id
        kwargs.setdefault("bos_token_id", self.text_config.bos_token_id)
        kwargs.setdefault("eos_token_id", self.text_config.eos_token_id)
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def image_size(self) -> int:
        """The square image side every tower takes."""
        return self.image_sizes[0]
