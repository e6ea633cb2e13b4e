r"""OpenVLA's published checkpoint format, loaded into maintained transformers modules (no remote code).

A published OpenVLA checkpoint (e.g. `openvla/openvla-7b`) is a folder with

- `config.json` as OpenVLA writes it: `model_type: "openvla"`, `vision_backbone_id`,
  `llm_backbone_id`, `arch_specifier`, `use_fused_vision_backbone`, `image_sizes`,
  `timm_model_ids`, `timm_override_act_layers`, `hf_llm_id`, `pad_token_id`,
  `pad_to_multiple_of`, `text_config` (a Llama config, often only the fields that differ from
  the defaults), `norm_stats` per dataset, `n_action_bins` and an `auto_map` to the
  `trust_remote_code` classes;
- safetensors weights, one file or shards with `model.safetensors.index.json`, whose names are
  those of the remote-code model: timm ViTs under `vision_backbone.featurizer.*` (DINOv2 with 4
  registers) and `vision_backbone.fused_featurizer.*` (SigLIP), the projector
  `projector.fc1`..`fc3` and the Llama LM `language_model.*`;
- `preprocessor_config.json` (two image normalisations, channel-stacked), the Llama tokenizer
  (`<PAD>` added as id 32000, embeddings padded to a multiple of 64) and optionally
  `dataset_statistics.json`.

`load_openvla` (also `OpenVLAForActionPrediction.from_pretrained`) builds the same network from
transformers' own `Dinov2WithRegistersModel`, `SiglipVisionModel` and `LlamaForCausalLM` and maps
the weights with `published_to_transformers` (renames, plus: timm's fused `qkv` is split into
q/k/v; timm's DINOv2 position table has no class-token row, so a zero row is prepended — timm
folded that row into `cls_token`; the remote code renamed LayerScale's `gamma` to
`scale_factor`). SigLIP's attention-pool head is never used by OpenVLA (features come from the
second-to-last block); its tensors are carried verbatim so that `save_pretrained` writes the
published layout back complete (`transformers_to_published`). Every tensor must be consumed and
every parameter filled, or loading raises a `ValueError`. A saved folder has no `auto_map`: the
remote-code files it would point to are not written (that code pins transformers 4.40 and timm
0.9), so it loads with `load_openvla` or the Auto classes (after `import gipo_plugins.vla`), not
with OpenVLA's `trust_remote_code` loader.

Why transformers' modules and not timm: the names are timm's, but timm needs torchvision, whose
PyPI build must match the installed torch build exactly (beside the CPU build of torch here it
fails to import), while transformers is already pinned by the `[trl]` extra and its modules bring
SDPA attention, bf16 and gradient checkpointing. The numerics are matched to timm's: exact GELU
(OpenVLA's `timm_override_act_layers` is `[null, null]`, timm's default), LayerNorm
$\epsilon = 10^{-6}$, DINOv2's LayerScale, features of the second-to-last block without the final
norm and without the class/register tokens.

The architecture sizes come from the checkpoint's tensor shapes (read from the safetensors
headers); attention heads, which no shape reveals, come from the timm model id
(`VISION_TOWERS`). Missing `text_config` fields take transformers-4.40's `LlamaConfig` defaults
(= Llama-2-7B), which is what the remote code used.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from gipo_plugins.vla.actions import N_BINS, PROMPT
from gipo_plugins.vla.policy import (
    ActionPredictionMixin,
    check_pixel_values,
    next_token_loss,
    register_auto_classes,
    splice_patches,
)

WEIGHTS_INDEX = "model.safetensors.index.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"
STATISTICS_FILE = "dataset_statistics.json"
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


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TowerDims:
    """A vision tower's sizes, from a checkpoint's shapes or a `TowerSpec`'s full size."""

    hidden_size: int
    depth: int
    mlp_size: int
    patch_size: int


def _tower_config(spec: TowerSpec, dims: TowerDims, image_size: int, act: str | None) -> PreTrainedConfig:
    common = {"hidden_size": dims.hidden_size, "num_hidden_layers": dims.depth, "num_attention_heads": spec.num_heads,
              "image_size": image_size, "patch_size": dims.patch_size, "layer_norm_eps": 1e-6,
              "hidden_act": _ACTIVATIONS[act]}  # fmt: skip
    if dims.hidden_size % spec.num_heads:
        raise ValueError(f"a {spec.family} tower of width {dims.hidden_size} cannot have {spec.num_heads} heads")
    if spec.family == "dinov2":
        if dims.mlp_size % dims.hidden_size:  # transformers' DINOv2 takes an integer MLP ratio
            raise ValueError(f"a DINOv2 tower needs an MLP width that is a multiple of {dims.hidden_size}, "
                             f"got {dims.mlp_size}")  # fmt: skip
        return Dinov2WithRegistersConfig(
            **common, mlp_ratio=dims.mlp_size // dims.hidden_size, num_register_tokens=spec.registers,
            layerscale_value=1e-5, qkv_bias=True,
        )  # fmt: skip
    return SiglipVisionConfig(**common, intermediate_size=dims.mlp_size, vision_use_head=False)


class VisionBackbone(nn.Module):
    """OpenVLA's vision backbone: patch features of each tower's second-to-last block, concatenated.

    `pixel_values` are channel-stacked, `[B, 3 × towers, S, S]` (each tower its own normalisation).
    """

    def __init__(self, config: OpenVLAConfig, dims: Sequence[TowerDims]):
        super().__init__()
        specs = [_tower_spec(i) for i in config.timm_model_ids]
        towers = [
            (Dinov2WithRegistersModel if s.family == "dinov2" else SiglipVisionModel)(
                _tower_config(s, d, config.image_size, act)
            )
            for s, d, act in zip(specs, dims, config.timm_override_act_layers, strict=True)
        ]
        self.featurizer = towers[0]
        self.fused_featurizer = towers[1] if len(towers) == 2 else None
        self._prefix_tokens = [(1 + s.registers) if s.family == "dinov2" else 0 for s in specs]
        self.embed_dim = sum(d.hidden_size for d in dims)

    def forward(self, pixel_values: Tensor) -> Tensor:
        towers = [self.featurizer] + ([self.fused_featurizer] if self.fused_featurizer is not None else [])
        images = pixel_values.split(3, dim=1)
        features = [
            tower(image, output_hidden_states=True).hidden_states[-2][:, prefix:]
            for tower, image, prefix in zip(towers, images, self._prefix_tokens, strict=True)
        ]
        return torch.cat(features, dim=-1)


class PrismaticProjector(nn.Module):
    """`fused-gelu-mlp`: fc1 (D→4D) GELU fc2 (4D→d) GELU fc3 (d→d); `gelu-mlp`: fc1 (D→d) GELU fc2 (d→d)."""

    def __init__(self, fused: bool, vision_dim: int, llm_dim: int):
        super().__init__()
        self.fused = fused
        if fused:
            self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
            self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
            self.fc3 = nn.Linear(llm_dim, llm_dim)
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim)
            self.fc2 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, patches: Tensor) -> Tensor:
        x = self.fc2(self.act(self.fc1(patches)))
        return self.fc3(self.act(x)) if self.fused else x


class OpenVLAForActionPrediction(ActionPredictionMixin, PreTrainedModel):
    """OpenVLA on transformers modules, loaded from and saved to OpenVLA's published format; a `VLAPolicy`.

    `forward(input_ids, attention_mask, pixel_values)` returns text-aligned logits (`logits[:, t]`
    predicts `input_ids[:, t + 1]`; the patch positions are dropped) and, with `labels`, the
    causal-LM loss on the non-`-100` labels. Rows may be left-padded (the patches go right after
    each row's BOS), so batches of any size work, where the remote code takes one prompt at a time.

    Args:
        config: the `OpenVLAConfig`.
        tower_dims: sizes of each vision tower (default: the full size of the timm id).
        passthrough_shapes: shapes of published tensors the model never uses but carries verbatim
            (SigLIP's attention-pool head), by published name.
    """

    config_class = OpenVLAConfig
    base_model_prefix = "model"  # no such attribute: `base_model` is the model itself
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ("LlamaDecoderLayer",)

    def __init__(self, config: OpenVLAConfig, tower_dims: Sequence[TowerDims] | None = None,
                 passthrough_shapes: dict[str, Sequence[int]] | None = None):  # fmt: skip
        super().__init__(config)
        if tower_dims is None:
            specs = [_tower_spec(i) for i in config.timm_model_ids]
            tower_dims = [TowerDims(s.hidden_size, s.depth, s.mlp_size, s.patch_size) for s in specs]
        self.tower_dims = list(tower_dims)
        self.vision_backbone = VisionBackbone(config, self.tower_dims)
        self.projector = PrismaticProjector(
            config.use_fused_vision_backbone, self.vision_backbone.embed_dim, config.text_config.hidden_size
        )
        self.language_model = LlamaForCausalLM(config.text_config)
        self.passthrough = nn.Module()  # verbatim tensors, by published name with "." → "__"
        for name, shape in (passthrough_shapes or {}).items():
            self.passthrough.register_buffer(name.replace(".", "__"), torch.zeros(tuple(shape)))
        self.post_init()
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )

    @property
    def _decode_vocab_size(self) -> int:
        return self.config.text_config.vocab_size - self.config.pad_to_multiple_of

    @property
    def _empty_token_id(self) -> int:
        empty = getattr(self.config, "empty_token_id", None)
        return EMPTY_TOKEN_ID if empty is None else empty

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        labels: Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        pixel_values = check_pixel_values(
            pixel_values, input_ids.shape[0], 3 * len(self.tower_dims), self.config.image_size
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        dtype = self.projector.fc1.weight.dtype
        patches = self.projector(self.vision_backbone(pixel_values.to(dtype)))
        embeds, mask, predict_slot = splice_patches(self.get_input_embeddings()(input_ids), patches, attention_mask)
        hidden = self.language_model.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        hidden = hidden.gather(1, predict_slot[..., None].expand(-1, -1, hidden.shape[-1]))
        logits = self.language_model.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        return CausalLMOutputWithPast(loss=next_token_loss(logits, labels), logits=logits)

    # ----------------------------------------------------------------------------- published format

    def published_state_dict(self) -> dict[str, Tensor]:
        """The weights under OpenVLA's published names (see `transformers_to_published`)."""
        return transformers_to_published(self.state_dict(), self.config)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """`nn.Module.load_state_dict`, also accepting OpenVLA's published names (converted first)."""
        if any(k.startswith("vision_backbone.featurizer.blocks.") for k in state_dict):
            state_dict = dict(published_to_transformers(state_dict.items(), self.config))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def save_pretrained(self, save_directory: str | Path, *, state_dict: dict | None = None,
                        max_shard_size: int = 5 * 2**30, is_main_process: bool = True, **kwargs) -> None:  # fmt: skip
        """Write `config.json` and safetensors weights (sharded past `max_shard_size` bytes) in OpenVLA's layout.

        The checkpoint's `auto_map` (to OpenVLA's remote-code files) is left out of the saved
        `config.json`: those files are not written (that code pins transformers 4.40 and timm 0.9),
        so the saved folder loads with `load_openvla` / the Auto classes after importing
        `gipo_plugins.vla`, not with `trust_remote_code`.
        """
        if not is_main_process:
            return
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        state = transformers_to_published(state_dict if state_dict is not None else self.state_dict(), self.config)
        self.config.architectures = ["OpenVLAForActionPrediction"]
        config = copy.deepcopy(self.config)
        if hasattr(config, "auto_map"):
            del config.auto_map
        config.save_pretrained(path)
        self.generation_config.save_pretrained(path)
        save_published_weights(state, path, max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args,
                        **kwargs) -> OpenVLAForActionPrediction | tuple[OpenVLAForActionPrediction, dict]:  # fmt: skip
        """`load_openvla` behind `PreTrainedModel.from_pretrained`'s options (also reached through the Auto classes).

        Honoured: `subfolder`; `dtype` (or `torch_dtype`; `"auto"` = as stored); `device_map` as one
        device (`"cpu"`, `"cuda:0"`, an index, or `{"": device}`); `config` (an `OpenVLAConfig`, e.g.
        the one the Auto classes read; `dataset_statistics.json` is still merged in);
        `output_loading_info` (all lists empty: anything missing or unexpected raises);
        `generation_config`. Ignored as harmless: the Hub options (`cache_dir`, `force_download`,
        `local_files_only`, `proxies`, `token`, `revision`: the folder is read locally),
        `trust_remote_code` (the local code is used either way), `adapter_kwargs` without an
        adapter, the options transformers itself no longer uses (`low_cpu_mem_usage`, ...),
        `disable_mmap`, and transformers' private bookkeeping (`_from_auto`, `_from_pipeline`, any
        `_from_*`, `_commit_hash`). Everything else is accepted only at its default value.

        Raises:
            ValueError: naming each option that cannot be honoured (e.g. `device_map="auto"`,
                `quantization_config`, `variant`, `use_safetensors=False`, `state_dict`,
                `attn_implementation` other than `"sdpa"`, or a config override such as
                `output_attentions=True`), positional model arguments, or what `load_openvla` raises.
        """
        if model_args:
            raise ValueError(f"positional model arguments are not supported by OpenVLA's loader, got {len(model_args)}")
        options, unsupported = _from_pretrained_options(kwargs)
        if unsupported:
            raise ValueError(f"unsupported from_pretrained options for OpenVLA: {', '.join(unsupported)} (honoured: "
                             f"{', '.join(_HONOURED)}; see OpenVLAForActionPrediction.from_pretrained)")  # fmt: skip
        path = Path(pretrained_model_name_or_path)
        model = load_openvla(path / options["subfolder"] if options["subfolder"] else path, dtype=options["dtype"],
                             device=options["device"], config=options["config"])  # fmt: skip
        if options["generation_config"] is not None:
            model.generation_config = options["generation_config"]
        if options["output_loading_info"]:
            return model, {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
        return model


_HONOURED = ("subfolder", "dtype", "torch_dtype", "device_map", "config", "output_loading_info", "generation_config")
_HARMLESS = frozenset({
    "cache_dir", "force_download", "local_files_only", "proxies", "token", "revision", "trust_remote_code",
    "code_revision", "disable_mmap", "mirror", "_fast_init", "low_cpu_mem_usage", "from_tf", "from_flax",
    "offload_state_dict", "resume_download", "weights_only", "_commit_hash",
})  # fmt: skip
"""`from_pretrained` options that do not change what a local OpenVLA folder loads into (any value)."""
_DEFAULTS = {
    "ignore_mismatched_sizes": False, "use_safetensors": (None, True), "state_dict": None,
    "variant": None, "quantization_config": None, "gguf_file": None, "max_memory": None, "offload_folder": None,
    "offload_buffers": False, "key_mapping": None, "tp_plan": None, "tp_size": None, "distributed_config": None,
    "device_mesh": None, "use_kernels": (None, False), "kernel_config": None, "kernels_mode": None,
    "allow_all_kernels": False, "adapter_name": "default", "fusion_config": None, "tqdm_class": None,
    "experts_implementation": None,
}  # fmt: skip
"""Options the loader cannot honour, accepted at these values only (transformers' defaults)."""
_SINGLE_DEVICE_MAP = (str, int, torch.device)
_DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def _from_pretrained_options(kwargs: dict) -> tuple[dict, list[str]]:
    """Split `from_pretrained` keyword arguments into what `load_openvla` takes and the names it cannot honour."""
    kwargs = dict(kwargs)
    unsupported = []
    dtype = kwargs.pop("dtype", None)
    torch_dtype = kwargs.pop("torch_dtype", None)  # transformers' older name, still accepted
    dtype = dtype if dtype is not None else torch_dtype
    device_map = kwargs.pop("device_map", None)
    if isinstance(device_map, dict) and set(device_map) == {""}:
        device_map = device_map[""]
    device = None
    if device_map is not None:
        if device_map in _DEVICE_MAP_STRATEGIES or not isinstance(device_map, _SINGLE_DEVICE_MAP):
            unsupported.append(f"'device_map'={device_map!r} (pass one device, e.g. 'cuda:0')")
        else:
            device = device_map
    config = kwargs.pop("config", None)
    if config is not None and not isinstance(config, OpenVLAConfig):
        unsupported.append(f"'config'={config!r} (an OpenVLAConfig is honoured)")
        config = None
    if config is not None and getattr(config, "_attn_implementation_internal", None) not in (None, "sdpa"):
        unsupported.append(f"'attn_implementation'={config._attn_implementation_internal!r} (the towers and the "
                           "LM use 'sdpa')")  # fmt: skip
    attn = kwargs.pop("attn_implementation", None)
    if attn not in (None, "sdpa"):
        unsupported.append(f"'attn_implementation'={attn!r} (the towers and the LM use 'sdpa')")
    adapter_kwargs = kwargs.pop("adapter_kwargs", None) or {}
    if "_adapter_model_path" in adapter_kwargs:  # the Auto classes found a PEFT adapter
        unsupported.append("'adapter_kwargs' (a PEFT adapter)")
    options = {"dtype": None if dtype == "auto" else dtype, "device": device, "config": config,
               "subfolder": kwargs.pop("subfolder", None) or "",
               "output_loading_info": bool(kwargs.pop("output_loading_info", False)),
               "generation_config": kwargs.pop("generation_config", None)}  # fmt: skip
    for name, value in kwargs.items():
        if name in _HARMLESS or name.startswith("_from_"):
            continue
        if name in _DEFAULTS:
            allowed = _DEFAULTS[name] if isinstance(_DEFAULTS[name], tuple) else (_DEFAULTS[name],)
            if any(value is a or (type(value) is type(a) and value == a) for a in allowed):
                continue
        elif name.startswith("_") and (value is None or value is False):  # other private bookkeeping, at its default
            continue
        unsupported.append(repr(name))
    return options, unsupported


# --------------------------------------------------------------------------------------------------
# Published names ↔ transformers names
# --------------------------------------------------------------------------------------------------

_DINO = "vision_backbone.featurizer."
_SIGLIP = "vision_backbone.fused_featurizer."
_PASSTHROUGH = re.compile(r"vision_backbone\.(featurizer|fused_featurizer)\.attn_pool\..+")


def _tower_prefixes(config: OpenVLAConfig) -> dict[str, str]:
    """Published prefix → family of each tower."""
    families = [_tower_spec(i).family for i in config.timm_model_ids]
    return dict(zip([_DINO, _SIGLIP][: len(families)], families, strict=True))


def _block_names(family: str) -> dict[str, str]:
    """timm block sub-module → transformers layer sub-module (q/k/v come from `attn.qkv`)."""
    if family == "dinov2":
        return {"norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
                "attn.proj": "attention.o_proj", "ls1.scale_factor": "layer_scale1.lambda1",
                "ls1.gamma": "layer_scale1.lambda1", "ls2.scale_factor": "layer_scale2.lambda1",
                "ls2.gamma": "layer_scale2.lambda1"}  # fmt: skip
    return {"norm1": "layer_norm1", "norm2": "layer_norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
            "attn.proj": "self_attn.out_proj"}  # fmt: skip


def _qkv_names(family: str) -> tuple[str, str, str]:
    return ("attention.q_proj", "attention.k_proj", "attention.v_proj") if family == "dinov2" else (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")  # fmt: skip


def _layers(family: str) -> str:
    return "encoder.layer" if family == "dinov2" else "encoder.layers"


def _tower_tensor_to_transformers(prefix: str, family: str, name: str, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
    """One published tensor of a tower (name without prefix) → transformers names and tensors."""
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias|scale_factor|gamma)", name)
    if block:
        index, module, kind = block.groups()
        layer = f"{prefix}{_layers(family)}.{index}."
        if module == "attn.qkv":
            for part, target in zip(tensor.chunk(3, dim=0), _qkv_names(family), strict=True):
                yield f"{layer}{target}.{kind}", part
            return
        key = module if kind in ("weight", "bias") else f"{module}.{kind}"
        target = _block_names(family).get(key)
        if target is not None:
            yield f"{layer}{target}" + (f".{kind}" if kind in ("weight", "bias") else ""), tensor
            return
    elif family == "dinov2":
        simple = {"cls_token": "embeddings.cls_token", "reg_token": "embeddings.register_tokens",
                  "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
                  "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
                  "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}  # fmt: skip
        if name == "pos_embed":  # timm: patches only (the class-token row was folded into cls_token)
            cls_row = tensor.new_zeros(1, 1, tensor.shape[-1])
            yield f"{prefix}embeddings.position_embeddings", torch.cat([cls_row, tensor], 1)
            return
        if name in simple:
            yield prefix + simple[name], tensor
            return
    else:
        simple = {"patch_embed.proj.weight": "embeddings.patch_embedding.weight",
                  "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
                  "norm.weight": "post_layernorm.weight", "norm.bias": "post_layernorm.bias"}  # fmt: skip
        if name == "pos_embed":
            yield f"{prefix}embeddings.position_embedding.weight", tensor[0]
            return
        if name in simple:
            yield prefix + simple[name], tensor
            return
    raise ValueError(f"unexpected tensor {prefix}{name} in an OpenVLA checkpoint ({family} tower)")


def published_to_transformers(
    tensors: Iterator[tuple[str, Tensor]] | Sequence[tuple[str, Tensor]], config: OpenVLAConfig
) -> Iterator[tuple[str, Tensor]]:
    """Map `(published name, tensor)` pairs to this module's names (one tensor may become three).

    Raises:
        ValueError: a name that does not belong to OpenVLA's layout.
    """
    prefixes = _tower_prefixes(config)
    for name, tensor in tensors:
        if _PASSTHROUGH.fullmatch(name):
            yield "passthrough." + name.replace(".", "__"), tensor
        elif name.startswith(("projector.", "language_model.")):
            yield name, tensor
        else:
            prefix = next((p for p in prefixes if name.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unexpected tensor {name} in an OpenVLA checkpoint")
            yield from _tower_tensor_to_transformers(prefix, prefixes[prefix], name.removeprefix(prefix), tensor)


def transformers_to_published(state: dict[str, Tensor], config: OpenVLAConfig) -> dict[str, Tensor]:
    """Inverse of `published_to_transformers` for a whole state dict.

    DINOv2's class-token position row is folded back into `cls_token` (the forward pass is
    unchanged); the DINOv2 mask token, unused by OpenVLA, is dropped.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.startswith("passthrough."):
            out[name.removeprefix("passthrough.").replace("__", ".")] = tensor
        elif name.startswith(("projector.", "language_model.")):
            out[name] = tensor
    for prefix, family in _tower_prefixes(config).items():
        tower = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        layers = _layers(family)
        depth = 1 + max(int(k.split(".")[2]) for k in tower if k.startswith(layers + "."))
        for i in range(depth):
            layer = f"{layers}.{i}."
            q, k, v = (tower[f"{layer}{n}.weight"] for n in _qkv_names(family))
            out[f"{prefix}blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])
            q, k, v = (tower[f"{layer}{n}.bias"] for n in _qkv_names(family))
            out[f"{prefix}blocks.{i}.attn.qkv.bias"] = torch.cat([q, k, v])
            for source, target in _block_names(family).items():
                if source.endswith(".gamma"):
                    continue  # written as scale_factor, the remote code's name
                if source.endswith(".scale_factor"):
                    out[f"{prefix}blocks.{i}.{source}"] = tower[layer + target]
                    continue
                for kind in ("weight", "bias"):
                    out[f"{prefix}blocks.{i}.{source}.{kind}"] = tower[f"{layer}{target}.{kind}"]
        if family == "dinov2":
            positions = tower["embeddings.position_embeddings"]
            out[f"{prefix}cls_token"] = tower["embeddings.cls_token"] + positions[:, :1]
            out[f"{prefix}reg_token"] = tower["embeddings.register_tokens"]
            out[f"{prefix}pos_embed"] = positions[:, 1:]
            out[f"{prefix}patch_embed.proj.weight"] = tower["embeddings.patch_embeddings.projection.weight"]
            out[f"{prefix}patch_embed.proj.bias"] = tower["embeddings.patch_embeddings.projection.bias"]
            out[f"{prefix}norm.weight"], out[f"{prefix}norm.bias"] = tower["layernorm.weight"], tower["layernorm.bias"]
        else:
            out[f"{prefix}pos_embed"] = tower["embeddings.position_embedding.weight"][None]
            out[f"{prefix}patch_embed.proj.weight"] = tower["embeddings.patch_embedding.weight"]
            out[f"{prefix}patch_embed.proj.bias"] = tower["embeddings.patch_embedding.bias"]
            out[f"{prefix}norm.weight"] = tower["post_layernorm.weight"]
            out[f"{prefix}norm.bias"] = tower["post_layernorm.bias"]
    return out


# --------------------------------------------------------------------------------------------------
# Reading and writing checkpoints
# --------------------------------------------------------------------------------------------------


def _weight_files(path: Path) -> list[Path]:
    if (path / WEIGHTS_INDEX).exists():
        index = json.loads((path / WEIGHTS_INDEX).read_text())
        return [path / f for f in sorted(set(index["weight_map"].values()))]
    if (path / WEIGHTS_FILE).exists():
        return [path / WEIGHTS_FILE]
    raise ValueError(f"no {WEIGHTS_FILE} or {WEIGHTS_INDEX} in {path} (OpenVLA checkpoints are safetensors)")


def _shapes(files: Sequence[Path]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def _tower_dims(shapes: dict[str, tuple[int, ...]], prefix: str) -> TowerDims:
    try:
        hidden, _, patch, _ = shapes[f"{prefix}patch_embed.proj.weight"]
        depth = 1 + max(int(k.removeprefix(prefix).split(".")[1]) for k in shapes if k.startswith(f"{prefix}blocks."))
        mlp = shapes[f"{prefix}blocks.0.mlp.fc1.weight"][0]
    except (KeyError, ValueError) as error:
        raise ValueError(f"the checkpoint has no complete vision tower under {prefix}*") from error
    return TowerDims(hidden, depth, mlp, patch)


def read_config(path: str | Path) -> OpenVLAConfig:
    """`config.json` (+ `dataset_statistics.json`, whose datasets win) of a published checkpoint.

    Raises:
        ValueError: no `config.json`, or `model_type` is not `"openvla"`.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise ValueError(f"no config.json in {path}")
    raw = json.loads((path / "config.json").read_text())
    if raw.get("model_type") != "openvla":
        raise ValueError(f"config.json model_type must be 'openvla', got {raw.get('model_type')!r}")
    raw.pop("model_type")
    if (path / STATISTICS_FILE).exists():
        raw["norm_stats"] = {**(raw.get("norm_stats") or {}), **json.loads((path / STATISTICS_FILE).read_text())}
    return OpenVLAConfig(**raw)


def _tokenizer_token_id(path: Path, token: str) -> int | None:
    """The id of `token` in `path`'s `tokenizer.json` (`None` without the file or the token)."""
    if not (path / "tokenizer.json").exists():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json")).token_to_id(token)


def _with_statistics(config: OpenVLAConfig, path: Path) -> OpenVLAConfig:
    """`config` with the datasets of `path`'s `dataset_statistics.json` (if any) merged in, as `read_config` does."""
    if (path / STATISTICS_FILE).exists():
        config.norm_stats = {**(config.norm_stats or {}), **json.loads((path / STATISTICS_FILE).read_text())}
    return config


def load_openvla(path: str | Path, *, dtype: torch.dtype | str | None = None,
                 device: str | torch.device | None = None,
                 config: OpenVLAConfig | None = None) -> OpenVLAForActionPrediction:  # fmt: skip
    """Load a checkpoint in OpenVLA's published format (see the module documentation).

    Builds the model without allocating weights, then streams each safetensors file through
    `published_to_transformers`. Peak memory is about one shard beyond the model.

    Args:
        path: the checkpoint folder.
        dtype: parameter dtype (default: as stored, e.g. bf16 for OpenVLA-7B); buffers such as
            RoPE's frequencies keep their own dtype.
        device: where the model goes (default: CPU).
        config: use this configuration instead of the folder's `config.json` (a copy;
            `dataset_statistics.json` is merged in as by `read_config`).

    Raises:
        ValueError: not an OpenVLA checkpoint, unexpected or missing tensors, or mismatched shapes.
    """
    from accelerate import init_empty_weights

    path = Path(path)
    config = read_config(path) if config is None else _with_statistics(copy.deepcopy(config), path)
    if config.empty_token_id is None:
        config.empty_token_id = _tokenizer_token_id(path, EMPTY_TOKEN)
    files = _weight_files(path)
    shapes = _shapes(files)
    dims = [_tower_dims(shapes, prefix) for prefix in _tower_prefixes(config)]
    passthrough = {k: v for k, v in shapes.items() if _PASSTHROUGH.fullmatch(k)}
    with init_empty_weights():
        model = OpenVLAForActionPrediction(config, dims, passthrough)
    dtype = None if dtype == "auto" else getattr(torch, dtype) if isinstance(dtype, str) else dtype
    expected = {n: p for n, p in model.state_dict().items()}
    loaded: set[str] = set()
    for file in files:
        with safe_open(file, framework="pt") as f:
            published = ((k, f.get_tensor(k)) for k in f.keys())  # noqa: SIM118
            converted = {}
            for name, tensor in published_to_transformers(published, config):
                if name not in expected:
                    raise ValueError(f"unexpected tensor {name} (converted) in {file.name}")
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise ValueError(f"{name}: shape {tuple(tensor.shape)} in the checkpoint, "
                                     f"{tuple(expected[name].shape)} in the model")  # fmt: skip
                converted[name] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
            model.load_state_dict(converted, strict=False, assign=True)
            loaded |= set(converted)
    mask_token = "vision_backbone.featurizer.embeddings.mask_token"  # transformers-only, unused by OpenVLA
    if mask_token in expected and mask_token not in loaded and mask_token.replace("mask", "cls") in loaded:
        cls_token = model.vision_backbone.featurizer.embeddings.cls_token
        model.load_state_dict({mask_token: cls_token.new_zeros(expected[mask_token].shape)}, strict=False, assign=True)
        loaded.add(mask_token)
    missing = sorted(set(expected) - loaded)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    model.config._name_or_path = str(path)
    model.eval()
    return model.to(device) if device is not None else model


def save_published_weights(state: dict[str, Tensor], path: str | Path, *, max_shard_size: int = 5 * 2**30) -> None:
    """Write `state` (published names) as `model.safetensors`, or as shards with an index past `max_shard_size`."""
    path = Path(path)
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], path / WEIGHTS_FILE, metadata={"format": "pt"})
        return
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for shard, file in zip(shards, names, strict=True):
        save_file(shard, path / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2))


# --------------------------------------------------------------------------------------------------
# Processor
# --------------------------------------------------------------------------------------------------


class OpenVLAProcessor:
    """OpenVLA's processor: images + instruction → `input_ids`, `attention_mask`, `pixel_values`.

    Reads `preprocessor_config.json` (`input_sizes`, `tvf_normalize_params` or `means`/`stds`,
    `use_fused_vision_backbone`) and the tokenizer of a published checkpoint. Images are uint8
    `[B, H, W, 3]` (or one `[H, W, 3]`); images of another size than the model's are resized as
    OpenVLA's processor does (`"resize-naive"`: torchvision's `resize` of the PIL image, i.e.
    Pillow's `Image.resize((S, S), Image.BICUBIC)` on the uint8 image, aspect ratio not kept), so the
    pixel values equal OpenVLA's; then they are scaled to $[0, 1]$, normalised once per tower and
    stacked on the channel axis: `[B, 3 × towers, S, S]`. Text is
    `[BOS] + tokens("In: What action should the robot take to {instruction}?\nOut:") + ["▁"]`,
    left-padded with `<PAD>`; the action tokens follow (`predict_action` appends the `"▁"` to
    prompts from OpenVLA's own processor, which lack it). OpenVLA takes no proprioception
    (`state_dim = 0`).

    Args:
        tokenizer: the checkpoint's tokenizer (`PreTrainedTokenizerFast`).
        preprocessor_config: the parsed `preprocessor_config.json`.

    Raises:
        ValueError: a configuration without image sizes or normalisations, or a tokenizer without
            BOS, `<PAD>` or the `"▁"` token.
    """

    state_dim = 0

    def __init__(self, tokenizer: PreTrainedTokenizerFast, preprocessor_config: dict):
        self.tokenizer, self.preprocessor_config = tokenizer, dict(preprocessor_config)
        sizes = preprocessor_config.get("input_sizes")
        if not sizes:
            raise ValueError("preprocessor_config needs input_sizes")
        if preprocessor_config.get("tvf_normalize_params"):
            norms = [(p["mean"], p["std"]) for p in preprocessor_config["tvf_normalize_params"]]
        elif preprocessor_config.get("means") and preprocessor_config.get("stds"):
            norms = list(zip(preprocessor_config["means"], preprocessor_config["stds"], strict=True))
        else:
            raise ValueError("preprocessor_config needs tvf_normalize_params or means and stds")
        if len(norms) != len(sizes) or len({s[-1] for s in sizes}) != 1:
            raise ValueError(f"preprocessor_config: one square size and normalisation per tower, got {sizes}")
        self.image_size = int(sizes[0][-1])
        self.mean = torch.tensor([m for m, _ in norms], dtype=torch.float32)[..., None, None]  # [towers, 3, 1, 1]
        self.std = torch.tensor([s for _, s in norms], dtype=torch.float32)[..., None, None]
        self.empty_token_id = tokenizer.convert_tokens_to_ids(EMPTY_TOKEN)
        if tokenizer.bos_token_id is None or tokenizer.pad_token_id is None or self.empty_token_id in (
            None, tokenizer.unk_token_id):  # fmt: skip
            raise ValueError(f"the tokenizer needs a BOS token, a pad token and the {EMPTY_TOKEN!r} token")

    def pixel_values(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 images `[B, H, W, 3]` → channel-stacked, per-tower normalised `[B, 3 × towers, S, S]`."""
        images = torch.as_tensor(np.asarray(images))
        images = images[None] if images.ndim == 3 else images
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {tuple(images.shape)} {images.dtype}")
        size = self.image_size
        if tuple(images.shape[1:3]) != (size, size):  # OpenVLA: PIL's bicubic on the uint8 image, both towers alike
            from PIL import Image  # Pillow (with Meta-World's imageio): needed only to resize

            images = torch.from_numpy(np.stack([
                np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
                for image in images.cpu().numpy()
            ]))  # fmt: skip
        pixels = images.permute(0, 3, 1, 2).float() / 255.0
        return ((pixels[:, None] - self.mean) / self.std).flatten(1, 2)

    def __call__(
        self,
        images: np.ndarray | Tensor,
        instructions: str | Sequence[str],
        states: np.ndarray | Tensor | None = None,
        unnorm_key: str | None = None,
    ) -> dict[str, Tensor]:
        if states is not None:
            raise ValueError("OpenVLA takes no proprioception: states must be None (state_dim = 0)")
        pixel_values = self.pixel_values(images)
        batch = pixel_values.shape[0]
        instructions = [instructions] * batch if isinstance(instructions, str) else list(instructions)
        if len(instructions) != batch:
            raise ValueError(f"{len(instructions)} instructions for {batch} images")
        rows = [
            [self.tokenizer.bos_token_id,
             *self.tokenizer(PROMPT.format(instruction=i), add_special_tokens=False)["input_ids"],
             self.empty_token_id]
            for i in instructions
        ]  # fmt: skip
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}

    def save_pretrained(self, path: str | Path) -> None:
        """Write the tokenizer and `preprocessor_config.json` as read, less any `auto_map` (no remote code here)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        tokenizer_config = path / "tokenizer_config.json"  # OpenVLA's also names the remote AutoProcessor
        if tokenizer_config.exists() and "auto_map" in (saved := json.loads(tokenizer_config.read_text())):
            tokenizer_config.write_text(json.dumps({k: v for k, v in saved.items() if k != "auto_map"}, indent=2))
        config = {k: v for k, v in self.preprocessor_config.items() if k != "auto_map"}
        (path / PREPROCESSOR_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> OpenVLAProcessor:
        """Read a published checkpoint's `preprocessor_config.json` and tokenizer (no remote code)."""
        path = Path(path)
        if not (path / PREPROCESSOR_FILE).exists():
            raise ValueError(f"no {PREPROCESSOR_FILE} in {path}")
        return cls(PreTrainedTokenizerFast.from_pretrained(path), json.loads((path / PREPROCESSOR_FILE).read_text()))


register_auto_classes(OpenVLAConfig, OpenVLAForActionPrediction)
